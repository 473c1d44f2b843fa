//! Reader of the glibc malloc-family call traces (`# glibc malloc-family call trace …`,
//! recorded by an `LD_PRELOAD` interposer; see shared/traces/README.md).
//!
//! ```text
//!  # header lines … brk_at_first_call 0x…, maps_at_first_call …   # end-of-header
//!  # mark TEXT              phase marker              → EventKind::Mark { index }
//!  m SIZE ADDR              malloc                    → Malloc  (domain Libc)
//!  c NELEM ELSIZE ADDR      calloc                    → Calloc
//!  r OLD SIZE NEW           realloc                   → Realloc
//!  f ADDR                   free                      → Free
//!  a ALIGN SIZE ADDR        memalign family           → Memalign
//!  v SIZE ADDR / p SIZE ADDR  valloc / pvalloc        → Valloc / Pvalloc
//!  o PARAM VALUE RET        mallopt                   → Mallopt
//! ```
//! Sizes are decimal, addresses `0x` hex. Lines are parsed in place (no allocation per
//! line); a malformed line is an error with its number and text.

use super::fields::{self, dec, field, signed, Line};
use super::format::Grammar;
use super::grammar::{letters, parse_fields, Fields, What, NOT_A_LETTER};
use super::io::{LineReader, TraceError};
use super::{Domain, Event, EventKind, EventReader, FreeListKind, KeptText, TraceHeader};
use crate::addr::Addr;
use std::path::Path;

/// Streams the events of one glibc trace.
pub struct GlibcTraceReader {
    lines: LineReader,            // the file as numbered lines
    header: TraceHeader,          // `#` lines before the first event
    marks: Vec<String>,           // text of each `# mark` line, by index
    trailer: Vec<String>,         // `#` lines after the first event (other than marks)
    events: u64,                  // events returned so far
    text: KeptText,               // lines after the header with no event of their own
    calls: [u64; 8],              // calls read, by letter m c r f a v p o (kind code / 8)
    at_trailer: Option<[u64; 8]>, // `calls` when the `# trailer` line was read
    end_checked: bool,            // the end was reached and held to the trailer
}

impl GlibcTraceReader {
    /// Opens a trace file (plain or gzip).
    ///
    /// # Errors
    /// `TraceError::Io` when the file cannot be opened.
    pub fn open(path: &Path) -> Result<GlibcTraceReader, TraceError> {
        Ok(GlibcTraceReader::new(LineReader::open(path)?))
    }

    /// Reads events from an already opened line stream.
    pub fn new(lines: LineReader) -> GlibcTraceReader {
        GlibcTraceReader {
            lines: lines.whole_lines(),
            header: TraceHeader::default(),
            marks: Vec::new(),
            trailer: Vec::new(),
            events: 0,
            text: KeptText::default(),
            calls: [0; 8],
            at_trailer: None,
            end_checked: false,
        }
    }

    /// The end of the file: a recording by the interposer (its header names the
    /// `tracer:`) ends with a trailer (`# trailer`, `# count_m N` …) its destructor writes;
    /// without it the file was cut, and each count must be the calls read before it.
    #[cold]
    fn at_end(&mut self) -> Result<Option<Event>, TraceError> {
        if std::mem::replace(&mut self.end_checked, true) {
            return Ok(None);
        }
        let cut = |expected, found, why| TraceError::Cut {
            path: self.lines.path().to_path_buf(),
            expected,
            found,
            why,
        };
        let Some(calls) = self.at_trailer else {
            if self.header.get("tracer").is_some() {
                return Err(cut(
                    None,
                    self.events,
                    format!(
                        "the header names the tracer, whose trailer (`# trailer`, `# count_*`) \
                         is missing after {} lines",
                        self.lines.line_number()
                    ),
                ));
            }
            return Ok(None);
        };
        for l in &self.trailer {
            let Some((letter, n)) = l.strip_prefix("count_").and_then(|r| r.split_once(' ')) else {
                continue;
            };
            let Some(i) = ["m", "c", "r", "f", "a", "v", "p", "o"]
                .iter()
                .position(|&x| x == letter)
            else {
                continue;
            };
            if let Ok(n) = n.trim().parse::<u64>() {
                if calls[i] != n {
                    return Err(cut(
                        Some(n),
                        calls[i],
                        format!("the trailer's `# count_{letter} {n}` counts `{letter}` lines"),
                    ));
                }
            }
        }
        Ok(None)
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        self.lines.path()
    }

    /// The text of mark `index` (`P3 smallbins`).
    pub fn mark(&self, index: u32) -> Option<&str> {
        self.marks.get(index as usize).map(String::as_str)
    }

    /// `#` lines read after the first event (the trailer), marks excluded.
    pub fn trailer(&self) -> &[String] {
        &self.trailer
    }
}

/// A call line's fields after its letter: space-separated, decimal or signed numbers,
/// `0x` addresses, the C library's one domain (no token of its own).
struct Tokens<'a> {
    rest: &'a str, // the line after the fields read
}

