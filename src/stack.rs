//! Whole-stack models: a CPython process's allocators composed on one address space, so
//! that every byte is placed by some model and the footprint can be held to VmRSS.
//!
//! ```text
//!  cpython-3.11/glibc-2.36           O/M calls ─▶ pymalloc ─(0, > 512 B; arenas vector; radix nodes)─▶ glibc
//!                                    R calls, C library calls ───────────────────────────────────────▶ glibc
//!                                    arenas (mmap) ─┐            data-stack chunks (V/W: mmap) ─┐        │ brk, mmap
//!                                                   ▼                                           ▼        ▼
//!                                    ┌──────────────────────── one AddressSpace ─────────────────────────┐
//!  glibc-2.36                        every call ─▶ glibc (the program under PYTHONMALLOC=malloc)
//!  cpython-2.7.18/glibc-2.36         2.7 pymalloc over glibc; PyIntBlock / PyFloatBlock (B/b) from glibc
//!  cpython-3.11                      pymalloc's share alone: arenas in an address space, fall-through to a bump
//!  mimalloc-2.1.2                    O/M calls ─▶ mimalloc 2.1.2 (Mimalloc<OwnOs>: its 1 GiB arena at its own hint,
//!  (= mimalloc-2.1.2/glibc-2.36)        32 MiB segments, pages); R calls, C library calls, data-stack chunks ─▶ glibc,
//!                                    as CPython 3.13 runs under PYTHONMALLOC=mimalloc
//! ```
//! A model name is layers joined by `/`, the upper first; a pymalloc layer takes what-if
//! overrides after a colon (`cpython-3.11:pool=64KiB,arena=4MiB/glibc-2.36`, see
//! [`whatif`](crate::pymalloc::whatif)). Names are read by `replay::ModelSpec::parse`
//! (the one reader of model names), which picks one of the constructors below
//! (`ModelSpec::stack`). On Linux x86-64 (setarch -R bases).
//!
//! Every call reaches the layers through [`Layers`], implemented by each whole stack's
//! concrete type: [`Stack::visit`] matches the variant once and hands the layers to a
//! loop compiled for them (`compare` replays a batch so), and each [`Stack`] call is that
//! match around one call.
//!
//! Footprint, read after every call: `mapped = brk extent + Σ live mappings`,
//! `resident = pages written and not given back` (see [`vm`](crate::vm)); both are the
//! address space's, so they cover every layer at once. mimalloc maps from the OS itself
//! (its own hints, apart from glibc's mappings), so a mimalloc stack adds its share:
//! `mapped += arenas with their descriptors + OS-mapped segments`, `resident +=
//! Mimalloc::resident_bytes()` (the OS pages mimalloc wrote — descriptors, segment
//! headers, every page's blocks up to its capacity — and has not purged or unmapped; a
//! freed span stays resident until its purge, which in a model of its own address space
//! follows `mimalloc::Purge::Due`), and its mmap/munmap calls to glibc's.
//!
//! Waste by cause ([`Stack::waste`], walked from the models' state on demand; mimalloc's
//! from [`Mimalloc::usage`](crate::mimalloc::Mimalloc::usage)):
//! `live - outside + rounding + headers + alignment + free_blocks + empty_pools
//!  + free_arenas + free_chunks + metadata + other_maps == mapped`, where the parts come from pymalloc's
//! arenas ([`ArenaUse`](crate::pymalloc::stats::ArenaUse)) and glibc's chunks
//! ([`HeapUse`](crate::sysmalloc::glibc::HeapUse)) and `mapped` from the address space.

use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::mimalloc::{Mimalloc, OwnOs};
use crate::platform::Platform;
use crate::pymalloc::{Pymalloc, PymallocParams, SystemArenas};
use crate::sysmalloc::glibc::{Glibc, GlibcParams};
use crate::sysmalloc::Bump;
use crate::vm::{AddressSpace, ProcessLayout, Syscalls};

/// Which layer a call enters at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `PyObject_*` / `PyMem_*` (pymalloc when the stack has it).
    Object,
    /// `PyMem_Raw*`, the C library, the 2.7 int/float blocks: the system allocator.
    System,
}

