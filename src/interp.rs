//! A Python facade: script CPython's object allocations as a program would make them.
//!
//! ```text
//!   Python::v2_7(platform)            the interpreter after _PyInt_Init
//!     .int(v)     PyInt_FromLong: small_ints[v+5] for -5 <= v <= 256, else pop the int free list
//!     .id(&o)     builtin id(): PyLong_FromVoidPtr(o) = PyInt_FromLong(address) when it fits a C long
//!     .sub(&a,&b) int_sub: a new int (or a cached one)
//!     .drop(o)    Py_DECREF: at refcount 0, int_dealloc pushes it on the free list
//!     .tuple(..)  / .drop_tuple(t): tupledealloc drops items last to first
//!     .list(..)   / .drop_list(l):  list_dealloc drops items last to first
//!
//!   IntFreeList<SharedHeap<A>> + FloatFreeList<SharedHeap<A>>  (objects)
//!   A = MacTiny | Glibc | Bump | NoMalloc                       (sysmalloc)
//! ```
//!
//! Handles ([`Int`], [`Float`]) are plain values, and references are counted explicitly
//! as in C: every value a method returns is a new reference the script must `drop`.
//! A wrong drop is an error value naming the address, never a panic.
//!
//! Absolute bases are parameters: [`Python::v2_7_at`] takes the address where the first
//! PyIntBlock lands; [`Python::v2_7`] uses the platform's recorded default
//! ([`default_first_int_block`]).

use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::objects::freelist::Whereabouts;
use crate::objects::small_ints::{py3_11_default_first, py3_long_object_size};
use crate::objects::{
    BlockType, ClearEvent, ClearReport, FloatFreeList, FreeList, IntFreeList, Slot, SmallInts,
};
use crate::platform::{MallocFlavor, Platform};
use crate::sysmalloc::glibc::{Glibc, GlibcParams};
use crate::sysmalloc::{Bump, MacTiny, SharedHeap};
use crate::trace::{EventKind, FreeListKind};
use crate::vm::AddressSpace;

/// The CPython versions the facade models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// CPython 2.7: small_ints[] + the PyIntBlock free list.
    V2_7,
    /// CPython 3.11: the static small-int array; other ints live in pymalloc.
    V3_11,
}

impl Version {
    /// Parses `2.7`, `3.11` (also `27`, `311`).
    pub fn parse(s: &str) -> Option<Version> {
        match s {
            "2.7" | "27" | "2" => Some(Version::V2_7),
            "3.11" | "311" => Some(Version::V3_11),
            _ => None,
        }
    }

    /// As the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Version::V2_7 => "2.7",
            Version::V3_11 => "3.11",
        }
    }
}

/// What the facade refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PyError {
    /// A layer below refused (bad free, out of space, a value the platform cannot hold).
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// Something this build does not model (said plainly rather than guessed).
    #[error("not modelled: {0}")]
    NotModelled(String),
    /// A `drop` of an object the script holds no reference to.
    #[error("drop of {addr}: the script holds no reference to this object")]
    NotOwned {
        /// The object's address.
        addr: Addr,
    },
}

/// How an int object exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntKind {
    /// A cached small int (Py2 `small_ints[]`, Py3 static array): never freed.
    Small,
    /// A free-list int in this slot.
    Free(Slot),
    /// A Python `long` (the value did not fit a C long): its address is not modelled.
    Long,
}

/// A reference to an int object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int {
    /// Its value.
    pub value: i64,
    /// Its address, `id()` (NULL for a `long`, whose address is not modelled).
    pub addr: Addr,
    /// Cached, free-list, or long.
    pub kind: IntKind,
}

impl Int {
    /// `repr()` in Python 2: a long carries an `L`.
    pub fn repr(&self) -> String {
        match self.kind {
            IntKind::Long => format!("{}L", self.value),
            _ => self.value.to_string(),
        }
    }
}

