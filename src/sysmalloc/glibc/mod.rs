//! glibc's malloc (ptmalloc2, glibc 2.36 malloc/malloc.c), main arena, one thread.
//!
//! ```text
//!  heap start = brk at the first call                                            brk
//!  | tcache_perthread_struct (0x290) | chunk | chunk | free | chunk | ... | top chunk |
//!    each chunk: [prev_size][size|P] user data ...
//!                            ^ the pointer malloc returns = chunk + 2 * SIZE_SZ
//!
//!  malloc(n)   nb = request2size(n); tcache[nb] if non-empty; else _int_malloc   (malloc.rs)
//!  free(p)     mmapped: munmap (dynamic threshold); else _int_free               (free.rs)
//!  calloc      _int_malloc, never the tcache; realloc: _int_realloc; memalign    (realloc.rs)
//!  bins        unsorted / small / large (bins.rs); tcache and fastbins (tcache.rs)
//!  chunks      boundary tags in an arena indexed by address (chunk.rs)
//! ```
//! The model is exact: replaying a process's malloc-family calls from its first one gives
//! every address glibc returned from the brk heap (see `pyalloc check` on the glibc
//! traces). Mmapped chunks are placed top-down by the address-space model, or at the
//! address a recording shows ([`Glibc::pin_next_mmap`]).
//!
//! Invariants, as equations (checked by [`Glibc::check_invariants`] after every step of
//! the property tests):
//! - `Σ size(c) over the chunks from base to top end == top end - base`, `top end == brk`;
//! - no two neighbouring chunks are both binned free, and no binned chunk borders top;
//! - `P(next(c)) == !binned(c)`; `prev_size(next(c)) == size(c)` when binned;
//! - `counts[t] == |tcache[t]| ≤ 7`, every chunk in a bin has that bin's size range;
//! - in-use user pointers are 16-byte aligned and no two live chunks overlap.
//!
//! Requests glibc cannot satisfy fail as glibc fails them (malloc returns NULL, `ENOMEM`):
//! over `PTRDIFF_MAX` (`checked_request2size`: [`AllocError::TooLarge`]), or when neither
//! a mapping nor the brk heap can hold the chunk in the process's address space
//! ([`AllocError::OutOfAddressSpace`]); a failed realloc leaves its block as it was.
//! Model limit: the brk heap may span up to 2^28 granules (4 GiB on x86-64); glibc would
//! grow it further, the model refuses with [`AllocError::ModelLimit`].

mod bins;
mod chunk;
mod footprint;
mod free;
mod inspect;
mod invariants;
mod malloc;
mod params;
mod realloc;
mod tcache;

pub use chunk::State as ChunkState;
pub use inspect::{Bin, BinList, ChunkInfo, MallInfo};
pub use params::GlibcParams;

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use crate::vm::AddressSpace;
use chunk::{Heap, State, FIRST, NIL};
use footprint::HeapPages;
pub use footprint::HeapUse;
use malloc::Out;
use params::NFASTBINS;
use std::collections::HashMap;
use std::fmt;

const MODEL: &str = "glibc-2.36";

