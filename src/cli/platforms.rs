//! `pyalloc platforms`: the platform presets and their parameters.

use pyalloc::Platform;
use std::process::ExitCode;

/// Prints one line per preset: name, pointer and long widths, malloc, heap start.
pub fn run() -> Result<ExitCode, String> {
    println!("name\tpointer_bytes\tlong_bytes\tpage_size\tmalloc\theap_start");
    for p in Platform::presets() {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            p.name,
            p.pointer_bytes,
            p.long_bytes,
            p.page_size,
            p.malloc.name(),
            p.heap_start
        );
    }
    Ok(ExitCode::SUCCESS)
}
