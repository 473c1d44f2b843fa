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
//! Not held, measured: `glibc-2.36` after the 99 % free at N = 300,000 (phases 2 and 3).
//! The mechanism, traced in PYTHONMALLOC=malloc recordings (`PYTHONMALLOC=malloc pyalloc
//! record`, whose O lines carry glibc's own addresses): the second marker (700101 bytes,
//! a 700112-byte chunk, in the brk heap since freeing the mmapped first marker raised
//! mp_.mmap_threshold to 704512) is freed at the end of its phase; the print made while it
//! was live asks for 200 bytes (a 208-byte chunk). When no free chunk of ≥ 208 bytes is
//! binned, that chunk is cut from top, right above the marker, so the marker's free cannot
//! merge into top: it stays a 700112-byte free chunk, 112 bytes short of the third marker's
//! 700224, which then extends top into ~684 KiB of fresh pages (Δ 10016-10028 KiB). When
//! some free chunk takes the 208 bytes, the marker merges into top (its pages stay
//! resident: top is below trim_threshold), the survivors' list and the third marker are cut
//! from those resident pages (Δ 9360-9364 KiB). Which happens turns on a free chunk left by
//! allocations no recording sees (made while CPython swaps in the default raw allocator,
//! the recorder's own) and on the order of frees that follow id() hashes (not the same
//! under pymalloc and malloc): the same script prints 9360 or 10016 KiB for that delta
//! depending only on its environment (9360 from this session's shell and under `cargo test`, 10016
//! under `env -i PATH HOME PYENV_ROOT LC_ALL=C` with or without a padding variable), the
//! recording process under PYTHONMALLOC=malloc flips between them as a variable grows, and
//! the model replaying each malloc-mode recording gives its own recording process's figure
//! in 5 of 7 runs. Replaying a pymalloc recording the model says 10024-10028 in every
//! environment tried. The gap (656 KiB) is wider than the tolerance, so no replay of one
//! recording can hold both; at N = 2,000,000 it is under 3 % and held.
//!
//! pymalloc's last phase at N = 2,000,000: after the
//! free-all, what stays resident is the one or two arenas some leftover block keeps (the
//! float free list's 100 floats, objects made while printing); which ones, and how many of
//! their pages were written, turns on where the kernel put each arena (one on a 16 KiB
//! boundary holds 64 pools, else 63) and on start-up allocations no recording sees, so a
//! plain `python3` and the recording process differ: measured 1048 or 2140 KiB for that
//! delta in plain runs that differ only in their environment, and 1404 or 1868 in the
//! recording process itself (two recordings), while the model says 1400-1404 replaying
//! either. The recording process's own deltas (it prints them while recorded) are
//! printed beside the others but not held: they vary between runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

const PYALLOC: &str = env!("CARGO_BIN_EXE_pyalloc");
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/workloads/survivors.py"
);
const MARKERS: [&str; 4] = ["700001", "700101", "700201", "700301"];
/// The models, each with the real run it is held to (`true`: PYTHONMALLOC=malloc).
const MODELS: [(&str, bool); 2] = [("cpython-3.11/glibc-2.36", false), ("glibc-2.36", true)];

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

/// The stdout (VmRSS lines) of a plain run.
fn real_run(n: &str, malloc: bool) -> Vec<u8> {
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
    out.stdout
}

/// The number cells of `compare --svg`'s real-vs-predicted table: (class, model, phase) →
/// the KiB drawn.
fn svg_cells(svg: &str) -> HashMap<(String, String, usize), i64> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let k = format!("{name}=\"");
        let at = tag.find(&k)? + k.len();
        Some(tag[at..at + tag[at..].find('"')?].to_string())
    };
    let mut out = HashMap::new();
    for piece in svg.split("<text ").skip(1) {
        let (tag, rest) = piece.split_once('>').unwrap();
        let (Some(class), Some(model), Some(phase)) = (
            attr(tag, "class"),
            attr(tag, "data-model"),
            attr(tag, "data-phase"),
        ) else {
            continue;
        };
        let text = &rest[..rest.find('<').unwrap()];
        out.insert(
            (class, model, phase.parse().unwrap()),
            text.parse()
                .unwrap_or_else(|_| panic!("{text:?} is not a number")),
        );
    }
    out
}