/// A reference to a float object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float {
    /// Its value.
    pub value: f64,
    /// Its address.
    pub addr: Addr,
    slot: Slot,
}

/// A tuple of ints (its own address lives in pymalloc and is not modelled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple(pub Vec<Int>);

/// The address where the first PyIntBlock lands by default on a platform.
///
/// - macos-x86_64: the seed's 0x1002024f0 (the preset's `heap_start`), so id(0) == 4297074752;
/// - linux-x86_64: 0x5555557672a0, the pristine 2.7.18 under `setarch -R`
///   (small_ints.txt: id(-5) == 0x555555767668 == base + 8 + 24*40);
/// - others: where the platform's malloc puts its first block of that size on an empty heap.
pub fn default_first_int_block(p: &Platform) -> Option<Addr> {
    match p.name {
        "macos-x86_64" => Some(p.heap_start),
        "linux-x86_64" => Some(Addr(0x5555_5576_72a0)),
        _ => None,
    }
}

/// The glibc parameters of a platform (by pointer width).
fn glibc_params(p: &Platform) -> GlibcParams {
    if p.pointer_bytes == 4 {
        GlibcParams::v2_36_i386()
    } else {
        GlibcParams::v2_36_x86_64()
    }
}

/// The platform's system allocator, placed so that its first `malloc(first_size)`
/// returns `first` (when given): the heap before `_PyInt_Init` holds allocations this
/// model does not see, so the simulated heap starts where the first block landed.
pub fn system_heap(
    p: &Platform,
    first: Option<Addr>,
    first_size: u64,
) -> Result<Box<dyn Allocator>, AllocError> {
    let space = |start: Addr| AddressSpace::new(p.page_size, p.pointer_bytes, start, p.mmap_top);
    Ok(match p.malloc {
        MallocFlavor::MacTiny => Box::new(MacTiny::new(space(first.unwrap_or(p.heap_start)))),
        MallocFlavor::Bump => Box::new(Bump::new(first.unwrap_or(p.heap_start), 16)),
        MallocFlavor::Glibc => match first {
            None => Box::new(Glibc::new(glibc_params(p), p.address_space())),
            Some(first) => {
                // Where does an empty glibc heap put its first block of this size?
                let mut probe = Glibc::new(glibc_params(p), p.address_space());
                let offset = probe.malloc(first_size as usize)? - p.heap_start;
                let start = Addr(first.0.wrapping_sub(offset as u64));
                Box::new(Glibc::new(glibc_params(p), space(start)))
            }
        },
    })
}

/// The step `PyInt_FromLong` and `PyFloat_FromDouble` share: pop the head of `list`
/// (`fill_free_list` makes a new block when it is empty), log the new block (`B`) and the
/// pop (`I`/`D`, with `value`) when `log` is on, and give the script the one reference
/// (`refs[slot] = 1`). Returns the slot, its address and whether a new block was made.
fn pop_object<A: Allocator, T: BlockType>(
    list: &mut FreeList<SharedHeap<A>, T>,
    refs: &mut Vec<u32>,
    log: &mut Option<Vec<EventKind>>,
    kind: FreeListKind,
    value: i64,
) -> Result<(Slot, Addr, bool), PyError> {
    let fresh = list.head().is_null();
    let (slot, addr) = list.alloc()?;
    if let Some(l) = log.as_mut() {
        if fresh {
            l.push(EventKind::BlockNew {
                kind,
                size: list.layout().block_size,
                addr: list.block_list().next().unwrap_or(Addr::NULL),
            });
        }
        l.push(EventKind::ObjPop { kind, value, addr });
    }
    let s = slot.0 as usize;
    if refs.len() <= s {
        refs.resize(s + 1, 0);
    }
    refs[s] = 1;
    Ok((slot, addr, fresh))
}

