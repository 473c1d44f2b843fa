//! The pymalloc model held to the real CPython recordings: one test per 3.11.7 trace
//! (every small address and every arena map/unmap), CPython's own `_debugmallocstats()`
//! at the ints.py markers, the 2.7.18 string layout, and bad input. (The 2.7.18 complete
//! traces are checked through `check_file` in tests/recordings_py27.rs: free lists and
//! pymalloc in one replay.)

mod common;
use flate2::{write::GzEncoder, Compression};
use pyalloc::check::{check_file, CheckOptions};
use pyalloc::pymalloc::{Pymalloc, PymallocParams};
use pyalloc::replay::ReplayError;
use pyalloc::report::{stats_at, StatsAt};
use pyalloc::sysmalloc::Bump;
use pyalloc::trace::pymalloc3::Pymalloc3Reader;
use pyalloc::trace::{EventKind, EventReader, TraceError};
use pyalloc::{Addr, Allocator, Platform};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn trace(name: &str) -> PathBuf {
    common::trace(&format!("cpython-3.11.7-linux-x86_64/{name}"))
}

/// Arena maps + unmaps in a trace, counted by reading it.
fn arena_lines(path: &Path) -> u64 {
    let mut r = Pymalloc3Reader::open(path).unwrap();
    let mut n = 0;
    while let Some(e) = r.next_event().unwrap() {
        if matches!(
            e.kind,
            EventKind::ArenaAlloc { .. } | EventKind::ArenaFree { .. }
        ) {
            n += 1;
        }
    }
    n
}

fn check_exact(name: &str) {
    let path = trace(name);
    let r = check_file(&path, &CheckOptions::default()).unwrap();
    assert!(
        r.first_divergence.is_none(),
        "{name}: {:?}",
        r.first_divergence
    );
    assert!(r.checked > 0);
    assert_eq!(r.matched, r.checked, "{name}");
    assert_eq!(
        r.arena_events,
        arena_lines(&path),
        "{name}: every A/F line at its event"
    );
    assert!(r.ok());
}

#[test]
fn startup_only_every_small_address_matches() {
    check_exact("startup_only.trace.gz");
}

#[test]
fn seed_py3_every_small_address_matches() {
    check_exact("seed_py3.trace.gz");
}

#[test]
fn ints_every_small_address_matches() {
    check_exact("ints.trace.gz");
}

#[test]
fn compile_big_every_small_address_matches() {
    check_exact("compile_big.trace.gz");
}

