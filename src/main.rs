//! The `pyalloc` command line: see `pyalloc --help`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`pyalloc seed | head`) would
    // panic; restore the default so the process ends quietly, as a filter should.
    // SAFETY: setting a signal disposition to SIG_DFL before any thread starts.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::main()
}
