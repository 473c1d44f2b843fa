//! pyalloc's compact binary trace: the same events as the text formats, a few bytes each,
//! decoded without parsing text, for fast replay.
//!
//! ```text
//!   "PYALLOCB" · version (1 byte = 1)                                      magic, 9 bytes
//!   varint n · n × (varint len · len bytes of UTF-8)                       the header lines
//!   records:
//!     TAG = kind·8 + sub        one byte < 0xF0; sub = domain (O M R r libc = 0..4) or
//!                               free-list kind (int 0, float 1), 7 when the kind has none
//!     fields                    varints; addresses as zigzag(addr − previous address)
//!                               (one register, any field), signed values zigzag-coded
//!     0xFD varint len · bytes   a line with no event of its own, as read (a comment,
//!                               a trailer line, a mark's text: on the line after the
//!                               previous record, or L after 0xFE L; at most 1 MiB)
//!     0xFE varint L             the next record's line is L (otherwise previous line + 1)
//!     0xFF varint N             the end: N events were written; nothing may follow
//! ```
//! A varint is LEB128 (7 bits a byte, low first). Lossless: every [`Event`] field, its
//! line included, the header lines and the text lines come back as written:
//! `decode(encode(events)) == events`; a text trace of pyalloc's own formats written to
//! binary and back is the same bytes (the lines a reader hands over with
//! [`take_text`](super::EventReader::take_text) are kept as text records). A file that stops before the end record, or inside
//! a record, is refused with the byte offset where it stops.

use super::event::event_table;
use super::{Domain, Event, EventKind, FreeListKind};
use crate::addr::Addr;
use std::io::{self, Write};

/// The first bytes of every binary trace.
pub const MAGIC: &[u8; 8] = b"PYALLOCB";
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;

pub(super) const TAG_TEXT: u8 = 0xFD;
pub(super) const TAG_LINE: u8 = 0xFE;
pub(super) const TAG_END: u8 = 0xFF;

/// Decodes one LEB128 varint (at most 10 bytes), each byte from `$next` (an expression
/// of type `Result<u8, Fault>`), in a function returning `Result<_, Fault>`. A macro, not
/// a function taking a closure: the decoder's hot path measured 20% slower through a
/// closure.
macro_rules! leb128 {
    ($next:expr) => {{
        let b: u8 = $next?;
        if b < 0x80 {
            Ok(u64::from(b))
        } else {
            let mut v = u64::from(b & 0x7f);
            let mut shift = 7;
            loop {
                let b: u8 = $next?;
                v |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    break Ok(v);
                }
                shift += 7;
                if shift > 63 {
                    break Err(Fault::Bad("varint longer than 10 bytes"));
                }
            }
        }
    }};
}

pub(super) mod read;
mod write;

pub use read::BinaryReader;
pub use write::BinaryWriter;

pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The record table is the one event table ([`event_table!`](super::event)), expanded
/// for both directions: each kind's code, its sub-code field (`domain` or free-list
/// `kind`, if any) and its fields in stored order with their codec (`v` varint, `z`
/// and `n` zigzag varint, `a` address, `idx` mark index). It expands to `BinaryWriter::record`
/// and `decode_kind`, so `decode_kind(record(k)) == k` by construction.
macro_rules! records {
    ($($code:literal => $variant:ident { $([$sub:ident])? $($field:ident: $c:ident),* }
       ($int:literal, $float:literal) [$($g:ident)*])*) => {
        impl<W: Write> BinaryWriter<W> {
            /// Appends one event's tag and fields.
            fn record(&mut self, kind: EventKind) {
                self.tag(kind.code());
                match kind {
                    $(EventKind::$variant { $($sub: _,)? $($field),* } => {
                        $(self.$c($field);)*
                    })*
                }
            }
        }

        /// Decodes the fields of a record of kind `code`, sub-code `sub`.
        #[inline(always)]
        pub(super) fn decode_kind(c: &mut Cur, code: u8, sub: u8) -> Result<EventKind, Fault> {
            Ok(match code {
                $($code => EventKind::$variant {
                    $($sub: records!(@dec $sub sub)?,)?
                    $($field: c.$c()?),*
                },)*
                _ => return Err(Fault::Bad("unknown record tag")),
            })
        }
    };
    (@dec domain $s:ident) => { Domain::from_code($s).ok_or(Fault::Bad("bad domain code")) };
    (@dec kind $s:ident) => { FreeListKind::from_code($s).ok_or(Fault::Bad("bad free-list code")) };
}

event_table!(records);

/// Why a record could not be decoded (turned into a [`TraceError`] with the offset).
pub(super) enum Fault {
    /// A text record on this line (not an error: the caller reads it).
    Text(u64),
    Eof,
    Bad(&'static str),
    Io(io::Error),
}

/// A cursor over bytes at hand; running out is `Fault::Eof` (the caller refills).
pub(super) struct Cur<'a> {
    pub(super) buf: &'a [u8], // the bytes at hand
    pub(super) pos: usize,    // next byte to decode
    pub(super) last: u64,     // the address register
}

