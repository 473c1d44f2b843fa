//! Checking mimalloc against the CPython 3.13 mimalloc recordings: every O/M call through
//! the model, every address it returns compared with the recorded one.
//!
//! ```text
//!  trace (post-order)                                   driver              model
//!  S 1073741824 31540000000 … 1 unix_mmap          ->  PinnedOs.pending --.
//!  S 4096 7ffff7fb8000 … 1 unix_mmap               ->  PinnedOs.pending --+-> asked for by the
//!  m O 64 315400100c0                              ->  mi_malloc(64) ?= 0x315400100c0   next call
//!  r M 0 777778 31540cc0000  (a stats size)        ->  mi_realloc, then collect_for_stats
//!  N … _mi_os_purge_ex / G … / R, r, V, W lines    ->  counted, not modelled (libc, purges,
//!                                                      CPython's data stack)
//! ```
//! Two modes. **Pinned** (default, `mimalloc-2.1.2`): the arena's base comes from the
//! mimalloc `S` lines nested in the call, and the model must make exactly those mappings
//! (counted in `arena_events`). **Own** (`mimalloc-2.1.2+own`): the model maps at its own
//! hints; an address matches when it lies at the same offset from its arena's start as the
//! recorded one does from the recorded arena's (the arenas paired in order).
//! The stats markers: right after a top-level O/M request of one of the header's
//! `RECORDER_STATS_SIZES`, CPython's `_PyObject_DebugMallocStats` ran, which collects every
//! page's `local_free` in front of its `free`; the replay does the same there.
//! Invariant: after each O/M call no recorded mimalloc mapping is left unasked for.

use super::{CheckOptions, CheckReport};
use crate::addr::Addr;
use crate::error::AllocError;
use crate::mimalloc::{MiStats, Mimalloc, OwnOs, PinnedOs};
use crate::progress::Progress;
use crate::replay::{Addresses, Cause, EventError, ModelKind, ModelSpec, ReplayError};
use crate::trace::mimalloc::{Caller, MiLine, MimallocReader, OsCall, OsLine};
use crate::trace::{Domain, Event, EventKind, EventReader, TraceHeader};
use std::collections::HashMap;
use std::path::Path;

/// The model names this checker takes.
pub const MODEL_NAMES: [&str; 2] = ["mimalloc-2.1.2", "mimalloc-2.1.2+own"];

/// Where arena bases come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the recording's `S` lines.
    Pinned,
    /// From the model's own hints.
    Own,
}

/// The mode a model name asks for (`None`: not a mimalloc model name), read by
/// [`ModelSpec::parse`].
pub fn mode_of(name: &str) -> Option<Mode> {
    mode_of_spec(&ModelSpec::parse(name).ok()?)
}

/// The mode a parsed model asks for (`None`: not mimalloc alone).
fn mode_of_spec(spec: &ModelSpec) -> Option<Mode> {
    match (&spec.kind, &spec.lower) {
        (ModelKind::Mimalloc, None) => Some(match spec.addresses {
            Addresses::Pinned => Mode::Pinned,
            Addresses::Own => Mode::Own,
        }),
        _ => None,
    }
}

/// The model in either mode.
enum Model {
    Pinned(Mimalloc<PinnedOs>),
    Own(Mimalloc<OwnOs>),
}

macro_rules! with_model {
    ($m:expr, $x:ident => $body:expr) => {
        match $m {
            Model::Pinned($x) => $body,
            Model::Own($x) => $body,
        }
    };
}

/// What one replayed line amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A line the model has no part in (RAW calls, CPython's data stack, purges, …) or
    /// a mapping queued for the next call.
    Context,
    /// An O/M call replayed: the recorded and the model's address (in the recording's
    /// terms; both 0 for a free), and whether they (and the mappings) agree.
    Call {
        /// Recorded.
        expected: Addr,
        /// The model's.
        got: Addr,
        /// True for a malloc, calloc or realloc (an address that is checked).
        checked: bool,
        /// True when the model agrees.
        matched: bool,
        /// Mappings made in agreement with the recording in this call.
        os_events: u32,
        /// True when the stats call followed this request.
        marker: bool,
    },
}

