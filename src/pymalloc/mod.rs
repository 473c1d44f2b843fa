//! pymalloc: CPython's object allocator (Objects/obmalloc.c), arenas -> pools -> blocks,
//! for every era from 2.7.0 to 3.13 (see [`preset`]).
//!
//! ```text
//!  usedpools[szidx]  (circular, doubly linked: pools of one class with free blocks)
//!     |
//!     v
//!  +---------------- arena (ARENA_SIZE, from the arena allocator) -----------------+
//!  |partial| pool (POOL_SIZE) | pool              | pool         | never carved ...|
//!  |  pool | hdr|b0|b1|b2|... | hdr|b0|b1|...     | (empty, on   |                 |
//!  | (lost)|  class 1 (32 B)  |  class 3 (64 B)   |  freepools)  |                 |
//!  +-------------------------------------------------------------------------------+
//!     ^ usable_arenas (sorted by nfreepools, fullest first) -> next arena -> ...
//!
//!  malloc(n), 1 <= n <= SMALL_REQUEST_THRESHOLD:  szidx = (n - 1) >> ALIGNMENT_SHIFT
//!    1. usedpools[szidx] non-empty: pop its first pool's free-list head (LIFO);
//!       a pool left with no free block is full and leaves the list;
//!    2. else take the first free pool of the first usable arena (or carve the next
//!       pool, or map a new arena): block 0, free list = block 1, bump offset after.
//!  free(p): push p on its pool's free list; full -> front of usedpools; empty -> front
//!    of the arena's freepools; arena wholly free -> unmapped (3.9+: unless last in list).
//!  realloc(p, n) of a pymalloc block of size s: stays when n <= s and 4n > 3s, else
//!    malloc(n) then free(p). n = 0 and n > threshold fall through to the lower allocator.
//! ```
//!
//! Invariants, as equations (checked after every step by proptests/pymalloc.rs through
//! [`Pymalloc::check_invariants`]):
//! - per carved pool: `count + |free list| + untouched == NUMBLOCKS(szidx)`;
//! - per arena: `nfreepools == |freepools| + never-carved pools`, and the arena is on
//!   `usable_arenas` iff `nfreepools > 0` (or it is the kept last wholly free arena);
//! - `usable_arenas` is sorted: `a.nfreepools <= a.nextarena.nfreepools`;
//! - every live block lies inside its pool: `pool + POOL_OVERHEAD <= b` and
//!   `b + size <= pool + POOL_SIZE`; no two live blocks overlap.
//!
//! The model is `Pymalloc<A, S>`: `A` the lower allocator for fall-through requests (and
//! the `arenas` vector, the radix-tree nodes), `S` the arena source — `AddressSpace` for
//! the model's own address space, `replay::pinned`'s `PinnedArenas` / `PinnedRaw` to replay
//! a recording.

pub mod arena;
pub mod invariants;
pub mod occupancy;
pub mod pool;
pub mod preset;
pub mod radix;
pub mod source;
pub mod stats;
pub mod whatif;

pub use arena::ArenaObject;
pub use pool::Pool;
pub use preset::{ArenaOrdering, ArenaRelease, PresetSummary, PymallocParams, RadixSummary};
pub use source::{ArenaSource, Below, SystemArenas};

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use crate::vm::AddressSpace;
use radix::ArenaMap;

/// The null index of the model's lists (`NULL` in obmalloc.c).
pub const NONE: u32 = u32::MAX;

