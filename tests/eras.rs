//! Every CPython era held to its real recording (issue 9): each start-up recording of
//! ../shared/traces/cpython-3.*-linux-x86_64 (and the longer 3.11.7 and 2.7.18 ones) is
//! checked with the model its header names and no `--model`, and must match every
//! checked address; the preset the header selects is the era the source history assigns
//! to that release; the radix-tree node sizes the recording shows are the preset's own.

mod common;
use pyalloc::check::{check_file, CheckOptions};
use pyalloc::pymalloc::PymallocParams;
use pyalloc::trace::pymalloc3::Pymalloc3Reader;
use pyalloc::trace::{Domain, EventKind, EventReader};
use std::path::{Path, PathBuf};

/// The era recordings: (directory, the preset the source history assigns to that build).
/// 3.6.15 and 3.7.16 were built by pyenv: 3.6.15 with pyenv's bpo-27987 patch.
const ERAS: &[(&str, &str)] = &[
    ("cpython-3.6.15-linux-x86_64", "cpython-3.6-pyenv"),
    ("cpython-3.7.16-linux-x86_64", "cpython-3.7.4"),
    ("cpython-3.8.18-linux-x86_64", "cpython-3.8"),
    ("cpython-3.9.18-linux-x86_64", "cpython-3.9"),
    ("cpython-3.10.13-linux-x86_64", "cpython-3.10"),
    ("cpython-3.11.7-linux-x86_64", "cpython-3.11"),
    ("cpython-3.12.1-linux-x86_64", "cpython-3.12"),
    ("cpython-3.13.0-linux-x86_64", "cpython-3.13"),
];

fn dir(name: &str) -> PathBuf {
    common::trace(name)
}

/// The preset the recording's `# interpreter:` line selects.
fn preset_of(path: &Path) -> PymallocParams {
    let r = Pymalloc3Reader::open(path).unwrap();
    let line = r.header().get("interpreter").expect("an interpreter line");
    PymallocParams::for_release(line).unwrap_or_else(|| panic!("no preset for {line:?}"))
}

fn assert_matches_everything(path: &Path) {
    let r = check_file(path, &CheckOptions::default()).unwrap();
    assert!(
        r.first_divergence.is_none(),
        "{}: {:?}",
        path.display(),
        r.first_divergence
    );
    assert!(r.checked > 0, "{}", path.display());
    assert_eq!(r.matched, r.checked, "{}", path.display());
}

#[test]
fn every_era_start_up_recording_matches_every_address_with_the_header_s_model() {
    for (d, expected) in ERAS {
        let path = dir(d).join("startup_only.trace.gz");
        assert_eq!(preset_of(&path).name, *expected, "{d}");
        assert_matches_everything(&path);
    }
}

#[test]
fn the_longer_3_11_recordings_match_too() {
    for name in ["seed_py3.trace.gz", "compile_big.trace.gz", "ints.trace.gz"] {
        assert_matches_everything(&dir("cpython-3.11.7-linux-x86_64").join(name));
    }
}

#[test]
fn the_2_7_recordings_match_with_the_2_7_17_preset() {
    for name in ["startup.trace.gz", "seed.trace.gz", "ints_churn.trace.gz"] {
        assert_matches_everything(&dir("cpython-2.7.18-linux-x86_64").join(name));
    }
    assert_eq!(
        PymallocParams::for_release("2.7.18").unwrap().name,
        "cpython-2.7.17"
    );
}