/// Replays a mimalloc recording line by line.
pub struct Replayer {
    model: Model,
    stats_sizes: Vec<u64>,           // RECORDER_STATS_SIZES
    alias: HashMap<u64, u64>,        // recorded address -> model address, where they differ
    arena_pairs: Vec<(u64, u64)>,    // own mode: (model arena start, recorded arena start)
    recorded_maps: Vec<(u64, Addr)>, // own mode: mimalloc mmaps of the call being assembled
    why: Option<String>,             // why the last call did not match
    error: Option<AllocError>,       // what the model refused in the last call
    markers: Vec<(u64, MiStats)>,    // (line, numbers) at every stats marker
}

fn is_om(d: Domain) -> bool {
    matches!(d, Domain::Obj | Domain::Mem)
}

impl Replayer {
    /// A replayer in `mode` for a recording whose header is `header`.
    pub fn new(mode: Mode, header: &TraceHeader) -> Replayer {
        Replayer {
            model: match mode {
                Mode::Pinned => Model::Pinned(Mimalloc::pinned()),
                Mode::Own => Model::Own(Mimalloc::default()),
            },
            stats_sizes: crate::trace::mimalloc::stats_sizes(header),
            alias: HashMap::new(),
            arena_pairs: Vec::new(),
            recorded_maps: Vec::new(),
            why: None,
            error: None,
            markers: Vec::new(),
        }
    }

    /// Why the last call did not match (taken).
    pub fn take_why(&mut self) -> Option<String> {
        self.why.take()
    }

    /// What the model refused in the last call (taken).
    pub fn take_error(&mut self) -> Option<AllocError> {
        self.error.take()
    }

    /// The CPython statistics at every marker so far: (line, numbers).
    pub fn markers(&self) -> &[(u64, MiStats)] {
        &self.markers
    }

    /// The model's numbers now (without the stats call's collection).
    pub fn stats(&self) -> MiStats {
        with_model!(&self.model, m => m.mi_stats())
    }

    /// The model's invariants.
    ///
    /// # Errors
    /// The first equation that does not hold.
    pub fn check_invariants(&self) -> Result<(), String> {
        with_model!(&self.model, m => m.check_invariants())
    }

    /// The model's footprint.
    pub fn footprint(&self) -> crate::alloc::Stats {
        use crate::alloc::Allocator;
        with_model!(&self.model, m => m.stats())
    }

    fn to_model(&self, a: Addr) -> Addr {
        if self.alias.is_empty() {
            return a;
        }
        self.alias.get(&a.0).map_or(a, |&m| Addr(m))
    }

    /// Own mode: a model address in the recording's terms (same offset in the paired arena).
    fn recorded_terms(&self, got: Addr) -> Addr {
        for &(m, t) in &self.arena_pairs {
            let off = got.0.wrapping_sub(m);
            if off < crate::mimalloc::arena::ARENA_RESERVE * 64 {
                if let Model::Own(model) = &self.model {
                    if model
                        .arenas()
                        .iter()
                        .any(|a| a.start.0 == m && off < a.size())
                    {
                        return Addr(t + off);
                    }
                }
            }
        }
        got
    }

    /// Replays one line.
    ///
    /// # Errors
    /// Never for a well-formed recording; the model's refusal is returned as the error
    /// (the caller decides whether it ends the check) — see also [`take_error`](Self::take_error).
    pub fn step(&mut self, line: &MiLine) -> Step {
        match *line {
            MiLine::Os(os) => {
                self.os_line(os);
                Step::Context
            }
            MiLine::Event(ev) => self.event(&ev),
        }
    }

    fn os_line(&mut self, os: OsLine) {
        if os.caller != Caller::Mimalloc || os.depth == 0 {
            return;
        }
        match (os.call, &mut self.model) {
            (OsCall::Mmap { size, addr, .. }, Model::Pinned(m)) => {
                m.os_mut().pending.push_back((size, addr))
            }
            (OsCall::Mmap { size, addr, .. }, Model::Own(_)) => {
                self.recorded_maps.push((size, addr))
            }
            (OsCall::Munmap { addr, size }, Model::Pinned(m)) => {
                m.os_mut().pending_unmaps.push((addr, size))
            }
            _ => {}
        }
    }

