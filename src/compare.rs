//! `compare`: one trace replayed through several whole-stack models at once, and the
//! footprint each predicts over time.
//!
//! ```text
//!  trace ──replay::drive_ledger──▶ Feed: translate recorded address → block id, live bytes ──batches──┬─▶ model 1 (thread) ─┐
//!         (counts, progress, the    (one pass, on the trace's job; the recording's live        ├─▶ model 2 (thread) ─┼─▶ ModelRun
//!          recording's consistency,  sets kept as marks in the same table: one lookup each)      └─▶ model 3 (thread) ─┘
//!          EventError)
//!  many traces: one job each on rayon's pool; memory per job: a batch in flight per model,
//!  the live blocks' ids, the samples (at most 2 × MAX_SAMPLES per model)
//! ```
//! Which events reach the models: every top-level call (`O`, `M` through pymalloc where
//! the stack has it; `R`, C library calls, 2.7 int/float blocks to the system allocator),
//! and the data-stack mappings (`V`/`W`). Nested calls (`r`) and pymalloc's own `A`/`F`
//! lines are what a model decides for itself, so they are not replayed.
//!
//! Invariants: `live` is the program's (the same for every model): Σ sizes of live
//! top-level blocks; each model's `peak_x ≥ final_x`; a marker row is taken right after the
//! request that makes it is served (and written).

use crate::addr::Addr;
use crate::error::AllocError;
use crate::replay::pages::PageIndex;
use crate::replay::{
    drive_ledger, Cause, DriveOptions, EventError, Flow, Ledger, LiveSets, Liveness, ModelSpec,
    Replay, ReplayError, Source,
};
use crate::stack::{Layers, Route, Stack, Visit, Waste};
use crate::trace::{open::open, Domain, Event, EventKind, TraceError};
use crate::vm::{ProcessLayout, Syscalls};
use crate::zeroed::ZeroedVec;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Instant;

/// Samples kept per model for plots (the stride doubles when twice as many are taken).
pub const MAX_SAMPLES: usize = 1000;

/// Steps per batch handed to the models.
const BATCH: usize = 8192;

/// How to compare.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// Request sizes that mark phases (`--at-marker`): a row each time a top-level request
    /// of exactly that many bytes is served.
    pub markers: Vec<u64>,
    /// Show progress (the CLI sets it only when stderr is a terminal).
    pub progress: bool,
    /// Replay only the first `until` events (`None`: all of them): the run ends there, as
    /// if the trace did (its `events`, finals and `waste_at_end` are that moment's).
    pub until: Option<u64>,
}

/// The footprint at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Events read before this moment (0-based index of the event just replayed, + 1).
    pub event: u64,
    /// Bytes the program asked for and has not freed.
    pub live: u64,
    /// Address space held from the system.
    pub mapped: u64,
    /// Bytes of pages written and not given back.
    pub resident: u64,
}

/// A row taken at a marker request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MarkerRow {
    /// The request's size.
    pub size: u64,
    /// Its 0-based event number.
    pub event: u64,
    /// Live bytes right after it.
    pub live: u64,
    /// Mapped bytes right after it.
    pub mapped: u64,
    /// Resident bytes right after it.
    pub resident: u64,
}

/// One model's run over one trace.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRun {
    /// The model's name, as given.
    pub model: String,
    /// Largest live bytes.
    pub peak_live: u64,
    /// Largest mapped bytes.
    pub peak_mapped: u64,
    /// Largest resident bytes.
    pub peak_resident: u64,
    /// Live bytes at the end.
    pub final_live: u64,
    /// Mapped bytes at the end.
    pub final_mapped: u64,
    /// Resident bytes at the end.
    pub final_resident: u64,
    /// `resident / live - 1` when live was at its peak (first reached).
    pub fragmentation_at_peak: f64,
    /// `resident / live - 1` at the end (0 when nothing is live). Added field.
    pub fragmentation_at_end: f64,
    /// System calls made.
    pub syscalls: Syscalls,
    /// Seconds the model spent replaying.
    pub seconds: f64,
    /// A row per marker request.
    pub markers: Vec<MarkerRow>,
    /// Mapped bytes by cause right after the event at which live first reached
    /// `peak_live` (added field): `live == peak_live` there. The walk over pools and chunks
    /// is taken only at a new peak that no event the feed has read yet exceeds (see
    /// [`Runner::steps`]), so at most once per batch however often live rises.
    pub waste_at_peak: Option<WasteAt>,
    /// Mapped bytes by cause at the end (added field).
    pub waste_at_end: Option<WasteAt>,
    /// Footprint samples over event time (for plots).
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// Where the model's thread spent its time (`--timings`; not in the JSON).
    #[serde(skip)]
    pub timing: ThreadTiming,
}

/// One thread's time in a comparison, for `--timings`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadTiming {
    /// CPU seconds the thread used.
    pub cpu: f64,
    /// Seconds from the trace's start until the thread was done.
    pub done_at: f64,
}

/// CPU time of the calling thread (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`), in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// [`Waste`] at one moment: `live + accounted == mapped` there (see [`crate::stack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WasteAt {
    /// Events replayed before the moment.
    pub event: u64,
    /// The program's live bytes then.
    pub live: u64,
    /// The mapped bytes then.
    pub mapped: u64,
    /// `rounding + headers + alignment`.
    pub internal: u64,
    /// `free_blocks + empty_pools + free_arenas + free_chunks`.
    pub external: u64,
    /// The parts.
    #[serde(flatten)]
    pub waste: Waste,
}

/// One trace through every model.
#[derive(Debug, Clone, Serialize)]
pub struct TraceRun {
    /// The trace's path, as given.
    pub trace: String,
    /// Events read.
    pub events: u64,
    /// One run per model, in the order given.
    pub models: Vec<ModelRun>,
    /// Wall seconds of the whole trace (`--timings`; not in the JSON).
    #[serde(skip)]
    pub wall: f64,
    /// The feed's thread: reading, decoding, the recording's consistency, translating
    /// (`--timings`; not in the JSON).
    #[serde(skip)]
    pub feed: ThreadTiming,
}

/// Why a comparison stopped.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The trace could not be read.
    #[error("{path}: {source}")]
    Trace {
        /// The trace.
        path: String,
        /// What went wrong.
        source: TraceError,
    },
    /// A bad model name.
    #[error("{0}")]
    Model(String),
    /// A header line the models read (`# maps:`, `# heap:`) that does not parse.
    #[error("{path}: {message}")]
    Header {
        /// The trace.
        path: String,
        /// Which line and why.
        message: String,
    },
    /// The replay driver stopped: an unreadable trace, or an event the recording
    /// contradicts (a free of an address it does not hold …), with its event and line.
    #[error("{path}: {source}")]
    Replay {
        /// The trace.
        path: String,
        /// What went wrong.
        source: Box<ReplayError>,
    },
    /// A model refused a call.
    #[error("{path}: model {model}: {source}")]
    Refused {
        /// The trace.
        path: String,
        /// The model.
        model: String,
        /// The event and the model's error.
        source: Box<EventError>,
    },
}

