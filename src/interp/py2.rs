//! The CPython 2.7 facade: ints and floats from their free lists (Objects/intobject.c,
//! floatobject.c, 2.7), `id()` as `PyInt_FromLong` of the address, and the reference
//! counting that decides when an object goes back on its free list.
//!
//! ```text
//!   Py2<A, O>  = Py2State<A, O> (heap, ints, floats, small_ints, obmalloc)
//!              + the script's references by slot + the log of I/D/B lines
//!   int(v):  small_ints[v+5] | pop the head of free_list (fill_free_list when NULL)
//!   drop(o): refs[slot] -= 1; at 0, int_dealloc: objects[slot].next = free_list; free_list = slot
//! ```

use super::{as_long, long_bits, system_heap, Float, Int, IntKind, Interpreter, PyError, Tuple};
use super::{Version, LONG_TEXT};
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::objects::freelist::Whereabouts;
use crate::objects::{
    BlockType, CTypes, ClearEvent, ClearReport, FloatFreeList, FreeList, IntFreeList, Py2State,
    PyInt, Slot, SmallInts,
};
use crate::platform::Platform;
use crate::sysmalloc::SharedHeap;
use crate::trace::{EventKind, FreeListKind};

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

/// CPython 2.7's int and float objects over a system heap `A`, with the object allocator
/// `O` of the state it started from (`()` when it models none).
pub struct Py2<A: Allocator, O = ()> {
    platform: Platform,                   // widths, malloc flavour
    heap: SharedHeap<A>,                  // the system malloc (PyMem_MALLOC)
    ints: IntFreeList<SharedHeap<A>>,     // PyIntBlock free list
    floats: FloatFreeList<SharedHeap<A>>, // PyFloatBlock free list
    small_ints: SmallInts,                // the cache
    obmalloc: O,                          // pymalloc, as the state had it
    int_refs: Vec<u32>,                   // references the script holds, by int slot
    float_refs: Vec<u32>,                 // references the script holds, by float slot
    fresh: Vec<bool>,                     // by int slot: its last pop made a new block
    log: Option<Vec<EventKind>>,          // I/D/B events, as the PYREC traces spell them
}

impl Py2<Box<dyn Allocator>> {
    /// CPython 2.7 on `platform` right after `_PyInt_Init`, its first PyIntBlock at
    /// [`Platform::first_int_block`] (where the platform's malloc puts it when `None`).
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn new(platform: Platform) -> Result<Self, PyError> {
        let first = platform.first_int_block;
        Self::with_first_block(platform, first)
    }

    /// CPython 2.7 with the first PyIntBlock at `first_int_block`.
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn at(platform: Platform, first_int_block: Addr) -> Result<Self, PyError> {
        Self::with_first_block(platform, Some(first_int_block))
    }

    fn with_first_block(platform: Platform, first: Option<Addr>) -> Result<Self, PyError> {
        let block = PyInt::layout(CTypes::of(&platform)).block_size;
        let heap = system_heap(&platform, first, block)?;
        Py2::over(platform, heap)
    }
}

impl<A: Allocator> Py2<A> {
    /// CPython 2.7 over `heap`: runs `_PyInt_Init` (262 pops, -5 first).
    ///
    /// # Errors
    /// Whatever the heap refuses.
    pub fn over(platform: Platform, heap: A) -> Result<Self, PyError> {
        Ok(Py2::from_state(Py2State::after_int_init(platform, heap)?))
    }
}

impl<A: Allocator, O> Py2<A, O> {
    /// CPython 2.7 continuing from `state` (a recording replayed up to some event, say).
    /// Objects live in that state are held by the "rest of the interpreter": the script
    /// holds no reference to them.
    pub fn from_state(state: Py2State<A, O>) -> Self {
        Py2 {
            platform: state.platform,
            heap: state.heap,
            ints: state.ints,
            floats: state.floats,
            small_ints: state.small_ints,
            obmalloc: state.obmalloc,
            int_refs: Vec::new(),
            float_refs: Vec::new(),
            fresh: Vec::new(),
            log: None,
        }
    }

    /// The platform.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The object allocator of the state this facade started from.
    pub fn obmalloc(&self) -> &O {
        &self.obmalloc
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

    /// `PyInt_FromLong(v)`: the cached small int, or the head of the free list.
    ///
    /// # Errors
    /// `ValueOutOfRange` when `v` does not fit the platform's C long; heap errors.
    #[inline]
    pub fn int(&mut self, v: i64) -> Result<Int, PyError> {
        as_long(&self.platform, v as i128)?;
        if let Some(addr) = self.small_ints.get(v) {
            return Ok(Int {
                value: v,
                addr,
                kind: IntKind::Small,
            });
        }
        let (slot, addr, fresh) = pop_object(
            &mut self.ints,
            &mut self.int_refs,
            &mut self.log,
            FreeListKind::Int,
            v,
        )?;
        let s = slot.0 as usize;
        if self.fresh.len() <= s {
            self.fresh.resize(s + 1, false);
        }
        self.fresh[s] = fresh;
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
        match as_long(&self.platform, v) {
            Ok(v) if !long => self.int(v),
            _ => Ok(Int {
                value: v as i64,
                addr: Addr::NULL,
                kind: IntKind::Long,
            }),
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
        // (long)p: the address read as a signed C long of the platform's width.
        let bits = long_bits(&self.platform);
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
    /// Heap errors.
    pub fn float(&mut self, v: f64) -> Result<Float, PyError> {
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
            IntKind::Long => LONG_TEXT.into(),
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
                let why = if self.fresh.get(slot.0 as usize) == Some(&true) {
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

impl<A: Allocator, O> Interpreter for Py2<A, O> {
    fn version(&self) -> Version {
        Version::V2_7
    }

    fn platform(&self) -> &Platform {
        &self.platform
    }

    fn int(&mut self, v: i64) -> Result<Int, PyError> {
        Py2::int(self, v)
    }

    fn explain(&mut self, o: &Int) -> String {
        Py2::explain(self, o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_offsets_and_the_block_jump_on_macos() {
        let mut py = Py2::new(Platform::macos_x86_64()).unwrap();
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
        let mut py = Py2::new(Platform::linux_x86_64()).unwrap();
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
        let mut py = Py2::new(Platform::linux_x86_64()).unwrap();
        let a = py.int(1000).unwrap();
        py.drop(a).unwrap();
        assert!(
            matches!(py.drop(a), Err(PyError::Alloc(AllocError::DoubleFree { addr, .. })) if addr == a.addr)
        );
        let mut py32 = Py2::new(Platform::linux_i686()).unwrap();
        let big = 1i64 << 40;
        assert_eq!(
            py32.int(big),
            Err(PyError::Alloc(AllocError::ValueOutOfRange {
                value: big.to_string(),
                bits: 32
            }))
        );
    }
}
