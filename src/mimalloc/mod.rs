//! mimalloc 2.1.2 as CPython 3.13 vendors it (Objects/mimalloc) and runs it in the GIL
//! build under `PYTHONMALLOC=mimalloc`: OBJ and MEM on one thread's default heap, RAW
//! left to libc. The sibling of [`pymalloc`](crate::pymalloc) at the object-allocator
//! layer: both sit on the OS (mmap) and serve CPython's O and M domains.
//!
//! ```text
//!  arena (1 GiB reserved at a hint)   arena.rs    32 MiB blocks, first fit
//!   └ segment (32 MiB, aligned)        segment.rs  512 slices of 64 KiB; slice 0 = header;
//!      │                                           free spans on tld->spans[36] queues
//!      └ page (a span: 1 slice small, 8 medium, n large, the rest of a huge segment)
//!         │                            page.rs     free / local_free; extension; queues
//!         └ block (one size class)                 heap->pages[75]: 73 classes + huge + full
//!  heap.rs: malloc (fast path, generic path), free, realloc, calloc
//!  stats.rs: the mimalloc section of `_PyObject_DebugMallocStats` (CPython 3.13)
//!  size_class.rs: mi_bin, the queue block sizes, page kinds, page start offsets
//! ```
//!
//! Invariants, as equations (checked after every step by proptests/mimalloc.rs through
//! [`Mimalloc::check_invariants`]; `|l|` is a list's length, one thread so no
//! `thread_free`):
//! - every page: `used + |free| + |local_free| == capacity <= reserved`;
//! - every block on `free`/`local_free` and every live block is one of the page's first
//!   `capacity` blocks, and lies inside the page:
//!   `page_start <= b` and `b + block_size <= page_start + reserved · block_size <=
//!   span_start + slices · 64 KiB`;
//! - every page's span lies inside its segment: `slice_index + slice_count <=
//!   segment_slices`;
//! - the spans of a segment tile it: `Σ slices == slice_entries`, no two free spans are
//!   adjacent, each free span sits on span queue `slice_bin(slices)`;
//! - every page sits on exactly one page queue: `bin(block_size)`, the full queue, or the
//!   huge queue; `segment.used == pages in it`;
//! - every segment lies in the arena blocks it claimed; no two segments overlap;
//! - the first arena's flat slice table agrees with the pages:
//!   `flat_pages[(addr - arena.start) >> 16] == page` for every slice of every live page's
//!   span there, `NONE` elsewhere (what `mi_free` reads instead of segment → slice);
//! - `resident_bytes == Σ segments info_slices · 64 KiB + Σ pages ⌈(start + capacity ·
//!   block_size − span_start) / 4 KiB⌉ · 4 KiB`, kept as each changes.
//!
//! Reading the model (a heap map, an explanation): [`Mimalloc::arenas`] → [`Mimalloc::segments`]
//! (each with [`Segment::spans`]: first slice, slices, free, page id) → [`Mimalloc::page`]
//! → [`Page::blocks`] (every block's address and [`BlockState`]: live with its request, on
//! `free` or `local_free` at a position, or untouched), [`Page::free_list`] and
//! [`Page::local_free_list`] head first; [`Mimalloc::page_of`] and [`Mimalloc::block_at`]
//! from an address; [`Mimalloc::pages`] with the queue each sits on. All read-only.
//!
//! `Mimalloc<S>` is generic over its [`OsSource`]: [`OwnOs`] (its own address space) or
//! [`PinnedOs`] (the mappings of a recording, as pymalloc takes its arenas from `A` lines).

pub mod arena;
pub mod heap;
pub mod invariants;
pub mod page;
pub mod segment;
pub mod size_class;
pub mod stats;

pub use arena::{Arena, MemId, OsSource, OwnOs, PinnedOs};
pub use page::{BlockState, Page, PageQueue};
pub use segment::{Segment, SpanQueue};
pub use stats::MiStats;

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use std::collections::HashMap;

/// The model's name in reports and errors.
pub const NAME: &str = "mimalloc-2.1.2";
/// The null index of the model's lists.
pub const NONE: u32 = u32::MAX;