/// A stack's mapped bytes by what holds them (see the module's equation). Internal waste:
/// `rounding`, `headers`, `alignment`; external: `free_blocks`, `empty_pools`,
/// `free_arenas`, `free_chunks`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Waste {
    /// Size-class rounding: pymalloc's block size beyond the request, and the pool ends
    /// no block of the class fits (obmalloc's "quantization").
    pub rounding: u64,
    /// pymalloc's pool headers and glibc's chunk headers of live blocks.
    pub headers: u64,
    /// glibc's rounding of requests to MALLOC_ALIGNMENT / MINSIZE / pages and its heap's
    /// front gap; pymalloc's arenas that are not pool-aligned.
    pub alignment: u64,
    /// Free blocks in used pools.
    pub free_blocks: u64,
    /// Empty and never-carved pools of arenas in use.
    pub empty_pools: u64,
    /// Arenas with no used pool, still mapped.
    pub free_arenas: u64,
    /// glibc's free chunks and its top chunk.
    pub free_chunks: u64,
    /// The allocators' own blocks: glibc's tcache struct, pymalloc's arena vector and
    /// radix-tree nodes (glibc blocks no program call asked for).
    pub metadata: u64,
    /// Mappings no allocator made (CPython's data-stack chunks).
    pub other_maps: u64,
    /// Live bytes held outside this address space, so not in `mapped` (`cpython-3.11`
    /// alone: what pymalloc passes to its bump baseline); subtracted from `live` in the
    /// equation.
    pub outside: u64,
}

impl Waste {
    /// Every part but `other_maps`: what the allocators' own walks account for.
    pub fn accounted(&self) -> u64 {
        self.rounding
            + self.headers
            + self.alignment
            + self.free_blocks
            + self.empty_pools
            + self.free_arenas
            + self.free_chunks
            + self.metadata
    }

    /// Internal waste: rounding, headers, alignment.
    pub fn internal(&self) -> u64 {
        self.rounding + self.headers + self.alignment
    }

    /// External waste: free blocks, empty pools, free arenas, free chunks.
    pub fn external(&self) -> u64 {
        self.free_blocks + self.empty_pools + self.free_arenas + self.free_chunks
    }
}

/// One process's allocators.
#[derive(Debug, Clone)]
pub enum Stack {
    /// pymalloc over glibc.
    PymallocGlibc(Box<Pymalloc<Glibc, SystemArenas>>),
    /// glibc alone.
    Glibc(Box<Glibc>),
    /// pymalloc alone.
    Pymalloc(Box<Pymalloc<Bump, AddressSpace>>),
    /// mimalloc for O/M, glibc for RAW and the C library (CPython 3.13 under
    /// `PYTHONMALLOC=mimalloc`).
    MimallocGlibc(Box<Mimalloc<OwnOs>>, Box<Glibc>),
}

impl Stack {
    /// pymalloc of `pp` over glibc `gp` on one address space (`cpython-3.11/glibc-2.36`),
    /// residency tracked.
    pub fn new_pymalloc_glibc(pp: PymallocParams, gp: GlibcParams) -> Stack {
        let p = Platform::linux_x86_64();
        let mut m = Pymalloc::new(pp, Glibc::new(gp, p.address_space()), SystemArenas);
        m.track_residency();
        Stack::PymallocGlibc(Box::new(m))
    }

    /// glibc `gp` alone (`glibc-2.36`: the program under `PYTHONMALLOC=malloc`), residency
    /// tracked.
    pub fn new_glibc(gp: GlibcParams) -> Stack {
        let mut vm = Platform::linux_x86_64().address_space();
        vm.track_residency();
        Stack::Glibc(Box::new(Glibc::new(gp, vm)))
    }

    /// pymalloc of `pp` alone (`cpython-3.11`: arenas in its own address space,
    /// fall-through to a bump baseline), residency tracked.
    pub fn new_pymalloc(pp: PymallocParams) -> Stack {
        let p = Platform::linux_x86_64();
        let mut m = Pymalloc::new(pp, Bump::new(p.heap_start, 16), p.address_space());
        m.track_residency();
        Stack::Pymalloc(Box::new(m))
    }

    /// mimalloc 2.1.2 for the O and M domains over glibc `gp` for RAW (`mimalloc-2.1.2`,
    /// `mimalloc-2.1.2/glibc-2.36`), glibc's residency tracked. mimalloc's own mappings
    /// (its arena at its hint, unhinted ones) are kept below glibc's mmap area.
    pub fn new_mimalloc_glibc(gp: GlibcParams) -> Stack {
        let p = Platform::linux_x86_64();
        let mut vm = p.address_space();
        vm.track_residency();
        let os = OwnOs::new(
            OwnOs::PINNED_RANDOM_BASE,
            p.mmap_top.0 - MIMALLOC_BELOW_GLIBC,
        );
        Stack::MimallocGlibc(Box::new(Mimalloc::new(os)), Box::new(Glibc::new(gp, vm)))
    }

