//! Where arenas come from: `_PyObject_Arena.alloc/free` (obmalloc.c's `_PyObject_ArenaMmap`
//! on Linux), either the model's own address space or addresses pinned from a recording.
//!
//! ```text
//!  Pymalloc --alloc_arena(ARENA_SIZE)--> AddressSpace::mmap   (own: top-down placement)
//!           |------------------------->  SystemArenas         (mmap in the address space the
//!           |                                                  lower allocator sits on: one kernel)
//!           \------------------------->  PinnedArenas         (the trace's `A size addr`)
//! ```
//! Every call gets `below`: the lower allocator's address space, if it has one
//! ([`Allocator::address_space_mut`](crate::alloc::Allocator::address_space_mut)).
//! Invariant of [`PinnedArenas`]: every address handed out was pushed by the replay driver
//! for the event being replayed (`pending` is emptied by each event), and every unmap is
//! recorded in `unmapped` for the driver to compare with the trace's `F` lines.

use crate::addr::Addr;
use crate::error::AllocError;
use crate::vm::AddressSpace;
use std::collections::VecDeque;

/// The arena allocator beneath pymalloc (`PyObjectArenaAllocator`).
pub trait ArenaSource {
    /// Maps a fresh arena of `size` bytes.
    ///
    /// # Errors
    /// When no arena can be had (out of address space, no pinned address left).
    fn alloc_arena(
        &mut self,
        size: u64,
        below: Option<&mut AddressSpace>,
    ) -> Result<Addr, AllocError>;

    /// Unmaps the arena at `addr`.
    ///
    /// # Errors
    /// When `addr` is not an arena of this source.
    fn free_arena(
        &mut self,
        addr: Addr,
        size: u64,
        below: Option<&mut AddressSpace>,
    ) -> Result<(), AllocError>;

    /// The address space the arenas live in, where pymalloc's writes make pages resident
    /// (`None` when arenas are pinned from a recording).
    fn space<'a>(&'a mut self, below: Option<&'a mut AddressSpace>)
        -> Option<&'a mut AddressSpace>;
}

impl ArenaSource for AddressSpace {
    fn alloc_arena(&mut self, size: u64, _: Option<&mut AddressSpace>) -> Result<Addr, AllocError> {
        self.mmap(size)
    }
    fn free_arena(
        &mut self,
        addr: Addr,
        size: u64,
        _: Option<&mut AddressSpace>,
    ) -> Result<(), AllocError> {
        self.munmap(addr, size)
    }
    fn space<'a>(&'a mut self, _: Option<&'a mut AddressSpace>) -> Option<&'a mut AddressSpace> {
        Some(self)
    }
}

/// Arenas mmapped in the address space of the allocator below (`_PyObject_ArenaMmap` and
/// glibc's `sysmalloc` asking the same kernel): `Pymalloc<Glibc, SystemArenas>` is the
/// whole stack of a CPython process, every byte placed by some model.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemArenas;

impl SystemArenas {
    fn none() -> AllocError {
        AllocError::OutOfAddressSpace {
            what: "arena: the allocator below has no address space to map it in".into(),
        }
    }
}

impl ArenaSource for SystemArenas {
    fn alloc_arena(
        &mut self,
        size: u64,
        below: Option<&mut AddressSpace>,
    ) -> Result<Addr, AllocError> {
        below.ok_or_else(Self::none)?.mmap(size)
    }
    fn free_arena(
        &mut self,
        addr: Addr,
        size: u64,
        below: Option<&mut AddressSpace>,
    ) -> Result<(), AllocError> {
        below.ok_or_else(Self::none)?.munmap(addr, size)
    }
    fn space<'a>(
        &'a mut self,
        below: Option<&'a mut AddressSpace>,
    ) -> Option<&'a mut AddressSpace> {
        below
    }
}

/// Arena addresses taken from a recording: the driver pushes the `A` line(s) nested in the
/// call about to be replayed; maps and unmaps are recorded for comparison with the `A` and
/// `F` lines. In own-address mode (`own`), arenas come from the model's address space and
/// each is paired with the recording's base mapped at the same call, if any.
#[derive(Debug, Clone, Default)]
pub struct PinnedArenas {
    /// Arena bases recorded for the current call, in order.
    pub pending: VecDeque<Addr>,
    /// Arenas the model unmapped during the current call, in order.
    pub unmapped: Vec<Addr>,
    /// Arenas the model mapped during the current call: (model base, recorded base).
    pub mapped: Vec<(Addr, Option<Addr>)>,
    /// Own-address mode: the address space arenas are mapped from.
    pub own: Option<AddressSpace>,
}

impl PinnedArenas {
    /// Arenas from the model's own address space (`vm`), paired with recorded bases.
    pub fn own(vm: AddressSpace) -> PinnedArenas {
        PinnedArenas {
            own: Some(vm),
            ..PinnedArenas::default()
        }
    }
}

impl ArenaSource for PinnedArenas {
    fn alloc_arena(&mut self, size: u64, _: Option<&mut AddressSpace>) -> Result<Addr, AllocError> {
        let recorded = self.pending.pop_front();
        let a = match &mut self.own {
            Some(vm) => vm.mmap(size)?,
            None => recorded.ok_or(AllocError::OutOfAddressSpace {
                what: "arena: the model maps an arena where the recording has no `A` line".into(),
            })?,
        };
        self.mapped.push((a, recorded));
        Ok(a)
    }
    fn free_arena(
        &mut self,
        addr: Addr,
        size: u64,
        _: Option<&mut AddressSpace>,
    ) -> Result<(), AllocError> {
        if let Some(vm) = &mut self.own {
            vm.munmap(addr, size)?;
        }
        self.unmapped.push(addr);
        Ok(())
    }
    fn space<'a>(&'a mut self, _: Option<&'a mut AddressSpace>) -> Option<&'a mut AddressSpace> {
        self.own.as_mut()
    }
}
