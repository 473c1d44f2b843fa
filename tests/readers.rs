//! Every trace reader end to end: the shipped recordings, a real glibc mtrace log made here,
//! conversion to binary and back, and bad input of every kind through the CLI.

mod common;
use pyalloc::replay::{model_by_name, replay, ReplayOptions, MODEL_NAMES};
use pyalloc::trace::binary::BinaryReader;
use pyalloc::trace::open::{open, sniff_path};
use pyalloc::trace::Format;
use pyalloc::trace::{Event, EventReader, TraceError};
use std::path::{Path, PathBuf};
use std::process::Command;

const PYALLOC: &str = env!("CARGO_BIN_EXE_pyalloc");

fn shared(rel: &str) -> PathBuf {
    common::trace(rel)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pyalloc-readers-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn events(r: &mut dyn EventReader) -> Vec<Event> {
    let mut v = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        v.push(e);
    }
    v
}

fn pyalloc(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(PYALLOC).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The counts a replay reports equal the recording's own summary, kind by kind.
#[test]
fn replay_counts_every_event_kind_as_the_recordings_summaries_do() {
    for name in ["startup_only", "seed_py3", "ints", "compile_big"] {
        let trace = shared(&format!("cpython-3.11.7-linux-x86_64/{name}.trace.gz"));
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(shared(&format!(
                "cpython-3.11.7-linux-x86_64/{name}.summary.json"
            )))
            .unwrap(),
        )
        .unwrap();
        let (ok, out, err) = pyalloc(&[
            "replay",
            trace.to_str().unwrap(),
            "--model",
            "null",
            "--json",
        ]);
        assert!(ok, "{name}: {err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["events"], summary["records"], "{name}");
        assert_eq!(r["counts"], summary["counts"], "{name}");
        assert_eq!(r["other_lines"], 0, "{name}");
        let sum = ["replayed", "context", "failed", "free_null"]
            .iter()
            .map(|k| r[k].as_u64().unwrap())
            .sum::<u64>();
        assert_eq!(sum, r["events"].as_u64().unwrap(), "{name}");
        // pinned to the recording, pymalloc predicts every small address and ends with
        // the arenas the recording mapped and did not unmap
        let (ok, out, err) = pyalloc(&[
            "replay",
            trace.to_str().unwrap(),
            "--model",
            "cpython-3.11",
            "--json",
        ]);
        assert!(ok, "{name}: {err}");
        let p: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(p["counts"], summary["counts"], "{name}");
        assert!(p["checked"].as_u64().unwrap() > 0);
        assert_eq!(p["matched"], p["checked"], "{name}");
        let arenas = |k: &str| summary["counts"][k].as_u64().unwrap_or(0);
        assert_eq!(
            p["model_arenas"].as_u64().unwrap(),
            arenas("A") - arenas("F"),
            "{name}"
        );
    }
}

/// text -> binary -> text gives the same events, header and the same bytes.
#[test]
fn a_shipped_trace_round_trips_through_binary_event_by_event() {
    let d = scratch("roundtrip");
    for rel in [
        "cpython-3.11.7-linux-x86_64/seed_py3.trace.gz",
        "cpython-2.7.18-linux-x86_64/seed.trace.gz",
        "glibc-2.36-linux-x86_64/synthetic.trace.gz",
    ] {
        let src = shared(rel);
        let bin = d.join("t.bin");
        let back = d.join("t.txt");
        let (ok, _, err) = pyalloc(&["convert", src.to_str().unwrap(), bin.to_str().unwrap()]);
        assert!(ok, "{err}");
        assert_eq!(sniff_path(&bin).unwrap(), Format::Binary);
        let (ok, _, err) = pyalloc(&["convert", bin.to_str().unwrap(), back.to_str().unwrap()]);
        assert!(ok, "{err}");
        let mut a = open(&src).unwrap();
        let mut b = BinaryReader::open(&bin).unwrap();
        let mut c = open(&back).unwrap();
        let (ea, eb, ec) = (events(a.as_mut()), events(&mut b), events(c.as_mut()));
        assert!(!ea.is_empty());
        assert_eq!(ea, eb, "{rel}: binary differs");
        assert_eq!(ea, ec, "{rel}: text from binary differs");
        assert_eq!(a.header(), b.header());
        assert_eq!(a.header(), c.header());
        if rel.contains("3.11.7") {
            let mut orig = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(std::fs::File::open(&src).unwrap()),
                &mut orig,
            )
            .unwrap();
            assert!(
                orig == std::fs::read_to_string(&back).unwrap(),
                "{rel}: bytes differ"
            );
        }
        // gzip-compressed binary reads the same
        let bingz = d.join("t.bin.gz");
        let (ok, _, err) = pyalloc(&["convert", src.to_str().unwrap(), bingz.to_str().unwrap()]);
        assert!(ok, "{err}");
        assert_eq!(events(open(&bingz).unwrap().as_mut()), ea);
    }
    std::fs::remove_dir_all(&d).ok();
}