/// Records the script for `n` floats, runs it plainly under pymalloc and under
/// PYTHONMALLOC=malloc, and replays the recording through both models with `compare
/// --real-rss` (each model held to its real run) and `--svg`: per model, the resident
/// bytes (KiB) predicted at the four markers and the real VmRSS; the recording process's
/// own VmRSS. Checks on the way that the JSON's added fields and the SVG's table show the
/// deltas and errors computed here from the markers' `resident` and the real lines.
fn recorded(n: &str) -> (Vec<(Vec<i64>, Vec<i64>)>, Vec<i64>) {
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
    let mut reals = Vec::new();
    for (model, malloc) in MODELS {
        let f = dir.join(format!("{}.rss", model.replace('/', "_")));
        std::fs::write(&f, real_run(n, malloc)).unwrap();
        reals.push((model, f));
    }
    let svg = dir.join("survivors.svg");
    let mut args = vec![
        "compare".to_string(),
        trace.to_string_lossy().into_owned(),
        "--models".into(),
        MODELS.map(|m| m.0).join(","),
        "--json".into(),
        "--svg".into(),
        svg.to_string_lossy().into_owned(),
    ];
    for m in MARKERS {
        args.push("--at-marker".into());
        args.push(m.into());
    }
    for (model, f) in &reals {
        args.push("--real-rss".into());
        args.push(format!("{model}={}", f.display()));
    }
    let out = Command::new(PYALLOC).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drawn = svg_cells(&std::fs::read_to_string(&svg).unwrap());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = v["traces"][0]["models"].as_array().unwrap();
    let mut both = Vec::new();
    for ((m, (model, f)), (name, _)) in models.iter().zip(&reals).zip(MODELS) {
        assert_eq!(m["model"], name);
        let real = phases(&std::fs::read(f).unwrap());
        let rows = m["markers"].as_array().unwrap();
        assert_eq!(rows.len(), 4, "{model}");
        let predicted: Vec<i64> = rows
            .iter()
            .map(|r| r["resident"].as_i64().unwrap())
            .collect();
        for (k, r) in rows.iter().enumerate() {
            let (p, rr) = (predicted[k] - predicted[0], (real[k] - real[0]) * 1024);
            let field = |f: &str| r[f].as_i64().unwrap();
            assert_eq!(
                (
                    field("predicted_delta"),
                    field("real_delta"),
                    field("error")
                ),
                (p, rr, p - rr),
                "{model} phase {k}: the JSON's added fields"
            );
            assert_eq!(field("real_rss"), real[k] * 1024);
            if k > 0 {
                for (class, b) in [("real", rr), ("pred", p), ("err", p - rr)] {
                    assert_eq!(
                        drawn.get(&(class.to_string(), model.to_string(), k)),
                        Some(&(b / 1024)),
                        "{model} phase {k}: the SVG's {class} cell"
                    );
                }
            }
        }
        both.push((predicted.iter().map(|b| b / 1024).collect(), real));
    }
    assert_eq!(
        drawn.len(),
        2 * 3 * 6,
        "6 number cells per model and phase after the first"
    );
    if std::env::var_os("PYALLOC_SURVIVORS_KEEP").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    (both, phases(&rec.stdout))
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
    let (both, recording) = recorded(n);
    let ((pym, pym_real), (glibc, glibc_real)) = (&both[0], &both[1]);
    hold(
        &format!("N={n} cpython-3.11/glibc-2.36 vs the recording process"),
        pym,
        &recording,
        1..1,
    );
    hold(
        &format!("N={n} cpython-3.11/glibc-2.36 vs python3"),
        pym,
        pym_real,
        1..pymalloc_last,
    );
    hold(
        &format!("N={n} glibc-2.36 vs PYTHONMALLOC=malloc python3"),
        glibc,
        glibc_real,
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

/// `--real-rss` against a shipped recording (three requests of 1016 bytes: three phases):
/// a file with too few lines, a line without a number, an unknown model and two traces
/// each give one line and a non-zero exit; a good file prints the section.
#[test]
fn real_rss_takes_one_line_per_marker_row_and_names_what_is_wrong() {
    let trace = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/traces/cpython-3.11.7-linux-x86_64/startup_only.trace.gz"
    );
    let dir = std::env::temp_dir().join(format!("pyalloc-real-rss-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |real: &str, extra: &[&str]| {
        let f = dir.join("real.rss");
        std::fs::write(&f, real).unwrap();
        let mut cmd = Command::new(PYALLOC);
        cmd.args(["compare", trace, "--models", "glibc-2.36"]);
        cmd.args(["--at-marker", "1016", "--real-rss"]);
        cmd.arg(format!("glibc-2.36={}", f.display()));
        cmd.args(extra);
        cmd.output().unwrap()
    };
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let o = run("a 100\nb 200\n", &[]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("2 VmRSS lines") && err(&o).contains("3 marker rows"),
        "{}",
        err(&o)
    );
    let o = run("a 100\nb lots\nc 300\n", &[]);
    assert!(
        !o.status.success() && err(&o).contains("line 2"),
        "{}",
        err(&o)
    );
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    let o = run("a 100\nb 200\nc 300\n", &[trace]);
    assert!(
        !o.status.success() && err(&o).contains("2 traces"),
        "{}",
        err(&o)
    );
    let o = run("a 100\nb 200\nc 300\n", &["--json"]);
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["traces"][0]["models"][0]["markers"].as_array().unwrap();
    let r0 = rows[0]["resident"].as_i64().unwrap();
    for (k, r) in rows.iter().enumerate() {
        let p = r["resident"].as_i64().unwrap() - r0;
        assert_eq!(r["predicted_delta"].as_i64(), Some(p));
        assert_eq!(r["real_delta"].as_i64(), Some(100 * 1024 * k as i64));
        assert_eq!(r["error"].as_i64(), Some(p - 100 * 1024 * k as i64));
    }
    let mut cmd = Command::new(PYALLOC);
    cmd.args([
        "compare",
        trace,
        "--models",
        "glibc-2.36",
        "--real-rss",
        "cpython-3.11=x",
    ]);
    let o = cmd.output().unwrap();
    assert!(
        !o.status.success() && err(&o).contains("not one of --models"),
        "{}",
        err(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
