//! Checking CPython 2.7 PYREC recordings: both layers of the 2.7 object allocator in one
//! replay, the int and float free lists (intobject.c, floatobject.c) and pymalloc
//! (obmalloc.c, the 2.7.17+ preset: 16-byte classes up to 512 bytes, 4 KiB pools,
//! 256 KiB arenas).
//!
//! ```text
//!  B/b 992 ADDR   given: the block address is glibc's; checked: sizeof(PyIntBlock) and
//!                 that the model's free list was empty (fill_free_list runs only then)
//!  I/i V ADDR     checked: the model pops its free-list head, which must be ADDR
//!  D/d ADDR       applied: the model pushes ADDR back (an error if ADDR is not live)
//!  K/X/L          checked: the model runs ClearFreeList at the first K/X and each line must
//!                 match its walk (block, live count) and its totals (kept, freed, live, nfree, head)
//!  A 262144 ADDR  given: the arena base is the kernel's; queued for the next O call, which
//!                 must map exactly the arenas queued (counted in `arena_events`)
//!  F ADDR 262144  queued: the next O call must unmap exactly these (counted in `arena_events`)
//!  m O N ADDR     1 <= N <= 512: checked, pymalloc's answer must be ADDR;
//!                 else given: the model must fall through to malloc(N or 1), answered ADDR
//!  r O OLD N NEW  OLD in a live arena, in place (N <= S, 4N > 3S) or N small: checked;
//!                 OLD in a live arena, N 0 or > 512: given, the model must call malloc(N or 1)
//!                 and free OLD; OLD outside every arena: given, the model must call
//!                 realloc(OLD, N or 1); OLD = 0: as m
//!  f O ADDR       applied: a pymalloc free in a live arena, else glibc's free of a
//!                 fall-through block (an error if ADDR is neither)
//! ```
//! The model starts from an empty free list and an empty pymalloc, as the interpreter
//! does: the first 262 I lines are `_PyInt_Init`'s small ints. Every event is checked,
//! given or applied: `not_checked` counts only events of kinds a PYREC trace cannot hold
//! (read from a binary trace of another format), so it is 0 for the recordings.
//! Invariants: after each O call no `A` line is left queued and the model's maps and
//! unmaps equal the queued `A`/`F` lines; `checked == matched` iff no divergence.

use super::{CheckOptions, CheckReport};
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::objects::freelist::{BlockType, ClearEvent, ClearReport, FreeList};
use crate::objects::intobject::{NSMALLNEGINTS, NSMALLPOSINTS};
use crate::objects::{FloatFreeList, IntFreeList, Py2State, PyFloat, PyInt, Slot, SmallInts};
use crate::platform::Platform;
use crate::pymalloc::{Pymalloc, PymallocParams};
use crate::replay::driver::at_error;
use crate::replay::pinned::{PinnedArenas, PinnedRaw, RawCall, TraceHeap};
use crate::replay::{drive, Cause, EventError, Flow, ModelSpec, Replay, ReplayError, Source};
use crate::sysmalloc::SharedHeap;
use crate::trace::pyrec27::Pyrec27Reader;
use crate::trace::{Domain, Event, EventKind, EventReader, FreeListKind};
use std::collections::{HashMap, VecDeque};
use std::path::Path;

/// The pymalloc of a 2.7 replay: fall-throughs answered from the trace's O lines
/// ([`PinnedRaw::implied`]), arenas pinned from its `A` lines.
pub type Py27Pymalloc = Pymalloc<PinnedRaw, PinnedArenas>;