/// The facade: one interpreter's int and float objects over a system heap `A`.
pub struct Python<A: Allocator> {
    version: Version,                     // which CPython
    platform: Platform,                   // widths, malloc flavour
    heap: SharedHeap<A>,                  // the system malloc (PyMem_MALLOC)
    ints: IntFreeList<SharedHeap<A>>,     // PyIntBlock free list (Py2)
    floats: FloatFreeList<SharedHeap<A>>, // PyFloatBlock free list (Py2)
    small_ints: SmallInts,                // the cache
    int_refs: Vec<u32>,                   // references the script holds, by int slot
    float_refs: Vec<u32>,                 // references the script holds, by float slot
    fresh_block: Vec<Slot>,               // first slot popped from each block the facade made
    log: Option<Vec<EventKind>>,          // I/D/B events, as the PYREC traces spell them
}

impl Python<Box<dyn Allocator>> {
    /// CPython 2.7 on `platform` right after `_PyInt_Init`, its first PyIntBlock at the
    /// platform's default ([`default_first_int_block`]).
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn v2_7(platform: Platform) -> Result<Self, PyError> {
        let first = default_first_int_block(&platform);
        Self::v2_7_with(platform, first)
    }

    /// CPython 2.7 with the first PyIntBlock at `first_int_block`.
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn v2_7_at(platform: Platform, first_int_block: Addr) -> Result<Self, PyError> {
        Self::v2_7_with(platform, Some(first_int_block))
    }

    fn v2_7_with(platform: Platform, first: Option<Addr>) -> Result<Self, PyError> {
        let block = IntFreeList::new(crate::sysmalloc::NoMalloc, &platform)
            .layout()
            .block_size;
        let heap = system_heap(&platform, first, block)?;
        Python::v2_7_over(platform, heap)
    }

    /// CPython 3.11 on `platform`: the static small-int array with `id(-5)` at `first`
    /// (the platform's default when `None`).
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn v3_11(platform: Platform, first: Option<Addr>) -> Result<Self, PyError> {
        let first = first.unwrap_or_else(|| py3_11_default_first(&platform).0);
        let heap = system_heap(&platform, None, 0)?;
        let heap = SharedHeap::new(heap);
        Ok(Python {
            version: Version::V3_11,
            small_ints: SmallInts::py3_static(&platform, first),
            ints: IntFreeList::new(heap.clone(), &platform),
            floats: FloatFreeList::new(heap.clone(), &platform),
            heap,
            platform,
            int_refs: Vec::new(),
            float_refs: Vec::new(),
            fresh_block: Vec::new(),
            log: None,
        })
    }
}

impl<A: Allocator> Python<A> {
    /// CPython 2.7 over `heap`: runs `_PyInt_Init` (262 pops, -5 first).
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn v2_7_over(platform: Platform, heap: A) -> Result<Self, PyError> {
        let heap = SharedHeap::new(heap);
        let mut ints = IntFreeList::new(heap.clone(), &platform);
        let small_ints = SmallInts::py2_init(&mut ints)?;
        Ok(Python {
            version: Version::V2_7,
            floats: FloatFreeList::new(heap.clone(), &platform),
            heap,
            ints,
            small_ints,
            platform,
            int_refs: Vec::new(),
            float_refs: Vec::new(),
            fresh_block: Vec::new(),
            log: None,
        })
    }

    /// CPython 2.7 from a state built elsewhere (a trace replayed up to some event).
    /// Objects live in that state are held by the "rest of the interpreter": the script
    /// holds no reference to them.
    pub fn v2_7_from_state(
        platform: Platform,
        heap: SharedHeap<A>,
        ints: IntFreeList<SharedHeap<A>>,
        floats: FloatFreeList<SharedHeap<A>>,
        small_ints: SmallInts,
    ) -> Self {
        Python {
            version: Version::V2_7,
            platform,
            heap,
            ints,
            floats,
            small_ints,
            int_refs: Vec::new(),
            float_refs: Vec::new(),
            fresh_block: Vec::new(),
            log: None,
        }
    }

