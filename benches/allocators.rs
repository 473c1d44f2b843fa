//! Criterion benches: the allocator models side by side.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pyalloc::sysmalloc::glibc::{Glibc, GlibcParams};
use pyalloc::sysmalloc::Bump;
use pyalloc::{Addr, Allocator, Platform};

fn malloc_free_pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("malloc+free pair");
    g.bench_function("bump", |b| {
        let mut a = Bump::new(Addr(0x1000), 16);
        b.iter(|| {
            let p = a.malloc(black_box(24)).unwrap();
            a.free(p).unwrap();
        })
    });
    g.bench_function("glibc", |b| {
        let mut a = Glibc::new(
            GlibcParams::v2_36_x86_64(),
            Platform::linux_x86_64().address_space(),
        );
        b.iter(|| {
            let p = a.malloc(black_box(24)).unwrap();
            a.free(p).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, malloc_free_pairs);
criterion_main!(benches);
