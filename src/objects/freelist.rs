//! The block free list of CPython 2's `int` and `float` (Objects/intobject.c and
//! floatobject.c, 2.7): fixed-size objects carved from malloc'd blocks, handed out
//! LIFO, never returned to malloc except by `PyInt_ClearFreeList`.
//!
//! ```text
//!  block (64-bit PyIntBlock, malloc(992)):
//!   base        base+8      base+32     ...                  base+968    base+992
//!   | next (8)  | objects[0] | objects[1] | ... | objects[39] | objects[40] |
//!
//!  fill_free_list threads a fresh block from the rear:
//!   free_list -> objects[40] -> objects[39] -> ... -> objects[0] -> NULL
//!  PyInt_FromLong pops the head; int_dealloc pushes the object back on the head.
//! ```
//!
//! Objects are numbered by [`Slot`]: `slot = block_number * N + k` for `objects[k]`;
//! each slot is one 16-byte record (its address, its free-list link, and whether it was
//! ever handed out, to tell a double free from a stray one). The free list is intrusive:
//! a handed-out slot's link holds the mark `LIVE` (as C's `ob_type` then points at the
//! type, not the next free object); [`FreeList::occupancy`] reads liveness out as a
//! `bitvec`. So an alloc+free pair touches one record and the head.
//!
//! Invariants (checked by proptests/intlist.rs after every step):
//! - `n_live + |free list| == N × n_blocks` (`n_live()` counts the `LIVE` marks and
//!   `n_free()` is `N × n_blocks − n_live`; the property test walks the list)
//! - no live slot is on the free list; a slot is live iff its link is `LIVE`
//! - every object address `== base(block) + objects_offset + object_size × k`, `0 <= k < N`
//! - no two live objects share an address.

use super::{align_up, CTypes, BHEAD_SIZE, BLOCK_SIZE};
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::platform::Platform;
use bitvec::order::Lsb0;
use bitvec::vec::BitVec;
use std::marker::PhantomData;

/// End of a slot or block chain (C's `NULL`).
const NIL: u32 = u32::MAX;
/// The `next` of a slot that is handed out (in C, `ob_type` then points at `PyInt_Type`).
const LIVE: u32 = u32::MAX - 1;

/// The nodes of a list threaded through `nodes` by index (`free_list` through the
/// objects, `block_list` through the blocks), from `first` to [`NIL`].
fn linked<T>(nodes: &[T], first: u32, next: fn(&T) -> u32) -> impl Iterator<Item = &T> {
    let mut at = first;
    std::iter::from_fn(move || {
        if at == NIL {
            return None;
        }
        let node = &nodes[at as usize];
        at = next(node);
        Some(node)
    })
}

/// The C layout of one free-list block type on one platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    /// `sizeof(PyIntObject)` (24 on 64-bit, 12 on i686).
    pub object_size: u64,
    /// `_Alignof` the object.
    pub object_align: u64,
    /// `offsetof(PyIntBlock, objects)`: the `next` pointer, padded to the object's alignment.
    pub objects_offset: u64,
    /// `N_INTOBJECTS = (BLOCK_SIZE - BHEAD_SIZE) / sizeof(PyIntObject)` (41 on 64-bit).
    pub n_objects: u32,
    /// `sizeof(PyIntBlock)`: what fill_free_list mallocs (992 on 64-bit).
    pub block_size: u64,
}

impl BlockLayout {
    /// The layout of a block whose objects are `object_size` bytes aligned to `object_align`,
    /// behind a `next` pointer of `pointer` bytes, as C lays out `struct _intblock`.
    pub fn new(pointer: u64, object_size: u64, object_align: u64) -> BlockLayout {
        let n_objects = (BLOCK_SIZE - BHEAD_SIZE) / object_size;
        let objects_offset = align_up(pointer, object_align);
        let struct_align = pointer.max(object_align);
        BlockLayout {
            object_size,
            object_align,
            objects_offset,
            n_objects: n_objects as u32,
            block_size: align_up(objects_offset + n_objects * object_size, struct_align),
        }
    }