/// `n` bytes as KiB or MiB when whole (`256 KiB`, `1 MiB`), else as bytes.
fn kib(n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// Where pymalloc's own bookkeeping blocks (the `arenas` vector, which 2.7 does not log)
/// are placed: below every heap, never compared.
const HIDDEN_BASE: Addr = Addr(0x1000);

/// One free list being replayed, with the ClearFreeList lines still to compare.
struct Side<T> {
    list: FreeList<SharedHeap<TraceHeap>, T>, // the model
    pending: VecDeque<Pending>,               // the model's ClearFreeList walk, not yet compared
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Walk(ClearEvent),
    Done {
        kept: u64,
        freed: u64,
        live: u64,
        nfree: u64,
        head: Addr,
    },
}

impl<T: BlockType> Side<T> {
    fn clear(&mut self) -> Result<(), AllocError> {
        let r: ClearReport = self.list.clear_free_list()?;
        self.pending
            .extend(r.events.iter().map(|&e| Pending::Walk(e)));
        self.pending.push_back(Pending::Done {
            kept: r.kept,
            freed: r.freed,
            live: r.live,
            nfree: r.nfree,
            head: r.head,
        });
        Ok(())
    }

    /// Where `a` lies in the model's blocks (for a divergence's `why`).
    fn where_is(&mut self, a: Addr) -> String {
        match self.list.whereabouts(a) {
            Some(w) => format!(
                "{a} is objects[{}] of block #{} at {} ({})",
                w.k,
                w.block,
                w.base,
                if w.live { "live" } else { "free" }
            ),
            None => format!("{a} is in no block of the model"),
        }
    }
}

/// A PyObject_Malloc/Realloc/Free line.
#[derive(Debug, Clone, Copy)]
enum Op {
    Malloc(u64),
    Realloc(Addr, u64),
    Free(Addr),
}

/// A replay of a PYREC trace through the free-list models and pymalloc.
pub struct Py27Replay {
    platform: Platform,          // the recording's platform
    heap: SharedHeap<TraceHeap>, // blocks come from the trace
    ints: Side<PyInt>,           // the int free list
    floats: Side<PyFloat>,       // the float free list
    small: Vec<(Addr, Slot)>,    // _PyInt_Init's pops, -5 first
    pymalloc: Py27Pymalloc,      // the object allocator
    expected_maps: Vec<Addr>,    // `A` lines queued for the next O call
    expected_unmaps: Vec<Addr>,  // `F` lines queued for the next O call
    alias: HashMap<u64, u64>,    // recorded address -> model address, after a divergence
    /// Comparisons made so far.
    pub report: CheckReport,
    keep_going: bool, // count divergences past the first
}

impl Py27Replay {
    /// An empty interpreter on `platform`, pymalloc of 2.7.17–2.7.18 (the recordings').
    pub fn new(platform: Platform, keep_going: bool) -> Py27Replay {
        Py27Replay::with_params(platform, PymallocParams::v2_7_17(), keep_going)
    }

    /// An empty interpreter on `platform` with the pymalloc of era `params`.
    pub fn with_params(platform: Platform, params: PymallocParams, keep_going: bool) -> Py27Replay {
        let heap = SharedHeap::new(TraceHeap::default());
        Py27Replay {
            ints: Side {
                list: IntFreeList::new(heap.clone(), &platform),
                pending: VecDeque::new(),
            },
            floats: Side {
                list: FloatFreeList::new(heap.clone(), &platform),
                pending: VecDeque::new(),
            },
            heap,
            platform,
            small: Vec::new(),
            pymalloc: Pymalloc::new(params, PinnedRaw::implied(HIDDEN_BASE), PinnedArenas::new()),
            expected_maps: Vec::new(),
            expected_unmaps: Vec::new(),
            alias: HashMap::new(),
            report: CheckReport::default(),
            keep_going,
        }
    }

    /// The int free list as replayed so far.
    pub fn ints(&self) -> &IntFreeList<SharedHeap<TraceHeap>> {
        &self.ints.list
    }

    /// pymalloc as replayed so far.
    pub fn pymalloc(&self) -> &Py27Pymalloc {
        &self.pymalloc
    }

    /// pymalloc, mutably (for `explain`, `check_invariants`).
    pub fn pymalloc_mut(&mut self) -> &mut Py27Pymalloc {
        &mut self.pymalloc
    }

    /// True once `_PyInt_Init` has popped all of the small ints.
    pub fn small_ints_done(&self) -> bool {
        self.small.len() == (NSMALLNEGINTS + NSMALLPOSINTS) as usize
    }

    /// The address of small int `v`, once `_PyInt_Init` has made it.
    pub fn small_int(&self, v: i64) -> Option<Addr> {
        let i = usize::try_from(v.checked_add(NSMALLNEGINTS)?).ok()?;
        self.small.get(i).map(|&(a, _)| a)
    }

    /// The replayed free lists, small ints and pymalloc, for a script to continue from
    /// (the facade's `interp::Py2::from_state` takes it).
    pub fn into_state(self) -> Py2State<TraceHeap, Py27Pymalloc> {
        let (addrs, slots) = self.small.into_iter().unzip();
        Py2State {
            platform: self.platform,
            heap: self.heap,
            ints: self.ints.list,
            floats: self.floats.list,
            small_ints: SmallInts::py2_given(addrs, slots),
            obmalloc: self.pymalloc,
        }
    }

    fn diverge(&mut self, event: u64, line: u64, expected: Addr, got: Addr, why: String) {
        self.report.diverge(event, line, expected.0, got.0, why);
    }

    /// Applies one event (the `index`-th of the trace) and counts it in `report.events`:
    /// one step, for a program that makes its events one at a time (the property tests);
    /// a trace is replayed by the driver (`replay::drive`), `report::stats` included.
    ///
    /// # Errors
    /// An [`EventError`] when the trace asks the model something it refuses (a push or
    /// free of an address that is not live); with `keep_going` that is a divergence instead.
    pub fn apply(&mut self, ev: &Event, index: u64) -> Result<(), ReplayError> {
        self.report.events += 1;
        if let Err(source) = self.step(index, ev) {
            let keep_going = self.keep_going;
            at_error(self, keep_going, index, ev, source)?;
        }
        Ok(())
    }

    /// Ends the replay: `A`/`F` lines left queued (no O call after them) are a divergence.
    pub fn finish(&mut self, index: u64, line: u64) {
        if !(self.expected_maps.is_empty() && self.expected_unmaps.is_empty()) {
            let why = self.stray_arena_lines();
            self.diverge(index, line, Addr::NULL, Addr::NULL, why);
        }
    }

    fn stray_arena_lines(&mut self) -> String {
        let why = format!(
            "arena lines (maps {:?}, unmaps {:?}) not followed by the PyObject call that made them",
            self.expected_maps, self.expected_unmaps
        );
        self.clear_arena_queue();
        why
    }

    fn clear_arena_queue(&mut self) {
        self.expected_maps.clear();
        self.expected_unmaps.clear();
        self.pymalloc.source_mut().end_call();
    }

    fn apply_event(&mut self, ev: &Event, index: u64) -> Result<(), Cause> {
        let model_err = Cause::Model;
        if let Some((op, expected)) = op_of(&ev.kind) {
            return self.pymalloc_call(op, expected, index, ev.line);
        }
        match ev.kind {
            EventKind::ArenaAlloc { size, addr } => {
                self.arena_size_line(addr, size, false, index, ev.line);
                self.report.given += 1;
                self.pymalloc.source_mut().push(addr);
                self.expected_maps.push(addr);
            }
            EventKind::ArenaFree { addr, size } => {
                self.arena_size_line(addr, size, true, index, ev.line);
                self.expected_unmaps.push(addr);
            }
            EventKind::BlockNew { kind, size, addr } => {
                let (head, block_size) = match kind {
                    FreeListKind::Int => {
                        (self.ints.list.head(), self.ints.list.layout().block_size)
                    }
                    FreeListKind::Float => (
                        self.floats.list.head(),
                        self.floats.list.layout().block_size,
                    ),
                };
                self.report.given += 1;
                self.report.compare(index, ev.line, size, block_size, || {
                    "sizeof(PyIntBlock) computed from the platform".into()
                });
                self.report.compare(index, ev.line, 0, head.0, || {
                    format!("fill_free_list runs only on an empty free list; the model's head is {head}")
                });
                match kind {
                    FreeListKind::Int => self.ints.list.fill_free_list_at(addr),
                    FreeListKind::Float => self.floats.list.fill_free_list_at(addr),
                }
                .map_err(model_err)?;
            }
            EventKind::ObjPop { kind, value, addr } => {
                let (slot, got) = match kind {
                    FreeListKind::Int => self.ints.list.alloc(),
                    FreeListKind::Float => self.floats.list.alloc(),
                }
                .map_err(model_err)?;
                if kind == FreeListKind::Int && !self.small_ints_done() {
                    self.small.push((got, slot));
                }
                let why = (got != addr).then(|| {
                    let (g, e) = match kind {
                        FreeListKind::Int => (self.ints.where_is(got), self.ints.where_is(addr)),
                        FreeListKind::Float => {
                            (self.floats.where_is(got), self.floats.where_is(addr))
                        }
                    };
                    format!(
                        "{kind:?} value {value}: the model popped its free-list head: {g}; \
                         the recorded address: {e}"
                    )
                });
                self.report
                    .compare(index, ev.line, addr.0, got.0, || why.unwrap_or_default());
            }
            EventKind::ObjPush { kind, addr } => {
                match kind {
                    FreeListKind::Int => self.ints.list.free(addr).map(|_| ()),
                    FreeListKind::Float => self.floats.list.free(addr).map(|_| ()),
                }
                .map_err(model_err)?;
            }
            EventKind::ClearKeep { kind, .. }
            | EventKind::ClearFree { kind, .. }
            | EventKind::ClearDone { kind, .. } => {
                let side_pending = match kind {
                    FreeListKind::Int => {
                        if self.ints.pending.is_empty() {
                            self.ints.clear().map_err(model_err)?;
                        }
                        self.ints.pending.pop_front()
                    }
                    FreeListKind::Float => {
                        if self.floats.pending.is_empty() {
                            self.floats.clear().map_err(model_err)?;
                        }
                        self.floats.pending.pop_front()
                    }
                };
                self.compare_clear(index, ev, side_pending);
            }
            _ => self.report.not_checked += 1,
        }
        Ok(())
    }

    /// An `A`/`F` line's size must be the preset's ARENA_SIZE.
    fn arena_size_line(&mut self, addr: Addr, size: u64, unmap: bool, index: u64, line: u64) {
        let arena = self.pymalloc.params().arena_size();
        if size != arena {
            let name = self.pymalloc.params().name;
            let verb = if unmap { "unmaps" } else { "maps" };
            self.report.diverge_size(
                index,
                line,
                addr.0,
                crate::check::SizeDivergence {
                    what: "arena size",
                    expected: size,
                    got: arena,
                },
                format!(
                    "the recording {verb} an arena of {size} bytes ({}) at {addr}, but {name}'s \
                     obmalloc.c maps arenas of ARENA_SIZE = {arena} bytes ({}): the recording \
                     is of another build (try the preset of its release, `pyalloc presets`), \
                     or its arena line was edited",
                    kib(size),
                    kib(arena)
                ),
            );
        }
    }

    /// A recorded address in the model's terms (they differ only after a divergence).
    fn to_model(&self, a: Addr) -> Addr {
        if self.alias.is_empty() {
            return a;
        }
        self.alias.get(&a.0).map_or(a, |&m| Addr(m))
    }

    /// What the recording implies for an O call returning `expected`: the system call the
    /// model must make (answered `expected`), and whether pymalloc's own answer is checked.
    fn implied(&mut self, op: Op, expected: Addr) -> (Option<RawCall>, bool) {
        let threshold = self.pymalloc.params().small_request_threshold;
        let small = |n: u64| n >= 1 && n <= threshold;
        let fall = |n: u64| {
            (!small(n)).then_some(RawCall::Malloc {
                size: n.max(1),
                addr: expected,
            })
        };
        match op {
            Op::Free(_) => (None, false),
            Op::Malloc(n) => (fall(n), small(n)),
            Op::Realloc(old, n) if old.is_null() => (fall(n), small(n)),
            Op::Realloc(old, n) => {
                let m = self.to_model(old);
                match self.pymalloc.block_info(m) {
                    Some(b) => {
                        let s = b.szidx.map(|i| self.pymalloc.params().class_size(i));
                        let in_place = s.is_some_and(|s| n <= s && n.saturating_mul(4) > 3 * s);
                        if in_place {
                            (None, true)
                        } else {
                            (fall(n), small(n))
                        }
                    }
                    None => (
                        Some(RawCall::Realloc {
                            old: m,
                            size: n.max(1),
                            addr: expected,
                        }),
                        false,
                    ),
                }
            }
        }
    }

    /// Replays one PyObject_Malloc/Realloc/Free line with the `A`/`F` lines before it.
    fn pymalloc_call(
        &mut self,
        op: Op,
        expected: Addr,
        index: u64,
        line: u64,
    ) -> Result<(), Cause> {
        let (implied, checked) = self.implied(op, expected);
        let mut why: Vec<String> = Vec::new();
        if implied.is_some() && self.pymalloc.block_info(expected).is_some() {
            why.push(format!(
                "the recorded address {expected} lies in a pymalloc arena, but the call falls \
                 through to the system allocator"
            ));
        }
        if let Some(call) = implied {
            self.pymalloc.lower_mut().expect(call);
        }
        let result = match op {
            Op::Malloc(n) => self
                .pymalloc
                .malloc(usize::try_from(n).unwrap_or(usize::MAX)),
            Op::Realloc(old, n) => {
                let m = self.to_model(old);
                self.pymalloc
                    .realloc(m, usize::try_from(n).unwrap_or(usize::MAX))
            }
            Op::Free(a) => {
                let m = self.to_model(a);
                self.pymalloc.free(m).map(|()| Addr::NULL)
            }
        };
        let unmet = self.pymalloc.lower_mut().end_call().into_iter().next();
        let src = self.pymalloc.source();
        let mapped: Vec<Addr> = src.mapped().iter().map(|&(m, t)| t.unwrap_or(m)).collect();
        if mapped != self.expected_maps {
            why.push(format!(
                "arenas mapped in this call: by the model {}, by CPython {}",
                Addr::list(&mapped),
                Addr::list(&self.expected_maps)
            ));
        }
        if src.unmapped() != self.expected_unmaps {
            why.push(format!(
                "arenas unmapped in this call: by the model {}, by CPython {}",
                Addr::list(src.unmapped()),
                Addr::list(&self.expected_unmaps)
            ));
        }
        let arena_events = (mapped.len() + src.unmapped().len()) as u64;
        if let Some(call) = unmet {
            why.push(format!(
                "the recording's answer is the system allocator's ({call:?}), \
                 but the model did not make that call"
            ));
        }
        self.clear_arena_queue();
        let got = match result {
            Ok(g) => g,
            Err(e @ (AllocError::OutOfAddressSpace { .. } | AllocError::Corrupt { .. })) => {
                why.insert(0, e.to_string());
                Addr::NULL
            }
            Err(source) => return Err(Cause::Model(source)),
        };
        if let Op::Free(a) | Op::Realloc(a, _) = op {
            if !self.alias.is_empty() {
                self.alias.remove(&a.0);
            }
        }
        if implied.is_some() {
            self.report.given += 1;
        }
        if !matches!(op, Op::Free(_)) && got != expected {
            let w = format!(
                "model {}; the recorded address: {}",
                self.pymalloc.explain(got),
                self.pymalloc.explain(expected)
            );
            why.insert(0, w);
            if !expected.is_null() {
                self.alias.insert(expected.0, got.0);
            }
        }
        if checked {
            self.report.checked += 1;
            if why.is_empty() {
                self.report.matched += 1;
            }
        }
        if why.is_empty() {
            self.report.arena_events += arena_events;
        } else {
            self.diverge(index, line, expected, got, why.join("; "));
        }
        Ok(())
    }

    fn compare_clear(&mut self, index: u64, ev: &Event, model: Option<Pending>) {
        let line = ev.line;
        let r = &mut self.report;
        let why = |m: &Option<Pending>| format!("the model's ClearFreeList walk says {m:?}");
        match (ev.kind, model) {
            (
                EventKind::ClearKeep { addr, live, .. },
                Some(Pending::Walk(ClearEvent::Keep { base, live: l })),
            ) => {
                r.compare(index, line, addr.0, base.0, || why(&model));
                r.compare(index, line, live, l, || why(&model));
            }
            (EventKind::ClearFree { addr, .. }, Some(Pending::Walk(ClearEvent::Free { base }))) => {
                r.compare(index, line, addr.0, base.0, || why(&model));
            }
            (
                EventKind::ClearDone {
                    kept,
                    freed,
                    live,
                    nfree,
                    head,
                    ..
                },
                Some(Pending::Done {
                    kept: k,
                    freed: f,
                    live: l,
                    nfree: n,
                    head: h,
                }),
            ) => {
                r.compare(index, line, kept, k, || why(&model));
                r.compare(index, line, freed, f, || why(&model));
                r.compare(index, line, live, l, || why(&model));
                r.compare(index, line, nfree, n, || why(&model));
                r.compare(index, line, head.0, h.0, || why(&model));
            }
            _ => {
                r.compare(index, line, 1, 0, || {
                    format!("trace line {:?} but {}", ev.kind, why(&model))
                });
            }
        }
    }
}

/// The O call an event is, with the address it returned (NULL for a free).
fn op_of(kind: &EventKind) -> Option<(Op, Addr)> {
    match *kind {
        EventKind::Malloc {
            domain: Domain::Obj,
            size,
            addr,
        } => Some((Op::Malloc(size), addr)),
        EventKind::Realloc {
            domain: Domain::Obj,
            old,
            size,
            new,
        } => Some((Op::Realloc(old, size), new)),
        EventKind::Free {
            domain: Domain::Obj,
            addr,
        } => Some((Op::Free(addr), Addr::NULL)),
        _ => None,
    }
}

/// The pymalloc preset for `--model` (any pymalloc preset name), or 2.7.17–2.7.18's when
/// none is given.
///
/// # Errors
/// A name that is not a model, not a pymalloc preset, or asks for what a PYREC recording
/// cannot give (`+own`, a stack).
pub fn params_for(opts: &CheckOptions) -> Result<PymallocParams, ReplayError> {
    let Some(name) = &opts.model else {
        return Ok(PymallocParams::v2_7_17());
    };
    let spec = ModelSpec::parse(name)?;
    let what = "check a CPython 2.7 PYREC recording";
    spec.recorded(what)?;
    match spec.pymalloc() {
        None => Err(spec
            .not_here(
                what,
                "it is not a pymalloc preset; name one such as cpython-2.7.18",
            )
            .into()),
        Some(_) if spec.lower.is_some() || spec.addresses != crate::replay::Addresses::Pinned => {
            Err(spec
                .not_here(
                    what,
                    "its arenas and system calls are the recording's; name the preset alone",
                )
                .into())
        }
        Some(p) => Ok(p.clone()),
    }
}

impl Replay for Py27Replay {
    fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
        let arena_line = matches!(
            ev.kind,
            EventKind::ArenaAlloc { .. } | EventKind::ArenaFree { .. }
        );
        if !arena_line
            && op_of(&ev.kind).is_none()
            && !(self.expected_maps.is_empty() && self.expected_unmaps.is_empty())
        {
            let why = self.stray_arena_lines();
            self.diverge(index, ev.line, Addr::NULL, Addr::NULL, why);
        }
        self.apply_event(ev, index)?;
        Ok(if self.report.first_divergence.is_some() {
            Flow::Diverged
        } else {
            Flow::Next
        })
    }

    fn keep_going(&mut self, err: EventError) {
        let why = format!("the model refused: {}", err.source);
        self.diverge(err.event, err.line, Addr::NULL, Addr::NULL, why);
    }
}

