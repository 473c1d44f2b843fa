//! `pyalloc compare` on the shipped CPython 3.11 recordings: the JSON contract, the
//! footprint's own invariants, the marker rows, and what-if errors (exit 2).

mod common;

use std::process::Command;

const PYALLOC: &str = env!("CARGO_BIN_EXE_pyalloc");
const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared");

fn trace(name: &str) -> String {
    format!("{SHARED}/traces/cpython-3.11.7-linux-x86_64/{name}")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(PYALLOC).args(args).output().unwrap()
}

#[test]
fn json_follows_the_contract_and_the_footprints_their_invariants() {
    let t = trace("startup_only.trace.gz");
    let out = run(&[
        "compare",
        &t,
        "--models",
        "cpython-3.11,cpython-3.11/glibc-2.36,glibc-2.36,cpython-3.11:pool=64KiB,arena=4MiB/glibc-2.36",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let traces = v["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0]["trace"], t.as_str());
    // the event count is the recording's own (its summary counts every line kind)
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trace("startup_only.summary.json")).unwrap())
            .unwrap();
    let events = traces[0]["events"].as_u64().unwrap();
    assert_eq!(Some(events), summary["records"].as_u64());
    let models = traces[0]["models"].as_array().unwrap();
    let names: Vec<&str> = models
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "cpython-3.11",
            "cpython-3.11/glibc-2.36",
            "glibc-2.36",
            "cpython-3.11:pool=64KiB,arena=4MiB/glibc-2.36"
        ]
    );
    let keys = [
        "model",
        "peak_live",
        "peak_mapped",
        "peak_resident",
        "final_live",
        "final_mapped",
        "final_resident",
        "fragmentation_at_peak",
        "syscalls",
        "seconds",
        "markers",
        // added fields (the contract's stay as they are)
        "fragmentation_at_end",
        "waste_at_peak",
        "waste_at_end",
    ];
    for m in models {
        let obj = m.as_object().unwrap();
        let mut got: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
        let mut want = keys.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let mut sys: Vec<&str> = m["syscalls"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        sys.sort();
        assert_eq!(sys, ["brk", "mmap", "munmap"]);
        let u = |k: &str| m[k].as_u64().unwrap();
        assert!(u("peak_live") >= u("final_live"));
        assert!(u("peak_mapped") >= u("final_mapped"));
        assert!(u("peak_resident") >= u("final_resident"));
        // nothing is resident that is not mapped
        assert!(u("final_resident") <= u("final_mapped"));
        assert!(u("peak_resident") <= u("peak_mapped"));
        // waste by cause: the parts and live add up to what was mapped at that moment,
        // the end's moment being the run's end
        for (k, w) in [
            ("waste_at_peak", &m["waste_at_peak"]),
            ("waste_at_end", &m["waste_at_end"]),
        ] {
            let w = w.as_object().unwrap_or_else(|| panic!("{k}"));
            let f = |n: &str| w[n].as_u64().unwrap_or_else(|| panic!("{k}.{n}"));
            let internal = f("rounding") + f("headers") + f("alignment");
            let external =
                f("free_blocks") + f("empty_pools") + f("free_arenas") + f("free_chunks");
            assert_eq!((f("internal"), f("external")), (internal, external), "{k}");
            assert_eq!(
                f("live") - f("outside") + internal + external + f("metadata") + f("other_maps"),
                f("mapped"),
                "{} {k}",
                m["model"]
            );
        }
        assert_eq!(m["waste_at_end"]["mapped"], m["final_mapped"]);
        assert_eq!(m["waste_at_end"]["live"], m["final_live"]);
        assert_eq!(m["waste_at_end"]["event"], traces[0]["events"]);
        assert_eq!(m["waste_at_peak"]["live"], m["peak_live"]);
    }
    // the program's live bytes are the same whatever the model
    assert!(models
        .windows(2)
        .all(|w| w[0]["peak_live"] == w[1]["peak_live"]));
    // pymalloc over glibc maps its arenas (mmap) and grows the heap (brk); glibc alone
    // never maps an arena
    assert!(models[1]["syscalls"]["brk"].as_u64().unwrap() > 0);
    assert!(
        models[1]["syscalls"]["mmap"].as_u64().unwrap()
            > models[2]["syscalls"]["mmap"].as_u64().unwrap()
    );
    // 4 MiB arenas: fewer mappings than 1 MiB ones
    assert!(
        models[3]["syscalls"]["mmap"].as_u64().unwrap()
            < models[1]["syscalls"]["mmap"].as_u64().unwrap()
    );
}

