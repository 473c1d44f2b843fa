//! mimalloc in the teaching commands: a CPython 3.13 mimalloc recording (or a CPython 3
//! recording's O/M calls run through mimalloc in its own address space: the same program
//! under `PYTHONMALLOC=mimalloc`) walked event by event through the mimalloc 2.1.2 model,
//! every block's last event and the rule that placed it remembered; `explain` of one
//! address and `map` of the heap read off the model's state.
//!
//! ```text
//!  event i:  m O 64 315400100c0
//!   1. before: Pre::of — the first page of heap->pages[bin(n)] (what alloc.c's fast path
//!      and page.c's mi_find_free_page look at first): its `free` head, `local_free` head,
//!      capacity; on the slow path also the queue's pages and the live segments
//!   2. the step (MimallocCheck: pinned to the recording, or the own-mode engine)
//!   3. after: the block the model returned, its page and segment, compared with Pre:
//!        free head ............ FreeHead (reused, or threaded by mi_page_extend_free)
//!        local_free head ...... Collected        (page.c _mi_page_free_collect)
//!        block >= capacity .... Extended         (page.c mi_page_extend_free)
//!        another page queued .. QueueWalk        (page.c mi_page_queue_find_free_ex)
//!        a page new in an old segment  FreshPage (segment.c mi_segments_page_alloc)
//!        a new segment ........ NewSegment / NewArena / HugeSegment / LargePage
//!
//!  explain: arena -> segment (32 MiB: 512 slices of 64 KiB, slice 0 the header)
//!             -> span (free, or a page's) -> page (block 0 at start, bs, bin, capacity,
//!                reserved) -> block k = (addr - start) / bs
//!  map:     a segment = 8 lines of 64 slices; a page's blocks as runs of one state laid
//!           along its slices: used | free | local_free | uncarved (beyond capacity)
//! ```
//! Event numbers of a mimalloc recording count its OS lines, as `check` and `stats` do;
//! `--at N` stops after the first call numbered `>= N`. Invariant: after event `i`,
//! `touched[a]` holds, for every block address `a` the model has handed out, the last
//! event `<= i` that allocated or freed it.

use super::explain::{Explanation, LastEvent, Owner, SizeClass};
use super::walk::At;
use crate::addr::Addr;
use crate::check::mimalloc::MimallocCheck;
use crate::check::CheckOptions;
use crate::error::AllocError;
use crate::mimalloc::arena::OsSource;
use crate::mimalloc::size_class::{
    self, BIN_HUGE, MEDIUM_OBJ_SIZE_MAX, SLICE_SIZE, SMALL_OBJ_SIZE_MAX,
};
use crate::mimalloc::{BlockState, MemId, Mimalloc, OwnOs, NAME, NONE};
use crate::replay::mimalloc::{mi_call, ModelRef};
use crate::replay::{
    drive, om_call, Addresses, Cause, Flow, ModelKind, ModelSpec, Op, Replay, ReplayError, Source,
};
use crate::report::svg::escape;
use crate::trace::mimalloc::MimallocReader;
use crate::trace::pymalloc3::Pymalloc3Reader;
use crate::trace::Event;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

/// Runs `$body` with `$m` bound to the walk's model, whichever mode it runs in.
macro_rules! on_model {
    ($w:expr, $m:ident => $body:expr) => {
        match $w.model_ref() {
            ModelRef::Pinned($m) => $body,
            ModelRef::Own($m) => $body,
        }
    };
}
pub(crate) use on_model;

/// The rule mimalloc 2.1.2 followed to place a block (alloc.c, page.c, segment.c,
/// arena.c), as the model's state before and after the call shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiRule {
    /// The first page of the class queue had a block on `free`; its head was popped.
    FreeHead {
        /// The page (the first byte of its span).
        page: u64,
        /// False when the block had never been handed out (threaded by an extension).
        reused: bool,
    },
    /// `free` was empty: `local_free` became `free`, its head (the block freed last) popped.
    Collected {
        /// The page (the first byte of its span).
        page: u64,
    },
    /// Both lists empty: the page was extended by never-used blocks; the first popped.
    Extended {
        /// The page (the first byte of its span).
        page: u64,
    },
    /// The queue's first page had nothing: the walk of the queue found this page.
    QueueWalk {
        /// The page (the first byte of its span).
        page: u64,
    },
    /// No queued page had room: a fresh page from a free span of a segment already there.
    FreshPage {
        /// The page (the first byte of its span).
        page: u64,
        /// Slices of its span.
        slices: u32,
    },
    /// No free span fitted: a new segment claimed from an arena already reserved.
    NewSegment {
        /// The segment's base.
        segment: u64,
    },
    /// No arena had room: a new arena reserved (its first segment at its start).
    NewArena {
        /// The arena's start.
        arena: u64,
    },
    /// More than 128 KiB: a page of one block, its span from a segment's free spans.
    LargePage {
        /// The page (the first byte of its span).
        page: u64,
        /// Slices of its span.
        slices: u32,
    },
    /// More than 16 MiB: a segment of its own.
    HugeSegment {
        /// The segment's base.
        segment: u64,
    },
    /// `mi_realloc` kept the block: the new size fits and is at least half its usable size.
    ReallocInPlace,
}

impl MiRule {
    /// One line a learner can read, citing the mimalloc source that does it.
    pub fn describe(&self) -> String {
        match *self {
            MiRule::FreeHead { page, reused: true } => format!(
                "free-list head (alloc.c _mi_page_malloc): the first page of heap->pages[bin] ({page:#x}) had a block on its `free` list; its head was popped — a block freed earlier, moved from `local_free` to `free` when the page was collected (LIFO)"
            ),
            MiRule::FreeHead { page, reused: false } => format!(
                "free-list head (alloc.c _mi_page_malloc): the first page of heap->pages[bin] ({page:#x}) had a block on its `free` list; its head was popped — never handed out before: page.c mi_page_extend_free had threaded it onto `free` in address order"
            ),
            MiRule::Collected { page } => format!(
                "collected (page.c mi_find_free_page → _mi_page_free_collect): page {page:#x}'s `free` list was empty, so its `local_free` list became `free` and its head — the block freed last there — was popped"
            ),
            MiRule::Extended { page } => format!(
                "extended (page.c mi_page_queue_find_free_ex → mi_page_extend_free): page {page:#x} had no block on `free` or `local_free` and capacity < reserved, so up to max(4096 / block size, 4) never-used blocks were added in address order; the first was popped"
            ),
            MiRule::QueueWalk { page } => format!(
                "queue walk (page.c mi_page_queue_find_free_ex): the queue's first page had no free block, so the walk went on (full pages to the full queue, mi_page_to_full) to page {page:#x}, which had room"
            ),
            MiRule::FreshPage { page, slices } => format!(
                "fresh page (page.c mi_page_fresh → segment.c mi_segments_page_alloc): no page of this class had room, so a span of {slices} slice(s) was taken from the first fitting free span on tld->spans (mi_segment_span_allocate; the rest split off) and made a page at {page:#x}; this is a block of its first extension"
            ),
            MiRule::NewSegment { segment } => format!(
                "new segment (segment.c mi_segment_alloc → arena.c _mi_arena_alloc_aligned): no free span fitted, so 32 MiB at {segment:#x} were claimed from the arena, first fit in blocks_inuse; slice 0 holds the segment's header and the page was carved after it"
            ),
            MiRule::NewArena { arena } => format!(
                "new arena (arena.c mi_arena_reserve): no arena had 32 MiB free (or none was reserved yet), so an arena was reserved at {arena:#x} (os.c's aligned hint) and its first segment claimed at its start"
            ),
            MiRule::LargePage { page, slices } => format!(
                "large page (page.c mi_large_huge_page_alloc → segment.c mi_segments_page_alloc): more than MI_MEDIUM_OBJ_SIZE_MAX (128 KiB), so a page of one block, {slices} slices at {page:#x}, from a free span; its queue is MI_BIN_HUGE"
            ),
            MiRule::HugeSegment { segment } => format!(
                "huge segment (segment.c mi_segment_huge_page_alloc): more than MI_LARGE_OBJ_SIZE_MAX (16 MiB), so the block got a segment of its own at {segment:#x} (MI_SEGMENT_HUGE), sized to it"
            ),
            MiRule::ReallocInPlace => "realloc in place (alloc.c _mi_heap_realloc_zero): the new size is at most the block's usable size and at least half of it, so the block stays".into(),
        }
    }