/// A call as every model sees it (recorded addresses replaced by block ids), packed in 24
/// bytes with the program's live bytes after it. Steps are what the feed writes once and
/// every model reads, so they are small: the event is implied (1 + `gap` after the
/// previous step's event), operands beyond one size ride in [`Batch::extra`] and the line in
/// [`Batch::lines`] (read only for an error).
///
/// ```text
///  word: 63 ........ 38 | 37     | 36                | 35 .. 32 | 31 ........ 0
///        gap (26 bits)  | marker | route (1: system) | kind     | id
///
///  kind       id          size                     extra (in step order)
///  MALLOC     the block   bytes
///  CALLOC     the block   nelem                    elsize
///  REALLOC    new block   bytes                    old block (NO_ID: realloc(NULL, n))
///  FREE       the block
///  MEMALIGN   the block   bytes                    alignment
///  MALLOPT                param                    value
///  MAP        mapping     bytes
///  UNMAP      mapping     bytes
///  SKIP                   events without a step (more than a gap holds)
/// ```
#[derive(Debug, Clone, Copy)]
struct Step {
    word: u64,
    size: u64,
    live: u64, // the program's live bytes after the call
}

const MALLOC: u64 = 0;
const CALLOC: u64 = 1;
const REALLOC: u64 = 2;
const FREE: u64 = 3;
const MEMALIGN: u64 = 4;
const MALLOPT: u64 = 5;
const MAP: u64 = 6;
const UNMAP: u64 = 7;
const SKIP: u64 = 8;

/// Bits of [`Step::word`]'s `gap`.
const GAP_BITS: u32 = 26;

impl Step {
    /// A call of `kind` on `route` about block `id`.
    #[inline(always)]
    fn call(kind: u64, route: Route, id: u32, size: u64) -> Step {
        let system = u64::from(route == Route::System);
        Step {
            word: system << 36 | kind << 32 | u64::from(id),
            size,
            live: 0,
        }
    }

    /// A step that only moves the event count on by `gap`.
    fn skip(gap: u64, live: u64) -> Step {
        Step {
            word: SKIP << 32,
            size: gap,
            live,
        }
    }

    /// Events between the previous step and this one.
    #[inline(always)]
    fn gap(&self) -> u64 {
        self.word >> 38
    }

    #[inline(always)]
    fn marker(&self) -> bool {
        self.word >> 37 & 1 != 0
    }

    #[inline(always)]
    fn route(&self) -> Route {
        if self.word >> 36 & 1 != 0 {
            Route::System
        } else {
            Route::Object
        }
    }

    #[inline(always)]
    fn kind(&self) -> u64 {
        self.word >> 32 & 15
    }

    #[inline(always)]
    fn id(&self) -> u32 {
        self.word as u32
    }
}

/// The steps the feed hands to every model at once.
#[derive(Debug, Default)]
struct Batch {
    steps: Vec<Step>,
    extra: Vec<u64>,        // operands that do not fit a step, in step order
    lines: Vec<(u64, u64)>, // (event, line - event) from that event on; one at the first step
    ids: usize,             // block ids handed out by the end of the batch (all < ids)
}

impl Batch {
    fn with_capacity(n: usize) -> Batch {
        Batch {
            steps: Vec::with_capacity(n),
            ..Batch::default()
        }
    }

    fn clear(&mut self) {
        self.steps.clear();
        self.extra.clear();
        self.lines.clear();
        self.ids = 0;
    }

    /// The line of event `event` (one of this batch's steps).
    fn line(&self, event: u64) -> u64 {
        let at = self.lines.partition_point(|&(e, _)| e <= event);
        let (_, delta) = self.lines[at.saturating_sub(1)];
        event.wrapping_add(delta)
    }
}

/// No block (a `realloc(NULL, n)`).
const NO_ID: u32 = u32::MAX;

/// Recorded address → block id, as a table indexed by address: one `u32` slot per granule,
/// in pages of 64 KiB of address space. Blocks cluster in arenas and heaps, so the pages
/// are few and the last one used is usually one of the last few hundred (a direct-mapped
/// cache): a lookup is a shift and an index, not a hash probe. The granule is 16 bytes
/// (every block of a 64-bit CPython 3 and glibc is 16-aligned: a 16 KiB page) until an
/// address that is only 8-aligned comes (CPython 2.7's pymalloc, 32-bit platforms); then
/// every entry is filed again in 8-byte granules (32 KiB pages). Addresses that are not
/// 8-aligned (only a malformed trace has them) go to `odd`.
///
/// The slot holds the id and, in its top two bits, two marks: the driver's live sets
/// ([`LiveSets`]: the recording's held and raw blocks, see `replay::live`). The consistency
/// check and the translation of an event read and write the same word, so an event costs
/// one cache line of the table (the second lookup finds the page in the cache and the
/// word in L1):
/// ```text
///   page i:  slots[i]: [r h id+1 | r h id+1 | 0 | …]    2^(16 - shift) u32
///                       1 1 30 bits                    (id+1 = 0: no id)
/// ```
/// Invariants: `take(a) == Some(id) ⇔ the last put(a, id) was not followed by take(a)`;
/// the marks are the sets of `Liveness` exactly (independent of the ids: a raw block and
/// a held one at one address keep their own marks, as the driver's two bit sets did).
struct IdTable {
    pages: PageIndex<CACHE>, // page number -> index i: its slots are slots[i << bits..]
    keys: Vec<u64>,          // index -> page number (to file the entries again)
    slots: ZeroedVec<u32>,   // 2^bits slots a page, bits = 16 - shift
    shift: u32,              // log2 of the granule: 4, or 3 once an 8-aligned address came
    odd: HashMap<u64, u32>,  // addresses that are not 8-aligned: their slots
    last: (u64, usize),      // the address located last, and its slot
}

/// Entries of [`IdTable`]'s page cache (a power of two): 16 MiB of address space.
const CACHE: usize = 256;

/// The id bits of a slot (id + 1; 0: none).
const ID_BITS: u32 = (1 << 30) - 1;

/// The largest block id: `id + 1` fills the slot's id bits.
const MAX_ID: u32 = ID_BITS - 1;

