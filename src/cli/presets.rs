//! `pyalloc presets [--json]`: every pymalloc preset (one per CPython era) with its
//! parameters and the releases it covers (src/pymalloc/preset.rs holds the table), then
//! the what-if keys a model name may override (`cpython-3.11:pool=64KiB,arena=4MiB`).

use pyalloc::pymalloc::PymallocParams;
use std::process::ExitCode;

/// Arguments of `pyalloc presets`.
#[derive(clap::Args)]
pub struct PresetsArgs {
    /// Print one JSON array of presets instead of the text blocks.
    #[arg(long)]
    pub json: bool,
}

/// Prints every preset, oldest first.
pub fn run(args: PresetsArgs) -> Result<ExitCode, String> {
    let all: Vec<_> = PymallocParams::presets()
        .iter()
        .map(|p| p.summary())
        .collect();
    if args.json {
        let text = serde_json::to_string(&all).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    for (i, s) in all.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}  ({})", s.name, s.releases);
        println!("  source          {}", s.source);
        println!(
            "  size classes    {} of {} bytes apart, up to {} bytes",
            s.size_classes, s.alignment, s.small_request_threshold
        );
        println!(
            "  pool            {} bytes, header {} bytes",
            s.pool_size, s.pool_overhead
        );
        println!(
            "  arena           {} bytes, {} pools",
            s.arena_size, s.pools_per_arena
        );
        match &s.radix {
            None => println!("  radix tree      none"),
            Some(r) => println!(
                "  radix tree      {} address bits, levels {}/{}/{}: root {} bytes, mid node {} bytes, bottom node {} bytes",
                r.address_bits,
                r.level_bits[0],
                r.level_bits[1],
                r.level_bits[2],
                r.root_bytes,
                r.mid_node_bytes,
                r.bot_node_bytes
            ),
        }
        println!("  arena ordering  {}", s.arena_ordering);
        println!("  arena freeing   {}", s.arena_freeing);
        println!("  0-byte request  {}", s.malloc_zero);
        println!(
            "  realloc(p, 0) of a block pymalloc does not own: {}",
            s.foreign_realloc_zero
        );
    }
    println!();
    println!("what-if overrides (pyalloc compare --models 'cpython-3.11:pool=64KiB,arena=4MiB/glibc-2.36'):");
    for (key, macro_name, what) in pyalloc::pymalloc::whatif::KEYS {
        println!("  {key:<10} {macro_name:<24} {what}");
    }
    Ok(ExitCode::SUCCESS)
}
