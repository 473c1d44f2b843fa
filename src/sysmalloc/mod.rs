//! System allocators: what CPython's `malloc()` calls reach.
//!
//! Each is an [`Allocator`](crate::alloc::Allocator) over a simulated
//! [`AddressSpace`](crate::vm::AddressSpace):
//! - [`glibc`]: glibc's ptmalloc2 (Linux), chunks with an 8-byte size header;
//! - [`bump`]: a bump allocator that never reuses, the baseline for comparisons.

pub mod bump;
pub mod glibc;

pub use bump::Bump;
pub use glibc::Glibc;
