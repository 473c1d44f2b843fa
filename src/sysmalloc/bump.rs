//! A bump allocator: the baseline.
//!
//! ```text
//!   base                     next
//!   | blk | blk | blk | ...  |-> (never moves back; free only forgets)
//! ```
//! Every request is rounded up to `align` and placed at `next`. Frees are checked
//! (a free of a non-live address is an error) but the space is never reused, so its
//! footprint is the upper bound any real allocator should beat.
//!
//! The live blocks are kept in address order, which is the order they were made: one
//! `u64` a block, `offset / align` in the high 39 bits, a freed flag, the size in the low
//! 24 bits; a free is a binary search that sets the flag, and the freed entries are swept
//! out when they pass a sixteenth. So a live block costs at most 8 × 16/15 ≈ 8.5 bytes.
//! Sizes of 2^24 − 1 and more sit in `big` (keyed by address), blocks beyond 2^39 granules
//! from `base` in `far`. Invariants: `entries` sorted by offset;
//! `live_blocks == |entries| − dead + |far|`; `16 · dead ≤ |entries|` after every free.

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use std::collections::HashMap;

/// The bump baseline: live allocations are remembered only to check frees.
#[derive(Debug, Clone)]
pub struct Bump {
    align: u64,       // every block starts on this boundary
    next: Addr,       // where the next block goes
    base: Addr,       // where the first block went
    live: LiveBlocks, // address -> size asked for, of the live blocks
    stats: Stats,     // live_bytes == sum of live sizes
}

const SIZE_BITS: u32 = 24; // an entry's size field
const BIG: u64 = (1 << SIZE_BITS) - 1; // size field of a block whose size is in `big`
const FREED: u64 = 1 << SIZE_BITS; // an entry's freed flag
const OFFSET_LIMIT: u64 = 1 << 39; // offsets (in granules) an entry holds

/// The live blocks in address order (see the module's text).
#[derive(Debug, Clone, Default)]
struct LiveBlocks {
    entries: Vec<u64>, // offset << 25 | freed << 24 | size (or BIG), sorted by offset
    dead: usize,       // entries with the freed flag
    big: HashMap<u64, u64>, // address -> size, for entries whose size field is BIG
    far: HashMap<u64, u64>, // address -> size, for blocks at offset ≥ OFFSET_LIMIT
}

impl LiveBlocks {
    /// Records a block `size` bytes long at granule `off` (above every entry's) of address `at`.
    fn push(&mut self, off: u64, at: u64, size: u64) {
        if off >= OFFSET_LIMIT {
            self.far.insert(at, size);
            return;
        }
        debug_assert!(self.entries.last().map_or(true, |&e| e >> 25 < off));
        let field = if size >= BIG {
            self.big.insert(at, size);
            BIG
        } else {
            size
        };
        self.entries.push(off << 25 | field);
    }

    /// The index of the live entry at granule `off`.
    fn find(&self, off: u64) -> Option<usize> {
        let i = self.entries.partition_point(|&e| e >> 25 < off);
        let e = *self.entries.get(i)?;
        (e >> 25 == off && e & FREED == 0).then_some(i)
    }

    /// True when a live block starts at granule `off` (address `at`).
    fn contains(&self, off: Option<u64>, at: u64) -> bool {
        match off {
            Some(o) if o < OFFSET_LIMIT => self.find(o).is_some(),
            Some(_) => self.far.contains_key(&at),
            None => false,
        }
    }

    /// Takes the block at granule `off` (address `at`) out, with its size.
    fn remove(&mut self, off: Option<u64>, at: u64) -> Option<u64> {
        let o = off?;
        if o >= OFFSET_LIMIT {
            return self.far.remove(&at);
        }
        let i = self.find(o)?;
        let e = self.entries[i];
        self.entries[i] = e | FREED;
        self.dead += 1;
        let size = match e & BIG {
            BIG => self.big.remove(&at).unwrap_or(BIG),
            s => s,
        };
        if self.dead * 16 > self.entries.len() {
            self.entries.retain(|&e| e & FREED == 0);
            self.dead = 0;
        }
        Some(size)
    }
}

impl Bump {
    /// A bump allocator starting at `base`, aligning every block to `align` (a power of two).
    pub fn new(base: Addr, align: u64) -> Bump {
        assert!(align.is_power_of_two());
        let base = base.align_up(align);
        Bump {
            align,
            next: base,
            base,
            live: LiveBlocks::default(),
            stats: Stats::default(),
        }
    }

    /// The largest request accepted: half the 64-bit space, as `PTRDIFF_MAX` bounds malloc.
    pub const MAX_REQUEST: u64 = i64::MAX as u64;

