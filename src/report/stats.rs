//! `pyalloc stats`: the model's state at one point of a CPython 3 recording, in the layout
//! of `sys._debugmallocstats()` (obmalloc.c `_PyObject_DebugMallocStats`, CPython 3.x).
//!
//! ```text
//!   drive ──> AtPoint { Pymalloc3Check } ──Stop at the point──> model.debug_malloc_stats()
//!                 └─ Diverged before it: an error (the statistics would not be CPython's)
//! ```

use crate::check::pymalloc3::{model_for, Pymalloc3Check};
use crate::check::CheckOptions;
use crate::replay::pymalloc::request_size;
use crate::replay::{drive, Cause, EventError, Flow, Replay, ReplayError, Source};
use crate::trace::pymalloc3::Pymalloc3Reader;
use crate::trace::Event;
use std::path::Path;

/// Which point of a trace `pyalloc stats` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsAt {
    /// Right after the event with this 0-based index.
    Event(u64),
    /// Right after the first top-level O/M request of exactly this many bytes.
    Marker(u64),
}

impl StatsAt {
    fn is(self, index: u64, ev: &Event) -> bool {
        match self {
            StatsAt::Event(n) => index == n,
            StatsAt::Marker(size) => request_size(&ev.kind) == Some(size),
        }
    }
}

/// The check, stopped at the point asked for.
struct AtPoint {
    check: Pymalloc3Check, // the model, held to the recording
    at: StatsAt,           // where to stop
    reached: Option<u64>,  // the event index where it stopped
}

impl Replay for AtPoint {
    #[inline]
    fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
        let flow = self.check.step(index, ev)?;
        if flow == Flow::Next && self.at.is(index, ev) {
            self.reached = Some(index);
            return Ok(Flow::Stop);
        }
        Ok(flow)
    }
    fn keep_going(&mut self, err: EventError) {
        self.check.keep_going(err);
    }
}

/// Replays the trace at `path` up to `at` and returns the event index reached with the
/// model's `sys._debugmallocstats()` text there.
///
/// # Errors
/// The trace ends before `at`, the model diverges from the recording before it (the
/// statistics would not be CPython's), or a read/model error.
pub fn stats_at(
    path: &Path,
    opts: &CheckOptions,
    at: StatsAt,
) -> Result<(u64, String), ReplayError> {
    let mut reader = Pymalloc3Reader::open(path)?;
    let mut src = Source::new(&mut reader)?;
    let (params, mode) = model_for(opts, src.header())?;
    let mut a = AtPoint {
        check: Pymalloc3Check::new(params, mode),
        at,
        reached: None,
    };
    let label = path.display().to_string();
    let d = drive(&mut src, &mut a, &opts.drive(&label))?;
    if let Some(dv) = &a.check.report().first_divergence {
        return Err(ReplayError::Unsupported(format!(
            "{}: the model diverged from the recording at event {} (line {}) before the point asked for: {}",
            path.display(),
            dv.event,
            dv.line,
            dv.why
        )));
    }
    let i = a.reached.ok_or_else(|| {
        let what = match at {
            StatsAt::Event(n) => format!("no event {n}"),
            StatsAt::Marker(s) => format!("no top-level O/M request of {s} bytes"),
        };
        ReplayError::Unsupported(format!(
            "{}: {what} among its {} events",
            path.display(),
            d.events
        ))
    })?;
    Ok((i, a.check.replayer().model().debug_malloc_stats().render()))
}
