//! Pools: one size class each, carved into blocks lazily (obmalloc.c `struct pool_header`,
//! `pymalloc_alloc`, `pymalloc_pool_extend`, `allocate_from_new_pool`'s pool set-up,
//! `insert_to_usedpool`).
//!
//! ```text
//!  pool (POOL_SIZE bytes, pool-aligned)
//!  +--------+---------+---------+---------+-- ... --+---------+------+
//!  | header | block 0 | block 1 | block 2 |         | block n |quant.|
//!  +--------+---------+---------+---------+-- ... --+---------+------+
//!  0        POOL_OVERHEAD        ^ freeblock -> ... -> NULL  ^ nextoffset (first never-used block)
//!
//!  fresh pool: block 0 handed out, freeblock = block 1 (its link NULL), nextoffset = block 2
//!  a pop that leaves freeblock NULL threads the block at nextoffset (pymalloc_pool_extend)
//!  while nextoffset <= maxnextoffset = POOL_SIZE - size; else the pool is full.
//! ```
//!
//! Invariants (per carved pool, checked by the property tests):
//! `count + |free list| + untouched == NUMBLOCKS(szidx)` where
//! `untouched = (POOL_SIZE - nextoffset) / size + 1 - ...` is the number of blocks at or above
//! `nextoffset`; `freeblock == NULL  <=>  count == NUMBLOCKS(szidx)` (the pool is full);
//! a used pool (`0 < count < NUMBLOCKS`) is on `usedpools[szidx]`, a full one on no list,
//! an empty one (`count == 0`) on its arena's `freepools`.
//!
//! The model keeps the free-list links outside the simulated memory: `next[id << GB | g]`
//! for the block starting at granule `g = offset >> ALIGNMENT_SHIFT` of pool `id`, where
//! `GB = POOL_BITS - ALIGNMENT_SHIFT` (`1 << GB` granules per pool; 0 = NULL: granule 0 is
//! the header; the slots of the ids of the `usedpools` heads are never used, and, never
//! touched, cost no memory). So `next.len() == pools.len() << GB`. For a *live* block the same slot holds its requested size with the
//! [`LIVE`] flag: `next[g] & LIVE != 0  <=>  a live block starts at g`. Only block starts of
//! the pool's current class are ever written, and a pool is re-initialised for another
//! class (or its arena slot reused) only when all its blocks are free, so no stale flag
//! survives.

use super::{ArenaSource, Pymalloc};
use crate::alloc::Allocator;
use crate::error::AllocError;

/// Flag of a `next` slot holding a live block's requested size rather than a free-list
/// link (links are granule numbers, below `POOL_SIZE >> ALIGNMENT_SHIFT <= 2^12`).
pub const LIVE: u16 = 0x8000;

/// `DUMMY_SIZE_IDX`: size class of a freshly carved pool that never held blocks.
pub const DUMMY_SIZE_IDX: u16 = 0xffff;

/// One pool header (`struct pool_header`), or a `usedpools[i]` list head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// `ref.count`: blocks allocated from this pool.
    pub count: u32,
    /// `freeblock`: granule of the free-list head (0 = NULL).
    pub freeblock: u16,
    /// `szidx`: size class index ([`DUMMY_SIZE_IDX`] before first use).
    pub szidx: u16,
    /// `nextoffset`: byte offset of the first never-handed-out block.
    pub nextoffset: u32,
    /// `maxnextoffset`: largest valid `nextoffset` (`POOL_SIZE - size`).
    pub maxnextoffset: u32,
    /// `nextpool`: next pool on `usedpools[szidx]` or on the arena's `freepools`.
    pub nextpool: u32,
    /// `prevpool`: previous pool on `usedpools[szidx]`.
    pub prevpool: u32,
    /// Address of the pool (0 for list heads and pools not carved).
    pub addr: u64,
}

impl Pool {
    /// A `usedpools[i]` list head: an empty circular list.
    pub(crate) fn head(id: u32) -> Pool {
        Pool {
            count: 0,
            freeblock: 0,
            szidx: DUMMY_SIZE_IDX,
            nextoffset: 0,
            maxnextoffset: 0,
            nextpool: id,
            prevpool: id,
            addr: 0,
        }
    }
}