    fn event(&mut self, ev: &Event) -> Step {
        // The common case, dispatched once: a pinned O/M malloc or free with no mapping
        // queued, nothing diverged and no marker (the general path below does the same).
        if let Model::Pinned(m) = &mut self.model {
            if self.alias.is_empty() && m.os().pending.is_empty() {
                match ev.kind {
                    EventKind::Malloc { domain, size, addr }
                        if is_om(domain) && !self.stats_sizes.contains(&size) =>
                    {
                        let r = m.mi_malloc(size);
                        if let Ok(got) = r {
                            if got == addr && m.os().agreed == 0 && m.os().unexpected.is_empty() {
                                return Step::Call {
                                    expected: addr,
                                    got,
                                    checked: true,
                                    matched: true,
                                    os_events: 0,
                                    marker: false,
                                };
                            }
                        }
                        return self.finish(ev, addr, Some(size), r);
                    }
                    EventKind::Free { domain, addr } if is_om(domain) => {
                        let r = m.mi_free(addr);
                        if r.is_ok() && m.os().unexpected.is_empty() {
                            return Step::Call {
                                expected: Addr::NULL,
                                got: Addr::NULL,
                                checked: false,
                                matched: true,
                                os_events: 0,
                                marker: false,
                            };
                        }
                        return self.finish(ev, Addr::NULL, None, r.map(|()| Addr::NULL));
                    }
                    _ => {}
                }
            }
        }
        let (expected, request, result) = match ev.kind {
            EventKind::Malloc { domain, size, addr } if is_om(domain) => (
                addr,
                Some(size),
                with_model!(&mut self.model, m => m.mi_malloc(size)),
            ),
            EventKind::Calloc {
                domain,
                nelem,
                elsize,
                addr,
            } if is_om(domain) => (
                addr,
                Some(nelem.wrapping_mul(elsize)),
                with_model!(&mut self.model, m => m.mi_calloc(nelem, elsize)),
            ),
            EventKind::Realloc {
                domain,
                old,
                size,
                new,
            } if is_om(domain) => {
                let old = self.to_model(old);
                (
                    new,
                    Some(size),
                    with_model!(&mut self.model, m => m.mi_realloc(old, size)),
                )
            }
            EventKind::Free { domain, addr } if is_om(domain) => {
                let a = self.to_model(addr);
                let r = with_model!(&mut self.model, m => m.mi_free(a));
                if !self.alias.is_empty() {
                    self.alias.remove(&addr.0);
                }
                (Addr::NULL, None, r.map(|()| Addr::NULL))
            }
            _ => return Step::Context,
        };
        self.finish(ev, expected, request, result)
    }

    /// The rest of a call once the model answered: mappings, comparison, marker.
    fn finish(
        &mut self,
        ev: &Event,
        expected: Addr,
        request: Option<u64>,
        result: Result<Addr, AllocError>,
    ) -> Step {
        let got = match result {
            Ok(a) => a,
            Err(e) => {
                self.why = Some(format!("the model refused: {e}"));
                self.error = Some(e);
                return Step::Call {
                    expected,
                    got: Addr::NULL,
                    checked: request.is_some(),
                    matched: false,
                    os_events: 0,
                    marker: false,
                };
            }
        };
        // the mappings of this call
        let (os_ok, os_events, os_why) = self.settle_os();
        let got_rec = match &self.model {
            Model::Own(_) => self.recorded_terms(got),
            Model::Pinned(_) => got,
        };
        let matched = os_ok && got_rec == expected;
        if !matched {
            let mut why = with_model!(&self.model, m => m.describe(got));
            if got_rec != expected && request.is_some() {
                why.push_str("; the recorded address: ");
                why.push_str(&with_model!(&self.model, m => m.describe(self.to_model(expected))));
            }
            if let Some(w) = os_why {
                why = format!("{w}; {why}");
            }
            self.why = Some(why);
        }
        if request.is_some() && got_rec != expected && !expected.is_null() {
            self.alias.insert(expected.0, got.0);
        }
        let marker = request.is_some_and(|n| self.stats_sizes.contains(&n));
        if marker {
            let s = with_model!(&mut self.model, m => m.debug_malloc_stats().0);
            self.markers.push((ev.line, s));
        }
        Step::Call {
            expected,
            got: got_rec,
            checked: request.is_some(),
            matched,
            os_events,
            marker,
        }
    }