/// Where [`state_until`] stopped: the state just before the event it stopped at.
pub struct Py27Stop {
    /// The free lists, small ints and pymalloc as replayed up to that event.
    pub state: Py2State<TraceHeap, Py27Pymalloc>,
    /// The trace line of the event it stopped at.
    pub line: u64,
    /// The check of every event before it.
    pub report: CheckReport,
    /// The trace's header lines.
    pub header: Vec<String>,
}

/// Replays the PYREC 2.7 trace at `path` (every I/i address and K/X/L line checked) up to
/// the first event for which `stop_at` says so, and hands back the state before it.
///
/// # Errors
/// An unreadable trace, a model refusal, a trace that ends first.
pub fn state_until(
    path: &Path,
    stop_at: impl FnMut(&Event) -> bool,
) -> Result<Py27Stop, ReplayError> {
    /// The replay, stopped before the first event `stop_at` picks.
    struct Until<F> {
        replay: Py27Replay,   // the free lists and pymalloc
        stop_at: F,           // the point asked for
        stopped: Option<u64>, // the line of the event it stopped at
    }
    impl<F: FnMut(&Event) -> bool> Replay for Until<F> {
        fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
            if (self.stop_at)(ev) {
                self.stopped = Some(ev.line);
                return Ok(Flow::Stop);
            }
            self.replay.report.events += 1;
            self.replay.step(index, ev)?;
            Ok(Flow::Next)
        }
    }
    let mut reader = Pyrec27Reader::open(path)?;
    let mut until = Until {
        replay: Py27Replay::new(Platform::linux_x86_64(), false),
        stop_at,
        stopped: None,
    };
    let mut src = Source::new(&mut reader)?;
    drive(
        &mut src,
        &mut until,
        &crate::replay::DriveOptions::default(),
    )?;
    drop(src);
    let Some(line) = until.stopped else {
        return Err(ReplayError::Unsupported(format!(
            "{}: the trace ends before the point asked for",
            path.display()
        )));
    };
    Ok(Py27Stop {
        report: until.replay.report.clone(),
        state: until.replay.into_state(),
        line,
        header: reader.header().lines.clone(),
    })
}

