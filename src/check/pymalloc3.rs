//! Checking pymalloc against the CPython 3 recordings: replay every O/M call through the
//! model and compare each address of a request of 1..=SMALL_REQUEST_THRESHOLD bytes.
//!
//! ```text
//!  trace (post-order)            driver                          model
//!  r r 0 768 55555555c530   ->  PinnedRaw.pending   --.
//!  A 1048576 7fff77500000   ->  PinnedArenas.pending --+-> consumed by the next O/M call
//!  c r 1 262144 7ffff769d010 -> PinnedRaw.pending   --'
//!  m O 56 7fff77500030      ->  Pymalloc::malloc(56) = 0x7fff77500030 ?= recorded
//!  F 7fff769cf000 1048576   ->  expected unmaps    --> compared with the model's unmaps
//!  f O 7fff769d0030         ->  Pymalloc::free
//! ```
//!
//! Two modes. **Pinned** (default): arena bases come from the `A` lines and fall-through
//! addresses (requests of 0 or more than 512 bytes, the `arenas` vector, radix-tree nodes)
//! from the nested `r` lines — and the model must make exactly those raw calls, in order.
//! **Own** (`--model cpython-3.11+own`): arenas come from the model's own address space
//! (top-down mmap of the platform preset) and fall-throughs from a bump allocator; a small
//! address matches when it sits at the same offset of the corresponding arena (the one
//! mapped at the same event). Invariant: after each O/M call the nested queues are empty
//! (the model made every raw call and arena map the recording shows, and no other).

use super::{CheckError, CheckOptions, CheckReport};
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::pymalloc::{PinnedArenas, PinnedRaw, Pymalloc, PymallocParams, RawCall};
use crate::sysmalloc::Bump;
use crate::trace::packed::{codes, PackedEvents};
use crate::trace::pymalloc3::Pymalloc3Reader;
use crate::trace::{Domain, Event, EventKind, EventReader, TraceHeader};
use std::collections::HashMap;
use std::path::Path;

/// The model a replay drives: pymalloc over the pinned (or own) raw allocator and arenas.
pub type ReplayModel = Pymalloc<PinnedRaw, PinnedArenas>;

/// Where arena bases and fall-through addresses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the recording (`A` lines, nested `r` lines).
    Pinned,
    /// From the model's own address space and a bump allocator.
    Own,
}

/// What one replayed event amounted to (small and `Copy`: the explanation of a mismatch
/// and the model's refusal are kept in the [`Replayer`], see [`Replayer::take_why`] and
/// [`Replayer::take_error`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Context (a raw, arena or data-stack line), buffered or ignored.
    Context,
    /// An O/M call replayed through the model.
    Call {
        /// The address the recording returned (0 for a free).
        expected: Addr,
        /// The model's address, in the recording's terms (0 for a free).
        got: Addr,
        /// True for a request of 1..=threshold bytes (one that is checked).
        small: bool,
        /// True when the model agrees (address, arena maps and unmaps, raw calls).
        matched: bool,
        /// Arena maps + unmaps that happened in this call, all agreeing with the recording.
        arena_events: u32,
    },
    /// The model refused the call (a free of a non-live address, a double free …).
    Refused,
}

/// Replays a pymalloc3 event stream through a [`ReplayModel`], one event at a time.
pub struct Replayer {
    model: ReplayModel,                  // the model
    mode: Mode,                          // pinned or own
    alias: HashMap<u64, u64>,            // recorded address -> model address, where they differ
    arena_pairs: Vec<(u64, u64)>,        // own mode: (model base, recorded base) of live arenas
    expected_unmaps: Vec<Addr>,          // `F` lines of the call being assembled
    expected_maps: Vec<Addr>,            // `A` lines of the call being assembled
    arena_size: u64,                     // ARENA_SIZE
    nested: bool,                        // something is buffered for the next O/M call
    fast: bool,                          // pinned && !nested && alias empty (the fast path applies)
    why: Option<String>,                 // why the last call did not match
    error: Option<(AllocError, String)>, // what the model refused in the last call, and why
}

