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