/// Which path of malloc.c served the last request (for divergence reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Nothing served yet.
    Nothing,
    /// `tcache_get` in `__libc_malloc`.
    Tcache,
    /// A fastbin.
    Fastbin,
    /// The small bin of exactly the size.
    SmallBin,
    /// The last-remainder split of the unsorted bin's only chunk.
    LastRemainder,
    /// An exact fit found in the unsorted bin.
    UnsortedExact,
    /// Exact fits stashed in the tcache during the unsorted pass, the newest returned.
    TcacheStash,
    /// Best fit in the request's own large bin.
    LargeBin,
    /// The next non-empty bin above the request's.
    Binmap,
    /// Split from top.
    Top,
    /// Top grown by sbrk, then split.
    Sysmalloc,
    /// A mapping of its own.
    Mmap,
    /// realloc kept the chunk (shrinking or fitting).
    ReallocInPlace,
    /// realloc grew the chunk into top.
    ReallocIntoTop,
    /// realloc absorbed the free next chunk.
    ReallocIntoNext,
    /// realloc of an mmapped chunk (mremap).
    Mremap,
    /// `_int_memalign`.
    Memalign,
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Served::Nothing => "nothing",
            Served::Tcache => "tcache",
            Served::Fastbin => "fastbin",
            Served::SmallBin => "small bin",
            Served::LastRemainder => "last remainder",
            Served::UnsortedExact => "unsorted exact fit",
            Served::TcacheStash => "tcache stash of unsorted exact fits",
            Served::LargeBin => "large bin best fit",
            Served::Binmap => "next non-empty bin",
            Served::Top => "top",
            Served::Sysmalloc => "top after sbrk",
            Served::Mmap => "mmap",
            Served::ReallocInPlace => "realloc in place",
            Served::ReallocIntoTop => "realloc into top",
            Served::ReallocIntoNext => "realloc into the next chunk",
            Served::Mremap => "mremap",
            Served::Memalign => "memalign",
        };
        f.write_str(s)
    }
}

/// An mmapped chunk.
#[derive(Debug, Clone, Copy)]
struct Mapped {
    base: u64, // the mapping's first byte
    len: u64,  // the mapping's length (pages)
    req: u64,  // bytes asked for
}

/// The glibc model: one main arena over a simulated address space.
#[derive(Debug, Clone)]
pub struct Glibc {
    params: GlibcParams,         // the build's constants
    vm: AddressSpace,            // brk heap and mappings
    heap: Heap,                  // boundary tags and links of every chunk
    top: u32,                    // node of the top chunk (NIL before the first sbrk)
    last_remainder: u32,         // av->last_remainder (a node; never cleared, as in glibc)
    binmap: u128,                // bit i set ⇔ bin i non-empty
    tidx_bias: u64,              // MALLOC_ALIGNMENT - 1 - MINSIZE (wrapping): csize2tidx's addend
    tidx_shift: u32,             // log2(MALLOC_ALIGNMENT): csize2tidx's divisor
    tcache_inited: bool,         // tcache_perthread_struct carved
    tcache_lim: usize,           // mp_.tcache_bins once the tcache is carved, 0 before
    tcache_counts: [u16; 64],    // entries in each tcache bin
    tcache_entries: [u32; 64],   // newest chunk of each tcache bin (NIL = empty)
    fastbins: [u32; NFASTBINS],  // newest chunk of each fastbin (NIL = empty)
    have_fastchunks: bool,       // av->have_fastchunks
    max_fast: u64,               // global_max_fast
    mmap_threshold: u64,         // mp_.mmap_threshold (dynamic)
    trim_threshold: u64,         // mp_.trim_threshold (dynamic)
    top_pad: u64,                // mp_.top_pad
    n_mmaps: u64,                // mmapped chunks live
    n_mmaps_max: u64,            // mp_.n_mmaps_max
    no_dyn_threshold: bool,      // mp_.no_dyn_threshold (set by mallopt)
    mmaps: HashMap<u64, Mapped>, // user pointer -> mmapped chunk
    heap_pages: HeapPages,       // brk-heap pages known resident (residency's fast path)
    mmap_pin: Option<u64>,       // where the next mapping must go (from a recording)
    served: Served,              // the path that served the last request
    stats: Stats,                // footprint figures
}

impl Glibc {
    /// A fresh process: an empty heap at the address space's current break.
    pub fn new(params: GlibcParams, vm: AddressSpace) -> Glibc {
        Glibc::with_heap(params, vm, Heap::new(0, 0))
    }

