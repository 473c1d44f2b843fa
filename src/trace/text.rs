//! Reading the text formats of the recordings — the inverse of [`writer`](super::writer).
//!
//! One grammar covers the three shipped formats (../shared/traces/README.md), told apart
//! line by line by their fields:
//! ```text
//!   m O 24 7ffff7cb2030     CPython 3 (and 2.7's `m O`): a domain letter O M R r, hex without 0x
//!   m 24 0x5555556742a0     glibc interposer: no domain, 0x hex
//!   A F V W                 arenas and data-stack chunks
//!   B I D K X L / b i d k x l   CPython 2.7 PYREC free-list events
//!   a v p o                 memalign, valloc, pvalloc, mallopt (glibc)
//!   # …                     before the first event: the header; `# mark …` later: a marker;
//!                           other `#` lines later (a trailer): counted as other lines
//! ```
//! `read(write(e)) == e` for every event; the header comes back line for line.
//! Invariant: events + other lines + header lines == lines read.

use super::{
    Domain, Event, EventKind, EventReader, FreeListKind, LineReader, TraceError, TraceHeader,
};
use crate::addr::Addr;
use std::path::Path;

/// A streaming reader of the recordings' text formats.
pub struct TextReader {
    lines: LineReader,
    header: TraceHeader, // the `#` lines before the first event
    started: bool,       // an event has been read: later `#` lines are not header
    marks: u32,          // `# mark` lines read
    other: u64,          // blank lines and `#` lines after the first event that are not marks
}

impl TextReader {
    /// Opens a text trace (plain or gzip).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path) -> Result<TextReader, TraceError> {
        Ok(Self::new(LineReader::open(path)?))
    }

    /// Reads from an opened line stream.
    pub fn new(lines: LineReader) -> TextReader {
        TextReader {
            lines,
            header: TraceHeader::default(),
            started: false,
            marks: 0,
            other: 0,
        }
    }
}

fn domain(s: &str) -> Option<Domain> {
    match s {
        "O" => Some(Domain::Obj),
        "M" => Some(Domain::Mem),
        "R" => Some(Domain::Raw),
        "r" => Some(Domain::RawNested),
        _ => None,
    }
}

/// An address: bare hex (CPython formats) or `0x` hex (glibc format).
fn addr(s: &str) -> Result<Addr, &'static str> {
    Addr::parse_hex(s).ok_or("expected a hexadecimal address")
}

fn dec(s: &str) -> Result<u64, &'static str> {
    s.parse().map_err(|_| "expected a decimal number")
}

fn signed(s: &str) -> Result<i64, &'static str> {
    s.parse().map_err(|_| "expected a signed decimal number")
}

fn parse(f: &[&str]) -> Result<EventKind, &'static str> {
    use EventKind as K;
    let fl = |c: &str| {
        if c.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
            FreeListKind::Int
        } else {
            FreeListKind::Float
        }
    };
    Ok(match *f {
        ["m", d, size, a] => K::Malloc {
            domain: domain(d).ok_or("bad domain letter")?,
            size: dec(size)?,
            addr: addr(a)?,
        },
        ["m", size, a] => K::Malloc {
            domain: Domain::Libc,
            size: dec(size)?,
            addr: addr(a)?,
        },
        ["c", d, n, el, a] => K::Calloc {
            domain: domain(d).ok_or("bad domain letter")?,
            nelem: dec(n)?,
            elsize: dec(el)?,
            addr: addr(a)?,
        },
        ["c", n, el, a] => K::Calloc {
            domain: Domain::Libc,
            nelem: dec(n)?,
            elsize: dec(el)?,
            addr: addr(a)?,
        },
        ["r", d, old, size, new] => K::Realloc {
            domain: domain(d).ok_or("bad domain letter")?,
            old: addr(old)?,
            size: dec(size)?,
            new: addr(new)?,
        },
        ["r", old, size, new] => K::Realloc {
            domain: Domain::Libc,
            old: addr(old)?,
            size: dec(size)?,
            new: addr(new)?,
        },
        ["f", d, a] if domain(d).is_some() => K::Free {
            domain: domain(d).ok_or("bad domain letter")?,
            addr: addr(a)?,
        },
        ["f", a] => K::Free {
            domain: Domain::Libc,
            addr: addr(a)?,
        },
        ["a", align, size, a] => K::Memalign {
            align: dec(align)?,
            size: dec(size)?,
            addr: addr(a)?,
        },
        ["v", size, a] => K::Valloc {
            size: dec(size)?,
            addr: addr(a)?,
        },
        ["p", size, a] => K::Pvalloc {
            size: dec(size)?,
            addr: addr(a)?,
        },
        ["o", p, v, r] => K::Mallopt {
            param: signed(p)?,
            value: signed(v)?,
            ret: signed(r)?,
        },
        ["A", size, a] => K::ArenaAlloc {
            size: dec(size)?,
            addr: addr(a)?,
        },
        ["F", a, size] => K::ArenaFree {
            addr: addr(a)?,
            size: dec(size)?,
        },
        ["V", size, a] => K::VirtualAlloc {
            size: dec(size)?,
            addr: addr(a)?,
        },
        ["W", a, size] => K::VirtualFree {
            addr: addr(a)?,
            size: dec(size)?,
        },
        [c @ ("B" | "b"), size, a] => K::BlockNew {
            kind: fl(c),
            size: dec(size)?,
            addr: addr(a)?,
        },
        ["I", v, a] => K::ObjPop {
            kind: FreeListKind::Int,
            value: signed(v)?,
            addr: addr(a)?,
        },
        ["i", v, a] => K::ObjPop {
            kind: FreeListKind::Float,
            value: v
                .parse::<f64>()
                .map_err(|_| "expected a float value")?
                .to_bits() as i64,
            addr: addr(a)?,
        },
        [c @ ("D" | "d"), a] => K::ObjPush {
            kind: fl(c),
            addr: addr(a)?,
        },
        [c @ ("K" | "k"), a, live] => K::ClearKeep {
            kind: fl(c),
            addr: addr(a)?,
            live: dec(live)?,
        },
        [c @ ("X" | "x"), a] => K::ClearFree {
            kind: fl(c),
            addr: addr(a)?,
        },
        [c @ ("L" | "l"), kept, freed, live, nfree, head] => K::ClearDone {
            kind: fl(c),
            kept: dec(kept)?,
            freed: dec(freed)?,
            live: dec(live)?,
            nfree: dec(nfree)?,
            head: addr(head)?,
        },
        _ => return Err("not a trace line (wrong event letter or number of fields)"),
    })
}

