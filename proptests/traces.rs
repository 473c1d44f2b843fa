//! Traces: the binary format and the text writer/reader are lossless for any event
//! program, and replay keeps its equations after every step of any valid program and
//! names the event of any invalid free.

use crate::common::config;
use proptest::prelude::*;
use pyalloc::replay::{
    model_by_name, replay, Cause, EventError, ReplayError, ReplayOptions, MODEL_NAMES,
};
use pyalloc::trace::binary::{BinaryReader, BinaryWriter};
use pyalloc::trace::open::from_text;
use pyalloc::trace::writer::TextWriter;
use pyalloc::trace::{Domain, Event, EventKind, EventReader, Format, FreeListKind, TraceHeader};
use pyalloc::Addr;

fn domain() -> impl Strategy<Value = Domain> {
    prop_oneof![
        Just(Domain::Obj),
        Just(Domain::Mem),
        Just(Domain::Raw),
        Just(Domain::RawNested),
        Just(Domain::Libc),
    ]
}

fn fl() -> impl Strategy<Value = FreeListKind> {
    prop_oneof![Just(FreeListKind::Int), Just(FreeListKind::Float)]
}

fn addr() -> impl Strategy<Value = Addr> {
    prop_oneof![
        Just(Addr::NULL),
        any::<u64>().prop_map(Addr),
        (0u64..1 << 20).prop_map(|o| Addr(0x7fff_f7a0_0000 + 16 * o)),
    ]
}

/// Any event; `finite` keeps float values finite (text spells NaN payloads alike).
fn kind(finite: bool) -> impl Strategy<Value = EventKind> {
    let n = any::<u64>;
    prop_oneof![
        (domain(), n(), addr()).prop_map(|(domain, size, addr)| EventKind::Malloc {
            domain,
            size,
            addr
        }),
        (domain(), n(), n(), addr()).prop_map(|(domain, nelem, elsize, addr)| EventKind::Calloc {
            domain,
            nelem,
            elsize,
            addr
        }),
        (domain(), addr(), n(), addr()).prop_map(|(domain, old, size, new)| EventKind::Realloc {
            domain,
            old,
            size,
            new
        }),
        (domain(), addr()).prop_map(|(domain, addr)| EventKind::Free { domain, addr }),
        (n(), n(), addr()).prop_map(|(align, size, addr)| EventKind::Memalign {
            align,
            size,
            addr
        }),
        (n(), addr()).prop_map(|(size, addr)| EventKind::Valloc { size, addr }),
        (any::<i64>(), any::<i64>(), any::<i64>())
            .prop_map(|(param, value, ret)| EventKind::Mallopt { param, value, ret }),
        (n(), addr()).prop_map(|(size, addr)| EventKind::ArenaAlloc { size, addr }),
        (addr(), n()).prop_map(|(addr, size)| EventKind::VirtualFree { addr, size }),
        (fl(), n(), addr()).prop_map(|(kind, size, addr)| EventKind::BlockNew { kind, size, addr }),
        (fl(), any::<i64>(), -1e300f64..1e300, addr()).prop_map(move |(kind, v, f, addr)| {
            let value = match kind {
                FreeListKind::Int => v,
                FreeListKind::Float if finite => f.to_bits() as i64,
                FreeListKind::Float => v,
            };
            EventKind::ObjPop { kind, value, addr }
        }),
        (fl(), addr(), n(), n(), n(), n()).prop_map(|(kind, head, kept, freed, live, nfree)| {
            EventKind::ClearDone {
                kind,
                kept,
                freed,
                live,
                nfree,
                head,
            }
        }),
    ]
}

fn read_all(r: &mut dyn EventReader) -> Vec<Event> {
    let mut v = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        v.push(e);
    }
    v
}

/// A valid allocation program over recorded addresses: (is_alloc, slot, size).
#[derive(Debug, Clone)]
enum Op {
    Malloc(u64),
    Free(usize),
    Realloc(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..5000).prop_map(Op::Malloc),
        2 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), 1u64..5000).prop_map(|(i, s)| Op::Realloc(i, s)),
    ]
}

/// Turns ops into mtrace-like events with fresh recorded addresses; returns the events
/// and, after each, the number of live blocks.
fn program(ops: &[Op]) -> (Vec<Event>, Vec<u64>) {
    let mut live: Vec<Addr> = Vec::new();
    let mut next = 0x10_0000u64;
    let mut ev = Vec::new();
    let mut lives = Vec::new();
    for o in ops {
        let kind = match *o {
            Op::Malloc(size) => {
                next += 0x1000;
                live.push(Addr(next));
                EventKind::Malloc {
                    domain: Domain::Libc,
                    size,
                    addr: Addr(next),
                }
            }
            Op::Free(i) if !live.is_empty() => {
                let a = live.swap_remove(i % live.len());
                EventKind::Free {
                    domain: Domain::Libc,
                    addr: a,
                }
            }
            Op::Realloc(i, size) if !live.is_empty() => {
                let j = i % live.len();
                next += 0x1000;
                let old = live[j];
                live[j] = Addr(next);
                EventKind::Realloc {
                    domain: Domain::Libc,
                    old,
                    size,
                    new: Addr(next),
                }
            }
            _ => EventKind::Free {
                domain: Domain::Libc,
                addr: Addr::NULL,
            },
        };
        ev.push(Event {
            kind,
            line: ev.len() as u64 + 1,
        });
        lives.push(live.len() as u64);
    }
    (ev, lives)
}

