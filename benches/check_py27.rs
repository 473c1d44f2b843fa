//! Criterion bench of the CPython 2.7 checker: ints_churn.trace.gz (free lists and
//! pymalloc in one replay) from pre-decoded events, and `check_file` of the gzip text and
//! of its binary form.

#[path = "../tests/common/mod.rs"]
mod common;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pyalloc::check::pyrec27::Py27Replay;
use pyalloc::check::{check_file, CheckOptions};
use pyalloc::trace::binary::BinaryWriter;
use pyalloc::trace::pyrec27::Pyrec27Reader;
use pyalloc::trace::{Event, EventReader};
use pyalloc::Platform;

fn trace() -> std::path::PathBuf {
    common::trace("cpython-2.7.18-linux-x86_64/ints_churn.trace.gz")
}

fn check_py27(c: &mut Criterion) {
    let mut reader = Pyrec27Reader::open(&trace()).unwrap();
    let mut events: Vec<Event> = Vec::new();
    while let Some(e) = reader.next_event().unwrap() {
        events.push(e);
    }
    let bin = std::env::temp_dir().join(format!("pyalloc-bench-{}.bin", std::process::id()));
    {
        let f = std::io::BufWriter::new(std::fs::File::create(&bin).unwrap());
        let mut w = BinaryWriter::new(f, reader.header()).unwrap();
        for e in &events {
            w.write_event(e).unwrap();
        }
        w.finish().unwrap();
    }
    let mut g = c.benchmark_group("check ints_churn (2.7.18)");
    g.sample_size(20);
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("replay of decoded events", |b| {
        b.iter(|| {
            let mut r = Py27Replay::new(Platform::linux_x86_64(), false);
            for (i, e) in events.iter().enumerate() {
                r.apply(e, i as u64).unwrap();
            }
            assert!(r.report.ok());
            r.report.checked
        })
    });
    g.bench_function("check_file gzip text", |b| {
        b.iter(|| check_file(&trace(), &CheckOptions::default()).unwrap())
    });
    g.bench_function("check_file binary", |b| {
        b.iter(|| check_file(&bin, &CheckOptions::default()).unwrap())
    });
    g.finish();
    let _ = std::fs::remove_file(&bin);
}

criterion_group!(benches, check_py27);
criterion_main!(benches);