impl Default for IdTable {
    fn default() -> Self {
        IdTable {
            pages: PageIndex::default(),
            keys: Vec::new(),
            slots: ZeroedVec::new(),
            shift: 4,
            odd: HashMap::new(),
            last: (NOWHERE, 0),
        }
    }
}

/// No address located yet (not 8-aligned, so never located).
const NOWHERE: u64 = u64::MAX;

/// The mark of the held (`raw` false) or the raw set in a slot.
#[inline(always)]
fn mark_bit(raw: bool) -> u32 {
    1u32 << (30 + u32::from(raw))
}

impl IdTable {
    /// The slot of `a` (8-aligned, on the granule grid) in `slots`, its page made if new.
    /// The last one is remembered: an event's check and its translation look up the same
    /// address one after the other.
    #[inline(always)]
    fn locate(&mut self, a: u64) -> usize {
        if a == self.last.0 {
            return self.last.1;
        }
        let n = self.keys.len() as u32;
        let i = self.pages.get_or_insert(a >> 16, n);
        if i == n {
            self.new_page(a >> 16);
        }
        let at = ((i as usize) << (16 - self.shift)) | ((a & 0xffff) >> self.shift) as usize;
        self.last = (a, at);
        at
    }

    #[cold]
    fn new_page(&mut self, page: u64) {
        self.keys.push(page);
        self.slots.resize(self.keys.len() << (16 - self.shift)); // zero: no ids, no marks
    }

    /// The slot of `a`: in its page (8-aligned `a`, made room for), or in `odd`.
    #[inline(always)]
    fn slot(&mut self, a: u64) -> &mut u32 {
        if a & 7 != 0 {
            return self.odd.entry(a).or_default();
        }
        if a & 15 != 0 && self.shift == 4 {
            self.refile_in_8_byte_granules();
        }
        let at = self.locate(a);
        // SAFETY: `locate` gives a slot of a page it made: below the table's length
        unsafe { self.slots.at_mut(at) }
    }

    /// The slot of `a` if it was ever filed (an address never filed has none).
    #[inline(always)]
    fn filed(&mut self, a: u64) -> Option<&mut u32> {
        if a & 7 != 0 {
            return self.odd.get_mut(&a);
        }
        if a & ((1 << self.shift) - 1) != 0 {
            return None; // only 8-aligned, granules of 16 bytes: never filed
        }
        let at = self.locate(a);
        // SAFETY: as in `slot`
        Some(unsafe { self.slots.at_mut(at) })
    }

    /// Files `id` (at most [`MAX_ID`]) at `a`.
    #[inline(always)]
    fn put(&mut self, a: u64, id: u32) {
        let w = self.slot(a);
        *w = (*w & !ID_BITS) | (id + 1);
    }

    #[inline(always)]
    fn take(&mut self, a: u64) -> Option<u32> {
        let w = self.filed(a)?;
        let v = *w & ID_BITS;
        *w &= !ID_BITS;
        if *w == 0 && a & 7 != 0 {
            self.odd.remove(&a); // an odd address with nothing left
        }
        v.checked_sub(1)
    }

    /// Files every entry again in 8-byte granules (once per trace at most).
    #[cold]
    fn refile_in_8_byte_granules(&mut self) {
        let slots = std::mem::take(&mut self.slots);
        let keys = std::mem::take(&mut self.keys);
        let old = std::mem::replace(&mut self.shift, 3);
        self.pages = PageIndex::default();
        self.last = (NOWHERE, 0);
        for (page, s) in keys.into_iter().zip(slots.chunks(1 << (16 - old))) {
            for (j, &v) in s.iter().enumerate() {
                if v != 0 {
                    let at = self.locate((page << 16) | ((j as u64) << old));
                    // SAFETY: as in `slot`
                    *unsafe { self.slots.at_mut(at) } = v;
                }
            }
        }
    }
}

impl LiveSets for IdTable {
    #[inline(always)]
    fn insert(&mut self, raw: bool, a: u64) -> bool {
        let (w, b) = (self.slot(a), mark_bit(raw));
        let fresh = *w & b == 0;
        *w |= b;
        fresh
    }

    #[inline(always)]
    fn remove(&mut self, raw: bool, a: u64) -> bool {
        let b = mark_bit(raw);
        let Some(w) = self.filed(a) else {
            return false;
        };
        let was = *w & b != 0;
        *w &= !b;
        if was && *w == 0 && a & 7 != 0 {
            self.odd.remove(&a); // an odd address with nothing left
        }
        was
    }
}

/// Recorded addresses → block ids (reused, the last freed first), the recording's live
/// blocks (checked by the driver, in the same table), and the program's live bytes.
/// Freed ids are kept as a list threaded through `sizes` (a freed id's entry holds the
/// next freed id), so freeing touches no memory but the block's own entry. Sizes are
/// kept in 32 bits (half the memory, and its page faults); one of 2^32 - 1 bytes or more
/// is [`LARGE`] there, its size in `large`.
/// Invariant: `live == Σ size(id)` over the ids not on the free list, where `size(id)` is
/// `sizes[id]`, or `large[id]` when that is `LARGE`.
struct Translator {
    ledger: Liveness<IdTable>, // the live sets; `ledger.sets`: recorded address -> id
    sizes: ZeroedVec<u32>, // id -> bytes asked for (a freed id: the next freed); its length: the ids handed out so far
    large: HashMap<u32, u64>, // id -> bytes asked for, when LARGE
    free: u32,             // the last freed id, the head of the list (NO_ID: none)
    live: u64,
    max_id: u32, // the largest id handed out: MAX_ID (lower in tests)
}

/// A size that does not fit in 32 bits, kept in [`Translator::large`].
const LARGE: u32 = u32::MAX;

impl Default for Translator {
    fn default() -> Self {
        Translator {
            ledger: Liveness::default(),
            sizes: ZeroedVec::new(),
            large: HashMap::new(),
            free: NO_ID,
            live: 0,
            max_id: MAX_ID,
        }
    }
}

impl Translator {
    /// A new block of `size` bytes at the recorded `addr`: its id.
    ///
    /// # Errors
    /// More blocks live at once than ids (`max_id` + 1: [`MAX_ID`] + 1).
    #[inline(always)]
    fn born(&mut self, addr: Addr, size: u64) -> Result<u32, Cause> {
        let small = u32::try_from(size).unwrap_or(LARGE);
        let id = if self.free == NO_ID {
            if self.sizes.len() > self.max_id as usize {
                return Err(too_many_blocks(self.max_id));
            }
            self.sizes.push(small);
            (self.sizes.len() - 1) as u32
        } else {
            let id = self.free;
            let slot = &mut self.sizes[id as usize];
            self.free = *slot;
            *slot = small;
            id
        };
        if small == LARGE {
            self.large.insert(id, size);
        }
        self.live += size;
        self.ledger.sets.put(addr.0, id);
        Ok(id)
    }