impl Replayer {
    /// A replayer for era `params` in `mode` (own mode uses `platform`'s address space).
    pub fn new(params: PymallocParams, mode: Mode, platform: &Platform) -> Replayer {
        let arena_size = params.arena_size();
        let model = match mode {
            Mode::Pinned => Pymalloc::pinned(params),
            Mode::Own => Pymalloc::new(
                params,
                PinnedRaw::own(Bump::new(platform.heap_start, 16)),
                PinnedArenas::own(platform.address_space()),
            ),
        };
        Replayer {
            model,
            mode,
            alias: HashMap::new(),
            arena_pairs: Vec::new(),
            expected_unmaps: Vec::new(),
            expected_maps: Vec::new(),
            arena_size,
            nested: false,
            fast: mode == Mode::Pinned,
            why: None,
            error: None,
        }
    }

    /// Why the last call did not match (taken: the next mismatch sets it again).
    pub fn take_why(&mut self) -> Option<String> {
        self.why.take()
    }

    /// What the model refused in the last call ([`Step::Refused`]), with the context.
    pub fn take_error(&mut self) -> Option<(AllocError, String)> {
        self.error.take()
    }

    /// The model (for statistics, explanations).
    pub fn model(&self) -> &ReplayModel {
        &self.model
    }

    /// The model, mutably.
    pub fn model_mut(&mut self) -> &mut ReplayModel {
        &mut self.model
    }

    /// A recorded address in the model's terms.
    #[inline]
    fn to_model(&self, a: Addr) -> Addr {
        if self.alias.is_empty() {
            return a;
        }
        self.alias.get(&a.0).map_or(a, |&m| Addr(m))
    }

    /// A model address in the recording's terms. Own mode: the same pool index (counted
    /// from each arena's first pool-aligned address) and offset in the paired arena.
    #[inline]
    fn recorded_terms(&self, got: Addr) -> Addr {
        if self.mode == Mode::Pinned {
            return got;
        }
        let (size, pool) = (self.arena_size, self.model.params().pool_size());
        match self
            .arena_pairs
            .iter()
            .find(|(m, _)| got.0 >= *m && got.0 - *m < size)
        {
            Some(&(m, t)) => {
                let (mf, tf) = (Addr(m).align_up(pool).0, Addr(t).align_up(pool).0);
                Addr((tf + got.0).wrapping_sub(mf))
            }
            None => got,
        }
    }

    /// Own mode: pairs the arenas the model mapped in this call with the recorded ones.
    fn pair_arenas(&mut self) {
        if self.mode == Mode::Own {
            for &(m, t) in &self.model.source().mapped {
                if let Some(t) = t {
                    self.arena_pairs.push((m.0, t.0));
                }
            }
        }
    }

    /// Replays one event.
    ///
    /// The model's refusal (a free of a non-live address, a double free …) is
    /// [`Step::Refused`], its error in [`take_error`](Self::take_error); the caller decides
    /// whether it ends the check.
    #[inline]
    pub fn step(&mut self, ev: &Event) -> Step {
        // The common case, dispatched once: an O/M malloc or free in pinned mode with
        // nothing nested and nothing diverged (the general path below does the same).
        if self.quick() {
            match ev.kind {
                EventKind::Malloc { domain, size, addr } if is_om(domain) => {
                    return self.quick_malloc(size, addr)
                }
                EventKind::Free { domain, addr } if is_om(domain) => return self.quick_free(addr),
                _ => {}
            }
        }
        self.step_general(ev)
    }