    /// The whole stack as one allocator: every call enters at the top layer (what
    /// `pyalloc replay` does with any model).
    pub fn into_allocator(self) -> Box<dyn Allocator> {
        match self {
            Stack::PymallocGlibc(m) => m,
            Stack::Glibc(g) => g,
            Stack::Pymalloc(m) => m,
            Stack::MimallocGlibc(m, _) => m,
        }
    }

    /// Runs `v` on the stack's layers as their concrete type (the variant matched once,
    /// here, not at every call `v` makes).
    #[inline]
    pub fn visit<V: Visit>(&mut self, v: V) -> V::Out {
        match self {
            Stack::PymallocGlibc(m) => v.on(m.as_mut()),
            Stack::Glibc(g) => v.on(g.as_mut()),
            Stack::Pymalloc(m) => v.on(m.as_mut()),
            Stack::MimallocGlibc(m, g) => v.on(&mut MiGlibc(m, g)),
        }
    }

    /// `malloc(size)` on `route`.
    ///
    /// # Errors
    /// The model's.
    pub fn malloc(&mut self, route: Route, size: u64) -> Result<Addr, AllocError> {
        on_layers!(self, l => Layers::malloc(l, route, size))
    }

    /// `calloc(nelem, elsize)` on `route`.
    ///
    /// # Errors
    /// The model's.
    pub fn calloc(&mut self, route: Route, nelem: u64, elsize: u64) -> Result<Addr, AllocError> {
        on_layers!(self, l => Layers::calloc(l, route, nelem, elsize))
    }

    /// `realloc(addr, size)` on `route`.
    ///
    /// # Errors
    /// The model's.
    pub fn realloc(&mut self, route: Route, addr: Addr, size: u64) -> Result<Addr, AllocError> {
        on_layers!(self, l => Layers::realloc(l, route, addr, size))
    }

    /// `free(addr)` on `route`.
    ///
    /// # Errors
    /// The model's.
    pub fn free(&mut self, route: Route, addr: Addr) -> Result<(), AllocError> {
        on_layers!(self, l => Layers::free(l, route, addr))
    }

    /// `memalign(align, size)` of the system allocator (a plain malloc where it has none).
    ///
    /// # Errors
    /// The model's.
    pub fn memalign(&mut self, align: u64, size: u64) -> Result<Addr, AllocError> {
        on_layers!(self, l => Layers::memalign(l, align, size))
    }

    /// `mallopt(param, value)` of glibc (ignored where there is none).
    pub fn mallopt(&mut self, param: i64, value: i64) {
        on_layers!(self, l => Layers::mallopt(l, param, value))
    }

    /// A mapping of `size` bytes outside the allocators (CPython's data-stack chunks:
    /// `_PyObject_VirtualAlloc`); the program writes it.
    ///
    /// # Errors
    /// Out of address space.
    pub fn map(&mut self, size: u64) -> Result<Addr, AllocError> {
        on_layers!(self, l => Layers::map(l, size))
    }

    /// `munmap` of a mapping made by [`map`](Self::map).
    ///
    /// # Errors
    /// When no such mapping is live.
    pub fn unmap(&mut self, addr: Addr, size: u64) -> Result<(), AllocError> {
        on_layers!(self, l => Layers::unmap(l, addr, size))
    }

    /// The address space every layer but mimalloc maps from.
    #[inline]
    pub fn space(&self) -> &AddressSpace {
        match self {
            Stack::PymallocGlibc(m) => m.lower().address_space(),
            Stack::Glibc(g) => g.address_space(),
            Stack::Pymalloc(m) => m.source(),
            Stack::MimallocGlibc(_, g) => g.address_space(),
        }
    }

    /// Address space held from the system: the brk extent and every live mapping
    /// (mimalloc's arenas and OS-mapped segments too).
    #[inline]
    pub fn mapped(&self) -> u64 {
        self.footprint().0
    }

    /// Bytes of pages written and not given back.
    #[inline]
    pub fn resident(&self) -> u64 {
        self.footprint().1
    }

    /// `(mapped, resident)` in one look at the stack (what `compare` reads after every
    /// event).
    #[inline]
    pub fn footprint(&self) -> (u64, u64) {
        match self {
            Stack::PymallocGlibc(m) => space_footprint(m.lower().address_space()),
            Stack::Glibc(g) => space_footprint(g.address_space()),
            Stack::Pymalloc(m) => space_footprint(m.source()),
            Stack::MimallocGlibc(m, g) => mimalloc_footprint(m, g),
        }
    }

