//! Checking glibc recordings: every malloc-family call of a process, from its first one,
//! replayed through the glibc 2.36 model on a heap starting at the trace's
//! `brk_at_first_call`; every address the model returns from the brk heap is compared.
//!
//! Mmapped results cannot be predicted (their placement depends on the address-space
//! layout, which the tracer itself changes): when the recording shows one, the model's
//! next mapping is pinned there. The model must still decide to mmap at that call: if it
//! serves the call from the heap instead, that is a divergence like any other.
//! After a divergence (with `keep_going`), later frees and reallocs of the recorded
//! address are translated to the model's.

use super::{CheckOptions, CheckReport};
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::replay::model::{recorded_bounds, RECORDED_PAGE};
use crate::replay::{drive, Cause, Flow, ModelKind, ModelSpec, Replay, ReplayError, Source};
use crate::sysmalloc::glibc::{Glibc, GlibcParams};
use crate::trace::glibc::GlibcTraceReader;
use crate::trace::{Event, EventKind, EventReader};
use crate::vm::AddressSpace;
use std::collections::HashMap;
use std::path::Path;

/// Replays an opened glibc trace through the glibc model and compares every brk-heap address.
///
/// # Errors
/// An unreadable or malformed trace, an unknown model name, a header without
/// `brk_at_first_call`, or a call the model refuses (with its event number and line).
pub fn check(reader: GlibcTraceReader, opts: &CheckOptions) -> Result<CheckReport, ReplayError> {
    Ok(replay_from(reader, opts, |_, _| {})?.report)
}

/// Replays the trace at `path` like [`replay`], showing `observe(model, event,
/// model_result)` the model after every event, until `observe` says [`Flow::Stop`] (the
/// teaching commands stop at the event they show).
///
/// # Errors
/// As [`check`].
pub fn replay_until(
    path: &Path,
    opts: &CheckOptions,
    observe: impl FnMut(&Glibc, &Event, Addr) -> Flow,
) -> Result<Replayed, ReplayError> {
    let mut reader = GlibcTraceReader::open(path)?;
    let params = params_for(opts)?;
    let name = reader.path().display().to_string();
    let (mut report, model) = run(&mut reader, &name, params, opts, observe)?;
    name_phase(&mut report, |i| reader.mark(i).map(str::to_string));
    Ok(Replayed {
        report,
        model,
        brk_at_exit: None,
    })
}

/// What a replay leaves behind besides its report.
pub struct Replayed {
    /// The comparisons.
    pub report: CheckReport,
    /// The model in its final state.
    pub model: Glibc,
    /// The trailer's `brk_at_exit`, when the recording has one.
    pub brk_at_exit: Option<Addr>,
}

/// Replays the trace at `path` like [`check`], calling `observe(event, model_result)` after
/// every event (`model_result` is the address the model returned, `NULL` for calls that
/// return none), and hands back the model.
///
/// # Errors
/// As [`check`].
pub fn replay(
    path: &Path,
    opts: &CheckOptions,
    observe: impl FnMut(&Event, Addr),
) -> Result<Replayed, ReplayError> {
    replay_from(GlibcTraceReader::open(path)?, opts, observe)
}

/// [`replay`] of an opened glibc trace.
///
/// # Errors
/// As [`check`].
pub fn replay_from(
    mut reader: GlibcTraceReader,
    opts: &CheckOptions,
    mut observe: impl FnMut(&Event, Addr),
) -> Result<Replayed, ReplayError> {
    let params = params_for(opts)?;
    let name = reader.path().display().to_string();
    let (mut report, model) = run(&mut reader, &name, params, opts, |_, e, a| {
        observe(e, a);
        Flow::Next
    })?;
    name_phase(&mut report, |i| reader.mark(i).map(str::to_string));
    let brk_at_exit = reader
        .trailer()
        .iter()
        .find_map(|l| l.strip_prefix("brk_at_exit "))
        .and_then(Addr::parse_hex);
    Ok(Replayed {
        report,
        model,
        brk_at_exit,
    })
}

/// Where a divergence's phase goes in its `why` until the mark's text is known (the
/// reader holds it, and the reader is the driver's until the end): `\u{1}INDEX\u{1}`.
const PHASE: char = '\u{1}';