impl Fields for Tokens<'_> {
    type Refusal = ();

    fn domain(&mut self) -> Result<Domain, ()> {
        Ok(Domain::Libc)
    }

    fn dec(&mut self, _: What) -> Result<u64, ()> {
        field(&mut self.rest).and_then(dec).ok_or(())
    }

    fn signed(&mut self, _: What) -> Result<i64, ()> {
        field(&mut self.rest).and_then(signed).ok_or(())
    }

    fn addr(&mut self, _: What) -> Result<Addr, ()> {
        field(&mut self.rest).and_then(fields::hex0x).ok_or(())
    }

    fn value(&mut self, _: FreeListKind, what: What) -> Result<i64, ()> {
        self.signed(what) // no glibc line carries a free-list value
    }

    fn unknown(&mut self) {}
}

/// Parses one call line (its letter, then the fields the event table gives it); `None`
/// when malformed.
fn parse(line: &str) -> Option<EventKind> {
    let mut rest = line;
    let &[letter] = field(&mut rest)?.as_bytes() else {
        return None;
    };
    let code = letters(Grammar::G)[usize::from(letter)];
    if code == NOT_A_LETTER {
        return None;
    }
    let mut f = Tokens { rest };
    let kind = parse_fields(&mut f, code).ok()?;
    field(&mut f.rest).is_none().then_some(kind)
}

fn parse_line(text: &str) -> Result<Line<EventKind>, &'static str> {
    fields::commented(text, |t| {
        parse(t).ok_or("not a glibc trace call line (m/c/r/f/a/v/p/o with their fields)")
    })
}

impl EventReader for GlibcTraceReader {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        while let Some((line, parsed)) = fields::next_line_with(&mut self.lines, parse_line)? {
            match parsed {
                Line::Item(kind) => {
                    self.events += 1;
                    self.calls[usize::from(kind.code() / 8) & 7] += 1;
                    return Ok(Some(Event { kind, line }));
                }
                Line::Comment(comment) => {
                    if let Some(mark) = comment.strip_prefix("mark ") {
                        let index = self.marks.len() as u32;
                        self.marks.push(mark.to_string());
                        self.text.push(line, || self.lines.raw_text());
                        let kind = EventKind::Mark { index };
                        return Ok(Some(Event { kind, line }));
                    }
                    if self.events == 0 && self.marks.is_empty() {
                        self.header.lines.push(comment);
                    } else {
                        if comment.starts_with("trailer") && self.at_trailer.is_none() {
                            self.at_trailer = Some(self.calls);
                        }
                        self.text.push(line, || self.lines.raw_text());
                        self.trailer.push(comment);
                    }
                }
                Line::Blank if self.events > 0 || !self.marks.is_empty() => {
                    self.text.push(line, || self.lines.raw_text())
                }
                Line::Blank => {}
            }
        }
        self.at_end()
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

    fn read_all(text: &str) -> Result<(Vec<Event>, GlibcTraceReader), TraceError> {
        let mut r = GlibcTraceReader::new(LineReader::from_text("t.trace", text));
        let mut v = Vec::new();
        while let Some(e) = r.next_event()? {
            v.push(e);
        }
        Ok((v, r))
    }

    #[test]
    fn parses_every_call_kind_and_marks() {
        let text = "# glibc malloc-family call trace: t\n# brk_at_first_call 0x555555674000\n\
                    # maps_at_first_call 7ffff781e000-7ffff7844000 r--p libc\n# mark P0 first\n\
                    m 1 0x5555556742a0\nc 2 8 0x5555556742c0\nr 0x5555556742a0 100 0x5555556742e0\n\
                    f 0x0\na 64 10 0x555555674340\nv 5 0x555555675000\np 5 0x555555676000\no -3 4096 1\n";
        let (ev, r) = read_all(text).unwrap();
        assert_eq!(ev.len(), 9);
        assert_eq!(ev[0].kind, EventKind::Mark { index: 0 });
        assert_eq!(r.mark(0), Some("P0 first"));
        assert_eq!(
            ev[3].kind,
            EventKind::Realloc {
                domain: Domain::Libc,
                old: Addr(0x5555556742a0),
                size: 100,
                new: Addr(0x5555556742e0)
            }
        );
        assert_eq!(
            ev[8].kind,
            EventKind::Mallopt {
                param: -3,
                value: 4096,
                ret: 1
            }
        );
        assert_eq!(ev[8].line, 12);
        // the heap's bounds in the header: read by replay::model::recorded_bounds
        assert_eq!(r.header().get("brk_at_first_call"), Some("0x555555674000"));
    }

    #[test]
    fn malformed_lines_are_errors_with_their_number() {
        for bad in [
            "m 12",
            "m x 0x10",
            "m 1 10",
            "q 1 0x1",
            "f 0x1 2",
            "m 99999999999999999999999 0x1",
        ] {
            let text = format!("# glibc malloc-family call trace: t\nm 1 0x10\n{bad}\n");
            match read_all(&text) {
                Err(TraceError::Parse { line, text, .. }) => {
                    assert_eq!(line, 3);
                    assert_eq!(text, bad);
                }
                other => panic!("{bad:?} gave {:?}", other.map(|(e, _)| e)),
            }
        }
    }
}
