//! Reader of the CPython 2.7 PYREC recordings (`# PYREC allocator event trace …`),
//! streaming, every event letter of the header:
//!
//! ```text
//!  B 992 ADDR | b 992 ADDR          new PyIntBlock / PyFloatBlock (fill_free_list)
//!  I VALUE ADDR | i VALUE ADDR      pop from the int / float free list (VALUE: %ld / %.17g)
//!  D ADDR | d ADDR                  push (int_dealloc / float_dealloc)
//!  K ADDR LIVE | k …                ClearFreeList kept a block
//!  X ADDR | x ADDR                  ClearFreeList freed a block
//!  L KEPT FREED LIVE NFREE HEAD | l …   end of ClearFreeList
//!  m O SIZE ADDR                    PyObject_Malloc
//!  r O OLD SIZE NEW                 PyObject_Realloc (one line)
//!  f O ADDR                         PyObject_Free
//!  A 262144 ADDR | F ADDR 262144    pymalloc arena mapped / unmapped
//! ```
//! Addresses are lowercase hex without `0x`, numbers decimal. A float's VALUE becomes
//! the bits of the `f64` in [`EventKind::ObjPop`].

use super::event::{Domain, Event, EventKind, FreeListKind};
use super::fields::{self, Line};
use super::io::{LineReader, TraceError};
use super::{EventReader, TraceHeader};
use crate::addr::Addr;
use std::path::Path;

/// A streaming reader of one PYREC trace.
pub struct Pyrec27Reader {
    lines: LineReader,   // the file, line by line
    header: TraceHeader, // the `#` lines read so far
}

impl Pyrec27Reader {
    /// Opens a trace (plain or gzip).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path) -> Result<Pyrec27Reader, TraceError> {
        Ok(Pyrec27Reader::new(LineReader::open(path)?))
    }

    /// Reads events from `lines`.
    pub fn new(lines: LineReader) -> Pyrec27Reader {
        Pyrec27Reader {
            lines,
            header: TraceHeader::default(),
        }
    }
}

/// Parses one event line (not a `#` line).
///
/// # Errors
/// The reason, for the caller to wrap with the line number.
pub fn parse_line(text: &str) -> Result<EventKind, String> {
    let mut f = text.split_ascii_whitespace();
    let letter = f.next().ok_or("empty line")?;
    let mut field = |what: &str| f.next().ok_or_else(|| format!("missing {what}"));
    fn hex(s: &str) -> Result<Addr, String> {
        if s == "0" {
            return Ok(Addr::NULL);
        }
        Addr::parse_hex(s).ok_or_else(|| format!("bad address {s:?}"))
    }
    fn num(s: &str) -> Result<u64, String> {
        s.parse().map_err(|_| format!("bad number {s:?}"))
    }
    fn domain(s: &str) -> Result<Domain, String> {
        match s {
            "O" => Ok(Domain::Obj),
            _ => Err(format!("bad domain {s:?} (2.7 has only O)")),
        }
    }
    let kind_of = |c: char| {
        if c.is_ascii_uppercase() {
            FreeListKind::Int
        } else {
            FreeListKind::Float
        }
    };
    let c = letter.chars().next().unwrap_or(' ');
    let ev = match letter {
        "B" | "b" => EventKind::BlockNew {
            kind: kind_of(c),
            size: num(field("size")?)?,
            addr: hex(field("address")?)?,
        },
        "I" => {
            let v = field("value")?;
            EventKind::ObjPop {
                kind: FreeListKind::Int,
                value: v.parse().map_err(|_| format!("bad int value {v:?}"))?,
                addr: hex(field("address")?)?,
            }
        }
        "i" => {
            let v = field("value")?;
            let x: f64 = v.parse().map_err(|_| format!("bad float value {v:?}"))?;
            EventKind::ObjPop {
                kind: FreeListKind::Float,
                value: x.to_bits() as i64,
                addr: hex(field("address")?)?,
            }
        }
        "D" | "d" => EventKind::ObjPush {
            kind: kind_of(c),
            addr: hex(field("address")?)?,
        },
        "K" | "k" => EventKind::ClearKeep {
            kind: kind_of(c),
            addr: hex(field("address")?)?,
            live: num(field("live count")?)?,
        },
        "X" | "x" => EventKind::ClearFree {
            kind: kind_of(c),
            addr: hex(field("address")?)?,
        },
        "L" | "l" => EventKind::ClearDone {
            kind: kind_of(c),
            kept: num(field("kept")?)?,
            freed: num(field("freed")?)?,
            live: num(field("live")?)?,
            nfree: num(field("nfree")?)?,
            head: hex(field("head")?)?,
        },
        "m" => EventKind::Malloc {
            domain: domain(field("domain")?)?,
            size: num(field("size")?)?,
            addr: hex(field("address")?)?,
        },
        "r" => EventKind::Realloc {
            domain: domain(field("domain")?)?,
            old: hex(field("old address")?)?,
            size: num(field("size")?)?,
            new: hex(field("new address")?)?,
        },
        "f" => EventKind::Free {
            domain: domain(field("domain")?)?,
            addr: hex(field("address")?)?,
        },
        "A" => EventKind::ArenaAlloc {
            size: num(field("size")?)?,
            addr: hex(field("address")?)?,
        },
        "F" => EventKind::ArenaFree {
            addr: hex(field("address")?)?,
            size: num(field("size")?)?,
        },
        other => return Err(format!("unknown event letter {other:?}")),
    };
    if f.next().is_some() {
        return Err("extra fields".into());
    }
    Ok(ev)
}

impl EventReader for Pyrec27Reader {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        while let Some((line, parsed)) =
            fields::next_line_with(&mut self.lines, |t| fields::commented(t, parse_line))?
        {
            match parsed {
                Line::Item(kind) => return Ok(Some(Event { kind, line })),
                Line::Comment(h) => self.header.lines.push(h),
                Line::Blank => {}
            }
        }
        Ok(None)
    }

    fn header(&self) -> &TraceHeader {
        &self.header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_letter_and_numbers_lines() {
        let text = "# PYREC allocator event trace: x\nB 992 5555557682a0\nI -5 555555768668\n\
                    i 0.5 555555779ab0\nD 555555768668\nK 5555557682a0 13\nX 555555768690\n\
                    L 2 9 19 63 55555576e208\nm O 448 7ffff7b8c1f0\nr O 0 64 7ffff7ba65f0\n\
                    f O 0\nA 262144 7ffff7b80000\nF 7ffff7b80000 262144\n";
        let mut r = Pyrec27Reader::new(LineReader::from_text("t", text));
        let mut n = 0;
        while let Some(e) = r.next_event().unwrap() {
            n += 1;
            if e.line == 4 {
                assert_eq!(
                    e.kind,
                    EventKind::ObjPop {
                        kind: FreeListKind::Float,
                        value: 0.5f64.to_bits() as i64,
                        addr: Addr(0x555555779ab0)
                    }
                );
            }
        }
        assert_eq!(n, 12);
        assert!(r.header().lines[0].starts_with("PYREC"));
    }

    #[test]
    fn a_bad_line_is_an_error_with_its_number_and_text() {
        let mut r = Pyrec27Reader::new(LineReader::from_text("t", "# h\nI 12\n"));
        let e = r.next_event().unwrap_err().to_string();
        assert!(
            e.contains("t:2") && e.contains("I 12") && e.contains("missing address"),
            "{e}"
        );
        let mut r = Pyrec27Reader::new(LineReader::from_text("t", "Q 1\n"));
        assert!(r.next_event().is_err());
    }
}
