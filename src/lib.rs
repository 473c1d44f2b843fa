//! pyalloc simulates CPython's memory allocators so exactly that the addresses it hands
//! out are the ones a real interpreter shows through `id()`.
//!
//! The layers, bottom to top, as in CPython (see docs/ARCHITECTURE.md):
//! - [`vm`]: the address space (brk heap, mmap regions);
//! - [`sysmalloc`]: system allocators (glibc, macOS tiny, a bump baseline);
//! - [`pymalloc`]: CPython's object allocator (obmalloc.c);
//! - [`mimalloc`]: its sibling, mimalloc 2.1.2 as CPython 3.13 vendors it;
//! - [`objects`]: type free lists and the small-int cache (intobject.c, floatobject.c);
//! - [`interp`]: a Python facade scripting them (`int(v)`, `id`, `drop`).
//!
//! Every general allocator implements [`Allocator`]. The trace pipeline is layered the
//! same way: [`trace`] reads recordings → [`replay`] drives their events through a model
//! (one loop, one parser of model names) → [`check`] holds models to them → [`report`]
//! shows what a replay found (`pyalloc stats`).

pub mod addr;
pub mod alloc;
pub mod check;
pub mod compare;
pub mod error;
pub mod interp;
pub mod mimalloc;
pub mod objects;
pub mod platform;
pub mod progress;
pub mod pymalloc;
#[cfg(feature = "record")]
pub mod record;
pub mod replay;
pub mod report;
pub mod scripts;
pub mod stack;
pub mod sysmalloc;
pub mod trace;
pub mod vm;

pub use addr::Addr;
pub use alloc::{Allocator, Stats};
pub use error::AllocError;
pub use platform::Platform;