    /// A fresh process whose node arena is `heap`'s memory (emptied here).
    fn with_heap(params: GlibcParams, vm: AddressSpace, mut heap: Heap) -> Glibc {
        let start = vm.brk().0;
        let hdr = 2 * params.size_sz;
        let base = (start + hdr).next_multiple_of(params.malloc_alignment) - hdr;
        // granule = MINSIZE / 2: every chunk spans two, its links fit after its tag
        heap.shift = (params.min_chunk / 2).trailing_zeros();
        heap.reset(base);
        let tidx_bias = (params.malloc_alignment - 1).wrapping_sub(params.min_chunk);
        let tidx_shift = params.malloc_alignment.trailing_zeros();
        let heap_pages = HeapPages::new(vm.brk_start().0, vm.page_size());
        Glibc {
            max_fast: params.max_fast,
            mmap_threshold: params.mmap_threshold,
            trim_threshold: params.trim_threshold,
            top_pad: params.top_pad,
            n_mmaps_max: params.n_mmaps_max,
            params,
            vm,
            heap,
            tidx_bias,
            tidx_shift,
            top: NIL,
            last_remainder: NIL,
            binmap: 0,
            tcache_inited: false,
            tcache_lim: 0,
            tcache_counts: [0; 64],
            tcache_entries: [NIL; 64],
            fastbins: [NIL; NFASTBINS],
            have_fastchunks: false,
            n_mmaps: 0,
            no_dyn_threshold: false,
            mmaps: HashMap::new(),
            heap_pages,
            mmap_pin: None,
            served: Served::Nothing,
            stats: Stats::default(),
        }
    }

    /// Starts over as a fresh process on `vm`, keeping the model's own tables' memory
    /// (replaying many traces, benchmarks).
    pub fn reset(&mut self, vm: AddressSpace) {
        let heap = std::mem::replace(&mut self.heap, Heap::empty());
        *self = Glibc::with_heap(self.params.clone(), vm, heap);
    }

    /// The parameters in force.
    pub fn params(&self) -> &GlibcParams {
        &self.params
    }

    /// The simulated address space.
    pub fn address_space(&self) -> &AddressSpace {
        &self.vm
    }

    /// The path of malloc.c that served the last request.
    pub fn served(&self) -> Served {
        self.served
    }

    /// Bytes the model's own tables take (nodes, side tables): its memory cost, not the
    /// simulated heap's. The nodes count as far as they are in use (their mapping reserves
    /// far more address space, untouched).
    pub fn model_bytes(&self) -> usize {
        self.heap.nodes.len() * std::mem::size_of::<chunk::Node>()
            + self.heap.big_reqs.capacity() * 16
            + self.mmaps.capacity() * (8 + std::mem::size_of::<Mapped>())
    }

    /// The current `mp_.mmap_threshold`.
    pub fn mmap_threshold(&self) -> u64 {
        self.mmap_threshold
    }

    /// The current `mp_.trim_threshold`.
    pub fn trim_threshold(&self) -> u64 {
        self.trim_threshold
    }

    /// The top chunk as `(address, size)`, once the heap exists.
    pub fn top_chunk(&self) -> Option<(Addr, u64)> {
        (self.top != NIL).then(|| (Addr(self.heap.addr(self.top)), self.top_size()))
    }

    /// Where the chunk whose user pointer is `mem` is (in use, in which bin, top) and its
    /// size; an mmapped chunk reports `InUse` and its mapping's length. `None` when no
    /// chunk starts at `mem - 2 * SIZE_SZ`.
    pub fn chunk_of(&self, mem: Addr) -> Option<(ChunkState, u64)> {
        if let Some(m) = self.mmaps.get(&mem.0) {
            return Some((ChunkState::InUse, m.len));
        }
        let c = mem.0.checked_sub(2 * self.params.size_sz)?;
        if self.top == NIL || !self.heap.on_grid(c) || c > self.heap.addr(self.top) {
            return None;
        }
        let i = self.heap.idx(c);
        if i == self.top {
            return Some((ChunkState::Top, self.top_size()));
        }
        match self.heap.n(i).state() {
            State::None | State::Bin => None,
            s => Some((s, self.heap.size(i))),
        }
    }

    /// True when `mem` is a live mmapped chunk's user pointer.
    pub fn is_mmapped(&self, mem: Addr) -> bool {
        self.maybe_mapped(mem.0)
    }

    /// Makes the next mapping the model creates (an mmapped chunk, an mremap) start at
    /// `base` (page-aligned), as a recording shows, instead of where the address-space
    /// model would put it. Unused pins are dropped by the next call.
    pub fn pin_next_mmap(&mut self, base: Addr) {
        self.mmap_pin = Some(base.0);
    }

