//! Trace input and output through the CLI: outputs never written over their input and
//! never left half-written, `-` and FIFOs read as files, hostile input refused with one
//! sentence, every format sniffed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/traces");
const PYALLOC: &str = env!("CARGO_BIN_EXE_pyalloc");

fn shared(rel: &str) -> PathBuf {
    Path::new(SHARED).join(rel)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pyalloc-traceio-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs pyalloc with `stdin` fed to it: (success, stdout, stderr).
fn pyalloc_in(args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new(PYALLOC)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pyalloc(args: &[&str]) -> (bool, String, String) {
    pyalloc_in(args, b"")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut out,
    )
    .unwrap();
    out
}

/// The file names in `d` (to see that no temporary file is left behind).
fn names(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn convert_refuses_its_input_by_inode_and_leaves_it_whole() {
    let d = scratch("same");
    let text = d.join("same.txt");
    std::fs::write(
        &text,
        gunzip(&shared("cpython-3.11.7-linux-x86_64/startup_only.trace.gz")),
    )
    .unwrap();
    let before = std::fs::read(&text).unwrap();
    let bin = d.join("same.bin");
    assert!(pyalloc(&["convert", s(&text), s(&bin)]).0);
    let bin_before = std::fs::read(&bin).unwrap();
    let link = d.join("link.txt");
    std::os::unix::fs::symlink(&text, &link).unwrap();
    for (input, output) in [(&text, &text), (&bin, &bin), (&text, &link), (&link, &text)] {
        let (ok, _, err) = pyalloc(&["convert", s(input), s(output)]);
        assert!(!ok, "{} -> {} accepted", input.display(), output.display());
        assert!(err.contains("is the input"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(std::fs::read(&text).unwrap(), before);
    assert_eq!(std::fs::read(&bin).unwrap(), bin_before);
    assert_eq!(names(&d), ["link.txt", "same.bin", "same.txt"]);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_failed_convert_leaves_no_output_and_no_temporary_file() {
    let d = scratch("fail");
    let bad = d.join("bad.txt");
    std::fs::write(
        &bad,
        "# glibc malloc-family call trace: t\nm 16 0x1000\nm what 0x2000\n",
    )
    .unwrap();
    let out = d.join("out.bin");
    let (ok, _, err) = pyalloc(&["convert", s(&bad), s(&out)]);
    assert!(!ok);
    assert!(err.contains(":3:"), "{err}");
    assert_eq!(names(&d), ["bad.txt"]);
    // an existing output keeps its old contents
    std::fs::write(&out, b"old").unwrap();
    assert!(!pyalloc(&["convert", s(&bad), s(&out)]).0);
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    assert_eq!(names(&d), ["bad.txt", "out.bin"]);
    std::fs::remove_dir_all(&d).ok();
}

/// `-` is standard input for every reader: plain, gzip or binary, sniffed from the
/// stream; `check` of each gives the same report as of the file.
#[test]
fn standard_input_reads_plain_gzip_and_binary() {
    let d = scratch("stdin");
    let gz = shared("cpython-2.7.18-linux-x86_64/seed.trace.gz");
    let bin = d.join("seed.bin");
    assert!(pyalloc(&["convert", s(&gz), s(&bin)]).0);
    let (ok, want, err) = pyalloc(&["check", "--json", s(&gz)]);
    assert!(ok, "{err}");
    for bytes in [
        std::fs::read(&gz).unwrap(),
        gunzip(&gz),
        std::fs::read(&bin).unwrap(),
    ] {
        let (ok, got, err) = pyalloc_in(&["check", "--json", "-"], &bytes);
        assert!(ok, "{err}");
        assert_eq!(got, want);
        let (ok, got, err) = pyalloc_in(&["replay", "-", "--model", "null", "--json"], &bytes);
        assert!(ok, "{err}");
        assert!(got.contains("\"events\":"), "{got}");
    }
    // convert from standard input
    let back = d.join("back.txt");
    let (ok, _, err) = pyalloc_in(&["convert", "-", s(&back)], &std::fs::read(&bin).unwrap());
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&back).unwrap(), gunzip(&gz));
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_fifo_is_read_once_and_dev_zero_is_refused_in_one_line() {
    let d = scratch("fifo");
    let fifo = d.join("f");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let trace = shared("glibc-2.36-linux-x86_64/python27_so_loop.trace.gz");
    let (ok, want, _) = pyalloc(&["check", "--json", s(&trace)]);
    assert!(ok);
    let writer = {
        let (fifo, trace) = (fifo.clone(), trace.clone());
        std::thread::spawn(move || {
            let bytes = std::fs::read(&trace).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .unwrap()
                .write_all(&bytes)
                .unwrap();
        })
    };
    let (ok, got, err) = pyalloc(&["check", "--json", s(&fifo)]);
    writer.join().unwrap();
    assert!(ok, "{err}");
    assert_eq!(got, want);
    for cmd in [
        &["check", "/dev/zero"][..],
        &["replay", "/dev/zero"],
        &["convert", "/dev/zero", s(&d.join("z.txt"))],
    ] {
        let (ok, _, err) = pyalloc(cmd);
        assert!(!ok);
        assert_eq!(err.lines().count(), 1, "{cmd:?}: {err}");
        assert!(err.len() < 600, "{cmd:?}: {} bytes of message", err.len());
        assert!(err.contains("not text"), "{cmd:?}: {err}");
    }
    std::fs::remove_dir_all(&d).ok();
}

/// A gzip that inflates to far more than a line may hold, with no newline: refused with
/// the line number, the message short, the memory bounded.
#[test]
fn a_line_without_end_is_refused_with_its_number() {
    let d = scratch("long");
    let path = d.join("bomb.trace.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(b"# glibc malloc-family call trace: t\nm 16 0x1000\n")
        .unwrap();
    let chunk = vec![b'7'; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&chunk).unwrap(); // 64 MiB, one line
    }
    enc.finish().unwrap();
    let out = d.join("out.bin");
    for cmd in [&["replay", s(&path)][..], &["convert", s(&path), s(&out)]] {
        let (ok, _, err) = pyalloc(cmd);
        assert!(!ok, "{cmd:?}");
        assert!(err.contains(":3: line longer than"), "{cmd:?}: {err}");
        assert!(err.len() < 600, "{cmd:?}: {} bytes of message", err.len());
    }
    assert!(!out.exists());
    // the CPython 3 reader too
    let path = d.join("long3.trace");
    let mut text = b"# pymalloc allocation trace (t)\nm O 16 1000\n".to_vec();
    text.extend(std::iter::repeat(b'f').take(3 << 20));
    text.push(b'\n');
    std::fs::write(&path, text).unwrap();
    let (ok, _, err) = pyalloc(&["replay", s(&path), "--model", "null"]);
    assert!(!ok);
    assert!(err.contains(":3: line longer than"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn generate_is_bounded_and_says_what_it_wrote() {
    let d = scratch("generate");
    let out = d.join("g.trace.gz");
    let (ok, _, err) = pyalloc(&[
        "generate",
        "-o",
        s(&out),
        "--events",
        "18446744073709551615",
    ]);
    assert!(!ok);
    assert!(err.contains("at most"), "{err}");
    assert_eq!(names(&d), Vec::<String>::new());
    let (ok, _, err) = pyalloc(&["generate", "-o", s(&out), "--events", "5000"]);
    assert!(ok, "{err}");
    let size = std::fs::metadata(&out).unwrap().len();
    assert_eq!(
        err.trim_end(),
        format!(
            "pyalloc generate: wrote {}: 5000 events, {size} bytes (text, gzip)",
            out.display()
        )
    );
    assert_eq!(&std::fs::read(&out).unwrap()[..2], &[0x1f, 0x8b]);
    // check says precisely why it does not hold a generated workload to a model
    let (ok, _, err) = pyalloc(&["check", s(&out)]);
    assert!(!ok);
    assert!(err.contains("synthetic workload"), "{err}");
    assert!(err.contains("pyalloc replay"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

/// text → binary → text gives back every recording the crate reads, byte for byte
/// (header, events, 2.7 float text, glibc marks and trailer), and so does text → text.
#[test]
fn every_shared_recording_round_trips_through_binary_byte_for_byte() {
    let d = scratch("lossless");
    let files = common::recordings();
    let mut read = 0;
    for src in &files {
        if pyalloc::trace::Opened::open(src).is_err() {
            // a format the crate does not read: convert says so in one line
            let (ok, _, err) = pyalloc(&["convert", s(src), s(&d.join("x.bin"))]);
            assert!(!ok && err.lines().count() == 1, "{}: {err}", src.display());
            continue;
        }
        read += 1;
        let orig = gunzip(src);
        let (bin, back, direct) = (d.join("t.bin"), d.join("t.txt"), d.join("d.txt"));
        for (from, to) in [(src, &bin), (&bin, &back), (src, &direct)] {
            let (ok, _, err) = pyalloc(&["convert", s(from), s(to)]);
            assert!(ok, "{} -> {}: {err}", from.display(), to.display());
        }
        for out in [&back, &direct] {
            let got = std::fs::read(out).unwrap();
            if got != orig {
                let line = got
                    .split(|&b| b == b'\n')
                    .zip(orig.split(|&b| b == b'\n'))
                    .position(|(a, b)| a != b);
                panic!(
                    "{}: differs at line {:?}",
                    src.display(),
                    line.map(|l| l + 1)
                );
            }
        }
    }
    assert!(read >= 14, "only {read} recordings read");
    std::fs::remove_dir_all(&d).ok();
}

/// Another tool's trace keeps only its events: convert refuses it unless told
/// `--events-only`.
#[test]
fn another_tools_trace_converts_only_with_events_only() {
    let d = scratch("foreign");
    let log = d.join("mt.log");
    std::fs::write(
        &log,
        "= Start\n@ ./a.out:[0x401156] + 0x4052a0 0x64\n@ ./a.out:[0x401170] - 0x4052a0\n= End\n",
    )
    .unwrap();
    let out = d.join("mt.bin");
    let (ok, _, err) = pyalloc(&["convert", s(&log), s(&out)]);
    assert!(!ok);
    assert!(
        err.contains("mtrace") && err.contains("--events-only"),
        "{err}"
    );
    assert!(!out.exists());
    let (ok, _, err) = pyalloc(&["convert", "--events-only", s(&log), s(&out)]);
    assert!(ok, "{err}");
    assert!(err.contains(": 2 events"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

/// ltrace's default output (the `=` column padded) and heaptrack lines with a leading
/// space are read, sniffed, and their events replayed, not counted as other lines.
#[test]
fn padded_ltrace_and_heaptrack_lines_are_read() {
    let d = scratch("padded");
    let lt = d.join("lt.txt");
    std::fs::write(
        &lt,
        "malloc(24)                                       = 0x55d0c5a0b2a0\n\
         calloc(4, 8)                                     = 0x55d0c5a0b2c0\n\
         free(0x55d0c5a0b2a0)                             = <void>\n\
         +++ exited (status 0) +++\n",
    )
    .unwrap();
    let ht = d.join("ht.txt");
    std::fs::write(
        &ht,
        "v 10100 3\n + 18 1 55f8fa2f80a0\n + 20 1 55f8fa2f80c0\n - 55f8fa2f80a0\n c 1f4\n",
    )
    .unwrap();
    for (path, format, events, other) in [(&lt, "ltrace", 3, 1), (&ht, "heaptrack", 3, 2)] {
        let (ok, out, err) = pyalloc(&["replay", s(path), "--model", "null", "--json"]);
        assert!(ok, "{format}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["format"], format, "{out}");
        assert_eq!(v["events"], events, "{format}: {out}");
        let mut r = pyalloc::trace::open(path).unwrap();
        let mut n = 0;
        while r.next_event().unwrap().is_some() {
            n += 1;
        }
        assert_eq!((n, r.other_lines()), (events, other), "{format}");
    }
    std::fs::remove_dir_all(&d).ok();
}

/// A recording cut at a line boundary is reported as truncated, with the count its
/// header or trailer promised and the count found.
#[test]
fn a_recording_cut_at_a_line_boundary_is_truncated() {
    let d = scratch("cut");
    for (rel, keep) in [
        ("cpython-3.11.7-linux-x86_64/startup_only.trace.gz", 100_000),
        ("glibc-2.36-linux-x86_64/python27_so_loop.trace.gz", 3000),
        ("glibc-2.36-linux-x86_64/synthetic.trace.gz", 200_000),
    ] {
        let text = gunzip(&shared(rel));
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        let cut = d.join("cut.trace");
        std::fs::write(&cut, lines[..keep].concat()).unwrap();
        let events = lines[..keep]
            .iter()
            .filter(|l| !l.starts_with(b"#"))
            .count();
        let (ok, _, err) = pyalloc(&["check", "--keep-going", s(&cut)]);
        assert!(!ok, "{rel}: a cut file checked");
        assert!(err.contains("truncated"), "{rel}: {err}");
        assert!(err.contains(&format!("found {events})")), "{rel}: {err}");
        if rel.contains("3.11") {
            let promised = String::from_utf8_lossy(&text)
                .lines()
                .find_map(|l| l.strip_prefix("# records: "))
                .and_then(|r| r.split_whitespace().next())
                .unwrap()
                .to_string();
            assert!(err.contains(&format!("expected {promised},")), "{err}");
        }
        // the whole file, through binary, still reads to its end
        let (ok, _, err) = pyalloc(&["replay", s(&shared(rel)), "--model", "null"]);
        assert!(ok, "{rel}: {err}");
    }
    // a trailer whose count disagrees with the lines read
    let text = String::from_utf8(gunzip(&shared(
        "glibc-2.36-linux-x86_64/python27_so_loop.trace.gz",
    )))
    .unwrap();
    let trailer = text.find("# trailer").unwrap();
    let at = text[..trailer].rfind("\nf 0x").unwrap() + 1; // the last free
    let end = at + text[at..].find('\n').unwrap() + 1;
    let dropped = format!("{}{}", &text[..at], &text[end..]);
    let path = d.join("dropped.trace");
    std::fs::write(&path, dropped).unwrap();
    let (ok, _, err) = pyalloc(&["replay", s(&path), "--model", "null"]);
    assert!(!ok);
    assert!(err.contains("count_f"), "{err}");
    std::fs::remove_dir_all(&d).ok();
}

/// Requests the recorded allocator could not satisfy (2^62 bytes: no mapping nor brk heap
/// holds it; 2^63: over PTRDIFF_MAX): a recorded NULL is glibc's own answer, so the model's
/// refusal matches it; a recorded success the model cannot give is one sentence naming the
/// event, the line, the call and why; never an out-of-memory kill, never a raw mismatch.
#[test]
fn a_request_the_allocator_cannot_satisfy_fails_as_it_would() {
    let d = scratch("huge");
    let glibc = |name: &str, body: &str| {
        let p = d.join(name);
        let text = format!(
            "# glibc malloc-family call trace: {name}\n# brk_at_first_call 0x555555559000\n{body}"
        );
        std::fs::write(&p, text).unwrap();
        p
    };
    let (e62, e63) = (1u64 << 62, 1u64 << 63);
    // recorded NULL: a match, in check and in replay
    let null = glibc(
        "null.trace",
        &format!("m {e62} 0x0\nm {e63} 0x0\nc {e62} 4 0x0\nm 300000 0x7ffff7a00010\nr 0x7ffff7a00010 {e62} 0x0\nf 0x7ffff7a00010\n"),
    );
    let (ok, out, err) = pyalloc(&["check", s(&null)]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("every checked address matched"), "{out}");
    let (ok, out, err) = pyalloc(&["replay", "--model", "glibc-2.36", s(&null)]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("failed calls 4"), "{out}");
    // recorded success: the model says why it cannot, naming the event, line and call
    for (size, why) in [(e62, "ENOMEM"), (e63, &(e63 - 1).to_string()[..])] {
        let ok_trace = glibc("ok.trace", &format!("m {size} 0x7ff000000010\n"));
        for args in [
            vec!["check", s(&ok_trace)],
            vec!["replay", "--model", "glibc-2.36", s(&ok_trace)],
        ] {
            let (ok, _, err) = pyalloc(&args);
            assert!(!ok, "{args:?} passed");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(err.contains("event 0 (line 3)"), "{err}");
            assert!(
                err.contains(&format!("malloc({size}) = 0x7ff000000010")),
                "{err}"
            );
            assert!(err.contains(why), "{err}");
        }
    }
    // CPython 3: pymalloc passes a request over 512 bytes to the raw allocator, which
    // returned NULL; without the raw line the divergence says that line is missing
    let py = |name: &str, body: &str| {
        let p = d.join(name);
        let text = format!(
            "# pymalloc allocation trace recorded from REAL CPython\n# interpreter: CPython 3.11.7\n{body}"
        );
        std::fs::write(&p, text).unwrap();
        p
    };
    let both = py("both.trace", &format!("m r {e62} 0\nm O {e62} 0\n"));
    let (ok, out, err) = pyalloc(&["check", s(&both)]);
    assert!(ok, "{out}{err}");
    let lost = py("lost.trace", &format!("m O {e62} 0\n"));
    let (ok, out, _) = pyalloc(&["check", s(&lost)]);
    assert!(!ok);
    assert!(out.contains("no raw call"), "{out}");
    assert!(!out.contains("not the one CPython made next"), "{out}");
    std::fs::remove_dir_all(&d).ok();
}

/// `-` as an output is refused in one line, and no file named `-` appears.
#[test]
fn dash_as_an_output_is_refused_not_created() {
    let d = scratch("dash");
    let input = d.join("in.trace");
    std::fs::write(
        &input,
        "# glibc malloc-family call trace: t\nm 24 0x1000\nf 0x1000\n",
    )
    .unwrap();
    let out = Command::new(PYALLOC)
        .args(["convert", s(&input), "-"])
        .current_dir(&d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("give a file name"), "{err}");
    assert_eq!(
        names(&d),
        vec!["in.trace".to_string()],
        "nothing else written"
    );
    std::fs::remove_dir_all(&d).ok();
}

/// A CPython 3 recording cut mid-line, with or without its `# records:` line, is refused
/// as cut (never a divergence or a free of a shortened address): a recorder writes whole
/// lines. The same lines with their newline read to the end.
#[test]
fn every_recorders_format_cut_mid_line_is_truncated() {
    // CPython 2.7, glibc and mimalloc recordings are written in whole lines: a last line
    // without its newline is a cut, whether it still parses (a shortened address) or not
    let d = scratch("midline-all");
    for rec in [
        "cpython-2.7.18-linux-x86_64/startup.trace.gz",
        "glibc-2.36-linux-x86_64/synthetic.trace.gz",
        "cpython-3.13.0-mimalloc-linux-x86_64/startup_only.trace.gz",
    ] {
        let text = String::from_utf8(gunzip(&shared(rec))).unwrap();
        let half = text.len() / 2;
        for (what, at) in [
            ("inside an address", text[..half].rfind('\n').unwrap() + 7),
            ("after one letter", text[..half].rfind('\n').unwrap() + 2),
        ] {
            let cut = d.join("cut.trace");
            std::fs::write(&cut, &text[..at]).unwrap();
            let (ok, _, err) = pyalloc(&["check", s(&cut)]);
            assert!(!ok, "{rec} cut {what} passed");
            assert!(
                err.contains("truncated") && err.contains("cut mid-line"),
                "{rec} {what}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_recording_cut_mid_line_is_truncated_whatever_its_header() {
    let d = scratch("midline");
    let text = gunzip(&shared("cpython-3.11.7-linux-x86_64/startup_only.trace.gz"));
    let text = String::from_utf8(text).unwrap();
    let no_count: String = text
        .lines()
        .filter(|l| !l.starts_with("# records:"))
        .map(|l| format!("{l}\n"))
        .collect();
    for (name, body) in [("counted", &text), ("uncounted", &no_count)] {
        // cut inside the last address of an event line (a free: its address shortened)
        let at = body[..body.len() / 2].rfind("\nf O ").unwrap() + 8;
        let cut = d.join(format!("{name}.trace"));
        std::fs::write(&cut, &body[..at]).unwrap();
        for args in [
            vec!["check", s(&cut)],
            vec!["replay", "--model", "null", s(&cut)],
        ] {
            let (ok, _, err) = pyalloc(&args);
            assert!(!ok, "{name}: {args:?} passed a file cut mid-line");
            assert!(err.contains("truncated"), "{err}");
            // with a count, the count says it first; without, the missing newline does
            let why = if name == "counted" {
                "# records:"
            } else {
                "without a newline"
            };
            assert!(err.contains(why), "{name}: {err}");
        }
        // cut inside the size of a malloc: the line no longer parses, still a cut
        let at = body[..body.len() / 3].rfind("\nm O ").unwrap() + 6;
        std::fs::write(&cut, &body[..at]).unwrap();
        let (ok, _, err) = pyalloc(&["check", s(&cut)]);
        assert!(!ok && err.contains("cut mid-line"), "{name}: {err}");
    }
    // whole lines, no count: the events read to the end
    let whole = d.join("whole.trace");
    let at = no_count[..no_count.len() / 2].rfind('\n').unwrap() + 1;
    std::fs::write(&whole, &no_count[..at]).unwrap();
    let (ok, out, err) = pyalloc(&["replay", "--model", "null", s(&whole)]);
    assert!(ok, "{out}{err}");
    std::fs::remove_dir_all(&d).ok();
}
