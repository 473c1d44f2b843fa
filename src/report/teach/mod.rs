//! Teaching: every block's place and story, from the models' own state.
//!
//! ```text
//!  walk     a CPython 3 recording replayed event by event through pymalloc; for each block
//!           the event that last allocated or freed it and the rule that chose it
//!  explain  one address: owner chain (arena -> pool -> block; PyIntBlock -> slot), size
//!           class, live or free (position in its free list), last event, rule
//!  map      the heap as a picture: arenas as rows of pools (SVG / HTML), PyIntBlocks
//!  view     one self-contained HTML page stepping through a whole trace
//! ```

pub mod explain;
pub mod map;
pub mod view;
pub mod walk;

pub use explain::{explain_in_walk, explain_int, Explanation};
pub use map::HeapPicture;
pub use walk::{At, Rule, Walk};

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader never sees half a file and an existing file is replaced whole or not at all.
///
/// # Errors
/// The folder cannot be written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