    /// Drops a pin the last call did not use.
    pub fn clear_mmap_pin(&mut self) {
        self.mmap_pin = None;
    }

    /// True when `mem` is a live mmapped chunk (no lookup for brk-heap addresses).
    #[inline]
    fn maybe_mapped(&self, mem: u64) -> bool {
        (mem < self.heap.base || mem >= self.vm.brk().0) && self.mmaps.contains_key(&mem)
    }

    /// `chunksize(av->top)`: top always ends at the break. (Its node's size is only a
    /// floor: on i386 top's size is 8 mod 16, the one chunk whose size is not whole granules.)
    #[inline]
    fn top_size(&self) -> u64 {
        self.vm.brk().0 - self.heap.addr(self.top)
    }

    /// `csize2tidx(nb)` (as [`GlibcParams::csize2tidx`], with its constants computed once:
    /// `(nb + tidx_bias) >> tidx_shift == (nb - MINSIZE + MALLOC_ALIGNMENT - 1) / MALLOC_ALIGNMENT`).
    #[inline(always)]
    fn tidx(&self, nb: u64) -> usize {
        (nb.wrapping_add(self.tidx_bias) >> self.tidx_shift) as usize
    }

    /// The user pointer of the chunk at node `i`.
    #[inline]
    fn mem(&self, i: u32) -> u64 {
        self.heap.addr(i) + 2 * self.params.size_sz
    }

    /// `MAYBE_INIT_TCACHE`: carves the tcache_perthread_struct on first use.
    #[inline(always)]
    fn maybe_init_tcache(&mut self) -> Result<(), AllocError> {
        if self.tcache_inited {
            return Ok(());
        }
        self.tcache_init()
    }

    /// `tcache_init`: the first malloc or free of the thread.
    #[cold]
    #[inline(never)]
    fn tcache_init(&mut self) -> Result<(), AllocError> {
        let nb = self.params.tcache_struct_chunk;
        match self.int_malloc(nb).map_err(|e| *e)? {
            Out::Chunk(c) => {
                self.heap.m(c).set_state(State::InUse);
                // memset (tcache, 0, sizeof (tcache_perthread_struct))
                let mem = self.mem(c);
                self.wrote(mem - self.params.size_sz, nb - self.params.size_sz);
            }
            Out::Mapped(_) => {}
        }
        self.tcache_inited = true;
        self.tcache_lim = self.params.tcache_bins as usize;
        Ok(())
    }

    fn too_large(&self, size: u64) -> AllocError {
        AllocError::TooLarge {
            size,
            limit: self.params.ptrdiff_max,
            model: MODEL,
        }
    }

    /// `len` bytes at `addr` were written (by glibc or the program): resident pages.
    #[inline(always)]
    pub(super) fn wrote(&mut self, addr: u64, len: u64) {
        if self.vm.tracking() {
            self.touch(addr, len);
        }
    }

    /// The residency half of [`wrote`](Self::wrote), out of the hot paths (which then
    /// need no registers saved for it when residency is not tracked): writes to one or
    /// two brk-heap pages already known resident stop at [`HeapPages`]' bit test.
    #[inline(never)]
    pub(super) fn touch(&mut self, addr: u64, len: u64) {
        if !self.heap_pages.known(addr, len) {
            self.touch_slow(addr, len);
        }
    }

    /// The residency half of [`wrote`](Self::wrote), out of the hot paths (which then
    /// need no registers saved for it when residency is not tracked).
    /// [`touch`](Self::touch) of pages not known resident: the address space's `touch`,
    /// and the brk heap's pages noted as such.
    #[cold]
    #[inline(never)]
    pub(super) fn touch_slow(&mut self, addr: u64, len: u64) {
        self.vm.touch(addr, len);
        if len > 0 && addr >= self.vm.brk_start().0 && addr + len <= self.vm.brk().0 {
            self.heap_pages.set(addr, len);
        }
    }

