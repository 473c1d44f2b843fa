//! Walking a CPython 3 recording event by event through pymalloc, remembering for every
//! block the event that last touched it and the rule that chose it — what `explain`,
//! `map` and `view` share. The loop is the replay driver's (`replay::drive`: counts,
//! progress, stop, `EventError`); [`Walk`] is its consumer, and a caller's closure sees
//! each step after it (`Flow::Stop` when it has what it wants).
//!
//! ```text
//!  event i:  m O 56 7fff77500070
//!    1. before the step: classify the request (obmalloc.c pymalloc_alloc's order)
//!         usedpools[szidx] has a pool?  -> UsedPool (refined after the step, below)
//!         first usable arena has a freepools head? -> FreePool
//!         first usable arena has never-carved pools? -> CarvePool
//!         no usable arena -> NewArena              (0 or > threshold -> FallThrough)
//!    2. Replayer::step (pinned: the model must return the recorded address)
//!    3. after: UsedPool becomes FreeListHead (block handed out before) or PoolBump (never
//!       handed out: threaded from the pool's untouched tail by pymalloc_pool_extend)
//! ```
//!
//! Classifying reads four fields of the model's state before the step; the model's own
//! hot path is untouched. Invariant: after event `i`, `touched[a]` holds, for every
//! address `a` pymalloc has handed out, the last event `<= i` that allocated or freed it.

use crate::addr::Addr;
use crate::check::pymalloc3::model_for;
use crate::check::CheckOptions;
use crate::platform::Platform;
use crate::pymalloc::NONE;
use crate::replay::pymalloc::{request_size, ReplayModel};
use crate::replay::ReplayError as CheckError;
use crate::replay::{drive, Cause, DriveOptions, Flow, Replay, Replayer, Source, Step};
use crate::trace::pymalloc3::Pymalloc3Reader;
use crate::trace::{Event, EventKind, EventReader};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// The rule pymalloc followed to place a block (obmalloc.c, `pymalloc_alloc` and
/// `allocate_from_new_pool`, in the order it tries them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// The first pool of `usedpools[szidx]` had a free list; its head (a block freed
    /// earlier, LIFO) was popped.
    FreeListHead {
        /// The pool.
        pool: u64,
    },
    /// The first used pool's next never-used block (`pymalloc_pool_extend` bumped
    /// `nextoffset`).
    PoolBump {
        /// The pool.
        pool: u64,
    },
    /// No used pool of the class: an empty pool from the first usable arena's `freepools`.
    FreePool {
        /// The arena's base.
        arena: u64,
        /// The pool taken.
        pool: u64,
    },
    /// No used pool and no free pool: the first usable arena's next never-carved pool
    /// (`pool_address`).
    CarvePool {
        /// The arena's base.
        arena: u64,
        /// The pool carved.
        pool: u64,
    },
    /// No usable arena: `new_arena` mapped one; its first pool.
    NewArena,
    /// A request of 0 or more than `SMALL_REQUEST_THRESHOLD` bytes: the raw allocator.
    FallThrough,
    /// `pymalloc_realloc` kept the block (the new size still fits its class).
    ReallocInPlace,
}

impl Rule {
    /// One line a learner can read.
    pub fn describe(&self) -> String {
        match *self {
            Rule::FreeListHead { pool } => format!(
                "free-list head: usedpools[szidx] led to pool {:#x}, whose free list's head (the block freed last there) was popped",
                pool
            ),
            Rule::PoolBump { pool } => format!(
                "fresh pool bump: pool {:#x}'s free list was empty, so pymalloc_pool_extend handed out the block at nextoffset (never used before)",
                pool
            ),
            Rule::FreePool { arena, pool } => format!(
                "a new pool from the arena's free pools: no used pool of this class, so allocate_from_new_pool took pool {:#x} off the freepools of arena {:#x} (usable_arenas head)",
                pool, arena
            ),
            Rule::CarvePool { arena, pool } => format!(
                "a new pool carved: no used pool of this class and no free pool, so arena {:#x} (usable_arenas head) carved its next pool {:#x} at pool_address",
                arena, pool
            ),
            Rule::NewArena => "a new arena: no usable arena had a free pool, so new_arena mapped one and carved its first pool".into(),
            Rule::FallThrough => "fall-through: 0 or more than SMALL_REQUEST_THRESHOLD bytes go to the raw allocator".into(),
            Rule::ReallocInPlace => "realloc in place: the new size still fits the block's size class (n <= size and 4n > 3 size)".into(),
        }
    }

