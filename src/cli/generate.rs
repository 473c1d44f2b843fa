//! `pyalloc generate -o OUT --events N [--model M] [--seed S] [--max-live L]`: writes a
//! synthetic Python-like workload whose addresses are the model's own (see
//! `pyalloc::trace::synth`), binary when OUT ends in `.bin`/`.pyab`, else text; `.gz`
//! compresses (the form chosen by [`pyalloc::trace::create`], written through a temporary
//! file renamed into place). Prints what it wrote (file, events, bytes) on stderr.
//! `--shape NAME` writes a named shape instead of the random mix (`int-churn`,
//! `dict-waves`, `mixed`, `survivors`: see `pyalloc::trace::shapes`), `--events` long,
//! seeded by `--seed`.

use pyalloc::replay::model_by_name;
use pyalloc::trace::output::Create;
use pyalloc::trace::shapes::Shape;
use pyalloc::trace::synth::Synth;
use pyalloc::trace::{create, Event, EventWriter, TraceHeader, SYNTHETIC};
use std::path::PathBuf;
use std::process::ExitCode;

/// The most events one `generate` writes (2^32: about 80 GiB of text).
pub const MAX_EVENTS: u64 = 1 << 32;

/// Arguments of `pyalloc generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// How many events (at most 2^32).
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
    /// A named shape instead of the random mix: int-churn, dict-waves, mixed, survivors.
    #[arg(long)]
    pub shape: Option<String>,
}

/// Writes the workload.
pub fn run(a: GenerateArgs) -> Result<ExitCode, String> {
    if let Some(code) = super::bad_model(Some(&a.model)) {
        return Ok(code);
    }
    if a.events > MAX_EVENTS {
        return Err(format!(
            "--events {}: at most {MAX_EVENTS} (2^32) events in one trace; generate several \
             with different --seed values for more",
            a.events
        ));
    }
    let mut model = model_by_name(&a.model).map_err(|e| e.to_string())?;
    let name = model.name();
    let what = match &a.shape {
        Some(s) => format!("--shape {s}"),
        None => format!("--max-live {}", a.max_live),
    };
    let header = TraceHeader {
        lines: vec![
            format!("{SYNTHETIC} (pyalloc generate): not recorded from CPython"),
            format!(
                "generator: pyalloc generate --events {} --model {} --seed {} {what}; addresses are the model's ({name})",
                a.events, a.model, a.seed
            ),
        ],
    };
    type Next<'m> = Box<dyn FnMut() -> Result<Option<Event>, pyalloc::AllocError> + 'm>;
    let mut next: Next = match &a.shape {
        Some(s) => {
            let mut shape = Shape::new(s, model.as_mut(), a.seed, a.events)?;
            Box::new(move || shape.next_event())
        }
        None => {
            let mut g = Synth::new(model.as_mut(), a.seed, a.max_live / 10, a.max_live.max(2));
            let mut left = a.events;
            Box::new(move || {
                if left == 0 {
                    return Ok(None);
                }
                left -= 1;
                g.next_event().map(Some)
            })
        }
    };
    let opts = Create {
        fast: true,
        ..Create::default()
    };
    let err = |e: pyalloc::trace::TraceError| e.to_string();
    let mut w: Box<dyn EventWriter> = Box::new(create(&a.output, &header, &opts).map_err(err)?);
    while let Some(e) = next().map_err(|e| e.to_string())? {
        w.write_event(&e).map_err(err)?;
    }
    let done = w.finish().map_err(err)?;
    eprintln!("pyalloc generate: {done}");
    Ok(ExitCode::SUCCESS)
}