    /// Puts a fresh stack in the shape of a recorded process ([`ProcessLayout`]: its
    /// heap at the recorded break, its other mappings reserved), before any call.
    ///
    /// # Errors
    /// The stack has made a call already, or the layout's mappings overlap.
    pub fn apply_layout(&mut self, layout: &ProcessLayout) -> Result<(), AllocError> {
        let fresh = |g: &mut Glibc| -> Result<(), AllocError> {
            let mut vm = g.address_space().clone();
            vm.apply_layout(layout)?;
            g.reset(vm);
            Ok(())
        };
        match self {
            Stack::PymallocGlibc(m) => fresh(m.lower_mut()),
            Stack::Glibc(g) => fresh(g),
            // mimalloc maps from its own hints, apart: only glibc takes the layout
            Stack::MimallocGlibc(_, g) => fresh(g),
            // pymalloc alone: its arenas go around the recorded mappings; no brk heap
            Stack::Pymalloc(m) => m.source_mut().reserve_maps(&layout.maps),
        }
    }

    /// Waste by cause when the program holds `live` bytes (its own count: requests made
    /// and not freed). For `cpython-3.11` alone, whose fall-through goes to a bump baseline
    /// outside this address space, that part of `live` is `outside`.
    pub fn waste(&self, live: u64) -> Waste {
        let mapped = self.mapped();
        let pymalloc = |a: crate::pymalloc::stats::ArenaUse| Waste {
            rounding: a.allocated - a.requested + a.quantization,
            headers: a.pool_headers,
            alignment: a.arena_alignment,
            free_blocks: a.available,
            empty_pools: a.empty_pools,
            free_arenas: a.free_arenas,
            ..Waste::default()
        };
        let glibc = |w: &mut Waste, g: crate::sysmalloc::glibc::HeapUse, program: u64| {
            w.headers += g.headers;
            w.alignment += g.alignment;
            w.free_chunks += g.free_chunks + g.top;
            w.metadata += g.metadata + g.requested.saturating_sub(program);
        };
        let (mut w, in_space) = match self {
            Stack::PymallocGlibc(m) => {
                let a = m.arena_use();
                let mut w = pymalloc(a);
                let g = m.lower().heap_use();
                glibc(&mut w, g, live.saturating_sub(a.requested));
                (w, a.total + g.total)
            }
            Stack::Glibc(g) => {
                let mut w = Waste::default();
                let u = g.heap_use();
                glibc(&mut w, u, live);
                (w, u.total)
            }
            Stack::Pymalloc(m) => {
                let a = m.arena_use();
                let mut w = pymalloc(a);
                w.outside = live.saturating_sub(a.requested);
                (w, a.total)
            }
            // mimalloc's mapped bytes by cause (Mimalloc::usage): size-class rounding and
            // page ends, bytes before each page's first block (alignment), free blocks of
            // pages, never-extended page capacity and free spans (empty pools), arena
            // blocks no segment holds (free arenas), segment headers and arena
            // descriptors (metadata)
            Stack::MimallocGlibc(m, g) => {
                let mu = m.usage();
                let mut w = Waste {
                    rounding: mu.rounding,
                    alignment: mu.page_offsets,
                    free_blocks: mu.free_blocks,
                    empty_pools: mu.uncarved + mu.free_spans,
                    free_arenas: mu.unclaimed,
                    metadata: mu.metadata,
                    ..Waste::default()
                };
                let u = g.heap_use();
                glibc(&mut w, u, live.saturating_sub(mu.requested));
                (w, u.total + mu.total)
            }
        };
        w.other_maps = mapped.saturating_sub(in_space);
        w
    }

    /// The mmap / munmap / brk calls made so far.
    /// The mmap / munmap / brk calls made so far (mimalloc's with glibc's).
    pub fn syscalls(&self) -> Syscalls {
        let mut s = self.space().syscalls();
        if let Stack::MimallocGlibc(m, _) = self {
            s.mmap += m.os().mmaps;
            s.munmap += m.os().munmaps;
        }
        s
    }
}

/// `(mapped, resident)` of an address space: the brk extent and every live mapping, the
/// pages written and not given back.
#[inline(always)]
fn space_footprint(vm: &AddressSpace) -> (u64, u64) {
    (vm.heap_bytes() + vm.mapped_bytes(), vm.resident_bytes())
}