    /// Replays event `i` of pre-decoded `events` (the same [`Step`] as
    /// [`step`](Self::step) of that event); `None` when there is no event `i`. The common
    /// O/M malloc and free are read straight from the 16-byte record.
    #[inline]
    pub fn step_at(&mut self, events: &PackedEvents, i: usize) -> Option<Step> {
        let p = events.records().get(i)?;
        if self.quick() {
            match p.code() {
                codes::MALLOC_OBJ | codes::MALLOC_MEM => {
                    return Some(self.quick_malloc(p.body(), p.addr()))
                }
                codes::FREE_OBJ | codes::FREE_MEM => return Some(self.quick_free(p.addr())),
                _ => {}
            }
        }
        let kind = events.kind(p)?;
        Some(self.step_general(&Event { kind, line: 0 }))
    }

    /// Pinned, nothing nested, nothing diverged: the fast path applies (kept in `fast`,
    /// refreshed by every path that can change them: [`step_general`](Self::step_general)
    /// and [`finish_call`](Self::finish_call)).
    #[inline(always)]
    fn quick(&self) -> bool {
        debug_assert_eq!(self.fast, self.quick_now());
        self.fast
    }

    fn quick_now(&self) -> bool {
        self.mode == Mode::Pinned && !self.nested && self.alias.is_empty()
    }

    /// The fast path's O/M `malloc(size) = addr`.
    #[inline(always)]
    fn quick_malloc(&mut self, size: u64, addr: Addr) -> Step {
        let small = self.model.is_small(size);
        let result = self.model.malloc(size as usize);
        if matches!(result, Ok(g) if g == addr) && self.model_quiet() {
            return Step::Call {
                expected: addr,
                got: addr,
                small,
                matched: true,
                arena_events: 0,
            };
        }
        self.finish_call(Op::Malloc(size), addr, small, result)
    }

    /// The fast path's O/M `free(addr)`.
    #[inline(always)]
    fn quick_free(&mut self, addr: Addr) -> Step {
        match self.model.free(addr) {
            Ok(()) if self.model_quiet() => Step::Call {
                expected: Addr::NULL,
                got: Addr::NULL,
                small: false,
                matched: true,
                arena_events: 0,
            },
            r => {
                let r = r.map(|()| Addr::NULL);
                self.finish_call(Op::Free(addr), Addr::NULL, false, r)
            }
        }
    }

    /// Every event the fast path does not take.
    #[inline(never)]
    fn step_general(&mut self, ev: &Event) -> Step {
        let step = self.step_slow(ev);
        self.fast = self.quick_now();
        step
    }

    fn step_slow(&mut self, ev: &Event) -> Step {
        let (op, expected, small): (Op, Addr, bool) = match ev.kind {
            EventKind::Malloc { domain, size, addr } if is_om(domain) => {
                (Op::Malloc(size), addr, self.model.is_small(size))
            }
            EventKind::Calloc {
                domain,
                nelem,
                elsize,
                addr,
            } if is_om(domain) => (
                Op::Calloc(nelem, elsize),
                addr,
                nelem
                    .checked_mul(elsize)
                    .is_some_and(|n| self.model.is_small(n)),
            ),
            EventKind::Realloc {
                domain,
                old,
                size,
                new,
            } if is_om(domain) => (Op::Realloc(old, size), new, self.model.is_small(size)),
            EventKind::Free { domain, addr } if is_om(domain) => {
                (Op::Free(addr), Addr::NULL, false)
            }
            other => {
                self.context(other);
                return Step::Context;
            }
        };
        let quick = self.quick_now();
        let result = match op {
            Op::Malloc(n) => self.model.malloc(n as usize),
            Op::Calloc(n, e) => self.model.calloc(n as usize, e as usize),
            Op::Realloc(old, n) => {
                let m = self.to_model(old);
                let r = self.model.realloc(m, n as usize);
                if r.is_ok() && !self.alias.is_empty() {
                    self.alias.remove(&old.0);
                }
                r
            }
            Op::Free(a) => {
                let m = self.to_model(a);
                let r = self.model.free(m).map(|()| Addr::NULL);
                if r.is_ok() && !self.alias.is_empty() {
                    self.alias.remove(&a.0);
                }
                r
            }
        };
        if let Ok(g) = result {
            if quick && g == expected {
                // Nothing nested, nothing diverged.
                if self.model_quiet() {
                    return Step::Call {
                        expected,
                        got: g,
                        small,
                        matched: true,
                        arena_events: 0,
                    };
                }
            }
        }
        self.finish_call(op, expected, small, result)
    }

