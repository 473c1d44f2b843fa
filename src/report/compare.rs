//! `pyalloc compare`'s outputs: the table, CSV, the JSON contract, the SVG chart and the
//! HTML page, all from [`TraceRun`]s.
//!
//! ```text
//!  TraceRun ─┬─ table()   one row per model, a row per marker under it (Δ from the first)
//!            ├─ csv()     one line per model and per marker row (+ real figures, `--real-rss`)
//!            ├─ json()    {"traces":[{"trace","events","models":[{"model",…,"markers":[…]}]}]}
//!            ├─ chart()   resident per model over event time, live dashed, markers labelled,
//!            │            the real process's points as rings (`--real-rss`)
//!            ├─ html()    the table and every chart in one file (inline SVG, no scripts),
//!            │            and per model held to a real run its table (report::real)
//!            └─ timings() where the time went (`--timings`, on standard error)
//! ```

use super::real::{self, Held, PhaseRow};
use super::svg::{escape, Chart, Series, PALETTE};
use crate::compare::{ModelRun, TraceRun};
use std::fmt::Write;

/// `{"traces": [...]}` (the `--json` contract).
pub fn json(runs: &[TraceRun]) -> String {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        traces: &'a [TraceRun],
    }
    serde_json::to_string(&Out { traces: runs })
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `--timings`: per trace, its wall time, then the reading thread's and each model's CPU
/// seconds and when each was done (seconds from the trace's start), one line each.
pub fn timings(runs: &[TraceRun]) -> String {
    let mut out = String::new();
    for t in runs {
        let cpu: f64 = t.feed.cpu + t.models.iter().map(|m| m.timing.cpu).sum::<f64>();
        let _ = writeln!(
            out,
            "timings: {}: wall {:.3} s, cpu {:.3} s in all",
            t.trace, t.wall, cpu
        );
        let _ = writeln!(
            out,
            "timings:   {:<40} cpu {:.3} s, done at {:.3} s",
            "reading (decode, consistency, translate)", t.feed.cpu, t.feed.done_at
        );
        for m in &t.models {
            let _ = writeln!(
                out,
                "timings:   {:<40} cpu {:.3} s, done at {:.3} s",
                m.model, m.timing.cpu, m.timing.done_at
            );
        }
    }
    out
}

/// Bytes in KiB with one decimal.
fn kib(b: u64) -> String {
    format!("{:.1}", b as f64 / 1024.0)
}

/// A model's summary row as the table and the page show it: the model, then sizes in KiB,
/// the two fragmentations, the mmap/munmap/brk counts and the seconds (floats to 3 places).
fn summary_cells(m: &ModelRun) -> [String; 13] {
    [
        m.model.clone(),
        kib(m.peak_live),
        kib(m.peak_mapped),
        kib(m.peak_resident),
        kib(m.final_live),
        kib(m.final_mapped),
        kib(m.final_resident),
        format!("{:.3}", m.fragmentation_at_peak),
        format!("{:.3}", m.fragmentation_at_end),
        m.syscalls.mmap.to_string(),
        m.syscalls.munmap.to_string(),
        m.syscalls.brk.to_string(),
        format!("{:.3}", m.seconds),
    ]
}

/// The table's column widths after the model's, in the order of `summary_cells`.
const SUMMARY_WIDTHS: [usize; 12] = [11, 11, 11, 11, 11, 11, 9, 9, 6, 6, 6, 8];

/// Signed KiB with one decimal.
pub(super) fn dkib(d: i64) -> String {
    format!("{:+.1}", d as f64 / 1024.0)
}

