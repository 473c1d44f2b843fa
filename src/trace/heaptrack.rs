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

use super::tool::{ToolFormat, ToolLine, ToolReader};
use super::{fields, Domain, EventKind};
use crate::addr::Addr;

/// A streaming reader of heaptrack's raw `+`/`-` stream (header: the `v`, `x`, `X`
/// lines, as read; other lines: all that are not `+`/`-`).
pub type HeaptrackReader = ToolReader<Heaptrack>;

/// The grammar of heaptrack's raw stream (nothing remembered between lines).
#[derive(Debug, Default)]
pub struct Heaptrack;

fn hex(s: Option<&str>) -> Option<u64> {
    fields::hex(s?)
}

fn parse_line(text: &str) -> Result<ToolLine, &'static str> {
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
            Ok(ToolLine::Event(EventKind::Malloc {
                domain: Domain::Libc,
                size,
                addr: Addr(addr),
            }))
        }
        "-" => {
            let (Some(addr), None) = (hex(f.next()), f.next()) else {
                return Err("expected `- PTR` in hex");
            };
            Ok(ToolLine::Event(EventKind::Free {
                domain: Domain::Libc,
                addr: Addr(addr),
            }))
        }
        "v" | "x" | "X" => Ok(ToolLine::Header(text.to_string())),
        "I" | "m" | "t" | "c" | "R" | "S" | "A" | "#" | "" => Ok(ToolLine::Other),
        "a" | "i" | "s" | "e" | "~" => {
            Err("an interpreted heaptrack line: give the raw stream (before heaptrack_interpret)")
        }
        _ => Err("not a heaptrack raw line"),
    }
}

impl ToolFormat for Heaptrack {
    fn parse(&mut self, text: &str) -> Result<ToolLine, &'static str> {
        parse_line(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::fields::testing;
    #[test]
    fn reads_plus_and_minus_and_counts_the_rest() {
        let t = "v 10100 3\nx b /usr/bin/ls\nX /usr/bin/ls -l\nI 1000 3e8a4c\nm 1 -\n\
                 t 7ffff7e4a1b2 0\n+ 18 1 55555555a2a0\n- 55555555a2a0\nc 1f4\nR 2a\n";
        let (ev, other) = testing::tool_kinds::<Heaptrack>(t).unwrap();
        assert_eq!(other, 8);
        // the same with each line's start padded: the same events, the same other lines
        let padded: String = t.lines().map(|l| format!(" {l}\n")).collect();
        assert_eq!(
            testing::tool_kinds::<Heaptrack>(&padded).unwrap(),
            (ev.clone(), other)
        );
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
            testing::assert_refused_at(testing::tool_kinds::<Heaptrack>(t), t, line);
        }
    }
}
