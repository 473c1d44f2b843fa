//! `pyalloc explain TRACE ADDR (--at N | --at-marker SIZE) [--json]` and
//! `pyalloc explain --platform P --version V --int VALUE [--json]`: what is at an address
//! and why — owner chain, size class, live or free, last event, the rule that chose it
//! (pymalloc of a CPython 3 recording; the chunk and its bin in a glibc recording;
//! arena → segment → span → page → block of mimalloc in a CPython 3.13 mimalloc
//! recording, or of a CPython 3 recording's O/M calls with `--model mimalloc-2.1.2`).

use pyalloc::interp::{Py2, Py3, Version};
use pyalloc::report::teach::explain::explain_int_py3;
use pyalloc::report::teach::glibc::{self, GlibcAt};
use pyalloc::report::teach::mimalloc;
use pyalloc::report::teach::{explain_in_walk, explain_int, Explanation, Walk};
use pyalloc::trace::{sniff, Format, LineReader};
use pyalloc::Addr;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc explain`.
#[derive(clap::Args)]
pub struct ExplainArgs {
    /// A CPython 3, CPython 3.13 mimalloc or glibc recording (plain or gzip).
    #[arg(required_unless_present = "int", requires = "addr")]
    pub trace: Option<PathBuf>,
    /// The address (hex, with or without 0x).
    #[arg(value_parser = super::seed::parse_addr)]
    pub addr: Option<Addr>,
    /// Where (one of the two is needed with a trace).
    #[command(flatten)]
    pub point: super::Point,
    /// The model (default: named by the trace's header; `mimalloc-2.1.2` on a CPython 3
    /// recording: its O/M calls through mimalloc in its own address space).
    #[arg(long, conflicts_with = "int")]
    pub model: Option<String>,
    /// Platform preset (with --int).
    #[arg(long, default_value = "macos-x86_64")]
    pub platform: String,
    /// CPython version (with --int): 2.7 or 3.11.
    #[arg(long, default_value = "2.7")]
    pub version: String,
    /// Explain id(VALUE) in a freshly started interpreter instead of a trace's address.
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["trace", "addr", "at", "at_marker"])]
    pub int: Option<i64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `pyalloc explain`.
pub fn run(args: ExplainArgs) -> Result<ExitCode, String> {
    let e: Explanation = if let Some(v) = args.int {
        let platform = super::platform(&args.platform)?;
        let version = super::version(&args.version)?;
        match version {
            Version::V2_7 => {
                let mut py = Py2::new(platform).map_err(|e| e.to_string())?;
                explain_int(&mut py, v)
            }
            Version::V3_11 => explain_int_py3(&mut Py3::new(platform), v),
        }
        .map_err(|e| e.to_string())?
    } else {
        let (Some(trace), Some(addr)) = (args.trace, args.addr) else {
            return Err("give TRACE ADDR, or --int VALUE".into());
        };
        let Some(at) = args.point.at() else {
            return Err("give --at EVENT or --at-marker SIZE".into());
        };
        let progress = std::io::stderr().is_terminal();
        let first = LineReader::open(&trace)
            .and_then(|mut r| Ok(r.next_line()?.unwrap_or("").to_string()))
            .map_err(|e| e.to_string())?;
        let format = sniff(format!("{first}\n").as_bytes(), true).ok();
        if format == Some(Format::Mimalloc)
            || (format == Some(Format::Pymalloc3)
                && mimalloc::names_mimalloc(args.model.as_deref()))
        {
            mimalloc::explain_at(&trace, args.model, at, progress, addr)?
        } else if format == Some(Format::Glibc) {
            let g = GlibcAt::replay(&trace, args.model, at, progress).map_err(|e| e.to_string())?;
            glibc::explain(&g, addr)
        } else {
            let (mut walk, reached) =
                Walk::to(&trace, args.model, progress, at).map_err(|e| e.to_string())?;
            explain_in_walk(&mut walk, addr, reached)
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&e).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", e.render());
    }
    Ok(ExitCode::SUCCESS)
}
