//! CPython 2.7.18's recordings (../shared/traces/cpython-2.7.18-linux-x86_64), reproduced
//! through the models: the small-int layout in every run mode, the block stride and the
//! jump between blocks, the free-list reuse scenarios scripted as the recorded script
//! ran them, the reuse of a freed 992-byte chunk by an int block, and the complete traces.
//! Every expected number is read from the recordings.

mod common;
use pyalloc::check::{check_file, CheckOptions};
use pyalloc::interp::{Int, Py2};
use pyalloc::trace::pyrec27::Pyrec27Reader;
use pyalloc::trace::{EventKind, EventReader, FreeListKind};
use pyalloc::{Addr, Platform};
use std::path::{Path, PathBuf};

fn py27(rel: &str) -> PathBuf {
    common::trace(&format!("cpython-2.7.18-linux-x86_64/{rel}"))
}

/// The sections of a recording: (the `# === run:` line, its data rows split on whitespace).
fn sections(file: &str) -> Vec<(String, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(py27(file)).unwrap();
    let mut out: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    for l in text.lines() {
        if let Some(title) = l.strip_prefix("# === run:") {
            out.push((title.to_string(), Vec::new()));
        } else if !l.starts_with('#') && !l.trim().is_empty() {
            if let Some((_, rows)) = out.last_mut() {
                rows.push(l.split_whitespace().map(str::to_string).collect());
            }
        }
    }
    out
}

fn n(s: &str) -> i64 {
    s.parse().unwrap()
}

#[test]
fn small_ints_match_in_every_run_mode() {
    let runs = sections("small_ints.txt");
    assert_eq!(runs.len(), 4);
    let mut py = Py2::new(Platform::linux_x86_64()).unwrap();
    let model_m5 = py.small_ints().get(-5).unwrap();
    for (title, rows) in &runs {
        let small: Vec<&Vec<String>> = rows.iter().filter(|r| n(&r[0]) <= 256).collect();
        assert_eq!(small.len(), 262, "{title}");
        for r in small {
            let v = n(&r[0]);
            let id = py.small_ints().get(v).unwrap();
            // id(v) - id(-5), block index, slot in block.
            assert_eq!(id - model_m5, n(&r[2]), "{title}: v = {v}");
            let w = py.ints_mut().whereabouts(id).unwrap();
            assert_eq!(w.block as i64, n(&r[3]), "{title}: v = {v}");
            assert_eq!(w.k as i64, n(&r[4]), "{title}: v = {v}");
            if title.contains("setarch -R") {
                assert_eq!(id.0 as i64, n(&r[1]), "{title}: absolute id({v})");
            }
        }
    }
}

#[test]
fn temporaries_alternate_between_two_slots_as_recorded() {
    // small_ints.py: temp.append(id(int(str(v)))) for v in range(257, 301).
    for (title, rows) in sections("small_ints.txt") {
        let temp: Vec<i64> = rows
            .iter()
            .filter(|r| n(&r[0]) > 256)
            .map(|r| n(&r[3]))
            .collect();
        let mut py = Py2::new(Platform::linux_x86_64()).unwrap();
        let range = py.list(257, 301).unwrap();
        let mut model = Vec::new();
        for v in &range {
            let x = py.int(v.value).unwrap(); // int(str(v))
            let i = py.id(&x).unwrap();
            py.drop(x).unwrap(); // id() drops its argument
            model.push(i.value);
            py.drop(i).unwrap(); // temp.append() done with it
        }
        let pattern = |ids: &[i64]| -> Vec<usize> {
            ids.iter()
                .map(|a| ids.iter().position(|b| b == a).unwrap())
                .collect()
        };
        assert_eq!(pattern(&model), pattern(&temp), "{title}");
    }
}