impl Cur<'_> {
    #[inline(always)]
    fn byte(&mut self) -> Result<u8, Fault> {
        let b = *self.buf.get(self.pos).ok_or(Fault::Eof)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline(always)]
    pub(super) fn v(&mut self) -> Result<u64, Fault> {
        leb128!(self.byte())
    }

    #[inline(always)]
    fn a(&mut self) -> Result<Addr, Fault> {
        let d = unzigzag(self.v()?);
        self.last = self.last.wrapping_add(d as u64);
        Ok(Addr(self.last))
    }

    #[inline(always)]
    fn z(&mut self) -> Result<i64, Fault> {
        Ok(unzigzag(self.v()?))
    }

    #[inline(always)]
    fn n(&mut self) -> Result<i64, Fault> {
        self.z()
    }

    #[inline(always)]
    fn idx(&mut self) -> Result<u32, Fault> {
        u32::try_from(self.v()?).map_err(|_| Fault::Bad("mark index too large"))
    }
}

/// Decodes one record after the event on line `prev_line`: `Ok(None)` at the end tag
/// (whose count is left to read).
#[inline(always)]
pub(super) fn decode(c: &mut Cur, prev_line: u64) -> Result<Option<Event>, Fault> {
    let mut tag = c.byte()?;
    let mut line = prev_line.wrapping_add(1);
    if tag == TAG_LINE {
        line = c.v()?;
        tag = c.byte()?;
    }
    if tag >= TAG_TEXT {
        if tag == TAG_END {
            return Ok(None);
        }
        return Err(Fault::Text(line));
    }
    let k = decode_kind(c, tag / 8, tag % 8)?;
    Ok(Some(Event { kind: k, line }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{EventReader, TraceError, TraceHeader};
    use std::io::{self, Read};
    use std::path::Path;

    fn sample() -> (TraceHeader, Vec<Event>) {
        let h = TraceHeader {
            // No recorded format's first line: every kind of event may follow (a header
            // naming one admits only the events that format has lines for).
            lines: vec!["binary codec sample".into(), "α: ünïcode".into()],
        };
        let a = Addr(0x7fff_f7cb_2030);
        let kinds = [
            EventKind::ArenaAlloc {
                size: 1 << 20,
                addr: Addr(0x7fff_f7a0_0000),
            },
            EventKind::Malloc {
                domain: Domain::Obj,
                size: 24,
                addr: a,
            },
            EventKind::Realloc {
                domain: Domain::RawNested,
                old: Addr::NULL,
                size: 600,
                new: Addr(0x5555_5555_a330),
            },
            EventKind::Free {
                domain: Domain::Libc,
                addr: Addr(u64::MAX),
            },
            EventKind::Mallopt {
                param: -8,
                value: i64::MIN,
                ret: 1,
            },
            EventKind::ObjPop {
                kind: FreeListKind::Float,
                value: f64::MAX.to_bits() as i64,
                addr: a,
            },
            EventKind::ClearDone {
                kind: FreeListKind::Int,
                kept: 12,
                freed: 133,
                live: 434,
                nfree: 58,
                head: a,
            },
            EventKind::Mark { index: u32::MAX },
        ];
        let lines = [40, 41, 42, 100, 0, 1, 7, 8];
        let ev = kinds
            .iter()
            .zip(lines)
            .map(|(&kind, line)| Event { kind, line })
            .collect();
        (h, ev)
    }

    fn encode(h: &TraceHeader, ev: &[Event]) -> Vec<u8> {
        let mut w = BinaryWriter::new(Vec::new(), h).unwrap();
        for e in ev {
            w.write_event(e).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_every_field_and_the_header() {
        let (h, ev) = sample();
        let bytes = encode(&h, &ev);
        let mut r = BinaryReader::from_bytes("t.bin", bytes).unwrap();
        let mut back = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            back.push(e);
        }
        assert_eq!(back, ev);
        assert_eq!(r.header(), &h);
        assert!(r.next_event().unwrap().is_none());
    }

    /// A stream that gives one byte a read, so every record straddles a refill.
    struct Trickle(Vec<u8>, usize);

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.1 == self.0.len() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }

    #[test]
    fn records_straddling_refills_decode_the_same() {
        let (h, ev) = sample();
        let bytes = encode(&h, &ev);
        let mut r =
            BinaryReader::from_reader(Path::new("t"), Box::new(Trickle(bytes, 0)), false).unwrap();
        let mut back = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            back.push(e);
        }
        assert_eq!(back, ev);
    }

    #[test]
    fn every_truncation_is_reported_with_its_byte_offset() {
        let (h, ev) = sample();
        let bytes = encode(&h, &ev);
        for cut in 0..bytes.len() {
            let got = BinaryReader::from_bytes("t.bin", bytes[..cut].to_vec()).and_then(|mut r| {
                while r.next_event()?.is_some() {}
                Ok(())
            });
            match got {
                Err(TraceError::Truncated { offset, .. }) => {
                    assert!(offset <= cut as u64, "cut {cut}: offset {offset}")
                }
                Err(TraceError::Parse { .. }) if cut > 0 && cut <= MAGIC.len() => {}
                other => panic!("cut at {cut} of {}: {other:?}", bytes.len()),
            }
        }
    }

    #[test]
    fn an_event_the_headers_recorded_format_cannot_hold_is_refused() {
        let (_, events) = sample();
        let h = TraceHeader {
            lines: vec!["pymalloc allocation trace recorded from REAL CPython".into()],
        };
        let libc = events
            .iter()
            .find(|e| e.kind.domain() == Some(Domain::Libc))
            .expect("the sample holds a C library call");
        let mut r = BinaryReader::from_bytes("t.bin", encode(&h, &[*libc])).unwrap();
        let err = r.next_event().unwrap_err().to_string();
        assert!(err.contains("a pymalloc3 recording cannot hold"), "{err}");
    }

    #[test]
    fn a_header_claiming_huge_counts_is_refused_without_allocating_for_them() {
        let mut huge = MAGIC.to_vec();
        huge.push(VERSION);
        huge.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]); // 2^63 - 1 lines
        huge.extend(vec![0u8; 1000]);
        match BinaryReader::from_bytes("t.bin", huge) {
            Err(TraceError::Parse { why, .. }) => assert!(why.contains("65536 lines"), "{why}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        }
        // a text record claiming more than a line may hold
        let (h, _) = sample();
        let mut bytes = encode(&h, &[]);
        let end = bytes.len() - 2;
        bytes.splice(end..end, [0xFD, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        let mut r = BinaryReader::from_bytes("t.bin", bytes).unwrap();
        match r.next_event() {
            Err(TraceError::Parse { why, .. }) => assert!(why.contains("1 MiB"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn text_records_come_back_in_place_and_only_when_kept() {
        let (h, ev) = sample();
        let mut w = BinaryWriter::new(Vec::new(), &h).unwrap();
        w.write_text(39, "# a comment").unwrap();
        w.write_event(&ev[0]).unwrap();
        w.write_text(ev[1].line, "# mark P0 first").unwrap();
        w.write_event(&ev[1]).unwrap();
        w.write_text(500, "").unwrap();
        let bytes = w.finish().unwrap();
        for keep in [false, true] {
            let mut r = BinaryReader::from_bytes("t.bin", bytes.clone()).unwrap();
            if keep {
                r.keep_text();
            }
            let mut text = Vec::new();
            let mut got = Vec::new();
            while let Some(e) = r.next_event().unwrap() {
                got.push(e);
                r.take_text(&mut text);
            }
            r.take_text(&mut text);
            assert_eq!(got, ev[..2]);
            let want: Vec<(u64, String)> = if keep {
                vec![
                    (39, "# a comment".into()),
                    (ev[1].line, "# mark P0 first".into()),
                    (500, String::new()),
                ]
            } else {
                vec![]
            };
            assert_eq!(text, want);
        }
    }

    #[test]
    fn garbage_after_the_end_and_bad_tags_are_refused() {
        let (h, ev) = sample();
        let mut bytes = encode(&h, &ev);
        bytes.push(0);
        let mut r = BinaryReader::from_bytes("t.bin", bytes).unwrap();
        let err = loop {
            match r.next_event() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("trailing bytes accepted"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, TraceError::Parse { .. }), "{err:?}");
        let mut bytes = encode(&h, &[]);
        let end = bytes.len() - 2;
        bytes.insert(end, 0xEF);
        let mut r = BinaryReader::from_bytes("t.bin", bytes).unwrap();
        assert!(matches!(r.next_event(), Err(TraceError::Parse { .. })));
    }

    #[test]
    fn bad_fields_are_refused_naming_the_record_and_why() {
        let empty = encode(&TraceHeader::default(), &[]);
        let at = empty.len() - 2; // before the end record (0xFF, count 0)
        let cases: [(Vec<u8>, &str); 5] = [
            (vec![5, 1, 1], "bad domain code"),
            (vec![12 * 8 + 2, 1, 1], "bad free-list code"),
            (
                vec![
                    0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1,
                ],
                "varint longer than 10 bytes",
            ),
            (vec![19 * 8], "unknown record tag"),
            (
                vec![18 * 8 + 7, 0x80, 0x80, 0x80, 0x80, 0x10],
                "mark index too large",
            ),
        ];
        for (record, want) in cases {
            let mut bytes = empty[..at].to_vec();
            bytes.extend(&record);
            bytes.extend(&empty[at..]);
            for batched in [false, true] {
                let mut r = BinaryReader::from_bytes("t.bin", bytes.clone()).unwrap();
                let got = if batched {
                    let mut out = [Event {
                        kind: EventKind::Mark { index: 0 },
                        line: 0,
                    }; 4];
                    r.next_events(&mut out).map(|n| n as u64)
                } else {
                    r.next_event().map(|e| u64::from(e.is_some()))
                };
                match got {
                    Err(TraceError::Parse {
                        line, text, why, ..
                    }) => {
                        assert_eq!((line, why.as_str()), (1, want), "{record:x?}");
                        assert_eq!(text, format!("record at byte {at}"));
                    }
                    other => panic!("{record:x?} (batched {batched}): {other:?}"),
                }
            }
        }
    }
}