/// `(mapped, resident)` of mimalloc over glibc: glibc's address space and mimalloc's own
/// mappings (arenas with their descriptors, OS-mapped segments) and written pages.
#[inline(always)]
fn mimalloc_footprint(m: &Mimalloc<OwnOs>, g: &Glibc) -> (u64, u64) {
    let (mapped, resident) = space_footprint(g.address_space());
    (mapped + m.mapped(), resident + m.resident_bytes())
}

/// A whole stack as one concrete type, for a loop of many calls to be compiled for it:
/// [`Stack::visit`] matches the variant once and hands the layers to a [`Visit`], whose
/// loop then calls these (inlined) instead of matching `(variant, route)` at every call.
/// Every [`Stack`] call goes through these too, so the two cannot disagree.
pub trait Layers {
    /// `malloc(size)` on `route`.
    ///
    /// # Errors
    /// The model's.
    fn malloc(&mut self, route: Route, size: u64) -> Result<Addr, AllocError>;
    /// `calloc(nelem, elsize)` on `route`.
    ///
    /// # Errors
    /// The model's.
    fn calloc(&mut self, route: Route, nelem: u64, elsize: u64) -> Result<Addr, AllocError>;
    /// `realloc(addr, size)` on `route`.
    ///
    /// # Errors
    /// The model's.
    fn realloc(&mut self, route: Route, addr: Addr, size: u64) -> Result<Addr, AllocError>;
    /// `free(addr)` on `route`.
    ///
    /// # Errors
    /// The model's.
    fn free(&mut self, route: Route, addr: Addr) -> Result<(), AllocError>;
    /// `memalign(align, size)` of the system allocator (a plain malloc where it has none).
    ///
    /// # Errors
    /// The model's.
    fn memalign(&mut self, align: u64, size: u64) -> Result<Addr, AllocError>;
    /// `mallopt(param, value)` of glibc (ignored where there is none).
    fn mallopt(&mut self, param: i64, value: i64);
    /// The address space the mappings outside the allocators come from.
    fn space_mut(&mut self) -> &mut AddressSpace;
    /// `(mapped, resident)`: see [`Stack::footprint`].
    fn footprint(&self) -> (u64, u64);

    /// A mapping of `size` bytes outside the allocators, which the program writes: see
    /// [`Stack::map`].
    ///
    /// # Errors
    /// Out of address space.
    #[inline]
    fn map(&mut self, size: u64) -> Result<Addr, AllocError> {
        let vm = self.space_mut();
        let a = vm.mmap(size)?;
        vm.touch(a.0, size);
        Ok(a)
    }

    /// `munmap` of a mapping made by [`map`](Self::map).
    ///
    /// # Errors
    /// When no such mapping is live.
    #[inline]
    fn unmap(&mut self, addr: Addr, size: u64) -> Result<(), AllocError> {
        self.space_mut().munmap(addr, size)
    }
}

/// What runs on a stack's layers as their concrete type ([`Stack::visit`]).
pub trait Visit {
    /// What it gives back.
    type Out;
    /// Runs on `layers`.
    fn on<L: Layers>(self, layers: &mut L) -> Self::Out;
}

/// Matches a stack's variant once and runs `$body` with `$l` its layers.
macro_rules! on_layers {
    ($stack:expr, $l:ident => $body:expr) => {
        match $stack {
            Stack::PymallocGlibc(m) => {
                let $l = m.as_mut();
                $body
            }
            Stack::Glibc(g) => {
                let $l = g.as_mut();
                $body
            }
            Stack::Pymalloc(m) => {
                let $l = m.as_mut();
                $body
            }
            Stack::MimallocGlibc(m, g) => {
                let $l = &mut MiGlibc(m, g);
                $body
            }
        }
    };
}
use on_layers;