#[test]
fn blocks_are_1008_apart_and_the_jump_between_blocks_matches() {
    // block_addresses.txt: the first int mallocs are _PyInt_Init's blocks.
    let first_run = &sections("block_addresses.txt")[0].1;
    let recorded: Vec<u64> = first_run
        .iter()
        .filter(|r| r.last().is_some_and(|c| c.starts_with("_PyInt_Init")))
        .map(|r| r[3].parse().unwrap())
        .collect();
    let py = Py2::new(Platform::linux_x86_64()).unwrap();
    let mut model: Vec<Addr> = py.ints().block_list().collect();
    model.reverse(); // oldest first
    assert_eq!(model.len(), recorded.len());
    assert_eq!(model[0].0, recorded[0], "the preset's first block");
    for k in 1..model.len() {
        assert_eq!(
            model[k] - model[k - 1],
            recorded[k] as i64 - recorded[k - 1] as i64
        );
    }
    // The -1968 rows of seed_loop_script.txt: id(i-1) - id(i) across a block boundary.
    let script = std::fs::read_to_string(py27("seed_loop_script.txt")).unwrap();
    let mut jumps = 0;
    for l in script.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.split(' ').collect();
        if f.len() == 5 && f[1].parse::<i64>().is_ok_and(|i| (1..=256).contains(&i)) {
            let i = n(f[1]);
            let d = n(f[4]);
            let model_d = py.small_ints().get(i - 1).unwrap() - py.small_ints().get(i).unwrap();
            if d != 24 {
                jumps += 1;
            }
            assert_eq!(model_d, d, "{l}");
        }
    }
    assert_eq!(jumps, 3 * 6, "six block boundaries in each of three runs");
}

/// `rec(tag, objs)`: `bounds.append(len(ids))` before and after, and `ids.append(id(o))`
/// for each object: every one a temporary int (a long length or an id), popped and pushed back.
fn rec<A: pyalloc::Allocator>(py: &mut Py2<A>, objs: &[Int], ids_len: &mut i64) -> Vec<i64> {
    let len = |py: &mut Py2<A>, n: i64| {
        let l = py.int(n).unwrap();
        py.drop(l).unwrap();
    };
    len(py, *ids_len);
    let out = objs
        .iter()
        .map(|o| {
            let i = py.id(o).unwrap();
            let v = i.value;
            py.drop(i).unwrap();
            v
        })
        .collect();
    *ids_len += objs.len() as i64;
    len(py, *ids_len);
    out
}

/// One top-level statement: in the REPL, compiled just before it runs (its literals and
/// the symbol table's ints churn the free list; see `scripts::repl_compile`); in a script,
/// compiled with the whole file before anything ran.
fn stmt<A: pyalloc::Allocator, R>(
    py: &mut Py2<A>,
    repl: bool,
    literals: &[i64],
    names: &[usize],
    run: impl FnOnce(&mut Py2<A>) -> R,
) -> R {
    use pyalloc::scripts::{repl_compile, repl_release};
    let lits = if repl {
        repl_compile(py, literals, names).unwrap()
    } else {
        Vec::new()
    };
    let r = run(py);
    if repl {
        repl_release(py, lits).unwrap();
    }
    r
}

