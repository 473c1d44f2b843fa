//! A line chart as SVG text: the one plotting primitive the reports need.
//!
//! ```text
//!  bytes ▲           marker A     marker B
//!        │  ╱‾‾‾‾‾‾‾‾‾│‾‾‾‾╲       │          ─ one line per series (colour per model,
//!        │ ╱          │     ╲_____│_____        dashed for the program's live bytes)
//!        └────────────┴───────────┴─────▶ event
//! ```
//! Axes are linear from 0; ticks at 1-2-5 steps; a self-contained document
//! (no scripts, no external fonts) that any browser or `rsvg` draws.

use std::fmt::Write;

/// Line colours, one per model in order.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

/// One line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Stroke colour.
    pub color: String,
    /// Dashed stroke.
    pub dashed: bool,
    /// Points (x, y), x ascending.
    pub points: Vec<(f64, f64)>,
}

/// One point drawn as a ring over the lines (a measured value beside a model's curve).
#[derive(Debug, Clone)]
pub struct Dot {
    /// Where, in the chart's units (x: event, y: bytes).
    pub at: (f64, f64),
    /// Ring colour.
    pub color: String,
    /// The legend entry (one per distinct text) and the first line of the hover title.
    pub legend: String,
    /// Hover text after the legend's.
    pub title: String,
    /// `data-*` attributes (name without `data-`, value), so a reader can take the figures
    /// back out.
    pub data: Vec<(&'static str, String)>,
}

/// A chart: series over a shared x axis, vertical markers with labels, dots.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// The x axis's name.
    pub x_label: String,
    /// The y axis's name (values are bytes, shown in MiB).
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Vertical markers: (x, label).
    pub markers: Vec<(f64, String)>,
    /// Rings over the lines, clamped into the plot (a y below 0 is drawn at 0).
    pub dots: Vec<Dot>,
}

const W: f64 = 900.0;
const H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 110.0;

