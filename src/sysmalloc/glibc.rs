//! glibc's malloc (ptmalloc2), main arena, one thread.
//!
//! ```text
//!  heap start                                                       brk
//!  | tcache_perthread_struct (0x290) | chunk | chunk | ... | top chunk |
//!    each chunk: [prev_size][size|flags] user data ...
//!                                     ^ the pointer malloc returns = chunk + 16
//! ```
//! chunk size = max(MINSIZE, (request + SIZE_SZ + MALLOC_ALIGN_MASK) & ~MALLOC_ALIGN_MASK).
//!
//! This first version carves from top and reuses freed chunks through the tcache
//! (LIFO per size, 7 per bin) and exact-size lists beyond it. The bins, consolidation
//! and the mmap path of glibc 2.36's malloc/malloc.c replace it (see the glibc issue).

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use crate::vm::AddressSpace;
use std::collections::HashMap;

/// The constants of one glibc build (malloc/malloc.c and its sysdeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlibcParams {
    /// `SIZE_SZ`: bytes in a chunk's size field (the pointer width).
    pub size_sz: u64,
    /// `MALLOC_ALIGNMENT`.
    pub malloc_alignment: u64,
    /// `MINSIZE`: the smallest chunk.
    pub min_chunk: u64,
    /// `TCACHE_MAX_BINS`.
    pub tcache_bins: u64,
    /// `mp_.tcache_count`: entries a tcache bin holds.
    pub tcache_count: u64,
    /// The chunk carved for `tcache_perthread_struct` before the first request.
    pub tcache_struct_chunk: u64,
    /// `mp_.top_pad` (`DEFAULT_TOP_PAD`).
    pub top_pad: u64,
}

impl GlibcParams {
    /// glibc 2.36 on x86-64.
    pub fn v2_36_x86_64() -> GlibcParams {
        GlibcParams {
            size_sz: 8,
            malloc_alignment: 16,
            min_chunk: 32,
            tcache_bins: 64,
            tcache_count: 7,
            tcache_struct_chunk: 0x290,
            top_pad: 128 * 1024,
        }
    }

    /// glibc 2.36 on i386 (`MALLOC_ALIGNMENT` is 16 there too, since 2.26).
    pub fn v2_36_i386() -> GlibcParams {
        GlibcParams {
            size_sz: 4,
            malloc_alignment: 16,
            min_chunk: 16,
            tcache_bins: 64,
            tcache_count: 7,
            tcache_struct_chunk: 0x190,
            top_pad: 128 * 1024,
        }
    }

    /// `request2size`: the chunk size serving a request of `n` bytes.
    pub fn chunk_size(&self, n: u64) -> u64 {
        let mask = self.malloc_alignment - 1;
        ((n + self.size_sz + mask) & !mask).max(self.min_chunk)
    }

    /// The largest chunk size the tcache holds.
    pub fn tcache_max_chunk(&self) -> u64 {
        self.min_chunk + (self.tcache_bins - 1) * self.malloc_alignment
    }
}

/// The glibc model.
#[derive(Debug, Clone)]
pub struct Glibc {
    params: GlibcParams,
    vm: AddressSpace,
    top: Addr,                           // start of the top chunk; top..brk is free
    initialized: bool,                   // the tcache struct has been carved
    tcache: HashMap<u64, Vec<Addr>>,     // chunk size -> user pointers, LIFO, len <= tcache_count
    other_free: HashMap<u64, Vec<Addr>>, // chunk size -> user pointers beyond the tcache
    live: HashMap<u64, (u64, u64)>,      // user pointer -> (chunk size, request)
    freed: HashMap<u64, u64>,            // user pointer -> chunk size, for double-free diagnosis
    stats: Stats,
}

impl Glibc {
    /// A fresh process: an empty heap at the address space's brk start.
    pub fn new(params: GlibcParams, vm: AddressSpace) -> Glibc {
        let top = vm.brk();
        Glibc {
            params,
            vm,
            top,
            initialized: false,
            tcache: HashMap::new(),
            other_free: HashMap::new(),
            live: HashMap::new(),
            freed: HashMap::new(),
            stats: Stats::default(),
        }
    }

