//! Checking pyrec27 recordings (in progress: see the open issues).

use super::{CheckError, CheckOptions, CheckReport};
use std::path::Path;

/// Replays the trace at `path` through its model and compares every address.
///
/// # Errors
/// Not yet available in this build.
pub fn check(path: &Path, _opts: &CheckOptions) -> Result<CheckReport, CheckError> {
    Err(CheckError::Unsupported(format!(
        "{}: checking pyrec27 traces is not built yet",
        path.display()
    )))
}