/// A "nice" step (1, 2 or 5 × 10^k) giving about `n` ticks up to `max`.
fn step(max: f64, n: f64) -> f64 {
    let raw = (max / n).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// Escapes text for XML and HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart {
    /// The chart as an `<svg>` element (no XML prolog: embeddable in HTML too).
    pub fn render(&self) -> String {
        let xmax = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(1.0f64, f64::max);
        let ymax = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(self.dots.iter().map(|d| d.at.1))
            .fold(1.0f64, f64::max)
            * 1.05;
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let sx = |x: f64| LEFT + x / xmax * pw;
        let sy = |y: f64| TOP + ph - y / ymax * ph;
        let mut o = String::new();
        let _ = write!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = write!(
            o,
            r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        // y ticks in MiB
        let mib = 1048576.0;
        let ys = step(ymax / mib, 6.0);
        let mut t = 0.0;
        while t * mib <= ymax {
            let y = sy(t * mib);
            let _ = write!(
                o,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                trim(t)
            );
            t += ys;
        }
        let xs = step(xmax, 8.0);
        let mut t = 0.0;
        while t <= xmax {
            let x = sx(t);
            let _ = write!(
                o,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 5.0,
                TOP + ph + 18.0,
                human_count(t)
            );
            t += xs;
        }
        let _ = write!(
            o,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        let _ = write!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            TOP + ph + 36.0,
            escape(&self.x_label)
        );
        let _ = write!(
            o,
            r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">{} (MiB)</text>"#,
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        for (i, (x, label)) in self.markers.iter().enumerate() {
            let x = sx(*x);
            let ly = TOP + 12.0 + (i % 3) as f64 * 13.0;
            let _ = write!(
                o,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="2,3"/><text x="{:.1}" y="{ly:.1}" font-size="10" fill="#555">{}</text>"##,
                TOP + ph,
                x + 3.0,
                escape(label)
            );
        }
        for s in &self.series {
            let mut d = String::new();
            for (k, (x, y)) in s.points.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if k == 0 { "M" } else { " L" },
                    sx(*x),
                    sy(*y)
                );
            }
            let _ = write!(
                o,
                r#"<path d="{d}" fill="none" stroke="{}" stroke-width="1.6"{}/>"#,
                s.color,
                if s.dashed {
                    r#" stroke-dasharray="6,4""#
                } else {
                    ""
                }
            );
        }
        for d in &self.dots {
            let _ = write!(
                o,
                r#"<circle class="dot" cx="{:.1}" cy="{:.1}" r="4.5" fill="white" stroke="{}" stroke-width="2""#,
                sx(d.at.0),
                sy(d.at.1.max(0.0)),
                d.color
            );
            for (k, v) in &d.data {
                let _ = write!(o, r#" data-{k}="{}""#, escape(v));
            }
            let _ = write!(
                o,
                "><title>{}: {}</title></circle>",
                escape(&d.legend),
                escape(&d.title)
            );
        }
        // legend below the axis label: the lines, then one ring per distinct dot legend
        let mut lx = LEFT;
        let ly = TOP + ph + 60.0;
        let mut rings: Vec<&Dot> = Vec::new();
        for d in &self.dots {
            if !rings.iter().any(|r| r.legend == d.legend) {
                rings.push(d);
            }
        }
        for (i, s) in self.series.iter().enumerate() {
            let y = ly + (i / 3) as f64 * 16.0;
            if i % 3 == 0 {
                lx = LEFT;
            }
            let _ = write!(
                o,
                r#"<line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"{}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 24.0,
                s.color,
                if s.dashed {
                    r#" stroke-dasharray="6,4""#
                } else {
                    ""
                },
                lx + 30.0,
                y + 4.0,
                escape(&s.name)
            );
            lx += 270.0;
        }
        for (j, d) in rings.iter().enumerate() {
            let i = self.series.len() + j;
            let y = ly + (i / 3) as f64 * 16.0;
            if i % 3 == 0 {
                lx = LEFT;
            }
            let _ = write!(
                o,
                r#"<circle cx="{:.1}" cy="{y:.1}" r="4.5" fill="white" stroke="{}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 12.0,
                d.color,
                lx + 30.0,
                y + 4.0,
                escape(&d.legend)
            );
            lx += 270.0;
        }
        o.push_str("</svg>");
        o
    }
}

/// `2.50` → `2.5`, `3.00` → `3`.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `1500000` → `1.5M`.
fn human_count(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_one_path_per_series_and_every_marker() {
        let c = Chart {
            title: "t <1>".into(),
            x_label: "event".into(),
            y_label: "bytes".into(),
            series: vec![
                Series {
                    name: "a".into(),
                    color: PALETTE[0].into(),
                    dashed: false,
                    points: vec![(0.0, 0.0), (10.0, 3.0 * 1048576.0)],
                },
                Series {
                    name: "live".into(),
                    color: "#000".into(),
                    dashed: true,
                    points: vec![(0.0, 0.0), (10.0, 1048576.0)],
                },
            ],
            markers: vec![(5.0, "700001".into())],
            dots: ["1", "2"]
                .map(|k| Dot {
                    at: (5.0, 2.0 * 1048576.0),
                    color: PALETTE[0].into(),
                    legend: "a: real".into(),
                    title: "phase".into(),
                    data: vec![("phase", k.into())],
                })
                .into(),
        };
        let s = c.render();
        assert_eq!(s.matches("<path").count(), 2);
        assert_eq!(s.matches(r#"<circle class="dot""#).count(), 2);
        assert_eq!(
            s.matches(">a: real</text>").count(),
            1,
            "one legend per text"
        );
        assert!(s.contains(r#"data-phase="2""#));
        assert!(s.contains(">700001</text>"));
        assert!(s.contains("t &lt;1&gt;"));
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
    }

    #[test]
    fn ticks_come_in_one_two_five_steps() {
        assert_eq!(step(100.0, 5.0), 20.0);
        assert_eq!(step(7.0, 6.0), 2.0);
        assert_eq!(step(0.9, 6.0), 0.2);
    }
}