    /// A short code (the view page's legend).
    pub fn code(&self) -> u8 {
        match self {
            MiRule::FreeHead { reused: true, .. } => 1,
            MiRule::FreeHead { reused: false, .. } => 2,
            MiRule::Collected { .. } => 3,
            MiRule::Extended { .. } => 4,
            MiRule::QueueWalk { .. } => 5,
            MiRule::FreshPage { .. } => 6,
            MiRule::NewSegment { .. } => 7,
            MiRule::NewArena { .. } => 8,
            MiRule::LargePage { .. } => 9,
            MiRule::HugeSegment { .. } => 10,
            MiRule::ReallocInPlace => 11,
        }
    }

    /// The rules by [`code`](Self::code), one short line each (index 0 unused).
    pub const SHORT: [&'static str; 12] = [
        "",
        "free-list head (a block freed earlier): alloc.c _mi_page_malloc",
        "free-list head (never handed out, threaded by mi_page_extend_free): alloc.c _mi_page_malloc",
        "collected: `free` was empty, `local_free` became `free` (page.c _mi_page_free_collect)",
        "extended: never-used blocks added in address order (page.c mi_page_extend_free)",
        "queue walk: a later page of the class queue had room (page.c mi_page_queue_find_free_ex)",
        "fresh page from a free span (segment.c mi_segments_page_alloc)",
        "new segment claimed from the arena (segment.c mi_segment_alloc, arena.c)",
        "new arena reserved (arena.c mi_arena_reserve)",
        "large page: one block of more than 128 KiB (page.c mi_large_huge_page_alloc)",
        "huge segment: a block of more than 16 MiB (segment.c mi_segment_huge_page_alloc)",
        "realloc in place (alloc.c _mi_heap_realloc_zero)",
    ];
}

/// Where `mi_free` left a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiFreed {
    /// Pushed on its page's `local_free`.
    LocalFree,
    /// Pushed on `local_free`, and the page came off the full queue.
    Unfull,
    /// Its page's last block: the page stays, retired, for a few collect rounds.
    Retired,
    /// Its page's last block: the page's span went back to the segment's free spans.
    PageFreed,
    /// Its page was the segment's last: the segment went back to the arena (or the OS).
    SegmentFreed,
}

impl MiFreed {
    /// One line a learner can read.
    pub fn describe(&self) -> &'static str {
        match self {
            MiFreed::LocalFree => "free (alloc.c mi_free → _mi_free_block): pushed on its page's `local_free` list, not on `free`: the page's next mallocs see it only after _mi_page_free_collect (page.c)",
            MiFreed::Unfull => "free (alloc.c mi_free): pushed on its page's `local_free`; the page was on the full queue, so _mi_page_unfull (page.c) moved it back to the end of its class queue",
            MiFreed::Retired => "free of the page's last block: page.c _mi_page_retire kept the page, the only one of its queue, retired for a few rounds of _mi_heap_collect_retired (retire_expire)",
            MiFreed::PageFreed => "free of the page's last block: page.c _mi_page_free → segment.c _mi_segment_page_free gave its span back to the segment (mi_segment_span_free_coalesce: merged with free neighbours, onto tld->spans)",
            MiFreed::SegmentFreed => "free of the segment's last page: segment.c mi_segment_free gave the segment back (arena.c _mi_arena_free clears its blocks_inuse bits; a segment of its own is unmapped)",
        }
    }
}

/// The event that last allocated or freed a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MiTouch {
    /// Event number (a mimalloc recording's count OS lines).
    pub event: u64,
    /// 1-based trace line.
    pub line: u64,
    /// The bytes asked for (allocations), 0 for a free.
    pub size: u64,
    /// The rule that placed it (allocations).
    pub rule: Option<MiRule>,
    /// Where `mi_free` left it (frees).
    pub freed: Option<MiFreed>,
}

/// One block change an event made (the view page's deltas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiChange {
    /// A block handed out (model address).
    Alloc {
        /// Its address.
        addr: u64,
        /// The rule.
        rule: MiRule,
    },
    /// A block freed (model address).
    Free {
        /// Its address.
        addr: u64,
        /// Where it went.
        freed: MiFreed,
    },
}

/// What one event amounted to.
#[derive(Debug, Clone)]
pub struct MiStepped {
    /// Its number (a mimalloc recording's count OS lines).
    pub index: u64,
    /// The event.
    pub event: Event,
    /// Block changes (at most two: the old and new block of a moving realloc).
    pub changes: Vec<MiChange>,
}

/// The first page of a class queue before a call.
#[derive(Debug, Clone, Copy)]
struct First {
    id: u32,            // the page
    start: u64,         // its block 0
    free: Option<u64>,  // the head of its `free`
    local: Option<u64>, // the head of its `local_free`
    capacity: u32,      // its capacity
}

/// The first page of a class queue before a call, and (slow path) what else was there.
#[derive(Debug, Default)]
struct Pre {
    first: Option<First>,    // the queue's first page
    queued: Vec<(u32, u64)>, // slow path: the queue's pages (id, start)
    segments: Vec<u64>,      // slow path: live segments' bases
    arenas: usize,           // arenas reserved
    slow: bool,              // the generic path will run
}