    /// The layout of a block of objects that are `PyObject_HEAD` (`ob_refcnt`, a
    /// `Py_ssize_t`, then `ob_type`, a pointer) and one value of `value_size` bytes aligned
    /// to `value_align`, as C lays out `PyIntObject` (a `long`) and `PyFloatObject` (a
    /// `double`): `object_size = align_up(2 * pointer + value_size, max(pointer, value_align))`.
    pub fn head_and_value(c: CTypes, value_size: u64, value_align: u64) -> BlockLayout {
        let align = c.pointer.max(value_align);
        let size = align_up(c.pointer + c.pointer + value_size, align);
        BlockLayout::new(c.pointer, size, align)
    }

    /// The address of `objects[k]` in the block at `base`.
    pub fn object_addr(&self, base: Addr, k: u32) -> Addr {
        base + (self.objects_offset + self.object_size * k as u64)
    }
}

/// A CPython 2 free-list object type: its C name and its layout on a platform.
pub trait BlockType {
    /// The block struct as CPython names it (`PyIntBlock`).
    const BLOCK_NAME: &'static str;
    /// The model's name in errors and reports (`int free list`).
    const MODEL: &'static str;
    /// The layout on a platform with these C widths.
    fn layout(c: CTypes) -> BlockLayout;
}

/// One object of a free list: its number and its address (`id()` in Python).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(pub u32);

/// Where an address lies in a free list's blocks (the `--explain` answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whereabouts {
    /// Block number, in the order blocks were made (0 = first malloc'd).
    pub block: u32,
    /// The block's address (what malloc returned).
    pub base: Addr,
    /// `k` of `objects[k]`.
    pub k: u32,
    /// The object's slot.
    pub slot: Slot,
    /// True when the object is handed out.
    pub live: bool,
}

/// One step of ClearFreeList, in the order it walked `block_list` (the trace's K/X lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearEvent {
    /// The block holds `live` live objects: kept, its free slots re-threaded (`K ADDR LIVE`).
    Keep {
        /// The block.
        base: Addr,
        /// Live objects in it.
        live: u64,
    },
    /// The block holds none: `free(base)` (`X ADDR`).
    Free {
        /// The block.
        base: Addr,
    },
}

/// What ClearFreeList did (the trace's `L KEPT FREED LIVE NFREE HEAD` line, and the K/X before it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearReport {
    /// Each block in walk order.
    pub events: Vec<ClearEvent>,
    /// Blocks kept.
    pub kept: u64,
    /// Blocks freed.
    pub freed: u64,
    /// Live objects (the function's return value).
    pub live: u64,
    /// Length of the rebuilt free list (`N × kept − live`).
    pub nfree: u64,
    /// The new free-list head (`NULL` when empty).
    pub head: Addr,
}

/// One object of a block, as the model keeps it.
#[derive(Debug, Clone, Copy)]
struct Object {
    addr: u64,  // the object's address (`&objects[k]`)
    next: u32,  // free-list link (Py_TYPE abused as `next`): a slot, NIL, or LIVE
    ever: bool, // handed out at least once
}

#[derive(Debug, Clone)]
struct Block {
    base: Addr,  // what malloc returned (or the trace said)
    next: u32,   // block_list link: the block made before it (NIL ends)
    freed: bool, // ClearFreeList gave it back
    owned: bool, // malloc'd from the heap below (false: address given by a trace)
}

/// The free list of one CPython 2 object type over the system allocator `A`.
///
/// `IntFreeList<A>` and `FloatFreeList<A>` are this type with `T` = `PyInt`/`PyFloat`.
#[derive(Debug, Clone)]
pub struct FreeList<A, T> {
    heap: A,                  // the system malloc fill_free_list calls (PyMem_MALLOC)
    layout: BlockLayout,      // sizes on this platform
    blocks: Vec<Block>,       // every block ever made, by block number
    by_base: Vec<(u64, u32)>, // (base, block number) of blocks not freed, sorted by base
    objects: Vec<Object>,     // by slot: address, free-list link or LIVE, handed out once
    free_list: u32,           // head slot (NIL = NULL)
    block_list: u32,          // head block number (NIL = NULL): the newest block
    n_blocks: u64,            // blocks not freed
    hint: u32,                // block of the last address looked up
    recip: u64,               // ceil(2^32 / object_size): division by multiplication
    _type: PhantomData<T>,
}