    /// The version modelled.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The platform.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The int free list.
    pub fn ints(&self) -> &IntFreeList<SharedHeap<A>> {
        &self.ints
    }

    /// The int free list, mutably (for `whereabouts`, `clear_free_list`).
    pub fn ints_mut(&mut self) -> &mut IntFreeList<SharedHeap<A>> {
        &mut self.ints
    }

    /// The float free list.
    pub fn floats(&self) -> &FloatFreeList<SharedHeap<A>> {
        &self.floats
    }

    /// The small-int cache.
    pub fn small_ints(&self) -> &SmallInts {
        &self.small_ints
    }

    /// Starts recording I/D/B events (ints) and i/d/b (floats).
    pub fn start_log(&mut self) {
        self.log = Some(Vec::new());
    }

    /// The events recorded since [`start_log`](Self::start_log) (and stops recording).
    pub fn take_log(&mut self) -> Vec<EventKind> {
        self.log.take().unwrap_or_default()
    }

    fn record(&mut self, e: EventKind) {
        if let Some(l) = self.log.as_mut() {
            l.push(e);
        }
    }

    /// The bits of a C long on this platform.
    pub fn long_bits(&self) -> u32 {
        (self.platform.long_bytes * 8) as u32
    }

    fn fits_long(&self, v: i128) -> bool {
        let bits = self.long_bits();
        let max = (1i128 << (bits - 1)) - 1;
        (-max - 1..=max).contains(&v)
    }

    /// `PyInt_FromLong(v)` (Py2) or the static small int (Py3).
    ///
    /// # Errors
    /// `ValueOutOfRange` when `v` does not fit the platform's C long; `NotModelled` for a
    /// Py3 int outside the cache.
    #[inline]
    pub fn int(&mut self, v: i64) -> Result<Int, PyError> {
        if !self.fits_long(v as i128) {
            return Err(AllocError::ValueOutOfRange {
                value: v.to_string(),
                bits: self.long_bits(),
            }
            .into());
        }
        if let Some(addr) = self.small_ints.get(v) {
            return Ok(Int {
                value: v,
                addr,
                kind: IntKind::Small,
            });
        }
        if self.version != Version::V2_7 {
            return Err(PyError::NotModelled(format!(
                "{v}: CPython {} ints outside -5..256 are PyLongObjects of {} bytes from pymalloc",
                self.version.name(),
                py3_long_object_size(&self.platform)
            )));
        }
        let (slot, addr, fresh) = pop_object(
            &mut self.ints,
            &mut self.int_refs,
            &mut self.log,
            FreeListKind::Int,
            v,
        )?;
        if fresh {
            self.fresh_block.push(slot);
        }
        Ok(Int {
            value: v,
            addr,
            kind: IntKind::Free(slot),
        })
    }

    /// The result `v` of `int_add`/`int_sub` on `a` and `b`: a `long` when either operand
    /// is one or `v` does not fit a C long (Python 2 promotes), whose address this build
    /// does not model; else `PyInt_FromLong(v)`.
    fn arith_result(&mut self, a: &Int, b: &Int, v: i128) -> Result<Int, PyError> {
        let long = a.kind == IntKind::Long || b.kind == IntKind::Long;
        if !long && self.fits_long(v) {
            self.int(v as i64)
        } else {
            Ok(Int {
                value: v as i64,
                addr: Addr::NULL,
                kind: IntKind::Long,
            })
        }
    }

    /// `id(o)`: `PyLong_FromVoidPtr(o)`, which is `PyInt_FromLong` when the address fits
    /// a C long (always on 64-bit) and a `long` otherwise.
    ///
    /// # Errors
    /// `NotModelled` for the id of a long; heap errors.
    pub fn id(&mut self, o: &Int) -> Result<Int, PyError> {
        if o.kind == IntKind::Long {
            return Err(PyError::NotModelled(format!(
                "id() of the long {}: longs live in pymalloc",
                o.value
            )));
        }
        self.id_of_addr(o.addr)
    }