/// `waste_at_peak` is the waste right after the event at which live first reached its
/// peak: a second replay of the same trace stopped after that event ends there, and its
/// `waste_at_end` (taken by the end-of-run walk, not the peak's) is the same moment; one
/// event earlier, live had not reached the peak yet.
#[test]
fn waste_at_peak_is_the_waste_where_a_replay_stopped_at_the_peak_ends() {
    use pyalloc::compare::{compare, parse_models, CompareOptions};
    let names: Vec<String> = [
        "cpython-3.11",
        "cpython-3.11/glibc-2.36",
        "glibc-2.36",
        "mimalloc-2.1.2",
        "cpython-3.11:pool=64KiB,arena=4MiB",
    ]
    .map(String::from)
    .to_vec();
    let models = parse_models(&names).unwrap();
    for t in ["startup_only.trace.gz", "ints.trace.gz"] {
        let path = vec![trace(t)];
        let run = |until| {
            let opts = CompareOptions {
                until,
                ..CompareOptions::default()
            };
            compare(&path, &models, &opts).unwrap().remove(0)
        };
        let whole = run(None);
        for (i, m) in whole.models.iter().enumerate() {
            let peak = m.waste_at_peak.unwrap();
            assert_eq!(peak.live, m.peak_live, "{t} {}", m.model);
            let stopped = run(Some(peak.event));
            assert_eq!(stopped.events, peak.event);
            let s = &stopped.models[i];
            assert_eq!(s.model, m.model);
            assert_eq!(s.final_live, m.peak_live, "{t} {}", m.model);
            assert_eq!(
                s.waste_at_end,
                Some(peak),
                "{t} {}: the walks differ",
                m.model
            );
            assert_eq!(s.waste_at_peak, Some(peak), "{t} {}", m.model);
            let before = run(Some(peak.event - 1));
            assert!(
                before.models[i].peak_live < m.peak_live,
                "{t} {}: live reached its peak before event {}",
                m.model,
                peak.event
            );
        }
    }
}