impl Pre {
    /// Before a request of `n` bytes.
    fn of<S: OsSource>(m: &Mimalloc<S>, n: u64) -> Pre {
        let mut pre = Pre {
            arenas: m.arenas().len(),
            ..Pre::default()
        };
        let slow = if n > MEDIUM_OBJ_SIZE_MAX {
            true
        } else {
            let q = m.queue(size_class::bin(n));
            match m.page(q.first) {
                Some(p) => {
                    let free = p.free_list().next();
                    let local = p.local_free_list().next();
                    pre.first = Some(First {
                        id: q.first,
                        start: p.start(),
                        free,
                        local,
                        capacity: p.capacity(),
                    });
                    free.is_none() && local.is_none()
                }
                None => true,
            }
        };
        pre.slow = slow;
        if slow {
            if n <= MEDIUM_OBJ_SIZE_MAX {
                let q = size_class::bin(n);
                pre.queued = m
                    .pages()
                    .filter(|(qq, _)| *qq == q)
                    .map(|(_, p)| (page_id(m, p.start()), p.start()))
                    .collect();
            }
            pre.segments = m.segments().map(|s| s.base().0).collect();
        }
        pre
    }

    /// The rule that placed block `got` (a model address) of a request of `n` bytes.
    fn rule<S: OsSource>(&self, m: &Mimalloc<S>, got: u64, n: u64, seen: bool) -> Option<MiRule> {
        let (id, p) = m.page_of(Addr(got))?;
        let (_, seg) = m.segment_of(Addr(got))?;
        let span = seg.base().0 + u64::from(p.span().0) * SLICE_SIZE; // the page, by its span
        if self.slow && !self.segments.contains(&seg.base().0) {
            if m.arenas().len() > self.arenas {
                return Some(MiRule::NewArena {
                    arena: m.arenas().last().map_or(0, |a| a.start.0),
                });
            }
            if seg.is_huge() {
                return Some(MiRule::HugeSegment {
                    segment: seg.base().0,
                });
            }
            return Some(MiRule::NewSegment {
                segment: seg.base().0,
            });
        }
        if n > MEDIUM_OBJ_SIZE_MAX {
            return Some(MiRule::LargePage {
                page: span,
                slices: p.span().1,
            });
        }
        if let Some(First {
            id: fid,
            start: fstart,
            free,
            local,
            capacity: cap,
        }) = self.first
        {
            if fid == id && fstart == p.start() {
                return Some(if Some(got) == free {
                    MiRule::FreeHead {
                        page: span,
                        reused: seen,
                    }
                } else if Some(got) == local {
                    MiRule::Collected { page: span }
                } else if got >= p.start() + u64::from(cap) * p.block_size() {
                    MiRule::Extended { page: span }
                } else {
                    MiRule::QueueWalk { page: span }
                });
            }
        }
        if self.queued.contains(&(id, p.start())) {
            return Some(MiRule::QueueWalk { page: span });
        }
        Some(MiRule::FreshPage {
            page: span,
            slices: p.span().1,
        })
    }
}

/// The id of the live page whose block 0 is at `start`.
fn page_id<S: OsSource>(m: &Mimalloc<S>, start: u64) -> u32 {
    m.page_of(Addr(start)).map_or(NONE, |(id, _)| id)
}

/// The engine a walk runs.
enum Engine {
    /// A CPython 3.13 mimalloc recording, held to it (pinned, or `+own`).
    Recorded(Box<MimallocCheck>),
    /// A CPython 3 recording's O/M calls through mimalloc in its own address space.
    Own {
        model: Box<Mimalloc<OwnOs>>,
        moved: HashMap<u64, u64>, // recorded -> model address, where they differ
    },
}

/// A recording's state as the driver replays it through mimalloc: the model and, for
/// every block, its last event.
pub struct MiWalk {
    engine: Engine,                 // the model and how it is held
    touched: HashMap<u64, MiTouch>, // model address -> last event that allocated or freed it
    events: u64,                    // events replayed (numbered as the recording counts them)
    name: String,                   // the trace's name, for errors
    how: &'static str,              // pinned or own, in words
    pinned: bool,                   // the model's addresses are the recording's
    line: u64,                      // the line of the last event stepped
    stats_sizes: Vec<u64>,          // the recording's stats markers (RECORDER_STATS_SIZES)
    diverged: Option<String>,       // why the model left the recording, if it did
}

/// True when `model` names mimalloc (so a CPython 3 recording's teaching view runs it in
/// its own address space).
pub fn names_mimalloc(model: Option<&str>) -> bool {
    model
        .and_then(|n| ModelSpec::parse(n).ok())
        .is_some_and(|s| matches!(s.kind, ModelKind::Mimalloc) && s.lower.is_none())
}

/// The walk as the driver's consumer.
struct MiWalking<'w, F> {
    walk: &'w mut MiWalk, // the state
    f: F,                 // what the caller does with each step
}

impl<F: FnMut(&mut MiWalk, &MiStepped) -> Flow> Replay for MiWalking<'_, F> {
    fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
        match self.walk.apply(index, ev)? {
            Some(s) => Ok((self.f)(self.walk, &s)),
            None => Ok(Flow::Diverged),
        }
    }

    fn explain(&mut self, addr: Addr) -> Option<String> {
        let a = self.walk.to_model(addr);
        Some(on_model!(self.walk, m => m.describe(a)))
    }
}

