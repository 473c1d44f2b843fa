//! Reports: what a replay shows a reader, each beside the others. The pipeline's last
//! layer (trace → replay → check → report): a report reads what a run computed — the
//! models' state, a comparison's figures — and never changes how a replay runs.
//!
//! ```text
//!   replay::drive ──> check (comparison rules) ──> stats    sys._debugmallocstats() at a point
//!   compare (traces × models) ───────────────────> compare  table, CSV, JSON; svg charts; the page
//!                                                  real     model vs the real process's VmRSS (--real-rss)
//! ```
//! What the teaching commands show (`explain`, `map`, `view`) is read off the models' state
//! in `teach`.

pub mod compare;
pub mod real;
pub mod stats;
pub mod svg;
pub mod teach;

pub use stats::{stats_at, StatsAt};

use std::io::Write;
use std::path::Path;

/// Refuses, before any work, an output that is one of the inputs (the same file, however
/// named): a picture or page written over the trace it draws would lose the trace.
///
/// # Errors
/// The sentence of `TraceError::OutputIsInput`, naming both.
pub fn refuse_inputs<'a>(
    outputs: impl IntoIterator<Item = &'a Path>,
    inputs: &[&Path],
) -> Result<(), String> {
    for out in outputs {
        for input in inputs {
            crate::trace::output::refuse_input(out, input).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same folder, then renames it
/// over `path`: a reader never sees half a file, and an input is never written over in place.
///
/// # Errors
/// The I/O error, with the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}
