//! mimalloc replayed against a CPython 3.13 mimalloc recording: the engine under
//! `pyalloc check` and `pyalloc stats` of these recordings (check/mimalloc.rs holds the
//! comparison rules, report/stats.rs the statistics).
//!
//! ```text
//!  trace (post-order)                                   Replayer            model
//!  S 1073741824 31540000000 … 1 unix_mmap          ->  PinnedOs.pending --.
//!  S 4096 7ffff7fb8000 … 1 unix_mmap               ->  PinnedOs.pending --+-> asked for by the
//!  m O 64 315400100c0                              ->  mi_malloc(64) ?= 0x315400100c0   next call
//!  r M 0 777778 31540cc0000  (a stats size)        ->  mi_realloc, then collect_for_stats
//!  N 31540300000 65536 4 0 1 _mi_os_purge_ex      ->  Mimalloc::os_purge (pinned: the
//!                                                      purges are the recording's)
//!  G … / R, r, V, W lines                          ->  context, not modelled (libc,
//!                                                      CPython's data stack)
//! ```
//! The events come through the driver's loop like any trace's; the OS lines reach
//! [`Replayer::os_line`] from the reader's [`OsLines`](crate::trace::mimalloc::OsLines)
//! queue, each before the event that follows it ([`Replayer::step`] takes either kind of
//! line, for a replay of pre-decoded lines).
//!
//! Two modes. **Pinned** (default, `mimalloc-2.1.2`): the arena's base comes from the
//! mimalloc `S` lines nested in the call, and the model must make exactly those mappings
//! (counted as `os_events`). **Own** (`mimalloc-2.1.2+own`): the model maps at its own
//! hints; an address matches when it lies at the same offset from its arena's start as the
//! recorded one does from the recorded arena's (the arenas paired in order).
//! The stats markers: right after a top-level O/M request of one of the header's
//! `RECORDER_STATS_SIZES`, CPython's `_PyObject_DebugMallocStats` ran, which collects every
//! page's `local_free` in front of its `free`; the replay does the same there.
//! Invariant: after each O/M call no recorded mimalloc mapping is left unasked for.

use super::model::Addresses;
use super::Op;
use crate::addr::Addr;
use crate::error::AllocError;
use crate::mimalloc::arena::OsSource;
use crate::mimalloc::{MiStats, Mimalloc, OwnOs, PinnedOs};
use crate::trace::mimalloc::{Caller, MiLine, OsCall, OsLine};
use crate::trace::{Event, EventKind, TraceHeader};
use std::collections::HashMap;

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

pub use super::Step;