    #[inline(always)]
    fn dies(&mut self, addr: Addr) -> Option<u32> {
        let id = self.ledger.sets.take(addr.0)?;
        let slot = &mut self.sizes[id as usize];
        let size = match *slot {
            LARGE => self.large.remove(&id).unwrap_or_default(),
            small => u64::from(small),
        };
        self.live -= size;
        *slot = self.free;
        self.free = id;
        Some(id)
    }
}

/// One model replaying steps: its stack, and what the steps add up to.
struct Runner {
    stack: Stack,
    tally: Tally,
}

/// What a model's steps add up to: its addresses of the block ids, the run's peaks,
/// finals, markers and samples.
struct Tally {
    name: String,
    addrs: ZeroedVec<u64>, // block id -> the model's address (as long as the ids handed out)
    run: ModelRun,
    stride: u64,      // events between samples
    next_sample: u64, // the event at which the next sample is taken
    event: u64,       // the event after the last step replayed
    seconds: f64,
    resident_at_peak: u64, // resident bytes when live first reached its peak
}

/// A batch's steps from `from` on, run on a stack's layers as their concrete type
/// ([`Stack::visit`]: the stack's variant matched once per batch, not at every step).
struct Steps<'a> {
    tally: &'a mut Tally,
    batch: &'a Batch,
    from: (usize, usize), // the first step to replay, and its first operand in `extra`
    read_peak: &'a AtomicU64,
}

impl Visit for Steps<'_> {
    type Out = Result<Option<(usize, usize)>, Box<EventError>>;

    #[inline]
    fn on<L: Layers>(self, layers: &mut L) -> Self::Out {
        self.tally
            .steps(layers, self.batch, self.from, self.read_peak)
    }
}

impl Runner {
    fn new(name: &str, stack: Stack) -> Runner {
        Runner {
            stack,
            tally: Tally {
                name: name.to_string(),
                addrs: ZeroedVec::new(),
                run: ModelRun {
                    model: name.to_string(),
                    peak_live: 0,
                    peak_mapped: 0,
                    peak_resident: 0,
                    final_live: 0,
                    final_mapped: 0,
                    final_resident: 0,
                    fragmentation_at_peak: 0.0,
                    fragmentation_at_end: 0.0,
                    syscalls: Syscalls::default(),
                    seconds: 0.0,
                    markers: Vec::new(),
                    waste_at_peak: None,
                    waste_at_end: None,
                    samples: Vec::new(),
                    timing: ThreadTiming::default(),
                },
                stride: 256,
                next_sample: 0,
                event: 0,
                seconds: 0.0,
                resident_at_peak: 0,
            },
        }
    }

    /// Replays a batch. `read_peak` is the highest live of every event the feed has read so
    /// far (at least up to the end of the batch after this one, held back by the feed until
    /// then, or to the trace's end): a new peak below it is not the run's peak, so its waste
    /// is not walked. The run's peak is never below it, so its walk is always taken, and no
    /// later step replaces it (none rises above it): `waste_at_peak` is exact. The steps
    /// run on the stack's concrete layers ([`Steps`]); a walk, on the whole stack, between
    /// two of them.
    fn steps(&mut self, batch: &Batch, read_peak: &AtomicU64) -> Result<(), Box<EventError>> {
        let t = Instant::now();
        let tally = &mut self.tally;
        tally.addrs.resize(batch.ids); // the new ones zero already: nothing written
        let mut from = (0, 0);
        while let Some(next) = self.stack.visit(Steps {
            tally,
            batch,
            from,
            read_peak,
        })? {
            // a new peak that no event read so far exceeds: its waste, right after it
            let live = tally.run.peak_live;
            tally.run.waste_at_peak = Some(waste_at(&self.stack, tally.event, live));
            from = next;
        }
        tally.seconds += t.elapsed().as_secs_f64();
        Ok(())
    }

    fn finish(self, events: u64) -> ModelRun {
        let Runner { stack, tally } = self;
        let mut run = tally.run;
        let last = Sample {
            event: events,
            live: run.final_live,
            mapped: run.final_mapped,
            resident: run.final_resident,
        };
        if run.samples.last() != Some(&last) {
            run.samples.push(last);
        }
        if run.peak_live > 0 {
            run.fragmentation_at_peak = tally.resident_at_peak as f64 / run.peak_live as f64 - 1.0;
        }
        run.fragmentation_at_end = if run.final_live > 0 {
            run.final_resident as f64 / run.final_live as f64 - 1.0
        } else {
            0.0
        };
        run.syscalls = stack.syscalls();
        run.seconds = tally.seconds;
        run.waste_at_end = Some(waste_at(&stack, events, run.final_live));
        run
    }
}

/// The waste of `stack` now, `event` events replayed, the program holding `live`.
fn waste_at(stack: &Stack, event: u64, live: u64) -> WasteAt {
    let waste = stack.waste(live);
    WasteAt {
        event,
        live,
        mapped: stack.mapped(),
        internal: waste.internal(),
        external: waste.external(),
        waste,
    }
}

impl Tally {
    #[inline(always)]
    fn set(&mut self, id: u32, a: Addr) {
        self.addrs[id as usize] = a.0;
    }

    #[inline(always)]
    fn get(&self, id: u32) -> Addr {
        Addr(self.addrs[id as usize])
    }

    /// Replays step `s` on `l`, its extra operands read from `extra` at `*at`: the bytes it
    /// requests (0 for none) for its marker row, `None` for a skip.
    #[inline(always)]
    fn apply<L: Layers>(
        &mut self,
        l: &mut L,
        s: &Step,
        extra: &[u64],
        at: &mut usize,
    ) -> Result<Option<u64>, AllocError> {
        let (route, id, size) = (s.route(), s.id(), s.size);
        let mut next = || {
            *at += 1;
            extra[*at - 1]
        };
        match s.kind() {
            MALLOC => {
                let a = l.malloc(route, size)?;
                self.set(id, a);
            }
            FREE => l.free(route, self.get(id))?,
            CALLOC => {
                let elsize = next();
                let a = l.calloc(route, size, elsize)?;
                self.set(id, a);
                return Ok(Some(size.saturating_mul(elsize)));
            }
            REALLOC => {
                let old = next() as u32;
                let from = if old == NO_ID {
                    Addr::NULL
                } else {
                    self.get(old)
                };
                let a = l.realloc(route, from, size)?;
                self.set(id, a);
            }
            MEMALIGN => {
                let a = l.memalign(next(), size)?;
                self.set(id, a);
            }
            MALLOPT => {
                l.mallopt(size as i64, next() as i64);
                return Ok(Some(0));
            }
            MAP => {
                let a = l.map(size)?;
                self.set(id, a);
                return Ok(Some(0));
            }
            UNMAP => {
                l.unmap(self.get(id), size)?;
                return Ok(Some(0));
            }
            _ => return Ok(None),
        }
        Ok(Some(size))
    }

