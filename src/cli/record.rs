//! `pyalloc record [-o FILE] -- ARGS…`: runs `python3 ARGS…` in an embedded CPython whose
//! allocators are hooked from the start, writing every allocator call to FILE.
//!
//! The program's stdout, stderr and exit code are its own; after it, pyalloc prints one
//! line on stderr saying what it wrote (`pyalloc record: wrote FILE: N events, B bytes`).
//! FILE ending in `.gz` is gzip, in `.bin`/`.pyab` binary. Needs the `record` cargo
//! feature (`cargo build --release --features record`).

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc record`.
#[derive(clap::Args)]
pub struct RecordArgs {
    /// Where the trace goes (text, the format of the shipped CPython 3 recordings; `.gz`
    /// compresses, `.bin`/`.pyab` is binary).
    #[arg(short, long, default_value = "pyalloc.trace")]
    pub output: PathBuf,
    /// What `python3` would be given: a script and its arguments, `-c CODE`, `-m MODULE` …
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Records the program; exits with its exit code.
#[cfg(feature = "record")]
pub fn run(args: RecordArgs) -> Result<ExitCode, String> {
    let (code, written) = pyalloc::record::record(&args.output, &args.args)?;
    eprintln!("pyalloc record: {written}");
    Ok(ExitCode::from((code & 0xff) as u8))
}

/// Without the feature: says how to get it.
#[cfg(not(feature = "record"))]
pub fn run(_args: RecordArgs) -> Result<ExitCode, String> {
    Err("this build has no `record`: build with `cargo build --release --features record` (needs python3 with libpython3.x.so)".into())
}