/// CPython's object allocator over a lower allocator `A` and an arena source `S`.
#[derive(Debug, Clone)]
pub struct Pymalloc<A: Allocator, S: ArenaSource = AddressSpace> {
    params: PymallocParams,           // the era's numbers and rules
    shift: u32,                       // ALIGNMENT_SHIFT
    pool_bits: u32,                   // POOL_BITS
    pool_size: u64,                   // POOL_SIZE
    overhead: u64,                    // POOL_OVERHEAD
    threshold: u64,                   // SMALL_REQUEST_THRESHOLD
    nclasses: u32,                    // NB_SMALL_SIZE_CLASSES (= number of usedpools heads)
    max_pools: u32,                   // MAX_POOLS_IN_ARENA
    granules: u32,                    // POOL_SIZE >> ALIGNMENT_SHIFT: block starts per pool
    granule_bits: u32,                // log2(granules): pool id << granule_bits = its first slot
    granule_mask: u64,                // granules - 1
    align_mask: u64,                  // ALIGNMENT - 1
    radix_mid_bytes: u64,             // sizeof(arena_map_mid_t)
    radix_bot_bytes: u64,             // sizeof(arena_map_bot_t)
    radix_root_bytes: u64,            // sizeof(arena_map_root)
    pools: Vec<Pool>,                 // [0, nclasses): usedpools heads; then slot*max_pools + i
    next: Vec<u16>, // by pool id << granule_bits | granule: free-list link, or LIVE | size
    arenas: Vec<ArenaObject>, // the `arenas` vector (maxarenas = len)
    unused_arena_objects: u32, // head of the list of slots with address 0
    usable_arenas: u32, // head of the list of arenas with free pools
    nfp2lasta: Vec<u32>, // nfp2lasta[n]: last usable arena with n free pools (3.8+)
    narenas_currently_allocated: u64, // arenas mapped now
    ntimes_arena_allocated: u64, // arenas mapped ever
    narenas_highwater: u64, // largest narenas_currently_allocated
    arenas_vector: Addr, // where the lower allocator put the `arenas` vector
    map: ArenaMap,  // address -> arena index
    hot_first: u64, // first pool of the arena last looked up
    hot_span: u64,  // its carved pools * POOL_SIZE (pool_address - first_pool; 0 = none)
    hot_slot: u32,  // its arena index (NONE = no hot arena)
    hot_pool0: u32, // the pool id of its first pool
    hot_next0: usize, // hot_pool0 << granule_bits: `next` index of its first pool's granule 0
    lower: A,       // fall-through and bookkeeping allocator
    source: S,      // the arena allocator
    live_blocks: u64, // live pymalloc blocks
    live_bytes: u64, // bytes requested by live pymalloc blocks
    peak_live_bytes: u64, // largest live_bytes
    mapped_bytes: u64, // bytes in mapped arenas
    peak_mapped_bytes: u64, // largest mapped_bytes
    track: bool,    // page residency tracked: writes are reported to the arena's address space
    serialno: u64,  // malloc/calloc/realloc calls served (a debug build's serialno)
}

/// What the model knows about one address (for divergence reports and `explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    /// Base of the arena holding it.
    pub arena: Addr,
    /// Address of its pool.
    pub pool: Addr,
    /// The pool's size class index (`szidx`), `None` for a pool never used.
    pub szidx: Option<u32>,
    /// Blocks allocated from the pool (`ref.count`).
    pub count: u32,
    /// The pool's free-list head (`freeblock`), NULL when full.
    pub freeblock: Addr,
    /// Byte offset of the first never-used block (`nextoffset`).
    pub nextoffset: u32,
    /// True when a live block starts at this address.
    pub live: bool,
}

impl<A: Allocator, S: ArenaSource> Pymalloc<A, S> {
    /// An empty pymalloc of era `params` over `lower` (fall-through) and `source` (arenas).
    ///
    /// # Panics
    /// Never for the shipped presets; a hand-made preset failing
    /// [`PymallocParams::validate`] is clamped by the caller's own responsibility — use
    /// [`try_new`](Self::try_new) to get the error instead.
    pub fn new(params: PymallocParams, lower: A, source: S) -> Self {
        match Self::try_new(params, lower, source) {
            Ok(p) => p,
            Err((e, _, _)) => panic!("invalid pymalloc preset: {e}"),
        }
    }

    /// As [`new`](Self::new), refusing a preset that breaks its invariants.
    ///
    /// # Errors
    /// The preset's problem, with the allocators given back.
    pub fn try_new(params: PymallocParams, lower: A, source: S) -> Result<Self, (String, A, S)> {
        if let Err(e) = params.validate() {
            return Err((e, lower, source));
        }
        let nclasses = params.size_classes();
        let (top_bits, mid_bits, bot_bits) = params.radix_bits();
        let ptr = (params.pointer_bits / 8) as u64;
        let (mid_bytes, bot_bytes) = params.radix_node_bytes();
        Ok(Pymalloc {
            shift: params.alignment_shift,
            pool_bits: params.pool_bits,
            pool_size: params.pool_size(),
            overhead: params.pool_overhead(),
            threshold: params.small_request_threshold,
            nclasses,
            max_pools: params.max_pools_in_arena(),
            granules: (params.pool_size() >> params.alignment_shift) as u32,
            granule_bits: params.pool_bits - params.alignment_shift,
            granule_mask: (params.pool_size() >> params.alignment_shift) - 1,
            align_mask: (1u64 << params.alignment_shift) - 1,
            radix_mid_bytes: mid_bytes,
            radix_bot_bytes: bot_bytes,
            radix_root_bytes: (1u64 << top_bits) * ptr,
            pools: (0..nclasses).map(Pool::head).collect(),
            next: Vec::new(),
            arenas: Vec::new(),
            unused_arena_objects: NONE,
            usable_arenas: NONE,
            nfp2lasta: vec![NONE; params.max_pools_in_arena() as usize + 1],
            narenas_currently_allocated: 0,
            ntimes_arena_allocated: 0,
            narenas_highwater: 0,
            arenas_vector: Addr::NULL,
            map: ArenaMap::new(params.arena_bits, mid_bits, bot_bits, params.address_bits),
            hot_first: 0,
            hot_span: 0,
            hot_slot: NONE,
            hot_pool0: 0,
            hot_next0: 0,
            lower,
            source,
            live_blocks: 0,
            live_bytes: 0,
            peak_live_bytes: 0,
            mapped_bytes: 0,
            peak_mapped_bytes: 0,
            serialno: 0,
            track: false,
            params,
        })
    }

