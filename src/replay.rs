//! Replaying any trace through any allocator model: the trace as a workload.
//!
//! ```text
//!   EventReader ──events──> replay ──malloc/free/realloc/calloc──> dyn Allocator
//!                             │  recorded address ──map──> model address (live blocks)
//!                             └─ counts of every kind, peaks, events/s  ──> ReplayReport
//! ```
//! Which events reach the model: every top-level request (`O`, `M`, `R`, plain C
//! library calls; `R` can be left out). Calls nested inside another (`r`), pymalloc's own
//! arena and data-stack mappings (`A F V W`), free-list pops and pushes and markers are
//! consequences of a top-level call, so they are counted, not replayed. `memalign`,
//! `valloc`, `pvalloc` are replayed as `malloc` of their size (the [`Allocator`] trait has
//! no aligned call); a CPython 2 `B`/`b` block is a `malloc`, its `X`/`x` a `free`.
//!
//! A model hands out its own addresses: the recorded address of each live block maps to
//! the model's, so a free finds the model's block whatever the model chose.
//! Invariants, checked as the replay goes:
//! `Σ counts == events`, `replayed + context + failed + free_null == events`,
//! `|live map| == live blocks of the trace`, a free or realloc of a recorded address
//! that is not live is an error naming the event.

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::check::pymalloc3::{Mode, Replayer, Step};
use crate::error::AllocError;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::pymalloc::{Pymalloc, PymallocParams};
use crate::sysmalloc::glibc::{Glibc, GlibcParams};
use crate::sysmalloc::Bump;
use crate::trace::{Domain, Event, EventKind, EventReader, TraceError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

/// The models `pyalloc replay --model` knows (any pymalloc preset name, `cpython-2.7.0`
/// … `cpython-3.11`, is accepted too; `cpython-3.11` is listed).
pub const MODEL_NAMES: &[&str] = &[
    "bump",
    "glibc-2.36",
    "null",
    "cpython-3.11",
    "mimalloc-2.1.2",
];

/// A fresh model by name (`bump`, `glibc`/`glibc-2.36`, `null`, a pymalloc preset such as
/// `cpython-3.11` — pymalloc over a bump allocator for fall-through requests, arenas from
/// the platform's address space), on the Linux x86-64 preset.
///
/// # Errors
/// An unknown name, with the known ones.
pub fn model_by_name(name: &str) -> Result<Box<dyn Allocator>, String> {
    let p = Platform::linux_x86_64();
    if let Some(params) = pymalloc_preset(name) {
        return Ok(Box::new(Pymalloc::new(
            params,
            Bump::new(p.heap_start, 16),
            p.address_space(),
        )));
    }
    match name {
        "bump" => Ok(Box::new(Bump::new(p.heap_start, 16))),
        "glibc" | "glibc-2.36" => Ok(Box::new(Glibc::new(
            GlibcParams::v2_36_x86_64(),
            p.address_space(),
        ))),
        "null" => Ok(Box::new(Null::default())),
        n if crate::check::mimalloc::mode_of(n).is_some() => {
            Ok(Box::new(crate::mimalloc::Mimalloc::default()))
        }
        _ => Err(format!(
            "no model {name:?} (known: {}; any pymalloc preset: cpython-2.7.0 … cpython-3.11, +pinned / +own for CPython 3 recordings)",
            MODEL_NAMES.join(", ")
        )),
    }
}

/// The pymalloc preset a model name asks for (`cpython-3.11`, `3.11` …), if any.
fn pymalloc_preset(name: &str) -> Option<PymallocParams> {
    let base = name.split('+').next().unwrap_or(name);
    if !(base.starts_with("cpython-") || base.starts_with(|c: char| c.is_ascii_digit())) {
        return None;
    }
    PymallocParams::by_name(base)
}

/// Replays `reader` through the model named `name`. For a CPython 3 recording (header
/// `pymalloc allocation trace`) and a pymalloc preset, the replay is the check's: arena
/// bases from the `A` lines and fall-through addresses from the nested `r` lines
/// (`+own` for the model's own), every O/M call through the model, and the report counts
/// the small-request addresses checked and matched. Otherwise [`replay`] through
/// [`model_by_name`].
///
/// # Errors
/// As [`replay`]; an unknown model name as [`ReplayError::UnknownModel`].
pub fn replay_named(
    reader: &mut dyn EventReader,
    name: &str,
    opts: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let (first, py3) = first_event(reader)?;
    let mut src = Source::direct(reader, first);
    let r = replay_chosen(&mut src, name, py3, opts);
    drop(src);
    let mut r = r?;
    r.other_lines = reader.other_lines();
    Ok(r)
}

/// As [`replay_named`], decoding on a second thread while the model replays on this one
/// (for readers that can move to another thread, such as the binary reader).
///
/// # Errors
/// As [`replay_named`].
pub fn replay_named_threaded(
    reader: &mut (dyn EventReader + Send),
    name: &str,
    opts: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let (first, py3) = first_event(reader)?;
    let dummy = Event {
        kind: EventKind::Mark { index: 0 },
        line: 0,
    };
    let r = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Event>, TraceError>>(4);
        let (back, spare) = std::sync::mpsc::sync_channel::<Vec<Event>>(8);
        let rd = &mut *reader;
        scope.spawn(move || loop {
            let mut v = spare.try_recv().unwrap_or_default();
            v.resize(BATCH, dummy);
            match rd.next_events(&mut v) {
                Ok(0) => break,
                Ok(n) => {
                    v.truncate(n);
                    if tx.send(Ok(v)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        });
        let mut src = Source::Threaded {
            rx,
            back,
            cur: first.map(|e| vec![e]).unwrap_or_default(),
            started: first.is_none(),
        };
        let r = replay_chosen(&mut src, name, py3, opts);
        drop(src); // closes the channel: the decoding thread stops
        r
    });
    let mut r = r?;
    r.other_lines = reader.other_lines();
    Ok(r)
}

/// The first event (the header is complete once it has been read) and whether the trace
/// is a CPython 3 recording.
fn first_event(reader: &mut dyn EventReader) -> Result<(Option<Event>, bool), ReplayError> {
    let mut first = [Event {
        kind: EventKind::Mark { index: 0 },
        line: 0,
    }];
    let got = reader.next_events(&mut first)?;
    let py3 = reader
        .header()
        .lines
        .first()
        .is_some_and(|l| l.starts_with("pymalloc allocation trace"));
    Ok(((got == 1).then_some(first[0]), py3))
}

fn replay_chosen(
    src: &mut Source,
    name: &str,
    recorded_py3: bool,
    opts: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    if let (Some(params), true) = (pymalloc_preset(name), recorded_py3) {
        let mode = if name.ends_with("+own") {
            Mode::Own
        } else {
            Mode::Pinned
        };
        let mut rp = Replayer::new(params, mode, &Platform::linux_x86_64());
        return replay_recorded(src, &mut rp, opts);
    }
    let mut model = model_by_name(name).map_err(ReplayError::UnknownModel)?;
    replay_from(src, model.as_mut(), opts)
}

/// Events read in batches.
const BATCH: usize = 4096;

/// Where the replay loops take their batches of events from.
enum Source<'r> {
    /// Read on this thread.
    Direct {
        reader: &'r mut dyn EventReader,
        buf: Vec<Event>,      // BATCH events; the first `n` are the current batch
        n: usize,             // events of the current batch
        first: Option<Event>, // an event read ahead (for the header), given first
    },
    /// Read on another thread: batches come through a channel, spent ones go back.
    Threaded {
        rx: std::sync::mpsc::Receiver<Result<Vec<Event>, TraceError>>,
        back: std::sync::mpsc::SyncSender<Vec<Event>>,
        cur: Vec<Event>, // the current batch
        started: bool,   // cur is no longer the read-ahead first event
    },
}

impl<'r> Source<'r> {
    fn direct(reader: &'r mut dyn EventReader, first: Option<Event>) -> Source<'r> {
        Source::Direct {
            reader,
            buf: vec![
                Event {
                    kind: EventKind::Mark { index: 0 },
                    line: 0
                };
                BATCH
            ],
            n: 0,
            first,
        }
    }

    /// The next batch; empty at the end.
    fn next_batch(&mut self) -> Result<&[Event], TraceError> {
        match self {
            Source::Direct {
                reader,
                buf,
                n,
                first,
            } => {
                if let Some(e) = first.take() {
                    buf[0] = e;
                    *n = 1;
                } else {
                    *n = reader.next_events(buf)?;
                }
                Ok(&buf[..*n])
            }
            Source::Threaded {
                rx,
                back,
                cur,
                started,
            } => {
                if !*started {
                    *started = true;
                    return Ok(&cur[..]);
                }
                let spent = std::mem::take(cur);
                if spent.capacity() >= BATCH {
                    let _ = back.try_send(spent);
                }
                match rx.recv() {
                    Ok(Ok(v)) => *cur = v,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {} // the reader is done: an empty batch ends the replay
                }
                Ok(&cur[..])
            }
        }
    }
}

/// Replays a CPython 3 recording through the check's pinned (or own) pymalloc replayer.
fn replay_recorded(
    src: &mut Source,
    rp: &mut Replayer,
    opts: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let start = Instant::now();
    let mut r = ReplayReport {
        model: format!("{} (pinned to the recording)", rp.model().name()),
        ..Default::default()
    };
    let mut counts = [0u64; KINDS];
    let (mut checked, mut matched) = (0u64, 0u64);
    let mut ev = 0u64;
    let bar = Progress::new(opts.progress, "replaying");
    loop {
        let batch = src.next_batch()?;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            counts[usize::from(e.kind.code())] += 1;
            if let EventKind::ArenaAlloc { .. } = e.kind {
                r.arenas_mapped += 1;
            }
            match rp.step(e) {
                Step::Context => r.context += 1,
                Step::Call {
                    small, matched: ok, ..
                } => {
                    r.replayed += 1;
                    checked += u64::from(small);
                    matched += u64::from(small && ok);
                }
                Step::Refused => {
                    let Some((err, _why)) = rp.take_error() else {
                        ev += 1; // a refusal always leaves its error; keep counting regardless
                        continue;
                    };
                    let refused = matches!(
                        err,
                        AllocError::NotLive { .. }
                            | AllocError::DoubleFree { .. }
                            | AllocError::Corrupt { .. }
                    );
                    return Err(match (refused, e.kind) {
                        (true, EventKind::Free { addr, .. }) => ReplayError::NeverAllocated {
                            event: ev,
                            line: e.line,
                            op: "free",
                            addr,
                        },
                        (true, EventKind::Realloc { old, .. }) => ReplayError::NeverAllocated {
                            event: ev,
                            line: e.line,
                            op: "realloc",
                            addr: old,
                        },
                        _ => ReplayError::Model {
                            event: ev,
                            line: e.line,
                            source: err,
                        },
                    });
                }
            }
            ev += 1;
        }
        bar.set(ev);
    }
    r.same_address = matched;
    r.checked = Some(checked);
    r.matched = Some(matched);
    r.model_arenas = Some(rp.model().narenas());
    finish_report(&mut r, bar, ev, &counts, rp.model().stats(), start);
    Ok(r)
}

/// The null model: hands out fresh addresses and keeps nothing, so a replay through it
/// measures what reading and mapping the trace cost. `live_bytes` is not tracked.
#[derive(Debug, Default)]
pub struct Null {
    next: u64,    // 16 × the number of requests served
    stats: Stats, // live_blocks only
}

impl Allocator for Null {
    fn name(&self) -> &'static str {
        "null"
    }
    fn malloc(&mut self, _size: usize) -> Result<Addr, AllocError> {
        self.next += 16;
        self.stats.live_blocks += 1;
        Ok(Addr(self.next))
    }
    fn free(&mut self, _addr: Addr) -> Result<(), AllocError> {
        self.stats.live_blocks = self.stats.live_blocks.saturating_sub(1);
        Ok(())
    }
    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        if !addr.is_null() {
            self.free(addr)?;
        }
        self.malloc(size)
    }
    fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Leave top-level raw-domain calls (`R`) out: only `O`/`M` (and C library calls) reach the model.
    pub skip_raw: bool,
    /// Show a progress bar (the caller sets it only when stderr is a terminal).
    pub progress: bool,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The model refused a request.
    #[error("event {event} (line {line}): {source}")]
    Model {
        /// 0-based event index.
        event: u64,
        /// 1-based line in the trace (0 when not from a text file).
        line: u64,
        /// The model's error.
        source: AllocError,
    },
    /// The trace frees (or reallocs) an address it never allocated, or no longer holds.
    #[error("event {event} (line {line}): {op} of {addr}, which the trace never allocated (or already freed)")]
    NeverAllocated {
        /// 0-based event index.
        event: u64,
        /// 1-based line.
        line: u64,
        /// `free` or `realloc`.
        op: &'static str,
        /// The recorded address.
        addr: Addr,
    },
    /// No model of that name.
    #[error("{0}")]
    UnknownModel(String),
    /// The trace returns an address that is still live: the recording is inconsistent.
    #[error("event {event} (line {line}): {addr} returned while still live")]
    StillLive {
        /// 0-based event index.
        event: u64,
        /// 1-based line.
        line: u64,
        /// The recorded address.
        addr: Addr,
    },
}

