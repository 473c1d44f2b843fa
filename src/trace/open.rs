//! Opening any trace by what it contains, not by its name: the path opened once
//! ([`Source`]), its format told by [`sniff`](super::format::sniff), the same bytes
//! handed to that format's one reader.
//!
//! ```text
//!   open(path) ─▶ Source::open (once; "-" = stdin; gzip undone) ─▶ sniff(head) ─▶ Format
//!                          └──────────────── the same bytes ─────────────▶ Format's reader
//! ```

use super::binary::BinaryReader;
use super::format::{sniff, Format};
use super::glibc::GlibcTraceReader;
use super::heaptrack::HeaptrackReader;
use super::io::Source;
use super::ltrace::LtraceReader;
use super::mimalloc::MimallocReader;
use super::mtrace::MtraceReader;
use super::pymalloc3::Pymalloc3Reader;
use super::pyrec27::Pyrec27Reader;
use super::{EventReader, TraceError};
use std::path::Path;

/// A trace opened and its format told.
pub struct Opened {
    /// The format its content shows.
    pub format: Format,
    /// The opened file, nothing of it consumed.
    pub source: Source,
}

impl Opened {
    /// Opens `path` once (`-` is standard input) and tells its format.
    ///
    /// # Errors
    /// The file cannot be read, or no format fits its first lines (`UnknownFormat`,
    /// quoting the first line).
    pub fn open(path: &Path) -> Result<Opened, TraceError> {
        Opened::from_source(Source::open(path)?)
    }

    /// Tells the format of an opened source.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_source(source: Source) -> Result<Opened, TraceError> {
        match sniff(source.head(), source.head_is_all()) {
            Ok(format) => Ok(Opened { format, source }),
            Err(u) if u.not_text => Err(TraceError::NotText {
                path: source.path().to_path_buf(),
            }),
            Err(u) => Err(TraceError::UnknownFormat {
                path: source.path().to_path_buf(),
                first: u.first,
            }),
        }
    }

    /// The format's reader over the source.
    ///
    /// # Errors
    /// The reader's own checks of the first lines (a binary header cut short …).
    pub fn into_reader(self) -> Result<Box<dyn EventReader>, TraceError> {
        let s = self.source;
        Ok(match self.format {
            Format::Binary => Box::new(BinaryReader::from_source(s)?),
            Format::Mtrace => Box::new(MtraceReader::new(s.into_lines())),
            Format::Heaptrack => Box::new(HeaptrackReader::new(s.into_lines())),
            Format::Ltrace => Box::new(LtraceReader::new(s.into_lines())),
            Format::Pymalloc3 | Format::Synthetic => Box::new(Pymalloc3Reader::from_source(s)?),
            Format::Glibc => Box::new(GlibcTraceReader::new(s.into_lines())),
            Format::Pyrec27 => Box::new(Pyrec27Reader::new(s.into_lines())),
            Format::Mimalloc => Box::new(MimallocReader::new(s.into_lines())?),
        })
    }
}

/// Tells a trace's format from its content, opening it once.
///
/// # Errors
/// As [`Opened::open`].
pub fn sniff_path(path: &Path) -> Result<Format, TraceError> {
    Ok(Opened::open(path)?.format)
}

/// Opens a trace of any known format as a stream of events ([`Opened`] to know the
/// format too). A forked child's trace reads as the process saw it: its parent's events
/// up to the fork, then its own ([`fork`](super::fork)).
///
/// # Errors
/// As [`Opened::open`], and as [`fork::resolve`](super::fork::resolve).
pub fn open(path: &Path) -> Result<Box<dyn EventReader>, TraceError> {
    super::fork::resolve(Opened::open(path)?.into_reader()?, path)
}

/// Reads a trace of a text format held in memory (`name` is used in messages).
///
/// # Errors
/// As the format's reader (a CPython 3 trace must open with its header line).
pub fn from_text(
    format: Format,
    name: &str,
    text: &str,
) -> Result<Box<dyn EventReader>, TraceError> {
    let source = Source::from_bytes(name, text.as_bytes().to_vec())?;
    Opened { format, source }.into_reader()
}
