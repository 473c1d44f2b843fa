//! `pyalloc check TRACE [--model M] [--json] [--keep-going]`: replays a recording
//! through its model and compares every address.
//!
//! Exit 0 exactly when every checked address matched. `--json` prints one object:
//! `{"events", "checked", "matched", "first_divergence": null | {"event", "line",
//! "expected", "got", "why"}}` (a contract: fields are added, never renamed).

use pyalloc::check::{check_file, CheckOptions};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `pyalloc check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The recorded trace (plain or gzip text, or its binary form from `pyalloc convert`).
    pub trace: PathBuf,
    /// The model (default: named by the trace's header).
    #[arg(long)]
    pub model: Option<String>,
    /// Print one JSON object instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Keep replaying after the first divergence and count the rest.
    #[arg(long)]
    pub keep_going: bool,
}

/// Runs the check.
pub fn run(args: CheckArgs) -> Result<ExitCode, String> {
    if let Some(code) = super::bad_model(args.model.as_deref()) {
        return Ok(code);
    }
    let opts = CheckOptions {
        model: args.model,
        keep_going: args.keep_going,
        progress: std::io::stderr().is_terminal(),
    };
    let start = Instant::now();
    let report = check_file(&args.trace, &opts).map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "{}: {} events, {} addresses checked, {} matched ({:.0} events/s, {:.3} s)",
            args.trace.display(),
            report.events,
            report.checked,
            report.matched,
            report.events as f64 / secs.max(1e-9),
            secs
        );
        if report.given > 0 {
            println!(
                "{} addresses taken from the recording (glibc's and the kernel's answers)",
                report.given
            );
        }
        if report.raw_unknown > 0 {
            println!(
                "{} raw-domain frees or reallocs of addresses the recording never showed \
                 allocated (CPython 3 recordings can miss raw calls made while CPython \
                 installs its raw allocator): counted, not checked",
                report.raw_unknown
            );
        }
        if report.not_checked > 0 {
            println!(
                "{} events of kinds this checker has no model for",
                report.not_checked
            );
        }
        match &report.first_divergence {
            None => println!("every checked address matched"),
            Some(d) => {
                match &d.size {
                    Some(z) => println!(
                        "first divergence: event {} (line {}): {} at {}: expected {} bytes, got {}",
                        d.event, d.line, z.what, d.expected, z.expected, z.got
                    ),
                    None => println!(
                        "first divergence: event {} (line {}): expected {}, got {}",
                        d.event, d.line, d.expected, d.got
                    ),
                }
                println!("  why: {}", d.why);
                if report.divergences > 0 {
                    println!("  and {} more divergences", report.divergences);
                }
            }
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
