//! Replay: the foundation every check and report stands on. A trace's events go through
//! one driver loop into a model; what is special to a use is a [`Replay`] implementation.
//!
//! ```text
//!   trace::EventReader ──> Source ──batches──> driver::drive ──> impl Replay
//!                                               counts, progress,   ├─ Mapped: any model (`pyalloc replay`)
//!                                               keep-going, stop,   ├─ Replayer: pymalloc pinned to a
//!                                               EventError            │  CPython 3 recording (replay, check)
//!                                                                    └─ check/*: comparison rules
//!   ModelSpec::parse("cpython-3.11+own") ──> the model      pinned/: allocators answering from a recording
//! ```
//! - [`model`]: the one parser of model names (`cpython-3.11`, `+own`, `glibc-2.36`, `bump`,
//!   `null`; room for what-if overrides and stacks);
//! - [`driver`]: the loop; [`source`]: where its events come from (this thread or a second);
//! - [`error`]: [`EventError`] `{ event, line, source }` and [`ReplayError`];
//! - [`pymalloc`]: the pymalloc [`Replayer`] (one fast path for the pinned common case);
//! - [`mimalloc`]: mimalloc's replayer of a CPython 3.13 mimalloc recording (pinned to its
//!   `S` lines, or `+own`);
//! - [`pinned`]: `PinnedRaw`, `PinnedArenas`, `TraceHeap`;
//! - `mapped`: any trace through any [`Allocator`], recorded addresses mapped to the model's.
//!
//! Layering: replay depends on trace and the models, never on check, report, the facade or
//! the CLI (tests/layers.rs holds every module to its layer).

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::platform::Platform;
use crate::trace::{Event, EventKind, EventReader};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

pub mod driver;
pub mod error;
mod live;
mod mapped;
pub mod mimalloc;
pub mod model;
pub(crate) mod pages;
pub mod pinned;
pub mod pymalloc;
pub mod source;
mod table;

pub use driver::{drive, DriveOptions, Driven, Flow, Replay};
pub(crate) use driver::{drive_ledger, Ledger};
pub use error::{Cause, EventError, ReplayError};
pub(crate) use live::{LiveSets, Liveness};
pub use model::{Addresses, ModelError, ModelKind, ModelSpec};
pub use pymalloc::Replayer;

/// What one replayed event amounted to, for both pinned replayers (pymalloc's
/// [`Replayer`] and [`mimalloc::Replayer`]). Small and `Copy`: the explanation of a
/// mismatch and the model's refusal are kept in the replayer (`take_why`, `take_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Context: a raw, arena, OS or data-stack line, buffered or ignored.
    Context,
    /// An O/M call replayed through the model.
    Call {
        /// The address the recording returned (0 for a free).
        expected: Addr,
        /// The model's address, in the recording's terms (0 for a free).
        got: Addr,
        /// True for an address the recording holds the model to (pymalloc: a request of
        /// 1..=threshold bytes; mimalloc: every malloc, calloc and realloc).
        checked: bool,
        /// True when the model agrees (address, mappings, raw calls).
        matched: bool,
        /// Mappings (arenas, segments) made or dropped in this call, all agreeing with the
        /// recording.
        os_events: u32,
    },
    /// The model refused the call (a free of a non-live address, a double free …).
    Refused,
}
pub use source::Source;

/// One O/M call (`PyObject_Malloc` … `PyMem_Free`), as every replayer makes it of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `malloc(size)`.
    Malloc(u64),
    /// `calloc(nelem, elsize)`.
    Calloc(u64, u64),
    /// `realloc(old, size)`.
    Realloc(Addr, u64),
    /// `free(addr)`.
    Free(Addr),
}

