//! CPython's type free lists and small-int caches: where an `int` (or `float`) object
//! lives before pymalloc or malloc are ever asked.
//!
//! ```text
//!  CPython 2 (Objects/intobject.c, floatobject.c, 2.7)
//!   block_list -> [next|objects[0] objects[1] ... objects[N-1]] -> [next|...] -> NULL
//!                  ^ malloc(sizeof(PyIntBlock)) = 992 bytes on 64-bit
//!   free_list  -> objects[N-1] -> objects[N-2] -> ... -> objects[0] -> (older free slots)
//!   small_ints[-5..=256]: the first 262 ints popped, by _PyInt_Init, in order
//!
//!  CPython 3 (Objects/longobject.c, 3.11): a static array of PyLongObject, 32 bytes apart
//! ```
//!
//! Sizes are computed from the [`Platform`](crate::platform::Platform) and the C constants
//! of intobject.c (`BLOCK_SIZE 1000`, `BHEAD_SIZE 8`), never typed in: see [`BlockLayout`].
//!
//! - [`freelist`]: the block free list both types share (`fill_free_list`, LIFO, ClearFreeList);
//! - [`intobject`]: `PyIntBlock` ([`IntFreeList`]);
//! - [`floatobject`]: `PyFloatBlock` ([`FloatFreeList`]);
//! - [`small_ints`]: Py2 `small_ints[]` and Py3's static array;
//! - [`state`]: [`Py2State`], all of the above (and pymalloc) as some history left them.

pub mod floatobject;
pub mod freelist;
pub mod intobject;
pub mod small_ints;
pub mod state;

pub use floatobject::{FloatFreeList, PyFloat};
pub use freelist::{BlockLayout, BlockType, ClearEvent, ClearReport, FreeList, Slot};
pub use intobject::{IntFreeList, PyInt};
pub use small_ints::SmallInts;
pub use state::Py2State;

use crate::platform::Platform;

/// `BLOCK_SIZE` of intobject.c and floatobject.c: "1K less typical malloc overhead".
pub const BLOCK_SIZE: u64 = 1000;
/// `BHEAD_SIZE`: "Enough for a 64-bit pointer" (8 on every platform).
pub const BHEAD_SIZE: u64 = 8;

/// The C widths a free-list layout depends on, taken from a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CTypes {
    /// `sizeof(void *)` = `sizeof(Py_ssize_t)` (the refcount's width).
    pub pointer: u64,
    /// `sizeof(long)`: the value of a CPython 2 int.
    pub long: u64,
    /// `_Alignof(double)` inside a struct: 4 on i386 System V, 8 on x86-64.
    pub double_align: u64,
}

impl CTypes {
    /// The C widths of a platform preset.
    pub fn of(p: &Platform) -> CTypes {
        CTypes {
            pointer: p.pointer_bytes,
            long: p.long_bytes,
            // The i386 System V ABI aligns a double member to 4; x86-64 to 8.
            double_align: p.pointer_bytes.min(8),
        }
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two).
pub(crate) fn align_up(n: u64, align: u64) -> u64 {
    (n + align - 1) & !(align - 1)
}