/// Every small O/M block a recording returns lies on its preset's alignment grid, and
/// some block is only on that grid (not on twice it): the recording itself says the
/// alignment, independently of the check.
#[test]
fn every_block_lies_on_the_preset_s_grid() {
    for (d, _) in ERAS {
        let path = dir(d).join("startup_only.trace.gz");
        let p = preset_of(&path);
        let a = p.alignment();
        let mut r = Pymalloc3Reader::open(&path).unwrap();
        let (mut on_grid_only, mut n) = (false, 0u64);
        while let Some(e) = r.next_event().unwrap() {
            let (size, addr) = match e.kind {
                EventKind::Malloc {
                    domain: Domain::Obj | Domain::Mem,
                    size,
                    addr,
                } => (size, addr),
                EventKind::Realloc {
                    domain: Domain::Obj | Domain::Mem,
                    size,
                    new,
                    ..
                } => (size, new),
                _ => continue,
            };
            if p.size_class(size).is_none() || addr.is_null() {
                continue;
            }
            n += 1;
            assert_eq!(addr.0 % a, 0, "{d}: {addr} off the {a}-byte grid");
            on_grid_only |= addr.0 % (2 * a) != 0;
        }
        assert!(n > 1000 && on_grid_only, "{d}: {n} blocks");
    }
}

/// The raw callocs right after an arena map are the radix-tree nodes: their sizes are
/// `sizeof(arena_map_mid_t)` and `sizeof(arena_map_bot_t)` of the preset (3.10: 8192 and
/// 2048 from 48 address bits; 3.11+: 262144 and 131072), and eras without the tree
/// have none.
#[test]
fn radix_node_callocs_are_the_preset_s_node_sizes() {
    for (d, _) in ERAS {
        let path = dir(d).join("startup_only.trace.gz");
        let p = preset_of(&path);
        let mut r = Pymalloc3Reader::open(&path).unwrap();
        let mut after_arena = false;
        let mut seen = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            match e.kind {
                EventKind::ArenaAlloc { .. } => after_arena = true,
                EventKind::Calloc {
                    domain: Domain::RawNested,
                    nelem,
                    elsize,
                    ..
                } if after_arena => seen.push(nelem * elsize),
                _ => after_arena = false,
            }
        }
        if p.radix_tree {
            let (mid, bot) = p.radix_node_bytes();
            assert!(seen.contains(&mid) && seen.contains(&bot), "{d}: {seen:?}");
            assert!(seen.iter().all(|s| *s == mid || *s == bot), "{d}: {seen:?}");
        } else {
            assert!(seen.is_empty(), "{d}: {seen:?}");
        }
    }
}