    /// Tracks page residency from now on: pymalloc's writes (pool headers, the free-list
    /// link it threads one block ahead, the blocks it hands out, which the program writes)
    /// make the arena's pages resident, and an arena's unmap gives them back. The lower
    /// allocator's address space, and the arenas' own, track residency too.
    pub fn track_residency(&mut self) {
        self.track = true;
        if let Some(vm) = self.lower.address_space_mut() {
            vm.track_residency();
        }
        if let Some(vm) = self.source.space(None) {
            vm.track_residency();
        }
    }

    /// `len` bytes at `addr` of an arena were written (by pymalloc or, through a block it
    /// handed out, by the program): their pages are resident.
    #[inline(always)]
    pub(crate) fn wrote(&mut self, addr: u64, len: u64) {
        if self.track {
            self.wrote_cold(addr, len);
        }
    }

    #[inline(never)]
    fn wrote_cold(&mut self, addr: u64, len: u64) {
        if let Some(vm) = self.source.space(self.lower.address_space_mut()) {
            vm.touch(addr, len);
        }
    }

    /// The era's parameters.
    pub fn params(&self) -> &PymallocParams {
        &self.params
    }

    /// The lower allocator.
    pub fn lower(&self) -> &A {
        &self.lower
    }

    /// The lower allocator, mutably (the replay driver feeds pinned answers through it).
    pub fn lower_mut(&mut self) -> &mut A {
        &mut self.lower
    }

    /// The arena source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The arena source, mutably.
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The `arenas` vector (index = arena_object slot).
    pub fn arenas(&self) -> &[ArenaObject] {
        &self.arenas
    }

    /// Head of `usable_arenas` (NONE when empty).
    pub fn usable_arenas(&self) -> u32 {
        self.usable_arenas
    }

    /// Pool headers by id (ids below the number of size classes are `usedpools` heads).
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// Number of size classes (`NB_SMALL_SIZE_CLASSES`).
    pub fn nclasses(&self) -> u32 {
        self.nclasses
    }

    /// Arenas mapped now.
    pub fn narenas(&self) -> u64 {
        self.narenas_currently_allocated
    }

    /// True when the block at `addr` would be served by pymalloc (1..=threshold bytes).
    #[inline(always)]
    pub fn is_small(&self, nbytes: u64) -> bool {
        // the test `malloc` makes, in the same form, so that the two fold into one
        nbytes.wrapping_sub(1) < self.threshold
    }

    /// The pool id holding `addr`, with its arena index, when `addr` is inside a carved pool
    /// (`NONE` for the pool when the arena owns `addr` but no carved pool does). The arena
    /// last found is kept hot: its carved pools are `hot_first .. hot_first + hot_span`
    /// (an arena's pools are carved in address order, so they make one span).
    #[inline]
    fn locate(&mut self, addr: u64) -> Option<(u32, u32)> {
        match self.hot_pool(addr) {
            Some(id) => Some((self.hot_slot, id)),
            None => self.locate_cold(addr),
        }
    }

    /// The carved pool of the hot arena holding `addr`, if any.
    #[inline(always)]
    fn hot_pool(&self, addr: u64) -> Option<u32> {
        let off = addr.wrapping_sub(self.hot_first);
        (off < self.hot_span).then(|| self.hot_pool0 + (off >> self.pool_bits) as u32)
    }

    /// [`locate`](Self::locate) through the arena map; makes the arena found the hot one.
    #[inline(never)]
    fn locate_cold(&mut self, addr: u64) -> Option<(u32, u32)> {
        let slot = self.map.lookup(addr)?;
        self.make_hot(slot);
        let a = &self.arenas[slot as usize];
        if addr < a.first_pool || addr >= a.pool_address {
            return Some((slot, NONE));
        }
        let idx = ((addr - a.first_pool) >> self.pool_bits) as u32;
        Some((slot, self.hot_pool0 + idx))
    }

