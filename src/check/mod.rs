//! Checking a model against a recording: replay every request, compare every address
//! the model computes with the one the real process returned.
//!
//! The JSON form of a [`CheckReport`] is a contract other tools read:
//! `{"events": N, "checked": N, "matched": N, "first_divergence": null | {"event": i,
//! "line": n, "expected": "…", "got": "…", "why": "…"}}` — fields may be added, never
//! renamed. Each recorded format has a checker module here, holding only its comparison
//! rules: the events come through `replay`'s one driver loop, the models and the
//! allocators pinned to the recording are `replay`'s too.
//!
//! ```text
//!   replay::drive ──(index, event)──> pymalloc3::Pymalloc3Check  (Replayer + address rules)
//!                                     pyrec27::Py27Replay        (free lists + 2.7 pymalloc)
//!                                     glibc::GlibcCheck          (ptmalloc2, brk heap)
//! ```

use crate::replay::{DriveOptions, ReplayError};
use crate::trace::binary::BinaryReader;
use crate::trace::glibc::GlibcTraceReader;
use crate::trace::mimalloc::MimallocReader;
use crate::trace::pymalloc3::Pymalloc3Reader;
use crate::trace::pyrec27::Pyrec27Reader;
use crate::trace::{EventReader, Format, Opened};
use serde::Serialize;
use std::path::Path;

pub mod glibc;
pub mod mimalloc;
pub mod pymalloc3;
pub mod pyrec27;

/// How to check.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The model to hold the trace to (`cpython-3.11`, `glibc-2.36`, …); from the
    /// trace's header when `None`.
    pub model: Option<String>,
    /// Keep replaying after the first divergence, counting the rest.
    pub keep_going: bool,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

impl CheckOptions {
    /// The driver's options for a check labelled `label`.
    pub fn drive<'a>(&self, label: &'a str) -> DriveOptions<'a> {
        DriveOptions {
            keep_going: self.keep_going,
            progress: self.progress,
            label,
        }
    }
}

/// Checks the trace at `path` (`-` is standard input), opened once, choosing the checker
/// by the format its content shows (by the recorded format its header names, for a
/// binary trace written by `pyalloc convert`).
///
/// # Errors
/// See [`ReplayError`]; `Unsupported` names the format when it is one `check` cannot hold
/// to a model (another tool's trace, a generated workload).
pub fn check_file(path: &Path, opts: &CheckOptions) -> Result<CheckReport, ReplayError> {
    let opened = Opened::open(path)?;
    let src = opened.source;
    match opened.format {
        Format::Binary => check_reader(Box::new(BinaryReader::from_source(src)?), opts),
        Format::Pymalloc3 => {
            let r = Pymalloc3Reader::from_source(src)?;
            if r.header().get(crate::trace::fork::FORKED_FROM).is_some() {
                // A forked child's trace: the parent's events up to the fork, then its own.
                check_reader(crate::trace::fork::resolve(Box::new(r), path)?, opts)
            } else {
                pymalloc3::check(r, opts)
            }
        }
        Format::Pyrec27 => {
            pyrec27::check_reader(Box::new(Pyrec27Reader::new(src.into_lines())), opts)
        }
        Format::Glibc => glibc::check(GlibcTraceReader::new(src.into_lines()), opts),
        Format::Mimalloc => mimalloc::check_reader(MimallocReader::new(src.into_lines())?, opts),
        other => Err(not_a_recording(other, src.path())),
    }
}

/// Why `check` refuses a format it reads but holds no model to.
fn not_a_recording(format: Format, path: &Path) -> ReplayError {
    let why = match format {
        Format::Synthetic => {
            "its addresses are the generating model's own, not a real process's: replay it \
             with `pyalloc replay --model M`"
        }
        _ => {
            "it records no process whose allocator pyalloc models (no header naming the C \
             library, the interpreter and the start of the heap): replay it with `pyalloc \
             replay`, or convert it with `pyalloc convert`"
        }
    };
    ReplayError::Unsupported(format!(
        "{}: {} ({}); `pyalloc check` holds CPython 3, CPython 2.7 PYREC and glibc \
         recordings to their models, and this is not one: {why}",
        path.display(),
        format.describe(),
        format.name()
    ))
}

/// Checks an opened event stream, choosing the checker by the recorded format its header
/// names (the header's first line: `pymalloc allocation trace …`, `PYREC allocator event
/// trace …`, `glibc malloc-family call trace …`).
///
/// # Errors
/// `Unsupported` when the header names no recorded format (a trace of another tool's
/// format, or a generated workload: those replay with `pyalloc replay`); else as the
/// checker.
pub fn check_reader(
    reader: Box<dyn EventReader>,
    opts: &CheckOptions,
) -> Result<CheckReport, ReplayError> {
    match Format::of_header(reader.header()) {
        Some(Format::Pymalloc3) => pymalloc3::check_reader(reader, opts),
        Some(Format::Pyrec27) => pyrec27::check_reader(reader, opts),
        Some(Format::Glibc) => glibc::check_reader(reader, opts),
        Some(Format::Mimalloc) => Err(ReplayError::Unsupported(
            "a mimalloc recording converted to another form has lost its OS lines (the arena \
             bases a pinned check takes): check the recording itself"
                .into(),
        )),
        _ => {
            let first = reader.header().lines.first().cloned().unwrap_or_default();
            Err(ReplayError::Unsupported(format!(
                "the trace's header does not name a recording of a real process (its first \
                 line: {:?}); `pyalloc check` holds CPython 3, CPython 2.7 PYREC and glibc \
                 recordings to their models, other traces replay with `pyalloc replay`",
                crate::trace::io::excerpt(&first)
            )))
        }
    }
}

