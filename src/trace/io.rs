//! Opening a trace once and reading it as a stream of numbered lines, plain or gzip
//! (told by its magic bytes, not its name), never holding the whole file in memory.
//!
//! ```text
//!   path ──open once──▶ Source { first bytes (gzip undone), the rest } ──▶ sniff(first bytes)
//!   "-"  = standard input        │                                     (trace::format)
//!                                └──▶ LineReader / BinaryReader / Pymalloc3Reader (same bytes)
//! ```
//! A path is opened exactly once, so a pipe, a FIFO or standard input reads as a file
//! does. Bounds, whatever the input claims: a line is at most [`MAX_LINE`] bytes (longer
//! is an error with its line number), and no message quotes more than [`EXCERPT`]
//! characters of a line.

use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The longest line any text reader accepts, in bytes (1 MiB: the recordings' longest
/// header line is a few hundred bytes).
pub const MAX_LINE: usize = 1 << 20;

/// The most characters of a line a message quotes.
pub const EXCERPT: usize = 200;

/// What a [`Source`] keeps of the stream's head for sniffing: up to this many bytes …
const PEEK_BYTES: usize = 1 << 16;
/// … or this many lines, whichever comes first.
pub(crate) const PEEK_LINES: usize = 200;

/// At most [`EXCERPT`] characters of `text`, with `…` and the full length when cut.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT) {
        None => text.to_string(),
        Some((at, _)) => format!("{}… ({} bytes in all)", &text[..at], text.len()),
    }
}

/// What went wrong reading a trace: always with the file, and the line or byte offset.
#[derive(Debug, Error)]
pub enum TraceError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error from the system or the decompressor.
        source: io::Error,
    },
    /// A gzip stream that ends early or is corrupt.
    #[error("{path}: gzip stream broken after {offset} bytes of decompressed text: {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// Bytes of text decoded before the fault.
        offset: u64,
        /// The decompressor's error.
        source: io::Error,
    },
    /// A line that does not parse.
    #[error("{path}:{line}: {why}: {text:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The line as read.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// A file that ends in the middle of a record (binary traces).
    #[error("{path}: truncated at byte {offset}: {why}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes read before the end came.
        offset: u64,
        /// What was being read.
        why: String,
    },
    /// A file whose header names no format pyalloc reads.
    #[error("{path}: unknown trace format (first line {first:?})")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// Its first line (at most [`EXCERPT`] characters of it).
        first: String,
    },
    /// Content that is neither text nor a pyalloc binary trace (NUL bytes or invalid
    /// UTF-8 in its first line: a device such as /dev/zero, an executable, a core file …).
    #[error(
        "{path}: not text (NUL bytes or invalid UTF-8 in its first line) and not a pyalloc \
         binary trace (which starts with \"PYALLOCB\"): not a trace pyalloc reads"
    )]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// A line longer than [`MAX_LINE`] bytes (a binary or corrupt file read as text).
    #[error(
        "{path}:{line}: line longer than {max} bytes: not a trace line (a corrupt file, or \
         not a trace)",
        max = MAX_LINE
    )]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
    },
    /// An output that is the input (same device and inode): refused before anything is
    /// written.
    #[error(
        "{output}: is the input {input} (the same file): refusing to write over the trace \
         being read; give another output name"
    )]
    OutputIsInput {
        /// The output named.
        output: PathBuf,
        /// The input it is.
        input: PathBuf,
    },
    /// A file that ends before the end its header or trailer promises: fewer events than
    /// a `# records: N` header, a glibc recording without its trailer, or with fewer calls
    /// of a kind than its trailer's `# count_*` lines.
    #[error(
        "{path}: truncated: {why} (expected {}, found {found})",
        expected.map_or_else(|| "a trailer".to_string(), |n| n.to_string())
    )]
    Cut {
        /// The file.
        path: PathBuf,
        /// The count the file promises, when it says one.
        expected: Option<u64>,
        /// The count read before it ended.
        found: u64,
        /// How the file promised it, and what was counted.
        why: String,
    },
    /// A reader given a trace of another format (a CPython 2.7 trace to `stats`, say).
    #[error("{path}: {} ({}), not {wanted}", found.describe(), found.name())]
    WrongFormat {
        /// The file.
        path: PathBuf,
        /// The format its content shows.
        found: super::Format,
        /// What the reader reads.
        wanted: &'static str,
    },
}

impl TraceError {
    /// A file whose last line (line `line`, ending at byte `offset`) has no newline: a
    /// recorder writes whole lines, so the file was cut mid-line.
    #[cold]
    pub fn cut_mid_line(path: &Path, offset: u64, line: u64) -> TraceError {
        TraceError::Truncated {
            path: path.to_path_buf(),
            offset,
            why: format!(
                "its last line (line {line}) ends without a newline: the file was cut \
                 mid-line, and that line's numbers may be cut short"
            ),
        }
    }