    /// Makes arena `slot` the hot one (or refreshes its span after a pool was carved).
    #[inline]
    pub(crate) fn make_hot(&mut self, slot: u32) {
        let a = &self.arenas[slot as usize];
        self.hot_first = a.first_pool;
        self.hot_span = a.pool_address - a.first_pool;
        self.hot_slot = slot;
        self.hot_pool0 = self.nclasses + slot * self.max_pools;
        self.hot_next0 = self.granule_base(self.hot_pool0);
    }

    /// What the model knows about `addr`: its arena, pool, class, free-list head.
    pub fn block_info(&mut self, addr: Addr) -> Option<BlockInfo> {
        let (slot, pool) = self.locate(addr.0)?;
        let arena = Addr(self.arenas[slot as usize].address);
        if pool == NONE {
            return Some(BlockInfo {
                arena,
                pool: addr.align_down(self.pool_size),
                szidx: None,
                count: 0,
                freeblock: Addr::NULL,
                nextoffset: 0,
                live: false,
            });
        }
        let p = self.pools[pool as usize];
        let g = ((addr.0 - p.addr) >> self.shift) as usize;
        let aligned = (addr.0 - p.addr) & ((1 << self.shift) - 1) == 0;
        Some(BlockInfo {
            arena,
            pool: Addr(p.addr),
            szidx: (p.szidx != pool::DUMMY_SIZE_IDX).then_some(p.szidx as u32),
            count: p.count,
            freeblock: if p.freeblock == 0 {
                Addr::NULL
            } else {
                Addr(p.addr + ((p.freeblock as u64) << self.shift))
            },
            nextoffset: p.nextoffset,
            live: aligned && self.is_live(self.granule_base(pool) + g),
        })
    }

    /// A sentence on the state behind `addr`: pool, size class, free-list head.
    pub fn explain(&mut self, addr: Addr) -> String {
        match self.block_info(addr) {
            None => format!("{addr} is in no arena (a fall-through block)"),
            Some(b) => match b.szidx {
                None => format!(
                    "{addr} is in arena {} in a pool never carved or never used ({})",
                    b.arena, b.pool
                ),
                Some(s) => format!(
                    "{addr} is in arena {}, pool {} (size class {s}, {} bytes; {} blocks \
                     allocated; free-list head {}; nextoffset {}){}",
                    b.arena,
                    b.pool,
                    self.class_bytes(s),
                    b.count,
                    b.freeblock,
                    b.nextoffset,
                    if b.live { ", live" } else { "" }
                ),
            },
        }
    }

    /// A sentence on where the next request of `nbytes` will come from.
    pub fn explain_next(&self, nbytes: u64) -> String {
        let Some(size) = self.params.size_class(nbytes) else {
            return format!(
                "a request of {nbytes} bytes falls through to {}",
                self.lower.name()
            );
        };
        let first = self.pools[size as usize].nextpool;
        if first != size {
            let p = self.pools[first as usize];
            format!(
                "size class {size} ({} bytes): usedpools head pool {:#x}, free-list head {:#x}, \
                 {} blocks allocated",
                self.class_bytes(size),
                p.addr,
                p.addr + ((p.freeblock as u64) << self.shift),
                p.count
            )
        } else if self.usable_arenas != NONE {
            let a = self.arenas[self.usable_arenas as usize];
            format!(
                "size class {size} ({} bytes): no used pool; a new pool from usable arena \
                 {:#x} ({} free pools, freepools head {})",
                self.class_bytes(size),
                a.address,
                a.nfreepools,
                if a.freepools == NONE {
                    "NULL (carve the next)".to_string()
                } else {
                    format!("{:#x}", self.pools[a.freepools as usize].addr)
                }
            )
        } else {
            format!(
                "size class {size} ({} bytes): no used pool and no usable arena: a new arena",
                self.class_bytes(size)
            )
        }
    }

    /// `pymalloc_free` of a block known to be in carved pool `pool`.
    #[inline(always)]
    fn free_block(&mut self, addr: u64, pool: u32) -> Result<(), AllocError> {
        // Pools are POOL_SIZE-aligned: the granule is the address bits below POOL_BITS.
        let g = ((addr >> self.shift) & self.granule_mask) as usize;
        self.free_block_at(addr, pool, self.granule_base(pool) + g)
    }

