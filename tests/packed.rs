//! Every event of every recording under ../shared round-trips through the packed
//! pre-decoded form (`trace::packed`), lines included, at 16 bytes an event.

use pyalloc::trace::open::open;
use pyalloc::trace::packed::{Packed, PackedEvents};
use pyalloc::trace::{Event, EventReader, TraceError};
use std::path::{Path, PathBuf};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/traces");

fn recordings() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(SHARED).unwrap() {
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

/// The events of a recording, `None` for a format no reader knows (mimalloc's).
fn events(path: &Path) -> Option<Vec<Event>> {
    let mut r = match open(path) {
        Err(TraceError::UnknownFormat { .. }) => return None,
        r => r.unwrap(),
    };
    let mut v = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        v.push(e);
    }
    Some(v)
}

#[test]
fn the_packed_record_is_at_most_a_third_of_an_event() {
    assert_eq!(std::mem::size_of::<Packed>(), 16);
    assert!(std::mem::size_of::<Packed>() <= 24);
    assert!(3 * std::mem::size_of::<Packed>() <= std::mem::size_of::<Event>());
}

#[test]
fn every_event_of_every_recording_round_trips() {
    let mut read = 0;
    for path in recordings() {
        let Some(want) = events(&path) else {
            continue;
        };
        read += 1;
        let mut r = open(&path).unwrap();
        let packed = PackedEvents::read(r.as_mut()).unwrap();
        assert_eq!(packed.header(), r.header(), "{}", path.display());
        assert_eq!(packed.len(), want.len(), "{}", path.display());
        let got: Vec<Event> = packed.iter().collect();
        if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
            panic!(
                "{} event {i}: {:?} came back as {:?}",
                path.display(),
                want[i],
                got[i]
            );
        }
        // and back again: the events packed from the unpacked ones are the same records
        let again: PackedEvents = got.iter().copied().collect();
        assert_eq!(again.records(), packed.records(), "{}", path.display());
        // recorded addresses fit in 48 bits: escapes are rare
        assert!(
            packed.escaped_len() * 100 <= packed.len().max(100),
            "{}: {} of {} escaped",
            path.display(),
            packed.escaped_len(),
            packed.len()
        );
        // the reader view gives the same events
        let mut rd = packed.reader();
        let mut n = 0;
        while let Some(e) = rd.next_event().unwrap() {
            assert_eq!(e, want[n]);
            n += 1;
        }
        assert_eq!(n, want.len());
    }
    assert!(read >= 16, "{read} readable recordings under {SHARED}");
}