fn encode(events: &[Event]) -> Vec<u8> {
    let mut w = BinaryWriter::new(Vec::new(), &TraceHeader::default()).unwrap();
    for e in events {
        w.write_event(e).unwrap();
    }
    w.finish().unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// decode(encode(e[..=i])) == e[..=i] for every prefix, lines and header included.
    #[test]
    fn binary_is_lossless(kinds in prop::collection::vec((kind(false), 0u64..3), 1..40)) {
        let mut line = 0u64;
        let events: Vec<Event> = kinds
            .iter()
            .map(|&(kind, gap)| {
                line += if gap == 2 { 1000 } else { gap };
                Event { kind, line }
            })
            .collect();
        let header = TraceHeader { lines: vec!["h1".into(), String::new(), "ü".into()] };
        for i in 0..events.len() {
            let mut w = BinaryWriter::new(Vec::new(), &header).unwrap();
            for e in &events[..=i] {
                w.write_event(e).unwrap();
            }
            let mut r = BinaryReader::from_bytes("p", w.finish().unwrap()).unwrap();
            prop_assert_eq!(&read_all(&mut r), &events[..=i]);
            prop_assert_eq!(r.header(), &header);
        }
    }

    /// Every event the text writer writes reads back through the reader of each recorded
    /// format whose grammar has a line for it, header included; every event has one.
    #[test]
    fn text_is_lossless(kinds in prop::collection::vec(kind(true), 1..40)) {
        let formats = [
            (Format::Pymalloc3, "pymalloc allocation trace (prop)"),
            (Format::Glibc, "glibc malloc-family call trace: prop"),
            (Format::Pyrec27, "PYREC allocator event trace: prop"),
        ];
        for k in &kinds {
            prop_assert!(formats.iter().any(|(f, _)| f.has_line_for(k)), "{:?}: no reader", k);
        }
        for (format, first) in formats {
            let mut w = TextWriter::new(Vec::new());
            let header = TraceHeader { lines: vec![first.into()] };
            w.write_header(&header).unwrap();
            let events: Vec<Event> = kinds
                .iter()
                .filter(|k| format.has_line_for(k))
                .enumerate()
                .map(|(i, &kind)| Event { kind, line: i as u64 + 2 })
                .collect();
            for e in &events {
                w.write_event(e).unwrap();
            }
            let text = String::from_utf8(w.finish().unwrap()).unwrap();
            let mut r = from_text(format, "p", &text).unwrap();
            prop_assert_eq!(read_all(r.as_mut()), events);
            prop_assert_eq!(r.header(), &header);
        }
    }

    /// After every step i of a valid program, through every model:
    /// Σ counts == events == i+1, replayed + context + failed + free_null == events,
    /// model live blocks == program live blocks, moved_live <= live blocks.
    #[test]
    fn replay_keeps_its_equations(ops in prop::collection::vec(op(), 1..50)) {
        let (events, lives) = program(&ops);
        let bytes = encode(&events);
        for name in MODEL_NAMES {
            for i in 0..events.len() {
                let mut r = BinaryReader::from_bytes("p", encode(&events[..=i])).unwrap();
                let mut m = model_by_name(name).unwrap();
                let rep = replay(&mut r, m.as_mut(), &ReplayOptions::default()).unwrap();
                prop_assert_eq!(rep.events, i as u64 + 1);
                prop_assert_eq!(rep.counts.values().sum::<u64>(), rep.events);
                prop_assert_eq!(rep.replayed + rep.context + rep.failed + rep.free_null, rep.events);
                if !name.starts_with("cpython") {
                    // (pymalloc's live_blocks also counts its arenas vector and radix nodes)
                    prop_assert_eq!(m.stats().live_blocks, lives[i], "{} at {}", name, i);
                }
                prop_assert!(rep.moved_live <= lives[i]);
            }
            let _ = &bytes;
        }
    }

    /// A free of an address the program never allocated (or already freed), inserted at
    /// event k, is refused with k as its event number, whatever the model.
    #[test]
    fn a_bad_free_is_named_by_its_event(ops in prop::collection::vec(op(), 1..40), k in any::<usize>(), reuse in any::<bool>()) {
        let (mut events, _) = program(&ops);
        let k = k % (events.len() + 1);
        // a freed address, or one never seen
        let freed = events[..k].iter().find_map(|e| match e.kind {
            EventKind::Free { addr, .. } if !addr.is_null() => Some(addr),
            _ => None,
        });
        let bad = if reuse { freed.unwrap_or(Addr(0x999)) } else { Addr(0x999) };
        events.insert(k, Event { kind: EventKind::Free { domain: Domain::Libc, addr: bad }, line: 0 });
        // an address freed before k may be handed out again later; cut there
        events.truncate(k + 1);
        for name in MODEL_NAMES {
            // (the null model keeps nothing: the driver's own liveness check tells)
            let mut r = BinaryReader::from_bytes("p", encode(&events)).unwrap();
            let mut m = model_by_name(name).unwrap();
            match replay(&mut r, m.as_mut(), &ReplayOptions::default()) {
                Err(ReplayError::Event(EventError {
                    event,
                    source: Cause::NeverAllocated { addr, .. },
                    ..
                })) => {
                    prop_assert_eq!(event, k as u64, "{}", name);
                    prop_assert_eq!(addr, bad);
                }
                // or the model's own diagnosis of the same event (glibc's "free(): invalid
                // pointer"), when it has one
                Err(ReplayError::Event(EventError {
                    event,
                    source: Cause::Model(e),
                    ..
                })) => {
                    prop_assert_eq!(event, k as u64, "{}: {}", name, e);
                }
                other => prop_assert!(false, "{}: {:?}", name, other.map(|r| r.events)),
            }
        }
    }
}