    /// True when the model mapped and unmapped no arena in the call just replayed.
    #[inline(always)]
    fn model_quiet(&self) -> bool {
        let src = self.model.source();
        src.mapped.is_empty() && src.unmapped.is_empty()
    }

    /// The rest of [`step`](Self::step) when the call had nested lines, diverged or failed.
    #[inline(never)]
    fn finish_call(
        &mut self,
        op: Op,
        expected: Addr,
        small: bool,
        result: Result<Addr, AllocError>,
    ) -> Step {
        let step = self.finish_slow(op, expected, small, result);
        self.fast = self.quick_now();
        step
    }

    fn finish_slow(
        &mut self,
        op: Op,
        expected: Addr,
        small: bool,
        result: Result<Addr, AllocError>,
    ) -> Step {
        let got = match result {
            Ok(g) => g,
            Err(e) => {
                let why = self.call_mismatch().unwrap_or_default();
                self.clear_call();
                return match e {
                    AllocError::Corrupt { .. } | AllocError::OutOfAddressSpace { .. } => {
                        self.why = Some(format!("{e}; {why}"));
                        Step::Call {
                            expected,
                            got: Addr::NULL,
                            small,
                            matched: false,
                            arena_events: 0,
                        }
                    }
                    _ => {
                        self.error = Some((e, why));
                        Step::Refused
                    }
                };
            }
        };
        self.pair_arenas();
        let got_t = self.recorded_terms(got);
        if got_t != expected || got != expected {
            // Later frees and reallocs name the recorded address: send them to the model's.
            if !expected.is_null() {
                self.alias.insert(expected.0, got.0);
            }
        } else if !self.alias.is_empty() && !expected.is_null() {
            self.alias.remove(&expected.0);
        }
        let arena_events =
            (self.model.source().mapped.len() + self.model.source().unmapped.len()) as u32;
        let mut why = self.call_mismatch();
        let mut matched = why.is_none();
        // Own mode: fall-through addresses are the bump allocator's; it is enough that the
        // recording's is outside every arena too.
        let fell_through = self.mode == Mode::Own
            && got_t == got
            && !self
                .arena_pairs
                .iter()
                .any(|&(_, t)| expected.0 >= t && expected.0 - t < self.arena_size);
        if got_t != expected && !matches!(op, Op::Free(_)) && !fell_through {
            matched = false;
            let mut w = format!(
                "model {}; the recorded address: {}",
                self.model.explain(got),
                self.explain_recorded(expected)
            );
            if let Some(more) = why.take() {
                w = format!("{w}; {more}");
            }
            why = Some(w);
        }
        self.clear_call();
        self.why = why;
        Step::Call {
            expected,
            got: got_t,
            small,
            matched,
            arena_events: if matched { arena_events } else { 0 },
        }
    }

    fn explain_recorded(&mut self, expected: Addr) -> String {
        let m = match self.mode {
            Mode::Pinned => expected,
            Mode::Own => {
                let pool = self.model.params().pool_size();
                match self
                    .arena_pairs
                    .iter()
                    .find(|(_, t)| expected.0 >= *t && expected.0 - *t < self.arena_size)
                {
                    Some(&(m, t)) => {
                        let (mf, tf) = (Addr(m).align_up(pool).0, Addr(t).align_up(pool).0);
                        Addr((mf + expected.0).wrapping_sub(tf))
                    }
                    None => return format!("{expected} is in no arena the model has"),
                }
            }
        };
        self.model.explain(m)
    }

