//! The one loop over a trace's events. Every replay, check and report runs through it:
//!
//! ```text
//!   Source ──batch──> drive ──(index, &Event)──> R: Replay::step ──> Flow
//!                      │ counts by kind, progress    Next: go on
//!                      │                             Diverged: stop unless keep-going
//!                      │                             Stop: the consumer is done
//!                      └─ Err(cause) ──> EventError { event, line, source }
//!                           keep-going: R::keep_going(error), go on; else: the error
//!   before each step: live::Liveness — the recording's own consistency (double free, free
//!   of a block never returned, a live address returned again), whatever the model
//! ```
//! A model that refuses to give back a block the recording holds has diverged: the error
//! says so ([`Cause::Diverged`]) with the line that returned the block and what the model
//! holds there, instead of blaming the trace.
//! What is special to a replay lives in its [`Replay`] implementation (the model, the
//! comparison rules); what every replay does lives here once.
//! Invariants: `Σ counts == events`; `events` counts every event read, including the
//! one that stopped the loop; an event the recording contradicts is never stepped.

use super::error::{Cause, EventError, ReplayError};
use super::live::{Bits, LiveSets, Liveness, Seen};
use super::source::Source;
use crate::addr::Addr;
use crate::error::AllocError;
use crate::progress::Progress;
use crate::trace::{Event, EventKind};
use std::collections::BTreeMap;

/// What a step tells the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next event.
    Next,
    /// The model disagreed with the recording: stop, unless keep-going.
    Diverged,
    /// The consumer has what it wanted: stop.
    Stop,
}

/// A consumer of events, one at a time.
pub trait Replay {
    /// Replays event `index` (0-based).
    ///
    /// # Errors
    /// What went wrong at this event; the driver adds the event's index and line.
    fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause>;

    /// With keep-going, an error at one event is handed here to be counted, and the replay
    /// goes on. The default counts nothing.
    fn keep_going(&mut self, err: EventError) {
        let _ = err;
    }

    /// What the model holds at `addr`, in its own terms (for an error saying the model
    /// diverged); `None` when it cannot say.
    fn explain(&mut self, addr: Addr) -> Option<String> {
        let _ = addr;
        None
    }
}

/// How to drive.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriveOptions<'a> {
    /// Go on after a divergence or an error at an event (handed to [`Replay::keep_going`]).
    pub keep_going: bool,
    /// Show a progress spinner (the CLI asks only when stderr is a terminal).
    pub progress: bool,
    /// The spinner's label.
    pub label: &'a str,
}

/// What the loop saw.
#[derive(Debug, Clone, Default)]
pub struct Driven {
    /// Events stepped.
    pub events: u64,
    /// The line of the last event stepped.
    pub last_line: u64,
    /// True when a step stopped the loop before the end of the trace.
    pub stopped: bool,
    /// Top-level raw-domain (`R`) frees and reallocs of an address no raw call returned:
    /// CPython 3 recordings can miss raw calls made while CPython swaps its default raw
    /// allocator in, so these are counted, not refused.
    pub raw_unknown: u64,
    counts: Counts,
}

impl Driven {
    /// Events of each kind, keyed as the recordings spell the line (`m O`, `f r`, `A` …).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.by_name()
    }
}

/// Runs every event of `src` through `r`.
///
/// # Errors
/// A trace that cannot be read; an error at an event (unless keep-going).
pub fn drive<R: Replay + ?Sized>(
    src: &mut Source,
    r: &mut R,
    opts: &DriveOptions,
) -> Result<Driven, ReplayError> {
    let mut live = Liveness::<Bits>::default();
    let (result, mut d) = run(src, r, opts, |_, e| live.apply(e));
    d.raw_unknown = live.raw_unknown;
    result.map(|()| d)
}

/// A consumer that keeps the recording's live blocks itself, in sets of its own
/// ([`LiveSets`]): `compare`'s feed keeps them in the slots of its recorded address →
/// block id table, so one lookup of an address serves the check and the translation.
/// The rules are the driver's ([`Liveness`]); only where the sets live differs.
pub(crate) trait Ledger: Replay {
    /// The sets.
    type Sets: LiveSets;
    /// The recording's live blocks, which the driver checks each event against (and
    /// applies it to) before [`Replay::step`].
    fn liveness(&mut self) -> &mut Liveness<Self::Sets>;
}

