//! Checking mimalloc against the CPython 3.13 mimalloc recordings: the comparison rules.
//! The events come through the driver's loop; the engine that replays them through the
//! model, pinned to the recording's `S` lines or in its own address space, is
//! [`replay::mimalloc::Replayer`](crate::replay::mimalloc::Replayer).
//!
//! ```text
//!  replay::drive ──(index, event)──> MimallocCheck::step
//!     OsLines (the reader's queue) ──> Replayer::os_line   the S/U lines before this event
//!     Replayer::event ──> Call { checked, matched, os_events }
//!        O/M malloc, calloc, realloc: checked; matched counted; else the first divergence,
//!        with the model's page, its free and local_free heads, and the recorded address's
//!        refused by the model: an error at the event (keep-going: a divergence)
//! ```
//! The recording is read and parsed on a second thread ([`Source::threaded`]), as a
//! CPython 3 check's is; its OS lines come through the reader's shared queue.
//! Event numbers count every line after the header, OS lines too (`events` = the events
//! driven + the OS lines read), as the recordings' own `records:` line counts them.
//! The model is named by `--model` (`mimalloc-2.1.2`, `mimalloc-2.1.2+own`), read by
//! [`ModelSpec::parse`]; pinned when none is given.
//! Invariant: `matched <= checked`, and `matched == checked` iff no divergence.

use super::{CheckOptions, CheckReport};
use crate::addr::Addr;
use crate::replay::mimalloc::{Replayer, Step};
use crate::replay::{
    drive, Addresses, Cause, Driven, EventError, Flow, ModelKind, ModelSpec, Replay, ReplayError,
    Source,
};
use crate::trace::mimalloc::{MimallocReader, OsLines};
use crate::trace::{Event, TraceHeader};

/// Where arena bases come from for `opts.model` (pinned when none is given).
///
/// # Errors
/// A name that is not a model, or not mimalloc.
pub fn model_for(opts: &CheckOptions) -> Result<Addresses, ReplayError> {
    let Some(name) = &opts.model else {
        return Ok(Addresses::Pinned);
    };
    let spec = ModelSpec::parse(name)?;
    match (&spec.kind, &spec.lower) {
        (ModelKind::Mimalloc, None) => Ok(spec.addresses),
        _ => Err(spec
            .not_here(
                "check a CPython 3.13 mimalloc recording",
                "its O/M calls went to mimalloc; name mimalloc-2.1.2 or mimalloc-2.1.2+own",
            )
            .into()),
    }
}

/// The comparison rules of a mimalloc check, over the [`Replayer`].
pub struct MimallocCheck {
    rp: Replayer,        // the engine
    os: OsLines,         // the reader's OS lines, not yet handed to the engine
    os_read: u64,        // OS lines handed to the engine so far
    report: CheckReport, // the comparisons so far
    refused_why: String, // the context of the model's last refusal
}

impl MimallocCheck {
    /// A check in `mode` of the recording whose header is `header`, its OS lines taken
    /// from `os` (see [`MimallocReader::share_os_lines`]).
    pub fn new(mode: Addresses, header: &TraceHeader, os: OsLines) -> MimallocCheck {
        MimallocCheck {
            rp: Replayer::new(mode, header),
            os,
            os_read: 0,
            report: CheckReport::default(),
            refused_why: String::new(),
        }
    }

    /// The replay engine (for the model's state).
    pub fn replayer(&self) -> &Replayer {
        &self.rp
    }

    /// The replay engine, mutably (a report adding a stats marker).
    pub fn replayer_mut(&mut self) -> &mut Replayer {
        &mut self.rp
    }

    /// The comparisons so far.
    pub fn report(&self) -> &CheckReport {
        &self.report
    }

    /// OS lines read so far: event `index` of the driver is line `index + os_lines()` of
    /// the recording's lines after the header.
    pub fn os_lines(&self) -> u64 {
        self.os_read
    }

    /// The comparisons, once the driver is done: the OS lines after the last event are
    /// read too unless the check stopped early.
    pub fn finish(mut self, d: &Driven) -> CheckReport {
        if !d.stopped {
            let rp = &mut self.rp;
            self.os_read += self.os.take_all(|o| rp.os_line(o));
        }
        self.report.events = d.events + self.os_read;
        self.report.raw_unknown = d.raw_unknown;
        self.report
    }

    /// An error of the driver, its event numbered as this check numbers them.
    pub fn renumber(&self, e: ReplayError) -> ReplayError {
        match e {
            ReplayError::Event(mut ev) => {
                ev.event += self.os_read;
                ReplayError::Event(ev)
            }
            other => other,
        }
    }
}

impl Replay for MimallocCheck {
    #[inline(always)]
    fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
        let rp = &mut self.rp;
        self.os_read += self.os.take_before(ev.line, |o| rp.os_line(o));
        match self.rp.event(ev) {
            Step::Context => Ok(Flow::Next),
            Step::Call {
                expected,
                got,
                checked,
                matched,
                os_events,
                ..
            } => {
                self.report.arena_events += u64::from(os_events);
                if checked {
                    self.report.checked += 1;
                    if matched {
                        self.report.matched += 1;
                    }
                }
                if matched {
                    return Ok(Flow::Next);
                }
                let why = self.rp.take_why().unwrap_or_default();
                if let Some(e) = self.rp.take_error() {
                    self.refused_why = why;
                    return Err(Cause::Model(e));
                }
                self.report
                    .diverge(index + self.os_read, ev.line, expected.0, got.0, why);
                Ok(Flow::Diverged)
            }
            // mimalloc's replayer reports a refusal as an unmatched call with its error
            // kept; a bare refusal is the same, told as the model's answer
            Step::Refused => {
                self.refused_why = self.rp.take_why().unwrap_or_default();
                let e = self.rp.take_error();
                Err(Cause::Model(
                    e.unwrap_or_else(|| super::refused("mimalloc")),
                ))
            }
        }
    }

    fn keep_going(&mut self, err: EventError) {
        let why = super::refusal_reason(&err, &mut self.refused_why);
        self.report
            .diverge(err.event + self.os_read, err.line, 0, 0, why);
    }

    fn explain(&mut self, addr: Addr) -> Option<String> {
        Some(self.rp.describe(addr))
    }
}

/// Checks an opened mimalloc recording.
///
/// # Errors
/// See [`ReplayError`].
pub fn check_reader(
    mut reader: MimallocReader,
    opts: &CheckOptions,
) -> Result<CheckReport, ReplayError> {
    let mode = model_for(opts)?;
    let label = reader.path().display().to_string();
    let os = reader.share_os_lines();
    // the text is read and parsed on a second thread; its OS lines reach the check through
    // the shared queue, each before the event that follows it
    Source::threaded(&mut reader, |src| {
        let mut c = MimallocCheck::new(mode, src.header(), os);
        match drive(src, &mut c, &opts.drive(&label)) {
            Ok(d) => Ok(c.finish(&d)),
            Err(e) => Err(c.renumber(e)),
        }
    })?
}