    /// A short code (the page's legend).
    pub fn code(&self) -> u8 {
        match self {
            Rule::FreeListHead { .. } => 1,
            Rule::PoolBump { .. } => 2,
            Rule::FreePool { .. } => 3,
            Rule::CarvePool { .. } => 4,
            Rule::NewArena => 5,
            Rule::FallThrough => 6,
            Rule::ReallocInPlace => 7,
        }
    }
}

/// Where the next request of `nbytes` will come from, read off the model before the step.
pub fn classify(model: &ReplayModel, nbytes: u64) -> Rule {
    let Some(s) = model.params().size_class(nbytes) else {
        return Rule::FallThrough;
    };
    let pools = model.pools();
    let first = pools[s as usize].nextpool;
    if first != s {
        return Rule::FreeListHead {
            pool: pools[first as usize].addr,
        };
    }
    let head = model.usable_arenas();
    if head == NONE {
        return Rule::NewArena;
    }
    let a = model.arenas()[head as usize];
    if a.freepools != NONE {
        Rule::FreePool {
            arena: a.address,
            pool: pools[a.freepools as usize].addr,
        }
    } else {
        Rule::CarvePool {
            arena: a.address,
            pool: a.pool_address,
        }
    }
}

/// What a block's last event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    /// 0-based event index.
    pub event: u64,
    /// 1-based trace line.
    pub line: u64,
    /// True for an allocation (malloc, calloc, the new block of a realloc), false for a free.
    pub alloc: bool,
    /// The rule that chose the block (allocations only).
    pub rule: Option<Rule>,
    /// The bytes asked for (allocations), 0 for a free.
    pub size: u64,
}

impl Touch {
    /// Event `event` (line `line`) handed the block out for `size` bytes by `rule`.
    fn alloc(event: u64, line: u64, rule: Rule, size: u64) -> Touch {
        Touch {
            event,
            line,
            alloc: true,
            rule: Some(rule),
            size,
        }
    }

    /// Event `event` (line `line`) freed the block.
    fn free(event: u64, line: u64) -> Touch {
        Touch {
            event,
            line,
            alloc: false,
            rule: None,
            size: 0,
        }
    }
}

/// One pymalloc block change an event made (the page's deltas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A small block was handed out.
    Alloc {
        /// Its address.
        addr: u64,
        /// Its size class.
        szidx: u32,
        /// The rule.
        rule: Rule,
    },
    /// A small block was freed.
    Free {
        /// Its address.
        addr: u64,
    },
}

/// What one event amounted to.
#[derive(Debug, Clone)]
pub struct Stepped {
    /// 0-based index.
    pub index: u64,
    /// The event.
    pub event: Event,
    /// Block changes (at most two: the old and new block of a moving realloc).
    pub changes: Vec<Change>,
}

/// Which point of a trace to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Right after the event with this 0-based index.
    Event(u64),
    /// Right after the first top-level O/M request of exactly this many bytes.
    Marker(u64),
    /// After the last event.
    End,
}

impl At {
    /// True when event `index` is the point: for [`At::Event`]`(n)` the first event
    /// numbered `n` or more (a mimalloc recording's calls are numbered past its OS lines,
    /// so a walk of its calls may never see `n` itself).
    pub fn hit(&self, index: u64, ev: &Event) -> bool {
        match *self {
            At::Event(n) => index >= n,
            At::Marker(size) => request_size(&ev.kind) == Some(size),
            At::End => false,
        }
    }

    /// What a walk going to this point does after event `index`: [`Flow::Stop`] at the
    /// point (its number kept in `reached`), [`Flow::Next`] before it.
    pub fn stop(&self, reached: &mut Option<u64>, index: u64, ev: &Event) -> Flow {
        if self.hit(index, ev) {
            *reached = Some(index);
            Flow::Stop
        } else {
            Flow::Next
        }
    }

