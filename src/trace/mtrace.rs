//! glibc's mtrace log (`MALLOC_TRACE=FILE`, tracing from the program's `mtrace()` call).
//!
//! ```text
//!   = Start
//!   @ ./prog:[0x401156] + 0x4052a0 0x64        malloc/calloc/memalign(…) = 0x4052a0, 0x64 bytes
//!   @ ./prog:[0x401170] - 0x4052a0             free(0x4052a0)
//!   @ ./prog:[0x401189] < 0x405310             realloc(0x405310, 0xc8) = 0x405720:
//!   @ ./prog:[0x401189] > 0x405720 0xc8          two lines, `<` OLD then `>` NEW SIZE
//!   @ ./prog:[0x40119a] ! 0x405720 0x7fff…     realloc that failed (returned NULL, OLD kept)
//!   = End
//! ```
//! Written by glibc's malloc/mtrace-impl.c (in `libc_malloc_debug.so` since 2.34): each
//! line may start with `@ CALLER ` (one token: `file:(sym+off)[addr]` or `[addr]`),
//! pointers are `%p` (`0x…`, `(nil)` for NULL) and sizes `%#lx` (`0x…`, `0` for zero).
//! calloc and memalign appear as `+`, like malloc; `realloc(p, 0)` appears as `- p`.
//!
//! Invariant: events + other lines (`= Start`/`= End`, blank) == lines read, with each
//! `<`/`>` pair counted as one event and one other line.

use super::{fields, Domain, Event, EventKind, EventReader, LineReader, TraceError, TraceHeader};
use crate::addr::Addr;
use std::path::Path;

/// A streaming reader of an mtrace log.
pub struct MtraceReader {
    lines: LineReader,
    header: TraceHeader, // empty: mtrace logs carry no header
    other: u64,          // `= Start`, `= End`, blank lines, the `<` half of each realloc pair
}

impl MtraceReader {
    /// Opens an mtrace log (plain or gzip).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path) -> Result<MtraceReader, TraceError> {
        Ok(Self::new(LineReader::open(path)?))
    }

    /// Reads from an opened line stream.
    pub fn new(lines: LineReader) -> MtraceReader {
        MtraceReader {
            lines,
            header: TraceHeader::default(),
            other: 0,
        }
    }
}

/// Drops the `@ CALLER ` prefix tr_where() writes before an event.
fn strip_caller(text: &str) -> Result<&str, &'static str> {
    match text.strip_prefix("@ ") {
        None => Ok(text),
        Some(rest) => match rest.split_once(' ') {
            Some((_caller, op)) => Ok(op),
            None => Err("caller prefix with no event after it"),
        },
    }
}

/// `%p`: `0x…` or `(nil)`.
pub(crate) fn parse_ptr(s: &str) -> Option<Addr> {
    if s == "(nil)" || s == "nil" || s == "0" {
        return Some(Addr::NULL);
    }
    fields::hex0x(s)
}

/// `%#lx`: `0x…`, or `0` for zero.
fn parse_size(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    fields::hex(s.strip_prefix("0x")?)
}

enum Parsed {
    Event(EventKind), // a `+`, `-` or `!` line
    ReallocOld(Addr), // a `<` line: its `>` line follows
    Other,            // `= Start`, `= End`, blank
}