impl EventReader for TextReader {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        loop {
            let line = self.lines.line_number() + 1;
            let Some(text) = self.lines.next_line()? else {
                return Ok(None);
            };
            if let Some(rest) = text.strip_prefix('#') {
                if !self.started {
                    let rest = rest.strip_prefix(' ').unwrap_or(rest);
                    self.header.lines.push(rest.to_string());
                    continue;
                }
                if rest.starts_with(" mark") {
                    let kind = EventKind::Mark { index: self.marks };
                    self.marks += 1;
                    return Ok(Some(Event { kind, line }));
                }
                self.other += 1;
                continue;
            }
            if text.trim().is_empty() {
                self.other += 1;
                continue;
            }
            let mut fields = [""; 8];
            let mut n = 0;
            for w in text.split_ascii_whitespace() {
                if n == fields.len() {
                    n += 1;
                    break;
                }
                fields[n] = w;
                n += 1;
            }
            let parsed = if n > fields.len() {
                Err("too many fields")
            } else {
                parse(&fields[..n])
            };
            match parsed {
                Ok(kind) => {
                    self.started = true;
                    return Ok(Some(Event { kind, line }));
                }
                Err(why) => {
                    let text = text.to_string();
                    return Err(self.lines.parse_error(&text, why));
                }
            }
        }
    }

    fn header(&self) -> &TraceHeader {
        &self.header
    }

    fn other_lines(&self) -> u64 {
        self.other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::writer::TextWriter;

    #[test]
    fn reads_back_what_the_writer_writes() {
        let a = Addr(0x7fff_f7cb_2030);
        let kinds = [
            EventKind::Malloc {
                domain: Domain::Obj,
                size: 24,
                addr: a,
            },
            EventKind::Malloc {
                domain: Domain::Libc,
                size: 0,
                addr: Addr::NULL,
            },
            EventKind::Calloc {
                domain: Domain::RawNested,
                nelem: 3,
                elsize: 8,
                addr: a,
            },
            EventKind::Realloc {
                domain: Domain::Libc,
                old: a,
                size: 9,
                new: a + 16,
            },
            EventKind::Free {
                domain: Domain::Mem,
                addr: Addr::NULL,
            },
            EventKind::Memalign {
                align: 64,
                size: 100,
                addr: a,
            },
            EventKind::Mallopt {
                param: -1,
                value: 7,
                ret: 1,
            },
            EventKind::VirtualFree {
                addr: a,
                size: 16384,
            },
            EventKind::ObjPop {
                kind: FreeListKind::Int,
                value: -5,
                addr: a,
            },
            EventKind::ObjPop {
                kind: FreeListKind::Float,
                value: 0.1f64.to_bits() as i64,
                addr: a,
            },
            EventKind::ClearDone {
                kind: FreeListKind::Float,
                kept: 1,
                freed: 2,
                live: 3,
                nfree: 4,
                head: a,
            },
            EventKind::Mark { index: 0 },
        ];
        let mut w = TextWriter::new(Vec::new());
        let h = TraceHeader {
            lines: vec!["pymalloc allocation trace".into()],
        };
        w.write_header(&h).unwrap();
        for (i, &kind) in kinds.iter().enumerate() {
            w.write_event(&Event {
                kind,
                line: i as u64 + 2,
            })
            .unwrap();
        }
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let mut r = TextReader::new(LineReader::from_text("t", &text));
        for (i, &kind) in kinds.iter().enumerate() {
            let e = r.next_event().unwrap().unwrap();
            assert_eq!(
                e,
                Event {
                    kind,
                    line: i as u64 + 2
                }
            );
        }
        assert!(r.next_event().unwrap().is_none());
        assert_eq!(r.header(), &h);
    }

    #[test]
    fn malformed_lines_name_their_number_and_text() {
        for (t, line) in [
            ("# h\nm O 24 7ff\nm Q 24 7ff\n", 3),
            ("m O 24\n", 1),
            ("f O zz\n", 1),
            ("A 1048576 7ff 3\n", 1),
            ("m O -1 7ff\n", 1),
            ("m O 1 2 3 4 5 6 7 8 9\n", 1),
        ] {
            let mut r = TextReader::new(LineReader::from_text("t", t));
            let err = loop {
                match r.next_event() {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("{t:?} accepted"),
                    Err(e) => break e,
                }
            };
            match err {
                TraceError::Parse { line: l, text, .. } => {
                    assert_eq!(l, line, "{t:?}");
                    assert_eq!(text, t.lines().nth(line as usize - 1).unwrap());
                }
                e => panic!("{t:?}: {e:?}"),
            }
        }
    }
}
