//! `pyalloc generate -o OUT --events N [--model M] [--seed S] [--max-live L]`: writes a
//! synthetic Python-like workload whose addresses are the model's own (see
//! `pyalloc::trace::synth`), binary when OUT ends in `.bin`/`.pyab`, else text; `.gz` compresses.

use flate2::write::GzEncoder;
use flate2::Compression;
use pyalloc::replay::model_by_name;
use pyalloc::trace::binary::BinaryWriter;
use pyalloc::trace::synth::Synth;
use pyalloc::trace::writer::TextWriter;
use pyalloc::trace::TraceHeader;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `pyalloc generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// How many events.
    #[arg(long)]
    pub events: u64,
    /// The model whose addresses the trace carries.
    #[arg(long, default_value = "glibc-2.36")]
    pub model: String,
    /// The random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The most blocks live at once (the live set wanders between a tenth of it and it).
    #[arg(long, default_value_t = 200_000)]
    pub max_live: u64,
}

/// Writes the workload.
pub fn run(a: GenerateArgs) -> Result<ExitCode, String> {
    let mut model = model_by_name(&a.model).map_err(|e| e.to_string())?;
    let name = model.name();
    let mut g = Synth::new(model.as_mut(), a.seed, a.max_live / 10, a.max_live.max(2));
    let header = TraceHeader {
        lines: vec![
            format!("{} (pyalloc generate): not recorded from CPython", pyalloc::trace::SYNTHETIC),
            format!(
                "generator: pyalloc generate --events {} --model {} --seed {} --max-live {}; addresses are the model's ({name})",
                a.events, a.model, a.seed, a.max_live
            ),
        ],
    };
    let path = a.output.to_string_lossy().into_owned();
    let stem = path.strip_suffix(".gz").unwrap_or(&path);
    let binary = stem.ends_with(".bin") || stem.ends_with(".pyab");
    let file = File::create(&a.output).map_err(|e| format!("{path}: {e}"))?;
    let io = |e: std::io::Error| format!("{path}: {e}");
    let out: Box<dyn Write> = if path.ends_with(".gz") {
        Box::new(GzEncoder::new(BufWriter::new(file), Compression::fast()))
    } else {
        Box::new(BufWriter::with_capacity(1 << 16, file))
    };
    let model_err = |e: pyalloc::AllocError| e.to_string();
    if binary {
        let mut w = BinaryWriter::new(out, &header).map_err(io)?;
        for _ in 0..a.events {
            w.write_event(&g.next_event().map_err(model_err)?)
                .map_err(io)?;
        }
        w.finish().map_err(io)?.flush().map_err(io)?;
    } else {
        let mut w = TextWriter::new(out);
        w.write_header(&header).map_err(io)?;
        for _ in 0..a.events {
            w.write_event(&g.next_event().map_err(model_err)?)
                .map_err(io)?;
        }
        w.finish().map_err(io)?.flush().map_err(io)?;
    }
    Ok(ExitCode::SUCCESS)
}