    /// The event a walk of `events` events named `name` stands at: `reached` when it
    /// stopped at the point, the last event for [`At::End`]; otherwise why the point is
    /// not in the trace.
    pub fn reached(&self, reached: Option<u64>, events: u64, name: &str) -> Result<u64, String> {
        match (reached, *self) {
            (Some(i), _) => Ok(i),
            (None, At::End) if events > 0 => Ok(events - 1),
            (None, at) => {
                let what = match at {
                    At::Event(n) => format!("no event {n}"),
                    At::Marker(s) => format!("no top-level O/M request of {s} bytes"),
                    At::End => "no events".into(),
                };
                Err(format!("{name}: {what} among its {events} events"))
            }
        }
    }
}

/// Whether a [`Walk`] keeps page residency (pages pymalloc or the program wrote, not
/// given back by an unmap: what `pyalloc compare` calls resident). Off, the replay costs
/// what `check` costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residency {
    /// No page table: [`Walk::resident`] stays 0.
    Untracked,
    /// Pages tracked from the first event.
    Tracked,
}

/// A CPython 3 recording's state as the driver replays it through pymalloc: the model
/// and, for every block, its last event.
pub struct Walk {
    rp: Replayer,             // the model and its pinned answers
    events: u64,              // events replayed
    blocks: Blocks,           // live blocks, last events
    name: String,             // the trace's name, for errors
    diverged: Option<String>, // why the model left the recording, if it did
}

/// The walk as the driver's consumer: each step applied, then handed to `f`.
struct Walking<'w, F> {
    walk: &'w mut Walk, // the state
    f: F,               // what the caller does with each step
}

impl<F: FnMut(&mut Walk, &Stepped) -> Flow> Replay for Walking<'_, F> {
    fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
        self.walk.events = index + 1;
        match self.walk.apply(index, ev)? {
            Some(s) => Ok((self.f)(self.walk, &s)),
            None => Ok(Flow::Diverged),
        }
    }

    fn explain(&mut self, addr: Addr) -> Option<String> {
        Some(self.walk.rp.model_mut().explain(addr))
    }
}

impl Walk {
    /// Replays an opened CPython 3 recording (`name` for messages; open a path with
    /// [`Pymalloc3Reader::open`]) with the model its header names (or `model`) through
    /// the driver, handing every step to `f` until it says [`Flow::Stop`] or the trace
    /// ends; returns the state reached. With [`Residency::Tracked`], page residency is
    /// kept from the first event ([`resident`](Self::resident)).
    ///
    /// # Errors
    /// The trace cannot be read, no preset answers to the model name, the model refuses a
    /// request or diverges from the recording (the state shown would not be CPython's).
    pub fn replay(
        reader: &mut dyn EventReader,
        name: &str,
        model: Option<String>,
        progress: bool,
        residency: Residency,
        f: impl FnMut(&mut Walk, &Stepped) -> Flow,
    ) -> Result<Walk, CheckError> {
        let mut src = Source::new(reader)?;
        let opts = CheckOptions {
            model,
            keep_going: false,
            progress,
        };
        let (params, mode) = model_for(&opts, src.header())?;
        let mut walk = Walk {
            rp: Replayer::new(params, mode, &Platform::linux_x86_64()),
            events: 0,
            blocks: Blocks::default(),
            name: name.to_string(),
            diverged: None,
        };
        if residency == Residency::Tracked {
            let m = walk.rp.model_mut();
            m.source_mut().track_residency();
            m.track_residency();
        }
        let mut w = Walking { walk: &mut walk, f };
        drive(&mut src, &mut w, &opts.drive(name))?;
        match walk.diverged.take() {
            Some(why) => Err(CheckError::Unsupported(why)),
            None => Ok(walk),
        }
    }

    /// Replays the recording at `path` up to and including the point `at`; returns the
    /// state and the index of the event reached.
    ///
    /// # Errors
    /// As [`replay`](Self::replay); the trace ends before the point.
    pub fn to(
        path: &Path,
        model: Option<String>,
        progress: bool,
        at: At,
    ) -> Result<(Walk, u64), CheckError> {
        let mut reader = Pymalloc3Reader::open(path)?;
        Walk::to_reader(
            &mut reader,
            &path.display().to_string(),
            model,
            progress,
            at,
        )
    }

