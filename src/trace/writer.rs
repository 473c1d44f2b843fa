//! Writing events as text, in the formats of the recordings (../shared/traces/README.md).
//!
//! ```text
//!   # header lines, as read            (each TraceHeader line behind "# ")
//!   m O 24 7ffff7cb2030                CPython 3 domains O M R r: hex without 0x
//!   A 1048576 7ffff7a00000  F ADDR SIZE  V SIZE ADDR  W ADDR SIZE   arenas, data-stack chunks
//!   m 24 0x5555556742a0                plain C library calls (Domain::Libc): 0x hex, glibc trace style
//!   B 992 ADDR  I VALUE ADDR  D ADDR  K ADDR LIVE  X ADDR  L …        CPython 2 int free list
//!   b i d k x l                        the same for floats (i's value is the float)
//!   # mark N                           a marker
//! ```
//! One line per event, spelled by the event table's text grammar
//! (`trace::grammar`), which the readers parse with: a trace written here and
//! read back by its format's reader gives the same events, `read(write(e)) == e` for every
//! event a reader produces.

use super::grammar::write_line;
use super::{Event, TraceHeader};
use std::io::{self, Write};

/// A float as C's `printf("%.17g")` writes it, as the PYREC recorder did: 17
/// significant digits, trailing zeros dropped, exponent form (`e+308`, `e-05`) when the
/// exponent is below -4 or at least 17: `1.7976931348623157e+308`, `1790052697`, `0.5`.
pub fn g17(x: f64) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{x:.16e}"); // d.dddddddddddddddde±X, rounded as %e would
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..17).contains(&exp) {
        trim(&format!("{:.*}", (16 - exp) as usize, x))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    }
}

/// Writes events as lines of text.
pub struct TextWriter<W: Write> {
    out: W,
    lines: u64,     // lines written, header included
    text_line: u64, // the source line of the last text line written (0: none)
    line: Vec<u8>,  // the line being written
}

impl<W: Write> TextWriter<W> {
    /// A writer to `out` (wrap it in a `BufWriter` or a gzip encoder as needed).
    pub fn new(out: W) -> TextWriter<W> {
        TextWriter {
            out,
            lines: 0,
            text_line: 0,
            line: Vec::with_capacity(128),
        }
    }

    /// Lines written so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Writes each header line behind `# `.
    ///
    /// # Errors
    /// The output's write errors.
    pub fn write_header(&mut self, header: &TraceHeader) -> io::Result<()> {
        for l in &header.lines {
            writeln!(self.out, "# {l}")?;
            self.lines += 1;
        }
        Ok(())
    }

    /// Writes a line that carries no event of its own (a comment, a trailer line, a
    /// mark's text) as read; an event read from the same `line` next is not written again
    /// (the text is its line, as recorded: `# mark P0 first`, not `# mark 0`).
    ///
    /// # Errors
    /// The output's write errors.
    pub fn write_text(&mut self, line: u64, text: &str) -> io::Result<()> {
        writeln!(self.out, "{text}")?;
        self.lines += 1;
        self.text_line = line;
        Ok(())
    }

    /// Writes one event as one line (none when [`write_text`](Self::write_text) wrote its
    /// line), as the event table's text grammar spells it (`trace::grammar`).
    ///
    /// # Errors
    /// The output's write errors.
    pub fn write_event(&mut self, e: &Event) -> io::Result<()> {
        if e.line != 0 && e.line == self.text_line {
            return Ok(());
        }
        self.line.clear();
        write_line(&mut self.line, &e.kind);
        self.out.write_all(&self.line)?;
        self.lines += 1;
        Ok(())
    }

    /// Flushes and returns the output.
    ///
    /// # Errors
    /// The output's write errors.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;
    use crate::trace::open::from_text;
    use crate::trace::Format;
    use crate::trace::{Domain, EventKind, FreeListKind};

    fn line(kind: EventKind) -> String {
        let mut w = TextWriter::new(Vec::new());
        w.write_event(&Event { kind, line: 0 }).unwrap();
        String::from_utf8(w.finish().unwrap()).unwrap()
    }

    #[test]
    fn writes_each_family_in_its_recorded_spelling() {
        let a = Addr(0x7fff_f7cb_2030);
        assert_eq!(
            line(EventKind::Malloc {
                domain: Domain::Obj,
                size: 24,
                addr: a
            }),
            "m O 24 7ffff7cb2030\n"
        );
        assert_eq!(
            line(EventKind::Realloc {
                domain: Domain::RawNested,
                old: Addr::NULL,
                size: 9,
                new: a
            }),
            "r r 0 9 7ffff7cb2030\n"
        );
        assert_eq!(
            line(EventKind::Free {
                domain: Domain::Libc,
                addr: Addr::NULL
            }),
            "f 0x0\n"
        );
        assert_eq!(
            line(EventKind::ArenaFree {
                addr: a,
                size: 1 << 20
            }),
            "F 7ffff7cb2030 1048576\n"
        );
        assert_eq!(
            line(EventKind::ObjPop {
                kind: FreeListKind::Float,
                value: f64::MAX.to_bits() as i64,
                addr: a
            }),
            "i 1.7976931348623157e+308 7ffff7cb2030\n"
        );
    }

    #[test]
    fn floats_are_written_as_printf_g17_writes_them() {
        // each pair: a value and C's printf("%.17g") of it
        for (x, want) in [
            (1790052697.0, "1790052697"),
            (0.1, "0.10000000000000001"),
            (0.5, "0.5"),
            (-2.5e-5, "-2.5000000000000001e-05"),
            (1e17, "1e+17"),
            (1e16, "10000000000000000"),
            (0.0001, "0.0001"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (-0.0, "-0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(g17(x), want, "{x:e}");
        }
    }

    /// The first header line of each recorded format.
    fn header_of(format: Format) -> TraceHeader {
        let first = match format {
            Format::Pymalloc3 => "pymalloc allocation trace (test)",
            Format::Glibc => "glibc malloc-family call trace: test",
            Format::Pyrec27 => "PYREC allocator event trace: test",
            other => panic!("{other:?} has no text grammar of its own"),
        };
        TraceHeader {
            lines: vec![first.into(), "second line".into()],
        }
    }

    #[test]
    fn each_format_reads_back_what_the_writer_writes() {
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
            EventKind::Realloc {
                domain: Domain::Obj,
                old: Addr::NULL,
                size: 64,
                new: a,
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
                param: i64::MIN,
                value: 7,
                ret: 1,
            },
            EventKind::ArenaAlloc {
                size: 1 << 18,
                addr: a,
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
        let formats = [Format::Pymalloc3, Format::Glibc, Format::Pyrec27];
        for k in &kinds {
            assert!(
                formats.iter().any(|f| f.has_line_for(k)),
                "{k:?}: no reader"
            );
        }
        for format in formats {
            let h = header_of(format);
            let mut w = TextWriter::new(Vec::new());
            w.write_header(&h).unwrap();
            let mut want = Vec::new();
            for &kind in kinds.iter().filter(|k| format.has_line_for(k)) {
                let e = Event {
                    kind,
                    line: w.lines() + 1,
                };
                w.write_event(&e).unwrap();
                want.push(e);
            }
            let text = String::from_utf8(w.finish().unwrap()).unwrap();
            let mut r = from_text(format, "t", &text).unwrap();
            for e in &want {
                assert_eq!(r.next_event().unwrap().as_ref(), Some(e), "{format:?}");
            }
            assert!(r.next_event().unwrap().is_none(), "{format:?}");
            assert_eq!(r.header(), &h, "{format:?}");
        }
    }
}