/// The human table: per trace, one row per model (sizes in KiB), then each model's marker rows
/// with the change since its first marker.
pub fn table(runs: &[TraceRun]) -> String {
    let mut o = String::new();
    for t in runs {
        let _ = writeln!(o, "{} ({} events)", t.trace, t.events);
        let w = t
            .models
            .iter()
            .map(|m| m.model.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let _ = writeln!(
            o,
            "  {:w$}  {:>11} {:>11} {:>11} {:>11} {:>11} {:>11} {:>9} {:>9} {:>6} {:>6} {:>6} {:>8}",
            "model", "peak live", "peak mapped", "peak resid", "final live", "final mappd",
            "final resid", "frag@peak", "frag@end", "mmap", "munmap", "brk", "seconds"
        );
        for m in &t.models {
            let cells = summary_cells(m);
            let _ = write!(o, "  {:w$} ", cells[0]);
            for (c, width) in cells[1..].iter().zip(SUMMARY_WIDTHS) {
                let _ = write!(o, " {c:>width$}");
            }
            o.push('\n');
        }
        let _ = writeln!(
            o,
            "  waste by cause (KiB; live - outside + internal + external + metadata + other = mapped)"
        );
        let _ = writeln!(
            o,
            "  {:w$}  {:>5} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "model", "at", "live", "mapped", "rounding", "headers", "align", "free blk",
            "empty pl", "free ar", "free chk", "metadata", "other", "outside"
        );
        for m in &t.models {
            for (at, snap) in [("peak", &m.waste_at_peak), ("end", &m.waste_at_end)] {
                let Some(snap) = snap else { continue };
                let p = &snap.waste;
                let _ = writeln!(
                    o,
                    "  {:w$}  {:>5} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    m.model,
                    at,
                    kib(snap.live),
                    kib(snap.mapped),
                    kib(p.rounding),
                    kib(p.headers),
                    kib(p.alignment),
                    kib(p.free_blocks),
                    kib(p.empty_pools),
                    kib(p.free_arenas),
                    kib(p.free_chunks),
                    kib(p.metadata),
                    kib(p.other_maps),
                    kib(p.outside)
                );
            }
        }
        if t.models.iter().any(|m| !m.markers.is_empty()) {
            let _ = writeln!(
                o,
                "  markers (KiB; Δ = change since the model's first marker)"
            );
            let _ = writeln!(
                o,
                "  {:w$}  {:>8} {:>10} {:>11} {:>11} {:>11} {:>11} {:>11}",
                "model", "size", "event", "live", "mapped", "resident", "Δ live", "Δ resident"
            );
            for m in &t.models {
                let first = m.markers.first();
                for r in &m.markers {
                    let f = first.unwrap_or(r);
                    let _ = writeln!(
                        o,
                        "  {:w$}  {:>8} {:>10} {:>11} {:>11} {:>11} {:>11} {:>11}",
                        m.model,
                        r.size,
                        r.event,
                        kib(r.live),
                        kib(r.mapped),
                        kib(r.resident),
                        dkib(r.live as i64 - f.live as i64),
                        dkib(r.resident as i64 - f.resident as i64)
                    );
                }
            }
        }
    }
    o
}

/// CSV: `trace,model,row,size,event,live,mapped,resident,...`: a `summary` row per model
/// (peaks in live/mapped/resident, then the finals), a `marker` row per marker, and
/// `waste_peak` / `waste_end` rows (event, live, mapped, then the waste columns added at
/// the end: rounding … outside), then the real figures (`real_rss`, `real_delta`,
/// `predicted_delta`, `error`, `tolerance`: bytes, as the JSON's) on the marker rows of a
/// model held to a real run (`held[trace]`, `--real-rss`), empty elsewhere.
pub fn csv(runs: &[TraceRun], held: &[Vec<Held>]) -> String {
    let q = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut o = String::from(
        "trace,events,model,row,size,event,live,mapped,resident,final_live,final_mapped,final_resident,fragmentation_at_peak,fragmentation_at_end,mmap,munmap,brk,seconds,rounding,headers,alignment,free_blocks,empty_pools,free_arenas,free_chunks,metadata,other_maps,outside,real_rss,real_delta,predicted_delta,error,tolerance\n",
    );
    for (ti, t) in runs.iter().enumerate() {
        for m in &t.models {
            let phases = real::phases_of(held.get(ti), &m.model);
            let head = format!("{},{},{}", q(&t.trace), t.events, q(&m.model));
            let _ = writeln!(
                o,
                "{head},summary,,,{},{},{},{},{},{},{},{},{},{},{},{},,,,,,,,,,,,,,,",
                m.peak_live,
                m.peak_mapped,
                m.peak_resident,
                m.final_live,
                m.final_mapped,
                m.final_resident,
                m.fragmentation_at_peak,
                m.fragmentation_at_end,
                m.syscalls.mmap,
                m.syscalls.munmap,
                m.syscalls.brk,
                m.seconds
            );
            for (k, r) in m.markers.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "{head},marker,{},{},{},{},{},,,,,,,,,,,,,,,,,,,,{}",
                    r.size,
                    r.event,
                    r.live,
                    r.mapped,
                    r.resident,
                    real_cells(phases.get(k))
                );
            }
            for (row, w) in [
                ("waste_peak", &m.waste_at_peak),
                ("waste_end", &m.waste_at_end),
            ] {
                let Some(w) = w else { continue };
                let p = &w.waste;
                let _ = writeln!(
                    o,
                    "{},{},{},{row},,{},{},{},,,,,,,,,,,{},{},{},{},{},{},{},{},{},{},,,,,",
                    q(&t.trace),
                    t.events,
                    q(&m.model),
                    w.event,
                    w.live,
                    w.mapped,
                    p.rounding,
                    p.headers,
                    p.alignment,
                    p.free_blocks,
                    p.empty_pools,
                    p.free_arenas,
                    p.free_chunks,
                    p.metadata,
                    p.other_maps,
                    p.outside
                );
            }
        }
    }
    o
}

