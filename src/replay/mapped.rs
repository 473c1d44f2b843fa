//! Any trace through any model: the recorded address of each live block maps to the
//! model's, so a free finds the model's block whatever the model chose.
//!
//! ```text
//!   event ──> Mapped::event ──malloc/free/realloc/calloc──> dyn Allocator
//!               recorded address ──moved──> model address (only where they differ)
//! ```
//! Which events reach the model: every top-level request (`O`, `M`, `R`, plain C
//! library calls; `R` can be left out). Calls nested inside another (`r`), pymalloc's own
//! arena and data-stack mappings (`A F V W`), free-list pops and pushes and markers are
//! consequences of a top-level call, so they are counted, not replayed. `memalign`,
//! `valloc`, `pvalloc` are replayed as `malloc` of their size (the [`Allocator`] trait has
//! no aligned call); a CPython 2 `B`/`b` block is a `malloc`, its `X`/`x` a `free`.
//! Invariants: `replayed + context + failed + free_null == events`; `moved` holds exactly
//! the live blocks whose model address differs from the recorded one, in 12-byte slots
//! (see `table`). Whether the recording itself is consistent (a free of a live block, no
//! live address returned twice) the driver checks before each step, so an address not in
//! `moved` is a live block the model placed where the recording did.

use super::driver::{Flow, Replay};
use super::error::Cause;
use super::table::AddrTable;
use super::ReplayReport;
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::trace::{Domain, Event, EventKind};

/// A replay of any trace through one model, mapping recorded addresses to the model's.
pub(crate) struct Mapped<'a> {
    model: &'a mut dyn Allocator,
    moved: AddrTable, // recorded -> model address, for live blocks the model placed elsewhere
    report: ReplayReport, // the figures so far
    skip_raw: bool,   // leave top-level `R` calls out
}

impl Mapped<'_> {
    /// A request returned `rec` in the recording and `got` in the model (the driver has
    /// checked that `rec` was not live).
    #[inline]
    fn born(&mut self, rec: Addr, got: Addr) {
        if rec == got {
            self.report.same_address += 1;
        } else {
            self.moved.insert(rec.0, got.0);
        }
    }

    /// The model address of the live block recorded at `rec`, taken out of the map: the
    /// recorded address itself when the model placed the block there. (A free of an
    /// address the recording never returned the driver has already refused; the model is
    /// still asked, for its own diagnosis such as glibc's double-free message.)
    #[inline]
    fn lookup(&mut self, rec: Addr) -> Addr {
        if self.moved.is_empty() {
            return rec;
        }
        self.moved.remove(rec.0).map_or(rec, Addr)
    }

    fn event(&mut self, e: &Event, skip_raw: bool) -> Result<(), Cause> {
        let replayed = |d: Domain| match d {
            Domain::RawNested => false,
            Domain::Raw => !skip_raw,
            _ => true,
        };
        let size_of = |s: u64| usize::try_from(s).unwrap_or(usize::MAX);
        match e.kind {
            EventKind::Malloc { domain, size, addr } if replayed(domain) => {
                self.malloc_like(addr, |m| m.malloc(size_of(size)))?
            }
            EventKind::Memalign { size, addr, .. }
            | EventKind::Valloc { size, addr }
            | EventKind::Pvalloc { size, addr }
            | EventKind::BlockNew { size, addr, .. } => {
                self.malloc_like(addr, |m| m.malloc(size_of(size)))?
            }
            EventKind::Calloc {
                domain,
                nelem,
                elsize,
                addr,
            } if replayed(domain) => {
                self.malloc_like(addr, |m| m.calloc(size_of(nelem), size_of(elsize)))?
            }
            EventKind::Free { domain, addr } if replayed(domain) => self.free_like(addr)?,
            EventKind::ClearFree { addr, .. } => self.free_like(addr)?,
            EventKind::Realloc {
                domain,
                old,
                size,
                new,
            } if replayed(domain) => {
                if old.is_null() {
                    self.malloc_like(new, |m| m.realloc(Addr::NULL, size_of(size)))?
                } else if new.is_null() && size > 0 {
                    self.report.failed += 1;
                } else if new.is_null() {
                    // realloc(p, 0) that freed p (glibc)
                    self.free_like(old)?
                } else {
                    let m_old = self.lookup(old);
                    let got = self.model.realloc(m_old, size_of(size))?;
                    self.report.replayed += 1;
                    self.born(new, got);
                }
            }
            EventKind::ArenaAlloc { .. } => {
                self.report.arenas_mapped += 1;
                self.report.context += 1;
            }
            _ => self.report.context += 1,
        }
        Ok(())
    }

    fn malloc_like(
        &mut self,
        rec: Addr,
        call: impl FnOnce(&mut dyn Allocator) -> Result<Addr, AllocError>,
    ) -> Result<(), Cause> {
        if rec.is_null() {
            self.report.failed += 1;
            return Ok(());
        }
        let got = call(self.model)?;
        self.report.replayed += 1;
        self.born(rec, got);
        Ok(())
    }

    fn free_like(&mut self, rec: Addr) -> Result<(), Cause> {
        if rec.is_null() {
            self.report.free_null += 1;
            return Ok(());
        }
        let m = self.lookup(rec);
        self.model.free(m)?;
        self.report.replayed += 1;
        Ok(())
    }
}

impl<'a> Mapped<'a> {
    /// A replay through `model` (top-level `R` calls left out when `skip_raw`).
    pub(crate) fn new(model: &'a mut dyn Allocator, skip_raw: bool) -> Mapped<'a> {
        Mapped {
            report: ReplayReport {
                model: model.name().to_string(),
                ..Default::default()
            },
            model,
            moved: AddrTable::default(),
            skip_raw,
        }
    }

    /// The figures, with the model's at the end.
    pub(crate) fn into_report(self) -> ReplayReport {
        let mut r = self.report;
        r.moved_live = self.moved.len() as u64;
        r.model_stats = self.model.stats();
        r
    }
}

impl Replay for Mapped<'_> {
    #[inline]
    fn step(&mut self, _index: u64, ev: &Event) -> Result<Flow, Cause> {
        match self.event(ev, self.skip_raw) {
            Ok(()) => Ok(Flow::Next),
            Err(Cause::Model(e)) => Err(Cause::unservable(&ev.kind, e)),
            Err(c) => Err(c),
        }
    }
}
