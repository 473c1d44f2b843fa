//! Arenas pinned from a recording: the `A size addr` lines nested in a call are the
//! addresses `_PyObject_Arena.alloc` (obmalloc.c's `_PyObject_ArenaMmap`) returned.
//!
//! ```text
//!  trace:   A 1048576 7fff77500000   <- push(): queued for the call being replayed
//!           m O 56 7fff77500030      <- Pymalloc::malloc -> new_arena -> alloc_arena
//!                                       = 7fff77500000 (recorded in `mapped`)
//!           F 7fff769cf000 1048576   <- the driver compares it with `unmapped`
//! ```
//! In own-address mode arenas come from the model's address space instead, each paired
//! with the recording's base mapped at the same call, if any.
//! Invariant: every address handed out was queued for the call being replayed
//! (`pending` is emptied by [`PinnedArenas::end_call`]), and every map and unmap of the
//! call is kept in `mapped`/`unmapped` until then, for the driver to compare with the
//! trace's `A` and `F` lines.

use crate::addr::Addr;
use crate::error::AllocError;
use crate::pymalloc::{ArenaSource, Below};
use crate::vm::AddressSpace;
use std::collections::VecDeque;

/// Arena addresses taken from a recording (or, own mode, from an address space).
#[derive(Debug, Clone, Default)]
pub struct PinnedArenas {
    pending: VecDeque<Addr>, // arena bases recorded for the current call, in order
    unmapped: Vec<Addr>,     // arenas the model unmapped during the current call
    mapped: Vec<(Addr, Option<Addr>)>, // arenas mapped during the call: (model base, recorded base)
    own: Option<AddressSpace>, // own-address mode: arenas are mapped from here
    mirror: Option<AddressSpace>, // residency of pinned arenas: each placed here at its base
}

impl PinnedArenas {
    /// Arenas from the recording only.
    pub fn new() -> PinnedArenas {
        PinnedArenas::default()
    }

    /// Arenas from the model's own address space (`vm`), paired with recorded bases.
    pub fn own(vm: AddressSpace) -> PinnedArenas {
        PinnedArenas {
            own: Some(vm),
            ..PinnedArenas::default()
        }
    }

    /// Tracks the residency of pinned arenas: each is also placed at its recorded base in
    /// an address space of its own, where pymalloc's writes make pages resident and an
    /// unmap gives them back (own mode tracks in its address space already).
    pub fn track_residency(&mut self) {
        if self.own.is_none() && self.mirror.is_none() {
            let page = crate::replay::model::RECORDED_PAGE;
            let mut vm = AddressSpace::new(page, 8, Addr(0), Addr(u64::MAX));
            vm.track_residency();
            self.mirror = Some(vm);
        }
    }

    /// Queues a recorded arena base (an `A` line) for the call being replayed.
    pub fn push(&mut self, recorded: Addr) {
        self.pending.push_back(recorded);
    }

    /// Arenas mapped during the current call: (model base, recorded base if any).
    pub fn mapped(&self) -> &[(Addr, Option<Addr>)] {
        &self.mapped
    }

    /// Arenas unmapped during the current call, in order.
    pub fn unmapped(&self) -> &[Addr] {
        &self.unmapped
    }

    /// True when recorded bases are queued that no map has used.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// True when the current call mapped and unmapped nothing.
    #[inline(always)]
    pub fn is_quiet(&self) -> bool {
        self.mapped.is_empty() && self.unmapped.is_empty()
    }

    /// Ends the current call: forgets its queue and maps; gives back its unmaps.
    pub fn end_call(&mut self) -> Vec<Addr> {
        self.pending.clear();
        self.mapped.clear();
        std::mem::take(&mut self.unmapped)
    }
}

impl ArenaSource for PinnedArenas {
    fn alloc_arena(&mut self, size: u64, _: Below<'_>) -> Result<Addr, AllocError> {
        let recorded = self.pending.pop_front();
        let a = match &mut self.own {
            Some(vm) => vm.mmap(size)?,
            None => recorded.ok_or(AllocError::OutOfAddressSpace {
                what: "arena: the model maps an arena where the recording has no `A` line".into(),
            })?,
        };
        if let Some(vm) = &mut self.mirror {
            vm.map_fixed(a, size)?;
        }
        self.mapped.push((a, recorded));
        Ok(a)
    }
    fn free_arena(&mut self, addr: Addr, size: u64, _: Below<'_>) -> Result<(), AllocError> {
        if let Some(vm) = self.own.as_mut().or(self.mirror.as_mut()) {
            vm.munmap(addr, size)?;
        }
        self.unmapped.push(addr);
        Ok(())
    }
    fn space<'a>(&'a mut self, _: Below<'a>) -> Below<'a> {
        self.own.as_mut().or(self.mirror.as_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    #[test]
    fn maps_only_what_the_recording_queued_and_keeps_the_call() {
        let mut a = PinnedArenas::new();
        assert!(a.alloc_arena(1 << 20, None).is_err(), "nothing queued");
        a.push(Addr(0x7000_0000));
        assert!(a.has_pending());
        assert_eq!(a.alloc_arena(1 << 20, None), Ok(Addr(0x7000_0000)));
        assert!(!a.has_pending() && !a.is_quiet());
        a.free_arena(Addr(0x7000_0000), 1 << 20, None).unwrap();
        assert_eq!(a.mapped(), &[(Addr(0x7000_0000), Some(Addr(0x7000_0000)))]);
        assert_eq!(a.end_call(), vec![Addr(0x7000_0000)]);
        assert!(a.is_quiet());
        let mut own = PinnedArenas::own(Platform::linux_x86_64().address_space());
        own.push(Addr(0x7000_0000));
        let m = own.alloc_arena(1 << 20, None).unwrap();
        assert_eq!(own.mapped(), &[(m, Some(Addr(0x7000_0000)))]);
    }
}
