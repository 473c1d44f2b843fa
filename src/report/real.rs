//! Predicted against measured: `pyalloc compare --real-rss MODEL=FILE` lines a model's
//! marker rows up with the VmRSS the real process printed at the same markers (one line
//! per phase, as ../shared/workloads/survivors.py prints them) and reports, per phase, the
//! real and the predicted change since the first marker and their difference.
//!
//! ```text
//!  FILE (the script's stdout)     model's marker rows          phase k ≥ 1:
//!  start 14432          ──k=0──▶  700001  resident r0           real Δ  = (v_k - v_0) KiB
//!  built 26112          ──k=1──▶  700101  resident r1           pred. Δ = r_k - r_0
//!  survivors 23792      ──k=2──▶  700201  resident r2           error   = pred. Δ - real Δ
//! ```
//! Invariant: `error == predicted_delta - real_delta` for every row, and the tolerance the
//! issue holds the models to is `max(3 % of |real Δ|, 512 KiB)`.
//! The real figures are VmRSS in KiB (`/proc/self/status`): whole pages, so every delta is
//! a multiple of 4 KiB; the model's are bytes.
//!
//! Where the figures appear: the table ([`table`]), `--json` (added fields, [`add_to_json`]),
//! `--csv` (five columns at the end of the marker rows, `report::compare::csv`), `--svg`
//! ([`svg`]: the table drawn under the chart) and `--html` ([`html_table`] beside the other
//! tables); the chart of both draws the real points ([`dots`]) as rings over the model's
//! line, placed at the model's first-marker resident plus the real Δ.

use super::compare::dkib;
use super::svg::{escape, Dot, PALETTE};
use crate::compare::{MarkerRow, ModelRun, TraceRun};
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

/// The VmRSS values (KiB) of a file of phase lines: each non-empty line's last number
/// (`built 26112`, `VmRSS: 26112 kB`).
///
/// # Errors
/// The file cannot be read, or a non-empty line holds no number (named by line).
pub fn read_vmrss(path: &Path) -> Result<Vec<u64>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = line
            .split_whitespace()
            .rev()
            .find_map(|w| w.parse::<u64>().ok())
            .ok_or_else(|| {
                format!(
                    "{} line {}: no VmRSS number (KiB) in {line:?}",
                    path.display(),
                    i + 1
                )
            })?;
        out.push(n);
    }
    Ok(out)
}

/// One phase of one model held to the real process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PhaseRow {
    /// The phase (0 = the first marker, the reference).
    pub phase: usize,
    /// The marker request's size.
    pub size: u64,
    /// The real process's VmRSS at this phase, bytes.
    pub real_rss: u64,
    /// Real change since the first phase, bytes.
    pub real_delta: i64,
    /// The model's resident change since its first marker row, bytes.
    pub predicted_delta: i64,
    /// `predicted_delta - real_delta`, bytes.
    pub error: i64,
    /// `max(3 % of |real_delta|, 512 KiB)`, bytes.
    pub tolerance: i64,
}

/// One model's phases against one real run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The model, as given.
    pub model: String,
    /// Where the real figures came from.
    pub real: String,
    /// Every phase, the first included (its deltas are 0).
    pub phases: Vec<PhaseRow>,
}

/// Lines `run`'s marker rows up with `real` (KiB, one per phase).
///
/// # Errors
/// The counts differ (the message names both).
pub fn hold(run: &ModelRun, real: &[u64], source: &str) -> Result<Held, String> {
    hold_rows(&run.model, &run.markers, real, source)
}

/// [`hold`] of `model`'s marker rows `markers`.
///
/// # Errors
/// The counts differ (the message names both).
pub fn hold_rows(
    model: &str,
    markers: &[MarkerRow],
    real: &[u64],
    source: &str,
) -> Result<Held, String> {
    if markers.len() != real.len() {
        return Err(format!(
            "{source}: {} VmRSS lines, but model {model} has {} marker rows (give one --at-marker per phase)",
            real.len(),
            markers.len()
        ));
    }
    let (Some(r0), Some(&v0)) = (markers.first(), real.first()) else {
        return Err(format!("{source}: no VmRSS lines"));
    };
    let phases = markers
        .iter()
        .zip(real)
        .enumerate()
        .map(|(k, (r, &v))| {
            let real_delta = (v as i64 - v0 as i64) * 1024;
            let predicted_delta = r.resident as i64 - r0.resident as i64;
            PhaseRow {
                phase: k,
                size: r.size,
                real_rss: v * 1024,
                real_delta,
                predicted_delta,
                error: predicted_delta - real_delta,
                tolerance: (real_delta.abs() * 3 / 100).max(512 * 1024),
            }
        })
        .collect();
    Ok(Held {
        model: model.to_string(),
        real: source.to_string(),
        phases,
    })
}