    /// A read of `path` failed: through gzip, the fault and the decompressed `offset`
    /// where it struck; plain, the I/O error.
    pub fn read(path: &Path, gzip: bool, source: io::Error, offset: u64) -> TraceError {
        let path = path.to_path_buf();
        if gzip {
            TraceError::Gzip {
                path,
                offset,
                source,
            }
        } else {
            TraceError::Io { path, source }
        }
    }
}

/// A trace opened once: the first bytes of its (decompressed) content kept for
/// sniffing, then the whole stream, those bytes first.
pub struct Source {
    path: PathBuf,              // the file, `<stdin>` for `-`
    gzip: bool,                 // the bytes come through a gzip decoder
    head: Vec<u8>,              // the first bytes of the content
    rest: Box<dyn Read + Send>, // the content after `head`
    eof: bool,                  // `rest` is known to be empty
}

impl Source {
    /// Opens `path` (`-` is standard input), undoes gzip (told by its magic), and reads
    /// the first [`PEEK_LINES`] lines or 64 KiB of content for sniffing.
    ///
    /// # Errors
    /// The file cannot be opened or read; a broken gzip stream (with its offset).
    pub fn open(path: &Path) -> Result<Source, TraceError> {
        if path == Path::new("-") {
            let stdin: Box<dyn Read + Send> = Box::new(io::stdin());
            return Source::from_reader(Path::new("<stdin>"), stdin);
        }
        let file = File::open(path).map_err(|source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Source::from_reader(path, Box::new(file))
    }

    /// A source over bytes held in memory (tests; `name` is used in messages).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Source, TraceError> {
        Source::from_reader(Path::new(name), Box::new(io::Cursor::new(bytes)))
    }