    /// The simulated address space, mutably (a layer above maps its regions there).
    pub fn space_mut(&mut self) -> &mut AddressSpace {
        &mut self.vm
    }

    /// Records a new allocation of `req` bytes in the statistics; with residency tracked,
    /// the chunk's header and the first `written` bytes of the block are written (the
    /// program writes what it asked for; calloc's memset is glibc's own).
    #[inline(always)]
    fn account(&mut self, out: Out, req: u64, written: u64) -> u64 {
        self.stats.note_alloc(req);
        let mem = match out {
            Out::Chunk(c) => {
                // every path that hands a chunk out has marked it in use already
                debug_assert_eq!(self.heap.n(c).state(), State::InUse);
                self.heap.set_req(c, req);
                self.mem(c)
            }
            Out::Mapped(mem) => {
                self.note_mapped_req(mem, req);
                mem
            }
        };
        // the size field (set_head / the mmapped chunk's header), then the block
        self.wrote(mem - self.params.size_sz, self.params.size_sz + written);
        mem
    }

    /// Records the request an mmapped chunk serves (out of line: rare and costly anyway).
    #[inline(never)]
    fn note_mapped_req(&mut self, mem: u64, req: u64) {
        if let Some(m) = self.mmaps.get_mut(&mem) {
            m.req = req;
        }
    }

    /// Refreshes `mapped_bytes` after the heap or a mapping changed size.
    fn note_mapped(&mut self) {
        self.stats.mapped_bytes = self.vm.heap_bytes() + self.vm.mapped_bytes();
        if self.stats.mapped_bytes > self.stats.peak_mapped_bytes {
            self.stats.peak_mapped_bytes = self.stats.mapped_bytes;
        }
    }

    /// The node of the chunk whose user pointer is `mem` when that chunk could be a
    /// heap chunk below top (on the grid, at or past base); `None` otherwise.
    #[inline(always)]
    fn below_top(&self, mem: u64) -> Option<u32> {
        let off = mem
            .wrapping_sub(2 * self.params.size_sz)
            .wrapping_sub(self.heap.base);
        let g = off >> self.heap.shift;
        // top == NIL (0) fails the second test; an `off` that wrapped is far past top
        (off & ((1 << self.heap.shift) - 1) == 0 && g + (FIRST as u64) < self.top as u64)
            .then(|| FIRST + g as u32)
    }

    /// The node of the live heap chunk whose user pointer is `mem`, or glibc's diagnosis.
    #[inline]
    fn live_chunk(&self, mem: u64, realloc: bool) -> Result<u32, AllocError> {
        if let Some(i) = self.below_top(mem) {
            if self.heap.n(i).state() == State::InUse {
                return Ok(i);
            }
        }
        Err(self.diagnose(mem, realloc))
    }

    /// glibc's diagnosis of a `free`/`realloc` of `mem`, which is not a live chunk.
    #[cold]
    fn diagnose(&self, mem: u64, realloc: bool) -> AllocError {
        let invalid = |message| AllocError::Corrupt {
            message,
            addr: Addr(mem),
            model: MODEL,
        };
        let bad = if realloc {
            "realloc(): invalid pointer"
        } else {
            "free(): invalid pointer"
        };
        let c = mem.wrapping_sub(2 * self.params.size_sz);
        if self.top == NIL || !self.heap.on_grid(c) || c >= self.heap.addr(self.top) {
            return invalid(bad);
        }
        let i = self.heap.idx(c);
        match self.heap.n(i).state() {
            _ if realloc => invalid(bad),
            State::Tcache => invalid("free(): double free detected in tcache 2"),
            State::Fast => {
                let f = self.params.fastbin_index(self.heap.size(i));
                if self.fastbins[f] == i {
                    invalid("double free or corruption (fasttop)")
                } else {
                    AllocError::DoubleFree {
                        addr: Addr(mem),
                        model: MODEL,
                    }
                }
            }
            State::Unsorted | State::Small | State::Large => {
                invalid("double free or corruption (!prev)")
            }
            _ => invalid(bad),
        }
    }