    /// [`to`](Self::to) of an opened CPython 3 event stream named `name`.
    ///
    /// # Errors
    /// As [`to`](Self::to).
    pub fn to_reader(
        reader: &mut dyn EventReader,
        name: &str,
        model: Option<String>,
        progress: bool,
        at: At,
    ) -> Result<(Walk, u64), CheckError> {
        let mut reached = None;
        let walk = Walk::replay(
            reader,
            name,
            model,
            progress,
            Residency::Untracked,
            |_, s| at.stop(&mut reached, s.index, &s.event),
        )?;
        let i = at
            .reached(reached, walk.events, &walk.name)
            .map_err(CheckError::Unsupported)?;
        Ok((walk, i))
    }

    /// The model in its current state.
    pub fn model(&self) -> &ReplayModel {
        self.rp.model()
    }

    /// The model, mutably (for `block_info`).
    pub fn model_mut(&mut self) -> &mut ReplayModel {
        self.rp.model_mut()
    }

    /// The last event that allocated or freed the block at `addr`.
    pub fn last_touch(&self, addr: Addr) -> Option<Touch> {
        self.blocks.touched.get(&addr.0).copied()
    }

    /// Bytes of the arenas' pages written and not given back (0 unless the walk tracks
    /// residency: [`replay`](Self::replay) with [`Residency::Tracked`]).
    pub fn resident(&mut self) -> u64 {
        use crate::pymalloc::ArenaSource;
        self.rp
            .model_mut()
            .source_mut()
            .space(None)
            .map_or(0, |vm| vm.resident_bytes())
    }

    /// Events replayed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The trace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replays event `index`: `None` when the model diverged from the recording (the
    /// reason kept for the driver's caller).
    fn apply(&mut self, index: u64, ev: &Event) -> Result<Option<Stepped>, Cause> {
        let pre = Blocks::before(self.rp.model(), ev);
        match self.rp.step(ev) {
            Step::Context => {}
            Step::Call { matched: true, .. } => {}
            Step::Call { expected, got, .. } => {
                let why = self.rp.take_why().unwrap_or_default();
                self.diverged = Some(format!(
                    "{}: the model diverged from the recording at event {index} (line {}): expected {expected}, got {got}: {why}",
                    self.name, ev.line
                ));
                return Ok(None);
            }
            Step::Refused => {
                let (e, _) = self.rp.take_error().unwrap_or((
                    crate::error::AllocError::Corrupt {
                        message: "refused",
                        addr: Addr::NULL,
                        model: "pymalloc",
                    },
                    String::new(),
                ));
                return Err(Cause::Model(e));
            }
        }
        Ok(Some(self.blocks.after(self.rp.model(), index, ev, pre)))
    }
}

/// Which pymalloc blocks are live and the last event of every block, kept beside a
/// pymalloc replay (CPython 3's [`Walk`], the 2.7 page's replay) from the recorded calls.
#[derive(Debug, Default)]
pub struct Blocks {
    touched: HashMap<u64, Touch>, // address -> last event that allocated or freed it
    small: HashMap<u64, u32>,     // live small block -> size class
}

impl Blocks {
    /// Before the model steps `ev`: an O/M request's size and the rule its state says
    /// will serve it.
    pub fn before(model: &ReplayModel, ev: &Event) -> Option<(u64, Rule)> {
        match ev.kind {
            EventKind::Malloc { domain, .. }
            | EventKind::Calloc { domain, .. }
            | EventKind::Realloc { domain, .. }
                if domain.is_om() =>
            {
                request_size(&ev.kind).map(|n| (n, classify(model, n)))
            }
            _ => None,
        }
    }