/// What a replay cost and what it read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    /// The model's name.
    pub model: String,
    /// Events read.
    pub events: u64,
    /// Events of each kind, keyed as the recordings' summaries key them (`m O`, `f r`, `A` …).
    pub counts: BTreeMap<String, u64>,
    /// Lines read that carry no event (caller lines, timestamps …).
    pub other_lines: u64,
    /// Requests given to the model.
    pub replayed: u64,
    /// Events counted but not replayed: consequences of another call (see the module doc).
    pub context: u64,
    /// Recorded calls that failed (returned NULL), not replayed.
    pub failed: u64,
    /// `free(NULL)` calls (no-ops).
    pub free_null: u64,
    /// Of the replayed requests that returned an address, those where the model returned the recorded one.
    pub same_address: u64,
    /// Arenas the recording mapped (`A` lines).
    pub arenas_mapped: u64,
    /// The model's own figures at the end: live and mapped bytes, their peaks.
    pub model_stats: Stats,
    /// Live blocks the model placed at another address than the recording's, at the end.
    pub moved_live: u64,
    /// Pinned pymalloc replay of a CPython 3 recording: small-request addresses compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked: Option<u64>,
    /// Of those, the ones the model computed exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<u64>,
    /// Pinned pymalloc replay: arenas the model holds at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_arenas: Option<u64>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Events per second.
    pub events_per_sec: f64,
}

