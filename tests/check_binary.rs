//! `pyalloc check` of a binary trace (`pyalloc convert X.trace.gz X.bin`): the checker is
//! chosen by the recorded header the binary keeps, and the report is the text trace's,
//! number for number, divergence line included.

mod common;
use pyalloc::check::{check_file, CheckOptions};
use pyalloc::replay::ReplayError;
use pyalloc::trace::binary::BinaryWriter;
use pyalloc::trace::open::open;
use pyalloc::trace::{Event, EventKind, TraceHeader};
use pyalloc::Addr;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pyalloc-cb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Every event of a trace, and its header.
fn read_all(path: &Path) -> (TraceHeader, Vec<Event>) {
    let mut r = open(path).unwrap();
    let mut events = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        events.push(e);
    }
    (r.header().clone(), events)
}

fn write_binary(path: &Path, header: &TraceHeader, events: &[Event]) {
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = BinaryWriter::new(f, header).unwrap();
    for e in events {
        w.write_event(e).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn a_binary_trace_checks_exactly_as_its_text_in_every_recorded_format() {
    for rel in [
        "cpython-2.7.18-linux-x86_64/seed.trace.gz",
        "cpython-3.11.7-linux-x86_64/startup_only.trace.gz",
        "glibc-2.36-linux-x86_64/python27_so_loop.trace.gz",
    ] {
        let text = common::trace(rel);
        let (header, events) = read_all(&text);
        let bin = tmp(&format!("{}.bin", rel.replace('/', "_")));
        write_binary(&bin, &header, &events);
        let want = check_file(&text, &CheckOptions::default()).unwrap();
        let got = check_file(&bin, &CheckOptions::default()).unwrap();
        assert!(want.ok() && want.checked > 1000, "{rel}: {want:?}");
        assert_eq!(got, want, "{rel}");
    }
}

#[test]
fn a_divergence_in_a_binary_trace_names_the_text_line() {
    let text = common::trace("cpython-2.7.18-linux-x86_64/startup.trace.gz");
    let (header, mut events) = read_all(&text);
    // Move the 500th small pymalloc answer by 16 bytes.
    let (k, line) = events
        .iter()
        .enumerate()
        .filter_map(|(k, e)| match e.kind {
            EventKind::Malloc { size, .. } if (1..=512).contains(&size) => Some((k, e.line)),
            _ => None,
        })
        .nth(500)
        .unwrap();
    if let EventKind::Malloc { addr, .. } = &mut events[k].kind {
        *addr = Addr(addr.0 + 16);
    }
    let bin = tmp("moved.bin");
    write_binary(&bin, &header, &events);
    let r = check_file(&bin, &CheckOptions::default()).unwrap();
    let d = r.first_divergence.clone().unwrap();
    assert_eq!((d.event, d.line), (k as u64, line));
    assert!(d.why.contains("free-list head"), "{}", d.why);
    let all = check_file(
        &bin,
        &CheckOptions {
            keep_going: true,
            ..CheckOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        all.events,
        events.len() as u64,
        "keep-going reads to the end"
    );
    assert!(all.checked > r.checked && all.matched < all.checked);
}

#[test]
fn a_binary_trace_of_no_recorded_format_is_refused_by_name() {
    let header = TraceHeader {
        lines: vec!["pyalloc synthetic workload".into()],
    };
    let bin = tmp("synthetic.bin");
    write_binary(&bin, &header, &[]);
    match check_file(&bin, &CheckOptions::default()) {
        Err(ReplayError::Unsupported(m)) => assert!(m.contains("pyalloc replay"), "{m}"),
        other => panic!("{other:?}"),
    }
}