    /// A source over any byte stream, plain or gzip.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_reader(path: &Path, mut raw: Box<dyn Read + Send>) -> Result<Source, TraceError> {
        let io_err = |source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut magic = [0u8; 2];
        let n = read_up_to(&mut raw, &mut magic).map_err(io_err)?;
        let gzip = n == 2 && magic == [0x1f, 0x8b];
        let raw: Box<dyn Read + Send> = Box::new(io::Cursor::new(magic[..n].to_vec()).chain(raw));
        let rest: Box<dyn Read + Send> = if gzip {
            Box::new(MultiGzDecoder::new(raw))
        } else {
            raw
        };
        let mut s = Source {
            path: path.to_path_buf(),
            gzip,
            head: Vec::new(),
            rest,
            eof: false,
        };
        s.peek()?;
        Ok(s)
    }

    /// Reads the head: until [`PEEK_LINES`] newlines, 64 KiB, or the end.
    fn peek(&mut self) -> Result<(), TraceError> {
        let mut chunk = [0u8; 4096];
        let mut lines = 0;
        while self.head.len() < PEEK_BYTES && lines < PEEK_LINES {
            let n = match self.rest.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.read_error(source, self.head.len() as u64)),
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            lines += chunk[..n].iter().filter(|&&b| b == b'\n').count();
            self.head.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }

    fn read_error(&self, source: io::Error, offset: u64) -> TraceError {
        TraceError::read(&self.path, self.gzip, source, offset)
    }

    /// The file (`<stdin>` for standard input).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the content comes through a gzip decoder.
    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// The first bytes of the content (after gzip): up to [`PEEK_LINES`] lines or 64 KiB.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// True when [`head`](Self::head) is the whole content.
    pub fn head_is_all(&self) -> bool {
        self.eof
    }

    /// The whole content as one byte stream, the head first.
    pub fn into_read(self) -> Box<dyn Read + Send> {
        if self.eof {
            Box::new(io::Cursor::new(self.head))
        } else {
            Box::new(io::Cursor::new(self.head).chain(self.rest))
        }
    }

    /// The content as numbered lines.
    pub fn into_lines(self) -> LineReader {
        let (path, gzip) = (self.path.clone(), self.gzip);
        let inner = BufReader::with_capacity(1 << 16, self.into_read());
        LineReader::from_reader(&path, Box::new(inner), gzip)
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
pub(crate) fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A trace file opened as numbered lines.
pub struct LineReader {
    path: PathBuf,
    inner: Box<dyn BufRead + Send>,
    gzip: bool,
    line: u64,    // lines read so far
    offset: u64,  // bytes of text read so far
    buf: Vec<u8>, // the line last read, its ending included
    whole: bool,  // a recorder's format: a last line without its newline was cut
}

impl LineReader {
    /// Opens `path` (`-` is standard input), decompressing when it starts with the gzip
    /// magic.
    ///
    /// # Errors
    /// `TraceError::Io` when the file cannot be opened.
    pub fn open(path: &Path) -> Result<LineReader, TraceError> {
        Ok(Source::open(path)?.into_lines())
    }

    /// Wraps any reader (tests, standard input); `gzip` says how faults are reported.
    pub fn from_reader(path: &Path, inner: Box<dyn BufRead + Send>, gzip: bool) -> LineReader {
        LineReader {
            path: path.to_path_buf(),
            inner,
            gzip,
            line: 0,
            offset: 0,
            buf: Vec::new(),
            whole: false,
        }
    }

    /// For a format a recorder writes in whole lines: a last line without its newline is
    /// then a cut mid-line ([`TraceError::Truncated`] naming the line), never an event whose
    /// numbers may be cut short.
    #[must_use]
    pub fn whole_lines(mut self) -> LineReader {
        self.whole = true;
        self
    }

    /// Opens a reader over an in-memory text (tests).
    pub fn from_text(name: &str, text: &str) -> LineReader {
        let bytes = text.as_bytes().to_vec();
        LineReader::from_reader(Path::new(name), Box::new(io::Cursor::new(bytes)), false)
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of the line last returned (1-based).
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// Bytes of text read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next line without its line ending, or `None` at the end of the file.
    ///
    /// # Errors
    /// `TraceError::Gzip` (with the offset) for a truncated or corrupt gzip stream,
    /// `TraceError::LineTooLong` past [`MAX_LINE`] bytes, `TraceError::Io` for other read
    /// faults, `TraceError::Parse` for text that is not UTF-8.
    pub fn next_line(&mut self) -> Result<Option<&str>, TraceError> {
        self.buf.clear();
        let limit = MAX_LINE as u64 + 2; // the longest line, then "\r\n"
        match (&mut self.inner)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
        {
            Ok(0) => Ok(None),
            Ok(n) => {
                self.line += 1;
                self.offset += n as u64;
                if n as u64 == limit && self.buf.last() != Some(&b'\n') {
                    return Err(TraceError::LineTooLong {
                        path: self.path.clone(),
                        line: self.line,
                    });
                }
                if self.whole && self.buf.last() != Some(&b'\n') {
                    return Err(TraceError::cut_mid_line(&self.path, self.offset, self.line));
                }
                let mut end = self.buf.len();
                while end > 0 && matches!(self.buf[end - 1], b'\n' | b'\r') {
                    end -= 1;
                }
                match std::str::from_utf8(&self.buf[..end]) {
                    Ok(text) => Ok(Some(text)),
                    Err(_) => Err(TraceError::Parse {
                        path: self.path.clone(),
                        line: self.line,
                        text: excerpt(&String::from_utf8_lossy(&self.buf[..end])),
                        why: "not UTF-8 text".into(),
                    }),
                }
            }
            Err(source) => Err(TraceError::read(&self.path, self.gzip, source, self.offset)),
        }
    }

    /// The line last returned by [`next_line`](Self::next_line) as read, its line ending
    /// (`\n`, `\r\n` or none at the end of the file) included.
    pub fn raw_line(&self) -> &[u8] {
        &self.buf
    }

    /// The line last returned, as read (a `\r` before its `\n` kept), without its `\n`.
    pub fn raw_text(&self) -> String {
        let raw = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        String::from_utf8_lossy(raw).into_owned()
    }

    /// A parse error for the line last returned (quoting at most [`EXCERPT`] characters).
    pub fn parse_error(&self, text: &str, why: impl Into<String>) -> TraceError {
        TraceError::Parse {
            path: self.path.clone(),
            line: self.line,
            text: excerpt(text),
            why: why.into(),
        }
    }

    /// Reads the rest of the stream into `sink` (used by benchmarks to time decompression alone).
    ///
    /// # Errors
    /// As [`next_line`](Self::next_line).
    pub fn drain(&mut self, sink: &mut impl io::Write) -> Result<u64, TraceError> {
        let mut n = 0u64;
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            let got = self
                .inner
                .read(&mut chunk)
                .map_err(|source| TraceError::Gzip {
                    path: self.path.clone(),
                    offset: self.offset + n,
                    source,
                })?;
            if got == 0 {
                return Ok(n);
            }
            n += got as u64;
            sink.write_all(&chunk[..got])
                .map_err(|source| TraceError::Io {
                    path: self.path.clone(),
                    source,
                })?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    #[test]
    fn numbers_lines_and_strips_endings() {
        let mut r = LineReader::from_text("t", "a\r\nb\n\nc");
        assert_eq!(r.next_line().unwrap(), Some("a"));
        assert_eq!(r.next_line().unwrap(), Some("b"));
        assert_eq!(r.next_line().unwrap(), Some(""));
        assert_eq!(r.next_line().unwrap(), Some("c"));
        assert_eq!(r.line_number(), 4);
        assert_eq!(r.next_line().unwrap(), None);
    }

    #[test]
    fn truncated_gzip_is_an_error_with_an_offset() {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        for i in 0..20000 {
            writeln!(enc, "m O {i} 7ffff7cb2030").unwrap();
        }
        let full = enc.finish().unwrap();
        let cut = full[..full.len() / 2].to_vec();
        let dir = std::env::temp_dir().join(format!("pyalloc-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cut.trace.gz");
        std::fs::write(&path, cut).unwrap();
        let mut r = LineReader::open(&path).unwrap();
        let err = loop {
            match r.next_line() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a truncated stream must not end cleanly"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, TraceError::Gzip { offset, .. } if offset > 0));
        std::fs::remove_dir_all(&dir).ok();
    }
}
