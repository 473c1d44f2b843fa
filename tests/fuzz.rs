//! Fuzzing the readers, `check` and `replay` with mutated recordings.
//!
//! ```text
//!   seeds: the head of every recording under ../shared (each format), other tools'
//!          formats, a binary and a gzip form   ─┐
//!   mutate: byte flips, cuts, swapped / duplicated / dropped lines, huge and negative
//!          numbers, NUL, invalid UTF-8, CRLF, gzip headers on plain data      ─┤
//!   run:   read every event ─▶ check (recordings) ─▶ replay (every model kind)  ◀┘
//! ```
//! Each input must end in a value: events, a report, or an error. Counted as failures:
//! - a panic (caught and reported with the input saved under target/fuzz-failures/);
//! - a hang: a watchdog aborts the run, saving the input, when one input takes over 30 s;
//! - a false success: the input's events are inconsistent by themselves (an O/M or libc
//!   block freed twice, freed without being allocated, or returned while still live; an
//!   arena mapped twice or unmapped unmapped) and yet `check` says every address matched,
//!   or `replay` returns a report;
//! - memory out of bounds: the run's peak RSS over 2 GiB.
//!
//! Every input that ever failed is kept in tests/fuzz-regressions/ and replayed first.
//! `cargo test --release --test fuzz` runs a short seeded campaign (the CI's);
//! `PYALLOC_FUZZ_INPUTS=1000000 PYALLOC_FUZZ_SEED=7 cargo test --release --test fuzz -- --nocapture`
//! runs at length.