    /// `_mid_memalign(align, bytes)`: `memalign`, `aligned_alloc`, `posix_memalign`.
    /// Alignments ≤ 16 are plain `malloc`; others never take from the tcache in 2.36.
    ///
    /// # Errors
    /// `BadAlignment` above `SIZE_MAX / 2 + 1`; `TooLarge` beyond `PTRDIFF_MAX`.
    pub fn memalign(&mut self, align: usize, size: usize) -> Result<Addr, AllocError> {
        let mut align = align as u64;
        if align <= self.params.malloc_alignment {
            return self.malloc(size);
        }
        align = align.max(self.params.min_chunk);
        if align > (1u64 << 63) {
            return Err(AllocError::BadAlignment {
                align,
                model: MODEL,
            });
        }
        if !align.is_power_of_two() {
            align = align.next_power_of_two();
        }
        let nb = self
            .params
            .checked_request2size(size as u64)
            .filter(|&nb| nb <= u64::MAX - align - self.params.min_chunk)
            .ok_or_else(|| self.too_large(size as u64))?;
        let mem = self.int_memalign(align, nb)?;
        let out = if self.maybe_mapped(mem) {
            Out::Mapped(mem)
        } else {
            Out::Chunk(self.heap.idx(mem - 2 * self.params.size_sz))
        };
        Ok(Addr(self.account(out, size as u64, size as u64)))
    }

    /// `valloc(size)`: page-aligned.
    ///
    /// # Errors
    /// As [`memalign`](Self::memalign).
    pub fn valloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        self.memalign(self.vm.page_size() as usize, size)
    }

    /// `pvalloc(size)`: page-aligned, size rounded up to whole pages (as malloc.c rounds).
    ///
    /// # Errors
    /// As [`memalign`](Self::memalign).
    pub fn pvalloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        let page = self.vm.page_size();
        // malloc.c rounds with `& -(pagesize - 1)`, which keeps bit 0: copied as it is
        let rounded = (size as u64)
            .checked_add(page - 1)
            .ok_or_else(|| self.too_large(size as u64))?
            & (page - 1).wrapping_neg();
        self.memalign(page as usize, rounded as usize)
    }

    /// `mallopt(param, value)`: consolidates the fastbins, then sets `M_MXFAST` (1),
    /// `M_TRIM_THRESHOLD` (-1), `M_TOP_PAD` (-2), `M_MMAP_THRESHOLD` (-3), `M_MMAP_MAX`
    /// (-4); returns glibc's 1 (done) or 0 (refused). Other parameters change no address.
    pub fn mallopt(&mut self, param: i32, value: i32) -> i32 {
        self.malloc_consolidate();
        let v = value as i64;
        match param {
            1 => {
                if v >= 0 && v as u64 <= self.params.max_fast_size {
                    self.max_fast = self.params.max_fast_for(v as u64);
                    1
                } else {
                    0
                }
            }
            -1 => {
                self.trim_threshold = v as u64;
                self.no_dyn_threshold = true;
                1
            }
            -2 => {
                self.top_pad = v as u64;
                self.no_dyn_threshold = true;
                1
            }
            -3 => {
                // HEAP_MAX_SIZE / 2 == DEFAULT_MMAP_THRESHOLD_MAX
                if v >= 0 && v as u64 <= self.params.mmap_threshold_max {
                    self.mmap_threshold = v as u64;
                    self.no_dyn_threshold = true;
                    1
                } else {
                    0
                }
            }
            -4 => {
                self.n_mmaps_max = v.max(0) as u64;
                self.no_dyn_threshold = true;
                1
            }
            _ => 1,
        }
    }

    /// `__libc_free` of `mem` (not NULL). The error is boxed: the result is one register.
    fn libc_free(&mut self, mem: u64) -> Result<(), Box<AllocError>> {
        // the common case first: an in-use chunk of the brk heap (below top, so its user
        // pointer is below the break and it cannot be a mapping)
        if let Some(p) = self.below_top(mem) {
            let tag = *self.heap.n(p);
            if tag.state() == State::InUse {
                if !self.tcache_inited {
                    self.tcache_init()?;
                }
                self.account_free(p);
                self.int_free_g(p, tag.size_g());
                return Ok(());
            }
        }
        self.free_not_in_use(mem)
    }

    /// `__libc_free` of `mem` that is not an in-use chunk of the brk heap: a mapping's,
    /// or glibc's diagnosis (out of line: the heap path above stays small).
    #[inline(never)]
    fn free_not_in_use(&mut self, mem: u64) -> Result<(), Box<AllocError>> {
        if self.maybe_mapped(mem) {
            self.free_mapped(mem, true);
            return Ok(());
        }
        Err(Box::new(self.diagnose(mem, false)))
    }

    /// `__libc_malloc`. The error is boxed: the result comes back in two registers. The
    /// tcache and `_int_malloc`'s quick paths here, the rest out of line.
    fn libc_malloc(&mut self, size: usize) -> Result<Addr, Box<AllocError>> {
        let req = size as u64;
        let Some(nb) = self.params.checked_request2size(req) else {
            return Err(Box::new(self.too_large(req)));
        };
        let tc = self.tidx(nb);
        // tcache_lim is 0 until the tcache is carved (by malloc_slow)
        let c = if tc < self.tcache_lim && self.tcache_counts[tc] > 0 {
            self.served = Served::Tcache;
            self.tcache_get(tc)
        } else {
            match self.tcache_inited.then(|| self.int_malloc_quick(nb)) {
                Some(Some(c)) => c,
                _ => return self.malloc_slow(req, nb),
            }
        };
        self.mmap_pin = None;
        Ok(Addr(self.account(Out::Chunk(c), req, req)))
    }

    /// `__libc_malloc` of a request of `req` bytes (chunk size `nb`) the tcache and the
    /// quick paths did not serve: the tcache carved if need be (then empty), then the full
    /// `_int_malloc`.
    #[inline(never)]
    fn malloc_slow(&mut self, req: u64, nb: u64) -> Result<Addr, Box<AllocError>> {
        self.maybe_init_tcache()?;
        let out = self.int_malloc_full(nb)?;
        self.mmap_pin = None;
        Ok(Addr(self.account(out, req, req)))
    }
}