/// A hasher for addresses: one multiply and a fold.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // The product's high bits are well mixed, its low bits are not (addresses are
        // 16-aligned): fold the high half down, since the table indexes by the low bits.
        let h = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

type AddrMap = HashMap<u64, u64, BuildHasherDefault<AddrHasher>>;
type AddrSet = HashSet<u64, BuildHasherDefault<AddrHasher>>;

/// Size of the counts table: one slot per event-kind code ([`EventKind::code`]).
const KINDS: usize = crate::trace::event::KINDS * 8;

struct State<'a> {
    model: &'a mut dyn Allocator,
    moved: AddrMap, // recorded -> model address, for live blocks the model placed elsewhere
    targets: AddrSet, // the model addresses in `moved` (so an unmoved address can be told from them)
    report: ReplayReport,
}

impl State<'_> {
    /// A request returned `rec` in the recording and `got` in the model.
    fn born(&mut self, ev: u64, e: &Event, rec: Addr, got: Addr) -> Result<(), ReplayError> {
        let still_live = if rec == got {
            self.report.same_address += 1;
            !self.moved.is_empty() && self.moved.contains_key(&rec.0)
        } else {
            self.targets.insert(got.0);
            self.moved.insert(rec.0, got.0).is_some()
        };
        if still_live {
            return Err(ReplayError::StillLive {
                event: ev,
                line: e.line,
                addr: rec,
            });
        }
        Ok(())
    }

    /// The model address of the live block recorded at `rec`, taken out of the maps.
    fn lookup(
        &mut self,
        ev: u64,
        e: &Event,
        op: &'static str,
        rec: Addr,
    ) -> Result<Addr, ReplayError> {
        if !self.moved.is_empty() {
            if let Some(m) = self.moved.remove(&rec.0) {
                self.targets.remove(&m);
                return Ok(Addr(m));
            }
            if self.targets.contains(&rec.0) {
                return Err(self.never(ev, e, op, rec));
            }
        }
        Ok(rec)
    }

    fn never(&self, ev: u64, e: &Event, op: &'static str, rec: Addr) -> ReplayError {
        ReplayError::NeverAllocated {
            event: ev,
            line: e.line,
            op,
            addr: rec,
        }
    }

    /// The model refused to free or realloc `m`, the block recorded at `rec`: when it says
    /// the block is not live, the recording never allocated it (or freed it already).
    fn refused(
        &self,
        ev: u64,
        e: &Event,
        op: &'static str,
        rec: Addr,
        err: AllocError,
    ) -> ReplayError {
        match err {
            AllocError::NotLive { .. }
            | AllocError::DoubleFree { .. }
            | AllocError::Corrupt { .. } => self.never(ev, e, op, rec),
            source => ReplayError::Model {
                event: ev,
                line: e.line,
                source,
            },
        }
    }

    fn step(&mut self, ev: u64, e: &Event, skip_raw: bool) -> Result<(), ReplayError> {
        let replayed = |d: Domain| match d {
            Domain::RawNested => false,
            Domain::Raw => !skip_raw,
            _ => true,
        };
        let size_of = |s: u64| usize::try_from(s).unwrap_or(usize::MAX);
        match e.kind {
            EventKind::Malloc { domain, size, addr } if replayed(domain) => {
                self.malloc_like(ev, e, addr, |m| m.malloc(size_of(size)))?
            }
            EventKind::Memalign { size, addr, .. }
            | EventKind::Valloc { size, addr }
            | EventKind::Pvalloc { size, addr }
            | EventKind::BlockNew { size, addr, .. } => {
                self.malloc_like(ev, e, addr, |m| m.malloc(size_of(size)))?
            }
            EventKind::Calloc {
                domain,
                nelem,
                elsize,
                addr,
            } if replayed(domain) => {
                self.malloc_like(ev, e, addr, |m| m.calloc(size_of(nelem), size_of(elsize)))?
            }
            EventKind::Free { domain, addr } if replayed(domain) => {
                self.free_like(ev, e, addr, "free")?
            }
            EventKind::ClearFree { addr, .. } => self.free_like(ev, e, addr, "free")?,
            EventKind::Realloc {
                domain,
                old,
                size,
                new,
            } if replayed(domain) => {
                if old.is_null() {
                    self.malloc_like(ev, e, new, |m| m.realloc(Addr::NULL, size_of(size)))?
                } else if new.is_null() && size > 0 {
                    self.report.failed += 1;
                } else if new.is_null() {
                    // realloc(p, 0) that freed p (glibc)
                    self.free_like(ev, e, old, "realloc")?
                } else {
                    let m_old = self.lookup(ev, e, "realloc", old)?;
                    let got = match self.model.realloc(m_old, size_of(size)) {
                        Ok(a) => a,
                        Err(err) => return Err(self.refused(ev, e, "realloc", old, err)),
                    };
                    self.report.replayed += 1;
                    self.born(ev, e, new, got)?;
                }
            }
            EventKind::ArenaAlloc { .. } => {
                self.report.arenas_mapped += 1;
                self.report.context += 1;
            }
            _ => self.report.context += 1,
        }
        Ok(())
    }

    fn malloc_like(
        &mut self,
        ev: u64,
        e: &Event,
        rec: Addr,
        call: impl FnOnce(&mut dyn Allocator) -> Result<Addr, AllocError>,
    ) -> Result<(), ReplayError> {
        if rec.is_null() {
            self.report.failed += 1;
            return Ok(());
        }
        let got = call(self.model).map_err(|source| ReplayError::Model {
            event: ev,
            line: e.line,
            source,
        })?;
        self.report.replayed += 1;
        self.born(ev, e, rec, got)
    }

    fn free_like(
        &mut self,
        ev: u64,
        e: &Event,
        rec: Addr,
        op: &'static str,
    ) -> Result<(), ReplayError> {
        if rec.is_null() {
            self.report.free_null += 1;
            return Ok(());
        }
        let m = self.lookup(ev, e, op, rec)?;
        if let Err(err) = self.model.free(m) {
            return Err(self.refused(ev, e, op, rec, err));
        }
        self.report.replayed += 1;
        Ok(())
    }
}