/// Where the model first disagreed with the recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// 0-based index of the event among the trace's events.
    pub event: u64,
    /// 1-based line of the trace file.
    pub line: u64,
    /// What the recording says.
    pub expected: String,
    /// What the model computed.
    pub got: String,
    /// Why the model got there: which pool, size class, free-list head, bin …
    pub why: String,
    /// When what differs is a size, not an address (an arena's size): the sizes, while
    /// `expected` and `got` both name the address the size belongs to. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<SizeDivergence>,
}

/// A size the recording and the model disagree on (`check --json`: `"size": {"what":
/// "arena size", "expected": 1048576, "got": 262144}`, in bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeDivergence {
    /// Which size (`arena size`).
    pub what: &'static str,
    /// Bytes, as the recording says.
    pub expected: u64,
    /// Bytes, as the model has it.
    pub got: u64,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Events read from the trace.
    pub events: u64,
    /// Addresses the model was held to.
    pub checked: u64,
    /// Of those, the ones it computed exactly.
    pub matched: u64,
    /// The first address the model got wrong, if any.
    pub first_divergence: Option<Divergence>,
    /// Divergences after the first (only with `--keep-going`).
    #[serde(skip_serializing_if = "is_zero")]
    pub divergences: u64,
    /// Arena maps and unmaps the model made at the same events as the recording
    /// (pymalloc traces).
    #[serde(skip_serializing_if = "is_zero")]
    pub arena_events: u64,
    /// Events the checker read but holds no model for (kinds its format cannot hold, read
    /// from a binary trace of another format, say): counted in `events`, never in
    /// `checked`. 0 for the shipped recordings.
    #[serde(skip_serializing_if = "is_zero")]
    pub not_checked: u64,
    /// Addresses the checker took from the recording instead of predicting them (glibc's
    /// and the kernel's answers: pyrec27's B/b blocks, A arenas, fall-through requests):
    /// counted in `events`, never in `checked`.
    #[serde(skip_serializing_if = "is_zero")]
    pub given: u64,
    /// Top-level raw-domain (`R`) frees and reallocs of an address no raw call of the
    /// recording returned: counted, not refused, as CPython 3 recordings can miss raw calls
    /// made while CPython swaps its default raw allocator in (their header says so).
    #[serde(skip_serializing_if = "is_zero")]
    pub raw_unknown: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CheckReport {
    /// True when every checked address matched.
    pub fn ok(&self) -> bool {
        self.matched == self.checked && self.first_divergence.is_none()
    }

    /// Records one comparison; returns true when it matched.
    pub fn compare(
        &mut self,
        event: u64,
        line: u64,
        expected: u64,
        got: u64,
        why: impl FnOnce() -> String,
    ) -> bool {
        self.checked += 1;
        if expected == got {
            self.matched += 1;
            true
        } else {
            self.diverge(event, line, expected, got, why());
            false
        }
    }

    /// Records a divergence at `event` (`line`): the first one is kept whole, later
    /// ones only counted in `divergences`.
    #[cold]
    pub fn diverge(&mut self, event: u64, line: u64, expected: u64, got: u64, why: String) {
        if self.first_divergence.is_none() {
            self.first_divergence = Some(Divergence {
                event,
                line,
                expected: format!("{expected:#x}"),
                got: format!("{got:#x}"),
                why,
                size: None,
            });
        } else {
            self.divergences += 1;
        }
    }

    /// Records a divergence in a size at `event` (`line`): `addr` is what the size belongs
    /// to (both address fields name it), `size` the two sizes.
    #[cold]
    pub fn diverge_size(
        &mut self,
        event: u64,
        line: u64,
        addr: u64,
        size: SizeDivergence,
        why: String,
    ) {
        self.diverge(event, line, addr, addr, why);
        if self.divergences == 0 {
            if let Some(d) = self.first_divergence.as_mut() {
                if d.event == event && d.size.is_none() {
                    d.size = Some(size);
                }
            }
        }
    }
}

/// The error for a refusal whose reason the replayer did not keep.
pub(crate) fn refused(model: &'static str) -> crate::error::AllocError {
    crate::error::AllocError::Corrupt {
        message: "refused",
        addr: crate::addr::Addr::NULL,
        model,
    }
}

/// What a keep-going check records for an event the driver could not replay: the error,
/// then the context of the model's last refusal (taken, so it is said once).
pub(crate) fn refusal_reason(err: &crate::replay::EventError, context: &mut String) -> String {
    let context = std::mem::take(context);
    if context.is_empty() {
        err.source.to_string()
    } else {
        format!("{}; {context}", err.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contract_fields() {
        let mut r = CheckReport {
            events: 3,
            ..Default::default()
        };
        assert!(r.compare(0, 10, 0x10, 0x10, || unreachable!()));
        assert!(!r.compare(1, 11, 0x20, 0x30, || "pool 0x1000".into()));
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["events"], 3);
        assert_eq!(v["checked"], 2);
        assert_eq!(v["matched"], 1);
        assert_eq!(v["first_divergence"]["line"], 11);
        assert_eq!(v["first_divergence"]["expected"], "0x20");
        assert!(!r.ok());
    }
}