    /// Buffers a raw, arena or data-stack line for the next O/M call.
    #[inline(never)]
    fn context(&mut self, kind: EventKind) {
        let pinned = self.mode == Mode::Pinned;
        if matches!(
            kind,
            EventKind::ArenaAlloc { .. }
                | EventKind::ArenaFree { .. }
                | EventKind::Malloc {
                    domain: Domain::RawNested,
                    ..
                }
                | EventKind::Calloc {
                    domain: Domain::RawNested,
                    ..
                }
                | EventKind::Realloc {
                    domain: Domain::RawNested,
                    ..
                }
        ) {
            self.nested = true;
        }
        let raw = self.model.lower_mut();
        match kind {
            EventKind::Malloc {
                domain: Domain::RawNested,
                size,
                addr,
            } if pinned => raw.pending.push_back(RawCall::Malloc { size, addr }),
            EventKind::Calloc {
                domain: Domain::RawNested,
                nelem,
                elsize,
                addr,
            } if pinned => raw.pending.push_back(RawCall::Calloc {
                nelem,
                elsize,
                addr,
            }),
            EventKind::Realloc {
                domain: Domain::RawNested,
                old,
                size,
                new,
            } if pinned => raw.pending.push_back(RawCall::Realloc {
                old,
                size,
                addr: new,
            }),
            EventKind::Malloc {
                domain: Domain::Raw,
                size,
                addr,
            } if pinned => raw.adopt(addr, size),
            EventKind::Calloc {
                domain: Domain::Raw,
                nelem,
                elsize,
                addr,
            } if pinned => raw.adopt(addr, nelem.saturating_mul(elsize)),
            EventKind::Realloc {
                domain: Domain::Raw,
                old,
                size,
                new,
            } if pinned && !new.is_null() => {
                raw.release(old);
                raw.adopt(new, size);
            }
            EventKind::Free {
                domain: Domain::Raw,
                addr,
            } if pinned => raw.release(addr),
            EventKind::ArenaAlloc { addr, .. } => {
                self.expected_maps.push(addr);
                self.model.source_mut().pending.push_back(addr);
            }
            EventKind::ArenaFree { addr, .. } => self.expected_unmaps.push(addr),
            _ => {}
        }
    }

