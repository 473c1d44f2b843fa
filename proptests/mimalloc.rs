//! mimalloc 2.1.2 under random programs of malloc/calloc/realloc/free and the stats call,
//! with sizes from every page kind (small, medium, large, now and then a huge block).
//! After every step every equation of `Mimalloc::check_invariants` holds:
//! per page `used + |free| + |local_free| == capacity <= reserved`, blocks inside their
//! page, pages inside their segment, spans tiling each segment (free ones coalesced and
//! queued by size), segments inside their arena blocks; besides, the live blocks are
//! exactly the shadow's, none overlaps another, and realloc stays in place exactly when
//! `usable / 2 <= n <= usable`.

use crate::common::config;
use proptest::prelude::*;
use pyalloc::mimalloc::{BlockState, Mimalloc};
use pyalloc::{Addr, AllocError, Allocator};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Malloc(usize),
    Calloc(usize, usize),
    Realloc(usize, usize),
    Free(usize),
    FreeTwice(usize),
    Stats,
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        12 => 0usize..=128,
        6 => 129usize..=1024,
        3 => 1025usize..=16384,
        2 => 16385usize..=131072,
        1 => 131073usize..=3_000_000,
        1 => Just(20_000_001usize),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => size().prop_map(Op::Malloc),
        1 => (0usize..=8, 1usize..=64).prop_map(|(n, e)| Op::Calloc(n, e)),
        2 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        7 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::FreeTwice),
        1 => Just(Op::Stats),
    ]
}