    /// `id()` of any object at `addr`.
    ///
    /// # Errors
    /// Heap errors.
    pub fn id_of_addr(&mut self, addr: Addr) -> Result<Int, PyError> {
        if self.version != Version::V2_7 {
            return Err(PyError::NotModelled(
                "id() results in CPython 3 are PyLongObjects from pymalloc".into(),
            ));
        }
        // (long)p: the address read as a signed C long of the platform's width.
        let bits = self.long_bits();
        let signed = ((addr.0 as i128) << (128 - bits)) >> (128 - bits);
        if signed < 0 {
            // PyLong_FromUnsignedLong((unsigned long)p)
            return Ok(Int {
                value: addr.0 as i64,
                addr: Addr::NULL,
                kind: IntKind::Long,
            });
        }
        self.int(signed as i64)
    }

    /// `Py_INCREF(o)`.
    pub fn incref(&mut self, o: &Int) {
        if let IntKind::Free(s) = o.kind {
            if let Some(r) = self.int_refs.get_mut(s.0 as usize) {
                *r += 1;
            }
        }
    }

    /// `Py_DECREF(o)`: at zero, `int_dealloc` pushes it on the free-list head.
    ///
    /// # Errors
    /// `NotOwned` for an object the script holds no reference to; `DoubleFree` for one
    /// already freed.
    pub fn drop(&mut self, o: Int) -> Result<(), PyError> {
        let IntKind::Free(slot) = o.kind else {
            return Ok(());
        };
        let s = slot.0 as usize;
        match self.int_refs.get(s).copied() {
            Some(r) if r > 0 => {
                if !self.ints.is_live(slot) || self.ints.addr_of(slot) != o.addr {
                    return Err(PyError::NotOwned { addr: o.addr });
                }
                self.int_refs[s] = r - 1;
                if r == 1 {
                    let addr = self.ints.free_slot(slot)?;
                    self.record(EventKind::ObjPush {
                        kind: FreeListKind::Int,
                        addr,
                    });
                }
                Ok(())
            }
            _ if !self.ints.is_live(slot) => Err(AllocError::DoubleFree {
                addr: o.addr,
                model: "int free list",
            }
            .into()),
            _ => Err(PyError::NotOwned { addr: o.addr }),
        }
    }

    /// `a - b` (`int_sub`): a new reference; a long when the result overflows a C long.
    ///
    /// # Errors
    /// Heap errors.
    pub fn sub(&mut self, a: &Int, b: &Int) -> Result<Int, PyError> {
        self.arith_result(a, b, a.value as i128 - b.value as i128)
    }

    /// `a + b` (`int_add`).
    ///
    /// # Errors
    /// Heap errors.
    pub fn add(&mut self, a: &Int, b: &Int) -> Result<Int, PyError> {
        self.arith_result(a, b, a.value as i128 + b.value as i128)
    }

    /// A tuple taking over the references in `items`.
    pub fn tuple(&mut self, items: Vec<Int>) -> Tuple {
        Tuple(items)
    }

    /// `tupledealloc`: drops the items from the last to the first.
    ///
    /// # Errors
    /// As [`drop`](Self::drop).
    pub fn drop_tuple(&mut self, t: Tuple) -> Result<(), PyError> {
        for o in t.0.into_iter().rev() {
            self.drop(o)?;
        }
        Ok(())
    }

    /// `list(xrange(lo, hi))` / `range(lo, hi)`: the ints made in order.
    ///
    /// # Errors
    /// As [`int`](Self::int).
    pub fn list(&mut self, lo: i64, hi: i64) -> Result<Vec<Int>, PyError> {
        (lo..hi).map(|v| self.int(v)).collect()
    }