/// The four routed calls of a pymalloc stack: object calls to pymalloc, system calls to
/// the allocator beneath it (`lower_mut`). One body for every pymalloc stack.
macro_rules! pymalloc_routes {
    () => {
        #[inline(always)]
        fn malloc(&mut self, route: Route, size: u64) -> Result<Addr, AllocError> {
            match route {
                Route::Object => Allocator::malloc(self, size as usize),
                Route::System => Allocator::malloc(self.lower_mut(), size as usize),
            }
        }
        #[inline(always)]
        fn calloc(&mut self, route: Route, nelem: u64, elsize: u64) -> Result<Addr, AllocError> {
            match route {
                Route::Object => Allocator::calloc(self, nelem as usize, elsize as usize),
                Route::System => {
                    Allocator::calloc(self.lower_mut(), nelem as usize, elsize as usize)
                }
            }
        }
        #[inline(always)]
        fn realloc(&mut self, route: Route, addr: Addr, size: u64) -> Result<Addr, AllocError> {
            match route {
                Route::Object => Allocator::realloc(self, addr, size as usize),
                Route::System => Allocator::realloc(self.lower_mut(), addr, size as usize),
            }
        }
        #[inline(always)]
        fn free(&mut self, route: Route, addr: Addr) -> Result<(), AllocError> {
            match route {
                Route::Object => Allocator::free(self, addr),
                Route::System => Allocator::free(self.lower_mut(), addr),
            }
        }
    };
}

/// pymalloc over glibc: object calls to pymalloc, system calls to glibc beneath it.
impl Layers for Pymalloc<Glibc, SystemArenas> {
    pymalloc_routes!();
    fn memalign(&mut self, align: u64, size: u64) -> Result<Addr, AllocError> {
        Glibc::memalign(self.lower_mut(), align as usize, size as usize)
    }
    fn mallopt(&mut self, param: i64, value: i64) {
        Glibc::mallopt(self.lower_mut(), param as i32, value as i32);
    }
    fn space_mut(&mut self) -> &mut AddressSpace {
        Glibc::space_mut(self.lower_mut())
    }
    #[inline(always)]
    fn footprint(&self) -> (u64, u64) {
        space_footprint(self.lower().address_space())
    }
}

/// glibc alone: every call.
impl Layers for Glibc {
    #[inline(always)]
    fn malloc(&mut self, _: Route, size: u64) -> Result<Addr, AllocError> {
        Allocator::malloc(self, size as usize)
    }
    #[inline(always)]
    fn calloc(&mut self, _: Route, nelem: u64, elsize: u64) -> Result<Addr, AllocError> {
        Allocator::calloc(self, nelem as usize, elsize as usize)
    }
    #[inline(always)]
    fn realloc(&mut self, _: Route, addr: Addr, size: u64) -> Result<Addr, AllocError> {
        Allocator::realloc(self, addr, size as usize)
    }
    #[inline(always)]
    fn free(&mut self, _: Route, addr: Addr) -> Result<(), AllocError> {
        Allocator::free(self, addr)
    }
    fn memalign(&mut self, align: u64, size: u64) -> Result<Addr, AllocError> {
        Glibc::memalign(self, align as usize, size as usize)
    }
    fn mallopt(&mut self, param: i64, value: i64) {
        Glibc::mallopt(self, param as i32, value as i32);
    }
    fn space_mut(&mut self) -> &mut AddressSpace {
        Glibc::space_mut(self)
    }
    #[inline(always)]
    fn footprint(&self) -> (u64, u64) {
        space_footprint(self.address_space())
    }
}

/// pymalloc alone: object calls to pymalloc, system calls to its bump baseline; arenas and
/// mappings from its own address space.
impl Layers for Pymalloc<Bump, AddressSpace> {
    pymalloc_routes!();
    fn memalign(&mut self, _: u64, size: u64) -> Result<Addr, AllocError> {
        Allocator::malloc(self.lower_mut(), size as usize)
    }
    fn mallopt(&mut self, _: i64, _: i64) {}
    fn space_mut(&mut self) -> &mut AddressSpace {
        self.source_mut()
    }
    #[inline(always)]
    fn footprint(&self) -> (u64, u64) {
        space_footprint(self.source())
    }
}

/// mimalloc for object calls, glibc for system calls (a [`Stack::MimallocGlibc`]'s two
/// layers, borrowed).
pub struct MiGlibc<'a>(&'a mut Mimalloc<OwnOs>, &'a mut Glibc);

