//! Checking CPython 2.7 PYREC recordings against the int and float free lists.
//!
//! ```text
//!  B/b ADDR   the block address is taken from the trace (glibc chose it); the model
//!             checks only that its free list was empty (fill_free_list runs only then)
//!  I/i ADDR   checked: the model pops its free-list head, which must be ADDR
//!  D/d ADDR   the model pushes ADDR back (an error if ADDR is not a live object)
//!  K/X/L      checked: the model runs ClearFreeList at the first K/X and each line must
//!             match its walk (block, live count) and its totals (kept, freed, live, nfree, head)
//!  m/r/f O, A, F   pymalloc: NOT checked here (the pymalloc model is wired in later);
//!             counted in `events` and in the report's `not_checked`
//! ```
//! The model starts from an empty free list, as the interpreter does: the first 262 I
//! lines are `_PyInt_Init`'s small ints.

use super::{CheckError, CheckOptions, CheckReport};
use crate::addr::Addr;
use crate::objects::freelist::{BlockType, ClearEvent, ClearReport, FreeList};
use crate::objects::intobject::{NSMALLNEGINTS, NSMALLPOSINTS};
use crate::objects::{FloatFreeList, IntFreeList, PyFloat, PyInt, Slot, SmallInts};
use crate::platform::Platform;
use crate::sysmalloc::{SharedHeap, TraceHeap};
use crate::trace::pyrec27::Pyrec27Reader;
use crate::trace::{Event, EventKind, EventReader, FreeListKind};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::Path;

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
    fn clear(&mut self) -> Result<(), crate::error::AllocError> {
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
}

/// A replay of a PYREC trace through the free-list models.
pub struct Py27Replay {
    platform: Platform,          // the recording's platform
    heap: SharedHeap<TraceHeap>, // blocks come from the trace
    ints: Side<PyInt>,           // the int free list
    floats: Side<PyFloat>,       // the float free list
    small: Vec<(Addr, Slot)>,    // _PyInt_Init's pops, -5 first
    /// Comparisons made so far.
    pub report: CheckReport,
    keep_going: bool, // count divergences past the first
}

impl Py27Replay {
    /// An empty interpreter on `platform`.
    pub fn new(platform: Platform, keep_going: bool) -> Py27Replay {
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
            report: CheckReport::default(),
            keep_going,
        }
    }

    /// The int free list as replayed so far.
    pub fn ints(&self) -> &IntFreeList<SharedHeap<TraceHeap>> {
        &self.ints.list
    }

    /// True once `_PyInt_Init` has popped all of the small ints.
    pub fn small_ints_done(&self) -> bool {
        self.small.len() == (NSMALLNEGINTS + NSMALLPOSINTS) as usize
    }

    /// The address of small int `v`, once `_PyInt_Init` has made it.
    pub fn small_int(&self, v: i64) -> Option<Addr> {
        let i = usize::try_from(v + NSMALLNEGINTS).ok()?;
        self.small.get(i).map(|&(a, _)| a)
    }

    /// Hands the replayed state to the Python facade (to script what the trace did next).
    pub fn into_python(self) -> crate::interp::Python<TraceHeap> {
        let (addrs, slots) = self.small.into_iter().unzip();
        crate::interp::Python::v2_7_from_state(
            self.platform,
            self.heap,
            self.ints.list,
            self.floats.list,
            SmallInts::py2_given(addrs, slots),
        )
    }

    /// Applies one event (the `index`-th of the trace).
    ///
    /// # Errors
    /// `CheckError::Model` when the trace asks the model something it refuses (a push of
    /// an address that is not a live object).
    pub fn apply(&mut self, ev: &Event, index: u64) -> Result<(), CheckError> {
        self.report.events += 1;
        let model_err = |source| CheckError::Model {
            event: index,
            line: ev.line,
            source,
        };
        match ev.kind {
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
                let got = match kind {
                    FreeListKind::Int => pop(&mut self.ints.list),
                    FreeListKind::Float => pop(&mut self.floats.list),
                };
                let (slot, got) = got.map_err(model_err)?;
                if kind == FreeListKind::Int && !self.small_ints_done() {
                    self.small.push((got, slot));
                }
                let ok = self.report.compare(index, ev.line, addr.0, got.0, || {
                    format!("{kind:?} value {value}: the model popped its free-list head {got}")
                });
                if !ok && !self.keep_going {
                    return Ok(());
                }
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

fn pop<T: BlockType>(
    l: &mut FreeList<SharedHeap<TraceHeap>, T>,
) -> Result<(Slot, Addr), crate::error::AllocError> {
    // On an empty list the trace would have shown a B line first: TraceHeap refuses.
    l.alloc()
}

/// Replays the trace at `path` through the free-list models and compares every I/i
/// address and every K/X/L line. pymalloc events are counted, not checked.
///
/// # Errors
/// An unreadable or malformed trace; a push of an address that is not live.
pub fn check(path: &Path, opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    let mut reader = Pyrec27Reader::open(path)?;
    let mut replay = Py27Replay::new(Platform::linux_x86_64(), opts.keep_going);
    let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_message("replaying");
        b
    });
    let mut index = 0u64;
    while let Some(ev) = reader.next_event()? {
        replay.apply(&ev, index)?;
        index += 1;
        if let Some(b) = &bar {
            if index % 65536 == 0 {
                b.set_position(index);
            }
        }
        if replay.report.first_divergence.is_some() && !opts.keep_going {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(replay.report)
}