/// The model of a [`Replayer`], read-only, in the mode it runs in.
pub enum ModelRef<'a> {
    /// Pinned to the recording's mappings.
    Pinned(&'a Mimalloc<PinnedOs>),
    /// In its own address space (`+own`).
    Own(&'a Mimalloc<OwnOs>),
}

/// Replays a mimalloc recording line by line.
pub struct Replayer {
    model: Model,
    stats_sizes: Vec<u64>,           // RECORDER_STATS_SIZES
    stats_min: u64,                  // the smallest of them (u64::MAX: none)
    alias: HashMap<u64, u64>,        // recorded address -> model address, where they differ
    arena_pairs: Vec<(u64, u64)>,    // own mode: (model arena start, recorded arena start)
    recorded_maps: Vec<(u64, Addr)>, // own mode: mimalloc mmaps of the call being assembled
    why: Option<String>,             // why the last call did not match
    error: Option<AllocError>,       // what the model refused in the last call
    markers: Vec<(u64, MiStats)>,    // (line, numbers) at every stats marker
}

/// What an O/M free that the model took amounts to: a call, nothing to compare.
const FREED: Step = Step::Call {
    expected: Addr::NULL,
    got: Addr::NULL,
    checked: false,
    matched: true,
    os_events: 0,
};

/// The mimalloc call that serves O/M call `op` (CPython 3.13 points the OBJ and MEM domains
/// at `mi_malloc` …), its old or freed address taken through `to_model`: the request
/// size (none for a free) and the model's answer (NULL for a free).
pub(crate) fn mi_call<S: OsSource>(
    m: &mut Mimalloc<S>,
    op: Op,
    to_model: impl FnOnce(Addr) -> Addr,
) -> (Option<u64>, Result<Addr, AllocError>) {
    match op {
        Op::Malloc(size) => (Some(size), m.mi_malloc(size)),
        Op::Calloc(nelem, elsize) => (Some(nelem.wrapping_mul(elsize)), m.mi_calloc(nelem, elsize)),
        Op::Realloc(old, size) => (Some(size), m.mi_realloc(to_model(old), size)),
        Op::Free(addr) => (None, m.mi_free(to_model(addr)).map(|()| Addr::NULL)),
    }
}

impl Replayer {
    /// A replayer in `mode` for a recording whose header is `header`.
    pub fn new(mode: Addresses, header: &TraceHeader) -> Replayer {
        let stats_sizes = crate::trace::mimalloc::stats_sizes(header);
        Replayer {
            model: match mode {
                Addresses::Pinned => Model::Pinned(Mimalloc::pinned()),
                Addresses::Own => Model::Own(Mimalloc::default()),
            },
            stats_min: stats_sizes.iter().copied().min().unwrap_or(u64::MAX),
            stats_sizes,
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

    /// Bytes of pages the model holds written and not given back.
    pub fn resident_bytes(&self) -> u64 {
        with_model!(&self.model, m => m.resident_bytes())
    }

    /// Purges so far (madvise calls, resident bytes given back) and, pinned, the recorded
    /// purges of no range the model had scheduled.
    pub fn purges(&self) -> (u64, u64, u64) {
        with_model!(&self.model, m => {
            let (calls, bytes) = m.purges();
            (calls, bytes, m.unscheduled_purges())
        })
    }

    /// The model's footprint.
    pub fn footprint(&self) -> crate::alloc::Stats {
        use crate::alloc::Allocator;
        with_model!(&self.model, m => m.stats())
    }

    /// Also treats a top-level O/M request of `size` bytes as a stats marker.
    pub fn add_stats_size(&mut self, size: u64) {
        if !self.stats_sizes.contains(&size) {
            self.stats_sizes.push(size);
        }
        self.stats_min = self.stats_min.min(size);
    }

    /// What CPython 3.13's `_PyObject_DebugMallocStats` would print now (it collects every
    /// page's `local_free` first, as the real call does).
    pub fn debug_malloc_stats(&mut self) -> MiStats {
        with_model!(&mut self.model, m => m.debug_malloc_stats().0)
    }

    /// The model in its current state, read-only (a heap map, an explanation).
    pub fn model(&self) -> ModelRef<'_> {
        match &self.model {
            Model::Pinned(m) => ModelRef::Pinned(m),
            Model::Own(m) => ModelRef::Own(m),
        }
    }

    /// The model's address of the block recorded at `addr` (the same address when pinned
    /// and matched; own mode: the live block's model address, else the same offset in
    /// the paired model arena).
    pub fn model_addr(&self, addr: Addr) -> Addr {
        if let Some(&m) = self.alias.get(&addr.0) {
            return Addr(m);
        }
        for &(m, t) in &self.arena_pairs {
            let off = addr.0.wrapping_sub(t);
            if off < crate::mimalloc::arena::ARENA_RESERVE * 64 {
                return Addr(m + off);
            }
        }
        addr
    }

    /// What the model holds at `addr` (a recorded address), in its own terms.
    pub fn describe(&self, addr: Addr) -> String {
        with_model!(&self.model, m => m.describe(self.to_model(addr)))
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

    /// Replays one line, OS call or event. A call the model refuses is a `Call` that did
    /// not match, with the refusal in [`take_error`](Self::take_error).
    pub fn step(&mut self, line: &MiLine) -> Step {
        match *line {
            MiLine::Os(os) => {
                self.os_line(os);
                Step::Context
            }
            MiLine::Event(ev) => self.event(&ev),
        }
    }

    /// Takes one OS line: a mapping of mimalloc's, queued for the call it is nested in.
    pub fn os_line(&mut self, os: OsLine) {
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
            // a purge (`_mi_os_purge_ex`): its time is the recording's, so the pinned
            // model purges where and when the recording does
            (OsCall::Madvise { addr, size }, Model::Pinned(m)) => m.os_purge(addr, size),
            _ => {}
        }
    }

    /// Replays one event (an O/M call through the model; other events are context).
    #[inline(always)]
    pub fn event(&mut self, ev: &Event) -> Step {
        // The common case, dispatched once and kept small: a pinned O/M malloc served by
        // its page's free list, or a free, with no mapping queued, nothing diverged and no
        // marker. Everything else takes the general path (which does the same, in full).
        if let Model::Pinned(m) = &mut self.model {
            if self.alias.is_empty() && m.os().pending.is_empty() {
                match ev.kind {
                    EventKind::Malloc { domain, size, addr }
                        if domain.is_om() && size < self.stats_min =>
                    {
                        if let Some(got) = m.malloc_fast(size) {
                            if got == addr {
                                return Step::Call {
                                    expected: addr,
                                    got,
                                    checked: true,
                                    matched: true,
                                    os_events: 0,
                                };
                            }
                            return self.finish(ev, addr, Some(size), Ok(got));
                        }
                    }
                    EventKind::Free { domain, addr } if domain.is_om() => {
                        if m.free_fast(addr.0) {
                            return FREED;
                        }
                        let r = m.mi_free(addr);
                        if r.is_ok() && m.os().unexpected.is_empty() {
                            return FREED;
                        }
                        return self.finish(ev, Addr::NULL, None, r.map(|()| Addr::NULL));
                    }
                    _ => {}
                }
            }
        }
        self.event_general(ev)
    }

    /// [`event`](Self::event) in full: every kind, both modes, aliases, mappings, markers.
    #[inline(never)]
    fn event_general(&mut self, ev: &Event) -> Step {
        let Some((op, expected)) = super::om_call(&ev.kind) else {
            return Step::Context;
        };
        let alias = &self.alias;
        let to_model = |a: Addr| alias.get(&a.0).map_or(a, |&m| Addr(m));
        let (request, result) = with_model!(&mut self.model, m => mi_call(m, op, to_model));
        // the block a free or a realloc gave up is gone: so is its alias (a later block the
        // model places at that recorded address must not be taken for it)
        let gone = match op {
            Op::Free(addr) => Some(addr),
            Op::Realloc(old, _) if result.is_ok() => Some(old),
            _ => None,
        };
        if let Some(a) = gone.filter(|_| !self.alias.is_empty()) {
            self.alias.remove(&a.0);
        }
        self.finish(ev, expected, request, result)
    }

    /// The rest of a call once the model answered: mappings, comparison, marker.
    #[inline(never)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Domain;

    fn call(r: &mut Replayer, kind: EventKind) -> Step {
        r.event(&Event { kind, line: 0 })
    }

    fn got(s: Step) -> Addr {
        match s {
            Step::Call { got, .. } => got,
            s => panic!("not a call: {s:?}"),
        }
    }

    /// Own mode, after a divergence: a realloc that moves a block whose recorded address
    /// had an alias drops it, so a later block placed exactly at that recorded address is
    /// freed, not the block the realloc gave up (which would be a double free).
    #[test]
    fn a_realloc_drops_the_alias_of_the_block_it_gave_up() {
        let header = TraceHeader::default();
        let malloc = |addr| EventKind::Malloc {
            domain: Domain::Obj,
            size: 24,
            addr,
        };
        // where the model puts its first two 24-byte blocks
        let mut probe = Replayer::new(Addresses::Own, &header);
        let first = got(call(&mut probe, malloc(Addr(0x10))));
        let second = got(call(&mut probe, malloc(Addr(0x10))));
        assert_ne!(first, second);

        let mut r = Replayer::new(Addresses::Own, &header);
        // recorded at `second`, placed at `first`: an alias
        let s = call(&mut r, malloc(second));
        assert_eq!(got(s), first);
        assert_eq!(r.model_addr(second), first);
        // moved far away: `first` is free again in the model
        let moved = EventKind::Realloc {
            domain: Domain::Obj,
            old: second,
            size: 100_000,
            new: Addr(0x7000_0000_0000),
        };
        assert!(!matches!(call(&mut r, moved), Step::Call { got, .. } if got.is_null()));
        assert_eq!(r.model_addr(second), second, "the alias outlived its block");
        // the next 24-byte block is the model's `second`, as recorded: no alias
        // (the OS side does not match: this made-up recording shows no mapping for the
        // realloc's big block)
        assert_eq!(got(call(&mut r, malloc(second))), second);
        assert_eq!(r.model_addr(second), second);
        // its free reaches it, not the block the realloc freed
        let free = EventKind::Free {
            domain: Domain::Obj,
            addr: second,
        };
        call(&mut r, free);
        assert!(r.error.is_none(), "{:?}", r.error);
        let ModelRef::Own(m) = r.model() else {
            panic!("own mode")
        };
        assert_eq!(m.live_blocks(), 1); // the moved one
    }
}
