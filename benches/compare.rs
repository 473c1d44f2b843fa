//! `compare` against `check` on a shipped recording (ints.trace.gz, 970,577 events): the
//! issue's speed rule is that comparing it under three whole-stack models
//! (`cpython-3.11`, `cpython-3.11/glibc-2.36`, `glibc-2.36`) takes at most 1.5 times one
//! `check` of it, wall time, both in this process.
//!
//! `cargo bench --bench compare` first runs the two commands as the issue times them
//! (`pyalloc check TRACE`, `pyalloc compare TRACE --models …`, whole processes),
//! interleaved, best of 15 each, and prints their ratio (`compare / check`); then
//! criterion's own timings of the two library calls.

#[path = "../tests/common/mod.rs"]
mod common;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pyalloc::check::{check_file, CheckOptions};
use pyalloc::compare::{compare, parse_models, CompareOptions, TraceRun};
use pyalloc::replay::ModelSpec;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The models the speed rule names.
const MODELS: [&str; 3] = ["cpython-3.11", "cpython-3.11/glibc-2.36", "glibc-2.36"];

fn ints() -> PathBuf {
    common::trace("cpython-3.11.7-linux-x86_64/ints.trace.gz")
}

fn check_ints() -> u64 {
    check_file(&ints(), &CheckOptions::default())
        .unwrap()
        .events
}

fn compare_ints(models: &[(String, ModelSpec)]) -> Vec<TraceRun> {
    let path = vec![ints().display().to_string()];
    compare(&path, models, &CompareOptions::default()).unwrap()
}

/// Wall time of one run of the `pyalloc` binary with `args` (its output discarded).
fn timed(args: &[&str]) -> Duration {
    let t = Instant::now();
    let (ok, _, err) = common::pyalloc(args);
    let d = t.elapsed();
    assert!(ok, "pyalloc {args:?}: {err}");
    d
}

fn compare_vs_check(c: &mut Criterion) {
    let names: Vec<String> = MODELS.map(String::from).to_vec();
    let models = parse_models(&names).unwrap();
    let events = check_ints();
    // interleaved, so both see the same machine; best of 15 (the least disturbed run)
    let path = ints().display().to_string();
    let list = MODELS.join(",");
    let (mut check, mut cmp) = (Duration::MAX, Duration::MAX);
    for _ in 0..15 {
        check = check.min(timed(&["check", &path]));
        cmp = cmp.min(timed(&["compare", &path, "--models", &list]));
    }
    println!(
        "ints.trace.gz, best of 15 interleaved runs of the binary: check {:.1} ms, \
         compare ({}) {:.1} ms: compare / check = {:.2}",
        check.as_secs_f64() * 1e3,
        MODELS.join(", "),
        cmp.as_secs_f64() * 1e3,
        cmp.as_secs_f64() / check.as_secs_f64()
    );
    let mut g = c.benchmark_group("ints.trace.gz");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events));
    g.bench_function("check", |b| b.iter(check_ints));
    g.bench_function("compare, three models", |b| {
        b.iter(|| compare_ints(&models))
    });
    g.finish();
}

criterion_group!(benches, compare_vs_check);
criterion_main!(benches);
