//! What a trace format is, defined once: the [`Format`] names, how a trace's first bytes
//! tell it ([`sniff`]), and which event kinds each text grammar has a line for.
//!
//! ```text
//!   first bytes (gzip undone)         Format       grammar   reader
//!   "PYALLOCB"                        Binary       -         binary::BinaryReader
//!   "# pymalloc allocation trace"     Pymalloc3    P3        pymalloc3::Pymalloc3Reader
//!   "# pyalloc synthetic workload"    Synthetic    P3        pymalloc3::Pymalloc3Reader
//!   "# PYREC allocator event trace"   Pyrec27      P27       pyrec27::Pyrec27Reader
//!   "# glibc malloc-family call trace" Glibc       G         glibc::GlibcTraceReader
//!   "# mimalloc allocation trace"     Mimalloc     Mi + OS   mimalloc::MimallocReader
//!   "= Start" / "@ … + 0x…"           Mtrace       -         mtrace::MtraceReader
//!   "v HEX HEX" / "+ HEX HEX HEX"     Heaptrack    -         heaptrack::HeaptrackReader
//!   "malloc(…) = …" (any prefix)      Ltrace       -         ltrace::LtraceReader
//! ```
//! The first [`PEEK_LINES`](super::io::PEEK_LINES) lines are looked at; the first line
//! that only one format could have written decides. Each format has exactly one reader;
//! a synthetic workload is written in the CPython 3 grammar, so that reader reads it.
//! The grammars are those [`TextWriter`](super::writer::TextWriter) writes: P3 (`m O 24
//! 7ffff…`), G (`m 24 0x5555…`), P27 (the PYREC letters); which kinds each has a line for
//! is a column of the one event table ([`event_table!`](super::event)).

use super::binary::MAGIC;
use super::{Domain, EventKind, TraceHeader};

/// The first header line of a synthetic workload (`pyalloc generate`), behind `# `.
pub const SYNTHETIC: &str = "pyalloc synthetic workload";

/// Every trace format pyalloc reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// pyalloc's binary format (its header keeps the format it was converted from).
    Binary,
    /// CPython 3 `PyMem_SetAllocator` recordings (`# pymalloc allocation trace …`).
    Pymalloc3,
    /// CPython 2.7 PYREC recordings (`# PYREC allocator event trace …`).
    Pyrec27,
    /// glibc malloc-family interposer recordings (`# glibc malloc-family call trace …`).
    Glibc,
    /// CPython 3.13 on mimalloc 2.1.2 (`# mimalloc allocation trace …`): the CPython 3
    /// call lines and the OS calls under them.
    Mimalloc,
    /// A synthetic workload written by `pyalloc generate` as text (the CPython 3 grammar).
    Synthetic,
    /// glibc's mtrace log.
    Mtrace,
    /// heaptrack's raw stream.
    Heaptrack,
    /// ltrace output.
    Ltrace,
}

/// A text grammar [`TextWriter`](super::writer::TextWriter) writes and a reader reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grammar {
    /// CPython 3 domains (`m O 24 7ffff7cb2030`, `A`, `F`, `V`, `W`).
    P3,
    /// glibc interposer (`m 24 0x5555556742a0`, `a`, `v`, `p`, `o`, `# mark`).
    G,
    /// CPython 2.7 PYREC (free-list letters, `m O`, `r O`, `f O`, arenas).
    P27,
    /// CPython 3.13 on mimalloc: P3's calls and data-stack lines, no arenas (beside the
    /// OS lines its reader reads itself).
    Mi,
}

impl Format {
    /// Every format, in the order `sniff` prefers them.
    pub const ALL: [Format; 9] = [
        Format::Binary,
        Format::Pymalloc3,
        Format::Pyrec27,
        Format::Glibc,
        Format::Mimalloc,
        Format::Synthetic,
        Format::Mtrace,
        Format::Heaptrack,
        Format::Ltrace,
    ];