impl<A: Allocator, T: BlockType> FreeList<A, T> {
    /// An empty free list (`free_list == block_list == NULL`) over `heap`.
    pub fn new(heap: A, platform: &Platform) -> Self {
        let layout = T::layout(CTypes::of(platform));
        FreeList {
            heap,
            layout,
            blocks: Vec::new(),
            by_base: Vec::new(),
            objects: Vec::new(),
            free_list: NIL,
            block_list: NIL,
            n_blocks: 0,
            hint: 0,
            recip: (1u64 << 32).div_ceil(layout.object_size),
            _type: PhantomData,
        }
    }

    /// The layout in force.
    pub fn layout(&self) -> &BlockLayout {
        &self.layout
    }

    /// The system allocator below.
    pub fn heap(&self) -> &A {
        &self.heap
    }

    /// The system allocator below, mutably (to script other mallocs between blocks).
    pub fn heap_mut(&mut self) -> &mut A {
        &mut self.heap
    }

    /// Pops the free-list head (`PyInt_FromLong`'s inlined `PyObject_New`), filling the
    /// list from a fresh block when it is empty.
    ///
    /// # Errors
    /// Whatever the heap refuses when a block is needed.
    #[inline(always)]
    pub fn alloc(&mut self) -> Result<(Slot, Addr), AllocError> {
        if self.free_list == NIL {
            self.fill_free_list()?;
        }
        Ok(self.pop())
    }

    /// Pops the head, which is not NIL.
    #[inline(always)]
    fn pop(&mut self) -> (Slot, Addr) {
        let s = self.free_list as usize;
        debug_assert!(s < self.objects.len(), "free-list head {s} is not a slot");
        // SAFETY: the head is not NIL here, and every link on the free list (the head
        // included) is a slot that `add_block` made: `add_block` links only slots below
        // `objects.len()`, `free_slot` pushes only a slot it found in `objects`, and
        // `clear_free_list` re-threads only slots of kept blocks; `objects` never shrinks.
        let o = unsafe { self.objects.get_unchecked_mut(s) };
        self.free_list = o.next;
        o.next = LIVE;
        o.ever = true;
        (Slot(s as u32), Addr(o.addr))
    }

    /// Pushes a live object back on the free-list head (`int_dealloc`).
    ///
    /// # Errors
    /// `DoubleFree` for an object already on the free list; `NotLive` for a slot never handed out.
    #[inline(always)]
    pub fn free_slot(&mut self, slot: Slot) -> Result<Addr, AllocError> {
        let s = slot.0 as usize;
        match self.objects.get_mut(s) {
            Some(o) if o.next == LIVE => {
                o.next = self.free_list;
                self.free_list = slot.0;
                Ok(Addr(o.addr))
            }
            _ => Err(self.not_live(s)),
        }
    }

    /// Pushes the live object at `addr` back on the free-list head (`int_dealloc`).
    ///
    /// # Errors
    /// `NotLive` when no object of this list starts at `addr`; `DoubleFree` when it is free.
    #[inline]
    pub fn free(&mut self, addr: Addr) -> Result<Slot, AllocError> {
        let slot = self.slot_of(addr).ok_or(AllocError::NotLive {
            op: "free",
            addr,
            model: T::MODEL,
        })?;
        self.free_slot(slot)?;
        Ok(slot)
    }

    #[cold]
    #[inline(never)]
    fn not_live(&self, s: usize) -> AllocError {
        let o = self.objects.get(s);
        let addr = o.map_or(Addr::NULL, |o| Addr(o.addr));
        if o.is_some_and(|o| o.ever) && !self.blocks[s / self.n()].freed {
            AllocError::DoubleFree {
                addr,
                model: T::MODEL,
            }
        } else {
            AllocError::NotLive {
                op: "free",
                addr,
                model: T::MODEL,
            }
        }
    }

    #[inline]
    fn n(&self) -> usize {
        self.layout.n_objects as usize
    }