fn fail(e: AllocError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut mi = Mimalloc::default();
    let mut live: BTreeMap<u64, usize> = BTreeMap::new(); // address -> bytes asked
    let mut freed: Vec<u64> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Malloc(n) => {
                let a = mi.malloc(n).map_err(fail)?;
                prop_assert!(
                    !live.contains_key(&a.0),
                    "step {step}: {a} handed out twice"
                );
                live.insert(a.0, n);
            }
            Op::Calloc(k, e) => {
                let a = mi.calloc(k, e).map_err(fail)?;
                prop_assert!(!live.contains_key(&a.0));
                live.insert(a.0, k * e);
            }
            Op::Realloc(i, n) if !live.is_empty() => {
                let (&old, _) = live.iter().nth(i % live.len()).unwrap();
                let usable = mi.usable_size(Addr(old)).map_err(fail)? as usize;
                let a = mi.realloc(Addr(old), n).map_err(fail)?;
                let stays = n <= usable && n >= usable / 2 && n > 0;
                prop_assert_eq!(
                    a.0 == old,
                    stays,
                    "step {}: realloc {} -> {}",
                    step,
                    usable,
                    n
                );
                live.remove(&old);
                prop_assert!(!live.contains_key(&a.0));
                live.insert(a.0, n);
            }
            Op::Free(i) if !live.is_empty() => {
                let (&a, _) = live.iter().nth(i % live.len()).unwrap();
                // every other free through the replay's fast path first (it declines
                // whatever is not a plain push on local_free; mi_free then does it all)
                if i % 2 == 1 || !mi.free_fast(a) {
                    mi.free(Addr(a)).map_err(fail)?;
                }
                live.remove(&a);
                freed.push(a);
            }
            Op::FreeTwice(i) if !freed.is_empty() => {
                let a = freed[i % freed.len()];
                if !live.contains_key(&a) {
                    // freeing again is refused, never a panic, and changes nothing
                    let r = mi.free(Addr(a));
                    prop_assert!(
                        matches!(
                            r,
                            Err(AllocError::DoubleFree { .. } | AllocError::NotLive { .. })
                        ),
                        "second free of {a:#x} gave {r:?}"
                    );
                    prop_assert!(mi.realloc(Addr(a), 8).is_err());
                    prop_assert!(!mi.free_fast(a), "the fast path freed {a:#x} twice");
                }
            }
            Op::Stats => {
                let (s, _) = mi.debug_malloc_stats();
                prop_assert_eq!(s.allocated_blocks, live.len() as u64);
                prop_assert!(s.allocated_bytes <= s.bytes_committed);
                prop_assert!(s.bytes_committed <= s.bytes_reserved);
            }
            _ => {}
        }
        if let Err(e) = mi.check_invariants() {
            return Err(TestCaseError::fail(format!(
                "after step {step} ({op:?}): {e}"
            )));
        }
        // the shadow's blocks are live in the model, and no two overlap
        let mut end = 0u64;
        for (&a, &n) in &live {
            let usable = mi.usable_size(Addr(a)).map_err(fail)?;
            prop_assert!(
                usable as usize >= n,
                "step {step}: {a:#x} holds {usable} < {n}"
            );
            prop_assert!(a >= end, "step {step}: {a:#x} overlaps the block before it");
            end = a + usable;
        }
        // the read-only view a heap map takes agrees with the shadow: every live block
        // of every page, with its request, and the free lists as the pages list them
        let mut seen = std::collections::BTreeMap::new();
        for seg in mi.segments() {
            for (_, _, free, id) in seg.spans() {
                let Some(p) = mi.page(id).filter(|_| !free) else {
                    continue;
                };
                let blocks = p.blocks();
                let free_heads: Vec<u64> = blocks
                    .iter()
                    .filter_map(|&(a, st)| match st {
                        BlockState::Free { position } => Some((position, a)),
                        _ => None,
                    })
                    .collect::<std::collections::BTreeMap<_, _>>()
                    .into_values()
                    .collect();
                prop_assert_eq!(free_heads, p.free_list().collect::<Vec<_>>());
                for (a, st) in blocks {
                    if let BlockState::Live { requested } = st {
                        seen.insert(a, requested as usize);
                    }
                }
            }
        }
        prop_assert_eq!(&seen, &live.iter().map(|(&a, &n)| (a, n)).collect());
        let s = mi.stats();
        prop_assert_eq!(s.live_blocks, live.len() as u64);
        prop_assert_eq!(s.live_bytes, live.values().map(|&n| n as u64).sum::<u64>());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Random programs keep every invariant after every step.
    #[test]
    fn every_invariant_holds_after_every_step(ops in prop::collection::vec(op(), 1..300)) {
        run(&ops)?;
    }

    /// Two fresh heaps given the same requests give the same addresses.
    #[test]
    fn replay_is_deterministic(sizes in prop::collection::vec(size(), 1..100)) {
        let (mut a, mut b) = (Mimalloc::default(), Mimalloc::default());
        for &n in &sizes {
            prop_assert_eq!(a.malloc(n).unwrap(), b.malloc(n).unwrap());
        }
    }
}

/// Regression programs, named after what they exercise.
#[test]
fn pages_that_went_full_and_emptied_leave_nothing_behind() {
    // 1024-byte pages (63 blocks) fill and go to the full queue as the next ones are
    // made; each free moves its page back (unfull), the last one retires or frees it
    let mut mi = Mimalloc::default();
    let a: Vec<Addr> = (0..200).map(|_| mi.malloc(1000).unwrap()).collect();
    for &x in &a {
        mi.free(x).unwrap();
        mi.check_invariants().unwrap();
    }
    assert_eq!(mi.stats().live_blocks, 0);
}

#[test]
fn a_freed_segment_goes_back_to_its_arena_block() {
    let mut mi = Mimalloc::default();
    let big: Vec<Addr> = (0..40).map(|_| mi.malloc(1_000_000).unwrap()).collect();
    let first = big[0];
    for &x in &big {
        mi.free(x).unwrap();
    }
    mi.check_invariants().unwrap();
    // every segment is gone; the next large page reuses the first segment's slice 1
    assert_eq!(mi.segments().count(), 0);
    assert_eq!(mi.malloc(1_000_000).unwrap(), first);
}