    /// `list_dealloc`: drops the items from the last to the first.
    ///
    /// # Errors
    /// As [`drop`](Self::drop).
    pub fn drop_list(&mut self, l: Vec<Int>) -> Result<(), PyError> {
        for o in l.into_iter().rev() {
            self.drop(o)?;
        }
        Ok(())
    }

    /// `PyFloat_FromDouble(v)`.
    ///
    /// # Errors
    /// `NotModelled` in CPython 3; heap errors.
    pub fn float(&mut self, v: f64) -> Result<Float, PyError> {
        if self.version != Version::V2_7 {
            return Err(PyError::NotModelled(
                "CPython 3 floats come from their own free list and pymalloc".into(),
            ));
        }
        let (slot, addr, _) = pop_object(
            &mut self.floats,
            &mut self.float_refs,
            &mut self.log,
            FreeListKind::Float,
            v.to_bits() as i64,
        )?;
        Ok(Float {
            value: v,
            addr,
            slot,
        })
    }

    /// `Py_DECREF` of a float: `float_dealloc` at zero.
    ///
    /// # Errors
    /// As [`drop`](Self::drop).
    pub fn drop_float(&mut self, f: Float) -> Result<(), PyError> {
        let s = f.slot.0 as usize;
        match self.float_refs.get(s).copied() {
            Some(r) if r > 0 => {
                self.float_refs[s] = r - 1;
                if r == 1 {
                    let addr = self.floats.free_slot(f.slot)?;
                    self.record(EventKind::ObjPush {
                        kind: FreeListKind::Float,
                        addr,
                    });
                }
                Ok(())
            }
            _ if !self.floats.is_live(f.slot) => Err(AllocError::DoubleFree {
                addr: f.addr,
                model: "float free list",
            }
            .into()),
            _ => Err(PyError::NotOwned { addr: f.addr }),
        }
    }

    /// `PyMem_MALLOC(n)`: a plain system malloc (the tokenizer's state, list item arrays).
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn pymem_malloc(&mut self, n: usize) -> Result<Addr, PyError> {
        Ok(self.heap.malloc(n)?)
    }

    /// `PyMem_FREE(p)`.
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn pymem_free(&mut self, p: Addr) -> Result<(), PyError> {
        Ok(self.heap.free(p)?)
    }

    /// `PyInt_ClearFreeList`.
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn clear_int_free_list(&mut self) -> Result<ClearReport, PyError> {
        let r = self.ints.clear_free_list()?;
        self.log_clear(FreeListKind::Int, &r);
        Ok(r)
    }

    /// `PyFloat_ClearFreeList`.
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn clear_float_free_list(&mut self) -> Result<ClearReport, PyError> {
        let r = self.floats.clear_free_list()?;
        self.log_clear(FreeListKind::Float, &r);
        Ok(r)
    }

    /// What `gc.collect()` does to these free lists: the collection of the oldest
    /// generation ends in `clear_freelists()`, which runs `PyInt_ClearFreeList` and then
    /// `PyFloat_ClearFreeList` (gcmodule.c, 2.7).
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn gc_collect(&mut self) -> Result<(ClearReport, ClearReport), PyError> {
        Ok((self.clear_int_free_list()?, self.clear_float_free_list()?))
    }

    fn log_clear(&mut self, kind: FreeListKind, r: &ClearReport) {
        if self.log.is_none() {
            return;
        }
        for e in &r.events {
            self.record(match *e {
                ClearEvent::Keep { base, live } => EventKind::ClearKeep {
                    kind,
                    addr: base,
                    live,
                },
                ClearEvent::Free { base } => EventKind::ClearFree { kind, addr: base },
            });
        }
        self.record(EventKind::ClearDone {
            kind,
            kept: r.kept,
            freed: r.freed,
            live: r.live,
            nfree: r.nfree,
            head: r.head,
        });
    }

    /// The system heap below the free lists.
    pub fn heap(&self) -> &SharedHeap<A> {
        &self.heap
    }