/// Names the first divergence's phase by `mark(index)`.
fn name_phase(report: &mut CheckReport, mark: impl Fn(u32) -> Option<String>) {
    let Some(d) = &mut report.first_divergence else {
        return;
    };
    let Some(at) = d.why.find(PHASE) else {
        return;
    };
    let len = d.why[at + 1..].find(PHASE).map_or(0, |n| n + 2);
    let text = d.why[at + 1..at + len.max(1) - 1]
        .parse()
        .ok()
        .and_then(mark)
        .map(|m| format!(" in phase {m:?}"))
        .unwrap_or_default();
    d.why.replace_range(at..at + len.max(1), &text);
}

/// [`check`] of an already opened event stream (a binary trace of a glibc recording: its
/// header keeps `brk_at_first_call` and the memory map; a divergence names the phase by
/// its index, as the binary form keeps no mark text).
///
/// # Errors
/// As [`check`].
pub fn check_reader(
    mut reader: Box<dyn EventReader>,
    opts: &CheckOptions,
) -> Result<CheckReport, ReplayError> {
    let params = params_for(opts)?;
    let (mut report, _) = run(&mut *reader, "replaying", params, opts, |_, _, _| {
        Flow::Next
    })?;
    name_phase(&mut report, |i| Some(format!("mark #{i}")));
    Ok(report)
}

/// The glibc build for `--model` (`glibc-2.36` when none is given).
///
/// # Errors
/// A name that is not a model, or not a glibc model.
pub fn params_for(opts: &CheckOptions) -> Result<GlibcParams, ReplayError> {
    let Some(name) = &opts.model else {
        return Ok(GlibcParams::v2_36_x86_64());
    };
    let spec = ModelSpec::parse(name)?;
    match &spec.kind {
        ModelKind::Glibc(p) if spec.lower.is_none() => Ok(p.clone()),
        _ => Err(spec
            .not_here(
                "check a glibc recording",
                "it is not a glibc model; name glibc-2.36",
            )
            .into()),
    }
}

/// Drives the check over any event stream.
fn run(
    reader: &mut dyn EventReader,
    name: &str,
    params: GlibcParams,
    opts: &CheckOptions,
    observe: impl FnMut(&Glibc, &Event, Addr) -> Flow,
) -> Result<(CheckReport, Glibc), ReplayError> {
    let mut src = Source::new(reader)?;
    let (brk, ceiling) = recorded_bounds(src.header()).ok_or_else(|| {
        ReplayError::Unsupported(format!(
            "{name}: the header has no `# brk_at_first_call ADDR` line, so the check cannot \
             place the model's heap where the process's began; add it from the recording's \
             memory map, or replay the trace with `pyalloc replay --model glibc-2.36`"
        ))
    })?;
    let page = RECORDED_PAGE;
    let vm = AddressSpace::new(page, 8, brk, ceiling);
    let mut check = GlibcCheck {
        model: Glibc::new(params, vm),
        report: CheckReport::default(),
        // the brk heap grows up from brk_at_first_call, mappings grow down from below the
        // libraries: an address in the lower half of the gap is the heap's
        heap: brk.0..brk.0 + (ceiling.0 - brk.0) / 2,
        page,
        remap: HashMap::new(),
        phase: None,
        observe,
    };
    let d = drive(&mut src, &mut check, &opts.drive(name))?;
    check.report.events = d.events;
    check.report.raw_unknown = d.raw_unknown;
    Ok((check.report, check.model))
}

impl<F: FnMut(&Glibc, &Event, Addr) -> Flow> Replay for GlibcCheck<F> {
    #[inline]
    fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
        let got = self
            .event(ev.kind, index, ev.line)
            .map_err(|e| Cause::unservable(&ev.kind, e))?;
        let flow = (self.observe)(&self.model, ev, got);
        Ok(if self.report.first_divergence.is_some() {
            Flow::Diverged
        } else {
            flow
        })
    }
}

/// The state of one replay.
struct GlibcCheck<F> {
    model: Glibc,               // the model under check
    report: CheckReport,        // comparisons so far
    heap: std::ops::Range<u64>, // addresses taken for the brk heap's (lower half of the gap)
    page: u64,                  // page size
    remap: HashMap<u64, u64>,   // recorded address -> model address, where they differ
    phase: Option<u32>,         // the last `# mark` seen
    observe: F,                 // shown the model and its answer after every event
}

impl<F> GlibcCheck<F> {
    /// The model's name for a recorded address.
    #[inline]
    fn tr(&self, a: Addr) -> Addr {
        if self.remap.is_empty() {
            a
        } else {
            self.remap.get(&a.0).map_or(a, |&m| Addr(m))
        }
    }

