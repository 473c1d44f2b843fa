//! Criterion benches of the trace pipeline on a shipped recording (ints.trace.gz, 970,577
//! events): reading it as gzip text and as binary, and replaying it through the models
//! (those with their own addresses pay for the recorded-to-model address map; pymalloc
//! pinned to the recording is exact and pays nothing for it).
//!
//! `cargo bench --bench replay`; events/s is criterion's "thrpt".

#[path = "../tests/common/mod.rs"]
mod common;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pyalloc::replay::{model_by_name, replay, replay_named, ReplayOptions};
use pyalloc::trace::binary::{BinaryReader, BinaryWriter};
use pyalloc::trace::open::open;
use pyalloc::trace::EventReader;
use std::path::Path;

fn ints() -> std::path::PathBuf {
    common::trace("cpython-3.11.7-linux-x86_64/ints.trace.gz")
}

fn binary_of(path: &Path) -> (Vec<u8>, u64) {
    let mut r = open(path).unwrap();
    let first = r.next_event().unwrap();
    let mut w = BinaryWriter::new(Vec::new(), r.header()).unwrap();
    let mut n = 0u64;
    let mut next = first;
    while let Some(e) = next {
        w.write_event(&e).unwrap();
        n += 1;
        next = r.next_event().unwrap();
    }
    (w.finish().unwrap(), n)
}

fn drain(r: &mut dyn EventReader) -> u64 {
    let mut buf = vec![
        pyalloc::trace::Event {
            kind: pyalloc::trace::EventKind::Mark { index: 0 },
            line: 0
        };
        4096
    ];
    let mut n = 0;
    loop {
        match r.next_events(&mut buf).unwrap() {
            0 => return n,
            k => n += k as u64,
        }
    }
}

fn reading(c: &mut Criterion) {
    let (bin, n) = binary_of(&ints());
    let mut g = c.benchmark_group("read ints.trace");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("gzip text", |b| {
        b.iter(|| assert_eq!(drain(open(&ints()).unwrap().as_mut()), n))
    });
    g.bench_function("binary (in memory)", |b| {
        b.iter(|| {
            let mut r = BinaryReader::from_bytes("ints.bin", bin.clone()).unwrap();
            assert_eq!(drain(&mut r), n)
        })
    });
    g.finish();
}

fn replaying(c: &mut Criterion) {
    let (bin, n) = binary_of(&ints());
    let mut g = c.benchmark_group("replay ints.trace");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    for model in ["null", "bump", "glibc-2.36"] {
        g.bench_function(format!("binary through {model}"), |b| {
            b.iter(|| {
                let mut r = BinaryReader::from_bytes("ints.bin", bin.clone()).unwrap();
                let mut m = model_by_name(model).unwrap();
                replay(&mut r, m.as_mut(), &ReplayOptions::default()).unwrap()
            })
        });
    }
    g.bench_function("binary through cpython-3.11 pinned", |b| {
        b.iter(|| {
            let mut r = BinaryReader::from_bytes("ints.bin", bin.clone()).unwrap();
            replay_named(&mut r, "cpython-3.11", &ReplayOptions::default()).unwrap()
        })
    });
    g.bench_function("gzip text through cpython-3.11 pinned", |b| {
        b.iter(|| {
            let mut r = open(&ints()).unwrap();
            replay_named(r.as_mut(), "cpython-3.11", &ReplayOptions::default()).unwrap()
        })
    });
    g.bench_function("gzip text through glibc-2.36", |b| {
        b.iter(|| {
            let mut r = open(&ints()).unwrap();
            let mut m = model_by_name("glibc-2.36").unwrap();
            replay(r.as_mut(), m.as_mut(), &ReplayOptions::default()).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, reading, replaying);
criterion_main!(benches);
