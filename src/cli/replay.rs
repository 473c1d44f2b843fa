//! `pyalloc replay TRACE --model M [--json] [--skip-raw]`: runs a trace's requests through
//! a model and reports what they cost.
//!
//! The human form prints one line per figure; `--json` one object: the
//! [`ReplayReport`](pyalloc::replay::ReplayReport) fields plus `trace`, `format` and
//! `peak_rss_bytes` (this process's VmHWM on Linux, else null). A progress line shows
//! on stderr only when it is a terminal.

use pyalloc::replay::{replay_named, replay_named_threaded, ReplayOptions};
use pyalloc::trace::binary::BinaryReader;
use pyalloc::trace::{Format, Opened};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc replay`.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The trace (any format pyalloc reads, plain or gzip).
    pub trace: PathBuf,
    /// The model: bump, glibc-2.36, null (keeps nothing: measures reading and mapping),
    /// mimalloc-2.1.2, a pymalloc preset (cpython-3.11 …; on a CPython 3 recording pinned
    /// to its arenas and raw calls, `+own` for the model's own addresses), a what-if
    /// (`cpython-3.11:pool=64KiB,arena=4MiB`) or a whole process (`cpython-3.11/glibc-2.36`;
    /// every call enters at the top layer). The names `compare --models` takes.
    #[arg(long, default_value = "glibc-2.36")]
    pub model: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Leave top-level raw-domain calls (`R`) out.
    #[arg(long)]
    pub skip_raw: bool,
}

/// Peak resident set size of this process, from /proc/self/status (Linux).
fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Replays the trace.
pub fn run(args: ReplayArgs) -> Result<ExitCode, String> {
    if let Some(code) = super::bad_model(Some(&args.model)) {
        return Ok(code);
    }
    let opened = Opened::open(&args.trace).map_err(|e| e.to_string())?;
    let format = opened.format;

    let opts = ReplayOptions {
        skip_raw: args.skip_raw,
        progress: std::io::stderr().is_terminal(),
    };
    let r = if format == Format::Binary {
        // binary: decode on a second thread while the model replays
        let mut reader = BinaryReader::from_source(opened.source).map_err(|e| e.to_string())?;
        replay_named_threaded(&mut reader, &args.model, &opts)
    } else {
        let mut reader = opened.into_reader().map_err(|e| e.to_string())?;
        replay_named(reader.as_mut(), &args.model, &opts)
    }
    .map_err(|e| e.to_string())?;
    let rss = peak_rss_bytes();
    let mut text = String::new();
    macro_rules! println {
        ($($a:tt)*) => {{
            text.push_str(&format!($($a)*));
            text.push('\n');
        }};
    }
    if args.json {
        let mut v = serde_json::to_value(&r).map_err(|e| e.to_string())?;
        v["trace"] = args.trace.display().to_string().into();
        v["format"] = format.name().into();
        v["peak_rss_bytes"] = rss.into();
        println!("{v}");
    } else {
        println!(
            "{} ({}) through {}: {} events in {:.3} s ({:.0} events/s)",
            args.trace.display(),
            format.name(),
            r.model,
            r.events,
            r.seconds,
            r.events_per_sec
        );
        let counts: Vec<String> = r.counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        println!(
            "  counts: {}; other lines: {}",
            counts.join(", "),
            r.other_lines
        );
        println!(
            "  replayed {}, context {}, failed calls {}, free(NULL) {}, same address as recorded {}",
            r.replayed, r.context, r.failed, r.free_null, r.same_address
        );
        println!(
            "  model: peak live {} bytes, peak mapped {} bytes; at the end {} live blocks, {} of them at another address than recorded",
            r.model_stats.peak_live_bytes,
            r.model_stats.peak_mapped_bytes,
            r.model_stats.live_blocks,
            r.moved_live
        );
        if r.checked.is_none() && r.same_address < r.replayed {
            println!(
                "  (replay hands every request to the model as it is: memalign and valloc as \
                 malloc, mmapped chunks where the model's own address space puts them; from \
                 the first such call on, addresses part from the recording's. `pyalloc \
                 check` pins them and compares address by address)"
            );
        }
        if r.raw_unknown > 0 {
            println!(
                "  raw-domain frees or reallocs of addresses no raw call returned: {} (counted: \
                 CPython 3 recordings can miss raw calls made while CPython installs its raw \
                 allocator)",
                r.raw_unknown
            );
        }
        if let (Some(c), Some(m)) = (r.checked, r.matched) {
            println!("  small-request addresses checked {c}, matched {m}");
        }
        if r.arenas_mapped > 0 {
            println!("  arenas mapped by the recording: {}", r.arenas_mapped);
        }
        if let Some(n) = r.model_arenas {
            println!("  arenas the model holds at the end: {n}");
        }
        if let Some(b) = rss {
            println!("  peak RSS of pyalloc: {} KiB", b / 1024);
        }
    }
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| format!("stdout: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