/// [`drive`] for a consumer that keeps the recording's live blocks itself.
///
/// # Errors
/// As [`drive`].
pub(crate) fn drive_ledger<R: Ledger>(
    src: &mut Source,
    r: &mut R,
    opts: &DriveOptions,
) -> Result<Driven, ReplayError> {
    let (result, mut d) = run(src, r, opts, |r: &mut R, e| r.liveness().apply_inlined(e));
    d.raw_unknown = r.liveness().raw_unknown;
    result.map(|()| d)
}

/// The loop, with its progress bar: `check` is the recording's consistency (a
/// [`Liveness`]), applied to each event before `r` steps it.
fn run<R: Replay + ?Sized>(
    src: &mut Source,
    r: &mut R,
    opts: &DriveOptions,
    check: impl FnMut(&mut R, &Event) -> Result<Seen, Cause>,
) -> (Result<(), ReplayError>, Driven) {
    let bar = Progress::new(opts.progress, opts.label);
    let mut d = Driven::default();
    let result = run_batches(src, r, opts, &bar, &mut d, check);
    bar.finish();
    (result, d)
}

/// [`run`]'s loop over the batches of `src`, counting into `d` and ticking `bar`.
#[inline(always)]
fn run_batches<R: Replay + ?Sized>(
    src: &mut Source,
    r: &mut R,
    opts: &DriveOptions,
    bar: &Progress,
    d: &mut Driven,
    mut check: impl FnMut(&mut R, &Event) -> Result<Seen, Cause>,
) -> Result<(), ReplayError> {
    loop {
        let batch = src.next_batch()?;
        if batch.is_empty() {
            return Ok(());
        }
        for e in batch {
            let index = d.events;
            d.events += 1;
            d.last_line = e.line;
            d.counts.add(&e.kind);
            let stepped = match check(r, e) {
                Ok(seen) => r.step(index, e).map_err(|c| blame(r, e, seen, c)),
                // a free the recording cannot make: the model's own diagnosis (glibc's
                // "double free detected in tcache 2") when it has one, else the trace's
                Err(c @ Cause::NeverAllocated { .. }) => match r.step(index, e) {
                    Err(
                        m
                        @ Cause::Model(AllocError::DoubleFree { .. } | AllocError::Corrupt { .. }),
                    ) => Err(m),
                    _ => Err(c),
                },
                Err(c) => Err(c),
            };
            let flow = match stepped {
                Ok(f) => f,
                Err(source) => {
                    at_error(r, opts.keep_going, index, e, source)?;
                    Flow::Next
                }
            };
            match flow {
                Flow::Next => {}
                Flow::Diverged if opts.keep_going => {}
                Flow::Diverged | Flow::Stop => {
                    d.stopped = true;
                    return Ok(());
                }
            }
        }
        bar.set(d.events);
    }
}

/// An error at event `index`: with keep-going it is handed to [`Replay::keep_going`] and
/// the replay goes on; else it ends the replay, as an [`EventError`] with the event's line.
///
/// # Errors
/// The event's error, without keep-going.
#[cold]
pub(crate) fn at_error<R: Replay + ?Sized>(
    r: &mut R,
    keep_going: bool,
    index: u64,
    e: &Event,
    source: Cause,
) -> Result<(), ReplayError> {
    let err = EventError {
        event: index,
        line: e.line,
        source,
    };
    if !keep_going {
        return Err(err.into());
    }
    r.keep_going(err);
    Ok(())
}

/// A model's refusal to give back a block the recording holds is the model's divergence,
/// not the trace's fault.
#[cold]
fn blame<R: Replay + ?Sized>(r: &mut R, e: &Event, seen: Seen, cause: Cause) -> Cause {
    let (Cause::Model(err), true) = (&cause, seen.given_back) else {
        return cause;
    };
    let refused = matches!(
        err,
        AllocError::NotLive { .. } | AllocError::DoubleFree { .. } | AllocError::Corrupt { .. }
    );
    let (op, addr) = match e.kind {
        EventKind::Free { addr, .. } => ("free", addr),
        EventKind::Realloc { old, .. } => ("realloc", old),
        _ => return cause,
    };
    if !refused {
        return cause;
    }
    Cause::Diverged {
        op,
        addr,
        source: err.clone(),
        state: r.explain(addr),
    }
}

