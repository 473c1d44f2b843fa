//! The `pyalloc` command line: see `pyalloc --help`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
