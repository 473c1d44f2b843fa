//! Command-line parsing and dispatch: one file per subcommand.

mod check;
mod compare;
mod convert;
mod explain;
mod generate;
mod intlist;
mod ints;
mod map;
mod platforms;
mod presets;
mod record;
mod replay;
mod seed;
mod stats;
mod view;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Simulate CPython's memory allocators, address for address.
#[derive(Parser)]
#[command(name = "pyalloc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a recorded trace through its model and compare every address.
    Check(check::CheckArgs),
    /// List the platform presets.
    Platforms,
    /// List the pymalloc presets (one per CPython era) and the releases each covers.
    Presets(presets::PresetsArgs),
    /// Run a CPython 3 program with its allocators hooked, writing every call to a trace.
    Record(record::RecordArgs),
    /// Rewrite a trace in another format (text or binary, by OUT's name or --to).
    Convert(convert::ConvertArgs),
    /// Replay traces through several whole-stack models: footprint (live, mapped, resident) side by side.
    Compare(compare::CompareArgs),
    /// Run a trace's requests through a model and report what they cost.
    Replay(replay::ReplayArgs),
    /// Write a synthetic Python-like workload carrying a model's addresses.
    Generate(generate::GenerateArgs),
    /// Replay a pymalloc trace up to a point and print `sys._debugmallocstats()`.
    Stats(stats::StatsArgs),
    /// The question's two id() experiments, computed by the models (Python 2 print format).
    Seed(seed::SeedArgs),
    /// `v id(v) id(v)-id(FROM)` for FROM..=TO as the model places them.
    Ints(ints::IntsArgs),
    /// Drive CPython 2's int free list by hand: int:V, free:ADDR, clear.
    Intlist(intlist::IntlistArgs),
    /// What is at an address and why: owner chain, size class, state, last event, rule.
    Explain(explain::ExplainArgs),
    /// The heap at one event as a picture (SVG or HTML): arenas as rows of pools.
    Map(map::MapArgs),
    /// One self-contained HTML page stepping through a whole trace.
    View(view::ViewArgs),
}

/// The platform preset named on the command line, or the sentence saying it is unknown.
pub(crate) fn platform(name: &str) -> Result<pyalloc::Platform, String> {
    pyalloc::Platform::by_name(name)
        .ok_or_else(|| format!("unknown platform {name:?} (see `pyalloc platforms`)"))
}

/// A model name that does not parse ([`ModelSpec::parse`](pyalloc::replay::ModelSpec::parse),
/// the one reader of model names): its one-line sentence printed, exit 2, as every command
/// that takes a model (`check`, `replay`, `stats`, `generate`, `compare`) does.
pub(crate) fn bad_model(name: Option<&str>) -> Option<ExitCode> {
    let e = pyalloc::replay::ModelSpec::parse(name?).err()?;
    eprintln!("pyalloc: {e}");
    Some(ExitCode::from(2))
}

/// The interpreter version named on the command line, or the sentence saying it is unknown.
pub(crate) fn version(name: &str) -> Result<pyalloc::interp::Version, String> {
    pyalloc::interp::Version::parse(name)
        .ok_or_else(|| format!("unknown version {name:?} (2.7 or 3.11)"))
}

/// `--at N | --at-marker SIZE`: the point of a recording that `map`, `explain` and `stats`
/// show.
#[derive(clap::Args)]
pub(crate) struct Point {
    /// The state right after this event (0-based index among the trace's events).
    #[arg(long, conflicts_with = "at_marker")]
    pub at: Option<u64>,
    /// The state right after the first top-level O/M request of this many bytes.
    #[arg(long)]
    pub at_marker: Option<u64>,
}

impl Point {
    /// The point named (`--at` first), or `None` when neither flag is given.
    pub fn at(&self) -> Option<pyalloc::report::teach::At> {
        use pyalloc::report::teach::At;
        match (self.at, self.at_marker) {
            (Some(n), _) => Some(At::Event(n)),
            (None, Some(s)) => Some(At::Marker(s)),
            (None, None) => None,
        }
    }
}

/// Parses the arguments, runs the subcommand, prints one line on error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<ExitCode, String> = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Platforms => platforms::run(),
        Command::Presets(args) => presets::run(args),
        Command::Record(args) => record::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Seed(args) => seed::run(args),
        Command::Ints(args) => ints::run(args),
        Command::Intlist(args) => intlist::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Map(args) => map::run(args),
        Command::View(args) => view::run(args),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("pyalloc: {msg}");
            ExitCode::FAILURE
        }
    }
}
