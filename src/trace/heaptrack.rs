//! heaptrack's raw stream: what `libheaptrack` writes before `heaptrack_interpret`.
//!
//! ```text
//!   v 10100 3                    version, file-format version        (hex)
//!   x 11 /usr/bin/prog           executable
//!   X /usr/bin/prog arg          command line
//!   I 1000 3e8a4c                page size, physical pages
//!   m 1 -  /  m LEN FILE ADDR …  module cache
//!   t IP PARENT                  a trace-tree node
//!   + SIZE TRACE PTR             malloc/calloc/… = PTR                (all hex, no 0x)
//!   - PTR                        free(PTR)
//!   c ELAPSED  /  R RSS          timestamps and RSS samples
//! ```
//! From heaptrack's src/track/libheaptrack.cpp (`handleMalloc` writes `+`, `handleFree`
//! `-`; a realloc is `- OLD` then `+ SIZE TRACE NEW`; NULL results and frees of NULL are
//! not written). Only `+` and `-` are allocator events; every other line is counted.
//! The interpreted file (`heaptrack.*.zst` after `heaptrack_interpret`) names
//! allocations by index, not by pointer, so it cannot be replayed: it is refused.
//!
//! Invariant: events + other lines == lines read.

use super::{fields, Domain, Event, EventKind, EventReader, LineReader, TraceError, TraceHeader};
use crate::addr::Addr;
use std::path::Path;

/// A streaming reader of heaptrack's raw `+`/`-` stream.
pub struct HeaptrackReader {
    lines: LineReader,
    header: TraceHeader, // the `v`, `x`, `X` lines, as read
    other: u64,          // lines that are not `+`/`-`
}

impl HeaptrackReader {
    /// Opens a raw heaptrack stream (plain or gzip).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path) -> Result<HeaptrackReader, TraceError> {
        Ok(Self::new(LineReader::open(path)?))
    }

    /// Reads from an opened line stream.
    pub fn new(lines: LineReader) -> HeaptrackReader {
        HeaptrackReader {
            lines,
            header: TraceHeader::default(),
            other: 0,
        }
    }
}

fn hex(s: Option<&str>) -> Option<u64> {
    fields::hex(s?)
}

enum Parsed {
    Event(EventKind), // a `+` or `-` line
    Header(String),   // a `v`, `x` or `X` line, as read
    Other,            // any other raw line
}

fn parse_line(text: &str) -> Result<Parsed, &'static str> {
    // heaptrack's writer may pad a line's start (`" - 55f8fa2f80a0"`): the tag is the
    // first field, wherever it starts
    let text = text.trim_start_matches(' ');
    let mut f = text.split(' ');
    let tag = f.next().unwrap_or("");
    match tag {
        "+" => {
            let (size, trace, ptr) = (f.next(), f.next(), f.next());
            if trace.is_none() && size.is_some() {
                return Err("`+ INDEX`: an interpreted heaptrack file (allocations by index, no pointers); give the raw stream");
            }
            let (Some(size), Some(_), Some(addr), None) =
                (hex(size), hex(trace), hex(ptr), f.next())
            else {
                return Err("expected `+ SIZE TRACE PTR` in hex");
            };
            Ok(Parsed::Event(EventKind::Malloc {
                domain: Domain::Libc,
                size,
                addr: Addr(addr),
            }))
        }
        "-" => {
            let (Some(addr), None) = (hex(f.next()), f.next()) else {
                return Err("expected `- PTR` in hex");
            };
            Ok(Parsed::Event(EventKind::Free {
                domain: Domain::Libc,
                addr: Addr(addr),
            }))
        }
        "v" | "x" | "X" => Ok(Parsed::Header(text.to_string())),
        "I" | "m" | "t" | "c" | "R" | "S" | "A" | "#" | "" => Ok(Parsed::Other),
        "a" | "i" | "s" | "e" | "~" => {
            Err("an interpreted heaptrack line: give the raw stream (before heaptrack_interpret)")
        }
        _ => Err("not a heaptrack raw line"),
    }
}

impl EventReader for HeaptrackReader {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        while let Some((line, parsed)) = fields::next_line_with(&mut self.lines, parse_line)? {
            match parsed {
                Parsed::Event(kind) => return Ok(Some(Event { kind, line })),
                Parsed::Header(text) => {
                    self.other += 1;
                    self.header.lines.push(text);
                }
                Parsed::Other => self.other += 1,
            }
        }
        Ok(None)
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
    use crate::trace::fields::testing;

    fn read_all(text: &str) -> Result<(Vec<EventKind>, u64), TraceError> {
        testing::kinds_and_other(&mut HeaptrackReader::new(LineReader::from_text("ht", text)))
    }

    #[test]
    fn reads_plus_and_minus_and_counts_the_rest() {
        let t = "v 10100 3\nx b /usr/bin/ls\nX /usr/bin/ls -l\nI 1000 3e8a4c\nm 1 -\n\
                 t 7ffff7e4a1b2 0\n+ 18 1 55555555a2a0\n- 55555555a2a0\nc 1f4\nR 2a\n";
        let (ev, other) = read_all(t).unwrap();
        assert_eq!(other, 8);
        // the same with each line's start padded: the same events, the same other lines
        let padded: String = t.lines().map(|l| format!(" {l}\n")).collect();
        assert_eq!(read_all(&padded).unwrap(), (ev.clone(), other));
        assert_eq!(
            ev,
            vec![
                EventKind::Malloc {
                    domain: Domain::Libc,
                    size: 0x18,
                    addr: Addr(0x5555_5555_a2a0)
                },
                EventKind::Free {
                    domain: Domain::Libc,
                    addr: Addr(0x5555_5555_a2a0)
                }
            ]
        );
    }

    #[test]
    fn malformed_and_interpreted_lines_are_refused_with_their_number() {
        for (t, line) in [
            ("v 1 3\n+ 18 1\n", 2),
            ("- zz\n", 1),
            ("v 1 3\nt 1 0\n+ 3\n", 3),
            ("a 18 1\n", 1),
            ("? 1\n", 1),
        ] {
            testing::assert_refused_at(read_all(t), t, line);
        }
    }
}