    /// Compares the arena maps/unmaps and raw calls of the call just replayed with the
    /// recording's nested lines; `Some(why)` when they differ.
    fn call_mismatch(&mut self) -> Option<String> {
        if self.call_was_plain() {
            return None;
        }
        let mut why = Vec::new();
        let src = self.model.source();
        let mapped: Vec<Addr> = src.mapped.iter().map(|&(m, t)| t.unwrap_or(m)).collect();
        if self.mode == Mode::Pinned && mapped != self.expected_maps {
            why.push(format!(
                "arenas mapped: model {:?}, recording {:?}",
                mapped, self.expected_maps
            ));
        }
        if self.mode == Mode::Own && src.mapped.len() != self.expected_maps.len() {
            why.push(format!(
                "arenas mapped: model {}, recording {}",
                src.mapped.len(),
                self.expected_maps.len()
            ));
        }
        let unmapped: Vec<Addr> = src
            .unmapped
            .iter()
            .map(|&m| {
                self.arena_pairs
                    .iter()
                    .find(|p| p.0 == m.0)
                    .map_or(m, |p| Addr(p.1))
            })
            .collect();
        if unmapped != self.expected_unmaps {
            why.push(format!(
                "arenas unmapped: model {:?}, recording {:?}",
                unmapped, self.expected_unmaps
            ));
        }
        if !self.model.lower().pending.is_empty() {
            why.push(format!(
                "raw calls recorded but not made by the model: {:?}",
                self.model.lower().pending
            ));
        }
        if !self.model.source().pending.is_empty() {
            why.push("an arena recorded but not mapped by the model".into());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// True when neither the recording nor the model had anything nested in this call
    /// (the common case: no raw call, no arena map or unmap).
    #[inline(always)]
    fn call_was_plain(&self) -> bool {
        let src = self.model.source();
        src.mapped.is_empty()
            && src.unmapped.is_empty()
            && src.pending.is_empty()
            && self.model.lower().pending.is_empty()
            && self.expected_maps.is_empty()
            && self.expected_unmaps.is_empty()
    }

    #[inline]
    fn clear_call(&mut self) {
        self.nested = false;
        if self.call_was_plain() {
            return;
        }
        let src = self.model.source_mut();
        let mapped = std::mem::take(&mut src.mapped);
        let unmapped = std::mem::take(&mut src.unmapped);
        src.pending.clear();
        drop(mapped);
        if self.mode == Mode::Own {
            self.arena_pairs
                .retain(|p| !unmapped.iter().any(|u| u.0 == p.0));
        }
        self.model.lower_mut().pending.clear();
        self.expected_maps.clear();
        self.expected_unmaps.clear();
    }
}

#[derive(Clone, Copy)]
enum Op {
    Malloc(u64),
    Calloc(u64, u64),
    Realloc(Addr, u64),
    Free(Addr),
}

#[inline(always)]
fn is_om(d: Domain) -> bool {
    matches!(d, Domain::Obj | Domain::Mem)
}

/// Chooses the preset and mode: `--model` (`cpython-3.11`, `3.11+own` …) or the trace
/// header's `interpreter:` line.
///
/// # Errors
/// `UnknownModel` for a name no preset answers to.
pub fn model_for(
    opts: &CheckOptions,
    header: &TraceHeader,
) -> Result<(PymallocParams, Mode), CheckError> {
    let unknown = |m: &str| CheckError::UnknownModel {
        model: m.to_string(),
        format: crate::trace::Format::Pymalloc3,
        known: PymallocParams::presets()
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
            + " (add +own for the model's own addresses)",
    };
    let name = match &opts.model {
        Some(m) => m.clone(),
        // The whole line: the release and who built it pick the preset (for_release).
        None => match header.get("interpreter") {
            Some(line) if line.contains("CPython") => line.to_string(),
            _ => "3.11".to_string(),
        },
    };
    let (base, mode) = match name.strip_suffix("+own") {
        Some(b) => (b, Mode::Own),
        None => (name.as_str(), Mode::Pinned),
    };
    let params = PymallocParams::by_name(base).ok_or_else(|| unknown(&name))?;
    Ok((params, mode))
}

/// Replays every event of `reader` through `rp`, comparing; stops at the first
/// divergence unless `keep_going`. `on_event(index, &event, &replayer)` runs after each
/// event and may stop the replay by returning false (used by `pyalloc stats --at`).
///
/// # Errors
/// A trace that cannot be read; a model error (free of a non-live address …) unless
/// `keep_going`, which counts it as a divergence.
pub fn replay<R: EventReader + ?Sized>(
    reader: &mut R,
    rp: &mut Replayer,
    keep_going: bool,
    mut on_event: impl FnMut(u64, &Event, &Replayer) -> bool,
) -> Result<CheckReport, CheckError> {
    let mut report = CheckReport::default();
    while let Some(ev) = reader.next_event()? {
        let index = report.events;
        report.events += 1;
        match rp.step(&ev) {
            Step::Context => {}
            Step::Call {
                expected,
                got,
                small,
                matched,
                arena_events,
            } => {
                report.arena_events += arena_events as u64;
                if small {
                    report.checked += 1;
                }
                if matched {
                    if small {
                        report.matched += 1;
                    }
                } else {
                    let why = rp.take_why().unwrap_or_default();
                    diverge(&mut report, index, ev.line, expected, got, why);
                    if !keep_going {
                        return Ok(report);
                    }
                }
            }
            Step::Refused => {
                let (e, why) = rp.take_error().unwrap_or((
                    AllocError::Corrupt {
                        message: "refused",
                        addr: Addr::NULL,
                        model: "pymalloc",
                    },
                    String::new(),
                ));
                if !keep_going {
                    return Err(CheckError::Model {
                        event: index,
                        line: ev.line,
                        source: e,
                    });
                }
                diverge(
                    &mut report,
                    index,
                    ev.line,
                    Addr::NULL,
                    Addr::NULL,
                    format!("{e}; {why}"),
                );
            }
        }
        if !on_event(index, &ev, rp) {
            break;
        }
    }
    Ok(report)
}

fn diverge(r: &mut CheckReport, event: u64, line: u64, expected: Addr, got: Addr, why: String) {
    r.diverge(event, line, expected.0, got.0, why);
}

/// Replays an opened CPython 3 trace through its model and compares every address.
///
/// # Errors
/// See [`CheckError`].
pub fn check(mut reader: Pymalloc3Reader, opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let name = reader.path().display().to_string();
    check_events(&mut reader, opts, &name)
}

/// [`check`] of an already opened event stream (a binary trace of a CPython 3 recording).
///
/// # Errors
/// See [`CheckError`].
pub fn check_reader(
    mut reader: Box<dyn EventReader>,
    opts: &CheckOptions,
) -> Result<CheckReport, CheckError> {
    check_events(&mut *reader, opts, "replaying")
}

fn check_events<R: EventReader + ?Sized>(
    reader: &mut R,
    opts: &CheckOptions,
    name: &str,
) -> Result<CheckReport, CheckError> {
    let (params, mode) = model_for(opts, reader.header())?;
    let mut rp = Replayer::new(params, mode, &Platform::linux_x86_64());
    let bar = Progress::new(opts.progress, name);
    let report = replay(reader, &mut rp, opts.keep_going, |i, _, _| {
        bar.tick(i);
        true
    });
    bar.finish();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "# pymalloc allocation trace recorded from REAL CPython\n# interpreter: CPython 3.11.7 (main)\n";

    fn run(body: &str, keep_going: bool) -> Result<CheckReport, CheckError> {
        let mut r = Pymalloc3Reader::from_text("t", &format!("{HEAD}{body}")).unwrap();
        let (p, mode) = model_for(&CheckOptions::default(), r.header()).unwrap();
        let mut rp = Replayer::new(p, mode, &Platform::linux_x86_64());
        replay(&mut r, &mut rp, keep_going, |_, _, _| true)
    }

    /// The event index and the model's error that stop the check of `body` (without
    /// keep-going); panics when the check ends any other way.
    fn refused(body: &str) -> (u64, AllocError) {
        match run(body, false) {
            Err(CheckError::Model { event, source, .. }) => (event, source),
            other => panic!("expected a model error, got {other:?}"),
        }
    }

    const START: &str = "r r 0 768 55555555c530\nA 1048576 7fff77500000\n\
                         c r 1 262144 7ffff769d010\nc r 1 131072 7ffff767c010\n";

    #[test]
    fn a_consistent_trace_matches() {
        let r = run(
            &format!("{START}m O 56 7fff77500030\nm O 56 7fff77500070\nf O 7fff77500030\nm M 60 7fff77500030\nm r 600 555555560000\nm O 600 555555560000\nf r 555555560000\nf O 555555560000\n"),
            false,
        )
        .unwrap();
        assert_eq!((r.checked, r.matched), (3, 3));
        assert!(r.ok());
        assert_eq!(r.arena_events, 1);
    }

    #[test]
    fn a_wrong_address_is_a_divergence_naming_pool_and_free_list() {
        let r = run(
            &format!("{START}m O 56 7fff77500030\nm O 56 7fff775000b0\nm O 56 7fff775000f0\n"),
            true,
        )
        .unwrap();
        let d = r.first_divergence.clone().unwrap();
        assert_eq!(d.event, 5);
        assert_eq!(d.expected, "0x7fff775000b0");
        assert_eq!(d.got, "0x7fff77500070");
        assert!(
            d.why.contains("pool 0x7fff77500000") && d.why.contains("free-list head"),
            "{}",
            d.why
        );
        assert_eq!((r.checked, r.matched), (3, 1));
        assert_eq!(r.divergences, 1, "keep-going counts the next one too");
    }

    #[test]
    fn a_missing_arena_line_is_a_divergence_not_a_panic() {
        let r = run("m O 56 7fff77500030\n", false).unwrap();
        assert!(!r.ok());
        assert!(r.first_divergence.unwrap().why.contains("raw call"));
    }

    #[test]
    fn double_free_and_unknown_free_are_errors_with_the_event() {
        let (event, e) = refused(&format!(
            "{START}m O 56 7fff77500030\nm O 56 7fff77500070\nf O 7fff77500030\nf O 7fff77500030\n"
        ));
        assert_eq!(event, 7);
        assert!(matches!(e, AllocError::DoubleFree { .. }), "{e}");
        let (_, e) = refused(&format!("{START}m O 56 7fff77500030\nf O 7fff77580030\n"));
        assert!(matches!(e, AllocError::NotLive { .. }), "{e}");
        let (_, e) = refused(&format!("{START}m O 56 7fff77500030\nf O 12345678\n"));
        assert!(matches!(e, AllocError::NotLive { .. }), "{e}");
        let (_, e) = refused(&format!(
            "{START}m O 56 7fff77500030\nf O 7fff77500030\nr O 7fff77500030 40 7fff77500030\n"
        ));
        assert!(matches!(e, AllocError::DoubleFree { .. }), "{e}");
        let r = run(&format!("{START}m O 56 7fff77500030\nf O 7fff77500030\nf O 7fff77500030\nm O 56 7fff77500030\n"), true)
            .unwrap();
        assert_eq!(r.events, 8, "keep-going reads on past a model error");
        assert!(!r.ok());
    }
}

/// Which point of a trace `pyalloc stats` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsAt {
    /// Right after the event with this 0-based index.
    Event(u64),
    /// Right after the first top-level O/M request of exactly this many bytes.
    Marker(u64),
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
) -> Result<(u64, String), CheckError> {
    let mut reader = Pymalloc3Reader::open(path)?;
    let (params, mode) = model_for(opts, reader.header())?;
    let mut rp = Replayer::new(params, mode, &Platform::linux_x86_64());
    let mut reached = None;
    // Own mode (`+own`) places arenas and fall-throughs itself, so its addresses differ
    // from the recording's by design (the kernel put ints.py's first arena on a 1 MiB
    // boundary, 64 pools, where the model's own mmap gives a page-aligned one of 63): it
    // replays on past them (later frees follow the model's blocks) and shows the model's
    // own state. Pinned mode must match every address up to the point.
    let own = mode == Mode::Own;
    let report = replay(&mut reader, &mut rp, own, |i, ev, _| {
        let hit = match at {
            StatsAt::Event(n) => i == n,
            StatsAt::Marker(size) => request_size(&ev.kind) == Some(size),
        };
        if hit {
            reached = Some(i);
        }
        !hit
    })?;
    if let Some(d) = report.first_divergence.as_ref().filter(|_| !own) {
        return Err(CheckError::Unsupported(format!(
            "{}: the model diverged from the recording at event {} (line {}) before the point asked for: {}",
            path.display(),
            d.event,
            d.line,
            d.why
        )));
    }
    let i = reached.ok_or_else(|| {
        let what = match at {
            StatsAt::Event(n) => format!("no event {n}"),
            StatsAt::Marker(s) => format!("no top-level O/M request of {s} bytes"),
        };
        CheckError::Unsupported(format!(
            "{}: {what} among its {} events",
            path.display(),
            report.events
        ))
    })?;
    Ok((i, rp.model().debug_malloc_stats().render()))
}

/// The request size of a top-level O/M call (`m`, `c`: nelem * elsize, `r`).
pub fn request_size(kind: &EventKind) -> Option<u64> {
    match *kind {
        EventKind::Malloc { domain, size, .. } if is_om(domain) => Some(size),
        EventKind::Calloc {
            domain,
            nelem,
            elsize,
            ..
        } if is_om(domain) => nelem.checked_mul(elsize),
        EventKind::Realloc { domain, size, .. } if is_om(domain) => Some(size),
        _ => None,
    }
}
