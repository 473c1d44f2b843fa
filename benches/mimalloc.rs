//! mimalloc against pymalloc on the same question, in one run: replaying a recorded
//! ints.py through its model, pre-decoded, pinned to the recording, every address
//! compared — CPython 3.13.0 on mimalloc 2.1.2 (ints.trace.gz, 856,550 lines) beside
//! CPython 3.11.7 on pymalloc (ints.trace.gz, 970,577 events). Also the bare mimalloc
//! model on the O/M calls alone.
//!
//! `cargo bench --bench mimalloc`; the ratio of the two replay times is the figure. The
//! first group, `alternating`, is that figure measured fairly on a shared machine: the two
//! replays take turns (ROUNDS rounds), each timed in the thread's CPU time, and the
//! fastest round of each, per event, gives `mimalloc / pymalloc` (printed).

#[path = "../tests/common/mod.rs"]
mod common;

use common::thread_cpu_time;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pyalloc::mimalloc::Mimalloc;
use pyalloc::replay::mimalloc::{Replayer as MiReplayer, Step as MiStep};
use pyalloc::replay::{Addresses, Step};
use pyalloc::trace::mimalloc::{MiLine, MimallocReader};
use pyalloc::trace::pymalloc3::Pymalloc3Reader;
use pyalloc::trace::{Domain, Event, EventKind, EventReader};
use pyalloc::{Addr, Allocator};
use std::collections::HashMap;
use std::path::Path;

const INTS_311: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/traces/cpython-3.11.7-linux-x86_64/ints.trace.gz"
);
const INTS_313: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/traces/cpython-3.13.0-mimalloc-linux-x86_64/ints.trace.gz"
);

fn decode_311() -> Vec<Event> {
    let mut r = Pymalloc3Reader::open(Path::new(INTS_311)).unwrap();
    let mut v = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        v.push(e);
    }
    v
}

fn decode_313() -> (Vec<MiLine>, pyalloc::trace::TraceHeader) {
    let mut r = MimallocReader::open(Path::new(INTS_313)).unwrap();
    let mut v = Vec::new();
    while let Some(l) = r.next_line().unwrap() {
        v.push(l);
    }
    (v, r.header().clone())
}

/// Rounds of the alternating measurement.
const ROUNDS: usize = 30;

/// The two replays in turns; prints the fastest round of each per event and the ratio.
fn alternating(ev311: &[Event], lines: &[MiLine], header: &pyalloc::trace::TraceHeader) {
    let (mut best_py, mut best_mi) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        let mut rp = common::pinned_311();
        let t = thread_cpu_time();
        let mut matched = 0u64;
        for e in ev311 {
            if let Step::Call { matched: true, .. } = rp.step(e) {
                matched += 1;
            }
        }
        let py = (thread_cpu_time() - t).as_secs_f64();
        black_box(matched);
        drop(rp);
        let mut mi = MiReplayer::new(Addresses::Pinned, header);
        let t = thread_cpu_time();
        let mut matched = 0u64;
        for l in lines {
            if let MiStep::Call { matched: true, .. } = mi.step(l) {
                matched += 1;
            }
        }
        let m = (thread_cpu_time() - t).as_secs_f64();
        black_box(matched);
        drop(mi);
        best_py = best_py.min(py / ev311.len() as f64);
        best_mi = best_mi.min(m / lines.len() as f64);
    }
    println!(
        "alternating ({ROUNDS} rounds, thread CPU time, fastest round): pymalloc {:.1} ns/event \
         ({} events), mimalloc {:.1} ns/event ({} lines); mimalloc / pymalloc = {:.2}",
        best_py * 1e9,
        ev311.len(),
        best_mi * 1e9,
        lines.len(),
        best_mi / best_py
    );
}

fn replay_ints(c: &mut Criterion) {
    let ev311 = decode_311();
    let (lines, header) = decode_313();
    alternating(&ev311, &lines, &header);
    let mut g =
        c.benchmark_group("replay ints.trace.gz (pre-decoded, pinned, every address compared)");
    g.sample_size(20);
    g.bench_function("pymalloc: CPython 3.11.7 recording", |b| {
        b.iter_batched(
            || common::pinned_311(),
            |mut rp| {
                let matched = common::matched_calls(&mut rp, &ev311);
                (rp, black_box(matched))
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("mimalloc: CPython 3.13.0 recording", |b| {
        b.iter_batched(
            || MiReplayer::new(Addresses::Pinned, &header),
            |mut rp| {
                let mut matched = 0u64;
                for l in &lines {
                    if let MiStep::Call { matched: true, .. } = rp.step(l) {
                        matched += 1;
                    }
                }
                (rp, black_box(matched))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // The bare model on the recording's O/M calls (addresses mapped through a table, as
    // the model's own address space differs only in the arena base).
    let calls: Vec<EventKind> = lines
        .iter()
        .filter_map(|l| match l {
            MiLine::Event(e) => Some(e.kind),
            MiLine::Os(_) => None,
        })
        .filter(|k| {
            matches!(
                k,
                EventKind::Malloc {
                    domain: Domain::Obj | Domain::Mem,
                    ..
                } | EventKind::Calloc {
                    domain: Domain::Obj | Domain::Mem,
                    ..
                } | EventKind::Realloc {
                    domain: Domain::Obj | Domain::Mem,
                    ..
                } | EventKind::Free {
                    domain: Domain::Obj | Domain::Mem,
                    ..
                }
            )
        })
        .collect();
    let mut g = c.benchmark_group("mimalloc model alone");
    g.sample_size(20);
    g.throughput(Throughput::Elements(calls.len() as u64));
    g.bench_function("O/M calls of ints.trace.gz, own address space", |b| {
        b.iter_batched(
            || {
                (
                    Mimalloc::default(),
                    HashMap::<u64, Addr>::with_capacity(1 << 18),
                )
            },
            |(mut m, mut map)| {
                for k in &calls {
                    match *k {
                        EventKind::Malloc { size, addr, .. } => {
                            map.insert(addr.0, m.malloc(size as usize).unwrap());
                        }
                        EventKind::Calloc {
                            nelem,
                            elsize,
                            addr,
                            ..
                        } => {
                            map.insert(addr.0, m.calloc(nelem as usize, elsize as usize).unwrap());
                        }
                        EventKind::Realloc { old, size, new, .. } => {
                            let o = map.remove(&old.0).unwrap_or(Addr::NULL);
                            map.insert(new.0, m.realloc(o, size as usize).unwrap());
                        }
                        EventKind::Free { addr, .. } => {
                            if let Some(a) = map.remove(&addr.0) {
                                m.free(a).unwrap();
                            }
                        }
                        _ => {}
                    }
                }
                (m, map)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, replay_ints);
criterion_main!(benches);