/// mimalloc's heap, segments and arenas for one thread, over the OS calls of `S`.
#[derive(Debug, Clone)]
pub struct Mimalloc<S: OsSource = OwnOs> {
    pub(crate) os: S,                          // mmap / munmap
    pub(crate) arenas: Vec<Arena>,             // mi_arenas[]
    pub(crate) os_segments: HashMap<u64, u32>, // base >> 25 -> segment, for OS-mapped segments
    pub(crate) segments: Vec<Segment>,         // every segment slot (dead ones reusable)
    pub(crate) free_segment_ids: Vec<u32>,     // dead segment slots
    pub(crate) pages: Vec<Page>,               // every page slot
    pub(crate) free_page_ids: Vec<u32>,        // dead page slots
    pub(crate) spans: Vec<SpanQueue>,          // tld->segments.spans[MI_SEGMENT_BIN_MAX + 1]
    pub(crate) queues: Vec<PageQueue>,         // heap->pages[MI_BIN_FULL + 1]
    pub(crate) direct: [u8; 129],              // pages_free_direct as bins: wsize -> bin
    pub(crate) page_retired_min: usize,        // heap->page_retired_min
    pub(crate) page_retired_max: usize,        // heap->page_retired_max
    pub(crate) heartbeat: u64,                 // tld->heartbeat: generic-path calls
    pub(crate) live_blocks: u64,               // live blocks
    pub(crate) live_bytes: u64,                // bytes requested by live blocks
    pub(crate) peak_live_bytes: u64,           // largest live_bytes
    pub(crate) mapped_bytes: u64,              // bytes in live segments
    pub(crate) peak_mapped_bytes: u64,         // largest mapped() seen at a segment allocation
    pub(crate) resident_pages: u64,            // Σ pages' `resident`
    pub(crate) resident_headers: u64,          // Σ live segments' header slices, in bytes
    pub(crate) flat_base: u64,                 // the first arena's start (0: none yet)
    pub(crate) flat_pages: Vec<u32>, // its slices: (addr - flat_base) >> 16 -> page or NONE
}

impl Default for Mimalloc<OwnOs> {
    fn default() -> Self {
        Mimalloc::new(OwnOs::default())
    }
}

impl Mimalloc<PinnedOs> {
    /// A model whose mappings are pinned to a recording's `S` lines.
    pub fn pinned() -> Self {
        Mimalloc::new(PinnedOs::default())
    }
}

impl<S: OsSource> Mimalloc<S> {
    /// An empty heap over `os`.
    pub fn new(os: S) -> Self {
        Mimalloc {
            os,
            arenas: Vec::new(),
            os_segments: HashMap::new(),
            segments: Vec::new(),
            free_segment_ids: Vec::new(),
            pages: Vec::new(),
            free_page_ids: Vec::new(),
            spans: vec![
                SpanQueue {
                    first: NONE,
                    last: NONE
                };
                size_class::SEGMENT_BIN_MAX + 1
            ],
            queues: Self::empty_queues(),
            direct: size_class::direct_bins(),
            page_retired_min: size_class::BIN_FULL,
            page_retired_max: 0,
            heartbeat: 0,
            live_blocks: 0,
            live_bytes: 0,
            peak_live_bytes: 0,
            mapped_bytes: 0,
            peak_mapped_bytes: 0,
            resident_pages: 0,
            resident_headers: 0,
            flat_base: 0,
            flat_pages: Vec::new(),
        }
    }

    /// The OS source.
    pub fn os(&self) -> &S {
        &self.os
    }

    /// The OS source, mutably (a pinned replay queues the recording's mappings here).
    pub fn os_mut(&mut self) -> &mut S {
        &mut self.os
    }

    /// The arenas reserved so far.
    pub fn arenas(&self) -> &[Arena] {
        &self.arenas
    }

