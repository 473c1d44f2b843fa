//! The footprint held to reality (needs `--features record`): ../shared/workloads/survivors.py
//! recorded with `pyalloc record`, replayed by `pyalloc compare` through
//! `cpython-3.11/glibc-2.36` and `glibc-2.36`, and the resident deltas from the first marker
//! compared with the VmRSS deltas the same script prints when run by the machine's python3
//! (setarch -R) under pymalloc and under PYTHONMALLOC=malloc: within 3 % or 512 KiB,
//! whichever is larger.
//!
//! Held: every phase of `cpython-3.11/glibc-2.36`, and the build phase of `glibc-2.36`.
//! Not held (measured, see the issue notes): `glibc-2.36` after the 99 % free. There the
//! third marker (700201 bytes) either fits a hole of the fragmented brk heap or extends
//! top by its ~684 KiB of fresh pages, and which one happens turns on start-up
//! allocations no recording sees (the embedding's and the C library's own, ~30-40 KiB
//! before the first recorded call, and the environment Python copies into os.environ):
//! the same script prints 9360 or 10016 KiB for that delta depending only on the
//! environment it runs in.

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

/// VmRSS (KiB) after each phase of a plain run.
fn real_rss(n: &str, malloc: bool) -> Vec<i64> {
    let mut cmd = Command::new("setarch");
    clean(&mut cmd);
    cmd.args(["x86_64", "-R", "python3", SCRIPT, n]);
    if malloc {
        cmd.env("PYTHONMALLOC", "malloc");
    } else {
        cmd.env_remove("PYTHONMALLOC");
    }
    let out = cmd.output().expect("setarch and python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn resident_deltas_match_vmrss_for_300_000_floats() {
    let n = "300000";
    let dir = std::env::temp_dir().join(format!("pyalloc-survivors-{}", std::process::id()));
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
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = v["traces"][0]["models"].as_array().unwrap();
    for (m, malloc) in models.iter().zip([false, true]) {
        let rows = m["markers"].as_array().unwrap();
        assert_eq!(rows.len(), 4, "{}", m["model"]);
        let predicted: Vec<i64> = rows
            .iter()
            .map(|r| r["resident"].as_i64().unwrap() / 1024)
            .collect();
        let real = real_rss(n, malloc);
        assert_eq!(real.len(), 4);
        let phases = if malloc { 1..2 } else { 1..4 };
        for k in phases {
            let (p, r) = (predicted[k] - predicted[0], real[k] - real[0]);
            let tolerance = (r.abs() * 3 / 100).max(512);
            assert!(
                (p - r).abs() <= tolerance,
                "{} phase {k}: predicted Δ {p} KiB, real Δ {r} KiB (tolerance {tolerance})",
                m["model"]
            );
        }
    }
}
