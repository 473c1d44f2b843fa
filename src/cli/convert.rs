//! `pyalloc convert IN OUT [--to text|binary]`: rewrites a trace in another format.
//!
//! IN (`-`: standard input) is read in whatever format it is (told by content). OUT's
//! form comes from `--to` or its name, chosen in one place ([`pyalloc::trace::create`]):
//! `*.bin` / `*.pyab` (optionally `.gz`) is binary, anything else text; a name ending in
//! `.gz` is gzip-compressed. OUT is refused when it is IN (same file, by device and
//! inode), and written through a temporary file renamed into place when complete.
//! Lossless for pyalloc's formats: text → binary → text gives back the same bytes
//! (header, events, comments, marks and trailer; see docs/traces.md for the one
//! normalisation). Other tools' traces (mtrace, ltrace, heaptrack) keep only their
//! events, so they convert only with `--events-only`.

use pyalloc::trace::output::{copy, refuse_input, Create};
use pyalloc::trace::{create, EventWriter, Format, Opened, TraceHeader};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc convert`.
#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The trace to read (any format pyalloc reads, plain or gzip; `-` for standard input).
    pub input: PathBuf,
    /// The file to write.
    pub output: PathBuf,
    /// `text` or `binary` (default: from OUT's name).
    #[arg(long)]
    pub to: Option<String>,
    /// Convert another tool's trace (mtrace, ltrace, heaptrack) although only its events
    /// are kept (in the glibc grammar), not its other lines and fields.
    #[arg(long)]
    pub events_only: bool,
}

fn wants_binary(to: Option<&str>) -> Result<Option<bool>, String> {
    match to {
        Some("binary") | Some("bin") => Ok(Some(true)),
        Some("text") => Ok(Some(false)),
        Some(x) => Err(format!("--to {x:?}: expected text or binary")),
        None => Ok(None),
    }
}

/// Converts IN to OUT.
pub fn run(args: ConvertArgs) -> Result<ExitCode, String> {
    let binary = wants_binary(args.to.as_deref())?;
    let err = |e: pyalloc::trace::TraceError| e.to_string();
    refuse_input(&args.output, &args.input).map_err(err)?;
    let opened = Opened::open(&args.input).map_err(err)?;
    let format = opened.format;
    if format.grammar_is_foreign() && !args.events_only {
        return Err(format!(
            "{}: {} ({}): convert keeps its allocator events, not its other lines and \
             fields (callers, pids, other calls, timestamps), so it would not come back as \
             it was; pass --events-only to convert the events alone (written in the glibc \
             grammar)",
            args.input.display(),
            format.describe(),
            format.name()
        ));
    }
    let mut reader = opened.into_reader().map_err(err)?;
    reader.keep_text();
    // The header is complete once the first event has been read.
    let first = reader.next_event().map_err(err)?;
    let mut header = reader.header().clone();
    let binary = binary.unwrap_or_else(|| pyalloc::trace::output::is_binary_name(&args.output));
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
    let opts = Create {
        binary: Some(binary),
        fast: false,
        input: Some(args.input.clone()),
    };
    let mut w: Box<dyn EventWriter> = Box::new(create(&args.output, &header, &opts).map_err(err)?);
    copy(first, reader.as_mut(), w.as_mut()).map_err(err)?;
    let done = w.finish().map_err(err)?;
    eprintln!(
        "{} ({}) -> {} ({}): {} events, {} bytes",
        args.input.display(),
        format.name(),
        done.path.display(),
        if done.binary { "binary" } else { "text" },
        done.events,
        done.bytes
    );
    Ok(ExitCode::SUCCESS)
}

fn header_names_no_format(h: &TraceHeader) -> bool {
    Format::of_header(h).is_none()
}
