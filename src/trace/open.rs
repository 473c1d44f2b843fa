//! Opening any trace by what it contains, not by its name.
//!
//! ```text
//!   bytes (gzip undone first)      format             reader
//!   "PYALLOCB"                     binary             binary::BinaryReader
//!   "# pymalloc allocation trace"  CPython 3 domains  pymalloc3::Pymalloc3Reader
//!   "# PYREC allocator event"      CPython 2.7 PYREC  pyrec27::Pyrec27Reader
//!   "# glibc malloc-family call"   glibc interposer   glibc::GlibcTraceReader
//!   "= Start" / "@ … + 0x…"        glibc mtrace       mtrace::MtraceReader
//!   "v HEX HEX" / "+ HEX HEX HEX"  heaptrack raw      heaptrack::HeaptrackReader
//!   "malloc(…) = …" (any prefix)   ltrace             ltrace::LtraceReader
//!   "# pyalloc synthetic workload" pyalloc generate   pymalloc3::Pymalloc3Reader
//! ```
//! Each format has exactly one reader; a synthetic workload is written in the CPython 3
//! grammar (domains O and M), so the CPython 3 reader reads it.
//! The first 200 lines are looked at; the first line that only one format could have
//! written decides.

use super::binary::{BinaryReader, MAGIC};
use super::glibc::GlibcTraceReader;
use super::heaptrack::HeaptrackReader;
use super::ltrace::LtraceReader;
use super::mtrace::MtraceReader;
use super::pymalloc3::Pymalloc3Reader;
use super::pyrec27::Pyrec27Reader;
use super::{EventReader, LineReader, TraceError, TraceFormat};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Every format [`open`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// pyalloc's binary format.
    Binary,
    /// One of the recorded formats of ../shared/traces.
    Recorded(TraceFormat),
    /// glibc's mtrace log.
    Mtrace,
    /// heaptrack's raw stream.
    Heaptrack,
    /// ltrace output.
    Ltrace,
    /// A synthetic workload written by `pyalloc generate` as text.
    Synthetic,
}

/// The first header line of a synthetic workload (`pyalloc generate`).
pub const SYNTHETIC: &str = "pyalloc synthetic workload";

impl Format {
    /// The name the CLI prints and takes (`binary`, `pymalloc3`, `mtrace` …).
    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Recorded(TraceFormat::Pymalloc3) => "pymalloc3",
            Format::Recorded(TraceFormat::Pyrec27) => "pyrec27",
            Format::Recorded(TraceFormat::Glibc) => "glibc",
            Format::Mtrace => "mtrace",
            Format::Heaptrack => "heaptrack",
            Format::Ltrace => "ltrace",
            Format::Synthetic => "synthetic",
        }
    }
}

/// True when the file's first bytes (after gzip) are the binary magic.
fn is_binary(path: &Path) -> Result<bool, TraceError> {
    let io_err = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io_err)?;
    let mut head = [0u8; 8];
    let n = read_up_to(&mut f, &mut head).map_err(io_err)?;
    if n >= 2 && head[..2] == [0x1f, 0x8b] {
        let f = File::open(path).map_err(io_err)?;
        let mut z = MultiGzDecoder::new(f);
        let mut inner = [0u8; 8];
        let n = read_up_to(&mut z, &mut inner).unwrap_or(0);
        return Ok(n == 8 && &inner == MAGIC);
    }
    Ok(n == 8 && &head == MAGIC)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What one line says about the format, if it says anything.
fn line_says(text: &str) -> Option<Format> {
    if let Some(f) = TraceFormat::detect(text) {
        return Some(Format::Recorded(f));
    }
    if text
        .strip_prefix("# ")
        .is_some_and(|t| t.starts_with(SYNTHETIC))
    {
        return Some(Format::Synthetic);
    }
    if text == "= Start" || text.starts_with("@ ") {
        return Some(Format::Mtrace);
    }
    let f: Vec<&str> = text.split(' ').collect();
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
            if plain && (text.contains(") = ") || text.contains(" <unfinished ...>")) {
                return Some(Format::Ltrace);
            }
        }
    }
    None
}

/// Tells a trace's format from its content.
///
/// # Errors
/// The file cannot be read, or no format fits its first lines.
pub fn sniff(path: &Path) -> Result<Format, TraceError> {
    if is_binary(path)? {
        return Ok(Format::Binary);
    }
    let mut lines = LineReader::open(path)?;
    let mut first = None;
    for _ in 0..200 {
        let Some(text) = lines.next_line()? else {
            break;
        };
        if first.is_none() {
            first = Some(text.to_string());
        }
        if let Some(f) = line_says(text) {
            return Ok(f);
        }
    }
    Err(TraceError::UnknownFormat {
        path: path.to_path_buf(),
        first: first.unwrap_or_default(),
    })
}

/// Opens a trace of any known format as a stream of events.
///
/// # Errors
/// As [`sniff`].
pub fn open(path: &Path) -> Result<Box<dyn EventReader>, TraceError> {
    let format = sniff(path)?;
    open_as(path, format)
}

/// Opens a trace as the given format.
///
/// # Errors
/// The file cannot be opened.
pub fn open_as(path: &Path, format: Format) -> Result<Box<dyn EventReader>, TraceError> {
    Ok(match format {
        Format::Binary => Box::new(BinaryReader::open(path)?),
        Format::Mtrace => Box::new(MtraceReader::open(path)?),
        Format::Heaptrack => Box::new(HeaptrackReader::open(path)?),
        Format::Ltrace => Box::new(LtraceReader::open(path)?),
        Format::Recorded(TraceFormat::Pymalloc3) | Format::Synthetic => {
            Box::new(Pymalloc3Reader::open(path)?)
        }
        Format::Recorded(TraceFormat::Glibc) => Box::new(GlibcTraceReader::open(path)?),
        Format::Recorded(TraceFormat::Pyrec27) => Box::new(Pyrec27Reader::open(path)?),
    })
}

/// Reads a trace of a recorded format held in memory (`name` is used in messages).
///
/// # Errors
/// As the format's reader (a CPython 3 trace must open with its header line).
pub fn recorded_from_text(
    format: TraceFormat,
    name: &str,
    text: &str,
) -> Result<Box<dyn EventReader>, TraceError> {
    let lines = || LineReader::from_text(name, text);
    Ok(match format {
        TraceFormat::Pymalloc3 => Box::new(Pymalloc3Reader::from_text(name, text)?),
        TraceFormat::Glibc => Box::new(GlibcTraceReader::new(lines())),
        TraceFormat::Pyrec27 => Box::new(Pyrec27Reader::new(lines())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_told_by_a_typical_line() {
        let cases = [
            ("= Start", Some(Format::Mtrace)),
            ("@ ./a.out:[0x401156] + 0x4052a0 0x64", Some(Format::Mtrace)),
            ("+ 0x4052a0 0x64", Some(Format::Mtrace)),
            ("v 10100 3", Some(Format::Heaptrack)),
            ("+ 18 1 55555555a2a0", Some(Format::Heaptrack)),
            ("malloc(24) = 0x602010", Some(Format::Ltrace)),
            (
                "[pid 3] a.out->free(0x602010) = <void>",
                Some(Format::Ltrace),
            ),
            (
                "# glibc malloc-family call trace: synthetic",
                Some(Format::Recorded(TraceFormat::Glibc)),
            ),
            ("hello world", None),
            ("xmalloc(3) = 4", None),
        ];
        for (line, want) in cases {
            assert_eq!(line_says(line), want, "{line:?}");
        }
    }
}