    /// Pins the model's next mapping where the recording shows an mmapped result.
    #[inline]
    fn pin(&mut self, expected: Addr) {
        if !expected.is_null() && !self.heap.contains(&expected.0) {
            self.model
                .pin_next_mmap(Addr((expected.0 - 16) & !(self.page - 1)));
        }
    }

    /// Compares the model's `got` with the recorded `expected`.
    fn compare(&mut self, event: u64, line: u64, expected: Addr, got: Addr) {
        if expected.is_null() && got.is_null() {
            return;
        }
        let mapped = !self.heap.contains(&expected.0);
        if mapped && got == expected {
            return; // pinned, and the model chose mmap too
        }
        let served = self.model.served();
        let phase = self.phase;
        let matched = self.report.compare(event, line, expected.0, got.0, || {
            let ph = phase
                .map(|i| format!("{PHASE}{i}{PHASE}"))
                .unwrap_or_default();
            let top = self
                .model
                .top_chunk()
                .map(|(a, s)| format!("top {a} of {s:#x}"))
                .unwrap_or_default();
            format!(
                "model served it from {served}{ph}{}; {top}",
                if mapped { " (recorded: mmapped)" } else { "" }
            )
        });
        if !matched {
            self.remap.insert(expected.0, got.0);
        } else if !self.remap.is_empty() {
            self.remap.remove(&expected.0);
        }
    }

    /// A call that returns a fresh block the recording shows at `addr` (malloc, calloc,
    /// the memalign family): the model's next mapping pinned where the recording's is, a
    /// refusal the recording agrees with made NULL, the result compared.
    fn placed(
        &mut self,
        event: u64,
        line: u64,
        addr: Addr,
        call: impl FnOnce(&mut Glibc) -> Result<Addr, crate::error::AllocError>,
    ) -> Result<Addr, crate::error::AllocError> {
        self.pin(addr);
        let got = Self::null_if_recorded(call(&mut self.model), addr)?;
        self.compare(event, line, addr, got);
        Ok(got)
    }

    /// A refusal the recording agrees with (glibc returned NULL: `ENOMEM`, `EINVAL`)
    /// is a NULL result; any other refusal is an error of the replay.
    fn null_if_recorded(
        r: Result<Addr, crate::error::AllocError>,
        expected: Addr,
    ) -> Result<Addr, crate::error::AllocError> {
        use crate::error::AllocError::{BadAlignment, OutOfAddressSpace, TooLarge};
        match r {
            Err(TooLarge { .. } | BadAlignment { .. } | OutOfAddressSpace { .. })
                if expected.is_null() =>
            {
                Ok(Addr::NULL)
            }
            r => r,
        }
    }

    fn event(
        &mut self,
        kind: EventKind,
        event: u64,
        line: u64,
    ) -> Result<Addr, crate::error::AllocError> {
        let mut got = Addr::NULL;
        match kind {
            EventKind::Malloc { size, addr, .. } => {
                got = self.placed(event, line, addr, |m| m.malloc(size as usize))?;
            }
            EventKind::Calloc {
                nelem,
                elsize,
                addr,
                ..
            } => {
                let (n, s) = (nelem as usize, elsize as usize);
                got = self.placed(event, line, addr, |m| m.calloc(n, s))?;
            }
            EventKind::Realloc { old, size, new, .. } => {
                self.pin(new);
                let o = self.tr(old);
                got = if size > 0 {
                    Self::null_if_recorded(self.model.realloc(o, size as usize), new)?
                } else {
                    self.model.realloc(o, 0)?
                };
                self.compare(event, line, new, got);
            }
            EventKind::Free { addr, .. } => {
                let a = self.tr(addr);
                self.model.free(a)?;
            }
            EventKind::Memalign { align, size, addr } => {
                let (a, s) = (align as usize, size as usize);
                got = self.placed(event, line, addr, |m| m.memalign(a, s))?;
            }
            EventKind::Valloc { size, addr } => {
                got = self.placed(event, line, addr, |m| m.valloc(size as usize))?;
            }
            EventKind::Pvalloc { size, addr } => {
                got = self.placed(event, line, addr, |m| m.pvalloc(size as usize))?;
            }
            EventKind::Mallopt { param, value, .. } => {
                self.model.mallopt(param as i32, value as i32);
            }
            EventKind::Mark { index } => self.phase = Some(index),
            _ => {}
        }
        self.model.clear_mmap_pin();
        Ok(got)
    }
}