/// Replays the trace at `path` through the free lists and pymalloc and compares every
/// I/i address, every K/X/L line, every small pymalloc address and every arena map and
/// unmap.
///
/// # Errors
/// An unreadable or malformed trace; a push or free of an address that is not live
/// (a divergence with `keep_going`); an unknown `--model`.
pub fn check(path: &Path, opts: &CheckOptions) -> Result<CheckReport, ReplayError> {
    let mut reader = Pyrec27Reader::open(path)?;
    check_events(&mut reader, opts)
}

/// [`check`] of an already opened event stream (a binary trace of a PYREC recording, say).
///
/// # Errors
/// As [`check`].
pub fn check_reader(
    mut reader: Box<dyn EventReader>,
    opts: &CheckOptions,
) -> Result<CheckReport, ReplayError> {
    check_events(&mut *reader, opts)
}

fn check_events(
    reader: &mut dyn EventReader,
    opts: &CheckOptions,
) -> Result<CheckReport, ReplayError> {
    let params = params_for(opts)?;
    let mut replay = Py27Replay::with_params(Platform::linux_x86_64(), params, opts.keep_going);
    let mut src = Source::new(reader)?;
    let d = drive(&mut src, &mut replay, &opts.drive("replaying"))?;
    replay.report.events = d.events;
    replay.report.raw_unknown = d.raw_unknown;
    if replay.report.first_divergence.is_none() || opts.keep_going {
        replay.finish(d.events, d.last_line);
    }
    Ok(replay.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{LineReader, TraceError};

    const HEAD: &str = "# PYREC allocator event trace: workload \"t\"\n";
    // The first lines of startup.trace.gz: an arena, a 56-byte and a 48-byte request.
    const START: &str = "A 262144 7ffff7cb2000\nm O 56 7ffff7cb2030\nm O 48 7ffff7cb3030\n";

    fn run(body: &str, keep_going: bool) -> Result<CheckReport, ReplayError> {
        let text = format!("{HEAD}{body}");
        let reader = Pyrec27Reader::new(LineReader::from_text("t", &text));
        let opts = CheckOptions {
            keep_going,
            ..CheckOptions::default()
        };
        check_reader(Box::new(reader), &opts)
    }

    #[test]
    fn both_layers_replay_with_the_realloc_rules_of_the_header() {
        let r = run(
            &format!(
                "{START}B 992 555555800000\nI 1000 5555558003c8\n\
                 m O 600 555555900000\n\
                 r O 555555900000 700 555555a00000\n\
                 r O 7ffff7cb2030 60 7ffff7cb2030\n\
                 r O 7ffff7cb2030 20 7ffff7cb4030\n\
                 r O 7ffff7cb3030 600 555555b00000\n\
                 r O 0 48 7ffff7cb3030\n\
                 r O 555555a00000 0 555555a00000\n\
                 f O 555555a00000\nf O 555555b00000\nf O 0\nD 5555558003c8\n"
            ),
            false,
        )
        .unwrap();
        assert!(r.ok(), "{:?}", r.first_divergence);
        // m 56, m 48, I, B (2), r in place, r to class 32, r of NULL: checked.
        assert_eq!((r.checked, r.matched), (8, 8));
        // A, B, m 600, r outside (700), r to 600 (fall-through), r outside (0 -> 1).
        assert_eq!(r.given, 6);
        assert_eq!(r.arena_events, 1);
        assert_eq!(r.not_checked, 0);
    }

    #[test]
    fn a_wrong_small_address_names_pool_class_and_free_list_head() {
        // (after the divergence the recording frees its block, which the model holds at its
        // own address, and the next request is the model's free-list head again)
        let body = format!("{START}m O 56 7ffff7cb20b0\nf O 7ffff7cb20b0\nm O 56 7ffff7cb2070\n");
        let r = run(&body, false).unwrap();
        let d = r.first_divergence.clone().unwrap();
        assert_eq!((d.event, d.line), (3, 5));
        assert_eq!(d.expected, "0x7ffff7cb20b0");
        assert_eq!(d.got, "0x7ffff7cb2070");
        assert!(
            d.why.contains("pool 0x7ffff7cb2000")
                && d.why.contains("size class 3")
                && d.why.contains("free-list head"),
            "{}",
            d.why
        );
        assert_eq!(r.events, 4, "stops at the first divergence");
        let all = run(&body, true).unwrap();
        assert_eq!(all.events, 6);
        assert_eq!(all.first_divergence, r.first_divergence);
        assert_eq!((all.checked, all.matched), (4, 3), "the last one matches");
    }

    #[test]
    fn a_wrong_int_address_names_block_and_slot() {
        let r = run("B 992 555555800000\nI 7 555555800008\n", false).unwrap();
        let d = r.first_divergence.unwrap();
        assert!(
            d.why.contains("objects[40] of block #0") && d.why.contains("objects[0]"),
            "{}",
            d.why
        );
    }

    #[test]
    fn arena_lines_must_be_the_models_maps_and_unmaps() {
        // No A line: the model needs an arena the recording does not show.
        let r = run("m O 56 7ffff7cb2030\n", false).unwrap();
        assert!(r.first_divergence.unwrap().why.contains("arena"));
        // An A line no O call used.
        let r = run("A 262144 7ffff7cb2000\nB 992 555555800000\n", false).unwrap();
        assert!(r.first_divergence.unwrap().why.contains("not followed"));
        // An F line the model does not do.
        let r = run(
            &format!("{START}F 7ffff7cb2000 262144\nf O 7ffff7cb2030\n"),
            false,
        )
        .unwrap();
        assert!(r.first_divergence.unwrap().why.contains("unmapped"));
        // A recording whose large request landed in an arena.
        let r = run(&format!("{START}m O 600 7ffff7cb5030\n"), false).unwrap();
        assert!(r.first_divergence.unwrap().why.contains("falls"));
    }

    #[test]
    fn bad_frees_are_errors_with_event_and_line_or_divergences_with_keep_going() {
        for body in [
            format!("{START}f O 555555900000\n"),
            format!("{START}f O 7ffff7cb2030\nf O 7ffff7cb2030\n"),
            format!("{START}r O 555555900000 30 555555900000\n"),
            "D 555555800000\n".to_string(),
        ] {
            match run(&body, false) {
                Err(ReplayError::Event(EventError { event, line, .. })) => {
                    assert_eq!(line, event + 2, "{body}");
                }
                other => panic!("{body}: {other:?}"),
            }
            let r = run(&body, true).unwrap();
            assert!(!r.ok() && r.first_divergence.unwrap().why.contains("refused"));
        }
    }

    #[test]
    fn malformed_lines_and_absurd_sizes_are_errors_not_panics() {
        match run(&format!("{START}m O 56 zz\n"), false) {
            Err(ReplayError::Trace(TraceError::Parse { line, text, .. })) => {
                assert_eq!((line, text.as_str()), (5, "m O 56 zz"));
            }
            other => panic!("{other:?}"),
        }
        let e = run(
            &format!("{START}m O 18446744073709551615 555555900000\n"),
            false,
        );
        assert!(
            matches!(e, Err(ReplayError::Event(EventError { line: 5, .. }))),
            "{e:?}"
        );
        let r = run("A 4096 7ffff7cb2000\nm O 56 7ffff7cb2030\n", false).unwrap();
        let d = r.first_divergence.unwrap();
        assert!(d.why.contains("arenas of"), "{}", d.why);
        // the sizes are sizes, the address fields the arena's address (check --json)
        let arena = crate::pymalloc::PymallocParams::by_name("2.7")
            .unwrap()
            .arena_size();
        let size = d.size.expect("a size divergence");
        assert_eq!(
            (size.what, size.expected, size.got),
            ("arena size", 4096, arena)
        );
        assert_eq!(
            (d.expected.as_str(), d.got.as_str()),
            ("0x7ffff7cb2000", "0x7ffff7cb2000")
        );
        assert!(
            d.why.contains(&format!("ARENA_SIZE = {arena} bytes")),
            "{}",
            d.why
        );
    }
}