    /// `fill_free_list`: `malloc(sizeof(PyIntBlock))`, push it on `block_list`, thread its
    /// objects from `objects[N-1]` (the new head) down to `objects[0]` (whose link is NULL).
    ///
    /// # Errors
    /// Whatever the heap refuses.
    #[inline(never)]
    pub fn fill_free_list(&mut self) -> Result<Addr, AllocError> {
        let base = self.heap.malloc(self.layout.block_size as usize)?;
        self.add_block(base, true)?;
        Ok(base)
    }

    /// `fill_free_list` with the block's address given (taken from a trace's `B` line)
    /// instead of asking the heap.
    ///
    /// # Errors
    /// `Corrupt` when the block would overlap a block not freed.
    pub(crate) fn fill_free_list_at(&mut self, base: Addr) -> Result<(), AllocError> {
        self.add_block(base, false)
    }

    fn add_block(&mut self, base: Addr, owned: bool) -> Result<(), AllocError> {
        let size = self.layout.block_size;
        if base.0.checked_add(size).is_none() {
            return Err(AllocError::OutOfAddressSpace {
                what: format!("a {}-byte block at {base}", size),
            });
        }
        let i = self.by_base.partition_point(|&(b, _)| b < base.0);
        let clash_below = i > 0 && self.by_base[i - 1].0 + size > base.0;
        let clash_above = i < self.by_base.len() && base.0 + size > self.by_base[i].0;
        if clash_below || clash_above {
            return Err(AllocError::Corrupt {
                message: "new block overlaps a block in use",
                addr: base,
                model: T::MODEL,
            });
        }
        let b = self.blocks.len() as u32;
        let n = self.layout.n_objects;
        let first = self.objects.len() as u32;
        if (first as u64 + n as u64) >= LIVE as u64 {
            return Err(AllocError::OutOfAddressSpace {
                what: format!("more than {} objects in the {}", NIL, T::MODEL),
            });
        }
        self.blocks.push(Block {
            base,
            next: self.block_list,
            freed: false,
            owned,
        });
        self.block_list = b;
        self.by_base.insert(i, (base.0, b));
        for k in 0..n {
            self.objects.push(Object {
                addr: self.layout.object_addr(base, k).0,
                // objects[k] -> objects[k-1]; objects[0] -> the old head (NULL when called
                // because the list was empty, as fill_free_list always is).
                next: if k == 0 {
                    self.free_list
                } else {
                    first + k - 1
                },
                ever: false,
            });
        }
        self.free_list = first + n - 1;
        self.n_blocks += 1;
        Ok(())
    }

    /// The object slot starting at `addr`, live or free, in a block not freed.
    #[inline]
    pub fn slot_of(&mut self, addr: Addr) -> Option<Slot> {
        let w = self.locate(addr)?;
        Some(w.slot)
    }

    /// Where `addr` lies: block, `objects[k]`, liveness (`None` when it is not the start
    /// of an object in a block not freed).
    pub fn whereabouts(&mut self, addr: Addr) -> Option<Whereabouts> {
        self.locate(addr)
    }

    #[inline]
    fn locate(&mut self, addr: Addr) -> Option<Whereabouts> {
        let span = self.layout.object_size * self.layout.n_objects as u64;
        let mut b = self.hint as usize;
        let hit = b < self.blocks.len() && {
            let blk = &self.blocks[b];
            !blk.freed
                && addr
                    .0
                    .wrapping_sub(blk.base.0.wrapping_add(self.layout.objects_offset))
                    < span
        };
        if !hit {
            let i = self.by_base.partition_point(|&(base, _)| base <= addr.0);
            if i == 0 {
                return None;
            }
            b = self.by_base[i - 1].1 as usize;
            self.hint = b as u32;
        }
        let base = self.blocks[b].base;
        let off = addr
            .0
            .wrapping_sub(base.0.wrapping_add(self.layout.objects_offset));
        if off >= span {
            return None;
        }
        let k = ((off * self.recip) >> 32) as u32;
        if k as u64 * self.layout.object_size != off {
            return None;
        }
        let slot = b as u32 * self.layout.n_objects + k;
        Some(Whereabouts {
            block: b as u32,
            base,
            k,
            slot: Slot(slot),
            live: self.objects[slot as usize].next == LIVE,
        })
    }

