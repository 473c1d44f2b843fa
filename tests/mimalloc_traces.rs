//! The mimalloc model held to the real CPython 3.13.0 recordings on mimalloc 2.1.2: one
//! test per trace (every O/M address, every mimalloc arena mapping), CPython's own
//! `_PyObject_DebugMallocStats` numbers at every marker (read from the `*.stderr.txt`
//! files), the same in the model's own address space, and bad input.

use pyalloc::check::{check_file, CheckOptions};
use pyalloc::mimalloc::stats::parse_stderr_stats;
use pyalloc::replay::ReplayError;
use pyalloc::report::stats::{mimalloc_markers, stats_at, StatsAt};
use pyalloc::trace::mimalloc::{Caller, MiLine, MimallocReader, OsCall};
use pyalloc::trace::{EventKind, EventReader};
use std::path::{Path, PathBuf};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/traces/cpython-3.13.0-mimalloc-linux-x86_64"
);

fn trace(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

/// What the recording itself says: (lines after the header, O/M addresses returned,
/// mimalloc mmaps), counted by reading it.
fn counts(path: &Path) -> (u64, u64, u64) {
    let mut r = MimallocReader::open(path).unwrap();
    let (mut lines, mut addrs, mut maps) = (0, 0, 0);
    while let Some(l) = r.next_line().unwrap() {
        lines += 1;
        match l {
            MiLine::Event(e) => {
                if matches!(
                    e.kind,
                    EventKind::Malloc { domain, .. }
                    | EventKind::Calloc { domain, .. }
                    | EventKind::Realloc { domain, .. }
                    if matches!(domain, pyalloc::trace::Domain::Obj | pyalloc::trace::Domain::Mem)
                ) {
                    addrs += 1;
                }
            }
            MiLine::Os(o) => {
                if o.caller == Caller::Mimalloc && matches!(o.call, OsCall::Mmap { .. }) {
                    maps += 1;
                }
            }
        }
    }
    (lines, addrs, maps)
}

fn check_exact(name: &str, model: Option<&str>) {
    let path = trace(name);
    let opts = CheckOptions {
        model: model.map(str::to_string),
        ..Default::default()
    };
    let r = check_file(&path, &opts).unwrap();
    assert!(
        r.first_divergence.is_none(),
        "{name}: {:?}",
        r.first_divergence
    );
    let (lines, addrs, maps) = counts(&path);
    assert_eq!(
        r.events, lines,
        "{name}: every line after the header is an event"
    );
    assert_eq!(r.checked, addrs, "{name}: every O/M address is checked");
    assert_eq!(r.matched, r.checked, "{name}");
    if model.is_none() {
        assert_eq!(
            r.arena_events, maps,
            "{name}: every mimalloc mmap, made by the model"
        );
    }
}

#[test]
fn startup_only_every_address() {
    check_exact("startup_only.trace.gz", None);
}

#[test]
fn ints_every_address() {
    check_exact("ints.trace.gz", None);
}

#[test]
fn segments_every_address_across_three_segments_and_a_huge_one() {
    check_exact("segments.trace.gz", None);
}

#[test]
fn own_address_space_gives_the_same_layout() {
    for name in ["startup_only.trace.gz", "segments.trace.gz"] {
        check_exact(name, Some("mimalloc-2.1.2+own"));
    }
}

fn stats_equal(name: &str) {
    let stderr = std::fs::read_to_string(trace(&format!("{name}.stderr.txt"))).unwrap();
    let want = parse_stderr_stats(&stderr);
    assert!(
        !want.is_empty(),
        "{name}: the stderr file has the stats sections"
    );
    let got = mimalloc_markers(
        &trace(&format!("{name}.trace.gz")),
        &CheckOptions::default(),
    )
    .unwrap();
    let got: Vec<_> = got.into_iter().map(|(_, s)| s).collect();
    assert_eq!(got, want, "{name}: CPython's numbers at every marker");
}

#[test]
fn ints_stats_equal_cpythons_at_both_markers() {
    stats_equal("ints");
}

#[test]
fn segments_stats_equal_cpythons_at_both_markers() {
    stats_equal("segments");
}

#[test]
fn stats_at_a_marker_prints_cpythons_section() {
    let stderr = std::fs::read_to_string(trace("ints.stderr.txt")).unwrap();
    let (_, text) = stats_at(
        &trace("ints.trace.gz"),
        &CheckOptions::default(),
        StatsAt::Marker(888_889),
    )
    .unwrap();
    // the section as CPython printed it, between the recorder's own lines
    let second = stderr
        .split("=== recorder: _PyObject_DebugMallocStats()")
        .nth(2)
        .unwrap();
    let body: String = second
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("=== recorder"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(text, body);
}

#[test]
fn a_free_of_an_unknown_address_is_an_error_naming_the_event() {
    let dir = tempdir();
    let p = dir.join("bad.trace");
    std::fs::write(
        &p,
        "# mimalloc allocation trace test\n\
         S 1073741824 31540000000 3 0x4022 31540000000 1 unix_mmap\n\
         S 4096 7ffff7fb8000 3 0x4022 0 1 unix_mmap\n\
         m O 64 315400100c0\n\
         f O 31540010100\n",
    )
    .unwrap();
    match check_file(&p, &CheckOptions::default()) {
        Err(ReplayError::Event(pyalloc::replay::EventError {
            event: 3, line: 5, ..
        })) => {}
        other => panic!("{other:?}"),
    }
    // and a mapping the model does not make is a divergence with the reason
    std::fs::write(&p, "# mimalloc allocation trace test\nm O 64 315400100c0\n").unwrap();
    match check_file(&p, &CheckOptions::default()) {
        Err(ReplayError::Event(pyalloc::replay::EventError { event: 0, .. })) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn model_names_are_read_by_model_spec_and_others_refused() {
    // every spelling ModelSpec::parse reads as mimalloc picks its mode; the rest are refused
    for (name, ok) in [
        ("mimalloc", true),
        ("mimalloc-2.1.2+pinned", true),
        ("mimalloc+own", true),
        ("cpython-3.11", false),
        ("mimalloc-2.1.2+nonsense", false),
        ("mimalloc-2.1.2/glibc-2.36", false),
    ] {
        let opts = CheckOptions {
            model: Some(name.to_string()),
            ..Default::default()
        };
        let r = check_file(&trace("startup_only.trace.gz"), &opts);
        match (ok, r) {
            (true, Ok(r)) => assert!(r.ok(), "{name}: {:?}", r.first_divergence),
            (false, Err(e)) => assert!(e.to_string().contains(name), "{name}: {e}"),
            (ok, r) => panic!("{name}: expected ok={ok}, got {r:?}"),
        }
    }
}

#[test]
fn stats_at_an_event_counts_os_lines_as_check_does() {
    // event numbers count the OS lines (the check's numbering): the point reached is the
    // one asked for, and the numbers there are the model's at that line
    let (n, text) = stats_at(
        &trace("startup_only.trace.gz"),
        &CheckOptions::default(),
        StatsAt::Event(5000),
    )
    .unwrap();
    assert_eq!(n, 5000);
    assert!(text.contains("Allocated Blocks: "), "{text}");
}

#[test]
fn the_reader_gives_every_call_to_replay() {
    let mut r = MimallocReader::open(&trace("startup_only.trace.gz")).unwrap();
    let mut n = 0u64;
    while r.next_event().unwrap().is_some() {
        n += 1;
    }
    let (lines, _, _) = counts(&trace("startup_only.trace.gz"));
    assert_eq!(n + r.other_lines(), lines);
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("pyalloc-mimalloc-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One pinned replay, line by line: at every stats marker, (the model's mapped bytes,
/// what the recording's mimalloc `S`/`U` lines so far add up to, the model's resident
/// bytes, the model's numbers); and at the end, the recorded purges (`N` lines: count,
/// bytes) beside the replayer.
struct Markers {
    at: Vec<(u64, u64, u64, pyalloc::mimalloc::MiStats)>,
    recorded_purges: (u64, u64),
    rp: pyalloc::replay::mimalloc::Replayer,
}

fn replay_markers(name: &str, mode: pyalloc::replay::Addresses) -> Markers {
    let mut r = MimallocReader::open(&trace(name)).unwrap();
    let mut rp = pyalloc::replay::mimalloc::Replayer::new(mode, r.header());
    let (mut mapped, mut purges, mut purged) = (0u64, 0u64, 0u64);
    let mut at = Vec::new();
    while let Some(l) = r.next_line().unwrap() {
        if let MiLine::Os(o) = &l {
            if o.caller == Caller::Mimalloc {
                match o.call {
                    OsCall::Mmap { size, .. } => mapped += size,
                    OsCall::Munmap { size, .. } => mapped -= size,
                    OsCall::Madvise { size, .. } => {
                        purges += 1;
                        purged += size;
                    }
                    _ => {}
                }
            }
        }
        let before = rp.markers().len();
        rp.step(&l);
        let line = match &l {
            MiLine::Event(e) => e.line,
            MiLine::Os(o) => o.line,
        };
        // the equations (resident recounted, live pages resident, no purge over a live
        // page) after every OS line, every marker and every 4096th line
        if matches!(l, MiLine::Os(_)) || rp.markers().len() > before || line % 4096 == 0 {
            rp.check_invariants()
                .map_err(|e| format!("{name}: after line {line}: {e}"))
                .unwrap();
        }
        if rp.markers().len() > before {
            let s = rp.markers()[before].1;
            at.push((rp.footprint().mapped_bytes, mapped, rp.resident_bytes(), s));
        }
    }
    Markers {
        at,
        recorded_purges: (purges, purged),
        rp,
    }
}

#[test]
fn mapped_and_committed_at_every_marker_are_the_recordings() {
    for name in ["ints", "segments"] {
        let stderr = std::fs::read_to_string(trace(&format!("{name}.stderr.txt"))).unwrap();
        let want = parse_stderr_stats(&stderr);
        let m = replay_markers(
            &format!("{name}.trace.gz"),
            pyalloc::replay::Addresses::Pinned,
        );
        assert_eq!(m.at.len(), want.len(), "{name}: one sample per marker");
        for ((mapped, recorded, resident, s), w) in m.at.iter().zip(&want) {
            // mapped: exactly the mappings the S/U lines show (arena + its descriptor)
            assert_eq!(mapped, recorded, "{name}: mapped at a marker");
            // CPython's Bytes Reserved / Committed (the pages' blocks), and resident
            // holds at least every committed block (they were all written)
            assert_eq!(
                (s.bytes_reserved, s.bytes_committed),
                (w.bytes_reserved, w.bytes_committed),
                "{name}"
            );
            assert!(
                *resident >= w.bytes_committed,
                "{name}: resident {resident} < committed {}",
                w.bytes_committed
            );
            assert!(resident <= mapped, "{name}: resident beyond mapped");
        }
    }
}

#[test]
fn the_recorded_purges_are_the_models_scheduled_ones() {
    for name in ["startup_only", "ints", "segments"] {
        let m = replay_markers(
            &format!("{name}.trace.gz"),
            pyalloc::replay::Addresses::Pinned,
        );
        let (calls, bytes, unscheduled) = m.rp.purges();
        let (want_calls, want_bytes) = m.recorded_purges;
        assert_eq!(calls, want_calls, "{name}: one purge per N line");
        assert_eq!(
            unscheduled, 0,
            "{name}: every N line purges a span the model freed"
        );
        assert!(
            bytes <= want_bytes,
            "{name}: purged more than the N lines cover"
        );
        if want_calls > 0 {
            assert!(bytes > 0, "{name}: the purged spans had been written");
        }
    }
}

#[test]
fn own_mode_purges_when_due_and_stays_consistent() {
    // segments.py frees spans and allocates pages after: under Purge::Due, purges happen
    // and every invariant (resident recounted, live pages resident) holds at every line
    let m = replay_markers("segments.trace.gz", pyalloc::replay::Addresses::Own);
    let (calls, bytes, _) = m.rp.purges();
    assert!(calls > 0 && bytes > 0, "no purge under Purge::Due");
    let pinned = replay_markers("segments.trace.gz", pyalloc::replay::Addresses::Pinned);
    // the same placement, more given back than the recording's two purges
    assert!(m.rp.resident_bytes() <= pinned.rp.resident_bytes());
}

/// Replays a recording's calls through the whole-process `mimalloc-2.1.2` stack (O/M to
/// mimalloc, R to glibc; nested raw calls are the recorded allocator's own business) and
/// checks the waste equation every 1024 calls and at the end:
/// `live - outside + internal + external + metadata + other_maps == mapped`, and that
/// mimalloc's own walk adds up to its mapped bytes and its live bytes.
fn waste_equation_holds(reader: &mut dyn EventReader, name: &str) -> u64 {
    waste_equation_under(reader, name, "mimalloc-2.1.2").0
}

/// [`waste_equation_holds`] under the model named `model`: (checks made, resident bytes
/// at the end).
fn waste_equation_under(reader: &mut dyn EventReader, name: &str, model: &str) -> (u64, u64) {
    use pyalloc::stack::Route;
    use pyalloc::trace::Domain;
    use std::collections::HashMap;
    let mut stack = pyalloc::replay::ModelSpec::parse(model)
        .unwrap()
        .stack()
        .unwrap();
    let route = |d: Domain| match d {
        Domain::Obj | Domain::Mem => Some(Route::Object),
        Domain::Raw | Domain::Libc => Some(Route::System),
        Domain::RawNested => None,
    };
    let mut blocks: HashMap<u64, (u64, u64)> = HashMap::new(); // recorded -> (model, size)
    let (mut live, mut calls, mut checked) = (0u64, 0u64, 0u64);
    let mut check = |stack: &pyalloc::stack::Stack, live: u64, at: u64| {
        let w = stack.waste(live);
        assert_eq!(
            live - w.outside + w.internal() + w.external() + w.metadata + w.other_maps,
            stack.mapped(),
            "{name}: the waste equation after call {at}: {w:?}"
        );
        let pyalloc::stack::Stack::MimallocGlibc(m, _) = stack else {
            panic!("{name}: not the mimalloc stack")
        };
        let u = m.usage();
        assert_eq!(
            u.total,
            m.mapped(),
            "{name}: mimalloc's parts after call {at}"
        );
        let mi_live = pyalloc::Allocator::stats(m.as_ref()).live_bytes;
        assert_eq!(u.requested, mi_live, "{name}: after call {at}");
        checked += 1;
    };
    while let Some(e) = reader.next_event().unwrap() {
        let did = match e.kind {
            EventKind::Malloc { domain, size, addr } if !addr.is_null() => {
                let Some(r) = route(domain) else { continue };
                let a = stack.malloc(r, size).unwrap();
                blocks.insert(addr.0, (a.0, size));
                live += size;
                true
            }
            EventKind::Calloc {
                domain,
                nelem,
                elsize,
                addr,
            } if !addr.is_null() => {
                let Some(r) = route(domain) else { continue };
                let a = stack.calloc(r, nelem, elsize).unwrap();
                blocks.insert(addr.0, (a.0, nelem * elsize));
                live += nelem * elsize;
                true
            }
            EventKind::Free { domain, addr } => {
                let Some(r) = route(domain) else { continue };
                let Some((a, n)) = blocks.remove(&addr.0) else {
                    continue;
                };
                stack.free(r, pyalloc::Addr(a)).unwrap();
                live -= n;
                true
            }
            EventKind::Realloc {
                domain,
                old,
                size,
                new,
            } if !new.is_null() => {
                let Some(r) = route(domain) else { continue };
                let (from, n) = blocks.remove(&old.0).unwrap_or((0, 0));
                let a = stack.realloc(r, pyalloc::Addr(from), size).unwrap();
                blocks.insert(new.0, (a.0, size));
                live = live - n + size;
                true
            }
            _ => false,
        };
        if did {
            calls += 1;
            if calls % 1024 == 0 {
                check(&stack, live, calls);
            }
        }
    }
    check(&stack, live, calls);
    (checked, stack.resident())
}

#[test]
fn waste_by_cause_adds_up_to_mapped_at_every_sample() {
    for name in ["startup_only", "ints", "segments"] {
        let mut r = MimallocReader::open(&trace(&format!("{name}.trace.gz"))).unwrap();
        assert!(waste_equation_holds(&mut r, name) > 0);
    }
    // a CPython 3.11 recording (pymalloc's calls) replayed under mimalloc
    let p = Path::new(DIR).join("../cpython-3.11.7-linux-x86_64/startup_only.trace.gz");
    let mut r = pyalloc::trace::pymalloc3::Pymalloc3Reader::open(&p).unwrap();
    assert!(waste_equation_holds(&mut r, "3.11 startup_only") > 0);
}

#[test]
fn the_purge_what_if_bounds_resident_from_above() {
    // segments.py frees page spans and goes on allocating: never purging keeps more
    // resident than purging when due, and the equation holds under both
    let open = || MimallocReader::open(&trace("segments.trace.gz")).unwrap();
    let (_, due) = waste_equation_under(&mut open(), "segments", "mimalloc-2.1.2:purge=due");
    let (_, never) = waste_equation_under(&mut open(), "segments", "mimalloc-2.1.2:purge=never");
    assert!(never > due, "purge=never {never} <= purge=due {due}");
}
