//! `pyalloc ints --platform P --version V FROM TO [--explain]`: `v id(v) id(v)-id(FROM)`
//! for every v in FROM..=TO, all alive at once (a list of them), as the model places them.

use pyalloc::interp::{IntKind, Interpreter, Py2, Py3, PyError, Version};
use pyalloc::Addr;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

/// The most values one run prints.
const MAX_VALUES: i64 = 10_000_000;

/// Arguments of `pyalloc ints`.
#[derive(clap::Args)]
pub struct IntsArgs {
    /// Platform preset.
    #[arg(long, default_value = "macos-x86_64")]
    pub platform: String,
    /// CPython version: 2.7 or 3.11.
    #[arg(long, default_value = "2.7")]
    pub version: String,
    /// Where the first PyIntBlock lands (2.7) or id(-5) (3.11), hex; default: the preset's.
    #[arg(long, value_parser = super::seed::parse_addr)]
    pub base: Option<Addr>,
    /// Add the block, the slot and why to each line.
    #[arg(long)]
    pub explain: bool,
    /// First value.
    #[arg(allow_negative_numbers = true)]
    pub from: i64,
    /// Last value (inclusive).
    #[arg(allow_negative_numbers = true)]
    pub to: i64,
}

/// Prints the ids.
pub fn run(args: IntsArgs) -> Result<ExitCode, String> {
    let platform = super::platform(&args.platform)?;
    let version = super::version(&args.version)?;
    let bits = platform.long_bytes * 8;
    let (min, max) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
    for v in [args.from, args.to] {
        if !(min..=max).contains(&(v as i128)) {
            return Err(format!(
                "value {v} does not fit in a {bits}-bit C long on {}",
                platform.name
            ));
        }
    }
    if version == Version::V2_7 {
        super::seed::check_base(&platform, args.base)?;
    } else if args
        .base
        .is_some_and(|a| !a.is_aligned(8) || a >= platform.mmap_top)
    {
        return Err(format!(
            "id(-5) must be 8-byte aligned and below {}",
            platform.mmap_top
        ));
    }
    if args.from > args.to {
        return Err(format!("FROM {} is greater than TO {}", args.from, args.to));
    }
    if args.to.saturating_sub(args.from) >= MAX_VALUES {
        return Err(format!("at most {MAX_VALUES} values per run"));
    }
    let err = |e: PyError| e.to_string();
    let mut py: Box<dyn Interpreter> = match (version, args.base) {
        (Version::V2_7, Some(a)) => Box::new(Py2::at(platform, a).map_err(err)?),
        (Version::V2_7, None) => Box::new(Py2::new(platform).map_err(err)?),
        (Version::V3_11, Some(a)) => Box::new(Py3::at(platform, a)),
        (Version::V3_11, None) => Box::new(Py3::new(platform)),
    };
    // One buffered writer: a line-buffered stdout costs a write(2) per value.
    let mut out = BufWriter::new(std::io::stdout().lock());
    let printed = print_ids(py.as_mut(), &args, &mut out);
    let flushed = out.flush().map_err(Stop::Io);
    match printed.and(flushed) {
        Err(Stop::Refused(m)) => Err(m),
        // `| head`: the reader had enough.
        Err(Stop::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(Stop::Io(e)) => Err(format!("standard output: {e}")),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

/// Why the listing stopped early.
enum Stop {
    /// The model refused a value (the sentence to print).
    Refused(String),
    /// Standard output failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Stop {
        Stop::Io(e)
    }
}

/// `v id(v) id(v)-id(FROM)` for every v (and why, with `--explain`), then the note on values
/// CPython 3.11 does not cache.
fn print_ids(py: &mut dyn Interpreter, args: &IntsArgs, out: &mut impl Write) -> Result<(), Stop> {
    let version = py.version();
    let mut first: Option<Addr> = None;
    let mut uncached: Option<(i64, i64)> = None;
    for v in args.from..=args.to {
        let o = match py.int(v) {
            Ok(o) => o,
            Err(PyError::NotModelled(_)) if version == Version::V3_11 => {
                let r = uncached.get_or_insert((v, v));
                r.1 = v;
                continue;
            }
            Err(e) => return Err(Stop::Refused(e.to_string())),
        };
        if o.kind == IntKind::Long {
            return Err(Stop::Refused(format!(
                "{v}: a long on this platform, not modelled"
            )));
        }
        let base = *first.get_or_insert(o.addr);
        if args.explain {
            writeln!(
                out,
                "{v} {} {}\t{}",
                o.addr.0,
                o.addr - base,
                py.explain(&o)
            )?;
        } else {
            writeln!(out, "{v} {} {}", o.addr.0, o.addr - base)?;
        }
        // The list keeps every int alive: nothing is dropped.
    }
    if let Some((lo, hi)) = uncached {
        writeln!(
            out,
            "# {lo}..{hi}: outside CPython {}'s small-int cache; each is a new PyLongObject from pymalloc, whose addresses this model does not compute",
            version.name()
        )?;
    }
    Ok(())
}