/// The CSV's five real columns of one marker row: its phase's figures, or empty.
fn real_cells(p: Option<&PhaseRow>) -> String {
    p.map_or_else(
        || ",,,,".to_string(),
        |p| {
            format!(
                "{},{},{},{},{}",
                p.real_rss, p.real_delta, p.predicted_delta, p.error, p.tolerance
            )
        },
    )
}

/// Resident bytes of every model over event time, the program's live bytes dashed, the
/// markers of the first model labelled with their sizes, and the real process's points of
/// every model in `held` (`--real-rss`; [`real::dots`]).
pub fn chart(t: &TraceRun, held: &[Held]) -> Chart {
    let mut series: Vec<Series> = t
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| Series {
            name: format!("{} resident", m.model),
            color: PALETTE[i % PALETTE.len()].to_string(),
            dashed: false,
            points: m
                .samples
                .iter()
                .map(|s| (s.event as f64, s.resident as f64))
                .collect(),
        })
        .collect();
    if let Some(m) = longest(&t.models) {
        series.push(Series {
            name: "live (the program's)".into(),
            color: "#000".into(),
            dashed: true,
            points: m
                .samples
                .iter()
                .map(|s| (s.event as f64, s.live as f64))
                .collect(),
        });
    }
    let markers = t
        .models
        .first()
        .map(|m| {
            m.markers
                .iter()
                .map(|r| (r.event as f64, r.size.to_string()))
                .collect()
        })
        .unwrap_or_default();
    Chart {
        title: format!("{}: resident bytes by model", t.trace),
        x_label: format!("event (of {})", t.events),
        y_label: "bytes".into(),
        series,
        markers,
        dots: real::dots(t, held),
    }
}

fn longest(models: &[ModelRun]) -> Option<&ModelRun> {
    models.iter().max_by_key(|m| m.samples.len())
}

/// One SVG document holding a chart per trace, stacked.
pub fn svg(runs: &[TraceRun]) -> String {
    let charts: Vec<String> = runs.iter().map(|t| chart(t, &[]).render()).collect();
    if charts.len() == 1 {
        return format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}\n",
            charts[0]
        );
    }
    let mut o = String::new();
    let h = 420 * charts.len();
    let _ = write!(
        o,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"{h}\">"
    );
    for (i, c) in charts.iter().enumerate() {
        let _ = write!(o, "<g transform=\"translate(0 {})\">{c}</g>", i * 420);
    }
    o.push_str("</svg>\n");
    o
}

/// A self-contained page: the table and a chart per trace; for the models of `held[trace]`
/// (`--real-rss`) the table of their phases held to the real process
/// ([`real::html_table`]) and the real points on the chart.
pub fn html(runs: &[TraceRun], held: &[Vec<Held>]) -> String {
    let mut o = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>pyalloc compare</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}</style></head><body>\n<h1>pyalloc compare</h1>\n<p>live: bytes the program asked for and has not freed; mapped: address space held from the system (brk extent, arenas, mmapped chunks); resident: pages written through the allocators' blocks and metadata and not given back (the model's prediction of the heap's share of VmRSS). Sizes in KiB.</p>\n",
    );
    for (ti, t) in runs.iter().enumerate() {
        let held = held.get(ti).map_or(&[][..], Vec::as_slice);
        let _ = write!(o, "<h2>{} ({} events)</h2>\n<table><tr><th>model</th><th>peak live</th><th>peak mapped</th><th>peak resident</th><th>final live</th><th>final mapped</th><th>final resident</th><th>fragmentation at peak</th><th>at end</th><th>mmap</th><th>munmap</th><th>brk</th><th>seconds</th></tr>\n", escape(&t.trace), t.events);
        for m in &t.models {
            let cells = summary_cells(m);
            let _ = write!(o, "<tr><td>{}</td>", escape(&cells[0]));
            for c in &cells[1..] {
                let _ = write!(o, "<td>{c}</td>");
            }
            o.push_str("</tr>\n");
        }
        o.push_str("</table>\n");
        if t.models.iter().any(|m| !m.markers.is_empty()) {
            o.push_str("<table><tr><th>model</th><th>marker size</th><th>event</th><th>live</th><th>mapped</th><th>resident</th><th>Δ resident since the first marker</th></tr>\n");
            for m in &t.models {
                let f = m.markers.first().map_or(0, |r| r.resident);
                for r in &m.markers {
                    let _ = writeln!(
                        o,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(&m.model),
                        r.size,
                        r.event,
                        kib(r.live),
                        kib(r.mapped),
                        kib(r.resident),
                        dkib(r.resident as i64 - f as i64)
                    );
                }
            }
            o.push_str("</table>\n");
        }
        o.push_str(&real::html_table(held));
        o.push_str(&chart(t, held).render());
        o.push('\n');
    }
    o.push_str("</body></html>\n");
    o
}