    /// Says where an int lives and why it is there (the `--explain` text).
    pub fn explain(&mut self, o: &Int) -> String {
        match o.kind {
            IntKind::Long => "a long (the value does not fit a C long): lives in pymalloc, not modelled".into(),
            IntKind::Small if self.version != Version::V2_7 => format!(
                "small_ints[{}] of the static array in libpython's data segment, {} bytes per PyLongObject",
                o.value + 5,
                py3_long_object_size(&self.platform)
            ),
            IntKind::Small => {
                let w = self.ints.whereabouts(o.addr);
                format!(
                    "{}; small_ints[{}]: pop number {} of the 262 _PyInt_Init makes for -5..256 in order, and a fresh block hands out objects[{}] first",
                    self.describe(w),
                    o.value + 5,
                    o.value + 6,
                    self.ints.layout().n_objects - 1
                )
            }
            IntKind::Free(slot) => {
                let w = self.ints.whereabouts(o.addr);
                let why = if self.fresh_block.contains(&slot) {
                    format!(
                        "the free list was empty: fill_free_list malloc'd {} bytes for a new block, whose objects[{}] is the new head",
                        self.ints.layout().block_size,
                        self.ints.layout().n_objects - 1
                    )
                } else {
                    "PyInt_FromLong popped the free-list head (LIFO: the most recently freed slot, else the next slot of the newest block)".into()
                };
                format!("{}; {}", self.describe(w), why)
            }
        }
    }

    fn describe(&self, w: Option<Whereabouts>) -> String {
        match w {
            Some(w) => format!(
                "block {} at {} (malloc({})), objects[{}] = base + {} + {}*{}",
                w.block,
                w.base,
                self.ints.layout().block_size,
                w.k,
                self.ints.layout().objects_offset,
                self.ints.layout().object_size,
                w.k
            ),
            None => "not in any PyIntBlock".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_offsets_and_the_block_jump_on_macos() {
        let mut py = Python::v2_7(Platform::macos_x86_64()).unwrap();
        let zero = py.int(0).unwrap();
        let one = py.int(1).unwrap();
        let size = py.ints().layout().object_size as i64;
        assert_eq!(zero.addr - one.addr, size);
        let n = py.ints().layout().n_objects as i64;
        let last = py.int(n - 6).unwrap(); // objects[0] of block 0
        let next = py.int(n - 5).unwrap(); // objects[N-1] of block 1
        let block = py.ints().layout().block_size as i64; // tiny: no header, back to back
        assert_eq!(last.addr - next.addr, -(block + (n - 1) * size));
    }

    #[test]
    fn temporaries_alternate_between_two_slots() {
        let mut py = Python::v2_7(Platform::linux_x86_64()).unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let t = py.int(7777).unwrap();
            let i = py.id(&t).unwrap();
            seen.push(i.value);
            py.drop(t).unwrap();
            py.drop(i).unwrap();
        }
        assert_eq!(seen[0], seen[2]);
        assert_eq!(seen[1], seen[3]);
        assert_ne!(seen[0], seen[1]);
    }

    #[test]
    fn bad_drops_and_values_are_errors() {
        let mut py = Python::v2_7(Platform::linux_x86_64()).unwrap();
        let a = py.int(1000).unwrap();
        py.drop(a).unwrap();
        assert!(
            matches!(py.drop(a), Err(PyError::Alloc(AllocError::DoubleFree { addr, .. })) if addr == a.addr)
        );
        let mut py32 = Python::v2_7(Platform::linux_i686()).unwrap();
        let big = 1i64 << 40;
        assert_eq!(
            py32.int(big),
            Err(PyError::Alloc(AllocError::ValueOutOfRange {
                value: big.to_string(),
                bits: 32
            }))
        );
        let mut py3 = Python::v3_11(Platform::linux_x86_64(), None).unwrap();
        assert!(matches!(py3.int(257), Err(PyError::NotModelled(_))));
    }
}
