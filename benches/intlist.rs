//! Criterion benches of the int free list: an alloc+free pair (by slot, and by address,
//! which must find the block first), and the facade's `int(v)` + `drop`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pyalloc::interp::Py2;
use pyalloc::objects::IntFreeList;
use pyalloc::sysmalloc::Bump;
use pyalloc::{Addr, Platform};

fn free_list_pairs(c: &mut Criterion) {
    let p = Platform::linux_x86_64();
    let mut g = c.benchmark_group("int free list alloc+free pair");
    g.bench_function("by slot", |b| {
        let mut l = IntFreeList::new(Bump::new(Addr(0x1000), 16), &p);
        // A few blocks with live objects in them, as after start-up.
        let keep: Vec<_> = (0..300).map(|_| l.alloc().unwrap()).collect();
        b.iter(|| {
            let (s, a) = l.alloc().unwrap();
            black_box(a);
            l.free_slot(s).unwrap();
        });
        black_box(keep);
    });
    g.bench_function("by address", |b| {
        let mut l = IntFreeList::new(Bump::new(Addr(0x1000), 16), &p);
        let keep: Vec<_> = (0..300).map(|_| l.alloc().unwrap()).collect();
        b.iter(|| {
            let (_, a) = l.alloc().unwrap();
            l.free(black_box(a)).unwrap();
        });
        black_box(keep);
    });
    g.finish();
}

fn facade_int(c: &mut Criterion) {
    let mut g = c.benchmark_group("facade");
    g.bench_function("int(v) + drop, v outside the cache", |b| {
        let mut py = Py2::new(Platform::linux_x86_64()).unwrap();
        b.iter(|| {
            let o = py.int(black_box(1000)).unwrap();
            py.drop(o).unwrap();
        });
    });
    g.bench_function("int(v), v cached", |b| {
        let mut py = Py2::new(Platform::linux_x86_64()).unwrap();
        b.iter(|| black_box(py.int(black_box(100)).unwrap()));
    });
    g.finish();
}

criterion_group!(benches, free_list_pairs, facade_int);
criterion_main!(benches);
