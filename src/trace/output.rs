//! Writing a trace, the one place an output's form is chosen: text or binary, plain or
//! gzip, written to a temporary file beside the output and renamed into place only when
//! complete.
//!
//! ```text
//!   create(OUT, header, opts)                 refuse OUT if it is the input (device + inode)
//!     OUT = x.bin / x.pyab [.gz]  -> binary   (or opts.binary)
//!     otherwise                   -> text     (the recordings' grammars, writer.rs)
//!     OUT ends in .gz             -> gzip
//!     bytes go to  DIR/.OUT.pyalloc-PID-N.tmp   (same folder, so the rename is atomic)
//!   write_event(e) …
//!   finish()  end record, gzip trailer, flush, fsync, rename -> Written { path, events, bytes }
//!   dropped unfinished (an error on the way)  -> the temporary file is removed, OUT untouched
//! ```
//! Invariant: OUT either keeps what it held before, or holds the whole new trace.

use super::binary::BinaryWriter;
use super::writer::TextWriter;
use super::{Event, TraceError, TraceHeader};
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where events go, whatever the form.
pub trait EventWriter {
    /// Appends one event.
    ///
    /// # Errors
    /// The output's write errors.
    fn write_event(&mut self, e: &Event) -> Result<(), TraceError>;

    /// Writes a line that carries no event of its own, as read from the input's `line`
    /// (see [`EventReader::take_text`](super::EventReader::take_text)).
    ///
    /// # Errors
    /// The output's write errors.
    fn write_text(&mut self, line: u64, text: &str) -> Result<(), TraceError>;

    /// Events written so far.
    fn events(&self) -> u64;

    /// Ends the trace (the binary end record, the gzip trailer), flushes it and puts it in
    /// place; returns what was written.
    ///
    /// # Errors
    /// The output's write errors, the final ones (gzip trailer, flush, rename) included.
    fn finish(self: Box<Self>) -> Result<Written, TraceError>;
}

/// What a finished output holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The file.
    pub path: PathBuf,
    /// Events written.
    pub events: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Binary (else text).
    pub binary: bool,
    /// gzip-compressed.
    pub gzip: bool,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {}: {} events, {} bytes ({}{})",
            self.path.display(),
            self.events,
            self.bytes,
            if self.binary { "binary" } else { "text" },
            if self.gzip { ", gzip" } else { "" }
        )
    }
}

/// How [`create`] writes.
#[derive(Debug, Clone, Default)]
pub struct Create {
    /// Binary or text; `None`: binary when the name (without `.gz`) ends in `.bin` or `.pyab`.
    pub binary: Option<bool>,
    /// Compress fast rather than small (gzip level 1, not 6).
    pub fast: bool,
    /// The input the output must not be (compared by device and inode, so through a
    /// symlink or another name too; `-` is standard input).
    pub input: Option<PathBuf>,
}

/// True when `path`'s name says binary: `*.bin` or `*.pyab`, optionally `.gz`.
pub fn is_binary_name(path: &Path) -> bool {
    let name = path.to_string_lossy();
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    stem.ends_with(".bin") || stem.ends_with(".pyab")
}

/// True when `path`'s name says gzip (`*.gz`).
pub fn is_gzip_name(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".gz")
}

/// Refuses `output` when it is the same file as `input` (device and inode, symlinks
/// followed; `-` is standard input). A missing output is never the input.
///
/// # Errors
/// `TraceError::OutputIsInput`.
pub fn refuse_input(output: &Path, input: &Path) -> Result<(), TraceError> {
    use std::os::unix::fs::MetadataExt;
    let meta = |p: &Path| {
        if p == Path::new("-") {
            fs::metadata("/dev/stdin")
        } else {
            fs::metadata(p)
        }
    };
    match (meta(output), meta(input)) {
        (Ok(o), Ok(i)) if o.dev() == i.dev() && o.ino() == i.ino() => {
            Err(TraceError::OutputIsInput {
                output: output.to_path_buf(),
                input: input.to_path_buf(),
            })
        }
        _ => Ok(()),
    }
}

/// A temporary file beside the output, removed unless [`persist`](Temp::persist)ed.
pub struct Temp {
    path: PathBuf, // the output
    tmp: PathBuf,  // the temporary file beside it
    done: bool,    // renamed into place
}