/// The free_list_reuse.py steps, scripted through the facade statement by statement, as
/// tag -> ids. `names` counts each statement's distinct names (module block, then a `def`'s).
fn run_free_list_reuse(repl: bool) -> Vec<(&'static str, Vec<i64>)> {
    let mut py = Py2::new(Platform::linux_x86_64()).unwrap();
    let py = &mut py;
    let mut out = Vec::new();
    let mut n = 0i64; // len(ids)
    stmt(py, repl, &[], &[1], |_| ()); // import array
    for _ in 0..3 {
        stmt(py, repl, &[], &[2], |_| ()); // ids / vals / bounds = array.array('l')
    }
    stmt(py, repl, &[], &[1], |_| ()); // tags = []
    stmt(py, repl, &[], &[1, 9], |_| ()); // def rec(tag, objs): … (9 names in its body)
    let x = stmt(py, repl, &[1000, 1100], &[3], |py| {
        py.list(1000, 1100).unwrap()
    });
    out.push((
        "s1_alloc_x",
        stmt(py, repl, &[], &[2], |py| rec(py, &x, &mut n)),
    ));
    stmt(py, repl, &[], &[1], |py| py.drop_list(x).unwrap()); // del x: last to first
    let y = stmt(py, repl, &[2000, 2100], &[3], |py| {
        py.list(2000, 2100).unwrap()
    });
    out.push((
        "s1_after_del_x_alloc_y",
        stmt(py, repl, &[], &[2], |py| rec(py, &y, &mut n)),
    ));
    let z = stmt(py, repl, &[3000, 3100], &[3], |py| {
        py.list(3000, 3100).unwrap()
    });
    out.push((
        "s2_alloc_z",
        stmt(py, repl, &[], &[2], |py| rec(py, &z, &mut n)),
    ));
    // for k in xrange(100): z[k] = None   (k, xrange, z, None: frees in forward order)
    stmt(py, repl, &[], &[4], |py| {
        for o in z {
            py.drop(o).unwrap();
        }
    });
    let w = stmt(py, repl, &[4000, 4100], &[3], |py| {
        py.list(4000, 4100).unwrap()
    });
    out.push((
        "s2_after_forward_free_z_alloc_w",
        stmt(py, repl, &[], &[2], |py| rec(py, &w, &mut n)),
    ));
    let a = stmt(py, repl, &[5000, 5200], &[3], |py| {
        py.list(5000, 5200).unwrap()
    });
    out.push((
        "s3_alloc_a",
        stmt(py, repl, &[], &[2], |py| rec(py, &a, &mut n)),
    ));
    type Indexed = Vec<(usize, Int)>;
    let (even, odd): (Indexed, Indexed) = a.into_iter().enumerate().partition(|(k, _)| k % 2 == 0);
    stmt(py, repl, &[], &[1], |py| {
        for (_, o) in even {
            py.drop(o).unwrap(); // del a[::2]: a[0], a[2], … in that order
        }
    });
    let a: Vec<Int> = odd.into_iter().map(|(_, o)| o).collect();
    out.push((
        "s3_survivors_a_odd",
        stmt(py, repl, &[], &[2], |py| rec(py, &a, &mut n)),
    ));
    let b = stmt(py, repl, &[6000, 6100], &[3], |py| {
        py.list(6000, 6100).unwrap()
    });
    out.push((
        "s3_after_del_even_alloc_b",
        stmt(py, repl, &[], &[2], |py| rec(py, &b, &mut n)),
    ));
    // p = int('301'); q = int('302'); r = int('303')   (p, int, q, r)
    let (p, q, r) = stmt(py, repl, &[], &[4], |py| {
        (
            py.int(301).unwrap(),
            py.int(302).unwrap(),
            py.int(303).unwrap(),
        )
    });
    out.push((
        "s4_alloc_p_q_r",
        stmt(py, repl, &[], &[4], |py| rec(py, &[p, q, r], &mut n)),
    ));
    stmt(py, repl, &[], &[1], |py| py.drop(q).unwrap());
    stmt(py, repl, &[], &[1], |py| py.drop(p).unwrap());
    let (s, t, u) = stmt(py, repl, &[], &[4], |py| {
        (
            py.int(304).unwrap(),
            py.int(305).unwrap(),
            py.int(306).unwrap(),
        )
    });
    out.push((
        "s4_after_del_q_then_p_alloc_s_t_u",
        stmt(py, repl, &[], &[4], |py| rec(py, &[s, t, u], &mut n)),
    ));
    stmt(py, repl, &[], &[2], |_| ()); // t5 = array.array('l')
                                       // for k in range(10): t5.append(id(int('7777')))   (k, range, t5, id, int)
    let t5 = stmt(py, repl, &[], &[5], |py| {
        (0..10)
            .map(|_| {
                let x = py.int(7777).unwrap();
                let i = py.id(&x).unwrap();
                py.drop(x).unwrap();
                let v = i.value;
                py.drop(i).unwrap();
                v
            })
            .collect()
    });
    out.push(("s5_temporary_int_7777", t5));
    out
}