impl Layers for MiGlibc<'_> {
    #[inline(always)]
    fn malloc(&mut self, route: Route, size: u64) -> Result<Addr, AllocError> {
        match route {
            Route::Object => self.0.malloc(size as usize),
            Route::System => Allocator::malloc(self.1, size as usize),
        }
    }
    #[inline(always)]
    fn calloc(&mut self, route: Route, nelem: u64, elsize: u64) -> Result<Addr, AllocError> {
        match route {
            Route::Object => self.0.calloc(nelem as usize, elsize as usize),
            Route::System => Allocator::calloc(self.1, nelem as usize, elsize as usize),
        }
    }
    #[inline(always)]
    fn realloc(&mut self, route: Route, addr: Addr, size: u64) -> Result<Addr, AllocError> {
        match route {
            Route::Object => self.0.realloc(addr, size as usize),
            Route::System => Allocator::realloc(self.1, addr, size as usize),
        }
    }
    #[inline(always)]
    fn free(&mut self, route: Route, addr: Addr) -> Result<(), AllocError> {
        match route {
            Route::Object => self.0.free(addr),
            Route::System => Allocator::free(self.1, addr),
        }
    }
    fn memalign(&mut self, align: u64, size: u64) -> Result<Addr, AllocError> {
        Glibc::memalign(self.1, align as usize, size as usize)
    }
    fn mallopt(&mut self, param: i64, value: i64) {
        Glibc::mallopt(self.1, param as i32, value as i32);
    }
    fn space_mut(&mut self) -> &mut AddressSpace {
        Glibc::space_mut(self.1)
    }
    #[inline(always)]
    fn footprint(&self) -> (u64, u64) {
        mimalloc_footprint(self.0, self.1)
    }
}

