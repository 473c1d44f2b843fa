//! System allocators: what CPython's `malloc()` calls reach.
//!
//! Each is an [`Allocator`](crate::alloc::Allocator) over a simulated
//! [`AddressSpace`](crate::vm::AddressSpace):
//! - [`glibc`]: glibc's ptmalloc2 (Linux), chunks with an 8-byte size header;
//! - [`bump`]: a bump allocator that never reuses, the baseline for comparisons;
//! - [`macos`]: macOS libmalloc's tiny allocator (16-byte quanta, no header);
//! - [`null`]: `Null`, an allocator that keeps nothing, for measuring a replay's own cost;
//! - [`shared`]: one heap shared by several layers (the int and float free lists).

pub mod bump;
pub mod glibc;
pub mod macos;
pub mod null;
pub mod shared;

pub use bump::Bump;
pub use glibc::Glibc;
pub use macos::MacTiny;
pub use null::Null;
pub use shared::SharedHeap;

use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;

/// `realloc` that always moves: a new block from `malloc(size)`, then `free(old)` (a
/// simulator copies no bytes). The allocators without an in-place grow use it; an
/// error of either call passes through unchanged.
pub(crate) fn realloc_by_moving<A: Allocator + ?Sized>(
    a: &mut A,
    old: Addr,
    size: usize,
) -> Result<Addr, AllocError> {
    let new = a.malloc(size)?;
    a.free(old)?;
    Ok(new)
}
