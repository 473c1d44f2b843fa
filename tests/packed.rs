//! Every event of every recording under ../shared round-trips through the packed
//! pre-decoded form (`trace::packed`), lines included, at 16 bytes an event.

use pyalloc::trace::open::open;
use pyalloc::trace::packed::{Packed, PackedEvents};
use pyalloc::trace::{Event, EventReader, TraceError};
use std::path::Path;

mod common;
use common::recordings;

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
        // lines recovered at any event, and the kinds read through the records
        for i in (0..want.len())
            .step_by(997)
            .chain(want.len().checked_sub(1))
        {
            assert_eq!(
                packed.line_of(i),
                Some(want[i].line),
                "{} event {i}",
                path.display()
            );
            assert_eq!(packed.kind(&packed.records()[i]), Some(want[i].kind));
        }
        assert_eq!(packed.line_of(want.len()), None);
        // the reader view gives the same events
        let mut rd = packed.reader();
        let mut n = 0;
        while let Some(e) = rd.next_event().unwrap() {
            assert_eq!(e, want[n]);
            n += 1;
        }
        assert_eq!(n, want.len());
    }
    assert!(
        read >= 16,
        "{read} readable recordings under ../shared/traces"
    );
}

/// The pinned pymalloc replay reads the packed records straight (`Replayer::step_at`):
/// every step of every CPython 3 recording is the one `step` gives on the decoded event,
/// in pinned and own mode.
#[test]
fn the_replayer_steps_the_same_on_packed_records() {
    use pyalloc::pymalloc::PymallocParams;
    use pyalloc::replay::{Addresses as Mode, Replayer};
    use pyalloc::Platform;
    let mut read = 0;
    for path in recordings() {
        let name = path.to_string_lossy().into_owned();
        if !name.contains("/cpython-3.") || name.contains("mimalloc") {
            continue;
        }
        let mut r = open(&path).unwrap();
        let packed = PackedEvents::read(r.as_mut()).unwrap();
        let release = packed
            .header()
            .get("interpreter")
            .expect("a CPython 3 recording names its interpreter");
        let params = PymallocParams::for_release(release).unwrap();
        for mode in [Mode::Pinned, Mode::Own] {
            let platform = Platform::linux_x86_64();
            let mut a = Replayer::new(params.clone(), mode, &platform);
            let mut b = Replayer::new(params.clone(), mode, &platform);
            for (i, e) in packed.iter().enumerate() {
                let (sa, sb) = (a.step(&e), b.step_at(&packed, i).unwrap());
                assert_eq!(sa, sb, "{name} {mode:?} event {i}");
                assert_eq!(a.take_why(), b.take_why(), "{name} {mode:?} event {i}");
            }
            assert!(b.step_at(&packed, packed.len()).is_none());
        }
        read += 1;
    }
    assert!(read >= 9, "{read} CPython 3 recordings");
}