use flate2::write::GzEncoder;
use flate2::Compression;
use pyalloc::check::{check_file, CheckOptions};
use pyalloc::trace::{open, Domain, EventKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PYALLOC: &str = env!("CARGO_BIN_EXE_pyalloc");
/// Lines of each recording a seed keeps (header included).
const SEED_LINES: usize = 400;
/// The longest one input may take before the run is called hung.
const HANG: Duration = Duration::from_secs(30);
/// The most memory the whole run may hold.
const MAX_RSS_KIB: u64 = 2 << 20;

/// Where this run writes (seeds, inputs, failures).
fn scratch() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The first `SEED_LINES` lines of a (gzip) recording.
fn head_of(path: &Path) -> Vec<u8> {
    let mut text = Vec::new();
    let f = std::fs::File::open(path).unwrap();
    let mut gz = flate2::read::MultiGzDecoder::new(f);
    let mut buf = vec![0u8; 1 << 16];
    while text.iter().filter(|&&b| b == b'\n').count() < SEED_LINES {
        let n = gz.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let cut = text
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(SEED_LINES - 1)
        .map_or(text.len(), |(i, _)| i + 1);
    text.truncate(cut);
    text
}

/// A recording's head made a whole trace: its `# records: N` header line says the events
/// it keeps, and a glibc tracer's head gets the trailer (`# trailer`, `# count_*`) its
/// destructor would have written; so a seed reads in full and a cut of it is a cut.
fn whole_seed(head: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8(head).unwrap();
    let events = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let mut out = String::new();
    for l in text.lines() {
        if l.starts_with("# records:") {
            out.push_str(&format!("# records: {events}\n"));
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if text.lines().any(|l| l.starts_with("# tracer")) {
        out.push_str("# trailer: destructor ran; later calls (if any) follow this line 0\n");
        for letter in ["m", "c", "r", "f", "a", "v", "p"] {
            let n = text
                .lines()
                .filter(|l| l.split(' ').next() == Some(letter))
                .count();
            out.push_str(&format!("# count_{letter} {n}\n"));
        }
    }
    out.into_bytes()
}

/// The seeds: (name, bytes).
fn seeds(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let traces = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/traces")).to_path_buf();
    assert!(
        traces.is_dir(),
        "{}: the recordings sit in ../shared beside the checkout (see README.md)",
        traces.display()
    );
    let mut files: Vec<PathBuf> = walk(&traces)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".trace.gz"))
        .collect();
    files.sort();
    for f in files {
        let name = f
            .strip_prefix(&traces)
            .unwrap()
            .to_string_lossy()
            .replace('/', "__");
        let text = whole_seed(head_of(&f));
        // Only formats the crate reads seed the campaign.
        let p = dir.join(format!("seed-{name}.txt"));
        std::fs::write(&p, &text).unwrap();
        if open(&p).is_err() {
            continue;
        }
        // Its binary form, through the crate's own converter.
        let bin = dir.join(format!("seed-{name}.bin"));
        let ok = std::process::Command::new(PYALLOC)
            .args(["convert", "--events-only"])
            .arg(&p)
            .arg(&bin)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
            || std::process::Command::new(PYALLOC)
                .arg("convert")
                .arg(&p)
                .arg(&bin)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
        if ok {
            out.push((format!("{name}.bin"), std::fs::read(&bin).unwrap()));
        }
        out.push((name, text));
    }
    out.push((
        "mtrace".into(),
        b"= Start\n@ ./a.out:[0x401136] + 0x4052a0 0x18\n@ ./a.out:[0x401144] + 0x4052c0 0x400\n\
          @ ./a.out:[0x401150] < 0x4052a0\n@ ./a.out:[0x401150] > 0x4056d0 0x30\n\
          @ ./a.out:[0x40115c] - 0x4052c0\n@ ./a.out:[0x401168] - 0x4056d0\n= End\n"
            .to_vec(),
    ));
    out.push((
        "ltrace".into(),
        b"malloc(24) = 0x602010\ncalloc(4, 8) = 0x602030\nrealloc(0x602010, 4000) = 0x602060\n\
          free(0x602030) = <void>\nfree(0x602060) = <void>\n+++ exited (status 0) +++\n"
            .to_vec(),
    ));
    out.push((
        "heaptrack".into(),
        b"v 10100 3\nX ./a.out\nt 401136 0\n+ 18 1 602010\n+ 20 1 602030\n- 602010\n- 602030\nc 64\n"
            .to_vec(),
    ));
    assert!(
        out.len() >= 20,
        "expected seeds of every recorded format, got {}",
        out.len()
    );
    out
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Numbers that break careless arithmetic.
const HOSTILE: [&str; 10] = [
    "18446744073709551615",
    "18446744073709551616",
    "4611686018427387904",
    "-1",
    "-9223372036854775808",
    "0",
    "ffffffffffffffff",
    "99999999999999999999999999",
    "1e308",
    "0x",
];

/// One byte-level mutation: flips, a cut, a NUL, stray bytes.
fn mutate_bytes(rng: &mut StdRng, input: &mut Vec<u8>) {
    if input.is_empty() {
        input.push(0);
    }
    match rng.gen_range(0..4) {
        0 => {
            let i = rng.gen_range(0..input.len());
            input[i] ^= 1 << rng.gen_range(0..8);
        }
        1 => {
            let at = rng.gen_range(0..input.len());
            input.truncate(at);
        }
        2 => {
            let i = rng.gen_range(0..input.len());
            input[i] = 0;
        }
        _ => {
            let i = rng.gen_range(0..=input.len());
            let b: u8 = rng.gen();
            input.insert(i, b);
        }
    }
}

/// One random mutation of `input`.
fn mutate_once(rng: &mut StdRng, input: &mut Vec<u8>) {
    let lines = |v: &Vec<u8>| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, &b) in v.iter().enumerate() {
            if b == b'\n' {
                out.push((start, i + 1));
                start = i + 1;
            }
        }
        if start < v.len() {
            out.push((start, v.len()));
        }
        out
    };
    if input.is_empty() {
        input.push(b'\n');
    }
    // Line-level changes dominate: they keep an input readable and test the checkers;
    // byte-level ones test the readers.
    const WEIGHTS: [u32; 12] = [2, 2, 3, 3, 3, 4, 1, 1, 1, 1, 5, 0];
    let mut pick = rng.gen_range(0..WEIGHTS.iter().sum::<u32>());
    let mut what = 0;
    while pick >= WEIGHTS[what] {
        pick -= WEIGHTS[what];
        what += 1;
    }
    match what {
        0 => {
            // Byte flips.
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..input.len());
                input[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        1 => {
            // A cut anywhere.
            let at = rng.gen_range(0..input.len());
            input.truncate(at);
        }
        2..=4 => {
            // Swap two lines, duplicate one, or drop one.
            let ls = lines(input);
            if ls.len() < 2 {
                return;
            }
            let (a, b) = (rng.gen_range(0..ls.len()), rng.gen_range(0..ls.len()));
            let line = |i: usize| input[ls[i].0..ls[i].1].to_vec();
            let (la, lb) = (line(a), line(b));
            let what = rng.gen_range(0..3);
            let mut out = Vec::with_capacity(input.len() + la.len());
            for i in 0..ls.len() {
                match what {
                    0 if i == a => out.extend_from_slice(&lb),
                    0 if i == b => out.extend_from_slice(&la),
                    1 if i == a => {
                        out.extend_from_slice(&la);
                        out.extend_from_slice(&la);
                    }
                    2 if i == a => {}
                    _ => out.extend_from_slice(&line(i)),
                }
            }
            *input = out;
        }
        5 => {
            // A hostile number in place of a token.
            let ls = lines(input);
            let (s, e) = ls[rng.gen_range(0..ls.len())];
            let line = String::from_utf8_lossy(&input[s..e]).into_owned();
            let mut toks: Vec<String> = line.trim_end().split(' ').map(String::from).collect();
            let t = rng.gen_range(0..toks.len());
            toks[t] = HOSTILE[rng.gen_range(0..HOSTILE.len())].to_string();
            let new = format!("{}\n", toks.join(" "));
            input.splice(s..e, new.into_bytes());
        }
        6 => {
            let i = rng.gen_range(0..=input.len());
            input.insert(i, 0);
        }
        7 => {
            let i = rng.gen_range(0..=input.len());
            input.splice(i..i, [0xff, 0xfe, 0xc3]);
        }
        8 => {
            // CRLF line ends.
            let mut out = Vec::with_capacity(input.len() * 11 / 10);
            for &b in input.iter() {
                if b == b'\n' {
                    out.push(b'\r');
                }
                out.push(b);
            }
            *input = out;
        }
        9 => {
            // A gzip header on plain data.
            input.splice(0..0, [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff]);
        }
        10 => {
            // A line repeated many times (an address returned while live, a double free).
            let ls = lines(input);
            let (s, e) = ls[rng.gen_range(0..ls.len())];
            let line = input[s..e].to_vec();
            let at = rng.gen_range(s..=input.len()).min(input.len());
            let at = lines(input)
                .iter()
                .map(|l| l.1)
                .find(|&x| x >= at)
                .unwrap_or(input.len());
            for _ in 0..rng.gen_range(1..3) {
                input.splice(at..at, line.iter().copied());
            }
        }
        _ => {
            // Gzip the mutated text (and sometimes cut the gzip).
            let mut g = gzip(input);
            if rng.gen_bool(0.3) {
                let at = rng.gen_range(0..g.len());
                g.truncate(at);
            }
            *input = g;
        }
    }
}

/// What an input's events say about themselves: `Some(why)` when they are inconsistent on
/// their own (no model needed), read through the crate's reader. Blocks of the O/M
/// domains and of the C library share one address space, so one set holds them (no
/// address is live in both at once); which domains a trace may hold at all is its format's
/// grammar, enforced by the readers.
fn inconsistent(path: &Path) -> Option<String> {
    let mut r = open(path).ok()?;
    let mut held: HashSet<u64> = HashSet::new();
    let mut arenas: HashSet<u64> = HashSet::new();
    let mut n = 0u64;
    let mut why = None;
    loop {
        let e = match r.next_event() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(_) => return None,
        };
        n += 1;
        if why.is_some() {
            continue;
        }
        let (set, alloc, free) = match e.kind {
            EventKind::Malloc { domain, addr, .. } | EventKind::Calloc { domain, addr, .. } => {
                (domain, Some(addr.0), None)
            }
            EventKind::Realloc {
                domain, old, new, ..
            } => (domain, Some(new.0), Some(old.0)),
            EventKind::Free { domain, addr } => (domain, None, Some(addr.0)),
            EventKind::Memalign { addr, .. }
            | EventKind::Valloc { addr, .. }
            | EventKind::Pvalloc { addr, .. } => (Domain::Libc, Some(addr.0), None),
            EventKind::ArenaAlloc { addr, .. } => {
                if !arenas.insert(addr.0) {
                    why = Some(format!("event {n}: arena {:#x} mapped twice", addr.0));
                }
                continue;
            }
            EventKind::ArenaFree { addr, .. } => {
                if !arenas.remove(&addr.0) {
                    why = Some(format!("event {n}: arena {:#x} unmapped unmapped", addr.0));
                }
                continue;
            }
            _ => continue,
        };
        let set = match set {
            Domain::Obj | Domain::Mem | Domain::Libc => &mut held,
            _ => continue,
        };
        if let Some(f) = free.filter(|&f| f != 0) {
            if !set.remove(&f) {
                why = Some(format!("event {n}: free of {f:#x}, not live"));
                continue;
            }
        }
        if let Some(a) = alloc.filter(|&a| a != 0) {
            if !set.insert(a) {
                why = Some(format!("event {n}: {a:#x} returned while live"));
            }
        }
    }
    why
}

/// How one input ended.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    inputs: u64,
    read_ok: u64,
    checked_ok: u64,
    refused: u64,
    panics: u64,
    false_successes: u64,
}

