//! `pyalloc stats`: the model's state at one point of a recording, in the layout of
//! `sys._debugmallocstats()` (obmalloc.c `_PyObject_DebugMallocStats`, CPython 3.x or 2.7).
//!
//! ```text
//!   drive ──> AtPoint { Pymalloc3Check } ──Stop at the point──> model.debug_malloc_stats()
//!                 └─ Diverged before it: an error (the statistics would not be CPython's)
//!   drive ──> AtPoint { MimallocCheck } ──Stop──> the mimalloc section of CPython 3.13's
//!             _PyObject_DebugMallocStats (a CPython 3.13 mimalloc recording)
//!   drive ──> AtPoint { Py27Replay } ──Stop──> 2.7's layout (a PYREC 2.7 recording)
//! ```

use crate::check::mimalloc::{self, MimallocCheck};
pub use crate::check::pymalloc3::StatsAt;
use crate::check::pymalloc3::{model_for, Pymalloc3Check};
use crate::check::pyrec27::{self, Py27Replay};
use crate::check::{CheckOptions, Divergence};
use crate::mimalloc::MiStats;
use crate::platform::Platform;
use crate::replay::pymalloc::request_size;
use crate::replay::Addresses;
use crate::replay::{drive, Cause, EventError, Flow, Replay, ReplayError, Source};
use crate::trace::mimalloc::MimallocReader;
use crate::trace::pymalloc3::Pymalloc3Reader;
use crate::trace::pyrec27::Pyrec27Reader;
use crate::trace::{Domain, Event, EventKind};
use crate::trace::{Format, Opened};
use std::path::Path;

/// A check `pyalloc stats` can stop at a point of its recording.
trait StatsCheck: Replay {
    /// The event number to report when event `index` (as `drive` counts, just stepped) is
    /// the point `at`; `None` when it is not.
    fn at_point(&self, at: StatsAt, index: u64, ev: &Event) -> Option<u64>;
    /// What a marker is, as the error for a marker never reached names it.
    const MARKER: &'static str = "top-level O/M request";
    /// What the check says of `addr` when the replay fails there (nothing by default).
    fn explain_at(&mut self, _addr: crate::addr::Addr) -> Option<String> {
        None
    }
}

impl StatsCheck for Pymalloc3Check {
    fn at_point(&self, at: StatsAt, index: u64, ev: &Event) -> Option<u64> {
        let hit = match at {
            StatsAt::Event(n) => index == n,
            StatsAt::Marker(size) => request_size(&ev.kind) == Some(size),
        };
        hit.then_some(index)
    }
}

/// CPython 2.7: a marker is a `PyObject_Malloc` (`m O`) of its size.
impl StatsCheck for Py27Replay {
    const MARKER: &'static str = "PyObject_Malloc";
    fn at_point(&self, at: StatsAt, index: u64, ev: &Event) -> Option<u64> {
        let hit = match at {
            StatsAt::Event(n) => index == n,
            StatsAt::Marker(size) => matches!(
                ev.kind,
                EventKind::Malloc { domain: Domain::Obj, size: s, .. } if s == size
            ),
        };
        hit.then_some(index)
    }
}

/// Event numbers count the OS lines, as the mimalloc check's do.
impl StatsCheck for MimallocCheck {
    fn at_point(&self, at: StatsAt, index: u64, ev: &Event) -> Option<u64> {
        let n = index + self.os_lines();
        let hit = match at {
            StatsAt::Event(e) => n >= e,
            StatsAt::Marker(size) => request_size(&ev.kind) == Some(size),
        };
        hit.then_some(n)
    }
    fn explain_at(&mut self, addr: crate::addr::Addr) -> Option<String> {
        self.explain(addr)
    }
}