/// For each id of `later`, the index in `earlier` holding the same address (or None).
fn reuse_map(earlier: &[i64], later: &[i64]) -> Vec<Option<usize>> {
    later
        .iter()
        .map(|a| earlier.iter().position(|b| b == a))
        .collect()
}

fn scenario_maps(steps: &[(&str, Vec<i64>)]) -> Vec<(String, Vec<Option<usize>>)> {
    let get = |tag: &str| &steps.iter().find(|(t, _)| *t == tag).unwrap().1;
    let pairs = [
        ("s1_alloc_x", "s1_after_del_x_alloc_y"),
        ("s2_alloc_z", "s2_after_forward_free_z_alloc_w"),
        ("s3_alloc_a", "s3_survivors_a_odd"),
        ("s3_alloc_a", "s3_after_del_even_alloc_b"),
        ("s4_alloc_p_q_r", "s4_after_del_q_then_p_alloc_s_t_u"),
        ("s5_temporary_int_7777", "s5_temporary_int_7777"),
    ];
    pairs
        .iter()
        .map(|(e, l)| (format!("{e} -> {l}"), reuse_map(get(e), get(l))))
        .collect()
}

#[test]
fn free_list_reuse_scenarios_s1_to_s5_reuse_the_recorded_slots() {
    let runs = sections("free_list_reuse.txt");
    let mut checked = 0;
    for (title, rows) in runs
        .iter()
        .filter(|(t, _)| t.contains("free_list_reuse.py"))
    {
        // `python -i < script`: the REPL compiles each statement just before running it.
        let model = run_free_list_reuse(title.contains("-i <"));
        let model_maps = scenario_maps(&model);
        let mut steps: Vec<(&str, Vec<i64>)> = Vec::new();
        for (tag, _) in &model {
            let ids: Vec<i64> = rows
                .iter()
                .filter(|r| r[0] == *tag)
                .map(|r| n(&r[3]))
                .collect();
            assert!(!ids.is_empty(), "{title}: {tag}");
            steps.push((tag, ids));
        }
        let recorded = scenario_maps(&steps);
        for ((what, want), (_, got)) in recorded.iter().zip(&model_maps) {
            assert_eq!(got, want, "{title}: {what}");
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        3 * 6,
        "the two script runs and the REPL run, six relations each"
    );
}

#[test]
fn a_freed_992_byte_tokenizer_chunk_is_reused_by_the_next_int_block() {
    // The recording: an `other` malloc(992) (tok_new), its free, then an int block at
    // the same address.
    let text = std::fs::read_to_string(py27("block_addresses.txt")).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .take_while(|r: &Vec<&str>| r.len() > 4)
        .collect();
    let other = rows.iter().position(|r| r[4] == "other").unwrap();
    let tok = rows[other][2];
    assert_eq!(rows[other + 1][1..3], ["free", tok]);
    assert_eq!(
        (rows[other + 2][1], rows[other + 2][2], rows[other + 2][4]),
        ("malloc", tok, "int")
    );

    // The model, over glibc: the same three calls.
    let mut py = Py2::new(Platform::linux_x86_64()).unwrap();
    let block = py.ints().layout().block_size as usize;
    let _float = py.float(0.5).unwrap(); // the float block of start-up
    let tok = py.pymem_malloc(block).unwrap(); // tok_new
    py.pymem_free(tok).unwrap(); // parsetok
    let blocks_before = py.ints().n_blocks();
    let mut held = Vec::new();
    while py.ints().n_blocks() == blocks_before {
        held.push(py.int(1_000_000 + held.len() as i64).unwrap());
    }
    assert_eq!(py.ints().block_list().next(), Some(tok));
}

/// What a complete trace holds, counted from the file itself (not through the checker):
/// the lines whose address or numbers the model must predict, and the answers taken from
/// glibc and the kernel.
#[derive(Debug, Default)]
struct Counted {
    pops: u64,           // I/i lines
    clear_fields: u64,   // K: block + live, X: block, L: 5 numbers
    clear_lines: u64,    // K/X/L lines
    blocks: u64,         // B/b lines (size and empty free list are checked, the address given)
    small_pymalloc: u64, // m O of 1..=512 bytes, r O whose NEW lies in a live arena
    fall_through: u64,   // the other m O / r O lines: glibc's answers
    arena_lines: u64,    // A + F lines
    arena_maps: u64,     // A lines
    other: u64,          // D/d and f O lines: applied, no address to predict
}

fn count_lines(path: &Path) -> Counted {
    let mut c = Counted::default();
    let mut arenas: Vec<(u64, u64)> = Vec::new(); // live arenas: (base, size), from A/F lines
    let in_arena =
        |arenas: &[(u64, u64)], a: Addr| arenas.iter().any(|&(b, n)| a.0 >= b && a.0 - b < n);
    let mut reader = Pyrec27Reader::open(path).unwrap();
    while let Some(ev) = reader.next_event().unwrap() {
        match ev.kind {
            EventKind::ObjPop { .. } => c.pops += 1,
            EventKind::ClearKeep { .. } => {
                c.clear_fields += 2;
                c.clear_lines += 1;
            }
            EventKind::ClearFree { .. } => {
                c.clear_fields += 1;
                c.clear_lines += 1;
            }
            EventKind::ClearDone { .. } => {
                c.clear_fields += 5;
                c.clear_lines += 1;
            }
            EventKind::BlockNew { .. } => c.blocks += 1,
            EventKind::Malloc { size, .. } if (1..=512).contains(&size) => c.small_pymalloc += 1,
            EventKind::Realloc { new, .. } if in_arena(&arenas, new) => c.small_pymalloc += 1,
            EventKind::Malloc { .. } | EventKind::Realloc { .. } => c.fall_through += 1,
            EventKind::ArenaAlloc { size, addr } => {
                arenas.push((addr.0, size));
                c.arena_lines += 1;
                c.arena_maps += 1;
            }
            EventKind::ArenaFree { addr, .. } => {
                arenas.retain(|a| a.0 != addr.0);
                c.arena_lines += 1;
            }
            _ => c.other += 1,
        }
    }
    c
}

#[test]
fn the_complete_traces_match_every_int_float_and_small_block_address() {
    for name in ["startup.trace.gz", "seed.trace.gz", "ints_churn.trace.gz"] {
        let path = py27(name);
        let report = check_file(&path, &CheckOptions::default()).unwrap();
        let c = count_lines(&path);
        eprintln!("{name}: {report:?} {c:?}");
        assert!(report.ok(), "{name}: {:?}", report.first_divergence);
        assert!(
            c.pops > 0 && c.clear_fields > 0 && c.small_pymalloc > 1000,
            "{name}"
        );
        assert_eq!(report.matched, report.checked, "{name}");
        assert!(report.checked > c.pops + c.small_pymalloc, "{name}");
        // Every I/i, every small pymalloc address, every ClearFreeList number and the two
        // numbers of each B/b line: compared one by one.
        assert_eq!(
            report.checked,
            c.pops + c.small_pymalloc + c.clear_fields + 2 * c.blocks,
            "{name}: {c:?}"
        );
        // Taken from the recording: block, arena and fall-through addresses.
        assert_eq!(
            report.given,
            c.blocks + c.arena_maps + c.fall_through,
            "{name}"
        );
        assert_eq!(
            report.arena_events, c.arena_lines,
            "{name}: every A/F line at its call"
        );
        assert_eq!(report.not_checked, 0, "{name}: no line left unmodelled");
        assert_eq!(
            report.events,
            c.pops
                + c.clear_lines
                + c.blocks
                + c.small_pymalloc
                + c.fall_through
                + c.arena_lines
                + c.other,
            "{name}: every event accounted for"
        );
    }
}

/// The free-list events a facade log and a trace are compared on: every int event, and
/// the float ClearFreeList lines (gc.collect() runs both).
fn free_list_event(kind: &EventKind) -> bool {
    match *kind {
        EventKind::ObjPop { kind, .. }
        | EventKind::ObjPush { kind, .. }
        | EventKind::BlockNew { kind, .. } => kind == FreeListKind::Int,
        EventKind::ClearKeep { .. } | EventKind::ClearFree { .. } | EventKind::ClearDone { .. } => {
            true
        }
        _ => false,
    }
}

#[test]
fn ints_churn_scripted_from_the_traced_state_prints_the_recorded_ids_and_events() {
    use pyalloc::check::pyrec27::state_until;
    use pyalloc::scripts::ints_churn;
    let path = py27("ints_churn.trace.gz");
    // The script's first statement that touches ints: `for k in xrange(1000, 6000)` pops k,
    // then `int(str(k))` pops 1000 again: the first two consecutive int pops of 1000.
    let mut reader = Pyrec27Reader::open(&path).unwrap();
    let (mut prev, mut start, mut blocks) = (None, None, Vec::new());
    while let Some(ev) = reader.next_event().unwrap() {
        if let EventKind::ObjPop {
            kind: FreeListKind::Int,
            value,
            ..
        } = ev.kind
        {
            if value == 1000 && start.is_none() {
                if let Some((1000, line)) = prev {
                    start = Some(line);
                }
            }
            prev = Some((value, ev.line));
        } else if matches!(
            ev.kind,
            EventKind::ObjPush {
                kind: FreeListKind::Int,
                ..
            }
        ) {
            prev = None;
        }
        if let (
            Some(_),
            EventKind::BlockNew {
                kind: FreeListKind::Int,
                addr,
                ..
            },
        ) = (start, ev.kind)
        {
            blocks.push(addr); // glibc's choice: taken from the trace
        }
    }
    let start = start.expect("the script's start");
    let stop = state_until(&path, |ev| ev.line >= start).unwrap();
    assert_eq!(stop.line, start);
    assert!(stop.report.ok() && stop.report.checked > 262);
    let mut py = Py2::from_state(stop.state);
    py.heap().with(|h| h.queue(blocks));
    py.start_log();
    let run = ints_churn(&mut py).unwrap();
    let log = py.take_log();

    // stdout: "gc.collect() returned N", then each array as "NAME LEN" and hex ids.
    let text = {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(py27("ints_churn.stdout.txt.gz")).unwrap(),
        )
        .read_to_string(&mut s)
        .unwrap();
        s
    };
    let mut want = text.lines();
    assert_eq!(
        want.next().unwrap(),
        format!("gc.collect() returned {}", run.gc_collect)
    );
    for (name, ids) in [
        ("P1", &run.p1),
        ("P2", &run.p2),
        ("P3", &run.p3),
        ("SMALL", &run.p4),
    ] {
        assert_eq!(want.next().unwrap(), format!("{name} {}", ids.len()));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(want.next().unwrap(), format!("{:x}", id.0), "{name}[{i}]");
        }
    }
    // And the free-list events, one for one, from the script's start.
    let log: Vec<EventKind> = log.into_iter().filter(free_list_event).collect();
    let mut reader = Pyrec27Reader::open(&path).unwrap();
    let mut recorded = Vec::new();
    while let Some(ev) = reader.next_event().unwrap() {
        if ev.line >= start && free_list_event(&ev.kind) {
            recorded.push(ev.kind);
            if recorded.len() == log.len() {
                break;
            }
        }
    }
    assert!(log.len() > 20_000);
    assert_eq!(recorded.len(), log.len());
    for (i, (got, want)) in log.iter().zip(&recorded).enumerate() {
        assert_eq!(got, want, "free-list event {i} of the script");
    }
}