    /// [`free_block`](Self::free_block) with the block's `next` index `i` known.
    #[inline(always)]
    fn free_block_at(&mut self, addr: u64, pool: u32, i: usize) -> Result<(), AllocError> {
        let g = i & self.granule_mask as usize;
        debug_assert!(i < self.next.len() && (pool as usize) < self.pools.len());
        // SAFETY: `pool` is a carved pool's id (below `pools.len()`), `g < granules`, and
        // `next.len() == pools.len() << granule_bits`.
        let v = unsafe { *self.next.get_unchecked(i) };
        // A live flag is only ever set at a live block's start (so `count > 0` too).
        if addr & self.align_mask != 0 || v & pool::LIVE == 0 {
            let p = self.pools[pool as usize];
            return Err(self.not_live("free", addr, &p));
        }
        self.live_blocks -= 1;
        self.live_bytes -= (v & !pool::LIVE) as u64;
        // SAFETY: as above.
        let p = unsafe { self.pools.get_unchecked_mut(pool as usize) };
        let lastfree = p.freeblock;
        p.freeblock = g as u16;
        p.count -= 1;
        let count = p.count;
        // SAFETY: as above.
        unsafe { *self.next.get_unchecked_mut(i) = lastfree };
        if lastfree == 0 {
            // The pool was full: link it at the front of usedpools.
            self.insert_to_usedpool(pool);
            return Ok(());
        }
        if count != 0 {
            return Ok(());
        }
        self.insert_to_freepool(pool)
    }

    /// The error for a free/realloc of a non-live address inside an arena: a double free
    /// when a block of the pool's class once started there, else not live.
    #[cold]
    #[inline(never)]
    fn not_live(&self, op: &'static str, addr: u64, p: &Pool) -> AllocError {
        let off = addr.wrapping_sub(p.addr);
        if p.szidx != pool::DUMMY_SIZE_IDX && off >= self.overhead {
            let size = self.class_bytes(p.szidx as u32);
            if (off - self.overhead) % size == 0 && off < p.nextoffset as u64 {
                return AllocError::DoubleFree {
                    addr: Addr(addr),
                    model: self.params.name,
                };
            }
        }
        AllocError::NotLive {
            op,
            addr: Addr(addr),
            model: self.params.name,
        }
    }

    fn arena_not_live(&self, op: &'static str, addr: u64) -> AllocError {
        AllocError::NotLive {
            op,
            addr: Addr(addr),
            model: self.params.name,
        }
    }

    #[inline(always)]
    fn malloc_small(&mut self, nbytes: u64) -> Result<Addr, AllocError> {
        let size = ((nbytes - 1) >> self.shift) as u32;
        let a = self.pymalloc_alloc(size, nbytes)?;
        self.live_blocks += 1;
        self.live_bytes += nbytes;
        if self.live_bytes > self.peak_live_bytes {
            self.peak_live_bytes = self.live_bytes;
        }
        Ok(Addr(a))
    }

    /// `_PyObject_Malloc` of 0 or more than `SMALL_REQUEST_THRESHOLD` bytes: the lower
    /// allocator.
    #[inline(never)]
    fn malloc_large(&mut self, size: usize) -> Result<Addr, AllocError> {
        if size > isize::MAX as usize {
            return Err(self.too_large(size));
        }
        if size == 0 && self.params.raw_zero_as_one {
            return self.lower.malloc(1);
        }
        self.lower.malloc(size)
    }

    /// `_PyObject_Free` of an address outside the hot arena's carved pools.
    #[inline(never)]
    fn free_cold(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() {
            return Ok(());
        }
        match self.locate_cold(addr.0) {
            None => self.lower.free(addr),
            Some((_, NONE)) => Err(self.arena_not_live("free", addr.0)),
            Some((_, pool)) => self.free_block(addr.0, pool),
        }
    }

    /// `_PyObject_Realloc` of a block pymalloc does not own: the lower allocator keeps it.
    /// 2.7–3.6 never pass it 0 bytes (`realloc(p, 1)`, and `p` itself when that answers
    /// NULL, since "nbytes==0 never returns NULL"); 3.7+ pass the request as it is.
    #[inline(never)]
    fn realloc_foreign(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        if size == 0 && self.params.foreign_realloc_zero_as_one {
            let new = self.lower.realloc(addr, 1)?;
            return Ok(if new.is_null() { addr } else { new });
        }
        self.lower.realloc(addr, size)
    }

    /// `_PyObject_Malloc` without counting a call of the API (realloc's inner malloc).
    #[inline(always)]
    fn malloc_uncounted(&mut self, size: usize) -> Result<Addr, AllocError> {
        let n = size as u64;
        if n.wrapping_sub(1) < self.threshold {
            return self.malloc_small(n);
        }
        self.malloc_large(size)
    }

    fn too_large(&self, size: usize) -> AllocError {
        AllocError::TooLarge {
            size: size as u64,
            limit: isize::MAX as u64,
            model: self.params.name,
        }
    }
}

