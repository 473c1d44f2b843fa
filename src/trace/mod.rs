//! Traces: streams of allocator events, read streaming (never the whole file in memory),
//! plain or gzip.
//!
//! One [`Event`] type serves every format. Each recorded format has its own reader
//! module; replay, check and compare are written once against the event stream.
//! - [`io`]: a path opened once ([`Source`], `-` = standard input) and read as numbered
//!   lines, gzip detected by its magic, every line bounded;
//! - [`event`]: the event type and the one table keyed on its kind;
//! - [`format`]: what a format is, once: [`Format`], [`sniff`], [`SYNTHETIC`];
//! - [`open`]: any trace opened by its content, each format by its one reader;
//!   [`output`]: [`create`] a trace file (text or binary, plain or gzip, through a
//!   temporary file renamed into place) written through an [`EventWriter`];
//!   [`writer`]: the recordings' text formats written; [`binary`]: the compact binary format;
//! - [`pymalloc3`], [`glibc`], [`pyrec27`]: the recorded formats' readers (CPython 3,
//!   glibc interposer, CPython 2.7 PYREC); `pyalloc generate`'s text is read by [`pymalloc3`];
//! - [`mimalloc`]: CPython 3.13 on mimalloc (calls and the OS calls under them);
//! - [`mtrace`], [`ltrace`], [`heaptrack`]: other tools' formats, each a grammar read by
//!   [`tool`]'s one reader; [`synth`]: generated workloads;
//! - [`packed`]: events pre-decoded at 16 bytes each, for a replay that runs them many times;
//! - `grammar`: the text lines of every kind, generated from the event table: what the
//!   text readers parse (each with its own tokenizer) and the [`writer`] writes;
//! - `fields`: the line-token handling the line-based readers share.

pub mod binary;
pub mod event;
pub(crate) mod fields;
pub mod fork;
pub mod format;
pub mod glibc;
pub(crate) mod grammar;
pub mod heaptrack;
pub mod io;
pub mod ltrace;
pub mod mimalloc;
pub mod mtrace;
pub mod open;
pub mod output;
pub mod packed;
pub mod pymalloc3;
pub mod pyrec27;
pub mod shapes;
pub mod synth;
pub mod tool;
pub mod writer;

pub use event::{Domain, Event, EventKind, FreeListKind};
pub use format::{sniff, Format, SYNTHETIC};
pub use io::{LineReader, Source, TraceError};
pub use open::{open, Opened};
pub use output::{create, EventWriter, Written};

/// The `#` lines at the head of a recorded trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeader {
    /// Each header line without its leading `#` and one space.
    pub lines: Vec<String>,
}

impl TraceHeader {
    /// The value of the first `key: value` (or `key value`) header line, trimmed.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| {
            let rest = l.trim_start().strip_prefix(key)?;
            let rest = rest.strip_prefix(':').unwrap_or(rest);
            (rest.is_empty() || rest.starts_with(' ')).then(|| rest.trim())
        })
    }
}

/// The lines after a trace's header that carry no event of their own, `(line, text as
/// read)`, held by each reader that has them: kept only once
/// [`EventReader::keep_text`] asked (a replay keeps nothing), handed over by
/// [`EventReader::take_text`].
#[derive(Debug, Default)]
pub struct KeptText {
    on: bool,                  // a lossless copy asked for them
    lines: Vec<(u64, String)>, // kept and not yet taken
}

impl KeptText {
    /// Keeps line `line` when asked to; its text is made only then.
    #[inline]
    pub(crate) fn push(&mut self, line: u64, text: impl FnOnce() -> String) {
        if self.on {
            self.lines.push((line, text()));
        }
    }
}

/// A stream of events from one trace, whatever its format.
pub trait EventReader {
    /// The next event, or `None` at the end of the trace.
    ///
    /// # Errors
    /// A malformed line (with its number and text), a truncated or corrupt file.
    fn next_event(&mut self) -> Result<Option<Event>, TraceError>;

    /// The header read so far (all of it once the first event has been returned).
    fn header(&self) -> &TraceHeader;

    /// Lines read that carry no allocator event (caller lines, timestamps, module maps,
    /// calls of other functions …), counted so that nothing read is skipped silently.
    fn other_lines(&self) -> u64 {
        0
    }

    /// Moves into `out` the lines read so far, after the header, that carry no event of
    /// their own: comments, a trailer, blank lines, and a mark line's own text (`# mark
    /// P0 first`, on the same line as its [`EventKind::Mark`]): `(line, text as read)`.
    /// What a lossless copy ([`output::copy`]) writes back in place. Formats of other
    /// tools return none (their other lines are counted in [`other_lines`](Self::other_lines)).
    ///
    /// Kept only after [`keep_text`](Self::keep_text) (a replay keeps nothing).
    fn take_text(&mut self, out: &mut Vec<(u64, String)>) {
        if let Some(kept) = self.kept_text() {
            out.append(&mut kept.lines);
        }
    }

    /// Asks the reader to keep the lines [`take_text`](Self::take_text) hands over.
    fn keep_text(&mut self) {
        if let Some(kept) = self.kept_text() {
            kept.on = true;
        }
    }

    /// Where the reader keeps the lines [`take_text`](Self::take_text) hands over; `None`
    /// (the default) for formats whose other lines are only counted.
    fn kept_text(&mut self) -> Option<&mut KeptText> {
        None
    }

    /// Fills `out` from the front with the next events; returns how many (0 at the end).
    /// Readers that can decode faster in bulk override it; the default calls
    /// [`next_event`](Self::next_event) for each.
    ///
    /// # Errors
    /// As [`next_event`](Self::next_event); the events before the fault are lost.
    fn next_events(&mut self, out: &mut [Event]) -> Result<usize, TraceError> {
        let mut n = 0;
        while n < out.len() {
            match self.next_event()? {
                Some(e) => out[n] = e,
                None => break,
            }
            n += 1;
        }
        Ok(n)
    }
}
