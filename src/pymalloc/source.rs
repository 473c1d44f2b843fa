//! Where arenas come from: `_PyObject_Arena.alloc/free` (obmalloc.c's `_PyObject_ArenaMmap`
//! on Linux), either the model's own address space or addresses pinned from a recording.
//!
//! ```text
//!  Pymalloc --alloc_arena(ARENA_SIZE)--> AddressSpace::mmap   (own: top-down placement)
//!           |------------------------->  SystemArenas         (mmap in the address space the
//!           |                                                  lower allocator sits on: one kernel)
//!           \------------------------->  replay::pinned::PinnedArenas (the trace's `A size addr`)
//! ```
//! Every call gets `below`: the lower allocator's address space, if it has one
//! ([`Allocator::address_space_mut`](crate::alloc::Allocator::address_space_mut)).

use crate::addr::Addr;
use crate::error::AllocError;
use crate::vm::AddressSpace;

/// The lower allocator's address space, if it has one, as every [`ArenaSource`] call gets
/// it.
pub type Below<'a> = Option<&'a mut AddressSpace>;

/// The arena allocator beneath pymalloc (`PyObjectArenaAllocator`).
pub trait ArenaSource {
    /// Maps a fresh arena of `size` bytes.
    ///
    /// # Errors
    /// When no arena can be had (out of address space, no pinned address left).
    fn alloc_arena(&mut self, size: u64, below: Below<'_>) -> Result<Addr, AllocError>;

    /// Unmaps the arena at `addr`.
    ///
    /// # Errors
    /// When `addr` is not an arena of this source.
    fn free_arena(&mut self, addr: Addr, size: u64, below: Below<'_>) -> Result<(), AllocError>;

    /// The address space the arenas live in, where pymalloc's writes make pages resident
    /// (`None` when arenas are pinned from a recording).
    fn space<'a>(&'a mut self, below: Below<'a>) -> Below<'a>;
}

impl ArenaSource for AddressSpace {
    fn alloc_arena(&mut self, size: u64, _: Below<'_>) -> Result<Addr, AllocError> {
        self.mmap(size)
    }
    fn free_arena(&mut self, addr: Addr, size: u64, _: Below<'_>) -> Result<(), AllocError> {
        self.munmap(addr, size)
    }
    fn space<'a>(&'a mut self, _: Below<'a>) -> Below<'a> {
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
    fn alloc_arena(&mut self, size: u64, below: Below<'_>) -> Result<Addr, AllocError> {
        below.ok_or_else(Self::none)?.mmap(size)
    }
    fn free_arena(&mut self, addr: Addr, size: u64, below: Below<'_>) -> Result<(), AllocError> {
        below.ok_or_else(Self::none)?.munmap(addr, size)
    }
    fn space<'a>(&'a mut self, below: Below<'a>) -> Below<'a> {
        below
    }
}
