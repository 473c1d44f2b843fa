//! The question's numbers (../shared/seed/seed_tables.tsv) and the Linux recordings of the
//! same loops (../shared/traces/cpython-2.7.18-linux-x86_64), computed by the models.
//! Every expected number is read from those files.

mod common;
use common::pyalloc;
use pyalloc::check::pyrec27;
use pyalloc::interp::{Py2, Py3};
use pyalloc::scripts::{at_seed_start, rebind_of, seed, PrevRebind, SeedRun};
use pyalloc::trace::pyrec27::Pyrec27Reader;
use pyalloc::trace::{EventKind, EventReader};
use pyalloc::{Addr, Platform};
use std::path::PathBuf;
use std::process::Command;

fn shared(rel: &str) -> PathBuf {
    common::shared(rel)
}

fn py27(rel: &str) -> PathBuf {
    shared(&format!("traces/cpython-2.7.18-linux-x86_64/{rel}"))
}

/// The rows of seed_tables.tsv: (table, columns).
fn seed_table() -> Vec<(String, Vec<i64>)> {
    let text = std::fs::read_to_string(shared("seed/seed_tables.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("table"))
        .map(|l| {
            let mut f = l.split('\t');
            let table = f.next().unwrap().to_string();
            (table, f.map(|x| x.parse().unwrap()).collect())
        })
        .collect()
}

/// The question's printed lines whose `i` is at most 256, as Python 2 printed them.
fn question_lines_up_to_256() -> Vec<String> {
    seed_table()
        .into_iter()
        .filter(|(t, c)| t == "offsets" || c[1] <= 256)
        .map(|(t, c)| match t.as_str() {
            "offsets" => format!("{} {}", c[0], c[1]),
            _ => format!("{} {} ({}, {}) {}", c[0], c[1], c[2], c[3], c[4]),
        })
        .collect()
}

fn model_lines_up_to_256(run: &SeedRun) -> Vec<String> {
    let mut lines: Vec<String> = run
        .offsets
        .iter()
        .map(|(i, d)| format!("{i} {d}"))
        .collect();
    lines.extend(
        run.changes
            .iter()
            .filter(|r| r.i <= 256)
            .map(|r| r.py2_line()),
    );
    lines
}

#[test]
fn macos_model_prints_every_row_of_the_question_up_to_256() {
    let mut py = Py2::new(Platform::macos_x86_64()).unwrap();
    let run = seed(&mut py, PrevRebind::InsideIf).unwrap();
    let want = question_lines_up_to_256();
    assert!(want.len() > 10, "the table was read");
    assert_eq!(model_lines_up_to_256(&run), want);
}

#[test]
fn the_cli_prints_the_question_rows_and_says_later_rows_depend_on_history() {
    let out = Command::new(env!("CARGO_BIN_EXE_pyalloc"))
        .arg("seed")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let want = question_lines_up_to_256();
    assert_eq!(
        &lines[..want.len()],
        want.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(lines[want.len()].starts_with('#') && lines[want.len()].contains("history"));
}

#[test]
fn bad_platform_is_one_line_and_a_failure() {
    let out = Command::new(env!("CARGO_BIN_EXE_pyalloc"))
        .args(["seed", "--platform", "beos"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1);
    assert!(err.starts_with("pyalloc: ") && err.contains("beos"));
}

/// The lines of each `# === run` section of seed_loop_script.txt (the pristine build).
fn seed_loop_runs() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(py27("seed_loop_script.txt")).unwrap();
    let mut runs: Vec<Vec<String>> = Vec::new();
    for l in text.lines() {
        if l.starts_with("# === run") {
            runs.push(Vec::new());
        } else if !l.starts_with('#') && !l.is_empty() {
            if let Some(r) = runs.last_mut() {
                r.push(l.to_string());
            }
        }
    }
    runs
}

/// The recorded rows of the two experiments whose `i` is at most 256.
fn recorded_rows_up_to_256(run: &[String]) -> Vec<String> {
    run.iter()
        .take_while(|l| l.split(' ').count() >= 2 && !l.starts_with("id("))
        .filter(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() == 2 || f[1].parse::<i64>().is_ok_and(|i| i <= 256)
        })
        .cloned()
        .collect()
}

#[test]
fn linux_model_prints_the_recorded_rows_up_to_256_in_every_run() {
    let runs = seed_loop_runs();
    assert_eq!(runs.len(), 3);
    // Where id(0) lies relative to the first block, by the model itself.
    let probe = Py2::new(Platform::linux_x86_64()).unwrap();
    let base0 = probe.ints().block_list().last().unwrap();
    let id0_offset = probe.small_ints().get(0).unwrap() - base0;
    for run in &runs {
        let want = recorded_rows_up_to_256(run);
        // id(0) is the second id in the "-1 0 (id(-1), id(0)) 24" row.
        let id0: u64 = want[5]
            .split(['(', ',', ')'])
            .nth(2)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let first = Addr(id0 - id0_offset as u64);
        let mut py = Py2::at(Platform::linux_x86_64(), first).unwrap();
        let got = seed(&mut py, PrevRebind::InsideIf).unwrap();
        assert_eq!(model_lines_up_to_256(&got), want);
    }
    // The setarch -R run is the preset's default base.
    let mut py = Py2::new(Platform::linux_x86_64()).unwrap();
    let got = seed(&mut py, PrevRebind::InsideIf).unwrap();
    assert_eq!(
        model_lines_up_to_256(&got),
        recorded_rows_up_to_256(&runs[2])
    );
}

#[test]
fn from_the_traced_free_list_the_loop_reproduces_every_row_of_the_traced_run() {
    let start = pyrec27::state_until(&py27("seed.trace.gz"), at_seed_start()).unwrap();
    assert!(start.report.ok() && start.report.checked > 262);
    let rebind = rebind_of(&start.header);
    assert_eq!(
        rebind,
        PrevRebind::EveryIteration,
        "seed.py rebinds prev after the if"
    );
    let mut py = Py2::from_state(start.state);
    py.start_log();
    let run = seed(&mut py, rebind).unwrap();
    let log = py.take_log();
    // Every printed line, including those past 256.
    let want: Vec<String> = std::fs::read_to_string(py27("seed.stdout.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(want.iter().any(|l| l.starts_with("268 269")));
    assert_eq!(run.lines(), want);
    // And every pop, push and block of the int free list, event for event.
    let mut reader = Pyrec27Reader::open(&py27("seed.trace.gz")).unwrap();
    let mut recorded = Vec::new();
    while let Some(ev) = reader.next_event().unwrap() {
        if ev.line < start.line {
            continue;
        }
        match ev.kind {
            EventKind::ObjPop {
                kind: pyalloc::trace::FreeListKind::Int,
                ..
            }
            | EventKind::ObjPush {
                kind: pyalloc::trace::FreeListKind::Int,
                ..
            }
            | EventKind::BlockNew {
                kind: pyalloc::trace::FreeListKind::Int,
                ..
            } => recorded.push(ev.kind),
            _ => {}
        }
        if recorded.len() == log.len() {
            break;
        }
    }
    assert!(log.len() > 1000);
    assert_eq!(log, recorded);
}

#[test]
fn bad_frees_and_values_are_one_line_errors_naming_the_address_or_value() {
    // A free of an address no int starts at.
    let (ok, _, err) = pyalloc(&["intlist", "free:1234"]);
    assert!(
        !ok && err.lines().count() == 1 && err.contains("0x1234"),
        "{err}"
    );
    // A double free: the second free of the int just made.
    let (ok, out, _) = pyalloc(&["intlist", "int:1000"]);
    assert!(ok);
    let addr = out
        .lines()
        .last()
        .unwrap()
        .split(' ')
        .nth(2)
        .unwrap()
        .to_string();
    let free = format!("free:{addr}");
    let (ok, out, err) = pyalloc(&["intlist", "int:1000", &free, &free]);
    assert!(!ok && err.lines().count() == 1, "{err}");
    assert!(err.contains("double free") && err.contains(&addr), "{err}");
    assert_eq!(out.lines().last().unwrap(), format!("D {addr}"));
    // A value a 32-bit C long cannot hold.
    let too_big = (1i64 << 31).to_string();
    let (ok, out, err) = pyalloc(&["ints", "--platform", "linux-i686", "0", &too_big]);
    assert!(
        !ok && out.is_empty() && err.lines().count() == 1 && err.contains(&too_big),
        "{err}"
    );
    let (ok, _, err) = pyalloc(&[
        "intlist",
        "--platform",
        "linux-i686",
        &format!("int:{too_big}"),
    ]);
    assert!(
        !ok && err.contains(&too_big) && err.contains("32-bit"),
        "{err}"
    );
}

#[test]
fn ints_prints_v_id_and_offset_from_the_first() {
    let (ok, out, _) = pyalloc(&[
        "ints",
        "--platform",
        "macos-x86_64",
        "--version",
        "2.7",
        "0",
        "4",
    ]);
    assert!(ok);
    // The question's first experiment prints N - id(i); ints prints id(i) - id(0).
    let want: Vec<(i64, i64)> = seed_table()
        .into_iter()
        .filter(|(t, _)| t == "offsets")
        .map(|(_, c)| (c[0], -c[1]))
        .collect();
    let got: Vec<(i64, i64)> = out
        .lines()
        .map(|l| {
            let f: Vec<i64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
            (f[0], f[2])
        })
        .collect();
    assert_eq!(got, want);
    let (ok, out, _) = pyalloc(&[
        "ints",
        "--version",
        "3.11",
        "--platform",
        "linux-x86_64",
        "255",
        "257",
        "--explain",
    ]);
    assert!(ok);
    assert!(out
        .lines()
        .last()
        .unwrap()
        .starts_with("# 257..257: outside"));
}

fn py311(rel: &str) -> PathBuf {
    shared(&format!("traces/cpython-3.11.7-linux-x86_64/{rel}"))
}

#[test]
fn python_3_11_small_ints_are_the_static_array_of_the_recording() {
    // small_ints.txt: `v id(v)-id(0)` for -5..256.
    let text = std::fs::read_to_string(py311("small_ints.txt")).unwrap();
    let py = Py3::new(Platform::linux_x86_64());
    let s = py.small_ints();
    let mut rows = 0;
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<i64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(s.get(f[0]).unwrap() - s.get(0).unwrap(), f[1], "{l}");
        rows += 1;
    }
    assert_eq!(rows, 262);
    // seed_py3.stdout (setarch -R): the "-1 0 (id(-1), id(0)) diff" row gives the preset's id(0),
    // and the rows up to 256 are the array's.
    let out = std::fs::read_to_string(py311("seed_py3.stdout")).unwrap();
    let mut checked = 0;
    for l in out.lines().filter(|l| l.contains('(')) {
        let f: Vec<&str> = l
            .split([' ', '(', ',', ')'])
            .filter(|x| !x.is_empty())
            .collect();
        let (a, b): (i64, i64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        if b > 256 {
            continue;
        }
        assert_eq!(s.get(a).unwrap().0, f[2].parse::<u64>().unwrap(), "{l}");
        assert_eq!(s.get(b).unwrap().0, f[3].parse::<u64>().unwrap(), "{l}");
        checked += 1;
    }
    assert!(checked >= 1);
    for l in out.lines().take(5) {
        let f: Vec<i64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(s.get(0).unwrap() - s.get(f[0]).unwrap(), f[1], "{l}");
    }
}