impl MiWalk {
    /// Replays the recording at `path` — a CPython 3.13 mimalloc recording (pinned, or
    /// `mimalloc-2.1.2+own`), or a CPython 3 recording whose O/M calls mimalloc serves in
    /// its own address space (`model` names mimalloc) — through the driver, handing every
    /// step to `f` until it says [`Flow::Stop`] or the trace ends.
    ///
    /// # Errors
    /// The trace cannot be read; the model name is not mimalloc; the model refuses a call
    /// or (held to a mimalloc recording) diverges from it.
    pub fn replay(
        path: &Path,
        model: Option<String>,
        progress: bool,
        f: impl FnMut(&mut MiWalk, &MiStepped) -> Flow,
    ) -> Result<MiWalk, ReplayError> {
        let label = path.display().to_string();
        let opts = CheckOptions {
            model: model.clone(),
            keep_going: false,
            progress,
        };
        let first = crate::trace::LineReader::open(path)
            .and_then(|mut r| Ok(r.next_line()?.unwrap_or("").to_string()))?;
        let recorded = first.contains("mimalloc allocation trace");
        let mut walk = MiWalk {
            engine: Engine::Own {
                model: Box::default(),
                moved: HashMap::new(),
            },
            touched: HashMap::new(),
            events: 0,
            name: label.clone(),
            how: "its own address space: the same program's O/M calls under mimalloc",
            pinned: false,
            line: 0,
            stats_sizes: Vec::new(),
            diverged: None,
        };
        if recorded {
            let mode = crate::check::mimalloc::model_for(&opts)?;
            let mut reader = MimallocReader::open(path)?;
            let os = reader.share_os_lines();
            let mut src = Source::new(&mut reader)?;
            let check = MimallocCheck::new(mode, src.header(), os);
            walk.stats_sizes = crate::trace::mimalloc::stats_sizes(src.header());
            walk.engine = Engine::Recorded(Box::new(check));
            walk.pinned = mode == Addresses::Pinned;
            walk.how = match mode {
                Addresses::Pinned => "pinned to the recording's mappings",
                Addresses::Own => "its own address space, addresses compared by offset",
            };
            let mut w = MiWalking { walk: &mut walk, f };
            let r = drive(&mut src, &mut w, &opts.drive(&label));
            if let Err(e) = r {
                return Err(match &walk.engine {
                    Engine::Recorded(c) => c.renumber(e),
                    Engine::Own { .. } => e,
                });
            }
        } else {
            if !names_mimalloc(model.as_deref()) {
                return Err(ReplayError::Unsupported(format!(
                    "{label}: not a CPython 3.13 mimalloc recording; name --model mimalloc-2.1.2 to run a CPython 3 recording's O/M calls through mimalloc"
                )));
            }
            if let Some(spec) = model.as_deref().and_then(|n| ModelSpec::parse(n).ok()) {
                // the name's what-if (a purge policy) holds here as in compare and replay
                walk.engine = Engine::Own {
                    model: Box::new(spec.own_mimalloc()),
                    moved: HashMap::new(),
                };
            }
            let mut reader = Pymalloc3Reader::open(path)?;
            let mut src = Source::new(&mut reader)?;
            let mut w = MiWalking { walk: &mut walk, f };
            drive(&mut src, &mut w, &opts.drive(&label))?;
        }
        match walk.diverged.take() {
            Some(why) => Err(ReplayError::Unsupported(why)),
            None => Ok(walk),
        }
    }

    /// Replays the recording at `path` up to the point `at` (a mimalloc recording's event
    /// numbers count its OS lines: the first call numbered `>= N`); returns the state and
    /// the number of the event reached.
    ///
    /// # Errors
    /// As [`replay`](Self::replay); the trace ends before the point.
    pub fn to(
        path: &Path,
        model: Option<String>,
        progress: bool,
        at: At,
    ) -> Result<(MiWalk, u64), ReplayError> {
        let mut reached = None;
        let walk = MiWalk::replay(path, model, progress, |_, s| {
            at.stop(&mut reached, s.index, &s.event)
        })?;
        let i = at
            .reached(reached, walk.events, &walk.name)
            .map_err(ReplayError::Unsupported)?;
        Ok((walk, i))
    }

    /// The model, read-only.
    pub fn model_ref(&self) -> ModelRef<'_> {
        match &self.engine {
            Engine::Recorded(c) => c.replayer().model(),
            Engine::Own { model, .. } => ModelRef::Own(model),
        }
    }

    /// The model's address of a recorded one (the same when pinned).
    pub fn to_model(&self, rec: Addr) -> Addr {
        match &self.engine {
            Engine::Recorded(c) => c.replayer().model_addr(rec),
            Engine::Own { moved, .. } => moved.get(&rec.0).map_or(rec, |&m| Addr(m)),
        }
    }

    /// The last event that allocated or freed the block at `addr` (a model address).
    pub fn last_touch(&self, addr: Addr) -> Option<MiTouch> {
        self.touched.get(&addr.0).copied()
    }

    /// Events replayed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The trace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's live pages.
    pub fn pages(&self) -> usize {
        on_model!(self, m => m.pages().count())
    }

    /// The model's live segments.
    pub fn segment_count(&self) -> usize {
        on_model!(self, m => m.segments().count())
    }

    /// The model's live blocks (`Σ used`).
    pub fn live_blocks(&self) -> u64 {
        on_model!(self, m => m.live_blocks())
    }

    /// The request sizes after which the recorder printed CPython's statistics.
    pub fn stats_sizes(&self) -> &[u64] {
        &self.stats_sizes
    }

    /// The line of the last event stepped.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Where the model's addresses come from, in words.
    pub fn how(&self) -> &'static str {
        self.how
    }

    /// Replays driver event `index`: `None` when the model diverged from the recording.
    fn apply(&mut self, index: u64, ev: &Event) -> Result<Option<MiStepped>, Cause> {
        // before: the request, the old block (model address), the queue's first page
        let (request, old, new) = match om_call(&ev.kind) {
            Some((Op::Malloc(size), addr)) => (Some(size), None, Some(addr)),
            Some((Op::Calloc(nelem, elsize), addr)) => (
                nelem.checked_mul(elsize).or(Some(u64::MAX)),
                None,
                Some(addr),
            ),
            Some((Op::Realloc(old, size), new)) => {
                (Some(size), (!old.is_null()).then_some(old), Some(new))
            }
            Some((Op::Free(addr), _)) if !addr.is_null() => (None, Some(addr), None),
            _ => (None, None, None),
        };
        let old_m = old.map(|a| self.to_model(a));
        let pre = request.map(|n| on_model!(self, m => Pre::of(m, n)));
        let old_full =
            old_m.and_then(|a| on_model!(self, m => m.page_of(a).map(|(_, p)| p.in_full())));
        // the step
        let number = match &mut self.engine {
            Engine::Recorded(c) => {
                let flow = c.step(index, ev)?;
                if flow == Flow::Diverged {
                    let d = c.report().first_divergence.clone();
                    self.diverged = Some(match d {
                        Some(d) => format!(
                            "{}: the model diverged from the recording at event {} (line {}): {}",
                            self.name, d.event, d.line, d.why
                        ),
                        None => format!("{}: the model diverged at line {}", self.name, ev.line),
                    });
                    return Ok(None);
                }
                index + c.os_lines()
            }
            Engine::Own { model, moved } => {
                own_step(model, moved, ev).map_err(Cause::Model)?;
                index
            }
        };
        self.events = number + 1;
        self.line = ev.line;
        let mut changes = Vec::new();
        let got = new.map(|a| self.to_model(a)).filter(|a| !a.is_null());
        let in_place = old_m.is_some() && old_m == got;
        if let (Some(o), false) = (old_m, in_place) {
            let freed = on_model!(self, m => freed_to(m, o.0, old_full.unwrap_or(false)));
            self.touched.insert(
                o.0,
                MiTouch {
                    event: number,
                    line: ev.line,
                    size: 0,
                    rule: None,
                    freed: Some(freed),
                },
            );
            changes.push(MiChange::Free { addr: o.0, freed });
        }
        if let (Some(a), Some(n)) = (got, request) {
            let seen = self.touched.contains_key(&a.0);
            let rule = if in_place {
                Some(MiRule::ReallocInPlace)
            } else {
                pre.as_ref()
                    .and_then(|p| on_model!(self, m => p.rule(m, a.0, n, seen)))
            };
            if let Some(rule) = rule {
                self.touched.insert(
                    a.0,
                    MiTouch {
                        event: number,
                        line: ev.line,
                        size: n,
                        rule: Some(rule),
                        freed: None,
                    },
                );
                changes.push(MiChange::Alloc { addr: a.0, rule });
            }
        }
        Ok(Some(MiStepped {
            index: number,
            event: *ev,
            changes,
        }))
    }
}