/// The `=== recorder: …` sections of ints.debugmallocstats.recorder.txt: (0-based event,
/// request size, the stats text between the header and `=== recorder: end of stats ===`).
fn recorder_sections() -> Vec<(u64, u64, String)> {
    let text = std::fs::read_to_string(trace("ints.debugmallocstats.recorder.txt")).unwrap();
    let mut out = Vec::new();
    let mut cur: Option<(u64, u64, String)> = None;
    for line in text.lines() {
        if line.starts_with("=== recorder: _PyObject_DebugMallocStats()") {
            let num_after = |key: &str| -> u64 {
                let rest = &line[line.find(key).unwrap() + key.len()..];
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            cur = Some((
                num_after("(0-based"),
                num_after("request of"),
                String::new(),
            ));
        } else if line.starts_with("=== recorder: end of stats") {
            out.extend(cur.take());
        } else if let Some((_, _, s)) = &mut cur {
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

#[test]
fn stats_at_the_ints_markers_are_cpythons_own_line_for_line() {
    let sections = recorder_sections();
    assert_eq!(sections.len(), 2);
    for (event, size, expected) in sections {
        let (at, got) = stats_at(
            &trace("ints.trace.gz"),
            &CheckOptions::default(),
            StatsAt::Marker(size),
        )
        .unwrap();
        assert_eq!(
            at, event,
            "the marker of {size} bytes is the recorder's event"
        );
        let (e, g): (Vec<_>, Vec<_>) = (expected.lines().collect(), got.lines().collect());
        assert_eq!(g.len(), e.len(), "same number of lines");
        for (k, (a, b)) in e.iter().zip(&g).enumerate() {
            assert_eq!(b, a, "line {k} of the stats at event {event}");
        }
        let (_, by_index) = stats_at(
            &trace("ints.trace.gz"),
            &CheckOptions::default(),
            StatsAt::Event(event),
        )
        .unwrap();
        assert_eq!(by_index, got, "--at EVENT and --at-marker agree");
    }
}

/// One row of pymalloc_strings.txt: n, request, class, k, id.
type Row = (u64, u64, u64, u64, u64);

/// The rows of each of the file's runs.
fn strings_runs() -> Vec<Vec<Row>> {
    let text = std::fs::read_to_string(common::trace(
        "cpython-2.7.18-linux-x86_64/pymalloc_strings.txt",
    ))
    .unwrap();
    let mut runs: Vec<Vec<_>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("# === run") {
            runs.push(Vec::new());
            continue;
        }
        let f: Vec<u64> = line
            .split_whitespace()
            .map_while(|w| w.parse().ok())
            .collect();
        if f.len() == 8 {
            if let Some(r) = runs.last_mut() {
                r.push((f[0], f[1], f[2], f[3], f[4]));
            }
        }
    }
    runs
}

#[test]
fn python_2_7_18_string_layout_is_reproduced_by_a_scripted_scenario() {
    let params = PymallocParams::by_name("2.7.18").unwrap();
    let runs = strings_runs();
    assert_eq!(runs.len(), 3);
    let platform = Platform::linux_x86_64();
    for rows in runs {
        // The scenario of scripts/pymalloc_strings.py: for each n, `count` strs of 37+n
        // bytes, all kept alive, on a fresh pymalloc.
        let mut py = Pymalloc::new(
            params.clone(),
            Bump::new(platform.heap_start, 16),
            platform.address_space(),
        );
        let mut model: Vec<(u64, Addr)> = Vec::new();
        let mut fresh_pools = 0;
        let mut sizes: Vec<u64> = rows.iter().map(|r| r.0).collect();
        sizes.dedup();
        for &n in &sizes {
            let group: Vec<_> = rows.iter().filter(|r| r.0 == n).collect();
            for r in &group {
                model.push((n, py.malloc(r.1 as usize).unwrap()));
            }
        }
        for &n in &sizes {
            let rec: Vec<_> = rows.iter().filter(|r| r.0 == n).collect();
            let got: Vec<Addr> = model.iter().filter(|m| m.0 == n).map(|m| m.1).collect();
            let (req, cls) = (rec[0].1, rec[0].2);
            assert_eq!(got.len(), rec.len());
            match params.size_class(req) {
                None => {
                    // > 512 bytes: the recording shows them outside pymalloc; so does the model.
                    assert!(cls > params.small_request_threshold);
                    for a in &got {
                        assert!(py.block_info(*a).is_none(), "n={n}: {a} must fall through");
                    }
                }
                Some(szidx) => {
                    assert_eq!(params.class_size(szidx), cls, "n={n}: size class");
                    let pool = params.pool_size();
                    let ovh = params.pool_overhead();
                    assert_eq!(ovh, 48);
                    let nblocks = params.blocks_per_pool(szidx) as usize;
                    // Offset 48, classes of 16, pools of 4 KiB: every recorded id and every
                    // model address sits on a block boundary of its 4 KiB pool.
                    for a in rec.iter().map(|r| r.4).chain(got.iter().map(|a| a.0)) {
                        let off = a % pool;
                        assert!(
                            off >= ovh && off + cls <= pool && (off - ovh) % cls == 0,
                            "n={n}: {a:#x}"
                        );
                    }
                    // A fresh pool hands out 48, 48+c, 48+2c, … : each recorded pool that
                    // holds exactly NUMBLOCKS of these strs in creation order equals the
                    // model's first pool of the class, offset for offset.
                    let same_class: Vec<u64> = model
                        .iter()
                        .filter(|m| rows.iter().find(|r| r.0 == m.0).map(|r| r.2) == Some(cls))
                        .map(|m| m.1 .0)
                        .collect();
                    let first_base = same_class[0] - same_class[0] % pool;
                    let model_first: Vec<u64> = same_class
                        .iter()
                        .filter(|a| *a - *a % pool != first_base)
                        .take(nblocks)
                        .map(|a| a % pool)
                        .collect();
                    assert_eq!(
                        model_first.len(),
                        nblocks,
                        "n={n}: the model filled a second pool"
                    );
                    let mut pools: Vec<(u64, Vec<u64>)> = Vec::new();
                    for r in &rec {
                        let base = r.4 - r.4 % pool;
                        match pools.iter_mut().find(|p| p.0 == base) {
                            Some(p) => p.1.push(r.4 % pool),
                            None => pools.push((base, vec![r.4 % pool])),
                        }
                    }
                    for (_, offs) in pools
                        .iter()
                        .filter(|p| p.1.len() == nblocks && p.1[0] == ovh)
                    {
                        if offs.windows(2).all(|w| w[0] < w[1]) {
                            assert_eq!(offs, &model_first, "n={n}: a whole fresh pool");
                            fresh_pools += 1;
                        }
                    }
                }
            }
        }
        py.check_invariants().unwrap();
        assert!(
            fresh_pools >= 5,
            "whole fresh pools compared: {fresh_pools}"
        );
    }
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pyalloc-pm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The first `max_lines` lines of startup_only.trace.gz; its `# records: N` line, which a
/// prefix no longer holds to (the reader would report the prefix as cut), is reworded.
fn startup_text(max_lines: usize) -> Vec<String> {
    let mut s = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(trace("startup_only.trace.gz")).unwrap())
        .read_to_string(&mut s)
        .unwrap();
    s.lines()
        .take(max_lines)
        .map(|l| match l.strip_prefix("# records: ") {
            Some(_) => "# records: (a prefix of the recording, for this test)".to_string(),
            None => l.to_string(),
        })
        .collect()
}

#[test]
fn a_truncated_gzip_is_a_clear_error() {
    let bytes = std::fs::read(trace("startup_only.trace.gz")).unwrap();
    let path = tmp("cut.trace.gz");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    match check_file(&path, &CheckOptions::default()) {
        Err(ReplayError::Trace(TraceError::Gzip { offset, .. })) => assert!(offset > 0),
        other => panic!("expected a gzip error, got {other:?}"),
    }
}

#[test]
fn an_unparsable_line_names_its_number_and_text() {
    let mut lines = startup_text(2000);
    lines[1500] = "m O 56 not-an-address".into();
    let path = tmp("bad.trace");
    std::fs::write(&path, lines.join("\n")).unwrap();
    match check_file(&path, &CheckOptions::default()) {
        Err(ReplayError::Trace(TraceError::Parse { line, text, .. })) => {
            assert_eq!(line, 1501);
            assert_eq!(text, "m O 56 not-an-address");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn a_trace_contradicting_the_model_is_a_divergence_and_keep_going_counts_on() {
    let lines = startup_text(20000);
    // Move one small malloc's recorded address by one block.
    let k = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("m O 32 "))
        .nth(100)
        .unwrap()
        .0;
    let mut bad = lines.clone();
    let f: Vec<&str> = lines[k].split(' ').collect();
    let moved = u64::from_str_radix(f[3], 16).unwrap() + 32;
    bad[k] = format!("m O 32 {moved:x}");
    let path = tmp("contradict.trace.gz");
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all((bad.join("\n") + "\n").as_bytes()).unwrap();
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    let r = check_file(&path, &CheckOptions::default()).unwrap();
    let d = r.first_divergence.clone().unwrap();
    assert_eq!(d.line, k as u64 + 1);
    assert_eq!(d.expected, format!("{moved:#x}"));
    assert!(
        d.why.contains("size class 1") && d.why.contains("free-list head"),
        "{}",
        d.why
    );
    assert!(!r.ok());
    let opts = CheckOptions {
        keep_going: true,
        ..CheckOptions::default()
    };
    let all = check_file(&path, &opts).unwrap();
    assert!(all.events > r.events, "keep-going reads the whole trace");
    assert!(all.checked > r.checked);
    assert_eq!(
        all.first_divergence, r.first_divergence,
        "the same first divergence"
    );
    assert!(all.matched < all.checked);
    assert!(
        all.matched > r.matched,
        "matches go on being counted after it"
    );
}
