//! `pyalloc view TRACE -o page.html [--marker SIZE]…`: one self-contained HTML page that
//! steps through a CPython 3, CPython 3.13 mimalloc or CPython 2.7 (PYREC) recording (keys,
//! slider, chart, address search, explain on hover); `page.html#event=N` opens at event N.
//! `--model mimalloc-2.1.2` on a CPython 3 recording shows its O/M calls under mimalloc.

use pyalloc::report::teach::view::{build, build27, page};
use pyalloc::report::teach::write_atomic;
use pyalloc::report::teach::{mimalloc, miview};
use pyalloc::trace::{sniff, Format, LineReader};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc view`.
#[derive(clap::Args)]
pub struct ViewArgs {
    /// The CPython 3, CPython 3.13 mimalloc or CPython 2.7 PYREC recording (plain or gzip).
    pub trace: PathBuf,
    /// Where to write the page (`-o FILE`, or as the second argument: `view TRACE OUT.html`).
    #[arg(
        short = 'o',
        long = "output",
        required_unless_present = "out",
        conflicts_with = "out"
    )]
    pub output: Option<PathBuf>,
    /// Where to write the page (the same as `-o`).
    #[arg(value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// A request size whose first top-level O/M request gets a jump button (repeatable;
    /// `# mark` lines always get one, and so does the peak of live bytes).
    #[arg(long = "marker")]
    pub markers: Vec<u64>,
    /// The model (default: named by the trace's header).
    #[arg(long)]
    pub model: Option<String>,
}

/// Runs `pyalloc view`.
pub fn run(mut args: ViewArgs) -> Result<ExitCode, String> {
    let output = args
        .output
        .take()
        .or(args.out.take())
        .ok_or("give the page's path: -o FILE")?;
    pyalloc::report::refuse_inputs([output.as_path()], &[args.trace.as_path()])?;
    let progress = std::io::stderr().is_terminal();
    let first = LineReader::open(&args.trace)
        .and_then(|mut r| Ok(r.next_line()?.unwrap_or("").to_string()))
        .map_err(|e| e.to_string())?;
    let format = sniff(format!("{first}\n").as_bytes(), true).ok();
    if format == Some(Format::Mimalloc)
        || (format == Some(Format::Pymalloc3) && mimalloc::names_mimalloc(args.model.as_deref()))
    {
        let data = miview::build(&args.trace, args.model, &args.markers, progress)
            .map_err(|e| e.to_string())?;
        let html = miview::page(&data);
        write_atomic(&output, html.as_bytes())?;
        eprintln!(
            "{}: {} events, {} ops, {} pages made, {} bytes",
            output.display(),
            data.meta.events,
            data.meta.ops,
            data.meta.layout.pages.len(),
            html.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let data = if format == Some(Format::Pyrec27) {
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
    write_atomic(&output, html.as_bytes())?;
    eprintln!(
        "{}: {} events, {} block changes, {} bytes",
        output.display(),
        data.meta.events,
        data.meta.ops,
        html.len()
    );
    Ok(ExitCode::SUCCESS)
}
