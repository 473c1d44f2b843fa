//! pyalloc simulates CPython's memory allocators so exactly that the addresses it hands
//! out are the ones a real interpreter shows through `id()`: the small-int cache, CPython
//! 2's int and float free lists, pymalloc (obmalloc.c, every era from 2.7 to 3.13) and the
//! system malloc underneath (glibc's ptmalloc2, macOS's tiny allocator).
//!
//! # Build a stack and allocate through it
//!
//! Each layer owns the one below it, so a stack is a type: CPython 3.11's pymalloc over
//! glibc 2.36, on one simulated Linux x86-64 address space. Every allocator is an
//! [`Allocator`] (`malloc`, `free`, `realloc`, `calloc`, `stats`).
//!
//! ```
//! use pyalloc::pymalloc::{Pymalloc, PymallocParams, SystemArenas};
//! use pyalloc::sysmalloc::glibc::{Glibc, GlibcParams};
//! use pyalloc::{Allocator, Platform};
//!
//! let params = PymallocParams::v3_11();
//! let glibc = Glibc::new(GlibcParams::v2_36_x86_64(), Platform::linux_x86_64().address_space());
//! let mut heap: Pymalloc<Glibc, SystemArenas> = Pymalloc::new(params.clone(), glibc, SystemArenas);
//!
//! let a = heap.malloc(24)?;
//! let b = heap.malloc(24)?; // the next block of the same pool
//! assert_eq!((b - a) as u64, params.class_size(params.size_class(24).unwrap()));
//! heap.free(a)?;
//! assert_eq!(heap.malloc(20)?, a); // same size class: the block just freed (LIFO)
//! assert!(heap.free(a + 8).is_err()); // a wrong free is an error value, never a panic
//! # Ok::<(), pyalloc::AllocError>(())
//! ```
//!
//! # Replay a recording through a model and compare
//!
//! [`check::check_file`] reads any recording the crate knows (the format is sniffed),
//! replays its requests through the model its header names (or
//! [`CheckOptions::model`](check::CheckOptions::model)) and compares every address.
//!
//! ```
//! use pyalloc::check::{check_file, CheckOptions};
//! # let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"),
//! #     "/../shared/traces/cpython-3.11.7-linux-x86_64/startup_only.trace.gz"));
//!
//! let report = check_file(path, &CheckOptions::default())?;
//! assert!(report.checked > 0 && report.matched == report.checked);
//! assert!(report.first_divergence.is_none()); // else: event, line, expected, got, why
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Property tests against a recording's addresses
//!
//! Replay a recording up to some point, continue from the state it left with a random
//! program, and check the model's promises after every step. Here: CPython 2.7's seed run
//! replayed to a random event (every recorded free-list address matched on the way), then
//! random `int(v)` calls, each of which must pop the free list's head.
//!
//! ```
//! use proptest::prelude::*;
//! use proptest::test_runner::{Config, TestCaseError, TestRunner};
//! use pyalloc::check::pyrec27;
//! use pyalloc::interp::Py2;
//! # let trace = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"),
//! #     "/../shared/traces/cpython-2.7.18-linux-x86_64/seed.trace.gz"));
//!
//! let mut runner = TestRunner::new(Config { cases: 8, failure_persistence: None, ..Config::default() });
//! let programs = (0u64..3000, proptest::collection::vec(257i64..100_000, 1..40));
//! runner.run(&programs, |(cut, values)| {
//!     let mut seen = 0;
//!     let stop = pyrec27::state_until(trace, |_| { seen += 1; seen > cut })
//!         .map_err(|e| TestCaseError::fail(e.to_string()))?;
//!     prop_assert!(stop.report.ok()); // the model matched the recording up to the cut
//!     let mut py = Py2::from_state(stop.state);
//!     for v in values {
//!         let head = py.ints().head();
//!         if head.is_null() {
//!             break; // a new block would be needed: the recording has none to give
//!         }
//!         prop_assert_eq!(py.int(v).unwrap().addr, head);
//!     }
//!     Ok(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The same three, as programs: `examples/stack.rs`, `examples/check_recording.rs`,
//! `examples/recorded_proptest.rs` (`cargo run --release --example stack`; `cargo test`
//! runs them).
//!
//! # The layers
//!
//! Bottom to top, as in CPython (see docs/ARCHITECTURE.md):
//! - [`vm`], [`platform`]: the address space (brk heap, mmap regions) and the platform presets;
//! - [`sysmalloc`]: system allocators (glibc, macOS tiny, a bump baseline);
//! - [`pymalloc`]: CPython's object allocator (obmalloc.c);
//! - [`mimalloc`]: its sibling, mimalloc 2.1.2 as CPython 3.13 vendors it;
//! - [`objects`]: type free lists and the small-int cache (intobject.c, floatobject.c);
//! - [`interp`]: the Python facades scripting them ([`interp::Py2`]: `int(v)`, `id`, `drop`;
//!   [`interp::Py3`]), and [`scripts`], programs run through them.
//!
//! Then the pipeline: [`trace`] reads and writes recordings, [`replay`] drives their
//! events through a model, [`check`] holds models to them, [`report`] and [`compare`] say
//! what a workload costs.

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
pub(crate) mod slots;
pub mod stack;
pub mod sysmalloc;
pub mod trace;
pub mod vm;
pub(crate) mod zeroed;

pub use addr::Addr;
pub use alloc::{Allocator, Stats};
pub use error::AllocError;
pub use platform::Platform;
