//! The glibc model under random programs of malloc/free/realloc/calloc/memalign: after
//! every step the model's own invariants hold (`Glibc::check_invariants`: chunks tile the
//! heap up to the end of top, no two neighbouring free chunks outside tcache and fastbins,
//! every binned chunk in its bin's size range, tcache counts ≤ 7), and, seen from outside,
//!   ∀ live p: p ≡ 0 (mod 16) (mod align for memalign),
//!   ∀ live p ≠ q: [p, p + n_p) ∩ [q, q + n_q) = ∅,
//!   stats.live_blocks == |live|,  stats.live_bytes == Σ n_p.

use crate::common::config;
use proptest::prelude::*;
use pyalloc::sysmalloc::glibc::{Glibc, GlibcParams};
use pyalloc::{Addr, AllocError, Allocator, Platform};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Malloc(usize),
    Free(usize),
    Realloc(usize, usize),
    Calloc(usize, usize),
    Memalign(u32, usize),
    DoubleFree(usize),
}

/// Request sizes spread over every path: tcache/fastbin sizes, small and large bins,
/// sizes over 64 KiB (consolidation, trimming) and a few over the mmap threshold.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..=128,
        4 => 0usize..=1100,
        2 => 1000usize..=70_000,
        1 => 100_000usize..=300_000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => size().prop_map(Op::Malloc),
        7 => any::<usize>().prop_map(Op::Free),
        3 => (any::<usize>(), size()).prop_map(|(k, n)| Op::Realloc(k, n)),
        1 => (1usize..=8, size()).prop_map(|(n, s)| Op::Calloc(n, s / 8)),
        1 => (0u32..=13, size()).prop_map(|(a, s)| Op::Memalign(a, s)),
        1 => any::<usize>().prop_map(Op::DoubleFree),
    ]
}

fn check(g: &Glibc, live: &BTreeMap<u64, u64>) -> Result<(), TestCaseError> {
    g.check_invariants().map_err(TestCaseError::fail)?;
    let mut end = 0u64;
    for (&p, &n) in live {
        prop_assert_eq!(p % 16, 0, "user pointer {:#x} misaligned", p);
        prop_assert!(p >= end, "live {:#x} overlaps the one before", p);
        end = p + n;
    }
    let st = g.stats();
    prop_assert_eq!(st.live_blocks, live.len() as u64);
    prop_assert_eq!(st.live_bytes, live.values().sum::<u64>());
    Ok(())
}

fn pick(live: &BTreeMap<u64, u64>, k: usize) -> Option<(u64, u64)> {
    (!live.is_empty()).then(|| {
        let (&p, &n) = live.iter().nth(k % live.len()).unwrap();
        (p, n)
    })
}

proptest! {
    #![proptest_config(config())]

    /// Every invariant holds after every step of a random program (x86-64).
    #[test]
    fn glibc_invariants_hold_after_every_step(ops in prop::collection::vec(op(), 1..200)) {
        run(Glibc::new(GlibcParams::v2_36_x86_64(), Platform::linux_x86_64().address_space()), ops)?;
    }

    /// The same on i386 (4-byte SIZE_SZ, 16-byte MINSIZE, chunks at 8 mod 16).
    #[test]
    fn glibc_i386_invariants_hold_after_every_step(ops in prop::collection::vec(op(), 1..200)) {
        run(Glibc::new(GlibcParams::v2_36_i386(), Platform::linux_i686().address_space()), ops)?;
    }
}

/// Runs one program, checking after every step.
fn run(mut g: Glibc, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut live: BTreeMap<u64, u64> = BTreeMap::new(); // user pointer -> bytes asked
    let mut freed: Vec<u64> = Vec::new();
    for op in ops {
        match op {
            Op::Malloc(n) => {
                let p = g.malloc(n).unwrap();
                live.insert(p.0, n as u64);
            }
            Op::Calloc(k, n) => {
                let p = g.calloc(k, n).unwrap();
                live.insert(p.0, (k * n) as u64);
            }
            Op::Memalign(a, n) => {
                let align = 1usize << a;
                let p = g.memalign(align, n).unwrap();
                prop_assert_eq!(
                    p.0 % align.max(16) as u64,
                    0,
                    "memalign({}) gave {}",
                    align,
                    p
                );
                live.insert(p.0, n as u64);
            }
            Op::Free(k) => {
                if let Some((p, _)) = pick(&live, k) {
                    g.free(Addr(p)).unwrap();
                    live.remove(&p);
                    freed.push(p);
                }
            }
            Op::Realloc(k, n) => {
                if let Some((p, _)) = pick(&live, k) {
                    let q = g.realloc(Addr(p), n).unwrap();
                    live.remove(&p);
                    if n == 0 {
                        prop_assert!(q.is_null());
                        freed.push(p);
                    } else {
                        live.insert(q.0, n as u64);
                    }
                }
            }
            Op::DoubleFree(k) => {
                // a pointer freed before and not handed out again must be refused
                if !freed.is_empty() {
                    let p = freed[k % freed.len()];
                    if !live.contains_key(&p) {
                        let e = g.free(Addr(p));
                        prop_assert!(e.is_err(), "double free of {:#x} accepted", p);
                        let diagnosed = matches!(
                            e,
                            Err(AllocError::Corrupt { .. } | AllocError::DoubleFree { .. })
                        );
                        prop_assert!(diagnosed, "{:?}", e);
                    }
                }
            }
        }
        check(&g, &live)?;
    }
    // freeing everything leaves the invariants intact too
    for (&p, _) in live.clone().iter() {
        g.free(Addr(p)).unwrap();
        live.remove(&p);
        check(&g, &live)?;
    }
    Ok(())
}
