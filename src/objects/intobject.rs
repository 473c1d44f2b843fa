//! `PyIntBlock`: CPython 2's int free list (Objects/intobject.c, 2.7).
//!
//! ```text
//!  typedef struct { Py_ssize_t ob_refcnt; PyTypeObject *ob_type; long ob_ival; } PyIntObject;
//!  #define BLOCK_SIZE   1000   /* 1K less typical malloc overhead */
//!  #define BHEAD_SIZE   8      /* Enough for a 64-bit pointer */
//!  #define N_INTOBJECTS ((BLOCK_SIZE - BHEAD_SIZE) / sizeof(PyIntObject))
//!  struct _intblock { struct _intblock *next; PyIntObject objects[N_INTOBJECTS]; };
//!
//!  x86-64: sizeof(PyIntObject) = 8+8+8 = 24, N = 992/24 = 41, sizeof(PyIntBlock) = 8 + 41*24 = 992
//!  i686:   sizeof(PyIntObject) = 4+4+4 = 12, N = 992/12 = 82, sizeof(PyIntBlock) = 4 + 82*12 = 988
//! ```
//!
//! `PyInt_FromLong(v)` returns the cached `small_ints[v + 5]` for -5 <= v < 257 and
//! pops the free list otherwise; `int_dealloc` pushes it back. See [`FreeList`] for the
//! mechanics and invariants.

use super::freelist::{BlockLayout, BlockType, FreeList};
use super::CTypes;

/// The `PyIntObject` / `PyIntBlock` type of CPython 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyInt;

impl BlockType for PyInt {
    const BLOCK_NAME: &'static str = "PyIntBlock";
    const MODEL: &'static str = "int free list";

    fn layout(c: CTypes) -> BlockLayout {
        // PyObject_HEAD + ob_ival (a long)
        BlockLayout::head_and_value(c, c.long, c.long)
    }
}

/// CPython 2's int free list over the system allocator `A` (`IntFreeList<MacTiny>`,
/// `IntFreeList<Glibc>`).
pub type IntFreeList<A> = FreeList<A, PyInt>;

/// `NSMALLNEGINTS`: the cache holds -5 …
pub const NSMALLNEGINTS: i64 = 5;
/// `NSMALLPOSINTS`: … up to 256 (257 exclusive).
pub const NSMALLPOSINTS: i64 = 257;

/// True when `PyInt_FromLong(v)` returns a cached small int.
pub fn is_small(v: i64) -> bool {
    (-NSMALLNEGINTS..NSMALLPOSINTS).contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    #[test]
    fn layout_follows_intobject_c_on_each_platform() {
        let l64 = PyInt::layout(CTypes::of(&Platform::linux_x86_64()));
        assert_eq!(
            (l64.object_size, l64.n_objects, l64.objects_offset),
            (24, 41, 8)
        );
        assert_eq!(l64.block_size, 8 + 41 * 24);
        let l32 = PyInt::layout(CTypes::of(&Platform::linux_i686()));
        assert_eq!(
            (l32.object_size, l32.n_objects, l32.objects_offset),
            (12, 82, 4)
        );
        assert_eq!(l32.block_size, 4 + 82 * 12);
    }

    #[test]
    fn small_int_range_is_minus_5_to_256() {
        assert!(is_small(-5) && is_small(256));
        assert!(!is_small(-6) && !is_small(257));
    }
}