impl<A: Allocator, S: ArenaSource> Pymalloc<A, S> {
    /// `arenaindex` of a pool: its arena_object, from its id (pools of arena `i` have ids
    /// `nclasses + i * MAX_POOLS_IN_ARENA ..`, a power of two apart).
    #[inline(always)]
    pub(crate) fn arenaindex(&self, pool: u32) -> u32 {
        (pool - self.nclasses) >> (self.params.arena_bits - self.pool_bits)
    }

    /// Index of `pool`'s first granule in `next`.
    #[inline(always)]
    pub(crate) fn granule_base(&self, pool: u32) -> usize {
        (pool as usize) << self.granule_bits
    }

    /// True when a live block starts at granule index `i` (its `next` slot has [`LIVE`]).
    #[inline(always)]
    pub(crate) fn is_live(&self, i: usize) -> bool {
        self.next[i] & LIVE != 0
    }

    /// `pymalloc_alloc` for a request in size class `size`: the head block of the first
    /// used pool's free list, or a block of a new pool. Returns the block's address.
    #[inline(always)]
    pub(crate) fn pymalloc_alloc(&mut self, size: u32, nbytes: u64) -> Result<u64, AllocError> {
        debug_assert!(size < self.nclasses && self.pools.len() >= self.nclasses as usize);
        // SAFETY: `size < nclasses` (the class of a request of 1..=threshold bytes), and the
        // `usedpools` heads are the first `nclasses` pools.
        let first = unsafe { self.pools.get_unchecked(size as usize) }.nextpool;
        if first == size {
            return self.alloc_from_new_pool(size, nbytes);
        }
        let base = self.granule_base(first);
        let shift = self.shift;
        debug_assert!((first as usize) < self.pools.len() && base < self.next.len());
        // SAFETY: a pool on `usedpools` is a carved pool, so `first < pools.len()`.
        let p = unsafe { self.pools.get_unchecked_mut(first as usize) };
        p.count += 1;
        let g = p.freeblock;
        // SAFETY: a used pool is not full, so its free-list head is a granule of the pool
        // (`0 < g < granules`), and `next.len() == pools.len() << granule_bits`.
        let link = unsafe { self.next.get_unchecked_mut(base + g as usize) };
        let next = *link;
        *link = nbytes as u16 | LIVE;
        p.freeblock = next;
        let addr = p.addr + ((g as u64) << shift);
        if next == 0 {
            // `pymalloc_pool_extend`: the free list ran dry; thread the next untouched
            // block, or unlink the now full pool from `usedpools`.
            if p.nextoffset <= p.maxnextoffset {
                let g = (p.nextoffset >> shift) as u16;
                p.freeblock = g;
                // INDEX2SIZE(size): the request rounded up to the alignment.
                p.nextoffset += ((nbytes + self.align_mask) & !self.align_mask) as u32;
                let link = p.addr + ((g as u64) << shift);
                debug_assert!(base + (g as usize) < self.next.len());
                // SAFETY: `nextoffset <= maxnextoffset < POOL_SIZE`: a granule of the pool.
                unsafe { *self.next.get_unchecked_mut(base + g as usize) = 0 };
                if self.track {
                    // `*(block **)(pool->freeblock) = NULL`: pymalloc writes one block
                    // ahead; the block was only ever a link: the program writes it now
                    self.wrote(link, 8);
                    self.wrote(addr, nbytes);
                }
            } else {
                self.unlink_full(first);
                // the block was only ever a link: the program writes it now
                self.wrote(addr, nbytes);
            }
        }
        Ok(addr)
    }

