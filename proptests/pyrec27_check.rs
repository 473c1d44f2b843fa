//! The 2.7 checker under random programs: a reference pymalloc (2.7.17 preset, tiny arenas
//! of 4 pools so that arenas map and unmap within a short program, fall-throughs from a
//! bump allocator) runs random PyObject_Malloc/Realloc/Free calls and writes what it did
//! as PYREC events (`A`/`F` lines before the call that caused them, as the recorder does);
//! the checker replays them event by event. After every event, as equations:
//! `matched == checked` with no divergence; `checked == small answers so far` (answers
//! inside an arena of the reference); `given == fall-through answers + A lines`;
//! `arena_events == A + F lines`; `not_checked == 0`; and the checker's pymalloc satisfies
//! every invariant of `Pymalloc::check_invariants`.

use crate::common::config;
use proptest::prelude::*;
use pyalloc::check::pyrec27::Py27Replay;
use pyalloc::pymalloc::{Pymalloc, PymallocParams};
use pyalloc::replay::pinned::PinnedArenas;
use pyalloc::sysmalloc::Bump;
use pyalloc::trace::{Domain, Event, EventKind};
use pyalloc::{Addr, Allocator, Platform};

#[derive(Debug, Clone)]
enum Op {
    Malloc(usize),
    Realloc(usize, usize),
    Free(usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..=64,
        4 => 1usize..=512,
        1 => Just(0usize),
        2 => 513usize..=2000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => size().prop_map(Op::Malloc),
        3 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        5 => any::<usize>().prop_map(Op::Free),
    ]
}

/// Tallies of the events written so far (the right-hand sides of the equations).
#[derive(Debug, Default)]
struct Tally {
    small: u64,        // answers inside an arena of the reference
    fall_through: u64, // answers of the bump allocator beneath it
    maps: u64,         // A lines
    unmaps: u64,       // F lines
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let platform = Platform::linux_x86_64();
    let v = PymallocParams::v2_7_17();
    let params = PymallocParams {
        arena_bits: v.pool_bits + 2,
        ..v
    };
    let arena = params.arena_size();
    let mut reference = Pymalloc::new(
        params.clone(),
        Bump::new(platform.heap_start, 16),
        PinnedArenas::own(platform.address_space()),
    );
    let mut replay = Py27Replay::with_params(platform, params, false);
    let mut live: Vec<Addr> = Vec::new();
    let mut t = Tally::default();
    let mut line = 0u64;
    let mut index = 0u64;
    for (step, op) in ops.iter().enumerate() {
        let call = match *op {
            Op::Malloc(n) => {
                let a = reference
                    .malloc(n)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                live.push(a);
                (
                    EventKind::Malloc {
                        domain: Domain::Obj,
                        size: n as u64,
                        addr: a,
                    },
                    a,
                )
            }
            Op::Realloc(i, n) => {
                let old = if live.is_empty() {
                    Addr::NULL
                } else {
                    live.swap_remove(i % live.len())
                };
                let a = reference
                    .realloc(old, n)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                live.push(a);
                (
                    EventKind::Realloc {
                        domain: Domain::Obj,
                        old,
                        size: n as u64,
                        new: a,
                    },
                    a,
                )
            }
            Op::Free(i) => {
                let a = if live.is_empty() {
                    Addr::NULL
                } else {
                    live.swap_remove(i % live.len())
                };
                reference
                    .free(a)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                (
                    EventKind::Free {
                        domain: Domain::Obj,
                        addr: a,
                    },
                    Addr::NULL,
                )
            }
        };
        // The nested arena lines first (post-order), then the call.
        let src = reference.source_mut();
        let mut kinds: Vec<EventKind> = src
            .mapped()
            .iter()
            .map(|&(addr, _)| EventKind::ArenaAlloc { size: arena, addr })
            .collect();
        kinds.extend(
            src.end_call()
                .into_iter()
                .map(|addr| EventKind::ArenaFree { addr, size: arena }),
        );
        kinds.push(call.0);
        let answer = call.1;
        let is_free = matches!(op, Op::Free(_));
        if !is_free && !answer.is_null() {
            if reference.block_info(answer).is_some() {
                t.small += 1;
            } else {
                t.fall_through += 1;
            }
        }
        for kind in kinds {
            match kind {
                EventKind::ArenaAlloc { .. } => t.maps += 1,
                EventKind::ArenaFree { .. } => t.unmaps += 1,
                _ => {}
            }
            line += 1;
            replay
                .apply(&Event { kind, line }, index)
                .map_err(|e| TestCaseError::fail(format!("step {step} ({op:?}): {e}")))?;
            index += 1;
        }
        let r = &replay.report;
        prop_assert!(
            r.first_divergence.is_none(),
            "step {step} ({op:?}): {:?}",
            r.first_divergence
        );
        prop_assert_eq!(r.matched, r.checked);
        prop_assert_eq!(r.checked, t.small, "step {}: {:?}", step, t);
        prop_assert_eq!(r.given, t.fall_through + t.maps, "step {}: {:?}", step, t);
        prop_assert_eq!(r.arena_events, t.maps + t.unmaps);
        prop_assert_eq!(r.not_checked, 0);
        prop_assert_eq!(r.events, index);
        if let Err(e) = replay.pymalloc().check_invariants() {
            return Err(TestCaseError::fail(format!("step {step} ({op:?}): {e}")));
        }
        prop_assert_eq!(replay.pymalloc().narenas(), reference.narenas());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_pymalloc_programs_written_as_pyrec_events_check_exactly(
        ops in proptest::collection::vec(op(), 1..300)
    ) {
        run(&ops)?;
    }
}