/// Runs one input; returns the failure to keep, if any.
fn run_one(path: &Path, tally: &mut Tally) -> Option<String> {
    tally.inputs += 1;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // 1. Every event, or an error.
        let read = (|| {
            let mut r = open(path)?;
            while r.next_event()?.is_some() {}
            Ok::<_, pyalloc::trace::TraceError>(())
        })();
        if let Err(e) = read {
            if std::env::var_os("PYALLOC_FUZZ_VERBOSE").is_some() {
                let msg = e.to_string();
                let msg = msg.split_once(": ").map_or(&msg[..], |x| x.1);
                let shape: String = msg
                    .chars()
                    .filter(|c| !c.is_ascii_digit())
                    .take(70)
                    .collect();
                eprintln!("refused: {shape}");
            }
            return (false, None, None);
        }
        // 2. check: a report or an error.
        let opts = CheckOptions::default();
        let check = check_file(path, &opts).ok();
        // 3. replay through a model of the trace's kind and the null model.
        let mut replayed = Vec::new();
        for model in ["null", "bump", "glibc-2.36", "cpython-3.11"] {
            let ok = (|| {
                let mut r = open(path).ok()?;
                pyalloc::replay::replay_named(&mut *r, model, &Default::default()).ok()
            })();
            replayed.push((model, ok.is_some()));
        }
        (true, check, Some(replayed))
    }));
    match outcome {
        Err(p) => {
            tally.panics += 1;
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Some(format!("panic: {msg}"))
        }
        Ok((false, _, _)) => {
            tally.refused += 1;
            None
        }
        Ok((true, check, replayed)) => {
            tally.read_ok += 1;
            let bad = inconsistent(path);
            if let Some(c) = &check {
                let success = c.first_divergence.is_none() && c.matched == c.checked;
                if success {
                    tally.checked_ok += 1;
                }
                if success && c.checked > 0 {
                    if let Some(why) = &bad {
                        tally.false_successes += 1;
                        return Some(format!("false success of check: {why}"));
                    }
                }
            }
            if let (Some(why), Some(replayed)) = (&bad, replayed) {
                if let Some((m, _)) = replayed.iter().find(|(_, ok)| *ok) {
                    tally.false_successes += 1;
                    return Some(format!("false success of replay --model {m}: {why}"));
                }
            }
            None
        }
    }
}

