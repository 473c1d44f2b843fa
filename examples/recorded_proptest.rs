//! A property test whose programs run against a model and a recording's addresses:
//! replay CPython 2.7's recorded seed run up to a random point (the model must match every
//! recorded free-list address so far), then run a random program of int operations from
//! that state and check, after every step, what intobject.c promises:
//!
//! ```text
//!   int(v), v outside -5..256:  the new object is the free list's head   (PyInt_FromLong pops it)
//!   drop(o) at refcount 0:      o becomes the free list's head          (int_dealloc pushes it)
//!   every held object:          live, in a PyIntBlock, at its own address
//! ```
//! When the free list is empty the model asks malloc for a new block; the recording has no
//! block past its end to give, so the step must fail exactly then, and the program stops.
//!
//! Run: `cargo run --release --example recorded_proptest` (64 cases; also run by `cargo test`).

#[path = "../tests/common/mod.rs"]
mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use pyalloc::check::pyrec27;
use pyalloc::interp::{Int, Py2};
use std::path::Path;

/// One step of a program.
#[derive(Debug, Clone)]
enum Op {
    /// `x = int(v)` for a value outside the small-int cache.
    Make(i64),
    /// Drop the reference at this index (modulo the number held).
    Drop(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (257i64..1_000_000).prop_map(Op::Make),
        any::<usize>().prop_map(Op::Drop),
    ]
}

/// Replays `trace` for `cut` events, then runs `program` through the facade.
fn property(trace: &Path, cut: u64, program: &[Op]) -> Result<(), TestCaseError> {
    let mut seen = 0;
    let stop = pyrec27::state_until(trace, |_| {
        seen += 1;
        seen > cut
    })
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(stop.report.ok(), "{:?}", stop.report.first_divergence);
    let mut py = Py2::from_state(stop.state);
    let mut held: Vec<Int> = Vec::new();
    for op in program {
        match *op {
            Op::Make(v) => {
                let head = py.ints().head();
                match py.int(v) {
                    Ok(o) => {
                        prop_assert!(!head.is_null(), "{v} made without a free-list head");
                        prop_assert_eq!(o.addr, head);
                        prop_assert!(held.iter().all(|h| h.addr != o.addr));
                        held.push(o);
                    }
                    // No block left in the recording: only when the free list was empty.
                    Err(_) => {
                        prop_assert!(head.is_null());
                        return Ok(());
                    }
                }
            }
            Op::Drop(i) if !held.is_empty() => {
                let o = held.swap_remove(i % held.len());
                py.drop(o).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(py.ints().head(), o.addr);
            }
            Op::Drop(_) => {}
        }
        for h in &held {
            let w = py.ints_mut().whereabouts(h.addr);
            prop_assert!(w.is_some_and(|w| w.live), "{} is not a live int", h.addr);
        }
    }
    Ok(())
}

fn run(cases: u32) -> Result<(), String> {
    let trace = common::trace("cpython-2.7.18-linux-x86_64/seed.trace.gz");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(0u64..4000, proptest::collection::vec(op(), 1..80)),
            |(cut, program)| property(&trace, cut, &program),
        )
        .map_err(|e| e.to_string())
}

fn main() -> Result<(), String> {
    run(64)?;
    println!("64 random programs from random points of seed.trace.gz: every property held");
    Ok(())
}

#[test]
fn programs_from_recorded_states_keep_the_free_list_promises() {
    run(16).unwrap();
}
