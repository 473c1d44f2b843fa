//! `pyalloc view TRACE -o page.html [--marker SIZE]…`: one self-contained HTML page that
//! steps through a CPython 3 recording (keys, slider, chart, address search, explain on
//! hover); `page.html#event=N` opens at event N.

use pyalloc::report::teach::view::{build, page};
use pyalloc::report::teach::write_atomic;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc view`.
#[derive(clap::Args)]
pub struct ViewArgs {
    /// The CPython 3 recording (plain or gzip).
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
    let data = build(
        &args.trace,
        args.model,
        &args.markers,
        std::io::stderr().is_terminal(),
    )
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
