//! `pyalloc record` on real programs (needs `--features record`): the program behaves as
//! under plain python3, the trace is complete and consistent, and the pymalloc model
//! predicts every small-request address (`pyalloc check`).

use pyalloc::trace::open::open;
use pyalloc::trace::{Domain, EventKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PYALLOC: &str = env!("CARGO_BIN_EXE_pyalloc");

/// The workloads: (name, script). Their output depends on nothing but the script.
const PROGRAMS: [(&str, &str); 4] = [
    (
        "list_of_ints",
        "lst = [i * 7 for i in range(50000)]\nprint(len(lst), sum(lst))\ndel lst\nlst = list(range(1000, 21000))\nprint(lst[-1])\n",
    ),
    (
        "dict_churn",
        "d = {}\nfor r in range(20):\n    for i in range(2000):\n        d['k%d' % (i * r)] = [i] * (i % 5)\n    for k in list(d)[::3]:\n        del d[k]\nprint(len(d), sum(len(v) for v in d.values()))\n",
    ),
    (
        "json_round_trip",
        "import json\nobj = {'a': [1, 2.5, None, True], 'b': {str(i): [i, str(i) * 3] for i in range(3000)}}\ns = json.dumps(obj, sort_keys=True)\nback = json.loads(s)\nassert back == obj\nprint(len(s), s[:60])\n",
    ),
    (
        "exception_loop",
        "import sys\nclass E(Exception):\n    pass\nn = 0\nfor i in range(20000):\n    try:\n        if i % 3 == 0:\n            raise E(i)\n        {}[i]\n    except (E, KeyError) as e:\n        n += len(str(e))\nprint(n)\nprint('done', file=sys.stderr)\nsys.exit(3)\n",
    ),
];

fn scratch(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pyalloc-record-{}-{what}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> Output {
    cmd.env("PYTHONHASHSEED", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap()
}

/// The program's own stderr, and the last line `record` adds (what it wrote).
fn split_wrote(stderr: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(stderr).into_owned();
    let body = text.strip_suffix('\n').unwrap_or(&text);
    match body.rfind('\n') {
        Some(at) => (text[..=at].to_string(), body[at + 1..].to_string()),
        None => (String::new(), body.to_string()),
    }
}

/// `record -o x.trace.gz` writes gzip and `-o x.bin` binary, with the same events as
/// plain text, and says so.
#[test]
fn the_output_name_chooses_gzip_or_binary() {
    let d = scratch("forms");
    let mut all = Vec::new();
    for name in ["t.trace", "t.trace.gz", "t.bin"] {
        let trace = d.join(name);
        let rec = run(Command::new(PYALLOC)
            .args(["record", "-o"])
            .arg(&trace)
            .args(["--", "-c", "x = [str(i) for i in range(1000)]"]));
        assert!(rec.status.success(), "{name}");
        let (_, wrote) = split_wrote(&rec.stderr);
        let raw = std::fs::read(&trace).unwrap();
        assert_eq!(
            raw.starts_with(&[0x1f, 0x8b]),
            name.ends_with(".gz"),
            "{name}"
        );
        assert_eq!(
            raw.starts_with(b"PYALLOCB"),
            name.ends_with(".bin"),
            "{name}"
        );
        let form = if name.ends_with(".gz") {
            "text, gzip"
        } else if name.ends_with(".bin") {
            "binary"
        } else {
            "text"
        };
        assert!(
            wrote.ends_with(&format!("bytes ({form})")),
            "{name}: {wrote}"
        );
        let mut r = open(&trace).unwrap();
        let mut n = 0u64;
        while r.next_event().unwrap().is_some() {
            n += 1;
        }
        assert!(
            wrote.contains(&format!(": {n} events, ")),
            "{name}: {wrote}"
        );
        all.push(n);
    }
    assert!(all.iter().all(|&n| n > 1000), "{all:?}");
    std::fs::remove_dir_all(&d).ok();
}

/// Checks the trace's own consistency; returns the number of O/M requests.
///
/// - every free/realloc of the O/M state names a live O/M block, of the raw state a live raw block;
/// - no address is returned while live in its state;
/// - nested lines (`r`, `A`, `F`) come only right before the O/M line that caused them;
/// - every `F` unmaps an arena an `A` mapped, with its size.
///
/// `forked`: a forked child's trace. There the raw state is held to less: CPython's
/// `PyOS_AfterFork_Child` re-creates runtime locks under the default raw allocator
/// (`_PyRuntimeState_ReInitThreads` in pystate.c), which no hook sees, so the child's trace
/// can free or re-use a raw block without a line. O/M blocks are held to everything.
fn check_consistency(trace: &Path) -> u64 {
    check_consistency_of(trace, false)
}

fn check_consistency_of(trace: &Path, forked: bool) -> u64 {
    let mut r = open(trace).unwrap();
    let mut om: HashMap<u64, ()> = HashMap::new();
    let mut raw: HashMap<u64, ()> = HashMap::new();
    let mut arenas: HashMap<u64, u64> = HashMap::new();
    let mut nested_pending = 0u64;
    let mut requests = 0u64;
    let mut n = 0u64;
    while let Some(e) = r.next_event().unwrap() {
        let at = format!("event {n} (line {})", e.line);
        n += 1;
        let (domain, alloc, free) = match e.kind {
            EventKind::Malloc { domain, addr, .. } | EventKind::Calloc { domain, addr, .. } => {
                (domain, Some(addr.0), None)
            }
            EventKind::Free { domain, addr } => (domain, None, Some(addr.0)),
            EventKind::Realloc {
                domain, old, new, ..
            } => (domain, Some(new.0), Some(old.0)),
            EventKind::ArenaAlloc { size, addr } => {
                assert!(
                    arenas.insert(addr.0, size).is_none(),
                    "{at}: arena mapped twice"
                );
                nested_pending += 1;
                continue;
            }
            EventKind::ArenaFree { addr, size } => {
                assert_eq!(
                    arenas.remove(&addr.0),
                    Some(size),
                    "{at}: unmapped an unknown arena"
                );
                nested_pending += 1;
                continue;
            }
            EventKind::VirtualAlloc { .. } | EventKind::VirtualFree { .. } => {
                assert_eq!(
                    nested_pending, 0,
                    "{at}: nested lines before a top-level V/W"
                );
                continue;
            }
            k => panic!("{at}: unexpected event {k:?} in a CPython 3 recording"),
        };
        let set = match domain {
            Domain::Obj | Domain::Mem => {
                nested_pending = 0;
                requests += 1;
                &mut om
            }
            Domain::RawNested => {
                nested_pending += 1;
                &mut raw
            }
            Domain::Raw => {
                assert_eq!(
                    nested_pending, 0,
                    "{at}: nested lines before a top-level raw call"
                );
                &mut raw
            }
            Domain::Libc => panic!("{at}: a libc line in a CPython 3 recording"),
        };
        let raw_unseen = forked && matches!(domain, Domain::Raw | Domain::RawNested);
        if let Some(f) = free.filter(|&f| f != 0) {
            assert!(
                set.remove(&f).is_some() || raw_unseen,
                "{at}: frees {f:#x}, which is not live"
            );
        }
        if let Some(a) = alloc.filter(|&a| a != 0) {
            assert!(
                set.insert(a, ()).is_none() || raw_unseen,
                "{at}: returns {a:#x}, which is live"
            );
        }
    }
    assert_eq!(
        nested_pending, 0,
        "nested lines at the end with no O/M line after them"
    );
    assert!(
        n > 100_000,
        "a CPython start-up alone makes over 100000 calls; got {n}"
    );
    requests
}

#[test]
fn recorded_programs_behave_as_under_python3_and_their_traces_are_consistent() {
    let d = scratch("behave");
    for (name, code) in PROGRAMS {
        let script = d.join(format!("{name}.py"));
        std::fs::write(&script, code).unwrap();
        let plain = run(Command::new(pyalloc::record::PYTHON).arg(&script));
        let trace = d.join(format!("{name}.trace"));
        let rec = run(Command::new(PYALLOC)
            .args(["record", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&script));
        assert_eq!(rec.status.code(), plain.status.code(), "{name}: exit code");
        assert_eq!(
            String::from_utf8_lossy(&rec.stdout),
            String::from_utf8_lossy(&plain.stdout),
            "{name}: stdout"
        );
        let (program_err, wrote) = split_wrote(&rec.stderr);
        assert_eq!(
            program_err,
            String::from_utf8_lossy(&plain.stderr),
            "{name}: stderr"
        );
        let size = std::fs::metadata(&trace).unwrap().len();
        assert!(
            wrote.starts_with(&format!("pyalloc record: wrote {}: ", trace.display()))
                && wrote.ends_with(&format!(" events, {size} bytes (text)")),
            "{name}: {wrote:?}"
        );
        assert!(
            !plain.stdout.is_empty(),
            "{name}: the program printed nothing"
        );
        let mut r = open(&trace).unwrap();
        r.next_event().unwrap();
        let h = r.header().clone();
        assert!(
            h.lines[0].starts_with("pymalloc allocation trace"),
            "{name}"
        );
        assert!(
            h.get("interpreter").unwrap().starts_with("CPython 3."),
            "{name}"
        );
        assert!(
            h.get("command").unwrap().contains(&format!("{name}.py")),
            "{name}"
        );
        let requests = check_consistency(&trace);
        assert!(requests > 0, "{name}");
    }
    // -c and -m pass through too.
    let trace = d.join("c.trace");
    let rec = run(Command::new(PYALLOC)
        .args(["record", "-o"])
        .arg(&trace)
        .args([
            "--",
            "-c",
            "import sys; print(sys.argv[1:]); sys.exit(7)",
            "x",
            "-y",
        ]));
    assert_eq!(rec.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&rec.stdout), "['x', '-y']\n");
    check_consistency(&trace);
    std::fs::remove_dir_all(&d).ok();
}

/// `pyalloc check` of each recording through the pymalloc model (pinned to the trace's
/// arenas and raw calls): every small-request address predicted, matched == checked > 0.
#[test]
fn recorded_programs_check_at_100_percent_through_the_pymalloc_model() {
    let d = scratch("check");
    for (name, code) in PROGRAMS {
        let script = d.join(format!("{name}.py"));
        std::fs::write(&script, code).unwrap();
        let trace = d.join(format!("{name}.trace"));
        let rec = run(Command::new(PYALLOC)
            .args(["record", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&script));
        assert!(rec.status.code().is_some(), "{name}");
        let out = Command::new(PYALLOC)
            .args(["check", "--json"])
            .arg(&trace)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}: {err}"));
        assert!(v["checked"].as_u64().unwrap() > 0, "{name}: {v}");
        assert_eq!(v["matched"], v["checked"], "{name}: {v}");
        assert!(out.status.success(), "{name}: {v}");
    }
    std::fs::remove_dir_all(&d).ok();
}

/// A program that forks: the parent's trace holds only the parent's calls (never an
/// interleaving), and each child that allocates leaves its own trace beside it, named after
/// the parent's with its pid, which reads as the parent's events up to the fork followed
/// by the child's own. Every one of them checks at 100 %, the grandchild's through its
/// parent child's trace.
#[test]
fn a_forking_program_gives_each_process_its_own_complete_trace() {
    let d = scratch("fork");
    let script = d.join("forks.py");
    std::fs::write(
        &script,
        "import os, sys\n\
         d = {i: str(i) for i in range(20000)}\n\
         pid = os.fork()\n\
         if pid == 0:\n\
         \x20   l = [float(i) for i in range(5000)]\n\
         \x20   g = os.fork()\n\
         \x20   if g == 0:\n\
         \x20       t = [str(i) * 3 for i in range(2000)]\n\
         \x20       os._exit(0)\n\
         \x20   os.waitpid(g, 0)\n\
         \x20   print('grandchild done', flush=True)\n\
         \x20   os._exit(0)\n\
         os.waitpid(pid, 0)\n\
         pid2 = os.fork()\n\
         if pid2 == 0:\n\
         \x20   del d\n\
         \x20   x = [i * 3 for i in range(3000)]\n\
         \x20   sys.exit(5)\n\
         _, st = os.waitpid(pid2, 0)\n\
         print('second child exited with', os.waitstatus_to_exitcode(st))\n",
    )
    .unwrap();
    let plain = run(Command::new(pyalloc::record::PYTHON).arg(&script));
    let trace = d.join("forks.trace.gz");
    let rec = run(Command::new(PYALLOC)
        .args(["record", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(&script));
    assert_eq!(rec.status.code(), plain.status.code());
    assert_eq!(
        String::from_utf8_lossy(&rec.stdout),
        String::from_utf8_lossy(&plain.stdout)
    );
    assert!(String::from_utf8_lossy(&rec.stdout).contains("exited with 5"));
    let mut children: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("forks.") && n.ends_with(".trace")
        })
        .collect();
    children.sort();
    assert_eq!(
        children.len(),
        3,
        "two children and a grandchild: {children:?}"
    );
    let mut grandchildren = 0;
    for t in std::iter::once(&trace).chain(&children) {
        check_consistency_of(t, t != &trace);
        let out = Command::new(PYALLOC)
            .args(["check", "--json"])
            .arg(t)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: {}",
                t.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(v["checked"].as_u64().unwrap() > 0, "{}: {v}", t.display());
        assert_eq!(v["matched"], v["checked"], "{}: {v}", t.display());
        if t != &trace {
            let mut r = pyalloc::trace::pymalloc3::Pymalloc3Reader::open(t).unwrap();
            let _ = pyalloc::trace::EventReader::next_event(&mut r);
            let from = pyalloc::trace::EventReader::header(&r)
                .get("forked-from")
                .unwrap()
                .to_string();
            if from.starts_with("forks.trace.gz ") {
                continue;
            }
            let parent = from.split(' ').next().unwrap();
            assert!(children.iter().any(|c| c.ends_with(parent)), "{from}");
            grandchildren += 1;
        }
    }
    assert_eq!(grandchildren, 1);
    std::fs::remove_dir_all(&d).ok();
}
