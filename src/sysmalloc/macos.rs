//! macOS libmalloc's tiny allocator (magazine_tiny.c), one thread, one magazine.
//!
//! ```text
//!  tiny region (1 MiB, 1 MiB-aligned): | block | block | block | ... |  free  | metadata |
//!    no per-block header: a block is msize quanta of 16 bytes, placed back to back;
//!    malloc(992) takes 62 quanta = 992 bytes, so consecutive PyIntBlocks are 992 apart
//! ```
//! - requests of 1..=1008 bytes (msize 1..=63; `malloc(0)` takes one quantum) are tiny;
//!   a freed block goes on the free list of its msize and is reused LIFO by a request of
//!   the same msize; otherwise the next block is carved at the region's end of use;
//! - larger requests are modelled coarsely: "small" blocks of 512-byte quanta carved the
//!   same way from an 8 MiB region mapped top-down, and above 127 KiB whole pages from mmap.
//!
//! What is left out: coalescing of adjacent free blocks, splitting a larger free block
//! for a smaller request, the per-CPU magazines and the region's metadata layout.
//!
//! Invariant: `live_blocks == |live|`; carved blocks never overlap: `base <= next <= end`.

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use crate::vm::AddressSpace;
use std::collections::{HashMap, HashSet};

/// `TINY_QUANTUM`: 16 bytes (`SHIFT_TINY_QUANTUM` 4).
pub const TINY_QUANTUM: u64 = 1 << 4;
/// The largest tiny request: `(NUM_TINY_SLOTS - 1) * TINY_QUANTUM` = 1008 bytes.
pub const TINY_LIMIT: u64 = 63 * TINY_QUANTUM;
/// A tiny region: 1 MiB (`TINY_REGION_SIZE`), of which `NUM_TINY_BLOCKS * 16` hold blocks.
pub const TINY_REGION_SIZE: u64 = 1 << 20;
/// `NUM_TINY_BLOCKS`: quanta of a tiny region usable for blocks (the rest is metadata).
pub const NUM_TINY_BLOCKS: u64 = 64520;
/// `SMALL_QUANTUM`: 512 bytes.
pub const SMALL_QUANTUM: u64 = 1 << 9;
/// The largest small request (127 KiB); beyond it, whole pages.
pub const SMALL_LIMIT: u64 = 127 * 1024;
/// A small region: 8 MiB.
pub const SMALL_REGION_SIZE: u64 = 8 << 20;

const MODEL: &str = "macos-tiny";

/// One size range served by bump carving plus per-msize LIFO free lists.
#[derive(Debug, Clone)]
struct Rack {
    quantum: u64,                  // bytes per quantum
    next: Addr,                    // where the next fresh block is carved
    end: Addr,                     // end of the block area of the current region
    free: HashMap<u64, Vec<Addr>>, // msize -> freed blocks, LIFO
}

impl Rack {
    fn take(&mut self, msize: u64) -> Option<Addr> {
        if let Some(a) = self.free.get_mut(&msize).and_then(Vec::pop) {
            return Some(a);
        }
        let need = msize * self.quantum;
        (self.next.0 + need <= self.end.0).then(|| {
            let a = self.next;
            self.next = self.next + need;
            a
        })
    }
}

/// The macOS tiny allocator model.
#[derive(Debug, Clone)]
pub struct MacTiny {
    vm: AddressSpace,         // regions come from here
    tiny: Rack,               // 16-byte quanta
    small: Option<Rack>,      // 512-byte quanta, mapped at first use
    tiny_region: Addr,        // base of the current tiny region
    live: HashMap<u64, Live>, // address -> what is there
    freed: HashSet<u64>,      // addresses freed and not reused (double-free diagnosis)
    stats: Stats,             // live_bytes == Σ requests of live blocks
}

#[derive(Debug, Clone, Copy)]
enum Live {
    Tiny { msize: u64, req: u64 },
    Small { msize: u64, req: u64 },
    Large { len: u64, req: u64 },
}

impl MacTiny {
    /// A tiny allocator whose next fresh tiny block is at `vm.brk_start()` (the platform's
    /// `heap_start`: the seed's preset puts it where the first PyIntBlock landed); the
    /// region around it is the 1 MiB-aligned one.
    pub fn new(vm: AddressSpace) -> MacTiny {
        let first = vm.brk_start().align_up(TINY_QUANTUM);
        let region = first.align_down(TINY_REGION_SIZE);
        MacTiny {
            tiny: Rack {
                quantum: TINY_QUANTUM,
                next: first,
                end: region + NUM_TINY_BLOCKS * TINY_QUANTUM,
                free: HashMap::new(),
            },
            small: None,
            tiny_region: region,
            vm,
            live: HashMap::new(),
            freed: HashSet::new(),
            stats: Stats::default(),
        }
    }

    fn new_tiny_region(&mut self) -> Result<(), AllocError> {
        let base = self.tiny_region + TINY_REGION_SIZE;
        self.vm.map_fixed(base, TINY_REGION_SIZE)?;
        self.tiny_region = base;
        self.tiny.next = base;
        self.tiny.end = base + NUM_TINY_BLOCKS * TINY_QUANTUM;
        Ok(())
    }

    fn note_alloc(&mut self, at: Addr, what: Live, req: u64) {
        self.freed.remove(&at.0);
        self.live.insert(at.0, what);
        self.stats.note_alloc(req);
        let tiny_used = self.tiny.next.0 - self.vm.brk_start().align_up(TINY_QUANTUM).0;
        self.stats.mapped_bytes = tiny_used + self.vm.mapped_bytes();
        self.stats.peak_mapped_bytes = self.stats.peak_mapped_bytes.max(self.stats.mapped_bytes);
    }
}

