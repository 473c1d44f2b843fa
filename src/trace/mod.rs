//! Traces: streams of allocator events, read streaming (never the whole file in memory),
//! plain or gzip.
//!
//! One [`Event`] type serves every format. Each recorded format has its own reader
//! module; replay, check and compare are written once against the event stream.
//! - [`io`]: opening a file as a stream of numbered lines, gzip detected by its magic;
//! - [`event`]: the event type;
//! - [`pyrec27`]: the CPython 2.7 PYREC recordings.

pub mod event;
pub mod io;
pub mod pyrec27;

pub use event::{Domain, Event, EventKind, FreeListKind};
pub use io::{LineReader, TraceError};

/// The recorded formats pyalloc reads, told apart by their first header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// CPython 3 `PyMem_SetAllocator` recordings (`# pymalloc allocation trace …`).
    Pymalloc3,
    /// CPython 2.7 PYREC recordings (`# PYREC allocator event trace …`).
    Pyrec27,
    /// glibc malloc-family interposer recordings (`# glibc malloc-family call trace …`).
    Glibc,
}

impl TraceFormat {
    /// Recognises a format from the first line of a file.
    pub fn detect(first_line: &str) -> Option<TraceFormat> {
        if first_line.starts_with("# pymalloc allocation trace") {
            Some(TraceFormat::Pymalloc3)
        } else if first_line.starts_with("# PYREC allocator event trace") {
            Some(TraceFormat::Pyrec27)
        } else if first_line.starts_with("# glibc malloc-family call trace") {
            Some(TraceFormat::Glibc)
        } else {
            None
        }
    }
}

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

/// A stream of events from one trace, whatever its format.
pub trait EventReader {
    /// The next event, or `None` at the end of the trace.
    ///
    /// # Errors
    /// A malformed line (with its number and text), a truncated or corrupt file.
    fn next_event(&mut self) -> Result<Option<Event>, TraceError>;

    /// The header read so far (all of it once the first event has been returned).
    fn header(&self) -> &TraceHeader;
}
