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
//! Invariants: `replayed + context + failed + free_null == events`;
//! `|moved| == |targets|`; a free or realloc of a recorded address that is not live is
//! an error naming the event.

use super::driver::{Flow, Replay};
use super::error::Cause;
use super::ReplayReport;
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::trace::{Domain, Event, EventKind};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for addresses: one multiply and a fold.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // The product's high bits are well mixed, its low bits are not (addresses are
        // 16-aligned): fold the high half down, since the table indexes by the low bits.
        let h = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

type AddrMap = HashMap<u64, u64, BuildHasherDefault<AddrHasher>>;
type AddrSet = HashSet<u64, BuildHasherDefault<AddrHasher>>;
/// A replay of any trace through one model, mapping recorded addresses to the model's.
pub(crate) struct Mapped<'a> {
    model: &'a mut dyn Allocator,
    moved: AddrMap, // recorded -> model address, for live blocks the model placed elsewhere
    targets: AddrSet, // the model addresses in `moved` (so an unmoved address can be told from them)
    report: ReplayReport, // the figures so far
    skip_raw: bool,   // leave top-level `R` calls out
}

impl Mapped<'_> {
    /// A request returned `rec` in the recording and `got` in the model.
    fn born(&mut self, rec: Addr, got: Addr) -> Result<(), Cause> {
        let still_live = if rec == got {
            self.report.same_address += 1;
            !self.moved.is_empty() && self.moved.contains_key(&rec.0)
        } else {
            self.targets.insert(got.0);
            self.moved.insert(rec.0, got.0).is_some()
        };
        if still_live {
            return Err(Cause::StillLive { addr: rec });
        }
        Ok(())
    }

    /// The model address of the live block recorded at `rec`, taken out of the maps.
    fn lookup(&mut self, op: &'static str, rec: Addr) -> Result<Addr, Cause> {
        if !self.moved.is_empty() {
            if let Some(m) = self.moved.remove(&rec.0) {
                self.targets.remove(&m);
                return Ok(Addr(m));
            }
            if self.targets.contains(&rec.0) {
                return Err(Self::never(op, rec));
            }
        }
        Ok(rec)
    }

    fn never(op: &'static str, rec: Addr) -> Cause {
        Cause::NeverAllocated { op, addr: rec }
    }

    /// The model refused to free or realloc `m`, the block recorded at `rec`: when it says
    /// the block is not live, the recording never allocated it (or freed it already).
    fn refused(&self, op: &'static str, rec: Addr, err: AllocError) -> Cause {
        match err {
            AllocError::NotLive { .. }
            | AllocError::DoubleFree { .. }
            | AllocError::Corrupt { .. } => Self::never(op, rec),
            source => Cause::Model(source),
        }
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
            EventKind::Free { domain, addr } if replayed(domain) => self.free_like(addr, "free")?,
            EventKind::ClearFree { addr, .. } => self.free_like(addr, "free")?,
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
                    self.free_like(old, "realloc")?
                } else {
                    let m_old = self.lookup("realloc", old)?;
                    let got = match self.model.realloc(m_old, size_of(size)) {
                        Ok(a) => a,
                        Err(err) => return Err(self.refused("realloc", old, err)),
                    };
                    self.report.replayed += 1;
                    self.born(new, got)?;
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
        self.born(rec, got)
    }

    fn free_like(&mut self, rec: Addr, op: &'static str) -> Result<(), Cause> {
        if rec.is_null() {
            self.report.free_null += 1;
            return Ok(());
        }
        let m = self.lookup(op, rec)?;
        if let Err(err) = self.model.free(m) {
            return Err(self.refused(op, rec, err));
        }
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
            moved: AddrMap::default(),
            targets: AddrSet::default(),
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
        self.event(ev, self.skip_raw)?;
        Ok(Flow::Next)
    }
}
