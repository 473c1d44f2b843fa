//! What every test, property test and bench that reads the recordings shares: where
//! they are, and one sentence saying what to do when they are not there.
//!
//! The recordings live in `shared/`, a folder that sits beside the checkout (`../shared`
//! from the project's root: `shared/seed`, `shared/traces`), not inside the repository.
//! Tests read its files in place.

#![allow(dead_code)] // each test target uses its own part

use std::path::{Path, PathBuf};

/// `../shared`, beside the checkout.
pub const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared");

/// What a test says when it cannot find `../shared` or a file in it.
pub fn missing(path: &Path) -> String {
    format!(
        "{} not found: the recordings live in ../shared, a folder `shared` that sits beside \
         this checkout (with seed/ and traces/ in it; see README.md), not inside the repository",
        path.display()
    )
}

/// The path of `rel` in `../shared`; stops the test with [`missing`]'s sentence when the
/// file is not there.
pub fn shared(rel: &str) -> PathBuf {
    let path = Path::new(SHARED).join(rel);
    if !path.exists() {
        panic!("{}", missing(&path));
    }
    path
}

/// A recording in `../shared/traces`.
pub fn trace(rel: &str) -> PathBuf {
    shared(&format!("traces/{rel}"))
}

/// A text file of `../shared`, read whole.
pub fn read(rel: &str) -> String {
    let path = shared(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every complete recording (`*.trace.gz`) under `../shared/traces`, one folder deep, sorted.
pub fn recordings() -> Vec<PathBuf> {
    let traces = shared("traces");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&traces).unwrap_or_else(|_| panic!("{}", missing(&traces))) {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            if f.to_string_lossy().ends_with(".trace.gz") {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

/// CPU time of the calling thread (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`).
pub fn thread_cpu_time() -> std::time::Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,  // seconds
        nsec: i64, // nanoseconds
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3; // Linux
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    std::time::Duration::new(ts.sec as u64, ts.nsec as u32)
}

/// Runs the `pyalloc` binary with `args`: (success, standard output, standard error).
/// For test and bench targets (Cargo tells them where the binary is; examples, which also
/// include this file, are not told).
pub fn pyalloc(args: &[&str]) -> (bool, String, String) {
    let Some(bin) = option_env!("CARGO_BIN_EXE_pyalloc") else {
        panic!("pyalloc(): only for test and bench targets (cargo names the binary there)")
    };
    let out = std::process::Command::new(bin).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The replayer the benches time: pymalloc 3.11 pinned to a Linux x86-64 recording.
pub fn pinned_311() -> pyalloc::replay::Replayer {
    pyalloc::replay::Replayer::new(
        pyalloc::pymalloc::PymallocParams::v3_11(),
        pyalloc::replay::Addresses::Pinned,
        &pyalloc::Platform::linux_x86_64(),
    )
}

/// Steps `rp` through `events`; the calls whose address matched the recording.
pub fn matched_calls(rp: &mut pyalloc::replay::Replayer, events: &[pyalloc::trace::Event]) -> u64 {
    let mut matched = 0u64;
    for e in events {
        if let pyalloc::replay::Step::Call { matched: true, .. } = rp.step(e) {
            matched += 1;
        }
    }
    matched
}

/// A `compare --real-rss` run whose real figures come from the model itself:
/// startup_only.trace.gz through `cpython-3.11/glibc-2.36` and `glibc-2.36` at its three
/// requests of 1016 bytes, `glibc-2.36` held to a VmRSS file written in `dir` from that
/// model's resident bytes at the markers (whole KiB, plus 10000 KiB of "interpreter"), the
/// last phase shifted up by twice its tolerance, so the first phases are held and the last
/// is not.
pub struct HeldRun {
    /// `compare`'s arguments, `--real-rss` included; add `--json`, `--csv`, `--html F`.
    pub args: Vec<String>,
    /// The `--json` output of `args`.
    pub json: serde_json::Value,
    /// The `--json` output without `--real-rss`.
    pub plain: serde_json::Value,
    /// The VmRSS lines written (KiB).
    pub real_kib: Vec<i64>,
}

/// Builds a [`HeldRun`] in `dir` (created).
pub fn held_run(dir: &Path) -> HeldRun {
    std::fs::create_dir_all(dir).unwrap();
    let mut args: Vec<String> = [
        "compare",
        &trace("cpython-3.11.7-linux-x86_64/startup_only.trace.gz").to_string_lossy(),
        "--models",
        "cpython-3.11/glibc-2.36,glibc-2.36",
        "--at-marker",
        "1016",
    ]
    .map(String::from)
    .into();
    let json = |args: &[String]| -> serde_json::Value {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.push("--json");
        let (ok, out, err) = pyalloc(&a);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let plain = json(&args);
    let resident: Vec<i64> = plain["traces"][0]["models"][1]["markers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resident"].as_i64().unwrap())
        .collect();
    assert!(resident.len() >= 2, "{plain}");
    let last = resident.len() - 1;
    let predicted_kib = (resident[last] - resident[0]) / 1024;
    let shift = 2 * (predicted_kib.abs() * 3 / 100).max(512);
    let real_kib: Vec<i64> = resident
        .iter()
        .enumerate()
        .map(|(k, r)| r / 1024 + 10000 + if k == last { shift } else { 0 })
        .collect();
    let file = dir.join("glibc.rss");
    let text: String = real_kib
        .iter()
        .enumerate()
        .map(|(k, v)| format!("phase{k} {v}\n"))
        .collect();
    std::fs::write(&file, text).unwrap();
    args.push("--real-rss".into());
    args.push(format!("glibc-2.36={}", file.display()));
    let json = json(&args);
    HeldRun {
        args,
        json,
        plain,
        real_kib,
    }
}

/// The unsigned LEB128 varint at `bytes[*pos]` (seven bits a byte, low group first, the
/// high bit set on every byte but the last), as the view pages' op streams carry them;
/// `*pos` moves past it.
pub fn varint(bytes: &[u8], pos: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0u32);
    loop {
        let b = bytes[*pos];
        *pos += 1;
        v |= u64::from(b & 127) << shift;
        if b < 128 {
            return v;
        }
        shift += 7;
    }
}