/// Where `mi_free` left the block at `addr`, read after the free.
fn freed_to<S: OsSource>(m: &Mimalloc<S>, addr: u64, was_full: bool) -> MiFreed {
    match m.page_of(Addr(addr)) {
        Some((_, p)) if p.used() == 0 && p.retire_expire() > 0 => MiFreed::Retired,
        Some(_) if was_full => MiFreed::Unfull,
        Some(_) => MiFreed::LocalFree,
        None if m.segment_of(Addr(addr)).is_some() => MiFreed::PageFreed,
        None => MiFreed::SegmentFreed,
    }
}

/// One O/M call of a CPython 3 recording through mimalloc in its own address space.
fn own_step(
    m: &mut Mimalloc<OwnOs>,
    moved: &mut HashMap<u64, u64>,
    ev: &Event,
) -> Result<(), AllocError> {
    let Some((op, rec)) = om_call(&ev.kind) else {
        return Ok(());
    };
    let (request, got) = mi_call(m, op, |a| moved.remove(&a.0).map_or(a, Addr));
    let got = got?;
    if request.is_some() && rec != got {
        moved.insert(rec.0, got.0);
    }
    Ok(())
}

fn hex(a: u64) -> String {
    format!("{a:#x}")
}

/// The page kind mimalloc gives a span (types.h `mi_page_kind_t`).
pub fn page_kind(block_size: u64, slices: u32, huge_segment: bool) -> &'static str {
    if huge_segment {
        "huge"
    } else if block_size > MEDIUM_OBJ_SIZE_MAX {
        "large"
    } else if block_size > SMALL_OBJ_SIZE_MAX || slices > 1 {
        "medium"
    } else {
        "small"
    }
}

/// Explains `addr` in the state the walk reached (`at_event`): its owner chain, state,
/// last event and the rule that placed it. A recorded address of a live block the model
/// placed elsewhere (own mode) is explained at the model's address.
///
/// # Errors
/// The address is in no segment of the model (one sentence naming it and the event).
pub fn explain(walk: &MiWalk, addr: Addr, at_event: u64) -> Result<Explanation, String> {
    let a = if on_model!(walk, m => m.segment_of(addr).is_some()) {
        addr
    } else {
        walk.to_model(addr)
    };
    on_model!(walk, m => explain_in(m, walk, addr, a, at_event))
}

fn explain_in<S: OsSource>(
    m: &Mimalloc<S>,
    walk: &MiWalk,
    asked: Addr,
    addr: Addr,
    at_event: u64,
) -> Result<Explanation, String> {
    let Some((seg_id, seg)) = m.segment_of(addr) else {
        let segs: Vec<String> = m
            .segments()
            .map(|s| format!("{}..{:#x}", s.base(), s.base().0 + s.size()))
            .collect();
        return Err(format!(
            "{asked} is in no segment of {NAME} after event {at_event} of {} (its segments: {})",
            walk.name(),
            if segs.is_empty() {
                "none".into()
            } else {
                segs.join(", ")
            }
        ));
    };
    let _ = seg_id;
    let touch = walk.last_touch(addr);
    let last_event = touch.map(|t| LastEvent {
        event: t.event,
        line: t.line,
        what: if t.rule.is_some() { "alloc" } else { "free" }.into(),
        size: t.size,
    });
    let rule = touch.map(|t| match (t.rule, t.freed) {
        (Some(r), _) => r.describe(),
        (None, Some(f)) => f.describe().to_string(),
        (None, None) => String::new(),
    });
    let mut chain = Vec::new();
    if let MemId::Arena { arena, block, .. } = seg.memid() {
        if let Some(ar) = m.arenas().get(arena as usize) {
            chain.push(Owner {
                kind: "arena".into(),
                index: u64::from(arena),
                address: hex(ar.start.0),
                size: ar.size(),
            });
        }
        chain.push(Owner {
            kind: if seg.is_huge() {
                "huge segment"
            } else {
                "segment"
            }
            .into(),
            index: u64::from(block),
            address: hex(seg.base().0),
            size: seg.size(),
        });
    } else {
        chain.push(Owner {
            kind: if seg.is_huge() {
                "huge segment (its own mapping)"
            } else {
                "segment (its own mapping)"
            }
            .into(),
            index: 0,
            address: hex(seg.base().0),
            size: seg.size(),
        });
    }
    let slice = ((addr.0 - seg.base().0) / SLICE_SIZE) as u32;
    let mut details = vec![format!(
        "segment {}: {} slices of 64 KiB, slice {} here; {} page(s) in it; slice 0{} its header (mi_segment_t and the slice table, segment.c)",
        seg.base(),
        seg.size() / SLICE_SIZE,
        slice,
        seg.used(),
        if seg.info_slices() > 1 { format!("..{}", seg.info_slices() - 1) } else { String::new() }
    )];
    if !walk.pinned {
        details.push(format!("addresses: {}", walk.how));
    }
    if asked != addr {
        details.push(format!(
            "{asked} is the recorded address; the model placed that block at {addr}"
        ));
    }
    let blank = Explanation::blank(
        addr,
        format!("{NAME}, one thread's heap"),
        last_event,
        rule,
        at_event,
    );
    if slice < seg.info_slices() {
        chain.push(Owner {
            kind: "header span".into(),
            index: 0,
            address: hex(seg.base().0),
            size: u64::from(seg.info_slices()) * SLICE_SIZE,
        });
        return Ok(Explanation {
            owner_chain: chain,
            state: "the segment's header: mimalloc's own (mi_segment_t, segment.c), no block"
                .into(),
            details,
            ..blank
        });
    }
    let Some((_, p)) = m.page_of(addr) else {
        let span = seg
            .spans()
            .into_iter()
            .find(|&(first, count, _, _)| slice >= first && slice < first + count.max(1));
        let (first, count) = span.map_or((slice, 1), |s| (s.0, s.1.max(1)));
        chain.push(Owner {
            kind: "free span".into(),
            index: u64::from(first),
            address: hex(seg.base().0 + u64::from(first) * SLICE_SIZE),
            size: u64::from(count) * SLICE_SIZE,
        });
        details.push(format!(
            "free span of {count} slice(s), slices {first}..{}, on tld->spans[{}] (segment.c mi_span_queue_for)",
            first + count - 1,
            size_class::slice_bin(u64::from(count))
        ));
        return Ok(Explanation {
            owner_chain: chain,
            state: "part of a free span: no page holds it (segment.c)".into(),
            details,
            ..blank
        });
    };
    let (first, count) = p.span();
    let bs = p.block_size();
    let kind = page_kind(bs, count, seg.is_huge());
    let bin = if kind == "large" || kind == "huge" {
        BIN_HUGE
    } else {
        size_class::bin(bs)
    };
    chain.push(Owner {
        kind: format!("{kind} page"),
        index: u64::from(first),
        address: hex(seg.base().0 + u64::from(first) * SLICE_SIZE),
        size: u64::from(count) * SLICE_SIZE,
    });
    let nfree = p.free_list().count();
    let nlocal = p.local_free_list().count();
    let queue = if p.in_full() {
        "the full queue (heap->pages[MI_BIN_FULL])".to_string()
    } else {
        format!("heap->pages[{bin}]")
    };
    details.push(format!(
        "page: {count} slice(s) from slice {first}; block 0 at {:#x} ({} bytes into the span: segment.c _mi_segment_page_start_from_slice); {bs}-byte blocks, bin {bin}; capacity {} of reserved {}, used {}, {nfree} on `free`, {nlocal} on `local_free`; on {queue}{}",
        p.start(),
        p.start() - (seg.base().0 + u64::from(first) * SLICE_SIZE),
        p.capacity(),
        p.reserved(),
        p.used(),
        if p.retire_expire() > 0 { ", retired" } else { "" }
    ));
    let size_class = Some(SizeClass {
        index: bin as u32,
        bytes: bs,
    });
    if addr.0 < p.start() {
        return Ok(Explanation {
            owner_chain: chain,
            state: "before the page's first block: the page's start offset (no block)".into(),
            size_class,
            details,
            ..blank
        });
    }
    let k = (addr.0 - p.start()) / bs;
    if k >= u64::from(p.reserved()) {
        return Ok(Explanation {
            owner_chain: chain,
            state: format!(
                "past the page's last block ({} blocks of {bs} bytes fit): the span's tail, no block",
                p.reserved()
            ),
            size_class,
            details,
            ..blank
        });
    }
    let block = p.start() + k * bs;
    chain.push(Owner {
        kind: "block".into(),
        index: k,
        address: hex(block),
        size: bs,
    });
    let inside = if block == addr.0 {
        String::new()
    } else {
        format!(" ({} bytes into block {k} at {block:#x})", addr.0 - block)
    };
    let (state, position) = match p.block_state(k as u16) {
        Some(BlockState::Live { requested }) => (format!("live, {requested} bytes requested{inside}"), None),
        Some(BlockState::Free { position }) => (
            format!("free, on the page's `free` list (the page's next malloc pops position 0){inside}"),
            Some(u64::from(position)),
        ),
        Some(BlockState::LocalFree { position }) => (
            format!("free, on the page's `local_free` list (malloc reaches it only after _mi_page_free_collect turns `local_free` into `free`){inside}"),
            Some(u64::from(position)),
        ),
        Some(BlockState::Untouched) | None => (
            format!(
                "never carved: beyond the page's capacity ({} blocks so far); mi_page_extend_free has not reached it{inside}",
                p.capacity()
            ),
            None,
        ),
    };
    let (last_event, rule) = if block == addr.0 {
        (blank.last_event.clone(), blank.rule.clone())
    } else {
        let t = walk.last_touch(Addr(block));
        (
            t.map(|t| LastEvent {
                event: t.event,
                line: t.line,
                what: if t.rule.is_some() { "alloc" } else { "free" }.into(),
                size: t.size,
            }),
            t.map(|t| match (t.rule, t.freed) {
                (Some(r), _) => r.describe(),
                (None, Some(f)) => f.describe().to_string(),
                (None, None) => String::new(),
            }),
        )
    };
    Ok(Explanation {
        address: hex(addr.0),
        owner_chain: chain,
        state,
        free_list_position: position,
        size_class,
        details,
        last_event,
        rule,
        ..blank
    })
}

