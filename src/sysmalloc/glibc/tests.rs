//! Unit tests of the glibc model: each one a path of malloc.c, with the layout it must give.

use super::*;
use crate::platform::Platform;

fn fresh() -> (Glibc, u64) {
    let p = Platform::linux_x86_64();
    let g = Glibc::new(GlibcParams::v2_36_x86_64(), p.address_space());
    (g, p.heap_start.0)
}

#[test]
fn first_pointer_follows_the_tcache_struct_and_992_strides_1008() {
    let (mut g, start) = fresh();
    let a = g.malloc(992).unwrap();
    let b = g.malloc(992).unwrap();
    assert_eq!(a.0 - start, 0x290 + 16);
    assert_eq!(b - a, g.params().chunk_size(992) as i64);
    assert_eq!(g.address_space().brk().0 - start, 0x21000, "first sbrk");
    g.free(a).unwrap();
    assert_eq!(g.malloc(992).unwrap(), a, "tcache is LIFO");
    g.check_invariants().unwrap();
}

#[test]
fn tcache_then_fastbin_then_stash() {
    let (mut g, _) = fresh();
    let ptrs: Vec<Addr> = (0..10).map(|_| g.malloc(40).unwrap()).collect();
    let _guard = g.malloc(40).unwrap();
    for &p in &ptrs {
        g.free(p).unwrap();
    }
    g.check_invariants().unwrap();
    // 7 in the tcache (ptrs[6] newest), 3 in the fastbin (ptrs[9] newest)
    for k in (0..7).rev() {
        assert_eq!(g.malloc(40).unwrap(), ptrs[k]);
    }
    // the fastbin's head is served, the other two stashed into the tcache (reversing them)
    assert_eq!(g.malloc(40).unwrap(), ptrs[9]);
    assert_eq!(g.served(), Served::Fastbin);
    assert_eq!(g.chunk_of(ptrs[7]), Some((ChunkState::Tcache, 48)));
    assert_eq!(g.malloc(40).unwrap(), ptrs[7]);
    assert_eq!(g.malloc(40).unwrap(), ptrs[8]);
    assert_eq!(g.chunk_of(ptrs[8]), Some((ChunkState::InUse, 48)));
    assert_eq!(g.chunk_of(ptrs[8] + 16), None);
    g.check_invariants().unwrap();
}

#[test]
fn calloc_skips_the_tcache() {
    let (mut g, _) = fresh();
    let a = g.malloc(100).unwrap();
    g.free(a).unwrap();
    let c = g.calloc(1, 100).unwrap();
    assert_ne!(c, a);
    assert_eq!(g.malloc(100).unwrap(), a);
}

#[test]
fn dynamic_mmap_threshold_rises_on_free_of_a_mapping() {
    let (mut g, _) = fresh();
    let a = g.malloc(200_000).unwrap();
    assert!(
        g.is_mmapped(a),
        "above the threshold and top cannot serve it"
    );
    g.free(a).unwrap();
    assert!(
        g.mmap_threshold() > 200_000,
        "threshold raised to the freed chunk"
    );
    assert_eq!(g.trim_threshold(), 2 * g.mmap_threshold());
    let b = g.malloc(150_000).unwrap();
    assert!(
        !g.is_mmapped(b),
        "now below the raised threshold: from the heap"
    );
    g.check_invariants().unwrap();
}

#[test]
fn freeing_into_top_trims_back_to_the_pad() {
    let (mut g, _) = fresh();
    let a = g.malloc(100_000).unwrap();
    let first_brk = g.address_space().brk().0;
    let b = g.malloc(100_000).unwrap();
    assert!(
        !g.is_mmapped(a) && !g.is_mmapped(b),
        "below the mmap threshold"
    );
    let grown = g.address_space().brk().0;
    assert!(grown > first_brk, "top was grown by sbrk for b");
    g.free(b).unwrap();
    g.check_invariants().unwrap();
    assert!(g.address_space().brk().0 < grown, "trimmed");
    // systrim leaves top_pad + MINSIZE and less than one more page
    let p = g.params().clone();
    let (_, top) = g.top_chunk().unwrap();
    let spare = top - p.min_chunk - 1 - p.top_pad;
    assert!(spare < 4096, "top {top:#x} keeps {spare:#x} beyond the pad");
}

#[test]
fn realloc_grows_into_top_and_shrinks_in_place() {
    let (mut g, _) = fresh();
    let a = g.malloc(100).unwrap();
    let b = g.realloc(a, 1000).unwrap();
    assert_eq!(a, b);
    assert_eq!(g.served(), Served::ReallocIntoTop);
    let c = g.realloc(b, 50).unwrap();
    assert_eq!(c, b);
    g.check_invariants().unwrap();
}