/// The event number where a stats replay stopped, or why the statistics there cannot be
/// shown: the model diverged before the point (they would not be CPython's), or the
/// recording's `events` never reached it.
fn point_reached<C: StatsCheck>(
    path: &Path,
    at: StatsAt,
    divergence: Option<&Divergence>,
    reached: Option<u64>,
    events: u64,
) -> Result<u64, ReplayError> {
    if let Some(dv) = divergence {
        return Err(ReplayError::Unsupported(format!(
            "{}: the model diverged from the recording at event {} (line {}) before the point asked for: {}",
            path.display(),
            dv.event,
            dv.line,
            dv.why
        )));
    }
    reached.ok_or_else(|| {
        let what = match at {
            StatsAt::Event(n) => format!("no event {n}"),
            StatsAt::Marker(s) => format!("no {} of {s} bytes", C::MARKER),
        };
        ReplayError::Unsupported(format!(
            "{}: {what} among its {} events",
            path.display(),
            events
        ))
    })
}

/// A check, stopped at the point asked for.
struct AtPoint<C> {
    check: C,             // the model, held to the recording
    at: StatsAt,          // where to stop
    reached: Option<u64>, // the event number where it stopped
}

impl<C> AtPoint<C> {
    fn new(check: C, at: StatsAt) -> AtPoint<C> {
        AtPoint {
            check,
            at,
            reached: None,
        }
    }
}

/// The driver's options for a replay that stops at the first error (no keep-going: the
/// statistics after a divergence would not be CPython's).
fn stopping<'a>(opts: &CheckOptions, label: &'a str) -> crate::replay::DriveOptions<'a> {
    crate::replay::DriveOptions {
        keep_going: false,
        ..opts.drive(label)
    }
}

impl<C: StatsCheck> Replay for AtPoint<C> {
    #[inline]
    fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
        let flow = self.check.step(index, ev)?;
        if flow != Flow::Stop {
            if let Some(n) = self.check.at_point(self.at, index, ev) {
                self.reached = Some(n);
                return Ok(Flow::Stop);
            }
        }
        Ok(flow)
    }
    fn keep_going(&mut self, err: EventError) {
        self.check.keep_going(err);
    }
    fn explain(&mut self, addr: crate::addr::Addr) -> Option<String> {
        self.check.explain_at(addr)
    }
}

/// The event index a statistics replay reached, with the statistics text there.
pub type StatsReached = Result<(u64, String), ReplayError>;

/// Replays the trace at `path` up to `at` and returns the event index reached with the
/// model's `sys._debugmallocstats()` text there.
///
/// # Errors
/// The trace ends before `at`, the model diverges from the recording before it (the
/// statistics would not be CPython's), or a read/model error.
pub fn stats_at(path: &Path, opts: &CheckOptions, at: StatsAt) -> StatsReached {
    // a CPython 2.7 PYREC recording in 2.7's layout; every other through pymalloc 3
    match Opened::open(path)?.format {
        Format::Pyrec27 => stats_at_py27(path, opts, at),
        Format::Mimalloc => stats_at_mimalloc(path, opts, at),
        _ => stats_at_py3(path, opts, at),
    }
}

fn stats_at_py3(path: &Path, opts: &CheckOptions, at: StatsAt) -> StatsReached {
    let mut reader = Pymalloc3Reader::open(path)?;
    let mut src = Source::new(&mut reader)?;
    let (params, mode) = model_for(opts, src.header())?;
    let mut a = AtPoint::new(Pymalloc3Check::new(params, mode), at);
    // Own mode (`+own`) places arenas and fall-throughs itself, so its addresses differ
    // from the recording's by design (the kernel put ints.py's first arena on a 1 MiB
    // boundary, 64 pools, where the model's own mmap gives a page-aligned one of 63): it
    // replays on past them (later frees follow the model's blocks) and shows the model's
    // own state. Pinned mode must match every address up to the point.
    let own = mode == Addresses::Own;
    let label = path.display().to_string();
    let mut drive_opts = opts.drive(&label);
    drive_opts.keep_going = own;
    let d = drive(&mut src, &mut a, &drive_opts)?;
    let divergence = a.check.report().first_divergence.as_ref().filter(|_| !own);
    let i = point_reached::<Pymalloc3Check>(path, at, divergence, a.reached, d.events)?;
    Ok((i, a.check.replayer().model().debug_malloc_stats().render()))
}