/// Replays every event of `reader` through `model`.
///
/// # Errors
/// See [`ReplayError`]: an unreadable trace, a request the model refuses, a free of an
/// address the trace never allocated — each with its event number.
pub fn replay(
    reader: &mut dyn EventReader,
    model: &mut dyn Allocator,
    opts: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let mut src = Source::direct(reader, None);
    let mut r = replay_from(&mut src, model, opts)?;
    drop(src);
    r.other_lines = reader.other_lines();
    Ok(r)
}

fn replay_from(
    src: &mut Source,
    model: &mut dyn Allocator,
    opts: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let start = Instant::now();
    let bar = Progress::new(opts.progress, "replaying");
    let mut st = State {
        report: ReplayReport {
            model: model.name().to_string(),
            ..Default::default()
        },
        model,
        moved: AddrMap::default(),
        targets: AddrSet::default(),
    };
    let mut counts = [0u64; KINDS];
    let mut ev = 0u64;
    loop {
        let batch = src.next_batch()?;
        if batch.is_empty() {
            break;
        }
        for e in batch {
            counts[usize::from(e.kind.code())] += 1;
            st.step(ev, e, opts.skip_raw)?;
            ev += 1;
        }
        bar.set(ev);
    }
    let mut r = st.report;
    r.moved_live = st.moved.len() as u64;
    finish_report(&mut r, bar, ev, &counts, st.model.stats(), start);
    Ok(r)
}

