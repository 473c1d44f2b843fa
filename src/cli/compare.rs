//! `pyalloc compare TRACE... --models M1,M2,... [--at-marker SIZE]... [--csv | --json]
//! [--svg FILE] [--html FILE] [--timings]`: every trace replayed once through every model (decoded
//! once, the models in parallel), their footprints side by side.
//!
//! `--json` prints `{"traces":[{"trace","events","models":[{"model","peak_live",
//! "peak_mapped","peak_resident","final_live","final_mapped","final_resident",
//! "fragmentation_at_peak","syscalls":{"mmap","munmap","brk"},"seconds","markers":[{"size",
//! "event","live","mapped","resident"}]}]}]}` (a contract). A bad model name (an unknown
//! key, a size that is not a power of two, a pool larger than an arena …) exits 2, as in
//! every command that takes a model: names are read by `replay::ModelSpec::parse`.
//!
//! `--real-rss MODEL=FILE` (repeatable) holds MODEL to a real run: FILE holds the VmRSS
//! (KiB) the real process printed at each marker, one line per phase (the last number of
//! each line); the table gains a real-vs-predicted section, the JSON's marker rows of that
//! model gain `real_rss`, `real_delta`, `predicted_delta`, `error`, `tolerance` (bytes;
//! added fields only), `--csv`'s marker rows the same five columns at the end (empty for a
//! model not held), `--svg` draws the table under the chart and `--html` a "held to the
//! real process" table per model; both charts draw the real points (report::real).

use pyalloc::compare::{compare, parse_models, CompareOptions};
use pyalloc::report::{compare as render, real, write_atomic};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `pyalloc compare`.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// The traces (any format `pyalloc check` reads).
    #[arg(required = true)]
    pub traces: Vec<String>,
    /// The models, comma-separated: `cpython-3.11`, `cpython-3.11/glibc-2.36`, `glibc-2.36`,
    /// `cpython-2.7.18/glibc-2.36`, with what-if overrides (`cpython-3.11:pool=64KiB,arena=4MiB`;
    /// separate several overrides of one layer with `,` inside the layer and models with `;`
    /// or repeat --models).
    #[arg(long, required = true)]
    pub models: Vec<String>,
    /// A row each time a top-level request of exactly SIZE bytes is made (repeatable).
    #[arg(long = "at-marker", value_name = "SIZE")]
    pub at_marker: Vec<u64>,
    /// Print CSV instead of the table.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
    /// Print the JSON contract instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Draw resident (and live) bytes over event time, one line per model, to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Write a self-contained HTML report (table and charts) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Hold MODEL to a real run: FILE holds the VmRSS (KiB) the real process printed at each
    /// marker, one line per phase (each line's last number); adds real Δ, predicted Δ and
    /// their error to the table, the JSON's and the CSV's marker rows, the SVG and the HTML
    /// page (repeatable; one trace).
    #[arg(long = "real-rss", value_name = "MODEL=FILE")]
    pub real_rss: Vec<String>,
    /// Print where the time went to standard error: each trace's wall time, the CPU time of
    /// the thread that reads it and of each model's thread, and when each was done.
    #[arg(long)]
    pub timings: bool,
}

/// Splits `--models` values into model names: `;` always separates models; `,` separates
/// models except inside a layer's overrides (`cpython-3.11:pool=64KiB,arena=4MiB`), where a
/// `,` followed by `key=` continues the overrides.
pub fn split_models(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        for part in v.split(';') {
            let mut cur = String::new();
            for piece in part.split(',') {
                let continues = !cur.is_empty()
                    && cur.rsplit('/').next().is_some_and(|l| l.contains(':'))
                    && piece.split('/').next().is_some_and(|p| p.contains('='));
                if continues {
                    cur.push(',');
                    cur.push_str(piece);
                } else {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                    cur.push_str(piece);
                }
            }
            if !cur.is_empty() {
                out.push(cur);
            }
        }
    }
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Runs the comparison.
pub fn run(args: CompareArgs) -> Result<ExitCode, String> {
    let names = split_models(&args.models);
    let models = match parse_models(&names) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("pyalloc: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let opts = CompareOptions {
        markers: args.at_marker.clone(),
        progress: std::io::stderr().is_terminal(),
        until: None,
    };
    // read every real file before the (long) replay: a bad one fails fast
    if !args.real_rss.is_empty() && args.traces.len() > 1 {
        return Err(format!(
            "--real-rss holds one recording to its real run; {} traces given",
            args.traces.len()
        ));
    }
    let inputs: Vec<&Path> = args
        .traces
        .iter()
        .map(Path::new)
        .chain(
            args.real_rss
                .iter()
                .filter_map(|s| s.split_once('='))
                .map(|(_, f)| Path::new(f)),
        )
        .collect();
    pyalloc::report::refuse_inputs(
        args.svg.iter().chain(&args.html).map(PathBuf::as_path),
        &inputs,
    )?;
    let mut reals = Vec::new();
    for spec in &args.real_rss {
        let (model, file) = spec
            .split_once('=')
            .ok_or_else(|| format!("--real-rss {spec:?}: expected MODEL=FILE"))?;
        if !names.iter().any(|n| n == model) {
            return Err(format!(
                "--real-rss {spec:?}: {model:?} is not one of --models ({})",
                names.join(", ")
            ));
        }
        reals.push((
            model.to_string(),
            file.to_string(),
            real::read_vmrss(file.as_ref())?,
        ));
    }
    let runs = compare(&args.traces, &models, &opts).map_err(|e| e.to_string())?;
    let held = runs
        .iter()
        .map(|t| {
            reals
                .iter()
                .filter_map(|(model, file, v)| {
                    let run = t.models.iter().find(|m| &m.model == model)?;
                    Some(real::hold(run, v, file))
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .collect::<Result<Vec<_>, String>>()?;
    if args.timings {
        eprint!("{}", render::timings(&runs));
    }
    if args.json {
        let j = render::json(&runs);
        let j = if reals.is_empty() {
            j
        } else {
            real::add_to_json(&j, &runs, &held)?
        };
        println!("{j}");
    } else if args.csv {
        print!("{}", render::csv(&runs, &held));
    } else {
        print!("{}", render::table(&runs));
        for h in &held {
            print!("{}", real::table(h));
        }
    }
    if let Some(p) = &args.svg {
        let s = if reals.is_empty() {
            render::svg(&runs)
        } else {
            real::svg(&runs, &held)
        };
        write_atomic(p, s.as_bytes())?;
    }
    if let Some(p) = &args.html {
        write_atomic(p, render::html(&runs, &held).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::split_models;

    #[test]
    fn commas_separate_models_but_continue_overrides() {
        let v = split_models(&[
            "cpython-3.11,cpython-3.11:pool=64KiB,arena=4MiB/glibc-2.36,glibc-2.36".into(),
        ]);
        assert_eq!(
            v,
            [
                "cpython-3.11",
                "cpython-3.11:pool=64KiB,arena=4MiB/glibc-2.36",
                "glibc-2.36"
            ]
        );
        let w = split_models(&["cpython-3.11:free=never;cpython-3.9".into(), "glibc".into()]);
        assert_eq!(w, ["cpython-3.11:free=never", "cpython-3.9", "glibc"]);
    }
}