    /// The name the CLI prints and takes (`binary`, `pymalloc3`, `mtrace` …).
    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Pymalloc3 => "pymalloc3",
            Format::Pyrec27 => "pyrec27",
            Format::Glibc => "glibc",
            Format::Mimalloc => "mimalloc",
            Format::Synthetic => "synthetic",
            Format::Mtrace => "mtrace",
            Format::Heaptrack => "heaptrack",
            Format::Ltrace => "ltrace",
        }
    }

    /// What the format is, for messages (`a CPython 2.7 PYREC recording` …).
    pub fn describe(self) -> &'static str {
        match self {
            Format::Binary => "a pyalloc binary trace",
            Format::Pymalloc3 => "a CPython 3 recording",
            Format::Pyrec27 => "a CPython 2.7 PYREC recording",
            Format::Glibc => "a glibc malloc-family recording",
            Format::Mimalloc => "a CPython 3.13 mimalloc recording",
            Format::Synthetic => "a synthetic workload of `pyalloc generate`",
            Format::Mtrace => "a glibc mtrace log",
            Format::Heaptrack => "a heaptrack raw stream",
            Format::Ltrace => "ltrace output",
        }
    }

    /// The first header line (behind `# `) that names this format, for the formats whose
    /// files open with one.
    pub fn first_line(self) -> Option<&'static str> {
        match self {
            Format::Pymalloc3 => Some("pymalloc allocation trace"),
            Format::Pyrec27 => Some("PYREC allocator event trace"),
            Format::Glibc => Some("glibc malloc-family call trace"),
            Format::Mimalloc => Some("mimalloc allocation trace"),
            Format::Synthetic => Some(SYNTHETIC),
            _ => None,
        }
    }

    /// The format a header names by its first line (how a binary trace keeps the format
    /// it was converted from); `None` when it names none.
    pub fn of_header(header: &TraceHeader) -> Option<Format> {
        let first = header.lines.first()?;
        Format::ALL
            .into_iter()
            .find(|f| f.first_line().is_some_and(|l| first.starts_with(l)))
    }

    /// The text grammar of this format's own lines (`None` for the binary format and the
    /// other tools' formats, which pyalloc reads but writes as the glibc grammar).
    pub(crate) fn grammar(self) -> Option<Grammar> {
        match self {
            Format::Pymalloc3 | Format::Synthetic => Some(Grammar::P3),
            Format::Mimalloc => Some(Grammar::Mi),
            Format::Glibc => Some(Grammar::G),
            Format::Pyrec27 => Some(Grammar::P27),
            _ => None,
        }
    }

    /// True for the other tools' formats (mtrace, heaptrack, ltrace): pyalloc reads their
    /// events, but writes them in the glibc grammar, without their other lines and fields.
    pub fn grammar_is_foreign(self) -> bool {
        matches!(self, Format::Mtrace | Format::Heaptrack | Format::Ltrace)
    }

    /// The domains whose malloc-family calls this format's grammar writes.
    pub fn domains(self) -> &'static [Domain] {
        match self.grammar() {
            Some(Grammar::P3 | Grammar::Mi) => {
                &[Domain::Obj, Domain::Mem, Domain::Raw, Domain::RawNested]
            }
            Some(Grammar::G) => &[Domain::Libc],
            Some(Grammar::P27) => &[Domain::Obj],
            None => &[],
        }
    }

    /// True when this format's grammar has a line for `kind`: what
    /// [`TextWriter`](super::writer::TextWriter) writes for it reads back through this
    /// format's reader as the same event.
    pub fn has_line_for(self, kind: &EventKind) -> bool {
        let Some(g) = self.grammar() else {
            return false;
        };
        EventKind::grammars(kind.code()).contains(&g)
            && kind.domain().map_or(true, |d| self.domains().contains(&d))
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What one line of text says about the format, if it says anything.
pub fn line_says(text: &str) -> Option<Format> {
    if let Some(body) = text.strip_prefix("# ") {
        if let Some(f) = Format::ALL
            .into_iter()
            .find(|f| f.first_line().is_some_and(|l| body.starts_with(l)))
        {
            return Some(f);
        }
    }
    if text == "= Start" || text.starts_with("@ ") {
        return Some(Format::Mtrace);
    }
    let f: Vec<&str> = text.trim_start_matches(' ').split(' ').collect();
    match f.as_slice() {
        ["+", p, s] if p.starts_with("0x") && (s.starts_with("0x") || *s == "0") => {
            return Some(Format::Mtrace)
        }
        ["v", a, b] | ["+", _, a, b] if is_hex(a) && is_hex(b) => return Some(Format::Heaptrack),
        _ => {}
    }
    for name in ["malloc(", "calloc(", "realloc(", "free("] {
        if let Some(at) = text.find(name) {
            let before = &text[..at];
            let plain = before.is_empty()
                || before.ends_with("->")
                || before.ends_with(' ')
                || before.ends_with("] ");
            // `) = RET`, or ltrace's default output: `)` then spaces to the `=` column
            let returns = text[at..].rsplit_once(')').is_some_and(|(_, tail)| {
                let tail = tail.trim_start_matches(' ');
                tail.starts_with("= ") || tail == "="
            });
            if plain && (returns || text.contains(" <unfinished ...>")) {
                return Some(Format::Ltrace);
            }
        }
    }
    None
}

/// Why [`sniff`] found no format: the first line (an excerpt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The first line of the content, at most [`EXCERPT`](super::io::EXCERPT) characters.
    pub first: String,
    /// The content is not text (NUL bytes or invalid UTF-8 in its first line).
    pub not_text: bool,
}

