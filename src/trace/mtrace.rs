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

use super::tool::{ToolFormat, ToolLine, ToolReader};
use super::{fields, Domain, EventKind};
use crate::addr::Addr;

/// A streaming reader of an mtrace log (no header; other lines: `= Start`, `= End`,
/// blank lines, the `<` half of each realloc pair).
pub type MtraceReader = ToolReader<Mtrace>;

/// The grammar of an mtrace log.
#[derive(Debug, Default)]
pub struct Mtrace {
    old: Option<Addr>, // a `<` line's pointer, waiting for its `>` line
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

/// One line that is not the `>` half of a realloc: an event, or `Other` (`= Start`,
/// `= End`, blank, and a `<` line, whose pointer waits in `old` for its `>` line).
fn parse_line(old: &mut Option<Addr>, text: &str) -> Result<ToolLine, &'static str> {
    if text.is_empty() || text == "= Start" || text == "= End" {
        return Ok(ToolLine::Other);
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
                *old = Some(addr);
                return Ok(ToolLine::Other);
            }
            EventKind::Free {
                domain: Domain::Libc,
                addr,
            }
        }
        _ => return Err("not an mtrace line (expected = + - < > !)"),
    };
    Ok(ToolLine::Event(kind))
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

impl ToolFormat for Mtrace {
    fn parse(&mut self, text: &str) -> Result<ToolLine, &'static str> {
        let Some(old) = self.old.take() else {
            return parse_line(&mut self.old, text);
        };
        let (new, size) = parse_realloc_new(text)?;
        Ok(ToolLine::Continued(EventKind::Realloc {
            domain: Domain::Libc,
            old,
            size,
            new,
        }))
    }

    fn finish(&mut self) -> Result<(), &'static str> {
        match self.old.take() {
            Some(_) => Err("file ends after a `<` line"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::fields::testing;
    use crate::trace::{Event, EventReader, LineReader, TraceError};

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
        // a `<` line with no line after it: refused at the `<` line, at the end
        match read_all("= Start\n< 0x10\n") {
            Err(TraceError::Parse { line: 2, why, .. }) => assert!(why.contains("ends"), "{why}"),
            other => panic!("expected the cut realloc refused, got {other:?}"),
        }
    }
}
