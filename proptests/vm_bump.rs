//! The address space and the bump baseline: mappings never overlap; bump blocks never do.

use crate::common::config;
use proptest::prelude::*;
use pyalloc::vm::AddressSpace;
use pyalloc::{Addr, Allocator};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum VmOp {
    Map(u64),
    Unmap(usize),
}

fn vm_op() -> impl Strategy<Value = VmOp> {
    prop_oneof![
        (1u64..=1 << 22).prop_map(VmOp::Map),
        any::<usize>().prop_map(VmOp::Unmap),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// After every step: regions are page-aligned, disjoint, below mmap_top, and
    /// mapped_bytes == Σ region lengths.
    #[test]
    fn mappings_never_overlap(ops in prop::collection::vec(vm_op(), 1..60)) {
        let top = 0x7fff_0000_0000u64;
        let mut vm = AddressSpace::new(4096, 8, Addr(0x1000_0000), Addr(top));
        let mut live: BTreeMap<u64, u64> = BTreeMap::new();
        for op in ops {
            match op {
                VmOp::Map(len) => {
                    let a = vm.mmap(len).unwrap();
                    live.insert(a.0, (len + 4095) & !4095);
                }
                VmOp::Unmap(i) if !live.is_empty() => {
                    let (&b, &l) = live.iter().nth(i % live.len()).unwrap();
                    vm.munmap(Addr(b), l).unwrap();
                    live.remove(&b);
                }
                VmOp::Unmap(_) => {}
            }
            let mut end = 0u64;
            for (&b, &l) in &live {
                prop_assert_eq!(b % 4096, 0);
                prop_assert!(b >= end, "region {:#x} overlaps the one below", b);
                prop_assert!(b + l <= top);
                end = b + l;
            }
            prop_assert_eq!(vm.mapped_bytes(), live.values().sum::<u64>());
        }
    }

    /// After every step: live bump blocks are disjoint and 16-aligned, and
    /// live_blocks == |live|.
    #[test]
    fn bump_blocks_are_disjoint(sizes in prop::collection::vec((0usize..5000, any::<bool>()), 1..100)) {
        let mut b = pyalloc::sysmalloc::Bump::new(Addr(0x1000), 16);
        let mut live: BTreeMap<u64, u64> = BTreeMap::new();
        for (size, free_one) in sizes {
            if free_one && !live.is_empty() {
                let (&a, _) = live.iter().next().unwrap();
                b.free(Addr(a)).unwrap();
                live.remove(&a);
            } else {
                let a = b.malloc(size).unwrap();
                prop_assert!(a.is_aligned(16));
                live.insert(a.0, size.max(1) as u64);
            }
            let mut end = 0;
            for (&a, &l) in &live {
                prop_assert!(a >= end);
                end = a + l;
            }
            prop_assert_eq!(b.stats().live_blocks, live.len() as u64);
        }
    }
}