    /// After the model stepped `ev` (event `index`) as the recording did: the block
    /// changes, remembered.
    pub fn after(
        &mut self,
        model: &ReplayModel,
        index: u64,
        ev: &Event,
        pre: Option<(u64, Rule)>,
    ) -> Stepped {
        let mut changes = Vec::new();
        let (freed, got, size) = match ev.kind {
            EventKind::Malloc { domain, addr, size } if domain.is_om() => (None, Some(addr), size),
            EventKind::Calloc { domain, addr, .. } if domain.is_om() => {
                (None, Some(addr), pre.map_or(0, |p| p.0))
            }
            EventKind::Realloc {
                domain,
                old,
                new,
                size,
            } if domain.is_om() => {
                if old == new && !old.is_null() && self.small.contains_key(&old.0) {
                    let szidx = model.params().size_class(size);
                    let rule = Rule::ReallocInPlace;
                    self.touched
                        .insert(old.0, Touch::alloc(index, ev.line, rule, size));
                    if let Some(s) = szidx {
                        self.small.insert(old.0, s);
                    }
                    (None, None, size)
                } else {
                    ((!old.is_null()).then_some(old), Some(new), size)
                }
            }
            EventKind::Free { domain, addr } if domain.is_om() => (Some(addr), None, 0),
            _ => (None, None, 0),
        };
        if let Some(old) = freed {
            if self.small.remove(&old.0).is_some() {
                changes.push(Change::Free { addr: old.0 });
                self.touched.insert(old.0, Touch::free(index, ev.line));
            }
        }
        if let (Some(addr), Some((n, rule))) = (got, pre) {
            if let Some(szidx) = model.params().size_class(n) {
                let rule = match rule {
                    Rule::FreeListHead { pool } if !self.touched.contains_key(&addr.0) => {
                        Rule::PoolBump { pool }
                    }
                    r => r,
                };
                self.small.insert(addr.0, szidx);
                self.touched
                    .insert(addr.0, Touch::alloc(index, ev.line, rule, size));
                changes.push(Change::Alloc {
                    addr: addr.0,
                    szidx,
                    rule,
                });
            }
        }
        Stepped {
            index,
            event: *ev,
            changes,
        }
    }
}

/// Replays a CPython 2.7 PYREC recording (free lists and pymalloc) through the driver up
/// to the point `at`; returns the index reached and the replay.
///
/// # Errors
/// A read error, the model's refusal or a divergence before the point; the trace ends
/// before it.
pub fn pyrec27_to(
    path: &Path,
    at: At,
    progress: bool,
) -> Result<(u64, crate::check::pyrec27::Py27Replay), CheckError> {
    /// The 2.7 replay, stopped at the point or at its first divergence.
    struct To {
        replay: crate::check::pyrec27::Py27Replay, // free lists and pymalloc
        at: At,                                    // the point
        reached: Option<u64>,                      // where it stopped
    }
    impl Replay for To {
        fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
            self.replay.report.events += 1;
            self.replay.step(index, ev)?;
            if self.replay.report.first_divergence.is_some() {
                return Ok(Flow::Diverged);
            }
            Ok(self.at.stop(&mut self.reached, index, ev))
        }
    }
    let mut to = To {
        replay: crate::check::pyrec27::Py27Replay::new(Platform::linux_x86_64(), false),
        at,
        reached: None,
    };
    let events = drive_py27(path, progress, &mut to, |t| &t.replay)?;
    match (to.reached, at) {
        (Some(i), _) => Ok((i, to.replay)),
        (None, At::End) if events > 0 => Ok((events - 1, to.replay)),
        _ => Err(CheckError::Unsupported(format!(
            "{}: the point asked for is not among its {events} events",
            path.display(),
        ))),
    }
}