fn peak_rss_kib() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss as u64
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every input that once failed, replayed as it was.
#[test]
fn every_input_that_once_failed_now_ends_in_a_value() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for p in walk(&dir) {
        if p.extension().is_some_and(|e| e == "md") {
            continue;
        }
        if let Some(why) = run_one(&p, &mut tally) {
            failures.push(format!("{}: {why}", p.display()));
        }
    }
    assert!(
        tally.inputs > 0,
        "no regression inputs in {}",
        dir.display()
    );
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The campaign: seeded mutations of every seed.
#[test]
fn mutated_recordings_never_panic_hang_or_pass_as_good() {
    let inputs = env_u64("PYALLOC_FUZZ_INPUTS", 1500);
    let seed = env_u64("PYALLOC_FUZZ_SEED", 20261130);
    let dir = scratch();
    let seeds = seeds(&dir);
    let failures_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    // The watchdog: each worker stamps when its input started (0: idle).
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..threads).map(|_| AtomicU64::new(0)).collect());
    let epoch = Instant::now();
    {
        let started = Arc::clone(&started);
        let dir = dir.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = epoch.elapsed().as_millis() as u64;
            for (w, s) in started.iter().enumerate() {
                let t = s.load(Ordering::Relaxed);
                if t != 0 && now.saturating_sub(t) > HANG.as_millis() as u64 {
                    eprintln!(
                        "fuzz: worker {w}'s input took over {HANG:?}: a hang; input kept at {}",
                        dir.join(format!("input-{w}")).display()
                    );
                    std::process::abort();
                }
            }
        });
    }
    let mut workers = Vec::new();
    for w in 0..threads {
        let seeds = seeds.clone();
        let started = Arc::clone(&started);
        let dir = dir.clone();
        let failures_dir = failures_dir.clone();
        workers.push(std::thread::spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed ^ (w.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
            let mut tally = Tally::default();
            let mut failures = Vec::new();
            let path = dir.join(format!("input-{w}"));
            let mine = (inputs + threads - 1 - w) / threads;
            for i in 0..mine {
                let (name, base) = &seeds[rng.gen_range(0..seeds.len())];
                let mut input = base.clone();
                let n = [1, 1, 1, 1, 1, 1, 2, 2, 2, 3][rng.gen_range(0..10)];
                for _ in 0..n {
                    if name.ends_with(".bin") {
                        // A binary trace: byte flips, cuts, NULs and stray bytes.
                        mutate_bytes(&mut rng, &mut input);
                    } else {
                        mutate_once(&mut rng, &mut input);
                    }
                }
                if !name.ends_with(".bin") && rng.gen_bool(0.15) {
                    // The mutated text, gzipped (and sometimes the gzip cut).
                    input = gzip(&input);
                    if rng.gen_bool(0.3) {
                        let at = rng.gen_range(0..input.len());
                        input.truncate(at);
                    }
                }
                std::fs::write(&path, &input).unwrap();
                started[w as usize]
                    .store(epoch.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
                let failed = run_one(&path, &mut tally);
                started[w as usize].store(0, Ordering::Relaxed);
                if let Some(why) = failed {
                    std::fs::create_dir_all(&failures_dir).unwrap();
                    let keep = failures_dir.join(format!("{seed}-{w}-{i}-{name}"));
                    std::fs::copy(&path, &keep).unwrap();
                    failures.push(format!("{}: {why}", keep.display()));
                }
            }
            (tally, failures)
        }));
    }
    let mut total = Tally::default();
    let mut failures = Vec::new();
    for w in workers {
        let (t, f) = w.join().unwrap();
        total.inputs += t.inputs;
        total.read_ok += t.read_ok;
        total.checked_ok += t.checked_ok;
        total.refused += t.refused;
        total.panics += t.panics;
        total.false_successes += t.false_successes;
        failures.extend(f);
    }
    let rss = peak_rss_kib();
    eprintln!(
        "fuzz: {} inputs (seed {seed}, {} seeds): {} read in full, {} refused by a reader, \
         {} checked with every address matched; {} panics, 0 hangs, {} false successes; \
         peak RSS {} MiB",
        total.inputs,
        seeds.len(),
        total.read_ok,
        total.refused,
        total.checked_ok,
        total.panics,
        total.false_successes,
        rss / 1024
    );
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(total.inputs, inputs);
    assert!(
        total.read_ok > 0 && total.refused > 0,
        "a campaign that never reads or never refuses tests nothing: {total:?}"
    );
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    assert!(rss < MAX_RSS_KIB, "peak RSS {} MiB", rss / 1024);
}
