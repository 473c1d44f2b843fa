//! The object state of a CPython 2.7 process at one moment: what a replay of a recording
//! leaves behind and what the facade (`interp::Py2::from_state`) continues from.
//!
//! ```text
//!  Py2State<A, O>
//!   heap        SharedHeap<A>              PyMem_MALLOC: the system malloc both free lists share
//!   ints        IntFreeList<SharedHeap<A>>   intobject.c: block_list, free_list
//!   floats      FloatFreeList<SharedHeap<A>> floatobject.c: block_list, free_list
//!   small_ints  SmallInts                  small_ints[-5..=256], filled by _PyInt_Init
//!   obmalloc    O                          Objects/obmalloc.c (2.7): arenas, pools, blocks
//! ```
//!
//! The type names only layers at or below `objects`: whoever builds a state (the 2.7
//! checker replaying a PYREC trace, say) and whoever continues from it (the facade) meet
//! here and never import each other. `O` is whatever object allocator the producer kept
//! (`()` when there is none).

use super::{FloatFreeList, IntFreeList, SmallInts};
use crate::alloc::Allocator;
use crate::platform::Platform;
use crate::sysmalloc::SharedHeap;

/// CPython 2.7's int and float objects and its object allocator, as some history left them.
///
/// Invariant: `ints` and `floats` allocate their blocks from `heap` (clones of one
/// [`SharedHeap`]), and every cached small int is an object of `ints`.
pub struct Py2State<A: Allocator, O = ()> {
    /// The platform whose C widths laid out the blocks.
    pub platform: Platform,
    /// The system malloc under both free lists.
    pub heap: SharedHeap<A>,
    /// The `PyIntBlock` free list.
    pub ints: IntFreeList<SharedHeap<A>>,
    /// The `PyFloatBlock` free list.
    pub floats: FloatFreeList<SharedHeap<A>>,
    /// `small_ints[]` as `_PyInt_Init` filled it.
    pub small_ints: SmallInts,
    /// pymalloc (obmalloc.c) as the history left it.
    pub obmalloc: O,
}

impl<A: Allocator> Py2State<A> {
    /// CPython 2.7 right after `_PyInt_Init` over `heap`: empty free lists, then the 262
    /// small ints popped, -5 first; no object allocator.
    ///
    /// ```
    /// use pyalloc::objects::Py2State;
    /// use pyalloc::sysmalloc::Bump;
    /// use pyalloc::{Addr, Platform};
    ///
    /// let s = Py2State::after_int_init(Platform::linux_x86_64(), Bump::new(Addr(0x10000), 16))?;
    /// let size = s.ints.layout().object_size as i64;
    /// // _PyInt_Init pops -5 first, from the top of a fresh block down.
    /// assert_eq!(s.small_ints.get(-5).unwrap() - s.small_ints.get(-4).unwrap(), size);
    /// # Ok::<(), pyalloc::AllocError>(())
    /// ```
    ///
    /// # Errors
    /// Whatever the heap refuses when `_PyInt_Init` needs a block.
    pub fn after_int_init(
        platform: Platform,
        heap: A,
    ) -> Result<Py2State<A>, crate::error::AllocError> {
        let heap = SharedHeap::new(heap);
        let mut ints = IntFreeList::new(heap.clone(), &platform);
        let small_ints = SmallInts::py2_init(&mut ints)?;
        Ok(Py2State {
            floats: FloatFreeList::new(heap.clone(), &platform),
            heap,
            ints,
            small_ints,
            platform,
            obmalloc: (),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;
    use crate::sysmalloc::Bump;

    #[test]
    fn after_int_init_every_small_int_is_a_live_object_of_the_int_free_list() {
        let p = Platform::linux_x86_64();
        let mut s = Py2State::after_int_init(p, Bump::new(Addr(0x10000), 16)).unwrap();
        let n = s.small_ints.iter().count() as u64;
        assert_eq!(s.ints.n_live(), n);
        for (v, a) in s.small_ints.iter() {
            let w = s.ints.whereabouts(a).unwrap();
            assert!(w.live, "small int {v} at {a}");
            assert_eq!(s.small_ints.slot(v), Some(w.slot));
        }
        assert_eq!(s.floats.n_blocks(), 0);
    }
}