/// Kinds × sub-kinds (domain, free list) of the counts table: one slot per
/// [`EventKind::code`].
const KINDS: usize = crate::trace::event::KINDS * 8;

/// Events counted by kind.
#[derive(Debug, Clone)]
struct Counts([u64; KINDS]);

impl Default for Counts {
    fn default() -> Self {
        Counts([0; KINDS])
    }
}

impl Counts {
    #[inline(always)]
    fn add(&mut self, k: &EventKind) {
        self.0[usize::from(k.code())] += 1;
    }

    fn by_name(&self) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (EventKind::code_name(i as u8).unwrap_or_default(), n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;
    use crate::error::AllocError;
    use crate::trace::mtrace::MtraceReader;
    use crate::trace::LineReader;

    /// Diverges at the events in `diverge`, fails at those in `fail`, stops at `stop`.
    #[derive(Default)]
    struct Probe {
        diverge: Vec<u64>,
        fail: Vec<u64>,
        stop: Option<u64>,
        seen: Vec<u64>,
        kept: Vec<(u64, u64)>,
    }

    impl Replay for Probe {
        fn step(&mut self, index: u64, _: &Event) -> Result<Flow, Cause> {
            self.seen.push(index);
            if self.fail.contains(&index) {
                return Err(Cause::Model(AllocError::NotLive {
                    op: "free",
                    addr: Addr(0x10),
                    model: "probe",
                }));
            }
            Ok(if self.stop == Some(index) {
                Flow::Stop
            } else if self.diverge.contains(&index) {
                Flow::Diverged
            } else {
                Flow::Next
            })
        }
        fn keep_going(&mut self, err: EventError) {
            self.kept.push((err.event, err.line));
        }
    }

    const LOG: &str = "= Start\n+ 0x1000 0x10\n+ 0x2000 0x20\n- 0x1000\n- 0x2000\n= End\n";

    fn drive_probe(p: &mut Probe, keep_going: bool) -> Result<Driven, ReplayError> {
        let mut r = MtraceReader::new(LineReader::from_text("log", LOG));
        let mut src = Source::new(&mut r)?;
        let opts = DriveOptions {
            keep_going,
            ..DriveOptions::default()
        };
        drive(&mut src, p, &opts)
    }

    #[test]
    fn counts_every_event_and_stops_where_asked() {
        let mut p = Probe::default();
        let d = drive_probe(&mut p, false).unwrap();
        assert_eq!((d.events, d.stopped), (4, false));
        assert_eq!(d.counts().values().sum::<u64>(), d.events);
        assert_eq!(p.seen, vec![0, 1, 2, 3]);
        let mut p = Probe {
            stop: Some(1),
            ..Probe::default()
        };
        let d = drive_probe(&mut p, true).unwrap();
        assert_eq!((d.events, d.stopped, d.last_line), (2, true, 3));
    }

    #[test]
    fn keep_going_goes_past_divergences_and_errors() {
        let mut p = Probe {
            diverge: vec![1],
            fail: vec![2],
            ..Probe::default()
        };
        let d = drive_probe(&mut p, false).unwrap();
        assert_eq!(d.events, 2, "stops at the divergence");
        let mut p = Probe {
            diverge: vec![1],
            fail: vec![2],
            ..Probe::default()
        };
        let d = drive_probe(&mut p, true).unwrap();
        assert_eq!(d.events, 4);
        assert_eq!(p.kept, vec![(2, 4)], "event 2 is line 4");
        let mut p = Probe {
            fail: vec![2],
            ..Probe::default()
        };
        match drive_probe(&mut p, false) {
            Err(ReplayError::Event(e)) => assert_eq!((e.event, e.line), (2, 4)),
            other => panic!("{other:?}"),
        }
    }
}