/// Drives the CPython 2.7 recording at `path` into `consumer` (its 2.7 replay picked out
/// by `replay`) and refuses a divergence: the teaching views show only states CPython was
/// in. Returns the events driven.
pub(super) fn drive_py27<C: Replay>(
    path: &Path,
    progress: bool,
    consumer: &mut C,
    replay: impl Fn(&C) -> &crate::check::pyrec27::Py27Replay,
) -> Result<u64, CheckError> {
    let mut reader = crate::trace::pyrec27::Pyrec27Reader::open(path)?;
    let mut src = Source::new(&mut reader)?;
    let label = path.display().to_string();
    let opts = DriveOptions {
        keep_going: false,
        progress,
        label: &label,
    };
    let d = drive(&mut src, consumer, &opts)?;
    if let Some(dv) = &replay(consumer).report.first_divergence {
        return Err(CheckError::Unsupported(format!(
            "{label}: the model diverged from the recording at event {} (line {}): {}",
            dv.event, dv.line, dv.why
        )));
    }
    Ok(d.events)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# pymalloc allocation trace recorded from REAL CPython\n\
        # interpreter: CPython 3.11.7 (main)\n\
        r r 0 768 55555555c530\nA 1048576 7fff77500000\n\
        c r 1 262144 7ffff769d010\nc r 1 131072 7ffff767c010\n\
        m O 56 7fff77500030\nm O 56 7fff77500070\nf O 7fff77500030\n\
        m O 56 7fff77500030\nm O 100 7fff77504030\nm r 600 555555560000\n\
        m O 600 555555560000\n";

    fn walk(f: impl FnMut(&mut Walk, &Stepped) -> Flow) -> Result<Walk, CheckError> {
        let mut r = Pymalloc3Reader::from_text("t", TEXT).unwrap();
        Walk::replay(&mut r, "t", None, false, Residency::Untracked, f)
    }

    fn to(at: At) -> Result<(Walk, u64), CheckError> {
        let mut r = Pymalloc3Reader::from_text("t", TEXT).unwrap();
        Walk::to_reader(&mut r, "t", None, false, at)
    }

    #[test]
    fn each_allocation_gets_the_rule_obmalloc_followed() {
        let mut rules = Vec::new();
        let w = walk(|_, s| {
            for c in &s.changes {
                if let Change::Alloc { addr, rule, .. } = *c {
                    rules.push((addr, rule));
                }
            }
            Flow::Next
        })
        .unwrap();
        let pool = 0x7fff77500000;
        assert_eq!(
            rules,
            [
                (0x7fff77500030, Rule::NewArena),
                (0x7fff77500070, Rule::PoolBump { pool }),
                (0x7fff77500030, Rule::FreeListHead { pool }),
                (
                    0x7fff77504030,
                    Rule::CarvePool {
                        arena: pool,
                        pool: 0x7fff77504000
                    }
                ),
            ]
        );
        let t = w.last_touch(Addr(0x7fff77500030)).unwrap();
        assert_eq!((t.event, t.line, t.alloc), (7, 10, true));
        assert_eq!(w.events(), 11);
    }

    #[test]
    fn resident_counts_the_pages_of_the_blocks_handed_out() {
        let mut r = Pymalloc3Reader::from_text("t", TEXT).unwrap();
        let mut w = Walk::replay(&mut r, "t", None, false, Residency::Tracked, |_, _| {
            Flow::Next
        })
        .unwrap();
        // the pages of the small O blocks the recording shows (their pool headers and the
        // links threaded one block ahead lie in the same pages)
        let pages: std::collections::BTreeSet<u64> = TEXT
            .lines()
            .filter_map(|l| l.strip_prefix("m O "))
            .filter_map(|l| l.split_once(' '))
            .filter(|(n, _)| n.parse::<u64>().unwrap() <= 512)
            .map(|(_, a)| u64::from_str_radix(a, 16).unwrap() >> 12)
            .collect();
        assert_eq!(w.resident(), pages.len() as u64 * 4096);
        let mut r = Pymalloc3Reader::from_text("t", TEXT).unwrap();
        let mut w = Walk::replay(&mut r, "t", None, false, Residency::Untracked, |_, _| {
            Flow::Next
        })
        .unwrap();
        assert_eq!(w.resident(), 0, "not tracked");
    }

    #[test]
    fn a_point_past_the_end_is_an_error_naming_the_events() {
        let e = to(At::Event(99)).err().unwrap().to_string();
        assert!(e.contains("no event 99") && e.contains("11 events"), "{e}");
        assert_eq!(to(At::Marker(100)).unwrap().1, 8);
        let (w, end) = to(At::End).unwrap();
        assert_eq!((end, w.events()), (10, 11));
    }

    #[test]
    fn a_refusal_is_an_event_error_from_the_driver() {
        let mut r =
            Pymalloc3Reader::from_text("t", &format!("{TEXT}f O 7fff77500070\nf O 7fff77500070\n"))
                .unwrap();
        let e = Walk::replay(&mut r, "t", None, false, Residency::Untracked, |_, _| {
            Flow::Next
        })
        .err()
        .unwrap();
        assert!(
            matches!(e, CheckError::Event(ref ev) if ev.event == 12 && ev.line == 15),
            "{e}"
        );
    }
}
