//! `pyalloc view TRACE -o page.html [--marker SIZE]…`: one self-contained HTML page that
//! steps through a CPython 3 or CPython 2.7 (PYREC) recording (keys, slider, chart, address search, explain on
//! hover); `page.html#event=N` opens at event N.

use pyalloc::report::teach::view::{build, build27, page};
use pyalloc::report::teach::write_atomic;
use pyalloc::trace::{sniff, Format, LineReader};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc view`.
#[derive(clap::Args)]
pub struct ViewArgs {
    /// The CPython 3 or CPython 2.7 PYREC recording (plain or gzip).
    pub trace: PathBuf,
    /// Where to write the page.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// A request size whose first top-level O/M request gets a jump button (repeatable;
    /// `# mark` lines always get one, and so does the peak of live bytes).
    #[arg(long = "marker")]
    pub markers: Vec<u64>,
    /// The model (default: named by the trace's header).
    #[arg(long)]
    pub model: Option<String>,
}

/// Runs `pyalloc view`.
pub fn run(args: ViewArgs) -> Result<ExitCode, String> {
    let progress = std::io::stderr().is_terminal();
    let first = LineReader::open(&args.trace)
        .and_then(|mut r| Ok(r.next_line()?.unwrap_or("").to_string()))
        .map_err(|e| e.to_string())?;
    let data = if sniff(format!("{first}\n").as_bytes(), true).ok() == Some(Format::Pyrec27) {
        if args.model.is_some() {
            return Err(
                "--model: a CPython 2.7 recording replays through 2.7.17's pymalloc only".into(),
            );
        }
        build27(&args.trace, &args.markers, progress)
    } else {
        build(&args.trace, args.model, &args.markers, progress)
    }
    .map_err(|e| e.to_string())?;
    let html = page(&data);
    write_atomic(&args.output, html.as_bytes())?;
    eprintln!(
        "{}: {} events, {} block changes, {} bytes",
        args.output.display(),
        data.meta.events,
        data.meta.ops,
        html.len()
    );
    Ok(ExitCode::SUCCESS)
}
