//! The one reader of other tools' line formats ([`mtrace`](super::mtrace),
//! [`ltrace`](super::ltrace), [`heaptrack`](super::heaptrack)): each line is an allocator
//! event, a header line or another line, and the other lines are counted, not kept. A
//! format module holds only its grammar, a [`ToolFormat`]; this module reads the lines.
//!
//! ```text
//!   LineReader ──line──▶ ToolFormat::parse ─┬─▶ Event(kind)      → Event { kind, line }
//!                                           ├─▶ Continued(kind)  → Event { kind, line - 1 }
//!                                           ├─▶ Header(text)     → header lines, counted
//!                                           └─▶ Other            → counted
//!   end of the lines ──▶ ToolFormat::finish   (an event left half read is an error)
//! ```
//! Invariant: events + other lines == lines read (the first line of a two-line event is
//! an other line; its second line is the event).

use super::{fields, Event, EventKind, EventReader, LineReader, TraceError, TraceHeader};
use std::path::Path;

/// What one line of another tool's output is.
#[derive(Debug)]
pub enum ToolLine {
    /// An allocator event, on this line.
    Event(EventKind),
    /// An allocator event begun on the line before (mtrace's `<` then `>` realloc): it
    /// takes that line's number.
    Continued(EventKind),
    /// A line of the header, as read (counted as an other line too).
    Header(String),
    /// Any other line: counted.
    Other,
}

/// The grammar of one tool's lines, with what it must remember between them.
pub trait ToolFormat: Default {
    /// Reads one line.
    ///
    /// # Errors
    /// Why the line is not one of the format's.
    fn parse(&mut self, text: &str) -> Result<ToolLine, &'static str>;

    /// At the end of the lines: an event left half read is an error.
    ///
    /// # Errors
    /// Why the lines may not end here.
    fn finish(&mut self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// A streaming reader of one tool's output, its lines read by the format `F`.
pub struct ToolReader<F> {
    lines: LineReader,   // the file, line by line
    header: TraceHeader, // the lines `F` calls header lines, as read
    other: u64,          // lines with no allocator event
    format: F,           // the grammar and what it remembers between lines
}

impl<F: ToolFormat> ToolReader<F> {
    /// Opens a file of the tool's output (plain or gzip).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path) -> Result<ToolReader<F>, TraceError> {
        Ok(Self::new(LineReader::open(path)?))
    }

    /// Reads from an opened line stream.
    pub fn new(lines: LineReader) -> ToolReader<F> {
        ToolReader {
            lines,
            header: TraceHeader::default(),
            other: 0,
            format: F::default(),
        }
    }
}

impl<F: ToolFormat> EventReader for ToolReader<F> {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        let format = &mut self.format;
        while let Some((line, parsed)) =
            fields::next_line_with(&mut self.lines, |t| format.parse(t))?
        {
            match parsed {
                ToolLine::Event(kind) => return Ok(Some(Event { kind, line })),
                ToolLine::Continued(kind) => {
                    let line = line - 1;
                    return Ok(Some(Event { kind, line }));
                }
                ToolLine::Header(text) => {
                    self.other += 1;
                    self.header.lines.push(text);
                }
                ToolLine::Other => self.other += 1,
            }
        }
        match self.format.finish() {
            Ok(()) => Ok(None),
            Err(why) => Err(self.lines.parse_error("", why)),
        }
    }

    fn header(&self) -> &TraceHeader {
        &self.header
    }

    fn other_lines(&self) -> u64 {
        self.other
    }
}