/// How far below glibc's mmap area mimalloc's unhinted mappings start in a mimalloc stack
/// (1 TiB: the two never meet in a replay).
pub const MIMALLOC_BELOW_GLIBC: u64 = 1 << 40;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimalloc_takes_object_calls_and_glibc_raw_ones() {
        let mut s = Stack::new_mimalloc_glibc(GlibcParams::v2_36_x86_64());
        let base = (s.mapped(), s.resident(), s.syscalls());
        let o = s.malloc(Route::Object, 24).unwrap();
        let r = s.malloc(Route::System, 24).unwrap();
        let Stack::MimallocGlibc(m, g) = &s else {
            panic!()
        };
        // the object block in mimalloc's arena, the raw one in glibc's brk heap
        let (start, size) = (m.arenas()[0].start, m.arenas()[0].size());
        assert!(o.0 >= start.0 && o.0 < start.0 + size);
        let vm = g.address_space();
        assert!(r.0 >= vm.brk_start().0 && r.0 < vm.brk().0);
        // mapped: glibc's heap, plus the arena and the descriptor mimalloc mapped
        assert_eq!(s.mapped(), vm.heap_bytes() + vm.mapped_bytes() + m.mapped());
        assert!(s.mapped() >= base.0 + size);
        assert_eq!(s.syscalls().mmap, base.2.mmap + m.os().mmaps);
        assert!(m.os().mmaps >= 1);
        // resident: the arena's descriptor, the segment header and the block's OS page
        assert!(s.resident() > base.1 + m.resident_bytes() - 1);
        let header = crate::mimalloc::segment::SEGMENT_HEADER_BYTES.div_ceil(4096) * 4096;
        assert!(m.resident_bytes() >= header + 2 * 4096);
        assert_eq!(m.resident_in(o, o + 24u64), 4096);
        s.free(Route::Object, o).unwrap();
        s.free(Route::System, r).unwrap();
    }

    #[test]
    fn pymalloc_arenas_and_glibc_share_one_address_space() {
        let mut s = Stack::new_pymalloc_glibc(PymallocParams::v3_11(), GlibcParams::v2_36_x86_64());
        let small = s.malloc(Route::Object, 24).unwrap();
        let big = s.malloc(Route::Object, 4000).unwrap();
        let Stack::PymallocGlibc(m) = &s else {
            panic!()
        };
        let vm = m.lower().address_space();
        // the arena is one of the address space's mappings, the big block in its brk heap
        let arena = m.params().arena_size();
        let regions: Vec<(Addr, u64)> = vm.regions().collect();
        let (base, _) = *regions.iter().find(|r| r.1 == arena).unwrap();
        assert!(small.0 >= base.0 && small.0 < base.0 + arena);
        assert!(big.0 >= vm.brk_start().0 && big.0 < vm.brk().0);
        // resident: the arena's first pool page (header, block 0, the link one block
        // ahead); of every other mapping (the radix nodes, mmapped callocs) only the chunk
        // header page; the heap up to the big block's end and top's header after it
        let first_pool = base.align_up(m.params().pool_size()).0 - base.0;
        assert_eq!(vm.resident_offsets(base.0, arena), vec![first_pool]);
        for &(b, len) in regions.iter().filter(|r| r.0 != base) {
            assert_eq!(vm.resident_offsets(b.0, len), vec![0], "{b}");
        }
        let heap_pages = vm.resident_offsets(vm.brk_start().0, vm.heap_bytes()).len() as u64;
        assert_eq!(heap_pages, (big.0 + 4016 - vm.brk_start().0).div_ceil(4096));
        assert_eq!(
            vm.resident_bytes() / 4096,
            heap_pages + regions.len() as u64
        );
        let before = s.resident();
        s.free(Route::Object, small).unwrap(); // the arena is the last one: 3.11 keeps it
        assert_eq!(s.resident(), before);
    }

    /// A small generated program (pymalloc blocks of every class, glibc blocks, big
    /// mmapped ones, frees that empty pools and whole arenas), on every stack: after every
    /// step, the walks account for every mapped byte: `live + accounted == mapped`.
    #[test]
    fn waste_and_live_add_up_to_the_mapped_bytes_on_every_stack() {
        let gp = GlibcParams::v2_36_x86_64;
        for (name, mut s) in [
            (
                "cpython-3.11/glibc-2.36",
                Stack::new_pymalloc_glibc(PymallocParams::v3_11(), gp()),
            ),
            ("glibc-2.36", Stack::new_glibc(gp())),
            (
                "cpython-3.8/glibc-2.36",
                Stack::new_pymalloc_glibc(PymallocParams::v3_8(), gp()),
            ),
        ] {
            let mut live: Vec<(Route, Addr, u64)> = Vec::new();
            let mut total = 0u64;
            let mut seen = Waste::default();
            for k in 0..6000u64 {
                let (route, size) = match k % 13 {
                    0 => (Route::System, 100 + k % 3000),
                    1 => (Route::Object, 150_000 + k),
                    2 => (Route::Object, 600 + k % 2000),
                    _ => (Route::Object, 1 + (k * 37) % 512),
                };
                let a = s.malloc(route, size).unwrap();
                live.push((route, a, size));
                total += size;
                // free in bursts: most of what was made, leaving scattered survivors
                if k % 1500 == 1499 {
                    let mut j = 0;
                    live.retain(|&(r, a, n)| {
                        j += 1;
                        if j % 10 == 0 {
                            return true;
                        }
                        s.free(r, a).unwrap();
                        total -= n;
                        false
                    });
                }
                let w = s.waste(total);
                assert_eq!(total + w.accounted(), s.mapped(), "{name} step {k}: {w:?}");
                assert_eq!(w.other_maps, 0, "{name}: no mapping outside the allocators");
                for (m, v) in [
                    (&mut seen.rounding, w.rounding),
                    (&mut seen.headers, w.headers),
                    (&mut seen.free_chunks, w.free_chunks),
                    (&mut seen.free_blocks, w.free_blocks),
                    (&mut seen.empty_pools, w.empty_pools),
                    (&mut seen.free_arenas, w.free_arenas),
                    (&mut seen.metadata, w.metadata),
                ] {
                    *m = (*m).max(v);
                }
            }
            assert!(
                seen.headers > 0 && seen.free_chunks > 0 && seen.metadata > 0,
                "{name}"
            );
            if name != "glibc-2.36" {
                assert!(
                    seen.rounding > 0 && seen.free_blocks > 0 && seen.empty_pools > 0,
                    "{name}"
                );
            } else {
                assert_eq!(seen.rounding + seen.free_blocks + seen.empty_pools, 0);
            }
            // a data-stack chunk is a mapping no allocator made
            let before = s.waste(total);
            s.map(16384).unwrap();
            assert_eq!(s.waste(total).other_maps, before.other_maps + 16384);
        }
    }

    #[test]
    fn an_arena_given_back_takes_its_pages_with_it() {
        let mut s = Stack::new_pymalloc_glibc(PymallocParams::v3_8(), GlibcParams::v2_36_x86_64());
        let base = s.resident();
        let blocks: Vec<Addr> = (0..2000)
            .map(|_| s.malloc(Route::Object, 64).unwrap())
            .collect();
        let grown = s.resident();
        assert!(grown - base >= 2000 * 64, "the blocks' pages are written");
        for b in blocks {
            s.free(Route::Object, b).unwrap();
        }
        // 3.8 frees a wholly free arena: back to what glibc alone had written
        let Stack::PymallocGlibc(m) = &s else {
            panic!()
        };
        assert_eq!(m.narenas(), 0);
        let vm = m.lower().address_space();
        let heap = vm.resident_offsets(vm.brk_start().0, vm.heap_bytes()).len() as u64 * 4096;
        assert_eq!(s.resident(), heap);
        assert_eq!(s.syscalls().munmap, 1);
    }
}
