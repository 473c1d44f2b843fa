//! Build an allocator stack and allocate and free through it: CPython 3.11's pymalloc over
//! glibc 2.36's malloc, on one simulated Linux x86-64 address space, as in a real process.
//!
//! ```text
//!   Pymalloc<Glibc, SystemArenas>
//!     malloc(1..=512)   a block of a pymalloc pool (size class = (n - 1) >> ALIGNMENT_SHIFT)
//!     malloc(0 | >512)  falls through to glibc (brk heap, or mmap above the threshold)
//!     arenas            mmapped in glibc's address space
//! ```
//!
//! Run: `cargo run --release --example stack`.

use pyalloc::pymalloc::{Pymalloc, PymallocParams, SystemArenas};
use pyalloc::sysmalloc::glibc::{Glibc, GlibcParams};
use pyalloc::{Allocator, Platform};

fn main() -> Result<(), pyalloc::AllocError> {
    run()
}

fn run() -> Result<(), pyalloc::AllocError> {
    let platform = Platform::linux_x86_64();
    let params = PymallocParams::v3_11();
    let glibc = Glibc::new(GlibcParams::v2_36_x86_64(), platform.address_space());
    let mut heap: Pymalloc<Glibc, SystemArenas> =
        Pymalloc::new(params.clone(), glibc, SystemArenas);

    // Two requests of one size class: consecutive blocks of one pool.
    let a = heap.malloc(24)?;
    let b = heap.malloc(24)?;
    let class = params.class_size(params.size_class(24).expect("24 bytes is small"));
    println!("malloc(24) = {a}, malloc(24) = {b}: {} bytes apart", b - a);
    assert_eq!((b - a) as u64, class);

    // A freed block is the next one its size class hands out (the pool's free list is LIFO).
    heap.free(a)?;
    let c = heap.malloc(20)?;
    println!("free({a}); malloc(20) = {c}: the same block");
    assert_eq!(c, a);

    // Over SMALL_REQUEST_THRESHOLD the request goes to glibc, outside every arena.
    let big = heap.malloc(100_000)?;
    println!("malloc(100000) = {big}: {}", heap.explain(big));
    assert!(heap.block_info(big).is_none());

    // A wrong free is an error value naming the address, never a panic.
    let err = heap.free(pyalloc::Addr(big.0 + 8)).unwrap_err();
    println!("free({}): {err}", pyalloc::Addr(big.0 + 8));
    Ok(())
}

#[test]
fn runs() {
    run().unwrap();
}