    /// The parameters in force.
    pub fn params(&self) -> &GlibcParams {
        &self.params
    }

    fn init(&mut self) -> Result<(), AllocError> {
        if !self.initialized {
            self.initialized = true;
            self.carve(self.params.tcache_struct_chunk)?;
        }
        Ok(())
    }

    fn carve(&mut self, chunk: u64) -> Result<Addr, AllocError> {
        let need = self.top.0 + chunk + self.params.min_chunk;
        if need > self.vm.brk().0 {
            let grow = need - self.vm.brk().0 + self.params.top_pad;
            let grow = (grow + self.vm.page_size() - 1) & !(self.vm.page_size() - 1);
            self.vm.sbrk(grow as i64)?;
        }
        let at = self.top;
        self.top = self.top + chunk;
        self.stats.mapped_bytes = self.vm.heap_bytes() + self.vm.mapped_bytes();
        self.stats.peak_mapped_bytes = self.stats.peak_mapped_bytes.max(self.stats.mapped_bytes);
        Ok(at + 2 * self.params.size_sz)
    }
}

impl Allocator for Glibc {
    fn name(&self) -> &'static str {
        "glibc-2.36"
    }

    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        let limit = i64::MAX as u64 - 2 * self.params.size_sz;
        if size as u64 > limit {
            return Err(AllocError::TooLarge {
                size: size as u64,
                limit,
                model: "glibc-2.36",
            });
        }
        self.init()?;
        let chunk = self.params.chunk_size(size as u64);
        let reused = self
            .tcache
            .get_mut(&chunk)
            .and_then(Vec::pop)
            .or_else(|| self.other_free.get_mut(&chunk).and_then(Vec::pop));
        let at = match reused {
            Some(a) => a,
            None => self.carve(chunk)?,
        };
        self.freed.remove(&at.0);
        self.live.insert(at.0, (chunk, size as u64));
        self.stats.live_bytes += size as u64;
        self.stats.live_blocks += 1;
        self.stats.peak_live_bytes = self.stats.peak_live_bytes.max(self.stats.live_bytes);
        Ok(at)
    }

    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() {
            return Ok(());
        }
        let Some((chunk, req)) = self.live.remove(&addr.0) else {
            return Err(if self.freed.contains_key(&addr.0) {
                AllocError::DoubleFree {
                    addr,
                    model: "glibc-2.36",
                }
            } else {
                AllocError::Corrupt {
                    message: "free(): invalid pointer",
                    addr,
                    model: "glibc-2.36",
                }
            });
        };
        self.freed.insert(addr.0, chunk);
        self.stats.live_bytes -= req;
        self.stats.live_blocks -= 1;
        let bin = self.tcache.entry(chunk).or_default();
        if chunk <= self.params.tcache_max_chunk() && (bin.len() as u64) < self.params.tcache_count
        {
            bin.push(addr);
        } else {
            self.other_free.entry(chunk).or_default().push(addr);
        }
        Ok(())
    }

    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        if addr.is_null() {
            return self.malloc(size);
        }
        let Some(&(chunk, _)) = self.live.get(&addr.0) else {
            return Err(AllocError::Corrupt {
                message: "realloc(): invalid pointer",
                addr,
                model: "glibc-2.36",
            });
        };
        if self.params.chunk_size(size as u64) <= chunk {
            return Ok(addr);
        }
        let new = self.malloc(size)?;
        self.free(addr)?;
        Ok(new)
    }

    fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    #[test]
    fn first_pointer_follows_the_tcache_struct_and_992_strides_1008() {
        let p = Platform::linux_x86_64();
        let mut g = Glibc::new(GlibcParams::v2_36_x86_64(), p.address_space());
        let a = g.malloc(992).unwrap();
        let b = g.malloc(992).unwrap();
        assert_eq!(a - p.heap_start, 0x2a0);
        assert_eq!(b - a, GlibcParams::v2_36_x86_64().chunk_size(992) as i64);
        g.free(a).unwrap();
        assert_eq!(g.malloc(992).unwrap(), a, "tcache is LIFO");
        g.free(b).unwrap();
        assert!(matches!(g.free(b), Err(AllocError::DoubleFree { .. })));
    }
}
