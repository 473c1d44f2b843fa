//! The one interface every general allocator model implements.
//!
//! pymalloc, each system malloc and the baselines are [`Allocator`]s, so trace replay,
//! comparison and the benchmarks are written once. The layers stack by ownership, as in
//! Heap Layers: `Pymalloc<Glibc>` owns the glibc model it falls through to.

use crate::addr::Addr;
use crate::error::AllocError;
use crate::vm::AddressSpace;

/// Footprint figures every model can report from its own state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Bytes requested by live allocations (the sum of the sizes asked for).
    pub live_bytes: u64,
    /// Live allocations.
    pub live_blocks: u64,
    /// Bytes the model has taken from the level below (heap extent + mappings).
    pub mapped_bytes: u64,
    /// Largest `live_bytes` seen.
    pub peak_live_bytes: u64,
    /// Largest `mapped_bytes` seen.
    pub peak_mapped_bytes: u64,
}

impl Stats {
    /// A block of `req` requested bytes handed out: `live_blocks` and `live_bytes` count
    /// it, `peak_live_bytes` follows.
    #[inline(always)]
    pub fn note_alloc(&mut self, req: u64) {
        self.live_bytes += req;
        self.live_blocks += 1;
        self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
    }

    /// A block of `req` requested bytes given back.
    #[inline(always)]
    pub fn note_free(&mut self, req: u64) {
        self.live_bytes -= req;
        self.live_blocks -= 1;
    }
}

/// A general-purpose allocator model: `malloc`, `free`, `realloc`, `calloc`.
///
/// # Errors
/// Every method returns an [`AllocError`] for input the real allocator would crash
/// on or diagnose: a free of an address that is not live, a double free, an absurd size.
pub trait Allocator {
    /// A short name for reports (`glibc-2.36`, `pymalloc-3.11`, `bump`).
    fn name(&self) -> &'static str;

    /// `malloc(size)`.
    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError>;

    /// `free(addr)`; `free(NULL)` is a no-op.
    fn free(&mut self, addr: Addr) -> Result<(), AllocError>;

    /// `realloc(addr, size)`; `realloc(NULL, n)` is `malloc(n)`.
    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError>;

    /// `calloc(nelem, elsize)`: by default `malloc` of the product, refused when it overflows.
    fn calloc(&mut self, nelem: usize, elsize: usize) -> Result<Addr, AllocError> {
        match nelem.checked_mul(elsize) {
            Some(n) => self.malloc(n),
            None => Err(AllocError::TooLarge {
                size: u64::MAX,
                limit: usize::MAX as u64,
                model: self.name(),
            }),
        }
    }

    /// Footprint figures from the model's own state.
    fn stats(&self) -> Stats;

    /// The address space this allocator maps from, when it sits on one (the system
    /// allocators): a layer above maps its own regions there (pymalloc's arenas through
    /// [`SystemArenas`](crate::pymalloc::source::SystemArenas)), so a whole stack shares one
    /// kernel. `None` for models with no address space (pinned answers, baselines).
    fn address_space_mut(&mut self) -> Option<&mut AddressSpace> {
        None
    }
}

impl<A: Allocator + ?Sized> Allocator for Box<A> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        (**self).malloc(size)
    }
    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        (**self).free(addr)
    }
    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        (**self).realloc(addr, size)
    }
    fn calloc(&mut self, nelem: usize, elsize: usize) -> Result<Addr, AllocError> {
        (**self).calloc(nelem, elsize)
    }
    fn stats(&self) -> Stats {
        (**self).stats()
    }
    fn address_space_mut(&mut self) -> Option<&mut AddressSpace> {
        (**self).address_space_mut()
    }
}