fn parse_line(text: &str) -> Result<Parsed, &'static str> {
    if text.is_empty() || text == "= Start" || text == "= End" {
        return Ok(Parsed::Other);
    }
    let op = strip_caller(text)?;
    let mut f = op.split(' ');
    let tag = f.next().unwrap_or("");
    let ptr = || -> Result<Addr, &'static str> { Err("expected a pointer (0x… or (nil))") };
    let kind = match tag {
        "+" | "!" | ">" => {
            let (Some(p), Some(s), None) = (f.next(), f.next(), f.next()) else {
                return Err("expected `PTR SIZE`");
            };
            let addr = parse_ptr(p).map_or_else(ptr, Ok)?;
            let size = parse_size(s).ok_or("expected a size in %#lx form")?;
            match tag {
                "+" => EventKind::Malloc {
                    domain: Domain::Libc,
                    size,
                    addr,
                },
                "!" => EventKind::Realloc {
                    domain: Domain::Libc,
                    old: addr,
                    size,
                    new: Addr::NULL,
                },
                _ => return Err("`>` line without the `<` line before it"),
            }
        }
        "-" | "<" => {
            let (Some(p), None) = (f.next(), f.next()) else {
                return Err("expected one pointer");
            };
            let addr = parse_ptr(p).map_or_else(ptr, Ok)?;
            if tag == "<" {
                return Ok(Parsed::ReallocOld(addr));
            }
            EventKind::Free {
                domain: Domain::Libc,
                addr,
            }
        }
        _ => return Err("not an mtrace line (expected = + - < > !)"),
    };
    Ok(Parsed::Event(kind))
}

/// The `> NEW SIZE` line that must follow a `<` line.
fn parse_realloc_new(text: &str) -> Result<(Addr, u64), &'static str> {
    let pair = strip_caller(text).ok().and_then(|op| {
        let mut f = op.split(' ');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some(">"), Some(p), Some(s), None) => Some((parse_ptr(p)?, parse_size(s)?)),
            _ => None,
        }
    });
    pair.ok_or("expected `> NEW SIZE` after a `<` line")
}

impl EventReader for MtraceReader {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        while let Some((line, parsed)) = fields::next_line_with(&mut self.lines, parse_line)? {
            match parsed {
                Parsed::Other => self.other += 1,
                Parsed::Event(kind) => return Ok(Some(Event { kind, line })),
                Parsed::ReallocOld(old) => {
                    self.other += 1;
                    let next = fields::next_line_with(&mut self.lines, parse_realloc_new)?;
                    let Some((_, (new, size))) = next else {
                        return Err(self.lines.parse_error("", "file ends after a `<` line"));
                    };
                    let kind = EventKind::Realloc {
                        domain: Domain::Libc,
                        old,
                        size,
                        new,
                    };
                    return Ok(Some(Event { kind, line }));
                }
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

    fn read_all(text: &str) -> Result<(Vec<Event>, u64), TraceError> {
        let mut r = MtraceReader::new(LineReader::from_text("log", text));
        Ok((testing::read_all(&mut r)?, r.other_lines()))
    }

    #[test]
    fn reads_every_line_kind() {
        let log =
            "= Start\n@ ./p:[0x401156] + 0x4052a0 0x64\n@ ./p:(main+0x1a)[0x40117a] < 0x4052a0\n\
                   @ ./p:(main+0x1a)[0x40117a] > 0x405720 0xc8\n- 0x405720\n+ 0x405800 0\n\
                   ! 0x405800 0xffff\n= End\n";
        let (ev, other) = read_all(log).unwrap();
        assert_eq!(ev.len(), 5);
        assert_eq!(other, 3, "= Start, = End and the `<` half");
        assert_eq!(
            ev[1].kind,
            EventKind::Realloc {
                domain: Domain::Libc,
                old: Addr(0x4052a0),
                size: 0xc8,
                new: Addr(0x405720)
            }
        );
        assert_eq!(ev[1].line, 3);
        assert!(matches!(ev[3].kind, EventKind::Malloc { size: 0, .. }));
        assert!(matches!(
            ev[4].kind,
            EventKind::Realloc {
                new: Addr::NULL,
                ..
            }
        ));
    }

    #[test]
    fn malformed_lines_name_their_number_and_text() {
        for (log, line) in [
            ("= Start\n+ 0x10 0x10\n+ zz 0x10\n", 3),
            ("= Start\n< 0x10\n- 0x10\n", 3),
            ("@ ./p:[0x1]\n", 1),
            ("+ 0x10\n", 1),
            ("* 0x10 0x4\n", 1),
            ("> 0x10 0x4\n", 1),
        ] {
            testing::assert_refused_at(read_all(log), log, line);
        }
    }
}