    /// After a call: did the model map exactly what the recording shows?
    fn settle_os(&mut self) -> (bool, u32, Option<String>) {
        match &mut self.model {
            Model::Pinned(m) => {
                let os = m.os_mut();
                let agreed = os.agreed as u32;
                os.agreed = 0;
                let mut why = Vec::new();
                for (size, addr) in os.pending.drain(..) {
                    if size >= crate::mimalloc::arena::ARENA_BLOCK_SIZE {
                        why.push(format!(
                            "the recording maps {size} bytes at {addr} here, the model does not"
                        ));
                    }
                }
                os.pending_unmaps.clear();
                why.append(&mut os.unexpected);
                let ok = why.is_empty();
                (ok, agreed, (!ok).then(|| why.join("; ")))
            }
            Model::Own(m) => {
                let made: Vec<Addr> = m
                    .arenas()
                    .iter()
                    .map(|a| a.start)
                    .filter(|s| !self.arena_pairs.iter().any(|p| p.0 == s.0))
                    .collect();
                let recorded: Vec<Addr> = self
                    .recorded_maps
                    .drain(..)
                    .filter(|&(s, _)| s >= crate::mimalloc::arena::ARENA_BLOCK_SIZE)
                    .map(|(_, a)| a)
                    .collect();
                let n = made.len().min(recorded.len());
                for i in 0..n {
                    self.arena_pairs.push((made[i].0, recorded[i].0));
                }
                let ok = made.len() == recorded.len();
                (
                    ok,
                    n as u32,
                    (!ok).then(|| {
                        format!(
                            "the model reserved {} arenas in this call, the recording {}",
                            made.len(),
                            recorded.len()
                        )
                    }),
                )
            }
        }
    }
}

/// The mode for `opts.model` (pinned when none is given).
///
/// # Errors
/// A model name this checker does not know.
pub fn mode_for(opts: &CheckOptions) -> Result<Mode, ReplayError> {
    match &opts.model {
        None => Ok(Mode::Pinned),
        Some(name) => mode_of_spec(&ModelSpec::parse(name)?).ok_or_else(|| {
            ReplayError::Unsupported(format!(
                "no model {name:?} for mimalloc recordings (known: {})",
                MODEL_NAMES.join(", ")
            ))
        }),
    }
}

/// Replays `reader` through `rp`; `on_line(index, line, rp)` after each line, stop when
/// it returns false.
///
/// # Errors
/// A read error; the model's refusal of a call (unless `keep_going`).
pub fn replay(
    reader: &mut MimallocReader,
    rp: &mut Replayer,
    keep_going: bool,
    mut on_line: impl FnMut(u64, &MiLine, &Replayer) -> bool,
) -> Result<CheckReport, ReplayError> {
    let mut report = CheckReport::default();
    while let Some(line) = reader.next_line()? {
        let index = report.events;
        report.events += 1;
        let n = match line {
            MiLine::Event(e) => e.line,
            MiLine::Os(o) => o.line,
        };
        if let Step::Call {
            expected,
            got,
            checked,
            matched,
            os_events,
            ..
        } = rp.step(&line)
        {
            report.arena_events += os_events as u64;
            if checked {
                report.checked += 1;
                if matched {
                    report.matched += 1;
                }
            }
            if !matched {
                if let Some(e) = rp.take_error() {
                    if !keep_going {
                        return Err(ReplayError::Event(EventError {
                            event: index,
                            line: n,
                            source: Cause::Model(e),
                        }));
                    }
                }
                let why = rp.take_why().unwrap_or_default();
                report.diverge(index, n, expected.0, got.0, why);
                if !keep_going {
                    return Ok(report);
                }
            }
        }
        if !on_line(index, &line, rp) {
            break;
        }
    }
    Ok(report)
}

/// Checks the mimalloc recording at `path`.
///
/// # Errors
/// See [`ReplayError`].
pub fn check(path: &Path, opts: &CheckOptions) -> Result<CheckReport, ReplayError> {
    check_reader(MimallocReader::open(path)?, opts)
}

/// [`check`] of an opened recording.
///
/// # Errors
/// See [`ReplayError`].
pub fn check_reader(
    mut reader: MimallocReader,
    opts: &CheckOptions,
) -> Result<CheckReport, ReplayError> {
    let mode = mode_for(opts)?;
    let mut rp = Replayer::new(mode, reader.header());
    let name = reader.path().display().to_string();
    let bar = Progress::new(opts.progress, &name);
    let report = replay(&mut reader, &mut rp, opts.keep_going, |i, _, _| {
        bar.tick(i);
        true
    });
    bar.finish();
    report
}