impl Temp {
    /// Creates `DIR/.NAME.pyalloc-PID-N.tmp` for output `path` (N counts this process's
    /// temporary files, so one output can be staged twice, as `record -o x.gz` does: the
    /// hooks' plain text, then its gzip).
    ///
    /// # Errors
    /// The folder is not writable, or `path` names no file.
    pub fn create(path: &Path) -> Result<(Temp, File), TraceError> {
        let io_err = |source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let name = path.file_name().ok_or_else(|| {
            io_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the output names no file",
            ))
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        static STAGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = STAGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.pyalloc-{}-{n}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|source| TraceError::Io {
                path: tmp.clone(),
                source,
            })?;
        Ok((
            Temp {
                path: path.to_path_buf(),
                tmp,
                done: false,
            },
            file,
        ))
    }

    /// The temporary file.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// Renames the temporary file into place; returns the output's size.
    ///
    /// # Errors
    /// The rename fails (the temporary file is then removed).
    pub fn persist(mut self) -> Result<u64, TraceError> {
        let bytes = fs::metadata(&self.tmp).map(|m| m.len()).unwrap_or(0);
        fs::rename(&self.tmp, &self.path).map_err(|source| TraceError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.done = true;
        Ok(bytes)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The bytes under the encoder: the temporary file, plain or through gzip.
enum Sink {
    Plain(BufWriter<File>),
    Gz(GzEncoder<BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gz(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gz(w) => w.flush(),
        }
    }
}

impl Sink {
    /// Ends the stream (the gzip trailer included) and syncs the file to disk.
    fn close(self) -> io::Result<()> {
        let w = match self {
            Sink::Plain(w) => w,
            Sink::Gz(w) => w.finish()?,
        };
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

enum Encoder {
    Text(TextWriter<Sink>),
    Binary(BinaryWriter<Sink>),
}

/// A trace being written to a file: the form [`create`] chose, through a temporary file.
pub struct TraceFile {
    enc: Encoder,
    temp: Temp,
    events: u64,
    binary: bool,
    gzip: bool,
}

/// Creates the trace `path` with `header`: binary or text and gzip or plain as [`Create`]
/// and the name say, written through a temporary file in the same folder.
///
/// # Errors
/// `OutputIsInput` when `path` is `opts.input`; the temporary file cannot be created or
/// the header written.
pub fn create(path: &Path, header: &TraceHeader, opts: &Create) -> Result<TraceFile, TraceError> {
    if path.as_os_str() == "-" {
        // `-` reads standard input; an output is a file renamed into place when complete
        return Err(TraceError::Io {
            path: path.to_path_buf(),
            source: io::Error::other(
                "an output is written to a file (through a temporary file renamed into place \
                 when complete), not to standard output: give a file name",
            ),
        });
    }
    if let Some(input) = &opts.input {
        refuse_input(path, input)?;
    }
    let binary = opts.binary.unwrap_or_else(|| is_binary_name(path));
    let gzip = is_gzip_name(path);
    let (temp, file) = Temp::create(path)?;
    let buf = BufWriter::with_capacity(1 << 16, file);
    let sink = if gzip {
        let level = if opts.fast {
            Compression::fast()
        } else {
            Compression::default()
        };
        Sink::Gz(GzEncoder::new(buf, level))
    } else {
        Sink::Plain(buf)
    };
    let io_err = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let enc = if binary {
        Encoder::Binary(BinaryWriter::new(sink, header).map_err(io_err)?)
    } else {
        let mut w = TextWriter::new(sink);
        w.write_header(header).map_err(io_err)?;
        Encoder::Text(w)
    };
    Ok(TraceFile {
        enc,
        temp,
        events: 0,
        binary,
        gzip,
    })
}

impl TraceFile {
    fn io_err(&self, source: io::Error) -> TraceError {
        TraceError::Io {
            path: self.temp.path.clone(),
            source,
        }
    }
}

impl EventWriter for TraceFile {
    #[inline]
    fn write_event(&mut self, e: &Event) -> Result<(), TraceError> {
        let r = match &mut self.enc {
            Encoder::Text(w) => w.write_event(e),
            Encoder::Binary(w) => w.write_event(e),
        };
        r.map_err(|source| self.io_err(source))?;
        self.events += 1;
        Ok(())
    }

    fn write_text(&mut self, line: u64, text: &str) -> Result<(), TraceError> {
        let r = match &mut self.enc {
            Encoder::Text(w) => w.write_text(line, text),
            Encoder::Binary(w) => w.write_text(line, text),
        };
        r.map_err(|source| self.io_err(source))
    }

    fn events(&self) -> u64 {
        self.events
    }

    fn finish(self: Box<Self>) -> Result<Written, TraceError> {
        let TraceFile {
            enc,
            temp,
            events,
            binary,
            gzip,
        } = *self;
        let io_err = |source| TraceError::Io {
            path: temp.path.clone(),
            source,
        };
        let sink = match enc {
            Encoder::Text(w) => w.finish(),
            Encoder::Binary(w) => w.finish(),
        }
        .map_err(io_err)?;
        sink.close().map_err(io_err)?;
        let path = temp.path.clone();
        let bytes = temp.persist()?;
        Ok(Written {
            path,
            events,
            bytes,
            binary,
            gzip,
        })
    }
}

/// Copies every event of `reader` (`first`, already read, then the rest) and the lines
/// it keeps between them ([`EventReader::take_text`](super::EventReader::take_text)) to
/// `writer`, each in its place; returns the events copied. Call
/// [`keep_text`](super::EventReader::keep_text) before the first event is read.
///
/// # Errors
/// The reader's or the writer's.
pub fn copy(
    first: Option<Event>,
    reader: &mut dyn super::EventReader,
    writer: &mut dyn EventWriter,
) -> Result<u64, TraceError> {
    let mut text = Vec::new();
    let mut n = 0u64;
    let mut next = first;
    while let Some(e) = next {
        reader.take_text(&mut text);
        for (line, t) in text.drain(..) {
            writer.write_text(line, &t)?;
        }
        writer.write_event(&e)?;
        n += 1;
        next = reader.next_event()?;
    }
    reader.take_text(&mut text);
    for (line, t) in text.drain(..) {
        writer.write_text(line, &t)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::Addr;
    use crate::trace::{open, Domain, EventKind};

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pyalloc-out-{name}-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn header() -> TraceHeader {
        TraceHeader {
            lines: vec!["pymalloc allocation trace (test)".into()],
        }
    }

    fn event(i: u64) -> Event {
        Event {
            kind: EventKind::Malloc {
                domain: Domain::Obj,
                size: 24 + i,
                addr: Addr(0x7fff_0000 + 32 * i),
            },
            line: i + 2,
        }
    }

    #[test]
    fn each_name_gets_its_form_and_reads_back() {
        let d = dir("forms");
        for (name, binary, gzip) in [
            ("t.txt", false, false),
            ("t.trace.gz", false, true),
            ("t.bin", true, false),
            ("t.pyab.gz", true, true),
        ] {
            let path = d.join(name);
            let mut w: Box<dyn EventWriter> =
                Box::new(create(&path, &header(), &Create::default()).unwrap());
            for i in 0..1000 {
                w.write_event(&event(i)).unwrap();
            }
            let done = w.finish().unwrap();
            assert_eq!((done.binary, done.gzip, done.events), (binary, gzip, 1000));
            assert_eq!(done.bytes, fs::metadata(&path).unwrap().len());
            let raw = fs::read(&path).unwrap();
            assert_eq!(raw.starts_with(&[0x1f, 0x8b]), gzip, "{name}");
            let mut r = open(&path).unwrap();
            for i in 0..1000 {
                assert_eq!(r.next_event().unwrap(), Some(event(i)), "{name}");
            }
            assert_eq!(r.next_event().unwrap(), None);
            let leftovers: Vec<_> = fs::read_dir(&d)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
        fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn an_unfinished_output_leaves_the_old_file_untouched() {
        let d = dir("unfinished");
        let path = d.join("keep.txt");
        fs::write(&path, "old contents\n").unwrap();
        {
            let mut w = create(&path, &header(), &Create::default()).unwrap();
            w.write_event(&event(0)).unwrap();
            // dropped without finish: an error on the way
        }
        assert_eq!(fs::read_to_string(&path).unwrap(), "old contents\n");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn the_input_is_refused_by_inode_through_a_symlink_too() {
        let d = dir("same");
        let input = d.join("in.txt");
        fs::write(&input, "x\n").unwrap();
        let link = d.join("link.txt");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        for out in [&input, &link] {
            let opts = Create {
                input: Some(input.clone()),
                ..Create::default()
            };
            match create(out, &header(), &opts) {
                Err(TraceError::OutputIsInput { .. }) => {}
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("{} accepted as output of itself", out.display()),
            }
        }
        assert_eq!(fs::read_to_string(&input).unwrap(), "x\n");
        let other = Create {
            input: Some(input.clone()),
            ..Create::default()
        };
        assert!(create(&d.join("other.txt"), &header(), &other).is_ok());
        fs::remove_dir_all(&d).ok();
    }
}