    /// The address of a slot.
    #[inline]
    pub fn addr_of(&self, slot: Slot) -> Addr {
        Addr(self.objects[slot.0 as usize].addr)
    }

    /// True when the slot is handed out.
    #[inline]
    pub fn is_live(&self, slot: Slot) -> bool {
        self.objects
            .get(slot.0 as usize)
            .is_some_and(|o| o.next == LIVE)
    }

    /// The free-list head (`NULL` when empty): the address the next alloc returns,
    /// unless a new block is needed.
    #[inline]
    pub fn head(&self) -> Addr {
        if self.free_list == NIL {
            Addr::NULL
        } else {
            Addr(self.objects[self.free_list as usize].addr)
        }
    }

    /// The free list from the head, as addresses.
    pub fn free_addrs(&self) -> impl Iterator<Item = Addr> + '_ {
        linked(&self.objects, self.free_list, |o| o.next).map(|o| Addr(o.addr))
    }

    /// Blocks in `block_list` order (newest first, until ClearFreeList reorders them).
    pub fn block_list(&self) -> impl Iterator<Item = Addr> + '_ {
        linked(&self.blocks, self.block_list, |b| b.next).map(|b| b.base)
    }

    /// Addresses of every live object, in slot order.
    pub fn live_addrs(&self) -> impl Iterator<Item = Addr> + '_ {
        self.objects
            .iter()
            .filter(|o| o.next == LIVE)
            .map(|o| Addr(o.addr))
    }

    /// Live objects.
    pub fn n_live(&self) -> u64 {
        self.objects.iter().filter(|o| o.next == LIVE).count() as u64
    }

    /// Objects on the free list.
    pub fn n_free(&self) -> u64 {
        self.layout.n_objects as u64 * self.n_blocks - self.n_live()
    }

    /// Occupancy of every slot ever made, as a bit vector (1 = live), slot order: the
    /// source of heap maps.
    pub fn occupancy(&self) -> BitVec<u64, Lsb0> {
        self.objects.iter().map(|o| o.next == LIVE).collect()
    }

    /// Blocks not freed.
    pub fn n_blocks(&self) -> u64 {
        self.n_blocks
    }

    /// Live objects in the block numbered `b`.
    fn live_in_block(&self, b: usize) -> u64 {
        let n = self.n();
        self.objects[b * n..(b + 1) * n]
            .iter()
            .filter(|o| o.next == LIVE)
            .count() as u64
    }

    /// `PyInt_ClearFreeList` (and `PyFloat_ClearFreeList`): `free_list = block_list = NULL`,
    /// then walk the old `block_list` from its head. A block holding live objects is pushed
    /// on the new `block_list` (so kept blocks end up in reverse order) and its free slots
    /// `objects[0], [1], …, [N-1]` are pushed in that order on the free-list head; a block
    /// holding none is `free()`d.
    ///
    /// (The real function also re-registers a live small int whose `small_ints[]` entry is
    /// NULL; that only happens inside `PyInt_Fini` and changes a refcount, never an address.)
    ///
    /// # Errors
    /// Whatever the heap refuses on `free`.
    pub fn clear_free_list(&mut self) -> Result<ClearReport, AllocError> {
        let n = self.layout.n_objects;
        let mut list = self.block_list;
        self.block_list = NIL;
        self.free_list = NIL;
        let mut report = ClearReport {
            events: Vec::new(),
            kept: 0,
            freed: 0,
            live: 0,
            nfree: 0,
            head: Addr::NULL,
        };
        while list != NIL {
            let b = list as usize;
            let u = self.live_in_block(b);
            let next = self.blocks[b].next;
            let base = self.blocks[b].base;
            if u > 0 {
                self.blocks[b].next = self.block_list;
                self.block_list = list;
                for k in 0..n {
                    let s = list * n + k;
                    let o = &mut self.objects[s as usize];
                    if o.next != LIVE {
                        o.next = self.free_list;
                        self.free_list = s;
                    }
                }
                report.kept += 1;
                report.events.push(ClearEvent::Keep { base, live: u });
            } else {
                if self.blocks[b].owned {
                    self.heap.free(base)?;
                }
                self.blocks[b].freed = true;
                self.blocks[b].next = NIL;
                let i = self.by_base.partition_point(|&(a, _)| a < base.0);
                self.by_base.remove(i);
                self.n_blocks -= 1;
                report.freed += 1;
                report.events.push(ClearEvent::Free { base });
            }
            report.live += u;
            list = next;
        }
        report.nfree = self.n_free();
        report.head = self.head();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::intobject::PyInt;
    use crate::sysmalloc::Bump;

    fn list() -> FreeList<Bump, PyInt> {
        FreeList::new(Bump::new(Addr(0x1000), 16), &Platform::linux_x86_64())
    }

    #[test]
    fn a_fresh_block_is_handed_out_from_its_last_object_down() {
        let mut l = list();
        let lay = *l.layout();
        let (_, first) = l.alloc().unwrap();
        let (_, second) = l.alloc().unwrap();
        let base = l.block_list().next().unwrap();
        assert_eq!(first, lay.object_addr(base, lay.n_objects - 1));
        assert_eq!(first - second, lay.object_size as i64);
        assert_eq!(l.n_live() + l.n_free(), lay.n_objects as u64 * l.n_blocks());
    }

    #[test]
    fn freed_objects_come_back_last_in_first_out() {
        let mut l = list();
        let a: Vec<Addr> = (0..5).map(|_| l.alloc().unwrap().1).collect();
        l.free(a[1]).unwrap();
        l.free(a[3]).unwrap();
        assert_eq!(l.alloc().unwrap().1, a[3]);
        assert_eq!(l.alloc().unwrap().1, a[1]);
    }

    #[test]
    fn bad_frees_are_errors_naming_the_address() {
        let mut l = list();
        let (_, a) = l.alloc().unwrap();
        l.free(a).unwrap();
        assert_eq!(
            l.free(a),
            Err(AllocError::DoubleFree {
                addr: a,
                model: PyInt::MODEL
            })
        );
        assert!(matches!(l.free(a + 1), Err(AllocError::NotLive { addr, .. }) if addr == a + 1));
        assert!(matches!(
            l.free(Addr(0x10)),
            Err(AllocError::NotLive { .. })
        ));
        let never = a - l.layout().object_size;
        assert!(matches!(l.free(never), Err(AllocError::NotLive { addr, .. }) if addr == never));
    }

    #[test]
    fn clear_free_list_frees_empty_blocks_and_rethreads_the_rest_in_order() {
        let mut l = list();
        let n = l.layout().n_objects as usize;
        let objs: Vec<Addr> = (0..2 * n + 1).map(|_| l.alloc().unwrap().1).collect();
        let blocks: Vec<Addr> = l.block_list().collect(); // newest first
        assert_eq!(blocks.len(), 3);
        // Free all of the middle block and one object of the newest.
        for &a in &objs[n..2 * n] {
            l.free(a).unwrap();
        }
        let r = l.clear_free_list().unwrap();
        assert_eq!(
            r.events,
            vec![
                ClearEvent::Keep {
                    base: blocks[0],
                    live: 1
                },
                ClearEvent::Free { base: blocks[1] },
                ClearEvent::Keep {
                    base: blocks[2],
                    live: n as u64
                },
            ]
        );
        assert_eq!((r.kept, r.freed, r.live), (2, 1, n as u64 + 1));
        assert_eq!(r.nfree, 2 * n as u64 - r.live);
        // block_list is now reversed: oldest kept first.
        assert_eq!(
            l.block_list().collect::<Vec<_>>(),
            vec![blocks[2], blocks[0]]
        );
        // The newest block's free slots were pushed objects[0] first, so objects[N-2] is the head.
        let lay = *l.layout();
        assert_eq!(r.head, lay.object_addr(blocks[0], lay.n_objects - 2));
        assert!(
            l.slot_of(objs[n]).is_none(),
            "freed block's objects are gone"
        );
    }
}