    /// Replays the steps of `batch` from `from` (a step, and its first operand in
    /// `extra`) on `l`; stops right after a step at which live reaches a new peak that no
    /// event read so far exceeds, giving where to go on from (its waste is walked there).
    #[inline(always)]
    fn steps<L: Layers>(
        &mut self,
        l: &mut L,
        batch: &Batch,
        from: (usize, usize),
        read_peak: &AtomicU64,
    ) -> Result<Option<(usize, usize)>, Box<EventError>> {
        let (first, mut at) = from; // the next of `batch.extra`
                                    // what every step updates, kept here and written back when the loop ends
        let mut event = self.event; // the event after the last step
        let (mut peak_mapped, mut peak_resident) = (self.run.peak_mapped, self.run.peak_resident);
        let r = &self.run;
        let mut last = (r.final_live, r.final_mapped, r.final_resident);
        let mut walk = None;
        for (i, s) in batch.steps[first..].iter().enumerate() {
            let ev = event + s.gap();
            let request = match self.apply(l, s, &batch.extra, &mut at) {
                Ok(Some(request)) => request,
                Ok(None) => {
                    event += s.size; // a skip
                    continue;
                }
                Err(e) => {
                    return Err(Box::new(EventError {
                        event: ev,
                        line: batch.line(ev),
                        source: Cause::Model(e),
                    }))
                }
            };
            event = ev + 1;
            let (mapped, resident) = l.footprint();
            if s.live > self.run.peak_live {
                self.run.peak_live = s.live;
                self.resident_at_peak = resident; // fragmentation computed once, at the end
                if read_peak.load(Ordering::Relaxed) <= s.live {
                    walk = Some((first + i + 1, at));
                }
            }
            peak_mapped = peak_mapped.max(mapped);
            peak_resident = peak_resident.max(resident);
            if s.marker() {
                self.run.markers.push(MarkerRow {
                    size: request,
                    event: ev,
                    live: s.live,
                    mapped,
                    resident,
                });
            }
            last = (s.live, mapped, resident);
            if ev >= self.next_sample {
                self.sample(Sample {
                    event,
                    live: s.live,
                    mapped,
                    resident,
                });
            }
            if walk.is_some() {
                break;
            }
        }
        self.event = event;
        let r = &mut self.run;
        (r.peak_mapped, r.peak_resident) = (peak_mapped, peak_resident);
        (r.final_live, r.final_mapped, r.final_resident) = last;
        Ok(walk)
    }

    /// Keeps a sample; past twice the limit, every other one goes and the stride doubles.
    fn sample(&mut self, s: Sample) {
        let v = &mut self.run.samples;
        v.push(s);
        if v.len() >= 2 * MAX_SAMPLES {
            let kept: Vec<Sample> = v.iter().step_by(2).copied().collect();
            *v = kept;
            self.stride *= 2;
        }
        self.next_sample = s.event - 1 + self.stride;
    }
}

/// Parses every model name first, through [`ModelSpec::parse`] (so a bad one stops before
/// any work), and makes sure each is a whole process ([`ModelSpec::stack`]).
///
/// # Errors
/// The first bad name's message.
pub fn parse_models(names: &[String]) -> Result<Vec<(String, ModelSpec)>, String> {
    names
        .iter()
        .map(|n| {
            let spec = ModelSpec::parse(n).map_err(|e| e.to_string())?;
            spec.stack().map_err(|e| e.to_string())?;
            Ok((n.clone(), spec))
        })
        .collect()
}

/// Replays every trace through every model: one job per trace on rayon's pool, the
/// models of a trace on threads of their own.
///
/// # Errors
/// The first trace that fails, with its path.
pub fn compare(
    paths: &[String],
    models: &[(String, ModelSpec)],
    opts: &CompareOptions,
) -> Result<Vec<TraceRun>, CompareError> {
    use rayon::prelude::*;
    paths
        .par_iter()
        .map(|p| compare_trace(p, models, opts))
        .collect()
}

