//! The one event type every trace reader produces.
//!
//! Events are small and `Copy`, so a pre-decoded trace replays without allocation.
//! Addresses are the ones the real process returned (`Addr::NULL` where none was seen).

use crate::addr::Addr;

/// Which CPython allocator domain a call went through (CPython 3's `PyMem_SetAllocator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// `PYMEM_DOMAIN_OBJ` (`O`): pymalloc.
    Obj,
    /// `PYMEM_DOMAIN_MEM` (`M`): pymalloc, same state as `Obj`.
    Mem,
    /// `PYMEM_DOMAIN_RAW` called at top level (`R`).
    Raw,
    /// A raw call nested inside an O/M call (`r`): a fall-through, arena vector growth, …
    RawNested,
    /// A plain C library call (glibc traces, mtrace, ltrace …).
    Libc,
}

/// Which CPython 2 type free list an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FreeListKind {
    /// `intobject.c`: PyIntBlock.
    Int,
    /// `floatobject.c`: PyFloatBlock.
    Float,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventKind {
    /// `malloc(size) = addr`.
    Malloc {
        domain: Domain,
        size: u64,
        addr: Addr,
    },
    /// `calloc(nelem, elsize) = addr`.
    Calloc {
        domain: Domain,
        nelem: u64,
        elsize: u64,
        addr: Addr,
    },
    /// `realloc(old, size) = new`.
    Realloc {
        domain: Domain,
        old: Addr,
        size: u64,
        new: Addr,
    },
    /// `free(addr)`.
    Free { domain: Domain, addr: Addr },
    /// `memalign(align, size) = addr` (and aligned_alloc, posix_memalign).
    Memalign { align: u64, size: u64, addr: Addr },
    /// `valloc(size) = addr`.
    Valloc { size: u64, addr: Addr },
    /// `pvalloc(size) = addr`.
    Pvalloc { size: u64, addr: Addr },
    /// `mallopt(param, value) = ret`.
    Mallopt { param: i64, value: i64, ret: i64 },
    /// pymalloc mapped an arena of `size` bytes at `addr`.
    ArenaAlloc { size: u64, addr: Addr },
    /// pymalloc unmapped the arena at `addr`.
    ArenaFree { addr: Addr, size: u64 },
    /// A virtual-memory chunk from outside pymalloc (CPython 3.11 frame data stack).
    VirtualAlloc { size: u64, addr: Addr },
    /// Its release.
    VirtualFree { addr: Addr, size: u64 },
    /// A new type free-list block (`B`/`b`) from malloc.
    BlockNew {
        kind: FreeListKind,
        size: u64,
        addr: Addr,
    },
    /// An object popped from a type free list (`I`/`i`); `value` is the int, or the
    /// float's bits.
    ObjPop {
        kind: FreeListKind,
        value: i64,
        addr: Addr,
    },
    /// An object pushed back on a type free list (`D`/`d`).
    ObjPush { kind: FreeListKind, addr: Addr },
    /// ClearFreeList kept the block at `addr`, which holds `live` live objects (`K`/`k`).
    ClearKeep {
        kind: FreeListKind,
        addr: Addr,
        live: u64,
    },
    /// ClearFreeList freed the block at `addr` (`X`/`x`).
    ClearFree { kind: FreeListKind, addr: Addr },
    /// End of ClearFreeList (`L`/`l`).
    ClearDone {
        kind: FreeListKind,
        kept: u64,
        freed: u64,
        live: u64,
        nfree: u64,
        head: Addr,
    },
    /// A phase marker written by the traced program (`# mark …`); `index` counts markers.
    Mark { index: u32 },
}

/// One event and where it was read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The 1-based line of the trace file it was read from (0 when not from a text file).
    pub line: u64,
}
