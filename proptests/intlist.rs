//! The int and float free lists: random programs of alloc, free, bad frees and
//! ClearFreeList, on every platform preset, over one shared system heap. After every
//! step, as equations:
//! - `n_live + |free list| == N × n_blocks` (each list; the list is walked);
//! - no live object is on the free list;
//! - no two live objects share an address (ints and floats together);
//! - every live address `== base + objects_offset + object_size × k`, `0 <= k < N`,
//!   for a block `base` on `block_list`;
//! - LIFO: an alloc right after a free returns the address just freed;
//! - a bad free (not live, or freed twice) is an error and changes nothing.

use crate::common::config;
use proptest::prelude::*;
use pyalloc::interp::system_heap;
use pyalloc::objects::freelist::{BlockType, FreeList};
use pyalloc::objects::{FloatFreeList, IntFreeList};
use pyalloc::sysmalloc::SharedHeap;
use pyalloc::{Addr, Allocator, Platform};
use std::collections::HashSet;

#[derive(Debug, Clone)]
enum Op {
    AllocInt,
    FreeInt(usize),
    AllocFloat,
    FreeFloat(usize),
    BadFree(u64),
    DoubleFree,
    ClearInts,
    ClearFloats,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::AllocInt),
        4 => any::<usize>().prop_map(Op::FreeInt),
        2 => Just(Op::AllocFloat),
        1 => any::<usize>().prop_map(Op::FreeFloat),
        1 => any::<u64>().prop_map(Op::BadFree),
        1 => Just(Op::DoubleFree),
        1 => Just(Op::ClearInts),
        1 => Just(Op::ClearFloats),
    ]
}

type Heap = SharedHeap<Box<dyn Allocator>>;