    /// The granule `addr` starts at, when it is a granule's start at or above `base`.
    fn offset(&self, addr: Addr) -> Option<u64> {
        let d = addr.0.checked_sub(self.base.0)?;
        (d & (self.align - 1) == 0).then(|| d / self.align)
    }
}

impl Allocator for Bump {
    fn name(&self) -> &'static str {
        "bump"
    }

    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        let size = size as u64;
        if size > Self::MAX_REQUEST {
            return Err(AllocError::TooLarge {
                size,
                limit: Self::MAX_REQUEST,
                model: "bump",
            });
        }
        let span = (size.max(1) + self.align - 1) & !(self.align - 1);
        let at = self.next;
        let end =
            at.0.checked_add(span)
                .ok_or_else(|| AllocError::OutOfAddressSpace {
                    what: format!("bump of {size} bytes at {at}"),
                })?;
        self.next = Addr(end);
        let off = (at.0 - self.base.0) / self.align;
        self.live.push(off, at.0, size);
        self.stats.note_alloc(size);
        self.stats.mapped_bytes = self.next.0 - self.base.0;
        self.stats.peak_mapped_bytes = self.stats.mapped_bytes;
        Ok(at)
    }

    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() {
            return Ok(());
        }
        let off = self.offset(addr);
        let size = self.live.remove(off, addr.0).ok_or(AllocError::NotLive {
            op: "free",
            addr,
            model: "bump",
        })?;
        self.stats.note_free(size);
        Ok(())
    }

    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        if addr.is_null() {
            return self.malloc(size);
        }
        if !self.live.contains(self.offset(addr), addr.0) {
            return Err(AllocError::NotLive {
                op: "realloc",
                addr,
                model: "bump",
            });
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

    #[test]
    fn bump_never_reuses_and_checks_frees() {
        let mut b = Bump::new(Addr(0x1000), 16);
        let a = b.malloc(24).unwrap();
        let c = b.malloc(1).unwrap();
        assert_eq!(c - a, 32);
        b.free(a).unwrap();
        assert!(b.malloc(24).unwrap() > c);
        assert!(matches!(b.free(a), Err(AllocError::NotLive { .. })));
        assert_eq!(b.stats().live_blocks, 2);
    }

    #[test]
    fn frees_agree_with_a_map_and_a_live_block_costs_at_most_eight_and_a_half_bytes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut b = Bump::new(Addr(0x1000), 16);
        let mut shadow: HashMap<u64, u64> = HashMap::new();
        let mut order: Vec<Addr> = Vec::new();
        let mut bytes_live = 0;
        for step in 0..100_000 {
            if order.is_empty() || rng.gen_bool(0.6) {
                // mostly small, now and then one past the packed size field
                let size = match rng.gen_range(0..50) {
                    0 => BIG + rng.gen_range(0..3),
                    _ => rng.gen_range(0..600),
                };
                let a = b.malloc(size as usize).unwrap();
                shadow.insert(a.0, size);
                bytes_live += size;
                order.push(a);
            } else {
                let a = order.swap_remove(rng.gen_range(0..order.len()));
                b.free(a).unwrap();
                bytes_live -= shadow.remove(&a.0).unwrap();
                // freed is not live, and nor is an address inside a block
                assert!(matches!(b.free(a), Err(AllocError::NotLive { .. })));
                if !shadow.contains_key(&(a.0 + 16)) {
                    assert!(b.realloc(a + 16, 8).is_err());
                }
            }
            let live = shadow.len() as u64;
            assert_eq!(b.stats().live_blocks, live);
            assert_eq!(b.stats().live_bytes, bytes_live);
            // bytes per live block: 8 per entry, freed entries at most a sixteenth
            let bytes = 8 * b.live.entries.len() as u64;
            assert!(
                bytes * 15 <= 128 * live.max(1) || step < 16,
                "{bytes} bytes for {live}"
            );
        }
        for a in order {
            b.free(a).unwrap();
        }
        assert_eq!(b.stats().live_bytes, 0);
    }

    #[test]
    fn a_block_beyond_the_packed_offsets_is_kept_too() {
        let mut b = Bump::new(Addr(0x1000), 16);
        let huge = (OFFSET_LIMIT * 16) as usize;
        let first = b.malloc(huge).unwrap();
        let far = b.malloc(40).unwrap();
        assert!(far.0 - 0x1000 >= OFFSET_LIMIT * 16);
        assert_eq!(b.stats().live_bytes, huge as u64 + 40);
        b.free(far).unwrap();
        assert!(b.free(far).is_err());
        b.free(first).unwrap();
        assert_eq!(b.stats().live_blocks, 0);
    }
}