/// Replays one trace through every model: the replay driver reads the trace (counts,
/// progress, the recording's own consistency, [`EventError`]) into a [`Feed`], which
/// translates each event and hands batches of steps to the models' threads.
///
/// # Errors
/// See [`CompareError`].
pub fn compare_trace(
    path: &str,
    models: &[(String, ModelSpec)],
    opts: &CompareOptions,
) -> Result<TraceRun, CompareError> {
    let terr = |source| CompareError::Trace {
        path: path.to_string(),
        source,
    };
    let mut reader = open(Path::new(path)).map_err(terr)?;
    let mut runners = models
        .iter()
        .map(|(n, s)| Ok(Runner::new(n, s.stack()?)))
        .collect::<Result<Vec<Runner>, crate::replay::ModelError>>()
        .map_err(|e| CompareError::Model(e.to_string()))?;
    // a recording that says where the process's other mappings and its heap were
    // (`# maps:`, `# heap:`): each model's process takes that shape (vm::ProcessLayout)
    let header = reader.header();
    let herr = |message| CompareError::Header {
        path: path.to_string(),
        message,
    };
    let layout =
        ProcessLayout::from_header(header.get("maps"), header.get("heap")).map_err(herr)?;
    for r in &mut runners {
        r.stack
            .apply_layout(&layout)
            .map_err(|e| herr(format!("`# maps:` line: {e}")))?;
    }
    let read_peak = AtomicU64::new(0); // the highest live the feed has read
    let ended = AtomicU64::new(u64::MAX); // events replayed, once the feed is done
    let (start, feed_cpu) = (Instant::now(), thread_cpu());
    std::thread::scope(|scope| {
        let (read_peak, ended) = (&read_peak, &ended);
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        for mut r in runners {
            let (tx, rx) = sync_channel::<Arc<Batch>>(4);
            txs.push(tx);
            handles.push(scope.spawn(
                move || -> Result<Option<ModelRun>, (String, Box<EventError>)> {
                    let rx: Receiver<Arc<Batch>> = rx;
                    let cpu = thread_cpu();
                    for batch in rx {
                        if let Err(e) = r.steps(&batch, read_peak) {
                            return Err((r.tally.name, e));
                        }
                    }
                    // the channel is closed once the trace's end is known: the waste at the
                    // end is walked here, beside the other models, not after them all
                    let events = ended.load(Ordering::SeqCst);
                    let mut run = (events != u64::MAX).then(|| r.finish(events));
                    if let Some(run) = &mut run {
                        run.timing = ThreadTiming {
                            cpu: thread_cpu() - cpu,
                            done_at: start.elapsed().as_secs_f64(),
                        };
                    }
                    Ok(run)
                },
            ));
        }
        let mut feed = Feed {
            tr: Translator::default(),
            batch: Batch::with_capacity(BATCH),
            event: 0,
            txs,
            markers: &opts.markers,
            sent: VecDeque::new(),
            held: None,
            max_live: 0,
            read_peak,
            until: opts.until.unwrap_or(u64::MAX),
        };
        let drive_opts = DriveOptions {
            keep_going: false,
            progress: opts.progress,
            label: "comparing",
        };
        let driven = Source::new(reader.as_mut())
            .map_err(ReplayError::from)
            .and_then(|mut src| drive_ledger(&mut src, &mut feed, &drive_opts));
        // the event that stopped the loop at `until` was read, not replayed
        let until = opts.until.unwrap_or(u64::MAX);
        if let Ok(d) = &driven {
            ended.store(d.events.min(until), Ordering::SeqCst); // before the channels close
        }
        feed.finish();
        drop(feed); // closes the channels: the models finish their batches and their runs
        let feed = ThreadTiming {
            cpu: thread_cpu() - feed_cpu,
            done_at: start.elapsed().as_secs_f64(),
        };
        let joined: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("a model thread panicked"))
            .collect();
        let driven = driven.map_err(|source| CompareError::Replay {
            path: path.to_string(),
            source: Box::new(source),
        })?;
        let events = driven.events.min(until);
        let mut runs = Vec::new();
        for j in joined {
            match j {
                Ok(r) => runs.extend(r),
                Err((model, source)) => {
                    return Err(CompareError::Refused {
                        path: path.to_string(),
                        model,
                        source,
                    })
                }
            }
        }
        Ok(TraceRun {
            trace: path.to_string(),
            events,
            models: runs,
            wall: start.elapsed().as_secs_f64(),
            feed,
        })
    })
}

/// The driver's consumer: each event translated into a step, batches handed to the
/// models' threads.
struct Feed<'a> {
    tr: Translator,                   // recorded addresses -> block ids, live bytes
    batch: Batch,                     // the batch being filled
    event: u64,                       // the event after the last step made
    txs: Vec<SyncSender<Arc<Batch>>>, // one channel per model
    markers: &'a [u64],               // marker request sizes
    sent: VecDeque<Arc<Batch>>,       // batches handed out, oldest first (to reuse)
    held: Option<Arc<Batch>>,         // the last full batch, sent when the next is full
    max_live: u64,                    // the highest live of the steps made so far
    read_peak: &'a AtomicU64,         // max_live, for the models (stored at each flush)
    until: u64,                       // events to replay
}

impl Feed<'_> {
    /// Hands the batch before this one to every model and holds this one back; false when
    /// one has stopped (its error is reported when its thread is joined).
    fn flush(&mut self) -> bool {
        if self.batch.steps.is_empty() {
            return true;
        }
        // the oldest batch every model is done with is reused (no fresh allocation, and
        // its page faults, per batch)
        let next = match self.sent.front().map(Arc::strong_count) {
            Some(1) => {
                let mut b = self.sent.pop_front().and_then(|b| Arc::try_unwrap(b).ok());
                b.as_mut().map(Batch::clear);
                b.unwrap_or_else(|| Batch::with_capacity(BATCH))
            }
            _ => Batch::with_capacity(BATCH),
        };
        self.batch.ids = self.tr.sizes.len();
        let b = Arc::new(std::mem::replace(&mut self.batch, next));
        // one batch held back: a model replaying a batch knows (`read_peak`) the live of
        // every event up to the end of the next one, so fewer of its new peaks are walked.
        // Published once a batch, not as live rises: the models read it at each of their
        // new peaks, and a line the feed wrote at every rise would bounce between cores.
        self.read_peak.store(self.max_live, Ordering::Relaxed);
        match self.held.replace(b) {
            Some(h) => self.send(h),
            None => true,
        }
    }

    /// Hands `b` to every model; false when one has stopped.
    fn send(&mut self, b: Arc<Batch>) -> bool {
        let sent = self.txs.iter().all(|tx| tx.send(b.clone()).is_ok());
        self.sent.push_back(b);
        sent
    }

    /// Hands every step left to the models.
    fn finish(&mut self) {
        self.flush();
        if let Some(h) = self.held.take() {
            self.send(h);
        }
    }
}

impl Ledger for Feed<'_> {
    type Sets = IdTable;
    #[inline(always)]
    fn liveness(&mut self) -> &mut Liveness<IdTable> {
        &mut self.tr.ledger
    }
}

impl Replay for Feed<'_> {
    #[inline(always)]
    fn step(&mut self, index: u64, e: &Event) -> Result<Flow, Cause> {
        if index >= self.until {
            return Ok(Flow::Stop); // counted by the driver: see `compare_trace`
        }
        match translate(&mut self.tr, e, &mut self.batch.extra) {
            Ok(Some((mut step, request))) => {
                let live = self.tr.live;
                self.max_live = self.max_live.max(live); // published at the next flush
                let b = &mut self.batch;
                let mut gap = index - self.event;
                if gap >> GAP_BITS != 0 {
                    b.steps.push(Step::skip(gap, live));
                    gap = 0;
                }
                self.event = index + 1;
                let delta = e.line.wrapping_sub(index);
                if b.lines.last().map_or(true, |&(_, d)| d != delta) {
                    b.lines.push((index, delta));
                }
                let marker = request > 0 && self.markers.contains(&request);
                step.word |= gap << 38 | u64::from(marker) << 37;
                step.live = live;
                b.steps.push(step);
                if b.steps.len() >= BATCH && !self.flush() {
                    return Ok(Flow::Stop); // a model stopped: its error is reported
                }
            }
            Ok(None) => {}
            Err(cause) => return Err(cause),
        }
        Ok(Flow::Next)
    }
}

/// A free (or realloc, munmap) of a recorded address that is not live.
#[cold]
fn never(op: &'static str, addr: Addr) -> Cause {
    Cause::NeverAllocated { op, addr }
}