/// What the map draws of one page.
#[derive(Debug, Clone)]
pub struct PageCell {
    /// First slice of its span, slices in it.
    pub span: (u32, u32),
    /// Block 0's address.
    pub start: u64,
    /// Bytes per block.
    pub block_size: u64,
    /// Its queue's bin (`MI_BIN_HUGE` for large and huge pages).
    pub bin: usize,
    /// small, medium, large or huge.
    pub kind: &'static str,
    /// `capacity`, `reserved`, `used`.
    pub capacity: u32,
    /// `reserved`.
    pub reserved: u32,
    /// `used`.
    pub used: u32,
    /// Blocks on `free`, on `local_free`.
    pub free: u32,
    /// Blocks on `local_free`.
    pub local_free: u32,
    /// Runs of blocks of one state in address order: (first block, blocks, state).
    pub runs: Vec<(u32, u32, BlockKind)>,
}

/// A block's state as the map colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Allocated.
    Used,
    /// On `free`.
    Free,
    /// On `local_free`.
    LocalFree,
    /// Beyond capacity.
    Uncarved,
}

impl BlockKind {
    /// The name in `data-state`.
    pub fn name(&self) -> &'static str {
        match self {
            BlockKind::Used => "used",
            BlockKind::Free => "free",
            BlockKind::LocalFree => "local_free",
            BlockKind::Uncarved => "uncarved",
        }
    }
    fn of(s: BlockState) -> BlockKind {
        match s {
            BlockState::Live { .. } => BlockKind::Used,
            BlockState::Free { .. } => BlockKind::Free,
            BlockState::LocalFree { .. } => BlockKind::LocalFree,
            BlockState::Untouched => BlockKind::Uncarved,
        }
    }
}

/// One segment of the map.
#[derive(Debug, Clone)]
pub struct SegmentRow {
    /// Its base.
    pub base: u64,
    /// Slices it spans.
    pub slices: u32,
    /// Header slices.
    pub info_slices: u32,
    /// Huge.
    pub huge: bool,
    /// Arena index and block, or `None` for a mapping of its own.
    pub arena: Option<(u32, u32)>,
    /// Free spans: (first slice, slices).
    pub free_spans: Vec<(u32, u32)>,
    /// Its pages.
    pub pages: Vec<PageCell>,
}

/// The mimalloc heap at one moment.
#[derive(Debug, Clone)]
pub struct MiPicture {
    /// The event after which this is the state, and its line.
    pub event: u64,
    /// Its trace line.
    pub line: u64,
    /// Arenas reserved: (start, size).
    pub arenas: Vec<(u64, u64)>,
    /// Live segments, by address.
    pub segments: Vec<SegmentRow>,
    /// Where the addresses come from.
    pub how: &'static str,
}

impl MiPicture {
    /// Reads the picture off the walk's model after event `event` (line `line`).
    pub fn of(walk: &MiWalk, event: u64, line: u64) -> MiPicture {
        let (arenas, segments) = on_model!(walk, m => picture(m));
        MiPicture {
            event,
            line,
            arenas,
            segments,
            how: walk.how(),
        }
    }