#[test]
fn memalign_returns_aligned_and_frees_the_leader() {
    let (mut g, _) = fresh();
    let _x = g.malloc(10).unwrap();
    let a = g.memalign(256, 100).unwrap();
    assert_eq!(a.0 % 256, 0);
    g.check_invariants().unwrap();
    g.free(a).unwrap();
    g.check_invariants().unwrap();
}

#[test]
fn bad_input_gets_glibcs_diagnosis() {
    let (mut g, _) = fresh();
    let a = g.malloc(24).unwrap();
    g.free(a).unwrap();
    let msg = |e: AllocError| match e {
        AllocError::Corrupt { message, .. } => message,
        e => panic!("unexpected {e:?}"),
    };
    assert_eq!(
        msg(g.free(a).unwrap_err()),
        "free(): double free detected in tcache 2"
    );
    assert_eq!(
        msg(g.realloc(a, 10).unwrap_err()),
        "realloc(): invalid pointer"
    );
    assert_eq!(msg(g.free(a + 8).unwrap_err()), "free(): invalid pointer");
    // fill the tcache, then a fastbin double free
    let v: Vec<Addr> = (0..8).map(|_| g.malloc(24).unwrap()).collect();
    for &p in &v {
        g.free(p).unwrap();
    }
    assert_eq!(
        msg(g.free(v[7]).unwrap_err()),
        "double free or corruption (fasttop)"
    );
    assert!(matches!(
        g.malloc(usize::MAX),
        Err(AllocError::TooLarge { .. })
    ));
    assert!(matches!(
        g.calloc(usize::MAX, 2),
        Err(AllocError::TooLarge { .. })
    ));
    g.check_invariants().unwrap();
}

/// Frees `p` after filling its tcache bin, so that it reaches the arena's bins.
fn free_past_tcache(g: &mut Glibc, size: usize, p: Addr) {
    let fill: Vec<Addr> = (0..7).map(|_| g.malloc(size).unwrap()).collect();
    for &f in &fill {
        g.free(f).unwrap();
    }
    g.free(p).unwrap();
}

#[test]
fn small_bins_are_fifo_and_the_unsorted_bin_is_sorted_from_its_tail() {
    let (mut g, _) = fresh();
    // three 0x110 chunks separated by guards, freed past the tcache into the unsorted bin
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(g.malloc(0x100).unwrap());
        g.malloc(16).unwrap();
    }
    let fill: Vec<Addr> = (0..7).map(|_| g.malloc(0x100).unwrap()).collect();
    for &f in &fill {
        g.free(f).unwrap();
    }
    for &p in &v {
        g.free(p).unwrap();
    }
    // a larger request sorts all three into small bin 0x110 (oldest first), then comes from top
    let big = g.malloc(0x300).unwrap();
    assert_eq!(g.served(), Served::Top);
    assert!(big > v[2]);
    g.check_invariants().unwrap();
    // calloc skips the tcache: the small bin hands out the oldest first (FIFO) ...
    assert_eq!(g.calloc(1, 0x100).unwrap(), v[0]);
    assert_eq!(g.served(), Served::SmallBin);
    g.check_invariants().unwrap();
}

#[test]
fn last_remainder_serves_consecutive_small_requests() {
    let (mut g, _) = fresh();
    let a = g.malloc(0x500).unwrap();
    let _guard = g.malloc(16).unwrap();
    g.free(a).unwrap(); // beyond the tcache: to the unsorted bin
    let x = g.malloc(0x20).unwrap(); // sorted into its large bin, split: remainder advertised
    assert_eq!(x, a);
    assert_eq!(g.served(), Served::Binmap);
    let y = g.malloc(0x20).unwrap();
    assert_eq!(g.served(), Served::LastRemainder);
    assert_eq!(y - x, g.params().chunk_size(0x20) as i64);
    g.check_invariants().unwrap();
}

#[test]
fn large_bins_give_the_best_fit_and_keep_the_first_of_a_size() {
    let (mut g, _) = fresh();
    let sizes = [0x1000usize, 0x1010, 0x1000, 0x1020];
    let mut v = Vec::new();
    for &s in &sizes {
        v.push(g.malloc(s).unwrap());
        g.malloc(16).unwrap();
    }
    for &p in &v {
        g.free(p).unwrap();
    }
    g.malloc(0x2000).unwrap(); // sorts them into one large bin
    g.check_invariants().unwrap();
    // best fit for 0x1000: one of the two 0x1010-byte chunks (v[0], v[2]); glibc takes the
    // second one of that size (inserted after the first), keeping the nextsize ring
    let got = g.malloc(0x1000).unwrap();
    assert_eq!(g.served(), Served::LargeBin);
    assert_eq!(
        got, v[2],
        "v[0] was sorted first (unsorted tail), v[2] went second"
    );
    g.check_invariants().unwrap();
}

