//! The glibc model held to the recorded processes in shared/traces/glibc-2.36-linux-x86_64/:
//! one test per recording, replayed call by call from the first one.

mod common;
use pyalloc::check::glibc::replay;
use pyalloc::check::{check_file, CheckOptions};
use pyalloc::replay::model::recorded_bounds;
use pyalloc::trace::glibc::GlibcTraceReader;
use pyalloc::trace::{EventKind, EventReader};
use pyalloc::Addr;
use std::path::PathBuf;

fn trace(name: &str) -> PathBuf {
    common::trace(&format!("glibc-2.36-linux-x86_64/{name}"))
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

/// Writes a small glibc trace (header + lines) to a temporary file.
fn temp_trace(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pyalloc-glibc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let text = format!(
        "# glibc malloc-family call trace: {name}\n# brk_at_first_call 0x555555674000\n\
         # maps_at_first_call 7ffff781e000-7ffff7844000 r--p 00000000 fe:00 1 libc.so.6\n\
         # end-of-header\n{body}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_heap_is_bounded_by_the_headers_brk_and_lowest_mapping_above_it() {
    let path = temp_trace("bounds", "m 24 0x5555556742a0\n");
    let mut r = GlibcTraceReader::open(&path).unwrap();
    r.next_event().unwrap(); // the header is whole once the first event is read
    let h = r.header();
    let brk = Addr::parse_hex(h.get("brk_at_first_call").unwrap()).unwrap();
    let lowest_map = h.lines.iter().find_map(|l| {
        let range = l.strip_prefix("maps_at_first_call ")?;
        Addr::parse_hex(range.split('-').next()?)
    });
    assert_eq!(recorded_bounds(h), Some((brk, lowest_map.unwrap())));
    assert!(brk < lowest_map.unwrap());
}

/// The model's diagnosis of a bad trace, as `check` reports it.
fn refusal(name: &str, body: &str) -> String {
    match check_file(&temp_trace(name, body), &CheckOptions::default()) {
        Err(e) => e.to_string(),
        Ok(r) => panic!("{name}: accepted ({r:?})"),
    }
}

#[test]
fn bad_input_gets_glibcs_own_diagnosis_with_the_event_number() {
    // first user pointer = brk + 0x2a0 (after the 0x290-byte tcache_perthread_struct)
    let e = refusal(
        "tcache2",
        "m 24 0x5555556742a0\nf 0x5555556742a0\nf 0x5555556742a0\n",
    );
    assert!(e.starts_with("event 2 (line 7):"), "{e}");
    assert!(
        e.contains("free(): double free detected in tcache 2"),
        "{e}"
    );

    // seven frees fill the tcache bin, the eighth goes to the fastbin: free it again
    let mut body = String::new();
    let ptrs: Vec<u64> = (0..8).map(|k| 0x5555556742a0 + 0x20 * k).collect();
    for p in &ptrs {
        body += &format!("m 24 {p:#x}\n");
    }
    for p in &ptrs {
        body += &format!("f {p:#x}\n");
    }
    body += &format!("f {:#x}\n", ptrs[7]);
    let e = refusal("fasttop", &body);
    assert!(e.starts_with("event 16 (line 21):"), "{e}");
    assert!(e.contains("double free or corruption (fasttop)"), "{e}");

    let e = refusal("invalid", "m 24 0x5555556742a0\nf 0x5555556742a8\n");
    assert!(e.contains("free(): invalid pointer"), "{e}");
    let e = refusal(
        "realloc",
        "m 24 0x5555556742a0\nf 0x5555556742a0\nr 0x5555556742a0 100 0x5555556742c0\n",
    );
    assert!(e.contains("realloc(): invalid pointer"), "{e}");

    // beyond PTRDIFF_MAX: glibc returns NULL (ENOMEM); a recording that says otherwise
    // is refused with the size
    let huge = "m 9223372036854775808 0x0\nm 24 0x5555556742a0\n";
    let r = check_file(&temp_trace("huge-null", huge), &CheckOptions::default()).unwrap();
    assert!(r.ok() && r.checked == 1, "{r:?}");
    let e = refusal("huge", "m 9223372036854775808 0x5555556742a0\n");
    assert!(
        e.contains("9223372036854775808") && e.contains("too large"),
        "{e}"
    );

    let e = refusal("malformed", "m 24 0x5555556742a0\nm 24\n");
    assert!(e.contains(":6:") && e.contains("\"m 24\""), "{e}");
}

#[test]
fn cli_check_exit_status_and_one_line_error() {
    let exe = env!("CARGO_BIN_EXE_pyalloc");
    let ok = std::process::Command::new(exe)
        .args(["check", "--json"])
        .arg(trace("python27_so_loop.trace.gz"))
        .output()
        .unwrap();
    assert!(ok.status.success());
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["matched"], v["checked"]);
    assert!(v["first_divergence"].is_null());

    let bad = temp_trace(
        "cli-bad",
        "m 24 0x5555556742a0\nf 0x5555556742a0\nf 0x5555556742a0\n",
    );
    let out = std::process::Command::new(exe)
        .args(["check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("pyalloc: event 2 (line 7):"), "{err}");

    // a divergence (not an error): exit non-zero, report printed
    let off = temp_trace("cli-diverge", "m 24 0x5555556742b0\n");
    let out = std::process::Command::new(exe)
        .args(["check", "--json"])
        .arg(&off)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["first_divergence"]["expected"], "0x5555556742b0");
    assert_eq!(v["first_divergence"]["got"], "0x5555556742a0");
}