impl Allocator for MacTiny {
    fn name(&self) -> &'static str {
        MODEL
    }

    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        let req = size as u64;
        if req <= TINY_LIMIT {
            let msize = req.div_ceil(TINY_QUANTUM).max(1);
            let at = match self.tiny.take(msize) {
                Some(a) => a,
                None => {
                    self.new_tiny_region()?;
                    self.tiny
                        .take(msize)
                        .expect("a fresh region serves any tiny size")
                }
            };
            self.note_alloc(at, Live::Tiny { msize, req }, req);
            Ok(at)
        } else if req <= SMALL_LIMIT {
            let msize = req.div_ceil(SMALL_QUANTUM);
            if self.small.is_none() {
                let base = self.vm.mmap(SMALL_REGION_SIZE)?;
                self.small = Some(Rack {
                    quantum: SMALL_QUANTUM,
                    next: base,
                    end: base + SMALL_REGION_SIZE,
                    free: HashMap::new(),
                });
            }
            let rack = self.small.as_mut().expect("mapped above");
            let at = match rack.take(msize) {
                Some(a) => a,
                None => {
                    let base = self.vm.mmap(SMALL_REGION_SIZE)?;
                    rack.next = base;
                    rack.end = base + SMALL_REGION_SIZE;
                    rack.take(msize)
                        .expect("a fresh region serves any small size")
                }
            };
            self.note_alloc(at, Live::Small { msize, req }, req);
            Ok(at)
        } else {
            if req > i64::MAX as u64 {
                return Err(AllocError::TooLarge {
                    size: req,
                    limit: i64::MAX as u64,
                    model: MODEL,
                });
            }
            let len = req.div_ceil(self.vm.page_size()) * self.vm.page_size();
            let at = self.vm.mmap(len)?;
            self.note_alloc(at, Live::Large { len, req }, req);
            Ok(at)
        }
    }

    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() {
            return Ok(());
        }
        let Some(what) = self.live.remove(&addr.0) else {
            return Err(if self.freed.contains(&addr.0) {
                AllocError::DoubleFree { addr, model: MODEL }
            } else {
                AllocError::NotLive {
                    op: "free",
                    addr,
                    model: MODEL,
                }
            });
        };
        let req = match what {
            Live::Tiny { msize, req } => {
                self.tiny.free.entry(msize).or_default().push(addr);
                req
            }
            Live::Small { msize, req } => {
                if let Some(r) = self.small.as_mut() {
                    r.free.entry(msize).or_default().push(addr);
                }
                req
            }
            Live::Large { len, req } => {
                self.vm.munmap(addr, len)?;
                req
            }
        };
        self.freed.insert(addr.0);
        self.stats.note_free(req);
        Ok(())
    }

    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        if addr.is_null() {
            return self.malloc(size);
        }
        let Some(&what) = self.live.get(&addr.0) else {
            return Err(AllocError::NotLive {
                op: "realloc",
                addr,
                model: MODEL,
            });
        };
        let fits = match what {
            Live::Tiny { msize, .. } => {
                (size as u64) <= TINY_LIMIT && (size as u64).div_ceil(TINY_QUANTUM).max(1) == msize
            }
            _ => false,
        };
        if fits {
            return Ok(addr);
        }
        super::realloc_by_moving(self, addr, size)
    }

    fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    fn tiny() -> (MacTiny, Addr) {
        let p = Platform::macos_x86_64();
        (MacTiny::new(p.address_space()), p.heap_start)
    }

    #[test]
    fn blocks_are_back_to_back_in_16_byte_quanta() {
        let (mut m, start) = tiny();
        let a = m.malloc(992).unwrap();
        let b = m.malloc(992).unwrap();
        let c = m.malloc(1).unwrap();
        let d = m.malloc(0).unwrap();
        assert_eq!(a, start);
        assert_eq!(b - a, 992);
        assert_eq!(c - b, 992);
        assert_eq!(d - c, TINY_QUANTUM as i64);
    }

    #[test]
    fn freed_blocks_are_reused_by_the_same_size_only() {
        let (mut m, _) = tiny();
        let a = m.malloc(992).unwrap();
        let _b = m.malloc(992).unwrap();
        m.free(a).unwrap();
        let other = m.malloc(500).unwrap();
        assert_ne!(other, a);
        assert_eq!(m.malloc(985).unwrap(), a, "985 bytes is also 62 quanta");
        assert_eq!(
            m.free(a + 16),
            Err(AllocError::NotLive {
                op: "free",
                addr: a + 16,
                model: MODEL
            })
        );
        m.free(other).unwrap();
        assert_eq!(
            m.free(other),
            Err(AllocError::DoubleFree {
                addr: other,
                model: MODEL
            })
        );
    }

    #[test]
    fn a_full_region_continues_in_the_next_one() {
        let (mut m, start) = tiny();
        let region_end = start.align_down(TINY_REGION_SIZE) + NUM_TINY_BLOCKS * TINY_QUANTUM;
        let mut last = start;
        while last.0 + 2 * 1008 <= region_end.0 {
            last = m.malloc(1008).unwrap();
        }
        let next = m.malloc(1008).unwrap();
        let after = m.malloc(1008).unwrap();
        assert!(next.0 + 1008 <= region_end.0 || next.is_aligned(TINY_REGION_SIZE));
        assert!(after.0 > last.0);
        assert!(m.malloc(200_000).is_ok());
        assert!(m.malloc(5000).is_ok());
    }
}