/// The phases of `model` in one trace's held models (`held[trace]`), or none.
pub fn phases_of<'a>(held: Option<&'a Vec<Held>>, model: &str) -> &'a [PhaseRow] {
    held.and_then(|h| h.iter().find(|h| h.model == model))
        .map_or(&[], |h| h.phases.as_slice())
}

/// `|error| ≤ tolerance`: the phase is held.
pub fn within(p: &PhaseRow) -> bool {
    p.error.abs() <= p.tolerance
}

/// The real process's points of every model in `held` for `t`'s chart: at each of the
/// model's marker events, its first marker's resident bytes plus the real Δ (so where the
/// model's line passes through the ring, prediction and reality agree), in the model's
/// colour, with `data-model`, `data-phase` and `data-real-delta` (bytes).
pub fn dots(t: &TraceRun, held: &[Held]) -> Vec<Dot> {
    let mut out = Vec::new();
    for h in held {
        let Some((i, m)) = t
            .models
            .iter()
            .enumerate()
            .find(|(_, m)| m.model == h.model)
        else {
            continue;
        };
        let Some(r0) = m.markers.first() else {
            continue;
        };
        for p in &h.phases {
            let Some(r) = m.markers.get(p.phase) else {
                continue;
            };
            out.push(Dot {
                at: (r.event as f64, r0.resident as f64 + p.real_delta as f64),
                color: PALETTE[i % PALETTE.len()].to_string(),
                legend: format!("{}: real Δ", h.model),
                title: format!(
                    "phase {}, marker {}: real Δ {} KiB, predicted Δ {} KiB, error {} KiB",
                    p.phase,
                    p.size,
                    dkib(p.real_delta),
                    dkib(p.predicted_delta),
                    dkib(p.error)
                ),
                data: vec![
                    ("model", h.model.clone()),
                    ("phase", p.phase.to_string()),
                    ("real-delta", p.real_delta.to_string()),
                ],
            });
        }
    }
    out
}

/// The page's "held to the real process" tables, one per model in `held`: per phase the
/// marker size, real RSS, real Δ, predicted Δ, error and tolerance (KiB, one decimal) and
/// whether the phase is within tolerance. Each number cell carries its class (`real_rss`,
/// `real_delta`, `predicted_delta`, `error`, `tolerance`: the JSON's names) and
/// `data-bytes`, the exact figure; the table `data-model` and each row `data-phase`.
pub fn html_table(held: &[Held]) -> String {
    let mut o = String::new();
    if held.is_empty() {
        return o;
    }
    o.push_str("<p>Held to the real process: Δ = change since the first marker (KiB), error = predicted Δ − real Δ, within tolerance when |error| ≤ max(3 % of |real Δ|, 512 KiB). The rings on the chart are the real points, at the model's first-marker resident plus the real Δ.</p>\n");
    for h in held {
        let _ = write!(
            o,
            "<h3>{} held to the real process ({})</h3>\n<table class=\"held\" data-model=\"{}\"><tr><th>phase</th><th>marker size</th><th>real RSS</th><th>real Δ</th><th>predicted Δ</th><th>error</th><th>tolerance</th><th>within tolerance</th></tr>\n",
            escape(&h.model),
            escape(&h.real),
            escape(&h.model)
        );
        for p in &h.phases {
            let cell = |o: &mut String, class: &str, bytes: i64, text: String| {
                let _ = write!(
                    o,
                    "<td class=\"{class}\" data-bytes=\"{bytes}\">{text}</td>"
                );
            };
            let _ = write!(
                o,
                "<tr data-phase=\"{}\"><td>{}</td><td>{}</td>",
                p.phase, p.phase, p.size
            );
            cell(
                &mut o,
                "real_rss",
                p.real_rss as i64,
                format!("{:.1}", p.real_rss as f64 / 1024.0),
            );
            cell(&mut o, "real_delta", p.real_delta, dkib(p.real_delta));
            cell(
                &mut o,
                "predicted_delta",
                p.predicted_delta,
                dkib(p.predicted_delta),
            );
            cell(&mut o, "error", p.error, dkib(p.error));
            cell(
                &mut o,
                "tolerance",
                p.tolerance,
                format!("{:.1}", p.tolerance as f64 / 1024.0),
            );
            let _ = writeln!(
                o,
                "{}</tr>",
                if within(p) {
                    "<td class=\"within\">yes</td>"
                } else {
                    "<td class=\"within\" style=\"color:#d62728;font-weight:bold\">no</td>"
                }
            );
        }
        o.push_str("</table>\n");
    }
    o
}