#[test]
fn realloc_absorbs_a_free_next_chunk() {
    let (mut g, _) = fresh();
    let a = g.malloc(0x500).unwrap();
    let b = g.malloc(0x500).unwrap();
    let _guard = g.malloc(16).unwrap();
    g.free(b).unwrap();
    assert_eq!(g.realloc(a, 0x800).unwrap(), a);
    assert_eq!(g.served(), Served::ReallocIntoNext);
    g.check_invariants().unwrap();
    // growing past top's reach moves it; the old chunk is freed
    let c = g.realloc(a, 0x10000).unwrap();
    assert_ne!(c, a);
    g.check_invariants().unwrap();
}

#[test]
fn mallopt_mxfast_zero_turns_fastbins_off() {
    let (mut g, _) = fresh();
    assert_eq!(g.mallopt(1, 0), 1);
    let p = g.malloc(24).unwrap();
    let _guard = g.malloc(24).unwrap();
    free_past_tcache(&mut g, 24, p);
    g.check_invariants().unwrap();
    assert_eq!(g.mallopt(1, 1000), 0, "above MAX_FAST_SIZE");
}

#[test]
fn pvalloc_rounds_as_malloc_c_does_and_mremap_shrinks_in_place() {
    let (mut g, _) = fresh();
    let p = g.pvalloc(10).unwrap();
    assert_eq!(p.0 % 4096, 0);
    // (10 + 4095) & -(4095): the rounding keeps bit 0, as in malloc.c
    assert_eq!(g.stats().live_bytes, (10 + 4095) & 4095u64.wrapping_neg());
    let m = g.malloc(1 << 20).unwrap();
    assert!(g.is_mmapped(m));
    assert_eq!(g.realloc(m, 1000).unwrap(), m, "mremap shrinks in place");
    let q = g.realloc(m, 2 << 20).unwrap();
    assert!(g.is_mmapped(q));
    g.free(q).unwrap();
    g.check_invariants().unwrap();
}

#[test]
fn absurd_sizes_are_refused_without_a_panic() {
    let (mut g, _) = fresh();
    let max = i64::MAX as usize;
    assert!(
        g.malloc(max).is_err(),
        "PTRDIFF_MAX passes the size check but no space exists"
    );
    assert!(matches!(
        g.malloc(max + 1),
        Err(AllocError::TooLarge { .. })
    ));
    assert!(g.memalign(1 << 62, 1 << 62).is_err());
    assert!(matches!(
        g.memalign(usize::MAX, 1),
        Err(AllocError::BadAlignment { .. })
    ));
    assert!(g.pvalloc(usize::MAX).is_err());
    assert!(g.calloc(1 << 40, 1 << 40).is_err());
    let a = g.malloc(10).unwrap();
    assert!(g.realloc(a, max + 1).is_err());
    assert_eq!(
        g.realloc(a, 20).unwrap(),
        a,
        "a refused realloc leaves the block alone"
    );
    g.check_invariants().unwrap();
}

#[test]
fn requests_no_address_space_can_hold_fail_and_a_failed_realloc_keeps_its_block() {
    let (mut g, _) = fresh();
    let small = g.malloc(24).unwrap();
    let big = g.malloc(300_000).unwrap(); // an mmapped chunk
    assert!(g.is_mmapped(big));
    let before = g.stats();
    // 2^62 is under PTRDIFF_MAX: mmap and brk both fail, malloc returns NULL
    let huge = 1usize << 62;
    assert!(matches!(
        g.malloc(huge),
        Err(AllocError::OutOfAddressSpace { .. })
    ));
    for p in [small, big] {
        assert!(matches!(
            g.realloc(p, huge),
            Err(AllocError::OutOfAddressSpace { .. })
        ));
    }
    let after = g.stats();
    assert_eq!(
        (after.live_bytes, after.live_blocks),
        (before.live_bytes, before.live_blocks),
        "the failed calls changed no live block"
    );
    assert!(g.is_mmapped(big), "the mmapped block is still mapped");
    g.check_invariants().unwrap();
    g.free(small).unwrap();
    g.free(big).unwrap();
    assert_eq!(g.stats().live_blocks, 0);
    g.check_invariants().unwrap();
}

#[test]
fn a_brk_heap_past_the_node_table_is_the_models_limit_not_glibcs_answer() {
    let (mut g, _) = fresh();
    g.mallopt(-4, 0); // M_MMAP_MAX = 0: every request from the brk heap
    let mut n = 0u64;
    let err = loop {
        match g.malloc(64 << 20) {
            Ok(_) => n += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(err, AllocError::ModelLimit { .. }), "{err}");
    let heap = g.address_space().heap_bytes();
    assert!(
        n * (64 << 20) <= heap && heap <= g.heap.max_extent(),
        "{n} blocks, {heap:#x}"
    );
    g.check_invariants().unwrap();
}
