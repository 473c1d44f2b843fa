//! Simulator throughput on the real ints.py recording (970,577 events): the replay of
//! pre-decoded events through pymalloc (pinned mode, every address compared), the bare
//! model on the O/M calls alone, and the streaming parser on the gzip text.
//! The real CPython 3.11 pymalloc runs these events at about 22 ns each.

#[path = "../tests/common/mod.rs"]
mod common;
use common::thread_cpu_time;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pyalloc::pymalloc::PymallocParams;
use pyalloc::trace::pymalloc3::Pymalloc3Reader;
use pyalloc::trace::{Domain, Event, EventKind, EventReader};
use pyalloc::{Addr, Allocator, Platform};

fn ints() -> std::path::PathBuf {
    common::trace("cpython-3.11.7-linux-x86_64/ints.trace.gz")
}

fn decode() -> Vec<Event> {
    let mut r = Pymalloc3Reader::open(&ints()).unwrap();
    let mut v = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        v.push(e);
    }
    v
}

fn replay_ints(c: &mut Criterion) {
    let events = decode();
    let mut g = c.benchmark_group("pymalloc ints.trace.gz");
    g.sample_size(20);
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("replay pre-decoded events (pinned, compared)", |b| {
        b.iter_batched(
            || common::pinned_311(),
            |mut rp| {
                let matched = common::matched_calls(&mut rp, &events);
                // Returned, so the model is dropped outside the measurement.
                (rp, black_box(matched))
            },
            BatchSize::LargeInput,
        )
    });
    // The floor: reading the pre-decoded events (56 bytes each) without replaying them.
    g.bench_function("read pre-decoded events only (floor)", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for e in &events {
                if let EventKind::Malloc { size, .. } = e.kind {
                    n += size;
                }
            }
            black_box(n)
        })
    });
    // The same replay, timed by the thread's CPU clock: the figure without the time the thread
    // spends descheduled on a shared machine.
    g.bench_function(
        "replay pre-decoded events (pinned, compared; thread CPU time)",
        |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let mut rp = common::pinned_311();
                    let t = thread_cpu_time();
                    let matched = common::matched_calls(&mut rp, &events);
                    total += thread_cpu_time() - t;
                    black_box(matched);
                }
                total
            })
        },
    );
    g.finish();

    // The bare model: the small O/M calls only, on pymalloc over a bump allocator; frees
    // are sent to the address the model itself returned.
    let mut ops: Vec<(u8, u64, u32)> = Vec::new(); // (kind, size, slot)
    let mut slots: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let mut next_slot = 0u32;
    for e in &events {
        match e.kind {
            EventKind::Malloc {
                domain: Domain::Obj | Domain::Mem,
                size,
                addr,
            } if (1..=512).contains(&size) => {
                slots.insert(addr.0, next_slot);
                ops.push((0, size, next_slot));
                next_slot += 1;
            }
            EventKind::Free {
                domain: Domain::Obj | Domain::Mem,
                addr,
            } => {
                if let Some(s) = slots.remove(&addr.0) {
                    ops.push((1, 0, s));
                }
            }
            _ => {}
        }
    }
    let mut g = c.benchmark_group("pymalloc bare model");
    g.sample_size(20);
    g.throughput(Throughput::Elements(ops.len() as u64));
    g.bench_function("small malloc/free of ints.trace.gz", |b| {
        let platform = Platform::linux_x86_64();
        let mut addrs = vec![Addr::NULL; next_slot as usize];
        b.iter(|| {
            let mut py = pyalloc::pymalloc::Pymalloc::new(
                PymallocParams::v3_11(),
                pyalloc::sysmalloc::Bump::new(platform.heap_start, 16),
                platform.address_space(),
            );
            for &(k, size, slot) in &ops {
                if k == 0 {
                    addrs[slot as usize] = py.malloc(size as usize).unwrap();
                } else {
                    py.free(addrs[slot as usize]).unwrap();
                }
            }
            black_box(py.narenas())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("pymalloc3 parser");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("parse ints.trace.gz from gzip", |b| {
        b.iter(|| {
            let mut r = Pymalloc3Reader::open(&ints()).unwrap();
            let mut n = 0u64;
            while let Some(e) = r.next_event().unwrap() {
                n += e.line & 1;
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, replay_ints);
criterion_main!(benches);