/// Signed KiB, whole (the real figures are whole KiB).
fn dk(b: i64) -> String {
    format!("{:+}", b / 1024)
}

/// The table: per model, per phase, real Δ, predicted Δ, error, tolerance (KiB).
pub fn table(held: &[Held]) -> String {
    let mut o = String::new();
    if held.is_empty() {
        return o;
    }
    let w = held.iter().map(|h| h.model.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(
        o,
        "  real vs predicted (KiB; Δ = change since the first marker; held: |error| ≤ max(3 % of |real Δ|, 512))"
    );
    let _ = writeln!(
        o,
        "  {:w$}  {:>5} {:>8} {:>10} {:>10} {:>11} {:>8} {:>9}  real",
        "model", "phase", "size", "real RSS", "real Δ", "predicted Δ", "error", "tolerance"
    );
    for h in held {
        for p in &h.phases {
            let _ = writeln!(
                o,
                "  {:w$}  {:>5} {:>8} {:>10} {:>10} {:>11} {:>8} {:>9}  {}{}",
                h.model,
                p.phase,
                p.size,
                p.real_rss / 1024,
                dk(p.real_delta),
                dk(p.predicted_delta),
                dk(p.error),
                p.tolerance / 1024,
                h.real,
                if !within(p) { "  OVER" } else { "" }
            );
        }
    }
    o
}

/// Adds the real figures to the `--json` contract's marker rows, as new fields only
/// (`real_rss`, `real_delta`, `predicted_delta`, `error`, `tolerance`: bytes): every
/// field the contract names keeps its place and value.
pub fn add_to_json(json: &str, runs: &[TraceRun], held: &[Vec<Held>]) -> Result<String, String> {
    let mut v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    for (ti, t) in runs.iter().enumerate() {
        for h in held.get(ti).into_iter().flatten() {
            let Some(mi) = t.models.iter().position(|m| m.model == h.model) else {
                continue;
            };
            let rows = &mut v["traces"][ti]["models"][mi]["markers"];
            for p in &h.phases {
                if let Some(row) = rows.get_mut(p.phase).and_then(|r| r.as_object_mut()) {
                    row.insert("real_rss".into(), p.real_rss.into());
                    row.insert("real_delta".into(), p.real_delta.into());
                    row.insert("predicted_delta".into(), p.predicted_delta.into());
                    row.insert("error".into(), p.error.into());
                    row.insert("tolerance".into(), p.tolerance.into());
                }
            }
        }
    }
    serde_json::to_string(&v).map_err(|e| e.to_string())
}

const ROW: f64 = 22.0;
const COLS: [(&str, f64); 7] = [
    ("model", 20.0),
    ("phase", 330.0),
    ("marker", 420.0),
    ("real Δ KiB", 540.0),
    ("predicted Δ KiB", 680.0),
    ("error KiB", 790.0),
    ("tolerance", 880.0),
];

/// The table as an `<svg>` element of `width` pixels (no prolog): a row per model and
/// phase after the first, errors over the tolerance in red. Each number cell carries
/// `class="real|pred|err"` and `data-model`/`data-phase` so a reader (or a test) can
/// take the figures back out.
pub fn svg_table(title: &str, held: &[Held], width: f64) -> String {
    let rows: usize = held.iter().map(|h| h.phases.len().saturating_sub(1)).sum();
    let height = 60.0 + ROW * (rows as f64 + 1.0);
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = write!(
        o,
        r#"<rect width="{width}" height="{height}" fill="white"/><text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        width / 2.0,
        escape(title)
    );
    let mut y = 50.0;
    for (i, (name, x)) in COLS.iter().enumerate() {
        let anchor = if i == 0 { "start" } else { "end" };
        let _ = write!(
            o,
            r#"<text x="{x}" y="{y}" font-weight="bold" text-anchor="{anchor}">{name}</text>"#
        );
    }
    let _ = write!(
        o,
        r##"<line x1="15" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888"/>"##,
        y + 6.0,
        width - 15.0,
        y + 6.0
    );
    for h in held {
        for p in h.phases.iter().skip(1) {
            y += ROW;
            let over = !within(p);
            let m = escape(&h.model);
            let cell = |o: &mut String, col: usize, class: &str, text: String, color: &str| {
                let _ = write!(
                    o,
                    r#"<text x="{}" y="{y}" text-anchor="end" fill="{color}" class="{class}" data-model="{m}" data-phase="{}">{text}</text>"#,
                    COLS[col].1, p.phase
                );
            };
            let _ = write!(o, r#"<text x="{}" y="{y}">{m}</text>"#, COLS[0].1);
            cell(&mut o, 1, "phase", p.phase.to_string(), "black");
            cell(&mut o, 2, "size", p.size.to_string(), "black");
            cell(&mut o, 3, "real", dk(p.real_delta), "black");
            cell(&mut o, 4, "pred", dk(p.predicted_delta), "black");
            cell(
                &mut o,
                5,
                "err",
                dk(p.error),
                if over { "#d62728" } else { "#2ca02c" },
            );
            cell(&mut o, 6, "tol", (p.tolerance / 1024).to_string(), "black");
        }
    }
    o.push_str("</svg>");
    o
}

/// `--svg` with real figures: each trace's chart (the real points as rings), and under it
/// the table of the models
/// held to the real process, stacked in one document.
pub fn svg(runs: &[TraceRun], held: &[Vec<Held>]) -> String {
    let mut parts = Vec::new();
    for (ti, t) in runs.iter().enumerate() {
        let h = held.get(ti).map_or(&[][..], Vec::as_slice);
        parts.push((super::compare::chart(t, h).render(), 420.0));
        if !h.is_empty() {
            let rows: usize = h.iter().map(|h| h.phases.len().saturating_sub(1)).sum();
            let title = format!(
                "{}: resident Δ since the first marker, model vs real",
                t.trace
            );
            parts.push((
                svg_table(&title, h, 900.0),
                60.0 + ROW * (rows as f64 + 1.0),
            ));
        }
    }
    let total: f64 = parts.iter().map(|p| p.1).sum();
    let mut o = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"{total}\">"
    );
    let mut y = 0.0;
    for (p, h) in parts {
        let _ = write!(o, "<g transform=\"translate(0 {y})\">{p}</g>");
        y += h;
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(resident: &[u64]) -> Vec<MarkerRow> {
        resident
            .iter()
            .enumerate()
            .map(|(k, &r)| MarkerRow {
                size: 700001 + 100 * k as u64,
                event: k as u64,
                live: 0,
                mapped: 0,
                resident: r,
            })
            .collect()
    }

    #[test]
    fn deltas_and_errors_come_from_both_sides_and_a_bad_line_is_named() {
        let dir = std::env::temp_dir().join(format!("pyalloc-real-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("rss.txt");
        std::fs::write(&f, "start 100\n\nbuilt 1124\nVmRSS: 612 kB\n").unwrap();
        let real = read_vmrss(&f).unwrap();
        assert_eq!(real, [100, 1124, 612]);
        let h = hold_rows(
            "glibc-2.36",
            &rows(&[4096, 4096 + 2048 * 1024, 8192]),
            &real,
            "rss.txt",
        )
        .unwrap();
        let p = &h.phases;
        assert_eq!(
            (p[1].real_delta, p[1].predicted_delta),
            (1024 * 1024, 2048 * 1024)
        );
        assert_eq!(p[1].error, 1024 * 1024);
        assert_eq!((p[2].real_delta, p[2].predicted_delta), (512 * 1024, 4096));
        assert!(p
            .iter()
            .all(|r| r.error == r.predicted_delta - r.real_delta));
        assert!(table(std::slice::from_ref(&h)).contains("OVER"));
        let e = hold_rows("glibc-2.36", &rows(&[1, 2]), &real, "rss.txt").unwrap_err();
        assert!(
            e.contains("3 VmRSS lines") && e.contains("2 marker rows"),
            "{e}"
        );
        std::fs::write(&f, "start 100\nbuilt many\n").unwrap();
        let e = read_vmrss(&f).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