/// Tells a trace's format from the first bytes of its content (gzip already undone):
/// the binary magic, else the first of the first lines that only one format could have
/// written. `complete` says `head` is the whole content (else its last, unfinished line
/// is not looked at).
///
/// # Errors
/// [`Unknown`] with the first line when no format fits.
pub fn sniff(head: &[u8], complete: bool) -> Result<Format, Unknown> {
    if head.starts_with(MAGIC) {
        return Ok(Format::Binary);
    }
    let first_line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    if first_line.contains(&0)
        || std::str::from_utf8(first_line).is_err() && first_line.len() < head.len()
    {
        return Err(Unknown {
            first: super::io::excerpt(&String::from_utf8_lossy(
                &first_line[..first_line.len().min(40)],
            )),
            not_text: true,
        });
    }
    let mut lines = head.split(|&b| b == b'\n').peekable();
    let mut first = None;
    let mut n = 0;
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        if last && !complete || n == super::io::PEEK_LINES {
            break;
        }
        n += 1;
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        if first.is_none() {
            first = Some(super::io::excerpt(text));
        }
        if let Some(f) = line_says(text) {
            return Ok(f);
        }
    }
    let first = first.unwrap_or_else(|| {
        let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
        super::io::excerpt(&String::from_utf8_lossy(line))
    });
    Err(Unknown {
        first,
        not_text: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;

    #[test]
    fn each_format_is_told_by_a_typical_line() {
        let cases = [
            ("= Start", Some(Format::Mtrace)),
            ("@ ./a.out:[0x401156] + 0x4052a0 0x64", Some(Format::Mtrace)),
            ("+ 0x4052a0 0x64", Some(Format::Mtrace)),
            ("v 10100 3", Some(Format::Heaptrack)),
            ("+ 18 1 55555555a2a0", Some(Format::Heaptrack)),
            ("malloc(24) = 0x602010", Some(Format::Ltrace)),
            // ltrace's default output pads the `=` column
            (
                "malloc(24)                                       = 0x55d0c5a0b2a0",
                Some(Format::Ltrace),
            ),
            (
                "free(0x55d0c5a0b2a0)                             = <void>",
                Some(Format::Ltrace),
            ),
            (" - 55f8fa2f80a0", None),
            (" + 18 1 55555555a2a0", Some(Format::Heaptrack)),
            (
                "[pid 3] a.out->free(0x602010) = <void>",
                Some(Format::Ltrace),
            ),
            (
                "# glibc malloc-family call trace: synthetic",
                Some(Format::Glibc),
            ),
            (
                "# PYREC allocator event trace: workload \"seed\"",
                Some(Format::Pyrec27),
            ),
            (
                "# pyalloc synthetic workload (pyalloc generate)",
                Some(Format::Synthetic),
            ),
            (
                "# mimalloc allocation trace recorded from REAL CPython",
                Some(Format::Mimalloc),
            ),
            ("hello world", None),
            ("xmalloc(3) = 4", None),
        ];
        for (line, want) in cases {
            assert_eq!(line_says(line), want, "{line:?}");
        }
    }

    #[test]
    fn sniff_names_the_first_line_of_what_it_cannot_tell() {
        assert_eq!(
            sniff(b"hello world\nsecond\n", true),
            Err(Unknown {
                first: "hello world".into(),
                not_text: false
            })
        );
        assert_eq!(sniff(b"PYALLOCB\x01", false), Ok(Format::Binary));
        // an unfinished last line is not looked at until the content is complete
        assert!(sniff(b"x\n= Start", false).is_err());
        assert_eq!(sniff(b"x\n= Start", true), Ok(Format::Mtrace));
        let long = "y".repeat(100_000);
        let err = sniff(long.as_bytes(), true).unwrap_err();
        assert!(err.first.len() < 300, "{}", err.first.len());
    }

    #[test]
    fn each_grammar_has_lines_only_for_its_domains() {
        let m = |domain| EventKind::Malloc {
            domain,
            size: 1,
            addr: Addr(16),
        };
        let c = EventKind::Calloc {
            domain: Domain::Obj,
            nelem: 1,
            elsize: 1,
            addr: Addr(16),
        };
        assert!(Format::Pymalloc3.has_line_for(&m(Domain::RawNested)));
        assert!(!Format::Pymalloc3.has_line_for(&m(Domain::Libc)));
        assert!(Format::Glibc.has_line_for(&m(Domain::Libc)));
        assert!(Format::Pyrec27.has_line_for(&m(Domain::Obj)));
        assert!(!Format::Pyrec27.has_line_for(&m(Domain::Mem)));
        assert!(!Format::Pyrec27.has_line_for(&c));
        assert!(Format::Synthetic.has_line_for(&c));
        assert!(!Format::Mtrace.has_line_for(&m(Domain::Libc)));
        assert!(Format::Glibc.has_line_for(&EventKind::Mark { index: 0 }));
    }
}
