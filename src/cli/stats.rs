//! `pyalloc stats TRACE (--at EVENT | --at-marker SIZE) [--model M]`: replays a pymalloc
//! recording up to a point and prints the model's state in the layout of CPython's
//! `sys._debugmallocstats()` (obmalloc.c `_PyObject_DebugMallocStats`) of the recording's
//! era: a CPython 3 trace or a CPython 2.7 PYREC trace; for a mimalloc recording (CPython
//! 3.13), the mimalloc section of that function.

use pyalloc::check::CheckOptions;
use pyalloc::report::teach::At;
use pyalloc::report::{stats_at, StatsAt};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc stats`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("point").required(true).args(["at", "at_marker"])))]
pub struct StatsArgs {
    /// The recorded pymalloc trace (plain or gzip).
    pub trace: PathBuf,
    /// Where (one of the two is needed).
    #[command(flatten)]
    pub point: super::Point,
    /// The model (default: named by the trace's header; `+own` for own addresses).
    #[arg(long)]
    pub model: Option<String>,
}

/// Runs `pyalloc stats`.
pub fn run(args: StatsArgs) -> Result<ExitCode, String> {
    if let Some(code) = super::bad_model(args.model.as_deref()) {
        return Ok(code);
    }
    let opts = CheckOptions {
        model: args.model,
        keep_going: false,
        progress: std::io::stderr().is_terminal(),
    };
    let at = match args.point.at() {
        Some(At::Event(n)) => StatsAt::Event(n),
        Some(At::Marker(s)) => StatsAt::Marker(s),
        _ => return Err("give --at EVENT or --at-marker SIZE".into()),
    };
    let (_event, text) = stats_at(&args.trace, &opts, at).map_err(|e| e.to_string())?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
