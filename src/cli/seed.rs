//! `pyalloc seed [--platform P] [--first-block ADDR] [--free-list-from TRACE]`: the
//! question's two experiments, computed by the models, printed as Python 2 printed them.

use pyalloc::check::pyrec27;
use pyalloc::interp::{Py2, PyError};
use pyalloc::scripts::{at_seed_start, rebind_of, seed, PrevRebind, SeedRun, HISTORY_FROM_I};
use pyalloc::{Addr, Platform};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc seed`.
#[derive(clap::Args)]
pub struct SeedArgs {
    /// Platform preset (default macos-x86_64: the question's machine; linux-x86_64;
    /// linux-i686). With --free-list-from, the trace's (linux-x86_64).
    #[arg(long)]
    pub platform: Option<String>,
    /// Where the first PyIntBlock lands (hex); default: the preset's recorded base.
    #[arg(long, value_parser = parse_addr)]
    pub first_block: Option<Addr>,
    /// Start from the int free list a PYREC 2.7 trace shows where its seed script began
    /// (e.g. ../shared/traces/cpython-2.7.18-linux-x86_64/seed.trace.gz) instead of the
    /// model's own state right after _PyInt_Init.
    #[arg(long)]
    pub free_list_from: Option<PathBuf>,
    /// Rebind `prev` on every iteration (the recorded seed.py) rather than inside the `if`
    /// (the question); with --free-list-from, the trace's own script decides.
    #[arg(long)]
    pub prev_every_iteration: bool,
}

/// Parses `0x…` or bare hex.
pub fn parse_addr(s: &str) -> Result<Addr, String> {
    Addr::parse_hex(s).ok_or_else(|| format!("not a hex address: {s:?}"))
}

/// Refuses a base a malloc of the platform could not return: unaligned, or not below
/// the mmap area.
pub fn check_base(platform: &Platform, base: Option<Addr>) -> Result<(), String> {
    match base {
        Some(a) if a.is_null() || !a.is_aligned(16) || a >= platform.mmap_top => Err(format!(
            "base {a} is not a 16-byte-aligned address below {} on {}",
            platform.mmap_top, platform.name
        )),
        _ => Ok(()),
    }
}

/// Runs both experiments and prints them.
pub fn run(args: SeedArgs) -> Result<ExitCode, String> {
    // The PYREC 2.7 recordings were made on linux-x86_64; the question on macOS.
    let recorded = Platform::linux_x86_64();
    let platform = match (&args.platform, &args.free_list_from) {
        (Some(name), _) => super::platform(name)?,
        (None, Some(_)) => recorded.clone(),
        (None, None) => Platform::macos_x86_64(),
    };
    if args.free_list_from.is_some() && platform != recorded {
        return Err(format!(
            "--free-list-from reads CPython 2.7 PYREC traces, recorded on {}, not {}",
            recorded.name, platform.name
        ));
    }
    check_base(&platform, args.first_block)?;
    let mut rebind = if args.prev_every_iteration {
        PrevRebind::EveryIteration
    } else {
        PrevRebind::InsideIf
    };
    let err = |e: PyError| e.to_string();
    let (run, origin) = match &args.free_list_from {
        Some(path) => {
            let start = pyrec27::state_until(path, at_seed_start()).map_err(|e| e.to_string())?;
            if !start.report.ok() {
                return Err(format!(
                    "{}: the free-list model diverged from the trace before the script began",
                    path.display()
                ));
            }
            rebind = rebind_of(&start.header);
            let mut py = Py2::from_state(start.state);
            let run = seed(&mut py, rebind).map_err(err)?;
            (
                run,
                format!(
                    "the int free list replayed from {} up to line {} ({} free-list and pymalloc numbers checked, all matched)",
                    path.display(),
                    start.line,
                    start.report.checked
                ),
            )
        }
        None => {
            let mut py = match args.first_block {
                Some(a) => Py2::at(platform.clone(), a),
                None => Py2::new(platform.clone()),
            }
            .map_err(err)?;
            // block_list() runs newest first: the last two are the first two blocks.
            let blocks: Vec<Addr> = py.ints().block_list().collect();
            let base = blocks.last().copied().unwrap_or(Addr::NULL);
            let stride = match blocks.as_slice() {
                [.., second, first] => format!(", the next {} bytes after it", *second - *first),
                _ => String::new(),
            };
            let malloc = py.heap().with(|h| h.name());
            let run = seed(&mut py, rebind).map_err(err)?;
            (
                run,
                format!(
                    "the model's own state right after _PyInt_Init on {} (PyIntBlocks placed by the {malloc} model: the first at {base}{stride}), with no other start-up history",
                    platform.name
                ),
            )
        }
    };
    print_run(&run, &origin);
    Ok(ExitCode::SUCCESS)
}

fn print_run(run: &SeedRun, origin: &str) {
    for (i, d) in &run.offsets {
        println!("{i} {d}");
    }
    let mut noted = false;
    for row in &run.changes {
        if !noted && row.i >= HISTORY_FROM_I {
            println!(
                "# rows from here on depend on the interpreter's history (which int slots were free when the loop ran); this run starts from {origin}"
            );
            noted = true;
        }
        println!("{}", row.py2_line());
    }
}