#[test]
fn a_marker_row_comes_at_each_request_of_its_size() {
    // ints.py makes a top-level request of 777778 bytes (README of the recordings)
    let t = trace("ints.trace.gz");
    let out = run(&[
        "compare",
        &t,
        "--models",
        "cpython-3.11/glibc-2.36,glibc-2.36",
        "--json",
        "--at-marker",
        "777778",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // the marker's event, found independently by reading the trace
    let mut r = pyalloc::trace::open::open(std::path::Path::new(&t)).unwrap();
    let mut want = Vec::new();
    let mut n = 0u64;
    while let Some(e) = r.next_event().unwrap() {
        use pyalloc::trace::{Domain, EventKind};
        let size = match e.kind {
            EventKind::Malloc { domain, size, .. } | EventKind::Realloc { domain, size, .. }
                if domain != Domain::RawNested =>
            {
                size
            }
            EventKind::Calloc {
                domain,
                nelem,
                elsize,
                ..
            } if domain != Domain::RawNested => nelem * elsize,
            _ => 0,
        };
        if size == 777778 {
            want.push(n);
        }
        n += 1;
    }
    assert!(!want.is_empty());
    for m in v["traces"][0]["models"].as_array().unwrap() {
        let rows = m["markers"].as_array().unwrap();
        let got: Vec<u64> = rows.iter().map(|r| r["event"].as_u64().unwrap()).collect();
        assert_eq!(got, want);
        for r in rows {
            assert_eq!(r["size"], 777778);
            // the marker itself is live, mapped and written
            assert!(r["live"].as_u64().unwrap() >= 777778);
            assert!(r["resident"].as_u64().unwrap() >= 777778);
        }
    }
}

#[test]
fn what_if_errors_exit_2_and_say_which_rule() {
    let t = trace("startup_only.trace.gz");
    for (model, says) in [
        ("cpython-3.11:pool=2MiB", "larger than an arena"),
        ("cpython-3.11:arena=3MiB", "not a power of two"),
        ("cpython-3.11:colour=blue", "unknown key"),
        ("jemalloc-5", "no model"),
    ] {
        let out = run(&["compare", &t, "--models", model]);
        assert_eq!(out.status.code(), Some(2), "{model}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{model}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn svg_and_html_are_written_whole() {
    let t = trace("startup_only.trace.gz");
    let dir = std::env::temp_dir().join(format!("pyalloc-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (svg, html) = (dir.join("c.svg"), dir.join("c.html"));
    let out = run(&[
        "compare",
        &t,
        "--models",
        "cpython-3.11/glibc-2.36,glibc-2.36",
        "--csv",
        "--svg",
        svg.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(csv.lines().filter(|l| l.contains(",summary,")).count(), 2);
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.trim_end().ends_with("</svg>"));
    assert_eq!(
        s.matches("<path").count(),
        3,
        "two models and the live line"
    );
    let h = std::fs::read_to_string(&html).unwrap();
    assert!(h.contains("<table>") && h.contains("<svg") && h.trim_end().ends_with("</html>"));
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "no temporary file left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every command reads model names through one parser: a bad name is the same sentence and
/// exit 2 in `replay`, `check`, `stats` and `compare`; a whole process `compare` refuses,
/// `replay` refuses with the same sentence; a stack or a what-if `compare` runs, `replay`
/// runs too (and `check` refuses a what-if: no recording holds it).
#[test]
fn every_command_reads_model_names_alike() {
    let t = trace("startup_only.trace.gz");
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    for bad in [
        "cpython-3.11:colour=blue",
        "cpython-3.11:pool=3KiB",
        "jemalloc-5",
    ] {
        let compared = run(&["compare", &t, "--models", bad]);
        assert_eq!(compared.status.code(), Some(2), "{bad}");
        for cmd in [
            vec!["replay", &t, "--model", bad],
            vec!["check", &t, "--model", bad],
            vec!["stats", &t, "--model", bad, "--at", "10"],
        ] {
            let out = run(&cmd);
            assert_eq!(out.status.code(), Some(2), "{cmd:?}");
            assert_eq!(stderr(&out), stderr(&compared), "{cmd:?}");
        }
    }
    let upside_down = "glibc-2.36/cpython-3.11";
    let compared = run(&["compare", &t, "--models", upside_down]);
    assert_eq!(compared.status.code(), Some(2));
    let replayed = run(&["replay", &t, "--model", upside_down]);
    assert!(!replayed.status.success());
    assert_eq!(stderr(&replayed), stderr(&compared));
    assert!(
        stderr(&compared).contains("whole process"),
        "{}",
        stderr(&compared)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(trace("startup_only.summary.json")).unwrap())
            .unwrap();
    for good in [
        "cpython-3.11/glibc-2.36",
        "cpython-3.11:pool=64KiB,arena=4MiB",
    ] {
        let out = run(&["replay", &t, "--model", good, "--json"]);
        assert!(out.status.success(), "{good}: {}", stderr(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["model"], good);
        assert_eq!(r["events"], summary["records"]);
        let compared = run(&["compare", &t, "--models", good, "--json"]);
        assert!(compared.status.success(), "{good}: {}", stderr(&compared));
    }
    let checked = run(&["check", &t, "--model", "cpython-3.11:pool=64KiB"]);
    assert!(!checked.status.success());
    assert!(stderr(&checked).contains("what-if"), "{}", stderr(&checked));
}

/// `--csv` with `--real-rss`: the five real columns at the end of each marker row hold the
/// `--json` figures of that row (read back by column name), empty on the rows of a model
/// not held and on the other rows; the figures are the arithmetic of the VmRSS file and
/// the model's residents; the JSON with `--real-rss` is the JSON without it plus those
/// five fields only.
#[test]
fn csv_carries_the_real_figures_the_json_gives() {
    let dir = std::env::temp_dir().join(format!("pyalloc-compare-csv-{}", std::process::id()));
    let held = common::held_run(&dir);
    let mut args: Vec<&str> = held.args.iter().map(String::as_str).collect();
    args.push("--csv");
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    const REAL: [&str; 5] = [
        "real_rss",
        "real_delta",
        "predicted_delta",
        "error",
        "tolerance",
    ];
    assert_eq!(header[header.len() - 5..], REAL, "added at the end");
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let models = held.json["traces"][0]["models"].as_array().unwrap();
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for line in lines {
        // the trace path has no comma: plain splitting reads every field
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), header.len(), "{line}");
        let model = f[col("model")];
        if f[col("row")] != "marker" {
            assert!(REAL.iter().all(|c| f[col(c)].is_empty()), "{line}");
            continue;
        }
        let k = seen.entry(model.to_string()).or_default();
        let m = models.iter().find(|m| m["model"] == model).unwrap();
        let row = &m["markers"][*k];
        *k += 1;
        for c in ["size", "event", "live", "mapped", "resident"] {
            assert_eq!(f[col(c)], row[c].to_string(), "{c}: {line}");
        }
        for c in REAL {
            let want = if model == "glibc-2.36" {
                row[c].to_string()
            } else {
                assert!(row.get(c).is_none(), "{model} is not held");
                String::new()
            };
            assert_eq!(f[col(c)], want, "{c}: {line}");
        }
    }
    // the JSON's figures: the VmRSS file's and the model's arithmetic
    let rows = models[1]["markers"].as_array().unwrap();
    assert_eq!(seen["glibc-2.36"], rows.len());
    assert_eq!(rows.len(), held.real_kib.len());
    let r0 = rows[0]["resident"].as_i64().unwrap();
    let mut within = Vec::new();
    for (k, r) in rows.iter().enumerate() {
        let g = |c: &str| r[c].as_i64().unwrap();
        let real_delta = (held.real_kib[k] - held.real_kib[0]) * 1024;
        let predicted = g("resident") - r0;
        assert_eq!(g("real_rss"), held.real_kib[k] * 1024);
        assert_eq!(
            (g("real_delta"), g("predicted_delta"), g("error")),
            (real_delta, predicted, predicted - real_delta)
        );
        assert_eq!(g("tolerance"), (real_delta.abs() * 3 / 100).max(512 * 1024));
        within.push(g("error").abs() <= g("tolerance"));
    }
    assert_eq!(
        within.iter().filter(|w| !**w).count(),
        1,
        "only the shifted phase is out: {within:?}"
    );
    let mut stripped = held.json.clone();
    for r in stripped["traces"][0]["models"][1]["markers"]
        .as_array_mut()
        .unwrap()
    {
        for c in REAL {
            r.as_object_mut().unwrap().remove(c);
        }
    }
    let (mut a, mut b) = (stripped, held.plain.clone());
    for v in [&mut a, &mut b] {
        for m in v["traces"][0]["models"].as_array_mut().unwrap() {
            m["seconds"] = 0.into(); // the one field that is a measurement
        }
    }
    assert_eq!(a, b, "--real-rss adds fields only");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model's refusal deep in a trace (batches after the first, comment and blank lines
/// before it) names the event and the line it came from, both counted in the text written.
#[test]
fn a_refusal_late_in_a_trace_names_its_event_and_line() {
    let mut text = String::from(
        "# pymalloc allocation trace recorded from REAL CPython\n# interpreter: CPython 3.11.7\n",
    );
    let mut events = 0u64;
    for i in 0..30_000u64 {
        if i % 997 == 0 {
            text.push_str("# a comment\n\n");
        }
        let a = 0x7f00_0000_0000u64 + 64 * (i % 50);
        text.push_str(&format!("m O 40 {a:x}\nf O {a:x}\n"));
        events += 2;
    }
    text.push_str("# the refused request follows\n");
    let line = text.lines().count() as u64 + 1;
    text.push_str("m O 18446744073709551000 7f0000001000\n");
    let dir = std::env::temp_dir().join(format!("pyalloc-refusal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("late.trace");
    std::fs::write(&path, &text).unwrap();
    let out = run(&[
        "compare",
        path.to_str().unwrap(),
        "--models",
        "cpython-3.11,glibc-2.36",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("event {events} (line {line})")),
        "event {events}, line {line}: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