fn invariants<T: BlockType>(l: &FreeList<Heap, T>, live: &[Addr]) -> Result<(), TestCaseError> {
    let lay = *l.layout();
    let n = lay.n_objects as u64;
    prop_assert_eq!(l.n_live() + l.n_free(), n * l.n_blocks());
    prop_assert_eq!(l.n_live(), live.len() as u64);
    let free: Vec<Addr> = l.free_addrs().collect();
    prop_assert_eq!(free.len() as u64, l.n_free());
    let live_set: HashSet<Addr> = live.iter().copied().collect();
    prop_assert_eq!(
        live_set.len(),
        live.len(),
        "two live objects share an address"
    );
    prop_assert!(
        free.iter().all(|a| !live_set.contains(a)),
        "a live object is on the free list"
    );
    let model_live: HashSet<Addr> = l.live_addrs().collect();
    prop_assert_eq!(&model_live, &live_set);
    let blocks: Vec<Addr> = l.block_list().collect();
    prop_assert_eq!(blocks.len() as u64, l.n_blocks());
    for &a in live.iter().chain(&free) {
        let off = blocks
            .iter()
            .filter_map(|&b| a.0.checked_sub(b.0 + lay.objects_offset))
            .min()
            .unwrap_or(u64::MAX);
        prop_assert!(
            off % lay.object_size == 0 && off / lay.object_size < n,
            "{a} is not base + offset + size*k"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn free_lists_keep_their_equations(
        platform in 0usize..3,
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let p = Platform::presets()[platform].clone();
        let heap = SharedHeap::new(system_heap(&p, None, 0).unwrap());
        let mut ints: IntFreeList<Heap> = IntFreeList::new(heap.clone(), &p);
        let mut floats: FloatFreeList<Heap> = FloatFreeList::new(heap.clone(), &p);
        let (mut li, mut lf): (Vec<Addr>, Vec<Addr>) = (Vec::new(), Vec::new());
        let mut last_freed: Option<(bool, Addr)> = None; // (is int, address)
        let mut freed_once: Vec<Addr> = Vec::new();
        for op in ops {
            match op {
                Op::AllocInt => {
                    let (_, a) = ints.alloc().unwrap();
                    if let Some((true, f)) = last_freed { prop_assert_eq!(a, f, "LIFO"); }
                    li.push(a);
                    last_freed = None;
                }
                Op::AllocFloat => {
                    let (_, a) = floats.alloc().unwrap();
                    if let Some((false, f)) = last_freed { prop_assert_eq!(a, f, "LIFO"); }
                    lf.push(a);
                    last_freed = None;
                }
                Op::FreeInt(i) if !li.is_empty() => {
                    let a = li.swap_remove(i % li.len());
                    ints.free(a).unwrap();
                    freed_once.push(a);
                    last_freed = Some((true, a));
                }
                Op::FreeFloat(i) if !lf.is_empty() => {
                    let a = lf.swap_remove(i % lf.len());
                    floats.free(a).unwrap();
                    last_freed = Some((false, a));
                }
                Op::BadFree(x) => {
                    let a = Addr(x | 1); // objects are aligned: an odd address never starts one
                    let (h, f) = (ints.head(), ints.n_free());
                    prop_assert!(ints.free(a).is_err());
                    prop_assert!(floats.free(a).is_err());
                    prop_assert_eq!((ints.head(), ints.n_free()), (h, f));
                }
                Op::DoubleFree => {
                    if let Some(&a) = freed_once.iter().find(|a| !li.contains(a)) {
                        let (h, f) = (ints.head(), ints.n_free());
                        prop_assert!(ints.free(a).is_err(), "double free of {} accepted", a);
                        prop_assert_eq!((ints.head(), ints.n_free()), (h, f));
                    }
                }
                Op::ClearInts => {
                    let r = ints.clear_free_list().unwrap();
                    prop_assert_eq!(r.live, li.len() as u64);
                    prop_assert_eq!(r.kept, ints.n_blocks());
                    last_freed = None;
                }
                Op::ClearFloats => {
                    let r = floats.clear_free_list().unwrap();
                    prop_assert_eq!(r.live, lf.len() as u64);
                    last_freed = None;
                }
                _ => {}
            }
            invariants(&ints, &li)?;
            invariants(&floats, &lf)?;
            let all: HashSet<Addr> = li.iter().chain(&lf).copied().collect();
            prop_assert_eq!(all.len(), li.len() + lf.len(), "an int and a float share an address");
        }
    }
}

/// macOS tiny (the heap under the seed's free list): after every malloc/free, live blocks
/// are 16-byte aligned and disjoint (`[a, a + 16 × msize)`), `live_blocks == |live|`, and
/// a tiny block freed is handed out again only to a request of the same msize.
#[derive(Debug, Clone)]
enum TinyOp {
    Malloc(usize),
    Free(usize),
}

fn tiny_op() -> impl Strategy<Value = TinyOp> {
    prop_oneof![
        3 => (0usize..1100).prop_map(TinyOp::Malloc),
        2 => any::<usize>().prop_map(TinyOp::Free),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mac_tiny_blocks_are_disjoint_and_reused_by_size(ops in prop::collection::vec(tiny_op(), 1..200)) {
        use pyalloc::sysmalloc::macos::{TINY_LIMIT, TINY_QUANTUM};
        use pyalloc::sysmalloc::MacTiny;
        let p = Platform::macos_x86_64();
        let mut m = MacTiny::new(p.address_space());
        let mut live: Vec<(Addr, u64)> = Vec::new(); // (address, bytes it spans)
        let mut freed: std::collections::HashMap<u64, u64> = Default::default(); // addr -> msize
        for op in ops {
            match op {
                TinyOp::Malloc(n) => {
                    let a = m.malloc(n).unwrap();
                    let msize = (n as u64).div_ceil(TINY_QUANTUM).max(1);
                    if let Some(old) = freed.remove(&a.0) {
                        prop_assert_eq!(old, msize, "a freed block reused by another size");
                    }
                    let span = if n as u64 <= TINY_LIMIT { msize * TINY_QUANTUM } else { n as u64 };
                    live.push((a, span));
                }
                TinyOp::Free(i) if !live.is_empty() => {
                    let (a, span) = live.swap_remove(i % live.len());
                    m.free(a).unwrap();
                    if span <= TINY_LIMIT {
                        freed.insert(a.0, span / TINY_QUANTUM);
                    }
                    prop_assert!(m.free(a).is_err(), "double free of {} accepted", a);
                }
                _ => {}
            }
            let mut spans: Vec<(u64, u64)> = live.iter().map(|&(a, s)| (a.0, a.0 + s)).collect();
            spans.sort();
            prop_assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "overlapping blocks");
            prop_assert!(live.iter().all(|(a, _)| a.is_aligned(TINY_QUANTUM)));
            prop_assert_eq!(m.stats().live_blocks, live.len() as u64);
        }
    }
}
