//! The pymalloc replay engine: a CPython 3 recording's O/M calls through pymalloc, with
//! the arenas and raw calls nested in each call pinned from the recording (or, `+own`,
//! the model's own), one event at a time.
//!
//! ```text
//!  trace (post-order)            Replayer                        model
//!  r r 0 768 55555555c530   ->  PinnedRaw::expect    --.
//!  A 1048576 7fff77500000   ->  PinnedArenas::push   --+-> consumed by the next O/M call
//!  c r 1 262144 7ffff769d010 -> PinnedRaw::expect    --'
//!  m O 56 7fff77500030      ->  Pymalloc::malloc(56) = 0x7fff77500030 ?= recorded
//!  F 7fff769cf000 1048576   ->  expected unmaps    --> compared with the model's unmaps
//!  f O 7fff769d0030         ->  Pymalloc::free
//! ```
//!
//! Two modes ([`Addresses`]). **Pinned** (default): arena bases come from the `A` lines and
//! fall-through addresses (requests of 0 or more than 512 bytes, the `arenas` vector,
//! radix-tree nodes) from the nested `r` lines — and the model must make exactly those raw
//! calls, in order. **Own** (`cpython-3.11+own`): arenas come from the model's own address
//! space (top-down mmap of the platform preset) and fall-throughs from a bump allocator; a
//! small address matches when it sits at the same offset of the corresponding arena (the
//! one mapped at the same event). Invariant: after each O/M call the nested queues are
//! empty (the model made every raw call and arena map the recording shows, and no other).
//! [`Replayer::step`] tells what an event amounted to; what counts as a divergence and what
//! is reported is the caller's (check/pymalloc3, `replay`, `stats`).

use super::model::Addresses;
use super::pinned::{PinnedArenas, PinnedRaw, RawCall};
pub use super::Step;
use super::{om_call, Op};
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::platform::Platform;
use crate::pymalloc::{Pymalloc, PymallocParams};
use crate::sysmalloc::Bump;
use crate::trace::packed::{codes, Packed, PackedEvents};
use crate::trace::{Domain, Event, EventKind};
use std::collections::HashMap;

/// The model a replay drives: pymalloc over the pinned (or own) raw allocator and arenas.
pub type ReplayModel = Pymalloc<PinnedRaw, PinnedArenas>;

/// Replays a pymalloc3 event stream through a [`ReplayModel`], one event at a time.
pub struct Replayer {
    model: ReplayModel,                  // the model
    mode: Addresses,                     // pinned or own
    alias: HashMap<u64, u64>,            // recorded address -> model address, where they differ
    arena_pairs: Vec<(u64, u64)>,        // own mode: (model base, recorded base) of live arenas
    expected_unmaps: Vec<Addr>,          // `F` lines of the call being assembled
    expected_maps: Vec<Addr>,            // `A` lines of the call being assembled
    arena_size: u64,                     // ARENA_SIZE
    nested: bool,                        // something is buffered for the next O/M call
    quick: bool,                         // pinned, !nested, alias empty: the fast path applies
    why: Option<String>,                 // why the last call did not match
    error: Option<(AllocError, String)>, // what the model refused in the last call, and why
}

