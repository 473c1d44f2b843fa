//! Where arenas come from: `_PyObject_Arena.alloc/free` (obmalloc.c's `_PyObject_ArenaMmap`
//! on Linux), either the model's own address space or addresses pinned from a recording.
//!
//! ```text
//!  Pymalloc --alloc_arena(ARENA_SIZE)--> AddressSpace::mmap   (own: top-down placement)
//!           \------------------------->  replay::pinned::PinnedArenas (the trace's `A size addr`)
//! ```

use crate::addr::Addr;
use crate::error::AllocError;
use crate::vm::AddressSpace;

/// The arena allocator beneath pymalloc (`PyObjectArenaAllocator`).
pub trait ArenaSource {
    /// Maps a fresh arena of `size` bytes.
    ///
    /// # Errors
    /// When no arena can be had (out of address space, no pinned address left).
    fn alloc_arena(&mut self, size: u64) -> Result<Addr, AllocError>;

    /// Unmaps the arena at `addr`.
    ///
    /// # Errors
    /// When `addr` is not an arena of this source.
    fn free_arena(&mut self, addr: Addr, size: u64) -> Result<(), AllocError>;
}

impl ArenaSource for AddressSpace {
    fn alloc_arena(&mut self, size: u64) -> Result<Addr, AllocError> {
        self.mmap(size)
    }
    fn free_arena(&mut self, addr: Addr, size: u64) -> Result<(), AllocError> {
        self.munmap(addr, size)
    }
}