/// The O/M call an event is, with the address it returned (NULL for a free).
#[inline(always)]
pub(crate) fn om_call(kind: &EventKind) -> Option<(Op, Addr)> {
    match *kind {
        EventKind::Malloc { domain, size, addr } if domain.is_om() => {
            Some((Op::Malloc(size), addr))
        }
        EventKind::Calloc {
            domain,
            nelem,
            elsize,
            addr,
        } if domain.is_om() => Some((Op::Calloc(nelem, elsize), addr)),
        EventKind::Realloc {
            domain,
            old,
            size,
            new,
        } if domain.is_om() => Some((Op::Realloc(old, size), new)),
        EventKind::Free { domain, addr } if domain.is_om() => Some((Op::Free(addr), Addr::NULL)),
        _ => None,
    }
}

/// The models `pyalloc replay --model` lists (any pymalloc preset name, `cpython-2.7.0`
/// … `cpython-3.11`, is accepted too; `cpython-3.11` is listed).
pub const MODEL_NAMES: &[&str] = &[
    "bump",
    "glibc-2.36",
    "null",
    "cpython-3.11",
    "mimalloc-2.1.2",
];

/// A fresh model by name (see [`ModelSpec::parse`] and [`ModelSpec::build`]), on the Linux
/// x86-64 preset.
///
/// # Errors
/// An unknown name, with the known ones.
pub fn model_by_name(name: &str) -> Result<Box<dyn Allocator>, ModelError> {
    ModelSpec::parse(name)?.build(&Platform::linux_x86_64())
}

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Leave top-level raw-domain calls (`R`) out: only `O`/`M` (and C library calls) reach the model.
    pub skip_raw: bool,
    /// Show a progress bar (the caller sets it only when stderr is a terminal).
    pub progress: bool,
}

impl ReplayOptions {
    fn drive(&self) -> DriveOptions<'static> {
        DriveOptions {
            keep_going: false,
            progress: self.progress,
            label: "replaying",
        }
    }
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
    /// Events counted but not replayed: consequences of another call (see `mapped`).
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
    /// Top-level raw-domain frees and reallocs of an address no raw call returned
    /// (counted, not refused: CPython 3 recordings can miss raw calls).
    pub raw_unknown: u64,
    /// Pinned pymalloc replay: arenas the model holds at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_arenas: Option<u64>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Events per second.
    pub events_per_sec: f64,
}