/// More blocks live at once than block ids (their slots hold 30 bits).
#[cold]
fn too_many_blocks(max_id: u32) -> Cause {
    Cause::Model(AllocError::ModelLimit {
        what: format!("more than {} blocks live at once", u64::from(max_id) + 1),
        model: "compare",
    })
}

/// The step an event makes, if any (its gap, marker and live left for the feed), its
/// extra operands pushed on `extra`, and the bytes it requests (0 for none); `Err` names a
/// free of an address not live.
#[inline(always)]
fn translate(
    tr: &mut Translator,
    e: &Event,
    extra: &mut Vec<u64>,
) -> Result<Option<(Step, u64)>, Cause> {
    let route = |d: Domain| match d {
        Domain::Obj | Domain::Mem => Some(Route::Object),
        Domain::Raw | Domain::Libc => Some(Route::System),
        Domain::RawNested => None,
    };
    // the route of a call about block `a`: none for a nested call (the model's business)
    // or a NULL block (a failed call, free(NULL): nothing changed)
    let routed = |d: Domain, a: Addr| route(d).filter(|_| !a.is_null());
    let system = Route::System;
    let (step, request) = match e.kind {
        EventKind::Malloc { domain, size, addr } => {
            let Some(route) = routed(domain, addr) else {
                return Ok(None);
            };
            (Step::call(MALLOC, route, tr.born(addr, size)?, size), size)
        }
        EventKind::BlockNew { size, addr, .. } => {
            (Step::call(MALLOC, system, tr.born(addr, size)?, size), size)
        }
        EventKind::Calloc {
            domain,
            nelem,
            elsize,
            addr,
        } => {
            let Some(route) = routed(domain, addr) else {
                return Ok(None);
            };
            let request = nelem.saturating_mul(elsize);
            extra.push(elsize);
            (
                Step::call(CALLOC, route, tr.born(addr, request)?, nelem),
                request,
            )
        }
        EventKind::Memalign { align, size, addr } => {
            extra.push(align);
            (
                Step::call(MEMALIGN, system, tr.born(addr, size)?, size),
                size,
            )
        }
        EventKind::Valloc { size, addr } | EventKind::Pvalloc { size, addr } => {
            extra.push(4096);
            (
                Step::call(MEMALIGN, system, tr.born(addr, size)?, size),
                size,
            )
        }
        EventKind::Free { domain, addr } => {
            let Some(route) = routed(domain, addr) else {
                return Ok(None);
            };
            match tr.dies(addr) {
                Some(id) => (Step::call(FREE, route, id, 0), 0),
                // a raw block the recording missed (the driver counts it): nothing to free
                None if domain == Domain::Raw => return Ok(None),
                None => return Err(never("free", addr)),
            }
        }
        EventKind::ClearFree { addr, .. } => {
            let id = tr.dies(addr).ok_or_else(|| never("free", addr))?;
            (Step::call(FREE, system, id, 0), 0)
        }
        EventKind::Realloc {
            domain,
            old,
            size,
            new,
        } => {
            let Some(route) = route(domain) else {
                return Ok(None);
            };
            if new.is_null() && (size > 0 || old.is_null()) {
                return Ok(None); // failed, or realloc(NULL, 0) = NULL: nothing changed
            }
            let old_id = match (old.is_null(), tr.dies(old)) {
                (true, _) => NO_ID,
                (false, Some(id)) => id,
                // a raw block the recording missed (the driver counts it): a fresh block
                (false, None) if domain == Domain::Raw => NO_ID,
                (false, None) => return Err(never("realloc", old)),
            };
            if new.is_null() {
                if old_id == NO_ID {
                    return Ok(None); // realloc(p, 0) of a block the recording missed
                }
                // realloc(p, 0) that freed p
                (Step::call(FREE, route, old_id, 0), 0)
            } else {
                extra.push(u64::from(old_id));
                (Step::call(REALLOC, route, tr.born(new, size)?, size), size)
            }
        }
        EventKind::Mallopt { param, value, .. } => {
            extra.push(value as u64);
            (Step::call(MALLOPT, system, 0, param as u64), 0)
        }
        EventKind::VirtualAlloc { size, addr } => {
            if addr.is_null() {
                return Ok(None);
            }
            // a mapping, not a request: its bytes do not count as live
            (Step::call(MAP, system, tr.born(addr, 0)?, size), 0)
        }
        EventKind::VirtualFree { addr, size } => {
            let id = tr.dies(addr).ok_or_else(|| never("munmap", addr))?;
            (Step::call(UNMAP, system, id, size), 0)
        }
        _ => return Ok(None),
    };
    Ok(Some((step, request)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_table_gives_back_what_was_put_and_only_once() {
        let mut t = IdTable::default();
        // neighbours, a page boundary, far apart (more pages than the cache holds), odd
        let mut addrs: Vec<u64> = vec![0x1000, 0x1008, 0xfff8, 0x1_0000, 0x7fff_0000_0010, 0x1003];
        addrs.extend((0..(CACHE as u64 * 3)).map(|i| 0x5555_0000_0000 + (i << 16) + 8 * i));
        for (id, &a) in addrs.iter().enumerate() {
            t.put(a, id as u32);
        }
        for (id, &a) in addrs.iter().enumerate().rev() {
            assert_eq!(t.take(a), Some(id as u32), "{a:#x}");
            assert_eq!(t.take(a), None, "{a:#x} taken twice");
        }
        assert_eq!(t.take(0x2000), None, "never put");
        t.put(0x1000, 0); // id 0 is a real id, not an empty slot
        assert_eq!(t.take(0x1000), Some(0));
    }

    #[test]
    fn the_id_table_refiles_its_entries_when_an_8_aligned_address_comes() {
        let mut t = IdTable::default();
        let at = |i: u64| 0x5555_0000_0000 + i * 48 + (i % 5) * 0x1_0000;
        for i in 0..5000u64 {
            t.put(at(i), i as u32);
        }
        assert_eq!(t.shift, 4, "16-aligned: 16-byte granules");
        assert_eq!(t.take(at(7) + 8), None, "never put, in a granule in use");
        t.put(at(9) + 8, 9999); // 8-aligned only: 8-byte granules from now on
        assert_eq!(t.shift, 3);
        assert_eq!(t.take(at(9) + 8), Some(9999));
        for i in (0..5000u64).rev() {
            assert_eq!(t.take(at(i)), Some(i as u32), "{:#x}", at(i));
            assert_eq!(t.take(at(i)), None);
        }
    }

    /// The marks are the driver's two live sets exactly, whatever the ids do at the same
    /// addresses, across the refiling in 8-byte granules and at addresses not 8-aligned.
    #[test]
    fn the_id_table_s_marks_are_two_sets_beside_the_ids() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        use std::collections::HashSet;
        let mut rng = StdRng::seed_from_u64(10);
        let mut t = IdTable::default();
        let (mut held, mut raw) = (HashSet::new(), HashSet::new());
        let mut ids = HashMap::new();
        for step in 0..40_000u32 {
            // 16-aligned at first; then 8-aligned and odd ones too (the table refiles)
            let grid = if step < 20_000 { 16 } else { 8 };
            let mut a =
                0x7f00_0000_0000 + grid * rng.gen_range(0..3000u64) + (rng.gen_range(0..4) << 20);
            if step >= 30_000 && rng.gen_ratio(1, 50) {
                a += 3;
            }
            let set = rng.gen_bool(0.5);
            let model = if set { &mut raw } else { &mut held };
            match rng.gen_range(0..4) {
                0 => assert_eq!(
                    LiveSets::insert(&mut t, set, a),
                    model.insert(a),
                    "insert {a:#x}"
                ),
                1 => assert_eq!(
                    LiveSets::remove(&mut t, set, a),
                    model.remove(&a),
                    "remove {a:#x}"
                ),
                2 => {
                    t.put(a, step);
                    ids.insert(a, step);
                }
                _ => assert_eq!(t.take(a), ids.remove(&a), "take {a:#x}"),
            }
        }
        assert_eq!(t.shift, 3, "8-aligned addresses came");
        for a in held.clone() {
            assert!(LiveSets::remove(&mut t, false, a) && !LiveSets::remove(&mut t, false, a));
        }
        for a in raw.clone() {
            assert!(LiveSets::remove(&mut t, true, a));
        }
        for (a, id) in ids {
            assert_eq!(t.take(a), Some(id));
        }
        assert!(
            t.odd.is_empty(),
            "an odd address's entry goes once it holds nothing"
        );
    }

    #[test]
    fn a_step_gives_back_what_was_packed_in_it() {
        for (kind, route, id, size) in [
            (MALLOC, Route::Object, 0, 1),
            (REALLOC, Route::System, u32::MAX - 1, u64::MAX),
            (UNMAP, Route::System, 12345, 1 << 40),
        ] {
            for (gap, marker) in [(0, false), ((1 << GAP_BITS) - 1, true)] {
                let mut s = Step::call(kind, route, id, size);
                s.word |= gap << 38 | u64::from(marker) << 37;
                assert_eq!(
                    (s.kind(), s.route(), s.id(), s.size, s.gap(), s.marker()),
                    (kind, route, id, size, gap, marker)
                );
            }
        }
        let s = Step::skip(1 << 40, 7);
        assert_eq!((s.kind(), s.size, s.live, s.gap()), (SKIP, 1 << 40, 7, 0));
    }

    #[test]
    fn a_runner_counts_events_across_skips_and_gaps_and_names_a_refusal_s_line() {
        let gp = crate::sysmalloc::glibc::GlibcParams::v2_36_x86_64();
        let mut r = Runner::new("glibc-2.36", Stack::new_glibc(gp));
        let at = |gap: u64, mut s: Step, live| {
            s.word |= gap << 38;
            s.live = live;
            s
        };
        let batch = Batch {
            steps: vec![
                Step::skip(100, 0),
                at(0, Step::call(MALLOC, Route::System, 0, 24), 24), // event 100
                at(2, Step::call(FREE, Route::System, 0, 0), 0),     // event 103
            ],
            lines: vec![(100, 7)],
            ids: 1,
            ..Batch::default()
        };
        r.steps(&batch, &AtomicU64::new(0)).unwrap();
        assert_eq!(r.tally.event, 104, "the event after the last step");
        assert_eq!(
            r.tally.run.samples[0].event, 101,
            "sampled right after event 100"
        );
        assert_eq!((r.tally.run.peak_live, r.tally.run.final_live), (24, 0));
        let refused = Batch {
            steps: vec![at(5, Step::call(FREE, Route::System, 0, 0), 0)], // event 109
            lines: vec![(109, 12)],
            ids: 1,
            ..Batch::default()
        };
        let e = r.steps(&refused, &AtomicU64::new(0)).unwrap_err();
        assert_eq!((e.event, e.line), (109, 121), "{e}");
    }

    #[test]
    fn a_batch_names_the_line_of_each_event_from_its_change_points() {
        let b = Batch {
            lines: vec![(100, 3), (105, 9), (200, 10)],
            ..Batch::default()
        };
        for (event, line) in [(100, 103), (104, 107), (105, 114), (199, 208), (250, 260)] {
            assert_eq!(b.line(event), line, "event {event}");
        }
    }

    /// Past the last id the slots can hold, a new block is an error that says so, not a
    /// wrapped id; a freed id can still be reused.
    #[test]
    fn the_translator_refuses_more_live_blocks_than_ids() {
        let mut tr = Translator {
            max_id: 2,
            ..Translator::default()
        };
        for k in 0..3u64 {
            assert_eq!(tr.born(Addr(0x1000 + 16 * k), 8).unwrap(), k as u32);
        }
        let err = tr.born(Addr(0x2000), 8).unwrap_err().to_string();
        assert!(err.contains("more than 3 blocks live at once"), "{err}");
        assert_eq!(tr.dies(Addr(0x1010)), Some(1));
        assert_eq!(tr.born(Addr(0x2000), 8).unwrap(), 1, "the freed id");
    }

    #[test]
    fn the_translator_reuses_ids_and_keeps_the_live_bytes() {
        let mut tr = Translator::default();
        let a = tr.born(Addr(0x1000), 100).unwrap();
        let b = tr.born(Addr(0x2000), 50).unwrap();
        assert_ne!(a, b);
        assert_eq!(tr.live, 150);
        assert_eq!(tr.dies(Addr(0x1000)), Some(a));
        assert_eq!(tr.dies(Addr(0x1000)), None);
        assert_eq!(tr.live, 50);
        assert_eq!(tr.born(Addr(0x3000), 7).unwrap(), a, "a freed id is reused");
        assert_eq!(tr.live, 57);
        // sizes of 32 bits and more, kept apart, come back whole
        for size in [
            u64::from(u32::MAX) - 1,
            u64::from(u32::MAX),
            1 << 40,
            u64::MAX - 57,
        ] {
            let c = tr.born(Addr(0x4000), size).unwrap();
            assert_eq!(tr.live, 57 + size);
            assert_eq!(tr.dies(Addr(0x4000)), Some(c));
            assert_eq!(tr.live, 57, "{size}");
        }
        assert!(tr.large.is_empty());
    }
}