impl Allocator for Glibc {
    fn name(&self) -> &'static str {
        MODEL
    }

    // malloc and free inline into their callers (in other crates too) as a call whose
    // result comes back in registers; the 48-byte error is unboxed only when there is one

    #[inline]
    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        self.libc_malloc(size).map_err(|e| *e)
    }

    #[inline]
    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() {
            return Ok(());
        }
        self.libc_free(addr.0).map_err(|e| *e)
    }

    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        if addr.is_null() {
            return self.malloc(size);
        }
        if size == 0 {
            if !self.maybe_mapped(addr.0) {
                self.live_chunk(addr.0, true)?;
            }
            self.libc_free(addr.0).map_err(|e| *e)?;
            return Ok(Addr::NULL);
        }
        let nb = self
            .params
            .checked_request2size(size as u64)
            .ok_or_else(|| self.too_large(size as u64))?;
        if let Some(m) = self.maybe_mapped(addr.0).then(|| self.mmaps[&addr.0]) {
            // mremap_chunk: same pages, or a remapping (vm::mremap: as the kernel does it)
            let page = self.vm.page_size();
            let offset = addr.0 - 2 * self.params.size_sz - m.base;
            let new_len = (nb + offset + self.params.size_sz).next_multiple_of(page);
            self.served = Served::Mremap;
            // the program filled the block it now resizes (see the heap path below)
            self.wrote(addr.0, m.req);
            self.stats.live_bytes = self.stats.live_bytes - m.req + size as u64;
            self.stats.peak_live_bytes = self.stats.peak_live_bytes.max(self.stats.live_bytes);
            if new_len == m.len {
                if let Some(e) = self.mmaps.get_mut(&addr.0) {
                    e.req = size as u64;
                }
                self.mmap_pin = None;
                return Ok(addr);
            }
            let base = if self.mmap_pin.is_some() {
                // pinned where the recording shows the kernel put it; the pages move
                // with their contents: what was resident stays so
                let kept = if self.vm.tracking() {
                    self.vm.resident_offsets(m.base, m.len.min(new_len))
                } else {
                    Vec::new()
                };
                let _ = self.vm.munmap(Addr(m.base), m.len);
                let base = match self.map(new_len) {
                    Ok(base) => base,
                    Err(e) => {
                        // mremap and the malloc glibc tries next both failed: realloc
                        // returns NULL and the block stays where it was, as it was
                        let _ = self.vm.map_fixed(Addr(m.base), m.len);
                        for off in kept {
                            self.vm.touch(m.base + off, 1);
                        }
                        self.stats.live_bytes = self.stats.live_bytes + m.req - size as u64;
                        return Err(e);
                    }
                };
                for off in kept {
                    self.vm.touch(base + off, 1);
                }
                base
            } else {
                // the kernel's mremap: in place when it can, else moved (vm::mremap); when
                // it cannot, nothing moved: realloc returns NULL, the block as it was
                match self.vm.mremap(Addr(m.base), m.len, new_len) {
                    Ok(base) => base.0,
                    Err(e) => {
                        self.stats.live_bytes = self.stats.live_bytes + m.req - size as u64;
                        return Err(e);
                    }
                }
            };
            self.mmaps.remove(&addr.0);
            let mem = base + offset + 2 * self.params.size_sz;
            self.mmaps.insert(
                mem,
                Mapped {
                    base,
                    len: new_len,
                    req: size as u64,
                },
            );
            self.note_mapped();
            return Ok(Addr(mem));
        }
        let p = self.live_chunk(addr.0, true)?;
        let old = self.account_free(p);
        // Residency: a program resizes a block it has filled (a list grows when full), so
        // its `old` bytes are written; the resized block holds their copy, and the bytes
        // beyond are written only as the program uses them, which the next resize shows.
        self.wrote(addr.0, old);
        let mem = match self.int_realloc(p, nb) {
            Ok(mem) => mem,
            Err(e) => {
                // realloc returns NULL: the old block stays live, as it was
                self.heap.set_req(p, old);
                self.stats.live_bytes += old;
                self.stats.live_blocks += 1;
                return Err(e);
            }
        };
        self.mmap_pin = None;
        let out = if self.maybe_mapped(mem) {
            Out::Mapped(mem)
        } else {
            Out::Chunk(self.heap.idx(mem - 2 * self.params.size_sz))
        };
        Ok(Addr(self.account(out, size as u64, old.min(size as u64))))
    }

    fn calloc(&mut self, nelem: usize, elsize: usize) -> Result<Addr, AllocError> {
        let bytes = (nelem as u64)
            .checked_mul(elsize as u64)
            .ok_or_else(|| self.too_large(u64::MAX))?;
        // __libc_calloc sets the tcache up before _int_malloc checks the size
        self.maybe_init_tcache()?;
        let nb = self
            .params
            .checked_request2size(bytes)
            .ok_or_else(|| self.too_large(bytes))?;
        // MORECORE_CLEARS: memory above the highest break ever is fresh from the kernel
        let oldtop = self.top_chunk().map(|(a, _)| a.0);
        let fresh_from = self.vm.brk_high().0;
        let out = self.int_malloc(nb).map_err(|e| *e)?;
        self.mmap_pin = None;
        let cleared = match out {
            Out::Mapped(_) => 0, // mmapped memory is zero already: no memset
            Out::Chunk(c) => {
                let p = self.heap.addr(c);
                let mut csz = self.heap.size(c);
                if Some(p) == oldtop && p + csz > fresh_from {
                    csz = fresh_from.saturating_sub(p);
                }
                // memset (mem, 0, csz - SIZE_SZ)
                csz.saturating_sub(self.params.size_sz)
            }
        };
        Ok(Addr(self.account(out, bytes, cleared)))
    }

    fn stats(&self) -> Stats {
        self.stats.clone()
    }

    fn address_space_mut(&mut self) -> Option<&mut AddressSpace> {
        Some(&mut self.vm)
    }
}

#[cfg(test)]
mod tests;
