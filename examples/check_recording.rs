//! Replay a recording through a model and compare: every small address CPython 3.11's
//! pymalloc returned in a real run, computed again by the model from the same requests.
//!
//! ```text
//!   recording (m/c/r/f lines, A/F arena lines)  ──>  Pymalloc (pinned to the recorded arenas)
//!        recorded address  ==?  model's address        first divergence: event, line, why
//! ```
//!
//! Run: `cargo run --release --example check_recording [TRACE]` (default: the 3.11.7
//! start-up recording in ../shared, the folder beside the checkout).

#[path = "../tests/common/mod.rs"]
mod common;

use pyalloc::check::{check_file, CheckOptions};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = match std::env::args_os().nth(1) {
        Some(p) => PathBuf::from(p),
        None => common::trace("cpython-3.11.7-linux-x86_64/startup_only.trace.gz"),
    };
    let report = check_file(&path, &CheckOptions::default())?;
    println!(
        "{}: {} events, {} addresses checked, {} matched",
        path.display(),
        report.events,
        report.checked,
        report.matched
    );
    match &report.first_divergence {
        None => println!("every checked address matched"),
        Some(d) => println!(
            "first divergence at event {} (line {}): {}",
            d.event, d.line, d.why
        ),
    }
    Ok(())
}

/// The recording's every small address is the model's.
#[test]
fn the_startup_recording_matches_address_for_address() {
    let path = common::trace("cpython-3.11.7-linux-x86_64/startup_only.trace.gz");
    let report = check_file(&path, &CheckOptions::default()).unwrap();
    assert!(report.ok(), "{:?}", report.first_divergence);
    assert!(report.checked > 0 && report.checked == report.matched);
    main().unwrap();
}