    /// Pages drawn.
    pub fn pages(&self) -> usize {
        self.segments.iter().map(|s| s.pages.len()).sum()
    }
}

type Picture = (Vec<(u64, u64)>, Vec<SegmentRow>);

fn picture<S: OsSource>(m: &Mimalloc<S>) -> Picture {
    let arenas = m.arenas().iter().map(|a| (a.start.0, a.size())).collect();
    let mut rows: Vec<SegmentRow> = m
        .segments()
        .map(|s| {
            let mut free_spans = Vec::new();
            let mut pages = Vec::new();
            for (first, count, free, page) in s.spans() {
                if first < s.info_slices() {
                    continue;
                }
                if free || page == NONE {
                    free_spans.push((first, count.max(1)));
                    continue;
                }
                let Some(p) = m.page(page) else { continue };
                let mut runs: Vec<(u32, u32, BlockKind)> = Vec::new();
                for (k, (_, st)) in p.blocks().into_iter().enumerate() {
                    let b = BlockKind::of(st);
                    match runs.last_mut() {
                        Some(r) if r.2 == b => r.1 += 1,
                        _ => runs.push((k as u32, 1, b)),
                    }
                }
                let kind = page_kind(p.block_size(), p.span().1, s.is_huge());
                pages.push(PageCell {
                    span: p.span(),
                    start: p.start(),
                    block_size: p.block_size(),
                    bin: if kind == "large" || kind == "huge" {
                        BIN_HUGE
                    } else {
                        size_class::bin(p.block_size())
                    },
                    kind,
                    capacity: p.capacity(),
                    reserved: p.reserved(),
                    used: p.used(),
                    free: p.free_list().count() as u32,
                    local_free: p.local_free_list().count() as u32,
                    runs,
                });
            }
            SegmentRow {
                base: s.base().0,
                slices: (s.size() / SLICE_SIZE) as u32,
                info_slices: s.info_slices(),
                huge: s.is_huge(),
                arena: match s.memid() {
                    MemId::Arena { arena, block, .. } => Some((arena, block)),
                    MemId::Os => None,
                },
                free_spans,
                pages,
            }
        })
        .collect();
    rows.sort_by_key(|r| r.base);
    (arenas, rows)
}

const CELL: f64 = 18.0; // one slice (64 KiB), px
const PER_LINE: u32 = 64; // slices per line
const LINE_H: f64 = 20.0; // a line of slices, px
const MAX_LINES: u32 = 8; // a segment is drawn up to 512 slices; a longer huge one is elided
const LEFT: f64 = 170.0; // the labels' column

/// The class colour of bin `b` (HSL hue spread as the pymalloc map does).
fn hue(bin: usize) -> u32 {
    ((bin as u32) * 137 + 200) % 360
}

fn colour(kind: BlockKind, bin: usize) -> String {
    match kind {
        BlockKind::Used => format!("hsl({},65%,40%)", hue(bin)),
        BlockKind::Free => format!("hsl({},60%,85%)", hue(bin)),
        BlockKind::LocalFree => "#ffd54a".into(),
        BlockKind::Uncarved => "#eeeeee".into(),
    }
}

/// `[x0, x1)` in slices along a segment, cut at line ends: (line, from, to) in slices.
fn pieces(x0: f64, x1: f64) -> Vec<(u32, f64, f64)> {
    let mut out = Vec::new();
    let mut x = x0;
    while x < x1 - 1e-9 {
        let line = (x / f64::from(PER_LINE)).floor();
        let end = ((line + 1.0) * f64::from(PER_LINE)).min(x1);
        out.push((
            line as u32,
            x - line * f64::from(PER_LINE),
            end - line * f64::from(PER_LINE),
        ));
        x = end;
    }
    out
}

