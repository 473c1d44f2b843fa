//! Property tests: programs of random operations run against each model, every
//! invariant checked after every step, so a failure shrinks to the shortest program
//! that breaks it. `PYALLOC_PROPTEST_CASES` (or the `long-proptests` feature) runs more.

mod common;
mod glibc;
mod intlist;
mod mimalloc;
mod pymalloc;
mod pyrec27_check;
mod traces;
mod vm_bump;