    /// `allocate_from_new_pool` for a request of `nbytes` in class `size`, and the block's
    /// address.
    #[inline(never)]
    fn alloc_from_new_pool(&mut self, size: u32, nbytes: u64) -> Result<u64, AllocError> {
        let (pool, g) = self.allocate_from_new_pool(size)?;
        let i = self.granule_base(pool) + g as usize;
        self.next[i] = nbytes as u16 | LIVE;
        let p = self.pools[pool as usize];
        let addr = p.addr + ((g as u64) << self.shift);
        if self.track {
            // the pool header (`init_pool` or the count), the block, and the link
            // `*(block **)(pool->freeblock) = NULL` a fresh pool threads after block 0
            self.wrote(p.addr, self.overhead);
            self.wrote(addr, nbytes);
            if p.freeblock != 0 {
                self.wrote(p.addr + ((p.freeblock as u64) << self.shift), 8);
            }
        }
        Ok(addr)
    }

    /// A pool that just filled leaves `usedpools`.
    #[inline(never)]
    fn unlink_full(&mut self, pool: u32) {
        let p = self.pools[pool as usize];
        self.pools[p.nextpool as usize].prevpool = p.prevpool;
        self.pools[p.prevpool as usize].nextpool = p.nextpool;
    }

    /// Bytes in size class `size` (`INDEX2SIZE`).
    #[inline(always)]
    pub(crate) fn class_bytes(&self, size: u32) -> u64 {
        ((size as u64) + 1) << self.shift
    }

    /// The tail of `allocate_from_new_pool`: link `pool` at the front of `usedpools[size]`
    /// and hand out its first block, reusing the free list when it last held `size`.
    pub(crate) fn start_pool(&mut self, pool: u32, size: u32) -> (u32, u16) {
        // Frontlink to used pools (the list is empty: its head is both neighbours).
        let head = self.pools[size as usize].nextpool;
        {
            let p = &mut self.pools[pool as usize];
            p.nextpool = head;
            p.prevpool = head;
            p.count = 1;
        }
        self.pools[head as usize].nextpool = pool;
        self.pools[head as usize].prevpool = pool;
        let base = self.granule_base(pool);
        if self.pools[pool as usize].szidx == size as u16 {
            // Same size class as last time: header and free list already set up.
            let g = self.pools[pool as usize].freeblock;
            self.pools[pool as usize].freeblock = self.next[base + g as usize];
            return (pool, g);
        }
        let bytes = self.class_bytes(size) as u32;
        let ovh = self.overhead as u32;
        let second = ((ovh + bytes) >> self.shift) as u16;
        let p = &mut self.pools[pool as usize];
        p.szidx = size as u16;
        p.nextoffset = ovh + 2 * bytes;
        p.maxnextoffset = self.pool_size as u32 - bytes;
        p.freeblock = second;
        self.next[base + second as usize] = 0;
        (pool, (ovh >> self.shift) as u16)
    }

    /// `insert_to_usedpool`: a pool that was full got a block back; link it at the front of
    /// `usedpools[szidx]`.
    pub(crate) fn insert_to_usedpool(&mut self, pool: u32) {
        let size = self.pools[pool as usize].szidx as u32;
        let next = self.pools[size as usize].nextpool;
        let prev = self.pools[next as usize].prevpool;
        let p = &mut self.pools[pool as usize];
        p.nextpool = next;
        p.prevpool = prev;
        self.pools[next as usize].prevpool = pool;
        self.pools[prev as usize].nextpool = pool;
    }

    /// Blocks of `pool` never handed out: those at or above `nextoffset`.
    pub fn untouched_blocks(&self, pool: &Pool) -> u64 {
        if pool.szidx == DUMMY_SIZE_IDX {
            return 0;
        }
        let size = self.class_bytes(pool.szidx as u32);
        let nblocks = self.params.blocks_per_pool(pool.szidx as u32) as u64;
        let used = (pool.nextoffset as u64 - self.overhead) / size;
        nblocks.saturating_sub(used)
    }

    /// Length of `pool`'s free list (walks it).
    pub fn free_list_len(&self, pool_id: u32) -> u64 {
        let base = self.granule_base(pool_id);
        let mut g = self.pools[pool_id as usize].freeblock;
        let mut n = 0u64;
        while g != 0 && n <= self.granules as u64 {
            n += 1;
            g = self.next[base + g as usize];
        }
        n
    }
}
