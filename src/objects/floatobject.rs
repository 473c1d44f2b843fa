//! `PyFloatBlock`: CPython 2's float free list (Objects/floatobject.c, 2.7) — the same
//! scheme as the int free list, without a cache of small values.
//!
//! ```text
//!  typedef struct { Py_ssize_t ob_refcnt; PyTypeObject *ob_type; double ob_fval; } PyFloatObject;
//!  #define N_FLOATOBJECTS ((BLOCK_SIZE - BHEAD_SIZE) / sizeof(PyFloatObject))
//!  x86-64: 24-byte objects, N = 41, sizeof(PyFloatBlock) = 992
//!  i686:   16-byte objects (double aligned to 4), N = 62, sizeof(PyFloatBlock) = 4 + 62*16 = 996
//! ```
//! `PyFloat_FromDouble` always pops; `float_dealloc` pushes; `PyFloat_ClearFreeList`
//! is PyInt_ClearFreeList's twin. See [`FreeList`].

use super::freelist::{BlockLayout, BlockType, FreeList};
use super::CTypes;

/// The `PyFloatObject` / `PyFloatBlock` type of CPython 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PyFloat;

impl BlockType for PyFloat {
    const BLOCK_NAME: &'static str = "PyFloatBlock";
    const MODEL: &'static str = "float free list";

    fn layout(c: CTypes) -> BlockLayout {
        // PyObject_HEAD + ob_fval (a double: 8 bytes, aligned as the platform's ABI says)
        BlockLayout::head_and_value(c, 8, c.double_align)
    }
}

/// CPython 2's float free list over the system allocator `A`.
pub type FloatFreeList<A> = FreeList<A, PyFloat>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    #[test]
    fn layout_follows_floatobject_c_on_each_platform() {
        let l64 = PyFloat::layout(CTypes::of(&Platform::macos_x86_64()));
        assert_eq!(
            (l64.object_size, l64.n_objects, l64.block_size),
            (24, 41, 992)
        );
        let l32 = PyFloat::layout(CTypes::of(&Platform::linux_i686()));
        assert_eq!(
            (l32.object_size, l32.n_objects, l32.block_size),
            (16, 62, 996)
        );
    }
}