/// `pyalloc stats` of a PYREC 2.7 recording: the free lists and pymalloc replayed as
/// `check` replays them, up to the point, rendered in 2.7's `_PyObject_DebugMallocStats`
/// layout.
fn stats_at_py27(path: &Path, opts: &CheckOptions, at: StatsAt) -> StatsReached {
    let mut reader = Pyrec27Reader::open(path)?;
    let mut src = Source::new(&mut reader)?;
    let params = pyrec27::params_for(opts)?;
    let mut a = AtPoint::new(
        Py27Replay::with_params(Platform::linux_x86_64(), params, false),
        at,
    );
    let label = path.display().to_string();
    let d = drive(&mut src, &mut a, &stopping(opts, &label))?;
    let divergence = a.check.report.first_divergence.as_ref();
    let i = point_reached::<Py27Replay>(path, at, divergence, a.reached, d.events)?;
    Ok((i, a.check.pymalloc().debug_malloc_stats().render()))
}

/// `pyalloc stats` of a CPython 3.13 mimalloc recording: the section CPython 3.13's
/// `_PyObject_DebugMallocStats` prints, right after the first top-level O/M request of
/// `marker` bytes (the stats call's collection applied there) or after event `n`.
fn stats_at_mimalloc(path: &Path, opts: &CheckOptions, at: StatsAt) -> StatsReached {
    let mut reader = MimallocReader::open(path)?;
    let os = reader.share_os_lines();
    let mut src = Source::new(&mut reader)?;
    let mut check = MimallocCheck::new(mimalloc::model_for(opts)?, src.header(), os);
    if let StatsAt::Marker(size) = at {
        check.replayer_mut().add_stats_size(size);
    }
    let mut a = AtPoint::new(check, at);
    let label = path.display().to_string();
    let d = drive(&mut src, &mut a, &stopping(opts, &label)).map_err(|e| a.check.renumber(e))?;
    let events = d.events + a.check.os_lines();
    let i = point_reached::<MimallocCheck>(
        path,
        at,
        a.check.report().first_divergence.as_ref(),
        a.reached,
        events,
    )?;
    let rp = a.check.replayer_mut();
    let s = match (at, rp.markers().last()) {
        (StatsAt::Marker(_), Some(&(_, s))) => s,
        _ => rp.debug_malloc_stats(),
    };
    Ok((i, crate::mimalloc::stats::format_stats(&s)))
}

/// The mimalloc statistics CPython printed at each marker of the recording, as the model
/// computes them: (line of the marker request, numbers), in order.
///
/// # Errors
/// The model diverges from the recording (the numbers would not be CPython's), or a read
/// or model error.
pub fn mimalloc_markers(
    path: &Path,
    opts: &CheckOptions,
) -> Result<Vec<(u64, MiStats)>, ReplayError> {
    let mut reader = MimallocReader::open(path)?;
    let os = reader.share_os_lines();
    let mut src = Source::new(&mut reader)?;
    let mut c = MimallocCheck::new(mimalloc::model_for(opts)?, src.header(), os);
    let drive_opts = crate::replay::DriveOptions {
        keep_going: false,
        ..opts.drive("stats")
    };
    if let Err(e) = drive(&mut src, &mut c, &drive_opts) {
        return Err(c.renumber(e));
    }
    if let Some(d) = &c.report().first_divergence {
        return Err(ReplayError::Unsupported(format!(
            "{}: the model diverged from the recording at event {} (line {}): {}",
            path.display(),
            d.event,
            d.line,
            d.why
        )));
    }
    Ok(c.replayer().markers().to_vec())
}