/// What every replay ends with: the progress bar cleared, the `ev` events and their
/// counts by kind, the model's `stats`, the time since `start` and the speed.
fn finish_report(
    r: &mut ReplayReport,
    bar: Progress,
    ev: u64,
    counts: &[u64; KINDS],
    stats: Stats,
    start: Instant,
) {
    bar.finish();
    r.events = ev;
    r.counts = counts
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, &n)| (EventKind::code_name(i as u8).unwrap_or_default(), n))
        .collect();
    r.model_stats = stats;
    r.seconds = start.elapsed().as_secs_f64();
    r.events_per_sec = ev as f64 / r.seconds.max(1e-9);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::mtrace::MtraceReader;
    use crate::trace::LineReader;

    fn run(log: &str, model: &str) -> Result<ReplayReport, ReplayError> {
        let mut r = MtraceReader::new(LineReader::from_text("log", log));
        let mut m = model_by_name(model).unwrap();
        replay(&mut r, m.as_mut(), &ReplayOptions::default())
    }

    #[test]
    fn counts_add_up_and_addresses_are_mapped() {
        let log = "= Start\n+ 0x1000 0x10\n+ 0x2000 0x20\n< 0x1000\n> 0x3000 0x40\n- 0x2000\n- (nil)\n= End\n";
        for model in MODEL_NAMES {
            let r = run(log, model).unwrap();
            assert_eq!(r.events, 5);
            assert_eq!(r.counts.values().sum::<u64>(), r.events);
            assert_eq!(r.counts["m"], 2);
            assert_eq!(r.replayed + r.context + r.failed + r.free_null, r.events);
            if ["bump", "glibc-2.36"].contains(model) {
                // 0x20 + 0x40 live after the realloc; a realloc that copies holds both blocks
                // for a moment (pymalloc's stats also count its own bookkeeping: not checked)
                let peak = r.model_stats.peak_live_bytes;
                assert!(
                    (0x20 + 0x40..=0x10 + 0x20 + 0x40).contains(&peak),
                    "{model}: {peak}"
                );
            }
            if !model.starts_with("cpython") {
                // (pymalloc's live_blocks also counts its arenas vector and radix nodes)
                assert_eq!(r.model_stats.live_blocks, 1, "{model}");
            }
            assert_eq!(r.other_lines, 3);
        }
    }

    #[test]
    fn a_free_of_what_was_never_allocated_names_its_event() {
        let err = run("= Start\n+ 0x1000 0x10\n- 0x1000\n- 0x1000\n", "bump").unwrap_err();
        match err {
            ReplayError::NeverAllocated {
                event, line, addr, ..
            } => {
                assert_eq!((event, line, addr), (2, 4, Addr(0x1000)));
            }
            e => panic!("{e}"),
        }
        let err = run("+ 0x1000 0x10\n+ 0x1000 0x10\n", "bump").unwrap_err();
        assert!(matches!(err, ReplayError::StillLive { event: 1, .. }));
    }
}
