//! System allocators: what CPython's `malloc()` calls reach.
//!
//! Each is an [`Allocator`](crate::alloc::Allocator) over a simulated
//! [`AddressSpace`](crate::vm::AddressSpace):
//! - [`glibc`]: glibc's ptmalloc2 (Linux), chunks with an 8-byte size header;
//! - [`bump`]: a bump allocator that never reuses, the baseline for comparisons;
//! - [`macos`]: macOS libmalloc's tiny allocator (16-byte quanta, no header);
//! - [`shared`]: one heap shared by several layers (the int and float free lists).

pub mod bump;
pub mod glibc;
pub mod macos;
pub mod shared;

pub use bump::Bump;
pub use glibc::Glibc;
pub use macos::MacTiny;
pub use shared::{NoMalloc, SharedHeap, TraceHeap};
