//! Reading a trace file as a stream of numbered lines, plain or gzip (told by its
//! magic bytes, not its name), never holding the whole file in memory.

use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

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
        /// Its first line.
        first: String,
    },
}

/// A trace file opened as numbered lines.
pub struct LineReader {
    path: PathBuf,
    inner: Box<dyn BufRead>,
    gzip: bool,
    line: u64,   // lines read so far
    offset: u64, // bytes of text read so far
    buf: String,
}

impl LineReader {
    /// Opens `path`, decompressing when it starts with the gzip magic.
    ///
    /// # Errors
    /// `TraceError::Io` when the file cannot be opened.
    pub fn open(path: &Path) -> Result<LineReader, TraceError> {
        let io_err = |source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = BufReader::with_capacity(1 << 16, File::open(path).map_err(io_err)?);
        let gzip = file.fill_buf().map_err(io_err)?.starts_with(&[0x1f, 0x8b]);
        let inner: Box<dyn BufRead> = if gzip {
            Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file)))
        } else {
            Box::new(file)
        };
        Ok(LineReader::from_reader(path, inner, gzip))
    }

    /// Wraps any reader (tests, standard input); `gzip` says how faults are reported.
    pub fn from_reader(path: &Path, inner: Box<dyn BufRead>, gzip: bool) -> LineReader {
        LineReader {
            path: path.to_path_buf(),
            inner,
            gzip,
            line: 0,
            offset: 0,
            buf: String::new(),
        }
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
    /// `TraceError::Io` for other read faults and for text that is not UTF-8.
    pub fn next_line(&mut self) -> Result<Option<&str>, TraceError> {
        self.buf.clear();
        match self.inner.read_line(&mut self.buf) {
            Ok(0) => Ok(None),
            Ok(n) => {
                self.line += 1;
                self.offset += n as u64;
                let text = self.buf.trim_end_matches(['\n', '\r']);
                Ok(Some(text))
            }
            Err(source) if self.gzip => Err(TraceError::Gzip {
                path: self.path.clone(),
                offset: self.offset,
                source,
            }),
            Err(source) => Err(TraceError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// A parse error for the line last returned.
    pub fn parse_error(&self, text: &str, why: impl Into<String>) -> TraceError {
        TraceError::Parse {
            path: self.path.clone(),
            line: self.line,
            text: text.to_string(),
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
