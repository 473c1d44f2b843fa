//! The footprint held to reality (needs `--features record`): ../shared/workloads/survivors.py
//! recorded with `pyalloc record`, replayed by `pyalloc compare` through
//! `cpython-3.11/glibc-2.36` and `glibc-2.36`, and the resident deltas from the first marker
//! compared with the VmRSS deltas the same script prints when run by the machine's python3
//! (setarch -R) under pymalloc and under PYTHONMALLOC=malloc: within 3 % or 512 KiB,
//! whichever is larger.
//!
//! Held: every phase of `cpython-3.11/glibc-2.36` and the build phase of `glibc-2.36` for
//! N = 300,000 (the normal run); every phase of both but pymalloc's last for N = 2,000,000
//! (opt-in: `PYALLOC_SURVIVORS_2M=1`).
//!
//! Not held, measured: `glibc-2.36` after the 99 % free at N = 300,000. There the third
//! marker (700201 bytes) either fits a hole of the fragmented brk heap or extends top by
//! its ~684 KiB of fresh pages, and which one happens turns on start-up allocations no
//! recording sees (the environment Python copies into os.environ): the same script prints
//! 9360 or 10016 KiB for that delta depending only on the environment it runs in (10016
//! from a shell, 9360 under `cargo test`; the model says 10024). At 684 KiB that is under
//! 3 % of the N = 2,000,000 delta, so it is held there.
//!
//! pymalloc's last phase at N = 2,000,000: after the
//! free-all, what stays resident is the one or two arenas some leftover block keeps (the
//! float free list's 100 floats, objects made while printing); which ones, and how many of
//! their pages were written, turns on where the kernel put each arena (one on a 16 KiB
//! boundary holds 64 pools, else 63) and on start-up allocations no recording sees, so a
//! plain `python3` and the recording process differ: measured 1048 or 2140 KiB for that
//! delta in plain runs that differ only in their environment, 1404 in the recording
//! process, which the model predicts. The recording process's own deltas (it prints them
//! while recorded) are printed beside the others but not held: they vary between runs.

use std::path::PathBuf;
use std::process::Command;

const PYALLOC: &str = env!("CARGO_BIN_EXE_pyalloc");
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/workloads/survivors.py"
);
const MARKERS: [&str; 4] = ["700001", "700101", "700201", "700301"];

/// `cmd` with the same small environment for every run (PATH, HOME and pyenv's own
/// variables only): Python copies its environment into `os.environ` at start-up, so the
/// heap each run starts from depends on it.
fn clean(cmd: &mut Command) -> &mut Command {
    cmd.env_clear();
    for (k, v) in std::env::vars() {
        if k == "PATH" || k == "HOME" || k.starts_with("PYENV") {
            cmd.env(k, v);
        }
    }
    cmd.env("LC_ALL", "C")
}

/// The VmRSS (KiB) lines the script prints, one per phase.
fn phases(stdout: &[u8]) -> Vec<i64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect()
}

/// VmRSS (KiB) after each phase of a plain run.
fn real_rss(n: &str, malloc: bool) -> Vec<i64> {
    let mut cmd = Command::new("setarch");
    clean(&mut cmd);
    cmd.args(["x86_64", "-R", "python3", SCRIPT, n]);
    if malloc {
        cmd.env("PYTHONMALLOC", "malloc");
    }
    let out = cmd.output().expect("setarch and python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    phases(&out.stdout)
}

/// Records the script for `n` floats and replays it through both models: the resident
/// bytes (KiB) each predicts at the four markers, and the recording process's own VmRSS.
fn recorded(n: &str) -> (Vec<Vec<i64>>, Vec<i64>) {
    let dir = std::env::temp_dir().join(format!("pyalloc-survivors-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace: PathBuf = dir.join("survivors.trace");
    let rec = clean(&mut Command::new("setarch"))
        .args(["x86_64", "-R", PYALLOC, "record", "-o"])
        .arg(&trace)
        .args(["--", SCRIPT, n])
        .output()
        .unwrap();
    assert!(
        rec.status.success(),
        "{}",
        String::from_utf8_lossy(&rec.stderr)
    );
    let mut args = vec![
        "compare".to_string(),
        trace.to_string_lossy().into_owned(),
        "--models".into(),
        "cpython-3.11/glibc-2.36,glibc-2.36".into(),
        "--json".into(),
    ];
    for m in MARKERS {
        args.push("--at-marker".into());
        args.push(m.into());
    }
    let out = Command::new(PYALLOC).args(&args).output().unwrap();
    if std::env::var_os("PYALLOC_SURVIVORS_KEEP").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = v["traces"][0]["models"].as_array().unwrap();
    let predicted = models
        .iter()
        .map(|m| {
            let rows = m["markers"].as_array().unwrap();
            assert_eq!(rows.len(), 4, "{}", m["model"]);
            rows.iter()
                .map(|r| r["resident"].as_i64().unwrap() / 1024)
                .collect()
        })
        .collect();
    (predicted, phases(&rec.stdout))
}

/// Holds the predicted deltas from the first marker to the real ones, for `held` phases;
/// prints the table row of every phase.
fn hold(what: &str, predicted: &[i64], real: &[i64], held: std::ops::Range<usize>) {
    assert_eq!((predicted.len(), real.len()), (4, 4), "{what}");
    let mut bad = Vec::new();
    for k in 1..4 {
        let (p, r) = (predicted[k] - predicted[0], real[k] - real[0]);
        let tolerance = (r.abs() * 3 / 100).max(512);
        eprintln!(
            "{what} phase {k}: real Δ {r} KiB, predicted Δ {p} KiB, error {} KiB (tolerance {tolerance}){}",
            p - r,
            if held.contains(&k) { "" } else { " [not held]" }
        );
        if held.contains(&k) && (p - r).abs() > tolerance {
            bad.push(format!(
                "phase {k}: predicted Δ {p} KiB, real Δ {r} KiB (tolerance {tolerance})"
            ));
        }
    }
    assert!(bad.is_empty(), "{what}: {}", bad.join("; "));
}

/// Every check for `n` floats; `pymalloc_last`, `glibc_last`: the phases held (1..4: all).
fn survivors(n: &str, pymalloc_last: usize, glibc_last: usize) {
    let (predicted, recording) = recorded(n);
    let (pym, glibc) = (&predicted[0], &predicted[1]);
    hold(
        &format!("N={n} cpython-3.11/glibc-2.36 vs the recording process"),
        pym,
        &recording,
        1..1,
    );
    hold(
        &format!("N={n} cpython-3.11/glibc-2.36 vs python3"),
        pym,
        &real_rss(n, false),
        1..pymalloc_last,
    );
    hold(
        &format!("N={n} glibc-2.36 vs PYTHONMALLOC=malloc python3"),
        glibc,
        &real_rss(n, true),
        1..glibc_last,
    );
}

#[test]
fn resident_deltas_match_vmrss_for_300_000_floats() {
    survivors("300000", 4, 2);
}

/// Opt-in (`PYALLOC_SURVIVORS_2M=1`): ~8 M events, a 150 MB trace, ~30 s.
#[test]
fn resident_deltas_match_vmrss_for_2_000_000_floats() {
    if std::env::var_os("PYALLOC_SURVIVORS_2M").is_none() {
        eprintln!("skipped: set PYALLOC_SURVIVORS_2M=1 to run N = 2,000,000");
        return;
    }
    survivors("2000000", 3, 4);
}
