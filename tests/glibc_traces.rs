//! The glibc model held to the recorded processes in shared/traces/glibc-2.36-linux-x86_64/:
//! one test per recording, replayed call by call from the first one.

use pyalloc::check::glibc::replay;
use pyalloc::check::{check_file, CheckOptions};
use pyalloc::trace::EventKind;
use pyalloc::Addr;
use std::path::PathBuf;

fn trace(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/traces/glibc-2.36-linux-x86_64/"
    ))
    .join(name)
}

/// Every brk-heap address matches, and the heap ends where the process's did.
fn exact(name: &str) {
    let r = replay(&trace(name), &CheckOptions::default(), |_, _| {}).unwrap();
    assert_eq!(r.report.first_divergence, None, "{name}");
    assert!(r.report.checked > 0);
    assert_eq!(r.report.matched, r.report.checked);
    let brk_at_exit = r.brk_at_exit.expect("the trailer gives brk_at_exit");
    assert_eq!(
        r.model.address_space().brk(),
        brk_at_exit,
        "{name}: heap end at exit"
    );
    r.model.check_invariants().unwrap();
}

#[test]
fn synthetic_every_heap_address_matches() {
    exact("synthetic.trace.gz");
}

#[test]
fn python27_so_loop_every_heap_address_matches() {
    exact("python27_so_loop.trace.gz");
}

#[test]
fn check_file_dispatches_glibc_traces() {
    let r = check_file(
        &trace("python27_so_loop.trace.gz"),
        &CheckOptions::default(),
    )
    .unwrap();
    assert!(r.ok());
    let bad = CheckOptions {
        model: Some("cpython-3.11".into()),
        ..Default::default()
    };
    assert!(check_file(&trace("python27_so_loop.trace.gz"), &bad).is_err());
}

/// The 13 PyIntBlocks (`malloc(992)`) land where glibc put them, and the -1968 jumps of
/// the question's loop follow from the model's block addresses.
#[test]
fn python27_int_blocks_and_the_minus_1968() {
    let mut blocks: Vec<(Addr, Addr)> = Vec::new(); // (recorded, model)
    replay(
        &trace("python27_so_loop.trace.gz"),
        &CheckOptions::default(),
        |ev, got| {
            if let EventKind::Malloc {
                size: 992, addr, ..
            } = ev.kind
            {
                blocks.push((addr, got));
            }
        },
    )
    .unwrap();
    assert_eq!(blocks.len(), 13);
    for (k, &(rec, model)) in blocks.iter().enumerate() {
        assert_eq!(model, rec, "PyIntBlock {k}");
    }
    let model: Vec<u64> = blocks.iter().map(|b| b.1 .0).collect();
    // CPython 2.7 intobject.c: a PyIntBlock is an 8-byte link + 41 PyIntObjects of 24 bytes,
    // handed out from objects[40] down to objects[0].
    let (link, obj, n) = (8u64, 24u64, 41u64);
    let slot = |id: u64| {
        model.iter().enumerate().find_map(|(k, &b)| {
            (id >= b + link && id < b + link + n * obj && (id - b - link) % obj == 0)
                .then(|| (k, (id - b - link) / obj))
        })
    };
    let stdout = std::fs::read_to_string(trace("python27_so_loop.stdout.txt")).unwrap();
    let mut jumps = 0;
    for line in stdout.lines() {
        // "35 36 (93824994407080, 93824994409048) -1968"
        let Some((ids, diff)) = line.split_once(") ") else {
            continue;
        };
        let Some((_, ids)) = ids.split_once('(') else {
            continue;
        };
        let (a, b) = ids.split_once(", ").unwrap();
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
        let diff: i64 = diff.trim().parse().unwrap();
        assert_eq!(diff, a as i64 - b as i64);
        let (Some((ka, 0)), Some((kb, top))) = (slot(a), slot(b)) else {
            continue;
        };
        if kb != ka + 1 || top != n - 1 {
            continue;
        }
        // from the last object of block k to the first of block k+1
        let predicted = -((model[kb] - model[ka]) as i64) - ((n - 1) * obj) as i64;
        assert_eq!(predicted, diff, "{line}");
        jumps += 1;
    }
    assert!(
        jumps >= 6,
        "the start-up blocks give the -1968 jumps ({jumps} seen)"
    );
}
