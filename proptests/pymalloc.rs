//! pymalloc under random programs of malloc/calloc/realloc/free, for every era's preset
//! (and each with tiny arenas of 4 pools, so that arenas fill, empty, reorder and are
//! returned within a short program). After every step every invariant of
//! `Pymalloc::check_invariants` holds as an equation:
//! per pool `live + free + untouched == NUMBLOCKS`; per arena `nfreepools == |freepools| +
//! never-carved pools`; `usable_arenas` sorted (and `nfp2lasta` right); live blocks inside
//! their pools and disjoint. Besides, the model's answers agree with a shadow of what is live.

use crate::common::config;
use proptest::prelude::*;
use pyalloc::pymalloc::{Pymalloc, PymallocParams};
use pyalloc::sysmalloc::Bump;
use pyalloc::{Addr, AllocError, Allocator, Platform};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Malloc(usize),
    Calloc(usize, usize),
    Realloc(usize, usize),
    Free(usize),
    FreeTwice(usize),
}

fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..=64,
        4 => 1usize..=512,
        1 => Just(0usize),
        1 => 513usize..=2000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => size().prop_map(Op::Malloc),
        1 => (0usize..=8, 1usize..=64).prop_map(|(n, e)| Op::Calloc(n, e)),
        2 => (any::<usize>(), size()).prop_map(|(i, s)| Op::Realloc(i, s)),
        5 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::FreeTwice),
    ]
}

/// Every preset, and each again with arenas of 4 pools.
fn presets() -> Vec<PymallocParams> {
    let mut v = PymallocParams::presets();
    let tiny: Vec<_> = v
        .iter()
        .map(|p| PymallocParams {
            arena_bits: p.pool_bits + 2,
            ..p.clone()
        })
        .collect();
    v.extend(tiny);
    v
}

fn run(params: PymallocParams, ops: &[Op]) -> Result<(), TestCaseError> {
    let platform = Platform::linux_x86_64();
    let threshold = params.small_request_threshold as usize;
    let name = format!("{} (arena 2^{})", params.name, params.arena_bits);
    let mut py = Pymalloc::new(
        params,
        Bump::new(platform.heap_start, 16),
        platform.address_space(),
    );
    let mut live: BTreeMap<u64, usize> = BTreeMap::new(); // address -> bytes asked
    let mut freed: Vec<u64> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Malloc(n) | Op::Calloc(1, n) => {
                let a = py
                    .malloc(n)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(
                    !live.contains_key(&a.0),
                    "{name} step {step}: {a} handed out twice"
                );
                prop_assert_eq!(py.block_info(a).is_some(), (1..=threshold).contains(&n));
                live.insert(a.0, n);
            }
            Op::Calloc(k, e) => {
                let a = py
                    .calloc(k, e)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(!live.contains_key(&a.0));
                live.insert(a.0, k * e);
            }
            Op::Realloc(i, n) if !live.is_empty() => {
                let (&old, &was) = live.iter().nth(i % live.len()).unwrap();
                let a = py
                    .realloc(Addr(old), n)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                live.remove(&old);
                if let Some(b) = py.block_info(Addr(old)) {
                    // A pymalloc block stays exactly when n <= size and 4n > 3 size.
                    let size = py.params().class_size(b.szidx.unwrap()) as usize;
                    let stays = (1..=threshold).contains(&was) && n <= size && 4 * n > 3 * size;
                    if stays {
                        prop_assert_eq!(a.0, old);
                    }
                }
                prop_assert!(!live.contains_key(&a.0));
                live.insert(a.0, n);
            }
            Op::Free(i) if !live.is_empty() => {
                let (&a, _) = live.iter().nth(i % live.len()).unwrap();
                py.free(Addr(a))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                live.remove(&a);
                freed.push(a);
            }
            Op::FreeTwice(i) if !freed.is_empty() => {
                let a = freed[i % freed.len()];
                if !live.contains_key(&a) {
                    // Freeing again must be refused, never panic, and change nothing.
                    let r = py.free(Addr(a));
                    prop_assert!(
                        matches!(
                            r,
                            Err(AllocError::DoubleFree { .. } | AllocError::NotLive { .. })
                        ),
                        "{name}: second free of {a:#x} gave {r:?}"
                    );
                    let r = py.realloc(Addr(a), 8);
                    prop_assert!(r.is_err(), "{name}: realloc of freed {a:#x} gave {r:?}");
                }
            }
            _ => {}
        }
        if let Err(e) = py.check_invariants() {
            return Err(TestCaseError::fail(format!(
                "{name} after step {step} ({op:?}): {e}"
            )));
        }
        // The model's live pymalloc blocks are exactly the shadow's small ones.
        let small: Vec<u64> = live
            .iter()
            .filter(|(&a, _)| py.block_info(Addr(a)).is_some())
            .map(|(&a, _)| a)
            .collect();
        let mut model: Vec<u64> = py.live_blocks().iter().map(|b| b.0).collect();
        model.sort_unstable();
        prop_assert_eq!(&model, &small, "{} after step {}", name, step);
        // Stats: pymalloc's own share (the lower allocator also holds the `arenas` vector
        // and the radix-tree nodes) is the shadow's small blocks and bytes.
        let (s, l) = (py.stats(), py.lower().stats());
        let small_bytes: u64 = live
            .iter()
            .filter(|(&a, _)| py.block_info(Addr(a)).is_some())
            .map(|(_, &n)| n as u64)
            .sum();
        prop_assert_eq!(
            s.live_blocks - l.live_blocks,
            small.len() as u64,
            "{} live blocks",
            name
        );
        prop_assert_eq!(
            s.live_bytes - l.live_bytes,
            small_bytes,
            "{} live bytes",
            name
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Random programs against every preset keep every invariant after every step.
    #[test]
    fn every_invariant_holds_after_every_step(ops in prop::collection::vec(op(), 1..400)) {
        for p in presets() {
            run(p, &ops)?;
        }
    }

    /// Allocating the same sizes on two fresh models gives the same addresses (the
    /// simulation is deterministic).
    #[test]
    fn replay_is_deterministic(sizes in prop::collection::vec(1usize..=512, 1..200)) {
        let platform = Platform::linux_x86_64();
        let p = PymallocParams::v3_11();
        let mut a = Pymalloc::new(p.clone(), Bump::new(platform.heap_start, 16), platform.address_space());
        let mut b = Pymalloc::new(p, Bump::new(platform.heap_start, 16), platform.address_space());
        for &n in &sizes {
            prop_assert_eq!(a.malloc(n).unwrap(), b.malloc(n).unwrap());
        }
    }
}