    /// The live segments.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter().filter(|s| s.alive)
    }

    /// The live pages, with the queue each sits on.
    pub fn pages(&self) -> impl Iterator<Item = (usize, &Page)> {
        self.queues.iter().enumerate().flat_map(move |(q, queue)| {
            let mut id = queue.first;
            std::iter::from_fn(move || {
                if id == NONE {
                    return None;
                }
                let p = &self.pages[id as usize];
                id = p.next;
                Some((q, p))
            })
        })
    }

    /// Live page `id` (the ids [`Segment::spans`] names), `None` for a dead slot.
    pub fn page(&self, id: u32) -> Option<&Page> {
        self.pages.get(id as usize).filter(|p| p.alive)
    }

    /// The live page whose span holds `addr`, with its id (`_mi_ptr_page`).
    pub fn page_of(&self, addr: Addr) -> Option<(u32, &Page)> {
        let id = self.page_at(addr.0)?;
        Some((id, &self.pages[id as usize]))
    }

    /// The page and block index of the block starting at `addr`, if one does.
    pub fn block_at(&self, addr: Addr) -> Option<(u32, u16)> {
        self.block_of(addr.0)
    }

    /// The live segment whose memory holds `addr` (`_mi_ptr_segment`, checked), with its
    /// model index.
    pub fn segment_of(&self, addr: Addr) -> Option<(u32, &Segment)> {
        let id = self.segment_at(addr.0)?;
        let s = &self.segments[id as usize];
        (s.alive && addr.0 >= s.base && addr.0 - s.base < s.size()).then_some((id, s))
    }

    /// Live segment `id` (the index [`Page::segment_index`] names), `None` for a dead slot.
    pub fn segment(&self, id: u32) -> Option<&Segment> {
        self.segments.get(id as usize).filter(|s| s.alive)
    }

    /// The page queue `q` (`heap->pages[q]`).
    pub fn queue(&self, q: usize) -> &PageQueue {
        &self.queues[q]
    }

    /// Live blocks.
    pub fn live_blocks(&self) -> u64 {
        self.live_blocks
    }

    /// Generic-path calls so far (`tld->heartbeat`).
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat
    }

    /// What the model knows about `addr`, in words (for divergence reports).
    pub fn describe(&self, addr: Addr) -> String {
        let Some(seg) = self.segment_at(addr.0) else {
            return format!("{addr} is in no segment of the model");
        };
        let s = &self.segments[seg as usize];
        let slice = (addr.0 - s.base) / size_class::SLICE_SIZE;
        let Some(id) = self.page_at(addr.0) else {
            return format!(
                "{addr} is in segment {} slice {slice}, in no page (a free span or the header)",
                s.base()
            );
        };
        let p = &self.pages[id as usize];
        let head = |l: &Vec<u16>| {
            l.last()
                .map_or("NULL".to_string(), |&i| format!("{:#x}", p.block(i)))
        };
        let live = self
            .block_of(addr.0)
            .is_some_and(|(_, i)| p.req[i as usize] != page::NOT_LIVE);
        format!(
            "{addr} is in segment {} page at slice {} ({} slices, {}-byte blocks, queue {}{}; \
             used {}, capacity {}, reserved {}; free head {}, {} more; local_free head {}, {} \
             more){}",
            s.base(),
            p.slice_index,
            p.slice_count,
            p.xblock_size,
            p.queue(),
            if p.retire_expire > 0 { ", retired" } else { "" },
            p.used,
            p.capacity,
            p.reserved,
            head(&p.free),
            p.free.len().saturating_sub(1),
            head(&p.local_free),
            p.local_free.len().saturating_sub(1),
            if live { ", live" } else { "" }
        )
    }
}

impl<S: OsSource> Allocator for Mimalloc<S> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        self.mi_malloc(size as u64)
    }

    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        self.mi_free(addr)
    }

    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        self.mi_realloc(addr, size as u64)
    }

    fn calloc(&mut self, nelem: usize, elsize: usize) -> Result<Addr, AllocError> {
        self.mi_calloc(nelem as u64, elsize as u64)
    }

    fn stats(&self) -> Stats {
        Stats {
            live_bytes: self.live_bytes,
            live_blocks: self.live_blocks,
            mapped_bytes: self.mapped(),
            peak_live_bytes: self.peak_live_bytes,
            peak_mapped_bytes: self.peak_mapped_bytes.max(self.mapped()),
        }
    }
}

impl<S: OsSource> Mimalloc<S> {
    /// Bytes mapped from the OS: the arenas (never given back) and the segments mapped
    /// on their own.
    pub fn mapped(&self) -> u64 {
        let arenas: u64 = self.arenas.iter().map(|a| a.size()).sum();
        let own: u64 = self
            .os_segments
            .values()
            .map(|&s| self.segments[s as usize].size())
            .sum();
        arenas + own
    }

    /// Bytes of pages the model has written and not given back, in 4 KiB OS pages: each
    /// live segment's header slices (`info_slices`: the segment and its slice table),
    /// and each live page from its first slice to the end of its `capacity` blocks (the
    /// extension writes each block's free-list link; blocks beyond were never touched).
    /// A page's span given back to its segment counts no more (mimalloc purges free
    /// spans, the `N` lines of a recording, after a delay this model does not time).
    pub fn resident_bytes(&self) -> u64 {
        self.resident_headers + self.resident_pages
    }

    /// Bytes in live segments (arena blocks and OS mappings holding pages).
    pub fn segment_bytes(&self) -> u64 {
        self.mapped_bytes
    }
}