impl<A: Allocator, S: ArenaSource> Allocator for Pymalloc<A, S> {
    fn name(&self) -> &'static str {
        self.params.name
    }

    /// `_PyObject_Malloc`: pymalloc for 1..=threshold bytes, else the lower allocator.
    #[inline(always)]
    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        self.serialno += 1;
        self.malloc_uncounted(size)
    }

    /// `_PyObject_Calloc`: as malloc for small requests (zeroed), else the lower calloc.
    fn calloc(&mut self, nelem: usize, elsize: usize) -> Result<Addr, AllocError> {
        self.serialno += 1;
        let n = nelem
            .checked_mul(elsize)
            .filter(|&n| n <= isize::MAX as usize)
            .ok_or_else(|| self.too_large(usize::MAX))?;
        if (n as u64).wrapping_sub(1) < self.threshold {
            return self.malloc_small(n as u64);
        }
        self.lower.calloc(nelem, elsize)
    }

    /// `_PyObject_Free`: pymalloc when an arena owns the address, else the lower allocator.
    #[inline(always)]
    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        let off = addr.0.wrapping_sub(self.hot_first);
        if off < self.hot_span {
            // The hot arena's carved pools are consecutive in address and in id, so the
            // block's `next` index is its granule counted from the arena's first pool.
            let pool = self.hot_pool0 + (off >> self.pool_bits) as u32;
            let i = self.hot_next0 + (off >> self.shift) as usize;
            debug_assert_eq!(
                i,
                self.granule_base(pool) + ((addr.0 >> self.shift) & self.granule_mask) as usize
            );
            return self.free_block_at(addr.0, pool, i);
        }
        self.free_cold(addr)
    }

    /// `_PyObject_Realloc`: in place when `n <= size` and `4n > 3 size`; else malloc + free.
    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        if addr.is_null() {
            return self.malloc(size);
        }
        self.serialno += 1;
        if size > isize::MAX as usize {
            return Err(self.too_large(size));
        }
        let pool = match self.locate(addr.0) {
            None => return self.realloc_foreign(addr, size),
            Some((_, NONE)) => return Err(self.arena_not_live("realloc", addr.0)),
            Some((_, pool)) => pool,
        };
        let p = self.pools[pool as usize];
        let off = addr.0 - p.addr;
        let i = self.granule_base(pool) + (off >> self.shift) as usize;
        if off & ((1 << self.shift) - 1) != 0 || p.count == 0 || !self.is_live(i) {
            return Err(self.not_live("realloc", addr.0, &p));
        }
        let block = self.class_bytes(p.szidx as u32);
        let n = size as u64;
        if n <= block && 4 * n > 3 * block {
            self.live_bytes = self.live_bytes - (self.next[i] & !pool::LIVE) as u64 + n;
            self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
            self.next[i] = n as u16 | pool::LIVE;
            return Ok(addr);
        }
        let new = if n == 0 && self.params.raw_zero_as_one {
            self.lower.malloc(1)?
        } else {
            self.malloc_uncounted(size)?
        };
        self.free_block(addr.0, pool)?;
        Ok(new)
    }

    fn stats(&self) -> Stats {
        let l = self.lower.stats();
        Stats {
            live_bytes: self.live_bytes + l.live_bytes,
            live_blocks: self.live_blocks + l.live_blocks,
            mapped_bytes: self.mapped_bytes + l.mapped_bytes,
            peak_live_bytes: self.peak_live_bytes + l.peak_live_bytes,
            peak_mapped_bytes: self.peak_mapped_bytes + l.peak_mapped_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysmalloc::Bump;

    pub(super) type Model = Pymalloc<Bump, AddressSpace>;

    /// A model whose first arena lands at `top - ARENA_SIZE` (the unit tests' model).
    pub(super) fn model(params: PymallocParams, top: u64) -> Model {
        Pymalloc::new(
            params,
            Bump::new(Addr(0x5555_0000_0000), 16),
            AddressSpace::new(4096, 8, Addr(0x1000_0000), Addr(top)),
        )
    }

    pub(super) const ALIGNED_TOP: u64 = 0x7fff_0000_0000;

    #[test]
    fn a_fresh_pool_hands_out_block_0_then_threads_lazily() {
        let p = PymallocParams::v3_11();
        let mut m = model(p.clone(), ALIGNED_TOP);
        let arena = ALIGNED_TOP - p.arena_size();
        let size = p.class_size(1);
        for k in 0..5 {
            let a = m.malloc(32).unwrap();
            assert_eq!(a.0, arena + p.pool_overhead() + k * size);
            let b = m.block_info(a).unwrap();
            // After k+1 allocations the pool has threaded exactly one block past them.
            assert_eq!(b.freeblock.0, a.0 + size);
            assert_eq!(b.nextoffset as u64, p.pool_overhead() + (k + 2) * size);
        }
        m.check_invariants().unwrap();
    }

    #[test]
    fn frees_are_reused_last_in_first_out() {
        let mut m = model(PymallocParams::v3_11(), ALIGNED_TOP);
        let v: Vec<Addr> = (0..6).map(|_| m.malloc(24).unwrap()).collect();
        m.free(v[1]).unwrap();
        m.free(v[4]).unwrap();
        m.free(v[2]).unwrap();
        assert_eq!(m.malloc(20).unwrap(), v[2]);
        assert_eq!(m.malloc(30).unwrap(), v[4]);
        assert_eq!(m.malloc(17).unwrap(), v[1]);
        m.check_invariants().unwrap();
    }

    #[test]
    fn a_pool_that_was_full_goes_to_the_front_of_usedpools() {
        let p = PymallocParams::v3_11();
        let mut m = model(p.clone(), ALIGNED_TOP);
        let n = p.blocks_per_pool(31) as usize; // 512-byte blocks: a pool fills quickly
        let first: Vec<Addr> = (0..n).map(|_| m.malloc(512).unwrap()).collect();
        let second = m.malloc(512).unwrap();
        assert_eq!(
            second.0,
            first[0].0 + p.pool_size(),
            "a full pool leaves the list"
        );
        m.free(first[3]).unwrap();
        assert_eq!(
            m.malloc(512).unwrap(),
            first[3],
            "the freed-into pool is served first"
        );
        m.check_invariants().unwrap();
    }

    #[test]
    fn an_empty_pool_is_reused_with_its_free_list_for_the_same_class_and_reset_for_another() {
        let p = PymallocParams::v3_11();
        let mut m = model(p.clone(), ALIGNED_TOP);
        let keep = m.malloc(64).unwrap(); // pool 0, class 3
        let v: Vec<Addr> = (0..3).map(|_| m.malloc(100).unwrap()).collect(); // pool 1
        m.free(v[0]).unwrap();
        m.free(v[2]).unwrap();
        m.free(v[1]).unwrap(); // pool 1 empty -> freepools, free list v1, v2, v0, ...
        assert_eq!(
            m.malloc(100).unwrap(),
            v[1],
            "same class: the old free list"
        );
        assert_eq!(m.malloc(100).unwrap(), v[2]);
        for a in [v[1], v[2]] {
            m.free(a).unwrap();
        }
        let other = m.malloc(200).unwrap();
        assert_eq!(
            other, v[0],
            "another class: the pool is re-initialised, block 0 first"
        );
        assert!(m.block_info(keep).unwrap().live);
        m.check_invariants().unwrap();
    }

    #[test]
    fn an_arena_that_is_not_pool_aligned_loses_its_partial_pool() {
        let p = PymallocParams::v3_11();
        let top = ALIGNED_TOP + 0x3000; // page-aligned, not 16 KiB-aligned
        let mut m = model(p.clone(), top);
        let a = m.malloc(8).unwrap();
        let base = top - p.arena_size();
        assert_eq!(
            a.0,
            Addr(base).align_up(p.pool_size()).0 + p.pool_overhead()
        );
        assert_eq!(m.arenas()[0].ntotalpools, p.max_pools_in_arena() - 1);
        let s = m.debug_malloc_stats();
        assert_eq!(s.arena_alignment, p.pool_size());
        assert_eq!(s.total(), s.arenas_current * s.arena_size);
    }

    #[test]
    fn realloc_stays_only_when_it_still_fits_and_keeps_more_than_three_quarters() {
        let mut m = model(PymallocParams::v3_11(), ALIGNED_TOP);
        let a = m.malloc(64).unwrap(); // block of 64
        assert_eq!(m.realloc(a, 64).unwrap(), a);
        assert_eq!(m.realloc(a, 49).unwrap(), a, "4*49 > 3*64");
        let b = m.realloc(a, 48).unwrap(); // 4*48 == 3*64: moves to class 48
        assert_ne!(b, a);
        assert!(!m.block_info(a).unwrap().live, "the old block was freed");
        let c = m.realloc(b, 65).unwrap(); // grows: moves
        assert_ne!(c, b);
        let big = m.realloc(c, 600).unwrap(); // beyond the threshold: falls through
        assert!(m.block_info(big).is_none());
        assert!(matches!(
            m.realloc(c, 8),
            Err(AllocError::DoubleFree { .. })
        ));
        m.check_invariants().unwrap();
    }

    #[test]
    fn zero_and_large_requests_fall_through_calloc_is_served_small() {
        let mut m = model(PymallocParams::v3_11(), ALIGNED_TOP);
        let z = m.malloc(0).unwrap();
        assert!(m.block_info(z).is_none());
        let l = m.malloc(513).unwrap();
        assert!(m.block_info(l).is_none());
        let c = m.calloc(4, 8).unwrap();
        assert_eq!(m.block_info(c).unwrap().szidx, Some(1));
        assert!(m.calloc(usize::MAX, 2).is_err());
        m.free(z).unwrap();
        m.free(l).unwrap();
        m.free(Addr::NULL).unwrap();
        assert!(matches!(
            m.free(Addr(0x1234)),
            Err(AllocError::NotLive { .. })
        ));
        m.check_invariants().unwrap();
    }

    #[test]
    fn a_foreign_realloc_to_zero_bytes_asks_for_one_up_to_3_6_and_for_zero_from_3_7() {
        use crate::replay::pinned::{PinnedArenas, PinnedRaw, RawCall};
        let big = Addr(0x5555_0000_1000);
        for (p, asked) in [
            (PymallocParams::v2_7_17(), 1),
            (PymallocParams::v3_3(), 1),
            (PymallocParams::v3_6_pyenv(), 1),
            (PymallocParams::v3_7(), 0),
            (PymallocParams::v3_11(), 0),
        ] {
            let mut m = Pymalloc::new(p.clone(), PinnedRaw::sequence(), PinnedArenas::new());
            m.lower_mut().adopt(big, 600);
            // The lower allocator answers only the call the era makes (PinnedRaw refuses
            // any other size); NULL from it keeps the block where it was up to 3.6.
            m.lower_mut().expect(RawCall::Realloc {
                old: big,
                size: asked,
                addr: Addr::NULL,
            });
            let got = m.realloc(big, 0).unwrap();
            let kept = if p.foreign_realloc_zero_as_one {
                big
            } else {
                Addr::NULL
            };
            assert_eq!(got, kept, "{}", p.name);
        }
    }

    #[test]
    fn bad_frees_are_errors_not_panics() {
        let p = PymallocParams::v3_11();
        let mut m = model(p.clone(), ALIGNED_TOP);
        let a = m.malloc(32).unwrap();
        assert!(
            matches!(m.free(a + 16), Err(AllocError::NotLive { .. })),
            "mid-block"
        );
        let arena = ALIGNED_TOP - p.arena_size();
        assert!(
            matches!(
                m.free(Addr(arena + 5 * p.pool_size())),
                Err(AllocError::NotLive { .. })
            ),
            "uncarved pool"
        );
        m.free(a).unwrap();
        assert!(matches!(m.free(a), Err(AllocError::DoubleFree { .. })));
        m.check_invariants().unwrap();
    }

    /// Fills `n` pools of 512-byte blocks, returns the blocks pool by pool.
    fn fill_pools(m: &mut Model, n: usize) -> Vec<Vec<Addr>> {
        let szidx = m.params().size_class(512).unwrap();
        let per = m.params().blocks_per_pool(szidx) as usize;
        (0..n)
            .map(|_| (0..per).map(|_| m.malloc(512).unwrap()).collect())
            .collect()
    }

    #[test]
    fn a_wholly_free_arena_is_returned_except_the_last_one_from_3_9() {
        for (p, kept) in [
            (PymallocParams::v3_8(), false),
            (PymallocParams::v3_9(), true),
        ] {
            let mut m = model(p.clone(), ALIGNED_TOP);
            let pools = m.params().max_pools_in_arena() as usize;
            let all = fill_pools(&mut m, pools + 1); // arena 0 full, one pool in arena 1
            assert_eq!(m.narenas(), 2);
            for a in all.iter().skip(pools).flatten() {
                m.free(*a).unwrap(); // arena 1 wholly free, and last in usable_arenas
            }
            assert_eq!(m.narenas(), if kept { 2 } else { 1 }, "{}", p.name);
            m.check_invariants().unwrap();
        }
    }

    #[test]
    fn usable_arenas_serves_the_fullest_arena_first() {
        for p in [PymallocParams::v3_3(), PymallocParams::v3_11()] {
            let mut m = model(p.clone(), ALIGNED_TOP);
            let pools = m.params().max_pools_in_arena() as usize;
            let all = fill_pools(&mut m, 2 * pools);
            assert_eq!(m.narenas(), 2);
            // Free 3 pools in arena 0 and 1 pool in arena 1: arena 1 is fuller.
            for i in [0, 1, 2, pools] {
                for a in &all[i] {
                    m.free(*a).unwrap();
                }
            }
            m.check_invariants().unwrap();
            let a = m.malloc(512).unwrap();
            assert_eq!(
                a.align_down(p.pool_size()),
                all[pools][0].align_down(p.pool_size()),
                "{}",
                p.name
            );
            m.check_invariants().unwrap();
        }
    }
}
