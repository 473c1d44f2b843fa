//! `pyalloc convert IN OUT [--to text|binary]`: rewrites a trace in another format.
//!
//! IN is read in whatever format it is (told by content). OUT's format comes from `--to`
//! or its name: `*.bin` / `*.pyab` (optionally `.gz`) is binary, anything else text;
//! a name ending in `.gz` is gzip-compressed. Lossless for pyalloc's formats: every
//! event and header line comes back from OUT as it was read from IN.

use flate2::write::GzEncoder;
use flate2::Compression;
use pyalloc::trace::binary::BinaryWriter;
use pyalloc::trace::writer::TextWriter;
use pyalloc::trace::{Event, EventReader, TraceHeader};
use pyalloc::trace::{Format, Opened};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `pyalloc convert`.
#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The trace to read (any format pyalloc reads, plain or gzip).
    pub input: PathBuf,
    /// The file to write.
    pub output: PathBuf,
    /// `text` or `binary` (default: from OUT's name).
    #[arg(long)]
    pub to: Option<String>,
}

fn wants_binary(out: &Path, to: Option<&str>) -> Result<bool, String> {
    match to {
        Some("binary") | Some("bin") => Ok(true),
        Some("text") => Ok(false),
        Some(x) => Err(format!("--to {x:?}: expected text or binary")),
        None => {
            let name = out.to_string_lossy();
            let name = name.strip_suffix(".gz").unwrap_or(&name);
            Ok(name.ends_with(".bin") || name.ends_with(".pyab"))
        }
    }
}

/// Converts IN to OUT.
pub fn run(args: ConvertArgs) -> Result<ExitCode, String> {
    let binary = wants_binary(&args.output, args.to.as_deref())?;
    let opened = Opened::open(&args.input).map_err(|e| e.to_string())?;
    let format = opened.format;
    let mut reader = opened.into_reader().map_err(|e| e.to_string())?;
    let file = File::create(&args.output).map_err(|e| format!("{}: {e}", args.output.display()))?;
    let sink = if args.output.to_string_lossy().ends_with(".gz") {
        Sink::Gz(GzEncoder::new(BufWriter::new(file), Compression::default()))
    } else {
        Sink::Plain(BufWriter::with_capacity(1 << 16, file))
    };
    let io = |e: std::io::Error| format!("{}: {e}", args.output.display());
    // The header is complete once the first event has been read.
    let first = reader.next_event().map_err(|e| e.to_string())?;
    let mut header = reader.header().clone();
    if !binary && header_names_no_format(&header) && format != Format::Binary {
        header.lines.insert(
            0,
            format!(
                "glibc malloc-family call trace: converted by pyalloc from {} {}",
                format.name(),
                args.input.display()
            ),
        );
    }
    let n = if binary {
        let mut w = BinaryWriter::new(sink, &header).map_err(io)?;
        let n = copy_events(first, &mut *reader, |e| w.write_event(e), io)?;
        w.finish().map_err(io)?.close().map_err(io)?;
        n
    } else {
        let mut w = TextWriter::new(sink);
        w.write_header(&header).map_err(io)?;
        let n = copy_events(first, &mut *reader, |e| w.write_event(e), io)?;
        w.finish().map_err(io)?.close().map_err(io)?;
        n
    };
    eprintln!(
        "{} ({}) -> {} ({}): {n} events",
        args.input.display(),
        format.name(),
        args.output.display(),
        if binary { "binary" } else { "text" }
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes `first` and every event `reader` has after it through `write`; returns how many.
/// A write error goes through `io` (it names OUT), a read error keeps the reader's text.
fn copy_events(
    first: Option<Event>,
    reader: &mut dyn EventReader,
    mut write: impl FnMut(&Event) -> std::io::Result<()>,
    io: impl Fn(std::io::Error) -> String,
) -> Result<u64, String> {
    let mut n = 0u64;
    let mut next = first;
    while let Some(e) = next {
        write(&e).map_err(&io)?;
        n += 1;
        next = reader.next_event().map_err(|e| e.to_string())?;
    }
    Ok(n)
}

fn header_names_no_format(h: &TraceHeader) -> bool {
    Format::of_header(h).is_none()
}

/// The output file, plain or gzip.
enum Sink {
    Plain(BufWriter<File>),
    Gz(GzEncoder<BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gz(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gz(w) => w.flush(),
        }
    }
}

impl Sink {
    /// Ends the stream (the gzip trailer included), reporting a failed final write.
    fn close(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(mut w) => w.flush(),
            Sink::Gz(w) => w.finish()?.flush(),
        }
    }
}