#[test]
fn exhausting_the_free_list_hands_out_fresh_blocks_in_runs_of_41_one_chunk_apart() {
    // free_list_exhaust.py (s6): big = list(xrange(1000000, 1005000)), ids in order.
    let run = &sections("free_list_reuse.txt")
        .into_iter()
        .find(|(t, _)| t.contains("free_list_exhaust.py") && t.contains("setarch -R"))
        .unwrap()
        .1;
    let ids: Vec<i64> = run
        .iter()
        .filter(|r| r[0] == "s6_alloc_5000")
        .map(|r| n(&r[3]))
        .collect();
    assert_eq!(ids.len(), 5000);
    // The model, from a fresh interpreter, makes the same list.
    let mut py = Py2::new(Platform::linux_x86_64()).unwrap();
    let lay = *py.ints().layout();
    let big = py.list(1_000_000, 1_005_000).unwrap();
    let model: Vec<i64> = big.iter().map(|o| o.addr.0 as i64).collect();
    // Split both into runs of consecutive ids one object apart (descending).
    let runs = |ids: &[i64]| -> Vec<(usize, usize)> {
        let mut out = vec![(0, 1)];
        for k in 1..ids.len() {
            if ids[k - 1] - ids[k] == lay.object_size as i64 {
                out.last_mut().unwrap().1 += 1;
            } else {
                out.push((k, 1));
            }
        }
        out
    };
    let (rec_runs, model_runs) = (runs(&ids), runs(&model));
    // Once the leftovers are used up, every run is a whole fresh block, the last one partial.
    let full = |rs: &[(usize, usize)]| {
        rs.iter()
            .position(|r| r.1 == lay.n_objects as usize)
            .unwrap()
    };
    let (rf, mf) = (full(&rec_runs), full(&model_runs));
    let tail =
        |rs: &[(usize, usize)], f: usize| -> Vec<usize> { rs[f..].iter().map(|r| r.1).collect() };
    let (rec_tail, model_tail) = (tail(&rec_runs, rf), tail(&model_runs, mf));
    assert!(rec_tail[..rec_tail.len() - 1]
        .iter()
        .all(|&l| l == lay.n_objects as usize));
    assert!(model_tail[..model_tail.len() - 1]
        .iter()
        .all(|&l| l == lay.n_objects as usize));
    // The last partial block holds what the leftovers did not: the same arithmetic.
    let n = lay.n_objects as usize;
    assert_eq!(*rec_tail.last().unwrap(), (5000 - rec_runs[rf].0) % n);
    assert_eq!(*model_tail.last().unwrap(), (5000 - model_runs[mf].0) % n);
    // Fresh blocks mostly sit one glibc chunk apart: the recording's commonest stride
    // between consecutive blocks is the model's (it only ever carves consecutively).
    let strides = |ids: &[i64], rs: &[(usize, usize)], f: usize| -> Vec<i64> {
        rs[f..]
            .windows(2)
            .map(|w| ids[w[1].0] - ids[w[0].0])
            .collect()
    };
    let rec_strides = strides(&ids, &rec_runs, rf);
    let model_strides = strides(&model, &model_runs, mf);
    let mode = |v: &[i64]| {
        let mut c = std::collections::HashMap::new();
        for &x in v {
            *c.entry(x).or_insert(0) += 1;
        }
        c.into_iter().max_by_key(|&(_, k)| k).unwrap().0
    };
    assert!(model_strides.iter().all(|&s| s == model_strides[0]));
    assert_eq!(mode(&rec_strides), model_strides[0]);
    assert!(
        rec_strides
            .iter()
            .filter(|&&s| s == model_strides[0])
            .count()
            * 10
            > rec_strides.len() * 9
    );
}
