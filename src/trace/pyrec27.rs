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
use super::fields;
use super::format::Grammar;
use super::grammar::{letters, parse_fields, Fields, What, NOT_A_LETTER};
use super::io::{LineReader, TraceError};
use super::{EventReader, KeptText, TraceHeader};
use crate::addr::Addr;
use std::marker::PhantomData;
use std::path::Path;
use std::str::SplitAsciiWhitespace;

/// A streaming reader of one PYREC trace.
pub struct Pyrec27Reader {
    lines: LineReader,   // the file, line by line
    header: TraceHeader, // the `#` lines before the first event
    events: u64,         // events returned so far
    text: KeptText,      // `#` and blank lines after the first event
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
            lines: lines.whole_lines(),
            header: TraceHeader::default(),
            events: 0,
            text: KeptText::default(),
        }
    }
}

/// Parses one event line (not a `#` line).
///
/// # Errors
/// The reason, for the caller to wrap with the line number.
#[inline]
pub fn parse_line(text: &str) -> Result<EventKind, String> {
    // The grammar is written once (`parse`); the fast pass builds no message, and only a
    // refused line is parsed again to say why.
    parse::<()>(text).or_else(|()| explain(text))
}

/// The second pass over a refused line: the reason it was refused.
#[cold]
#[inline(never)]
fn explain(text: &str) -> Result<EventKind, String> {
    parse::<String>(text)
}

/// What a refusal carries: nothing on the fast pass, the message on the second.
trait Why {
    fn why(f: impl FnOnce() -> String) -> Self;
}

impl Why for () {
    #[inline(always)]
    fn why(_: impl FnOnce() -> String) {}
}

impl Why for String {
    fn why(f: impl FnOnce() -> String) -> String {
        f()
    }
}

#[inline(always)]
fn hex<E: Why>(s: &str) -> Result<Addr, E> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    fields::hex(digits)
        .map(Addr)
        .ok_or_else(|| E::why(|| format!("bad address {s:?}")))
}

#[inline(always)]
fn num<E: Why>(s: &str) -> Result<u64, E> {
    fields::dec(s).ok_or_else(|| E::why(|| format!("bad number {s:?}")))
}

/// A line's fields after its letter, split on white space; `E` is what a refusal carries.
struct Tokens<'a, 'f, E> {
    f: &'f mut SplitAsciiWhitespace<'a>,
    why: PhantomData<E>,
}

impl<'a, E: Why> Tokens<'a, '_, E> {
    /// The next field, or the refusal naming it as PYREC's words do (`missing address`).
    #[inline(always)]
    fn next(&mut self, what: What) -> Result<&'a str, E> {
        self.f.next().ok_or_else(|| {
            E::why(|| {
                let name = match (what.kind, what.field) {
                    (_, "addr") => "address",
                    (_, "old") => "old address",
                    (_, "new") => "new address",
                    ("ClearKeep", "live") => "live count",
                    (_, field) => field,
                };
                format!("missing {name}")
            })
        })
    }
}

impl<E: Why> Fields for Tokens<'_, '_, E> {
    type Refusal = E;

    #[inline(always)]
    fn domain(&mut self) -> Result<Domain, E> {
        let s = self.next(What {
            kind: "",
            field: "domain",
        })?;
        match s {
            "O" => Ok(Domain::Obj),
            _ => Err(E::why(|| format!("bad domain {s:?} (2.7 has only O)"))),
        }
    }

    #[inline(always)]
    fn dec(&mut self, what: What) -> Result<u64, E> {
        num(self.next(what)?)
    }

    #[inline(always)]
    fn signed(&mut self, what: What) -> Result<i64, E> {
        let v = self.next(what)?;
        fields::signed(v).ok_or_else(|| E::why(|| format!("bad number {v:?}")))
    }

    #[inline(always)]
    fn addr(&mut self, what: What) -> Result<Addr, E> {
        hex(self.next(what)?)
    }

    #[inline(always)]
    fn value(&mut self, kind: FreeListKind, what: What) -> Result<i64, E> {
        let v = self.next(what)?;
        match kind {
            FreeListKind::Int => {
                fields::signed(v).ok_or_else(|| E::why(|| format!("bad int value {v:?}")))
            }
            FreeListKind::Float => v
                .parse::<f64>()
                .map(|x| x.to_bits() as i64)
                .map_err(|_| E::why(|| format!("bad float value {v:?}"))),
        }
    }

    #[inline(always)]
    fn unknown(&mut self) -> E {
        E::why(|| "unknown event letter".into())
    }
}

/// Parses a line: its letter, then the fields the event table gives it
/// ([`grammar`](super::grammar)), and nothing after them.
#[inline(always)]
fn parse<E: Why>(text: &str) -> Result<EventKind, E> {
    let mut f = text.split_ascii_whitespace();
    let letter = f.next().ok_or_else(|| E::why(|| "empty line".into()))?;
    let code = match letter.as_bytes() {
        &[b] => letters(Grammar::P27)[usize::from(b)],
        _ => NOT_A_LETTER,
    };
    if code == NOT_A_LETTER {
        return Err(E::why(|| format!("unknown event letter {letter:?}")));
    }
    let ev = parse_fields(
        &mut Tokens {
            f: &mut f,
            why: PhantomData,
        },
        code,
    )?;
    if f.next().is_some() {
        return Err(E::why(|| "extra fields".into()));
    }
    Ok(ev)
}

impl EventReader for Pyrec27Reader {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        loop {
            let Some(text) = self.lines.next_line()? else {
                return Ok(None);
            };
            let comment = fields::comment(text);
            if comment.is_some() || text.trim().is_empty() {
                match comment {
                    Some(h) if self.events == 0 => self.header.lines.push(h.to_string()),
                    _ if self.events > 0 => {
                        let line = self.lines.line_number();
                        self.text.push(line, || self.lines.raw_text());
                    }
                    _ => {}
                }
                continue;
            }
            if let Ok(kind) = parse::<()>(text) {
                let line = self.lines.line_number();
                self.events += 1;
                return Ok(Some(Event { kind, line }));
            }
            let text = text.to_string();
            let why = explain(&text).err().unwrap_or_default();
            return Err(self.lines.parse_error(&text, why));
        }
    }

    fn header(&self) -> &TraceHeader {
        &self.header
    }

    fn kept_text(&mut self) -> Option<&mut KeptText> {
        Some(&mut self.text)
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