/// The heap as a standalone SVG: every segment a `<g class="segment" data-segment>` of
/// lines of 64 slices; its header `<rect class="header">`, free spans `<rect class="span">`
/// with `data-first` and `data-slices`, and every page a `<g class="page" data-page
/// data-block-size data-bin data-kind data-capacity data-reserved data-used data-free
/// data-local-free>` whose `<rect class="run" data-first data-count data-state>` lay its
/// blocks along its slices in address order.
pub fn svg(pic: &MiPicture) -> String {
    let lines_of = |s: &SegmentRow| s.slices.div_ceil(PER_LINE).min(MAX_LINES);
    let top = 64.0;
    let mut y = top;
    let mut ys = Vec::new();
    for s in &pic.segments {
        ys.push(y);
        y += f64::from(lines_of(s)) * LINE_H + 26.0;
    }
    let height = y + 70.0;
    let width = LEFT + f64::from(PER_LINE) * CELL + 20.0;
    let (used, live): (u32, u32) = pic
        .segments
        .iter()
        .flat_map(|s| &s.pages)
        .fold((0, 0), |(a, b), p| (a + 1, b + p.used));
    let _ = used;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="monospace" font-size="11" data-event="{}" data-line="{}" data-model="{NAME}" data-segments="{}" data-pages="{}" data-live-blocks="{live}">"#,
        pic.event,
        pic.line,
        pic.segments.len(),
        pic.pages(),
    );
    let _ = writeln!(
        o,
        r#"<text x="4" y="16" font-size="13">{NAME} after event {} (line {}): {} arena(s), {} segment(s), {} pages, {live} live blocks</text><text x="4" y="32">addresses: {}; one slice = 64 KiB, 64 slices a line; a page's blocks in address order along its slices</text>"#,
        pic.event,
        pic.line,
        pic.arenas.len(),
        pic.segments.len(),
        pic.pages(),
        escape(pic.how)
    );
    for (k, (start, size)) in pic.arenas.iter().enumerate() {
        let _ = write!(
            o,
            r#"<text x="{}" y="48">arena {k}: {start:#x} ({} MiB)</text>"#,
            4.0 + k as f64 * 300.0,
            size >> 20
        );
    }
    o.push('\n');
    for (s, &y0) in pic.segments.iter().zip(&ys) {
        let lines = lines_of(s);
        let shown = lines * PER_LINE;
        let _ = writeln!(
            o,
            r#"<g class="segment" data-segment="{:#x}" data-slices="{}" data-huge="{}">"#,
            s.base, s.slices, s.huge
        );
        let place = match s.arena {
            Some((a, b)) => format!("arena {a} block {b}"),
            None => "own mapping".into(),
        };
        let _ = writeln!(
            o,
            r#"<text x="4" y="{:.1}">{}segment {:#x}</text><text x="4" y="{:.1}">{place}, {} pages</text>"#,
            y0 + 12.0,
            if s.huge { "huge " } else { "" },
            s.base,
            y0 + 26.0,
            s.pages.len()
        );
        // the grid of slices
        let _ = writeln!(
            o,
            r##"<rect x="{LEFT}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="#bbb" stroke-width="0.5"/>"##,
            f64::from(PER_LINE) * CELL,
            f64::from(lines) * LINE_H
        );
        let rect = |o: &mut String,
                    class: &str,
                    attrs: &str,
                    x0: f64,
                    x1: f64,
                    frac: (f64, f64),
                    fill: &str,
                    title: &str| {
            for (line, a, b) in pieces(x0, x1.min(f64::from(shown))) {
                let yy = y0 + f64::from(line) * LINE_H + 1.0 + frac.0 * (LINE_H - 2.0);
                let _ = writeln!(
                    o,
                    r##"<rect class="{class}"{attrs} x="{:.2}" y="{yy:.2}" width="{:.2}" height="{:.2}" fill="{fill}"><title>{}</title></rect>"##,
                    LEFT + a * CELL,
                    ((b - a) * CELL).max(0.3),
                    (frac.1 - frac.0) * (LINE_H - 2.0),
                    escape(title)
                );
            }
        };
        rect(
            &mut o,
            "header",
            "",
            0.0,
            f64::from(s.info_slices),
            (0.0, 1.0),
            "#555",
            &format!(
                "slice 0..{}: the segment's header (mi_segment_t, slice table)",
                s.info_slices
            ),
        );
        for &(first, count) in &s.free_spans {
            rect(
                &mut o,
                "span",
                &format!(r#" data-first="{first}" data-slices="{count}""#),
                f64::from(first),
                f64::from(first + count),
                (0.0, 1.0),
                "#ffffff",
                &format!(
                    "free span: slices {first}..{} ({count} slices)",
                    first + count - 1
                ),
            );
        }
        for p in &s.pages {
            let (first, count) = p.span;
            let _ = writeln!(
                o,
                r#"<g class="page" data-page="{:#x}" data-first-slice="{first}" data-slices="{count}" data-block-size="{}" data-bin="{}" data-kind="{}" data-capacity="{}" data-reserved="{}" data-used="{}" data-free="{}" data-local-free="{}">"#,
                p.start,
                p.block_size,
                p.bin,
                p.kind,
                p.capacity,
                p.reserved,
                p.used,
                p.free,
                p.local_free
            );
            let title = format!(
                "{} page {:#x}: {}-byte blocks (bin {}), used {} / free {} / local_free {} / capacity {} of {}",
                p.kind, p.start, p.block_size, p.bin, p.used, p.free, p.local_free, p.capacity, p.reserved
            );
            for &(k, n, st) in &p.runs {
                let span = f64::from(count);
                let x0 = f64::from(first) + span * f64::from(k) / f64::from(p.reserved.max(1));
                let x1 = f64::from(first) + span * f64::from(k + n) / f64::from(p.reserved.max(1));
                rect(
                    &mut o,
                    "run",
                    &format!(
                        r#" data-first="{k}" data-count="{n}" data-state="{}""#,
                        st.name()
                    ),
                    x0,
                    x1,
                    (0.0, 1.0),
                    &colour(st, p.bin),
                    &format!("{title}; blocks {k}..{}: {}", k + n - 1, st.name()),
                );
            }
            // the page's outline
            for (line, a, b) in pieces(
                f64::from(first),
                f64::from(first + count).min(f64::from(shown)),
            ) {
                let _ = writeln!(
                    o,
                    r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="none" stroke="#222" stroke-width="0.6"/>"##,
                    LEFT + a * CELL,
                    y0 + f64::from(line) * LINE_H + 0.5,
                    (b - a) * CELL,
                    LINE_H - 1.0
                );
            }
            o.push_str("</g>\n");
        }
        if s.slices > shown {
            let _ = writeln!(
                o,
                r#"<text class="elided" x="{LEFT}" y="{:.1}">… {} more slices of this huge segment not drawn ({} MiB in all)</text>"#,
                y0 + f64::from(lines) * LINE_H + 12.0,
                s.slices - shown,
                (u64::from(s.slices) * SLICE_SIZE) >> 20
            );
        }
        o.push_str("</g>\n");
    }
    let ly = height - 40.0;
    for (k, (name, fill)) in [
        ("used", colour(BlockKind::Used, 8)),
        ("free", colour(BlockKind::Free, 8)),
        ("local_free", colour(BlockKind::LocalFree, 8)),
        ("uncarved (beyond capacity)", colour(BlockKind::Uncarved, 8)),
        ("free span", "#ffffff".into()),
        ("segment header", "#555".into()),
    ]
    .iter()
    .enumerate()
    {
        let lx = 10.0 + k as f64 * 190.0;
        let _ = writeln!(
            o,
            r##"<rect x="{lx}" y="{}" width="12" height="12" fill="{fill}" stroke="#333" stroke-width="0.5"/><text x="{}" y="{ly}">{name}</text>"##,
            ly - 10.0,
            lx + 16.0
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="10" y="{}">used and free blocks take their page's size-class colour (hue by bin); a page's outline is its span</text>"#,
        ly + 18.0
    );
    o.push_str("</svg>\n");
    o
}

/// The map in an HTML page.
pub fn html(pic: &MiPicture, title: &str) -> String {
    let hover = "g.page:hover rect{stroke:#f0f;stroke-width:1}";
    super::map::page(title, pic.event, hover, &svg(pic))
}

/// Explains `addr` in `path` at the point `at` (the CLI's one call): the walk, then
/// [`explain`].
///
/// # Errors
/// As [`MiWalk::to`] and [`explain`], as one sentence.
pub fn explain_at(
    path: &Path,
    model: Option<String>,
    at: At,
    progress: bool,
    addr: Addr,
) -> Result<Explanation, String> {
    let (walk, reached) = MiWalk::to(path, model, progress, at).map_err(|e| e.to_string())?;
    explain(&walk, addr, reached)
}

/// Pictures the state after `at` (the CLI's one call).
///
/// # Errors
/// As [`MiWalk::to`].
pub fn picture_at(
    path: &Path,
    model: Option<String>,
    at: At,
    progress: bool,
) -> Result<(MiWalk, MiPicture), ReplayError> {
    let (walk, event) = MiWalk::to(path, model, progress, at)?;
    let pic = MiPicture::of(&walk, event, walk.line());
    Ok((walk, pic))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mimalloc::size_class::LARGE_OBJ_SIZE_MAX;

    #[test]
    fn pieces_cut_a_run_at_line_ends() {
        let p = pieces(60.0, 70.0);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], (0, 60.0, 64.0));
        assert_eq!(p[1], (1, 0.0, 6.0));
        assert!(pieces(3.0, 3.0).is_empty());
    }

    #[test]
    fn page_kinds_follow_the_block_size() {
        assert_eq!(page_kind(64, 1, false), "small");
        assert_eq!(page_kind(SMALL_OBJ_SIZE_MAX + 8, 8, false), "medium");
        assert_eq!(page_kind(MEDIUM_OBJ_SIZE_MAX + 8, 3, false), "large");
        assert_eq!(page_kind(LARGE_OBJ_SIZE_MAX + 8, 300, true), "huge");
    }
}