/// `pyalloc presets --json` lists every preset with the library's own summary, and the
/// text form names each one with the releases it covers.
#[test]
fn the_presets_command_lists_every_preset() {
    let bin = env!("CARGO_BIN_EXE_pyalloc");
    let out = std::process::Command::new(bin)
        .args(["presets", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: Vec<serde_json::Value> = PymallocParams::presets()
        .iter()
        .map(|p| serde_json::to_value(p.summary()).unwrap())
        .collect();
    assert_eq!(listed, serde_json::Value::Array(want));
    let text = std::process::Command::new(bin)
        .arg("presets")
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    for p in PymallocParams::presets() {
        assert!(
            text.contains(&format!("{}  ({})", p.name, p.releases)),
            "{}",
            p.name
        );
    }
}

/// `pyalloc stats` at the last event of every era's recording, in that era's layout:
/// the class count is the preset's, the arena line counts the recording's own A and F
/// lines (`arenas * ARENA_SIZE` with the size the A lines show), the radix section is
/// there exactly from 3.10 with as many mid nodes as the recording calloc'ed, and 2.7
/// prints `# times object malloc called` = its `m O` + `r O` lines.
#[test]
fn stats_at_the_end_of_every_recording_speak_its_era_s_layout() {
    use pyalloc::check::pymalloc3::StatsAt;
    use pyalloc::report::stats_at;
    use pyalloc::trace::pyrec27::Pyrec27Reader;
    let mut cases: Vec<(PathBuf, PymallocParams, Box<dyn EventReader>)> = Vec::new();
    for (d, _) in ERAS {
        let path = dir(d).join("startup_only.trace.gz");
        let r = Box::new(Pymalloc3Reader::open(&path).unwrap());
        cases.push((path.clone(), preset_of(&path), r));
    }
    let p27 = dir("cpython-2.7.18-linux-x86_64").join("startup.trace.gz");
    let r27 = Box::new(Pyrec27Reader::open(&p27).unwrap());
    cases.push((p27, PymallocParams::for_release("2.7.18").unwrap(), r27));
    for (path, p, mut r) in cases {
        let (mut events, mut arenas, mut arena_size, mut calls) = (0u64, 0i64, 0u64, 0u64);
        let mut mids = 0u64;
        while let Some(e) = r.next_event().unwrap() {
            events += 1;
            match e.kind {
                EventKind::ArenaAlloc { size, .. } => {
                    arenas += 1;
                    arena_size = size;
                }
                EventKind::ArenaFree { .. } => arenas -= 1,
                EventKind::Calloc {
                    domain: Domain::RawNested,
                    nelem,
                    elsize,
                    ..
                } if p.radix_tree && nelem * elsize == p.radix_node_bytes().0 => mids += 1,
                EventKind::Malloc {
                    domain: Domain::Obj,
                    ..
                }
                | EventKind::Realloc {
                    domain: Domain::Obj,
                    ..
                } => calls += 1,
                _ => {}
            }
        }
        let (at, text) = stats_at(&path, &CheckOptions::default(), StatsAt::Event(events - 1))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.display();
        assert_eq!(at, events - 1);
        assert!(
            text.starts_with(&format!(
                "Small block threshold = 512, in {} size classes.\n",
                p.size_classes()
            )),
            "{name}"
        );
        let arena_line = format!("{arenas} arenas * {arena_size} bytes/arena");
        assert!(text.contains(&arena_line), "{name}: {arena_line}\n{text}");
        let total = (arenas as u64 * arena_size).to_string();
        let grouped: Vec<String> = total
            .as_bytes()
            .rchunks(3)
            .rev()
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        assert!(
            text.contains(&format!("Total{}=", " ".repeat(30)))
                && text.contains(&grouped.join(",")),
            "{name}"
        );
        assert_eq!(text.contains("arena map counts"), p.radix_tree, "{name}");
        if p.radix_tree {
            let want = "# arena map mid nodes";
            let line = text.lines().find(|l| l.starts_with(want)).unwrap();
            assert!(line.ends_with(&format!(" {mids}")), "{name}: {line}");
        }
        let serial = text
            .lines()
            .find(|l| l.starts_with("# times object malloc called"));
        assert_eq!(serial.is_some(), p.stats_serialno, "{name}");
        if let Some(line) = serial {
            let n: u64 = line
                .rsplit('=')
                .next()
                .unwrap()
                .trim()
                .replace(',', "")
                .parse()
                .unwrap();
            assert_eq!(n, calls, "{name}");
        }
    }
}

/// `stats --model cpython-3.11+own --at-marker 777778` (issue 13): own mode's addresses
/// differ from the recording's by design, so it reaches the marker; its blocks in use per
/// size class are the recording's live requests, the same as the pinned replay's.
#[test]
fn own_mode_stats_reach_the_marker_with_the_same_blocks_in_use() {
    use pyalloc::check::pymalloc3::StatsAt;
    use pyalloc::report::stats_at;
    let path = dir("cpython-3.11.7-linux-x86_64").join("ints.trace.gz");
    let run = |model: Option<&str>| {
        let opts = CheckOptions {
            model: model.map(str::to_string),
            ..CheckOptions::default()
        };
        stats_at(&path, &opts, StatsAt::Marker(777778)).unwrap()
    };
    let (pinned_at, pinned) = run(None);
    let (own_at, own) = run(Some("cpython-3.11+own"));
    assert_eq!(pinned_at, own_at);
    // class, size, blocks in use of every class line ("%5u %6u %11zu %15zu %13zu").
    let in_use = |text: &str| -> Vec<(String, String, String)> {
        text.lines()
            .filter(|l| l.len() == 54 && l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_string(), f[1].to_string(), f[3].to_string())
            })
            .collect()
    };
    assert!(!in_use(&pinned).is_empty());
    assert_eq!(in_use(&own), in_use(&pinned));
    let allocated = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("# bytes in allocated"))
            .map(str::to_string)
    };
    assert_eq!(allocated(&own), allocated(&pinned));
}