/// A log written by glibc's own mtrace (libc_malloc_debug.so) replays through every model.
#[test]
fn a_real_mtrace_log_replays_through_every_model() {
    let Some(debug) = [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
    ]
    .iter()
    .map(|d| Path::new(d).join("libc_malloc_debug.so.0"))
    .find(|p| p.exists()) else {
        panic!("libc_malloc_debug.so.0 not found: glibc >= 2.34 is needed for this test");
    };
    let d = scratch("mtrace");
    let src = d.join("mt.c");
    std::fs::write(
        &src,
        r#"#include <mcheck.h>
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    void *p[200]; int n = 0;
    mtrace();
    for (int i = 0; i < 200; i++) { p[i] = malloc(8 + (i * 37) % 1500); n++; }
    for (int i = 0; i < 200; i += 3) { p[i] = realloc(p[i], 3000 + i); n++; }
    void *c = calloc(20, 50); n++;
    void *big = malloc(300000); n++;
    for (int i = 199; i >= 0; i -= 2) { free(p[i]); n++; }
    for (int i = 0; i < 200; i += 2) { free(p[i]); n++; }
    free(c); free(big); n += 2;
    muntrace();
    printf("%d\n", n);
    return 0;
}
"#,
    )
    .unwrap();
    let exe = d.join("mt");
    let cc = Command::new("cc")
        .arg("-O0")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(cc.success());
    let log = d.join("mt.log");
    let out = Command::new(&exe)
        .env("MALLOC_TRACE", &log)
        .env("LD_PRELOAD", &debug)
        .output()
        .unwrap();
    assert!(out.status.success());
    let calls: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(sniff_path(&log).unwrap(), Format::Mtrace);
    for name in MODEL_NAMES {
        let mut r = open(&log).unwrap();
        let mut m = model_by_name(name).unwrap();
        let rep = replay(r.as_mut(), m.as_mut(), &ReplayOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            rep.events, calls,
            "{name}: one event per call the program made"
        );
        assert_eq!(rep.replayed, calls, "{name}");
        if !name.starts_with("cpython") {
            // (pymalloc's live_blocks also counts its arenas vector and radix nodes)
            assert_eq!(m.stats().live_blocks, 0, "{name}: everything was freed");
        }
        assert_eq!(rep.moved_live, 0, "{name}: everything was freed");
    }
    // A malformed line anywhere is refused with its number and text.
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let k = lines.len() / 2;
    lines[k] = "@ ./mt:[0x1234] + 0xzz 0x10";
    let bad = d.join("bad.log");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let (ok, _, err) = pyalloc(&["replay", bad.to_str().unwrap(), "--model", "bump"]);
    assert!(!ok);
    assert!(err.starts_with("pyalloc: "), "{err}");
    assert!(err.contains(&format!(":{}:", k + 1)), "{err}");
    assert!(err.contains("0xzz"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

fn write_gz(path: &Path, text: &str) {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap();
}

/// Bad input of every kind: one `pyalloc: …` line naming where, and a non-zero exit.
#[test]
fn bad_input_is_refused_with_its_line_offset_or_event() {
    let d = scratch("bad");
    let pm = "# pymalloc allocation trace (test)\nm O 24 7ff000\nf O 7ff000\n";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "a.trace",
            format!("{pm}f Q 7ff000\n"),
            vec![":4:", "f Q 7ff000"],
        ),
        (
            "b.mtrace",
            "= Start\n+ 0x10 0x8\n- 0x10 0x3\n".into(),
            vec![":3:", "- 0x10 0x3"],
        ),
        (
            "c.ltrace",
            "malloc(8) = 0x10\nfree(0x10, 2) = <void>\n".into(),
            vec![":2:", "free(0x10, 2)"],
        ),
        (
            "d.heaptrack",
            "v 10100 3\n+ 8 1 10\n- 10 20\n".into(),
            vec![":3:", "- 10 20"],
        ),
        (
            "e.trace",
            format!("{pm}f O 7ff000\n"),
            vec!["event 2 (line 4)", "never allocated"],
        ),
        (
            "f.mtrace",
            "= Start\n+ 0x10 0x8\n- 0x20\n".into(),
            vec!["event 1 (line 3)", "0x20"],
        ),
    ];
    for (name, text, want) in &cases {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        let (ok, _, err) = pyalloc(&["replay", p.to_str().unwrap(), "--model", "bump"]);
        assert!(!ok, "{name} accepted");
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        for w in want {
            assert!(err.contains(w), "{name}: {err:?} lacks {w:?}");
        }
    }
    // A gzip cut in half: the offset of decompressed text reached.
    let mut big = String::from("# pymalloc allocation trace (test)\n");
    for i in 0..50_000u64 {
        big.push_str(&format!(
            "m O 24 {:x}\nf O {:x}\n",
            0x7ff000 + 16 * i,
            0x7ff000 + 16 * i
        ));
    }
    let gz = d.join("g.trace.gz");
    write_gz(&gz, &big);
    let bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, err) = pyalloc(&["replay", gz.to_str().unwrap(), "--model", "null"]);
    assert!(!ok);
    assert!(
        err.contains("gzip stream broken after") && err.contains("bytes"),
        "{err}"
    );
    // A binary trace cut short: the byte offset.
    let full = d.join("h.trace");
    std::fs::write(&full, &big).unwrap();
    let bin = d.join("h.bin");
    assert!(pyalloc(&["convert", full.to_str().unwrap(), bin.to_str().unwrap()]).0);
    let bytes = std::fs::read(&bin).unwrap();
    let cut = bytes.len() * 2 / 3;
    std::fs::write(&bin, &bytes[..cut]).unwrap();
    let mut r = BinaryReader::open(&bin).unwrap();
    let err = loop {
        match r.next_event() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("a cut binary trace ended cleanly"),
            Err(e) => break e,
        }
    };
    match err {
        TraceError::Truncated { offset, .. } => {
            assert!(offset <= cut as u64 && offset + 20 >= cut as u64)
        }
        e => panic!("{e}"),
    }
    let (ok, _, err) = pyalloc(&["replay", bin.to_str().unwrap(), "--model", "null"]);
    assert!(!ok && err.contains("truncated at byte"), "{err}");
    // Not a trace at all.
    let junk = d.join("junk.txt");
    std::fs::write(&junk, "hello\nworld\n").unwrap();
    let (ok, _, err) = pyalloc(&["replay", junk.to_str().unwrap()]);
    assert!(!ok && err.contains("unknown trace format"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

/// ltrace and heaptrack files are found by content and replay as workloads.
#[test]
fn ltrace_and_heaptrack_files_replay_as_workloads() {
    let d = scratch("eco");
    let lt = d.join("run.out");
    std::fs::write(
        &lt,
        "__libc_start_main(0x401136, 1, 0x7ffc, 0 <unfinished ...>\nmalloc(24) = 0x602010\n\
         a.out->calloc(4, 8) = 0x602030\n[pid 9] realloc(0x602010, 4000) = 0x602060\n\
         free(0x602030) = <void>\nfree(0x602060) = <void>\n+++ exited (status 0) +++\n",
    )
    .unwrap();
    let ht = d.join("heaptrack.raw");
    std::fs::write(&ht, "v 10100 3\nX ./a.out\nt 401136 0\n+ 18 1 602010\n+ 20 1 602030\n- 602010\n- 602030\nc 64\n").unwrap();
    for (p, fmt, events, other) in [(&lt, "ltrace", 5, 2), (&ht, "heaptrack", 4, 4)] {
        let (ok, out, err) = pyalloc(&[
            "replay",
            p.to_str().unwrap(),
            "--model",
            "glibc-2.36",
            "--json",
        ]);
        assert!(ok, "{err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["format"], fmt);
        assert_eq!(r["events"], events);
        assert_eq!(r["other_lines"], other);
        assert_eq!(r["model_stats"]["live_blocks"], 0);
    }
    std::fs::remove_dir_all(&d).ok();
}

/// `pyalloc generate` writes the same workload as binary and as gzip text; both replay
/// exactly through the model that made them (every address the recorded one).
#[test]
fn a_generated_workload_replays_exactly_in_both_forms() {
    let d = scratch("gen");
    let mut reports = Vec::new();
    for name in ["w.bin", "w.trace.gz"] {
        let p = d.join(name);
        let (ok, _, err) = pyalloc(&[
            "generate",
            "-o",
            p.to_str().unwrap(),
            "--events",
            "30000",
            "--model",
            "cpython-3.11",
            "--max-live",
            "3000",
        ]);
        assert!(ok, "{err}");
        let (ok, out, err) = pyalloc(&[
            "replay",
            p.to_str().unwrap(),
            "--model",
            "cpython-3.11",
            "--json",
        ]);
        assert!(ok, "{err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(r["events"], 30000);
        let frees = ["f O", "f M"]
            .iter()
            .map(|k| r["counts"][k].as_u64().unwrap_or(0))
            .sum::<u64>();
        assert_eq!(
            r["same_address"].as_u64().unwrap() + frees,
            r["replayed"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(r["moved_live"], 0);
        reports.push(r);
    }
    assert_eq!(reports[0]["format"], "binary");
    assert_eq!(reports[1]["format"], "synthetic");
    assert_eq!(reports[0]["counts"], reports[1]["counts"]);
    assert_eq!(reports[0]["model_stats"], reports[1]["model_stats"]);
    std::fs::remove_dir_all(&d).ok();
}

/// Decoding on a second thread gives the same replay as decoding inline, and an error
/// met by the decoding thread (a cut file) still ends the replay with its offset.
#[test]
fn threaded_and_inline_replays_agree() {
    use pyalloc::replay::{replay_named, replay_named_threaded};
    let d = scratch("threaded");
    let src = shared("cpython-3.11.7-linux-x86_64/seed_py3.trace.gz");
    let bin = d.join("s.bin");
    assert!(pyalloc(&["convert", src.to_str().unwrap(), bin.to_str().unwrap()]).0);
    for model in ["cpython-3.11", "glibc-2.36"] {
        let mut a = BinaryReader::open(&bin).unwrap();
        let ra = replay_named(&mut a, model, &ReplayOptions::default()).unwrap();
        let mut b = BinaryReader::open(&bin).unwrap();
        let rb = replay_named_threaded(&mut b, model, &ReplayOptions::default()).unwrap();
        assert_eq!(ra.events, rb.events, "{model}");
        assert_eq!(ra.counts, rb.counts, "{model}");
        assert_eq!(ra.model_stats, rb.model_stats, "{model}");
        assert_eq!(
            (ra.checked, ra.matched),
            (rb.checked, rb.matched),
            "{model}"
        );
        assert_eq!(ra.same_address, rb.same_address, "{model}");
    }
    let bytes = std::fs::read(&bin).unwrap();
    std::fs::write(&bin, &bytes[..bytes.len() / 2]).unwrap();
    let mut c = BinaryReader::open(&bin).unwrap();
    let err = replay_named_threaded(&mut c, "cpython-3.11", &ReplayOptions::default()).unwrap_err();
    assert!(err.to_string().contains("truncated at byte"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}