impl ReplayReport {
    /// Fills in what the driver saw and the time since `start`.
    fn finish(&mut self, d: &Driven, start: Instant) {
        self.events = d.events;
        self.raw_unknown = d.raw_unknown;
        self.counts = d.counts();
        self.seconds = start.elapsed().as_secs_f64();
        self.events_per_sec = d.events as f64 / self.seconds.max(1e-9);
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
    let start = Instant::now();
    let mut src = Source::new(reader)?;
    let mut m = mapped::Mapped::new(model, opts.skip_raw);
    let d = drive(&mut src, &mut m, &opts.drive())?;
    drop(src);
    let mut r = m.into_report();
    r.finish(&d, start);
    r.other_lines = reader.other_lines();
    Ok(r)
}

/// Replays `reader` through the model named `name`. For a CPython 3 recording (header
/// `pymalloc allocation trace`) and a pymalloc preset, the replay is the check's: arena
/// bases from the `A` lines and fall-through addresses from the nested `r` lines
/// (`+own` for the model's own), every O/M call through the model, and the report counts
/// the small-request addresses checked and matched. Otherwise [`replay`] through the
/// named model.
///
/// # Errors
/// As [`replay`]; an unknown model name as [`ReplayError::Model`].
pub fn replay_named(
    reader: &mut dyn EventReader,
    name: &str,
    opts: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let spec = ModelSpec::parse(name)?;
    let start = Instant::now();
    let mut src = Source::new(reader)?;
    let r = replay_spec(&mut src, &spec, opts, start);
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
    let spec = ModelSpec::parse(name)?;
    let start = Instant::now();
    let r = Source::threaded(reader, |src| replay_spec(src, &spec, opts, start))?;
    let mut r = r?;
    r.other_lines = reader.other_lines();
    Ok(r)
}

/// True when the trace is a CPython 3 recording (its header's first line).
fn recorded_py3(src: &Source) -> bool {
    src.header()
        .lines
        .first()
        .is_some_and(|l| l.starts_with("pymalloc allocation trace"))
}

fn replay_spec(
    src: &mut Source,
    spec: &ModelSpec,
    opts: &ReplayOptions,
    start: Instant,
) -> Result<ReplayReport, ReplayError> {
    // a stack or a what-if has no recording to be pinned to: it replays as any model does
    let alone = spec.lower.is_none() && !spec.whatif;
    if let (Some(params), true, true) = (spec.pymalloc(), recorded_py3(src), alone) {
        let rp = Replayer::new(params.clone(), spec.addresses, &Platform::linux_x86_64());
        let how = match spec.addresses {
            Addresses::Pinned => "pinned to the recording",
            Addresses::Own => "its own addresses",
        };
        let mut rec = Recorded {
            report: ReplayReport {
                model: format!("{} ({how})", rp.model().name()),
                ..Default::default()
            },
            rp,
            checked: 0,
            matched: 0,
        };
        let d = drive(src, &mut rec, &opts.drive())?;
        let mut r = rec.report;
        r.same_address = rec.matched;
        r.checked = Some(rec.checked);
        r.matched = Some(rec.matched);
        r.model_arenas = Some(rec.rp.model().narenas());
        r.model_stats = rec.rp.model().stats();
        r.finish(&d, start);
        return Ok(r);
    }
    let mut model = spec.build_for(&Platform::linux_x86_64(), src.header())?;
    let mut m = mapped::Mapped::new(model.as_mut(), opts.skip_raw);
    let d = drive(src, &mut m, &opts.drive())?;
    let mut r = m.into_report();
    r.finish(&d, start);
    if !alone {
        r.model = spec.name.clone(); // the top layer's name would hide the stack or what-if
    }
    Ok(r)
}

/// A CPython 3 recording replayed through the pinned (or own) pymalloc [`Replayer`].
struct Recorded {
    rp: Replayer,         // the engine
    report: ReplayReport, // the figures so far
    checked: u64,         // small-request addresses compared
    matched: u64,         // of those, the ones the model computed
}

impl Replay for Recorded {
    #[inline]
    fn step(&mut self, _index: u64, e: &Event) -> Result<Flow, Cause> {
        if let EventKind::ArenaAlloc { .. } = e.kind {
            self.report.arenas_mapped += 1;
        }
        match self.rp.step(e) {
            Step::Context => self.report.context += 1,
            Step::Call {
                checked: small,
                matched,
                ..
            } => {
                self.report.replayed += 1;
                self.checked += u64::from(small);
                self.matched += u64::from(small && matched);
            }
            Step::Refused => {
                let Some((err, _why)) = self.rp.take_error() else {
                    return Ok(Flow::Next); // a refusal always leaves its error
                };
                return Err(Cause::Model(err));
            }
        }
        Ok(Flow::Next)
    }

    fn explain(&mut self, addr: Addr) -> Option<String> {
        Some(self.rp.model_mut().explain(addr))
    }
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
            ReplayError::Event(EventError {
                event,
                line,
                source: Cause::NeverAllocated { addr, .. },
            }) => {
                assert_eq!((event, line, addr), (2, 4, Addr(0x1000)));
            }
            e => panic!("{e}"),
        }
        let err = run("+ 0x1000 0x10\n+ 0x1000 0x10\n", "bump").unwrap_err();
        assert!(matches!(
            err,
            ReplayError::Event(EventError {
                event: 1,
                source: Cause::StillLive { .. },
                ..
            })
        ));
    }

    #[test]
    fn an_unknown_model_or_suffix_is_an_error_for_replay_too() {
        for name in ["cpython-3.11+nonsense", "nonsense"] {
            let mut r = MtraceReader::new(LineReader::from_text("log", "+ 0x1000 0x10\n"));
            let e = replay_named(&mut r, name, &ReplayOptions::default()).unwrap_err();
            assert!(matches!(e, ReplayError::Model(_)), "{name}: {e}");
        }
    }
}