/// The mimalloc statistics CPython printed at each marker of the recording, as the model
/// computes them: (line of the marker request, numbers), in order.
///
/// # Errors
/// The model diverges from the recording (the numbers would not be CPython's), or a read
/// or model error.
pub fn stats_at_markers(
    path: &Path,
    opts: &CheckOptions,
) -> Result<Vec<(u64, MiStats)>, ReplayError> {
    let mut reader = MimallocReader::open(path)?;
    let mut rp = Replayer::new(mode_for(opts)?, reader.header());
    let report = replay(&mut reader, &mut rp, false, |_, _, _| true)?;
    if let Some(d) = &report.first_divergence {
        return Err(ReplayError::Unsupported(format!(
            "{}: the model diverged from the recording at event {} (line {}): {}",
            path.display(),
            d.event,
            d.line,
            d.why
        )));
    }
    Ok(rp.markers().to_vec())
}

/// `pyalloc stats` of a mimalloc recording: the section CPython 3.13's
/// `_PyObject_DebugMallocStats` prints, right after the first top-level O/M request of
/// `marker` bytes (the stats call's collection applied) or after event `event`.
///
/// # Errors
/// The point is never reached, the model diverges before it, or a read/model error.
pub fn stats_at(
    path: &Path,
    opts: &CheckOptions,
    event: Option<u64>,
    marker: Option<u64>,
) -> Result<(u64, String), ReplayError> {
    let mut reader = MimallocReader::open(path)?;
    let mut rp = Replayer::new(mode_for(opts)?, reader.header());
    if let Some(size) = marker {
        if !rp.stats_sizes.contains(&size) {
            rp.stats_sizes.push(size);
        }
    }
    let mut reached = None;
    let report = replay(&mut reader, &mut rp, false, |i, line, _| {
        let hit = match (event, line) {
            (Some(n), _) => i == n,
            (None, MiLine::Event(e)) => request_size(&e.kind) == marker,
            _ => false,
        };
        if hit {
            reached = Some(i);
        }
        !hit
    })?;
    if let Some(d) = &report.first_divergence {
        return Err(ReplayError::Unsupported(format!(
            "{}: the model diverged from the recording at event {} (line {}) before the point asked for: {}",
            path.display(),
            d.event,
            d.line,
            d.why
        )));
    }
    let i = reached.ok_or_else(|| {
        ReplayError::Unsupported(format!(
            "{}: {} among its {} events",
            path.display(),
            match (event, marker) {
                (Some(n), _) => format!("no event {n}"),
                (None, Some(s)) => format!("no top-level O/M request of {s} bytes"),
                _ => "no point given".to_string(),
            },
            report.events
        ))
    })?;
    let s = match (marker, rp.markers().last()) {
        (Some(_), Some(&(_, s))) => s,
        _ => with_model!(&mut rp.model, m => m.debug_malloc_stats().0),
    };
    Ok((i, crate::mimalloc::stats::format_stats(&s)))
}

/// The bytes an O/M request asks for (malloc, calloc, realloc), `None` for other events.
fn request_size(k: &EventKind) -> Option<u64> {
    match *k {
        EventKind::Malloc { domain, size, .. } | EventKind::Realloc { domain, size, .. }
            if is_om(domain) =>
        {
            Some(size)
        }
        EventKind::Calloc {
            domain,
            nelem,
            elsize,
            ..
        } if is_om(domain) => Some(nelem.wrapping_mul(elsize)),
        _ => None,
    }
}

/// The `_PyObject_DebugMallocStats` sections of a recorder's `*.stderr.txt`: the numbers
/// CPython printed at each marker, in order.
pub fn parse_stderr_stats(text: &str) -> Vec<MiStats> {
    let mut out = Vec::new();
    let mut cur: Option<MiStats> = None;
    for line in text.lines() {
        if line.starts_with("=== recorder: _PyObject_DebugMallocStats()") {
            cur = Some(MiStats::default());
            continue;
        }
        if line.starts_with("=== recorder: end of stats") {
            out.extend(cur.take());
            continue;
        }
        let Some(s) = cur.as_mut() else { continue };
        let Some((key, value)) = line.trim().split_once(": ") else {
            continue;
        };
        let Ok(v) = value.trim().parse::<u64>() else {
            continue;
        };
        match key {
            "Allocated Blocks" => s.allocated_blocks = v,
            "Allocated Bytes" => s.allocated_bytes = v,
            "Allocated Bytes w/ Overhead" => s.allocated_with_overhead = v,
            "Bytes Reserved" => s.bytes_reserved = v,
            "Bytes Committed" => s.bytes_committed = v,
            _ => {}
        }
    }
    out
}