impl Replayer {
    /// A replayer for era `params` in `mode` (own mode uses `platform`'s address space).
    pub fn new(params: PymallocParams, mode: Addresses, platform: &Platform) -> Replayer {
        let arena_size = params.arena_size();
        let model = match mode {
            Addresses::Pinned => Pymalloc::new(params, PinnedRaw::sequence(), PinnedArenas::new()),
            Addresses::Own => Pymalloc::new(
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
            quick: mode == Addresses::Pinned,
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
        if self.mode == Addresses::Pinned {
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
        if self.mode == Addresses::Own {
            for &(m, t) in self.model.source().mapped() {
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
        let Some((op, expected)) = om_call(&ev.kind) else {
            self.context(ev.kind);
            return Step::Context;
        };
        // The common case, decided once: pinned, nothing nested, nothing diverged, and the
        // model returned the recorded address without mapping or unmapping an arena.
        let quick = self.quick;
        let small = match op {
            Op::Malloc(n) | Op::Realloc(_, n) => self.model.is_small(n),
            Op::Calloc(n, e) => n.checked_mul(e).is_some_and(|b| self.model.is_small(b)),
            Op::Free(_) => false,
        };
        let result = match op {
            Op::Malloc(n) => self.model.malloc(n as usize),
            Op::Calloc(n, e) => self.model.calloc(n as usize, e as usize),
            Op::Realloc(old, n) => {
                let m = self.to_model(old);
                let r = self.model.realloc(m, n as usize);
                if r.is_ok() && !self.alias.is_empty() {
                    self.alias.remove(&old.0);
                    self.set_quick();
                }
                r
            }
            Op::Free(a) => {
                let m = self.to_model(a);
                let r = self.model.free(m).map(|()| Addr::NULL);
                if r.is_ok() && !self.alias.is_empty() {
                    self.alias.remove(&a.0);
                    self.set_quick();
                }
                r
            }
        };
        if quick && matches!(result, Ok(a) if a == expected) && self.model.source().is_quiet() {
            return Step::Call {
                expected,
                got: expected,
                checked: small,
                matched: true,
                os_events: 0,
            };
        }
        self.finish_call(op, expected, small, result)
    }

    /// Replays event `i` of pre-decoded `events` (the same [`Step`] as
    /// [`step`](Self::step) of that event); `None` when there is no event `i`. The common
    /// pinned O/M malloc and free are read straight from the 16-byte record.
    #[inline]
    pub fn step_at(&mut self, events: &PackedEvents, i: usize) -> Option<Step> {
        let p = events.records().get(i)?;
        match self.fast_at(p) {
            Fast::Quiet { expected, small } => Some(Step::Call {
                expected,
                got: expected,
                checked: small,
                matched: true,
                os_events: 0,
            }),
            Fast::Done(step) => Some(step),
            Fast::General => {
                let kind = events.kind(p)?;
                Some(self.step(&Event { kind, line: 0 }))
            }
        }
    }

    /// Replays events `range` of pre-decoded `events`, as [`step_at`](Self::step_at) of
    /// each in turn, in one loop: every call that matched quietly (the model returned the
    /// recorded address, with nothing nested) is only counted; every other event's
    /// [`Step`] goes to `on_step` with its index. Stops early when `on_step` answers
    /// [`Flow::Stop`](super::Flow::Stop).
    #[inline]
    pub fn run_at(
        &mut self,
        events: &PackedEvents,
        range: std::ops::Range<usize>,
        mut on_step: impl FnMut(usize, Step) -> super::Flow,
    ) -> QuietCalls {
        let mut checked = 0;
        let mut others = 0; // events that were not quiet calls
        let records = events.records();
        let end = range.end.min(records.len());
        let mut done = range.start..end; // the events replayed
        for i in range.start..end {
            let p = &records[i];
            let step = match self.fast_at(p) {
                Fast::Quiet { small, .. } => {
                    checked += small as u64;
                    continue;
                }
                Fast::Done(step) => step,
                Fast::General => match events.kind(p) {
                    Some(kind) => self.step(&Event { kind, line: 0 }),
                    None => {
                        others += 1;
                        continue;
                    }
                },
            };
            others += 1;
            if matches!(on_step(i, step), super::Flow::Stop) {
                done.end = i + 1;
                break;
            }
        }
        QuietCalls {
            calls: done.len() as u64 - others,
            checked,
        }
    }

    /// The fast path of one record: a pinned O/M malloc or free with nothing nested and
    /// nothing diverged, run here; anything else is left to [`step`](Self::step).
    #[inline(always)]
    fn fast_at(&mut self, p: &Packed) -> Fast {
        if !self.quick {
            return Fast::General;
        }
        match p.code() {
            codes::MALLOC_OBJ | codes::MALLOC_MEM => {
                let (size, addr) = (p.body(), p.addr());
                let small = self.model.is_small(size);
                match self.model.malloc(size as usize) {
                    // No arena is mapped nor unmapped here: nothing nested means no `A` line
                    // queued, so a map would have failed the call, and a malloc unmaps
                    // nothing.
                    Ok(a) if a == addr => {
                        debug_assert!(self.model.source().is_quiet());
                        Fast::Quiet {
                            expected: addr,
                            small,
                        }
                    }
                    result => Fast::Done(self.finish_call(Op::Malloc(size), addr, small, result)),
                }
            }
            codes::FREE_OBJ | codes::FREE_MEM => {
                let addr = p.addr();
                match self.model.free(addr) {
                    Ok(()) if self.model.source().is_quiet() => Fast::Quiet {
                        expected: Addr::NULL,
                        small: false,
                    },
                    result => Fast::Done(self.finish_call(
                        Op::Free(addr),
                        Addr::NULL,
                        false,
                        result.map(|()| Addr::NULL),
                    )),
                }
            }
            _ => Fast::General,
        }
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
        let got = match result {
            Ok(g) => g,
            Err(e) => {
                let why = self.call_mismatch().unwrap_or_default();
                self.clear_call();
                self.set_quick();
                return match e {
                    AllocError::Corrupt { .. } | AllocError::OutOfAddressSpace { .. } => {
                        self.why = Some(if why.is_empty() {
                            e.to_string()
                        } else {
                            format!("{e}; {why}")
                        });
                        Step::Call {
                            expected,
                            got: Addr::NULL,
                            checked: small,
                            matched: false,
                            os_events: 0,
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
            (self.model.source().mapped().len() + self.model.source().unmapped().len()) as u32;
        let mut why = self.call_mismatch();
        let mut matched = why.is_none();
        // Own mode: fall-through addresses are the bump allocator's; it is enough that the
        // recording's is outside every arena too.
        let fell_through = self.mode == Addresses::Own
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
        self.set_quick();
        self.why = why;
        Step::Call {
            expected,
            got: got_t,
            checked: small,
            matched,
            os_events: if matched { arena_events } else { 0 },
        }
    }

    fn explain_recorded(&mut self, expected: Addr) -> String {
        let m = match self.mode {
            Addresses::Pinned => expected,
            Addresses::Own => {
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
        let pinned = self.mode == Addresses::Pinned;
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
            self.quick = false;
        }
        let raw = self.model.lower_mut();
        match kind {
            EventKind::Malloc {
                domain: Domain::RawNested,
                size,
                addr,
            } if pinned => raw.expect(RawCall::Malloc { size, addr }),
            EventKind::Calloc {
                domain: Domain::RawNested,
                nelem,
                elsize,
                addr,
            } if pinned => raw.expect(RawCall::Calloc {
                nelem,
                elsize,
                addr,
            }),
            EventKind::Realloc {
                domain: Domain::RawNested,
                old,
                size,
                new,
            } if pinned => raw.expect(RawCall::Realloc {
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
            } if pinned => {
                raw.release(addr);
            }
            EventKind::ArenaAlloc { addr, .. } => {
                self.expected_maps.push(addr);
                self.model.source_mut().push(addr);
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
        let list = Addr::list;
        let src = self.model.source();
        let mapped: Vec<Addr> = src.mapped().iter().map(|&(m, t)| t.unwrap_or(m)).collect();
        if self.mode == Addresses::Pinned && mapped != self.expected_maps {
            why.push(format!(
                "arenas mapped in this call: by the model {}, by CPython {}",
                list(&mapped),
                list(&self.expected_maps)
            ));
        }
        if self.mode == Addresses::Own && src.mapped().len() != self.expected_maps.len() {
            why.push(format!(
                "arenas mapped: model {}, recording {}",
                src.mapped().len(),
                self.expected_maps.len()
            ));
        }
        let unmapped: Vec<Addr> = src
            .unmapped()
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
                "arenas unmapped in this call: by the model {}, by CPython {}",
                list(&unmapped),
                list(&self.expected_unmaps)
            ));
        }
        if !self.model.lower().is_settled() {
            let calls: Vec<String> = self
                .model
                .lower()
                .pending()
                .map(|c| c.to_string())
                .collect();
            why.push(format!(
                "CPython made raw calls here that the model did not: {}",
                calls.join(", ")
            ));
        }
        if self.model.source().has_pending() {
            why.push("an arena recorded but not mapped by the model".into());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Recomputes [`Replayer::quick`]: the fast path applies when the replay is pinned,
    /// nothing is buffered for the next call and no address has diverged.
    #[inline]
    fn set_quick(&mut self) {
        self.quick = self.mode == Addresses::Pinned && !self.nested && self.alias.is_empty();
    }

    /// True when neither the recording nor the model had anything nested in this call
    /// (the common case: no raw call, no arena map or unmap).
    #[inline(always)]
    fn call_was_plain(&self) -> bool {
        let src = self.model.source();
        src.is_quiet()
            && !src.has_pending()
            && self.model.lower().is_settled()
            && self.expected_maps.is_empty()
            && self.expected_unmaps.is_empty()
    }

    #[inline]
    fn clear_call(&mut self) {
        self.nested = false;
        if self.call_was_plain() {
            return;
        }
        let unmapped = self.model.source_mut().end_call();
        if self.mode == Addresses::Own {
            self.arena_pairs
                .retain(|p| !unmapped.iter().any(|u| u.0 == p.0));
        }
        self.model.lower_mut().end_call();
        self.expected_maps.clear();
        self.expected_unmaps.clear();
    }
}

/// The calls [`Replayer::run_at`] only counted: each matched the recording quietly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuietCalls {
    /// O/M calls that returned the recorded address with nothing nested.
    pub calls: u64,
    /// Of them, requests of 1..=threshold bytes (`Step::Call::checked`).
    pub checked: u64,
}

/// What [`Replayer::fast_at`] made of a record.
enum Fast {
    Quiet { expected: Addr, small: bool }, // a call that matched quietly
    Done(Step),                            // a call on the fast path that did not
    General,                               // not for the fast path: `step` it
}

/// The request size of a top-level O/M call (`m`, `c`: nelem * elsize, `r`).
pub fn request_size(kind: &EventKind) -> Option<u64> {
    match *kind {
        EventKind::Malloc { domain, size, .. } if domain.is_om() => Some(size),
        EventKind::Calloc {
            domain,
            nelem,
            elsize,
            ..
        } if domain.is_om() => nelem.checked_mul(elsize),
        EventKind::Realloc { domain, size, .. } if domain.is_om() => Some(size),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Flow;
    use crate::trace::open::open;
    use std::path::Path;

    const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/traces");

    /// `run_at` reports every step `step_at` gives, except the calls that matched quietly,
    /// which it counts; and stops where its consumer says so.
    #[test]
    fn run_at_is_step_at_without_the_quiet_calls() {
        for (rel, mode) in [
            (
                "cpython-3.11.7-linux-x86_64/seed_py3.trace.gz",
                Addresses::Pinned,
            ),
            (
                "cpython-3.11.7-linux-x86_64/ints.trace.gz",
                Addresses::Pinned,
            ),
            (
                "cpython-3.11.7-linux-x86_64/seed_py3.trace.gz",
                Addresses::Own,
            ),
        ] {
            let path = Path::new(TRACES).join(rel);
            let packed = PackedEvents::read(open(&path).unwrap().as_mut()).unwrap();
            let release = packed.header().get("interpreter").unwrap();
            let params = PymallocParams::for_release(release).unwrap();
            let platform = Platform::linux_x86_64();
            let mut a = Replayer::new(params.clone(), mode, &platform);
            let all: Vec<Step> = (0..packed.len())
                .map(|i| a.step_at(&packed, i).unwrap())
                .collect();
            let mut b = Replayer::new(params.clone(), mode, &platform);
            let mut got = Vec::new();
            let counted = b.run_at(&packed, 0..packed.len() + 5, |i, step| {
                got.push((i, step));
                Flow::Next
            });
            let mut reported = vec![false; packed.len()];
            for &(i, step) in &got {
                assert_eq!(step, all[i], "{rel} {mode:?} event {i}");
                reported[i] = true;
            }
            let mut quiet = QuietCalls::default();
            for (i, step) in all.iter().enumerate().filter(|(i, _)| !reported[*i]) {
                match *step {
                    Step::Call {
                        expected,
                        got,
                        checked,
                        matched: true,
                        os_events: 0,
                    } if got == expected => {
                        quiet.calls += 1;
                        quiet.checked += checked as u64;
                    }
                    other => panic!("{rel} {mode:?} event {i}: {other:?} not reported"),
                }
            }
            assert_eq!(counted, quiet, "{rel} {mode:?}");
            // Own mode never takes the fast path; pinned, most calls are quiet.
            match mode {
                Addresses::Own => assert_eq!(counted, QuietCalls::default(), "{rel}"),
                Addresses::Pinned => assert!(counted.calls > packed.len() as u64 / 2, "{rel}"),
            }

            let mut c = Replayer::new(params, mode, &platform);
            let mut seen = 0;
            c.run_at(&packed, 0..packed.len(), |_, _| {
                seen += 1;
                if seen == 3 {
                    Flow::Stop
                } else {
                    Flow::Next
                }
            });
            assert_eq!(seen, 3, "{rel}: stops when told");
        }
    }
}
