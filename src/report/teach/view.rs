//! `view`: one self-contained HTML page that steps through a whole CPython 3 recording (or
//! a CPython 2.7 PYREC one: its pymalloc, [`build27`]),
//! the heap map redrawn at every event from data embedded in the page.
//!
//! ```text
//!  Rust (this file)                               the page (view.js)
//!  Walk every event through pymalloc  ──ops──>    decode once into typed arrays
//!    op = (event, kind, rule, szidx, key)         checkpoints every CHECKPOINT ops
//!    kind: 0 free, 1 alloc, 2 arena map, 3 unmap  state at event E = checkpoint + ops <= E
//!    key = (slot * MAX_POOLS + pool) * CAP + k    map: one pixel per block, 32x32 per pool
//!  samples of live / mapped / resident bytes ──>  the chart (click: jump)
//!  markers, the peak                        ──>   jump buttons
//! ```
//!
//! The script shared with miview.rs's page (the varints, checkpoints, colours, chart and
//! stepping controls) is controls.js, in a `<script>` of its own before this page's.
//!
//! The page holds the recording's block changes (varints, base64), not pictures: the
//! state after event `E` is rebuilt from the nearest checkpoint, so stepping redraws one
//! map. Its numbers are the model's: after event `E`, `data-used-pools`,
//! `data-live-blocks` and `data-arenas` on `<body>` equal `Σ num pools`,
//! `Σ blocks in use` and the current arenas of `pyalloc stats --at E`.

use super::walk::{Blocks, Change, Residency, Stepped, Walk};
use crate::alloc::Allocator;
use crate::pymalloc::PymallocParams;
use crate::replay::pymalloc::ReplayModel;
use crate::replay::Flow;
use crate::replay::ReplayError as CheckError;
use crate::trace::pymalloc3::Pymalloc3Reader;
use crate::trace::EventKind;
use base64::Engine;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// Samples of the footprint chart (at most this many).
const SAMPLES: u64 = 2000;

/// What a view page needs besides the ops, whatever the allocator: the trace, the model,
/// the allocator's own layout `L` ([`Pools`], [`super::miview::Segments`]) and the chart.
#[derive(Debug, Clone, Serialize)]
pub struct ViewMeta<L = Pools> {
    /// The trace's name.
    pub title: String,
    /// The model's name.
    pub model: String,
    /// Events in the trace (a mimalloc recording's count its OS lines).
    pub events: u64,
    /// What the page's script needs to place the allocator's blocks.
    #[serde(flatten)]
    pub layout: L,
    /// The footprint chart and the jump buttons.
    #[serde(flatten)]
    pub chart: Chart,
    /// Number of ops.
    pub ops: u64,
}

/// pymalloc's layout on the page: where a block key's arena slot, pool and block are.
#[derive(Debug, Clone, Serialize)]
pub struct Pools {
    /// `POOL_SIZE`.
    pub pool_size: u64,
    /// `ARENA_SIZE`.
    pub arena_size: u64,
    /// `POOL_OVERHEAD`.
    pub overhead: u64,
    /// `MAX_POOLS_IN_ARENA`: pool keys per arena slot.
    pub max_pools: u32,
    /// Block keys per pool (a power of two at least the largest `NUMBLOCKS`).
    pub cap: u32,
    /// Arena slots used.
    pub slots: u32,
    /// Bytes per block by size class.
    pub class_bytes: Vec<u64>,
    /// `NUMBLOCKS` by size class.
    pub class_blocks: Vec<u32>,
    /// Arena bases, in the order of the arena-map ops.
    pub arena_bases: Vec<u64>,
}

/// A view page's footprint chart and jump buttons.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Chart {
    /// (event, live bytes, mapped bytes, resident bytes) samples, at most `2 · SAMPLES`:
    /// mapped = pymalloc's arenas or mimalloc's segments; resident as `pyalloc compare`
    /// counts it, the pages written and not given back.
    pub samples: Vec<(u64, u64, u64, u64)>,
    /// (event, label) jumps: marks, markers and the peak, in event order.
    pub jumps: Vec<(u64, String)>,
}

/// A [`Chart`] gathered event by event, as a walk goes.
///
/// Samples: every `stride`-th event from the first; when `2 · SAMPLES` are held, every
/// other one is dropped and the stride doubled. Jumps: each `# mark`, the first top-level
/// O/M request of each marker size, and (at [`finish`](Self::finish)) the first event at
/// which live bytes peaked.
pub(crate) struct Charting {
    chart: Chart,
    pending: Vec<u64>, // marker sizes whose first request is still to come
    peak: u64,         // the most live bytes so far
    peak_event: u64,   // the first event with `peak` live
    stride: u64,       // events between samples
    next_sample: u64,  // the event of the next sample
}

impl Charting {
    /// A chart with jumps at the first request of each size in `markers`.
    pub(crate) fn new(markers: &[u64]) -> Charting {
        Charting {
            chart: Chart::default(),
            pending: markers.to_vec(),
            peak: 0,
            peak_event: 0,
            stride: 1,
            next_sample: 0,
        }
    }

    /// Adds a marker size (once, however often it is added).
    pub(crate) fn add_marker(&mut self, size: u64) {
        if !self.pending.contains(&size) {
            self.pending.push(size);
        }
    }

    /// Notes event `index`: a jump when it is a `# mark` or a marker's first request.
    pub(crate) fn event(&mut self, index: u64, kind: &EventKind) {
        if let EventKind::Mark { index: mark } = *kind {
            self.chart.jumps.push((index, format!("mark {mark}")));
        }
        if let Some(size) = crate::replay::pymalloc::request_size(kind) {
            if let Some(k) = self.pending.iter().position(|&m| m == size) {
                self.pending.remove(k);
                self.chart.jumps.push((index, format!("marker {size}")));
            }
        }
    }

    /// Notes the footprint after event `index`.
    pub(crate) fn footprint(&mut self, index: u64, live: u64, mapped: u64, resident: u64) {
        if live > self.peak {
            self.peak = live;
            self.peak_event = index;
        }
        if index >= self.next_sample {
            let samples = &mut self.chart.samples;
            samples.push((index, live, mapped, resident));
            self.next_sample = index + self.stride;
            if samples.len() as u64 >= 2 * SAMPLES {
                *samples = std::mem::take(samples).into_iter().step_by(2).collect();
                self.stride *= 2;
            }
        }
    }

    /// The chart, with the peak's jump.
    pub(crate) fn finish(mut self) -> Chart {
        let (peak, at) = (self.peak, self.peak_event);
        self.chart
            .jumps
            .push((at, format!("peak ({peak} bytes live)")));
        self.chart.jumps.sort();
        self.chart
    }
}

/// The page's data: the metadata and the op stream.
#[derive(Debug, Clone)]
pub struct ViewData<L = Pools> {
    /// Everything but the ops.
    pub meta: ViewMeta<L>,
    /// The ops, varint-encoded.
    pub ops: Vec<u8>,
}

/// Appends `v` in seven-bit groups, low first, the high bit set on all but the last (the
/// ops' encoding, read back by the pages' scripts).
pub(crate) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The page's block keys, from the model's era.
struct Geometry {
    params: PymallocParams, // the era
    nclasses: u32,          // size classes
    max_pools: u32,         // pool keys per arena slot
    cap: u32,               // block keys per pool
    class_blocks: Vec<u32>, // NUMBLOCKS by class
}

impl Geometry {
    fn of(m: &ReplayModel) -> Geometry {
        let params = m.params().clone();
        let nclasses = m.nclasses();
        let class_blocks: Vec<u32> = (0..nclasses).map(|s| params.blocks_per_pool(s)).collect();
        let cap = class_blocks
            .iter()
            .copied()
            .max()
            .unwrap_or(1)
            .next_power_of_two();
        Geometry {
            max_pools: params.max_pools_in_arena(),
            params,
            nclasses,
            cap,
            class_blocks,
        }
    }
}

/// Walks the whole recording at `path` and gathers the page's data; `markers` are request
/// sizes whose first top-level O/M request gets a jump button (besides `# mark` lines).
///
/// # Errors
/// As [`Walk::replay`].
pub fn build(
    path: &Path,
    model: Option<String>,
    markers: &[u64],
    progress: bool,
) -> Result<ViewData, CheckError> {
    gather(markers, |each| {
        let mut reader = Pymalloc3Reader::open(path)?;
        let name = path.display().to_string();
        let tracked = Residency::Tracked;
        let mut walk = Walk::replay(&mut reader, &name, model, progress, tracked, |walk, s| {
            let resident = walk.resident();
            each(walk.model_mut(), s, resident);
            Flow::Next
        })?;
        Ok((
            walk.events(),
            walk.name().to_string(),
            Geometry::of(walk.model_mut()),
        ))
    })
}

/// [`build`] of a CPython 2.7 PYREC recording: its pymalloc (2.7.17–2.7.18) replayed as
/// `pyalloc check` replays it (free lists and pymalloc in one replay, through the driver).
///
/// # Errors
/// A read error, the model's refusal or a divergence from the recording.
pub fn build27(path: &Path, markers: &[u64], progress: bool) -> Result<ViewData, CheckError> {
    use crate::check::pyrec27::Py27Replay;
    use crate::replay::{Cause, Replay};
    use crate::trace::Event;
    /// The 2.7 replay with its blocks' bookkeeping, each step handed to the page.
    struct Walk27<'f> {
        replay: Py27Replay, // free lists and pymalloc
        blocks: Blocks,     // live blocks, last events
        each: &'f mut dyn FnMut(&mut ReplayModel, &Stepped, u64), // the page's gatherer
    }
    impl Replay for Walk27<'_> {
        fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
            let pre = Blocks::before(self.replay.pymalloc(), ev);
            self.replay.report.events += 1;
            self.replay.step(index, ev)?;
            if self.replay.report.first_divergence.is_some() {
                return Ok(Flow::Diverged);
            }
            let s = self.blocks.after(self.replay.pymalloc(), index, ev, pre);
            let m = self.replay.pymalloc_mut();
            let resident = resident_of(m);
            (self.each)(m, &s, resident);
            Ok(Flow::Next)
        }
    }
    gather(markers, |each| {
        let mut replay = Py27Replay::new(crate::platform::Platform::linux_x86_64(), false);
        replay.pymalloc_mut().source_mut().track_residency();
        replay.pymalloc_mut().track_residency();
        let mut w = Walk27 {
            replay,
            blocks: Blocks::default(),
            each,
        };
        let events = super::walk::drive_py27(path, progress, &mut w, |w| &w.replay)?;
        let title = path.display().to_string();
        let g = Geometry::of(w.replay.pymalloc());
        Ok((events, title, g))
    })
}

/// Pages of a pinned model's arenas written and not given back.
fn resident_of(m: &mut ReplayModel) -> u64 {
    use crate::pymalloc::ArenaSource;
    m.source_mut()
        .space(None)
        .map_or(0, |vm| vm.resident_bytes())
}

/// The page's data from a replay `run` that hands every step, with the model after it and
/// its resident bytes, to the gatherer it is given; `run` returns the events, the title
/// and the era's geometry.
fn gather(
    markers: &[u64],
    run: impl FnOnce(
        &mut dyn FnMut(&mut ReplayModel, &Stepped, u64),
    ) -> Result<(u64, String, Geometry), CheckError>,
) -> Result<ViewData, CheckError> {
    let mut geom: Option<Geometry> = None; // known once the header has named the model
    let mut ops = Vec::new();
    let mut nops = 0u64;
    let mut last_event = 0u64;
    let mut keys: HashMap<u64, u64> = HashMap::new(); // live small block -> key
    let mut slots: Vec<u64> = Vec::new(); // arena base by slot, as the page knows it
    let mut arena_bases = Vec::new();
    let mut chart = Charting::new(markers);
    let mut arena_lines = false;
    let mut op = |ops: &mut Vec<u8>, nops: &mut u64, event: u64, tag: u8, szidx: u8, key: u64| {
        varint(ops, event - last_event);
        last_event = event;
        ops.push(tag);
        if tag & 3 == 1 {
            ops.push(szidx);
        }
        varint(ops, key);
        *nops += 1;
    };
    let mut each = |m: &mut ReplayModel, s: &Stepped, resident: u64| {
        let g = geom.get_or_insert_with(|| Geometry::of(m));
        let (params, nclasses, max_pools, cap) = (&g.params, g.nclasses, g.max_pools, g.cap);
        let i = s.index;
        if let EventKind::ArenaAlloc { .. } | EventKind::ArenaFree { .. } = s.event.kind {
            arena_lines = true;
        }
        chart.event(i, &s.event.kind);
        // Frees first (their keys are known), then arena changes, then allocations.
        for c in &s.changes {
            if let Change::Free { addr } = *c {
                if let Some(key) = keys.remove(&addr) {
                    op(&mut ops, &mut nops, i, 0, 0, key);
                }
            }
        }
        let is_call = !s.changes.is_empty()
            || crate::replay::pymalloc::request_size(&s.event.kind).is_some()
            || matches!(s.event.kind, EventKind::Free { .. });
        if arena_lines && is_call {
            arena_lines = false;
            let arenas = m.arenas();
            if slots.len() < arenas.len() {
                slots.resize(arenas.len(), 0);
            }
            for (slot, a) in arenas.iter().enumerate() {
                if slots[slot] != a.address {
                    if slots[slot] != 0 {
                        op(&mut ops, &mut nops, i, 3, 0, slot as u64);
                    }
                    if a.address != 0 {
                        op(&mut ops, &mut nops, i, 2, 0, slot as u64);
                        arena_bases.push(a.address);
                    }
                    slots[slot] = a.address;
                }
            }
        }
        for c in &s.changes {
            if let Change::Alloc { addr, szidx, rule } = *c {
                let Some((slot, id)) = m.pool_of(crate::addr::Addr(addr)) else {
                    continue;
                };
                let pool_index = id - nclasses - slot * max_pools;
                let pool_addr = m.pools()[id as usize].addr;
                let k = (addr - pool_addr - params.pool_overhead()) / params.class_size(szidx);
                let key = ((slot as u64 * max_pools as u64) + pool_index as u64) * cap as u64 + k;
                keys.insert(addr, key);
                op(
                    &mut ops,
                    &mut nops,
                    i,
                    1 | (rule.code() << 2),
                    szidx as u8,
                    key,
                );
            }
        }
        let st = m.stats();
        chart.footprint(i, st.live_bytes, st.mapped_bytes, resident);
    };
    let (events, title, fallback) = run(&mut each)?;
    let Geometry {
        params,
        nclasses,
        max_pools,
        cap,
        class_blocks,
    } = geom.unwrap_or(fallback);
    Ok(ViewData {
        meta: ViewMeta {
            title,
            model: params.name.to_string(),
            events,
            layout: Pools {
                pool_size: params.pool_size(),
                arena_size: params.arena_size(),
                overhead: params.pool_overhead(),
                max_pools,
                cap,
                slots: slots.len() as u32,
                class_bytes: (0..nclasses).map(|s| params.class_size(s)).collect(),
                class_blocks,
                arena_bases,
            },
            chart: chart.finish(),
            ops: nops,
        },
        ops,
    })
}

/// The page: HTML, style and script in one file, the data embedded (no network).
pub fn page(data: &ViewData) -> String {
    page_of(
        data,
        &["event", "arenas", "used-pools", "live-blocks"],
        include_str!("view.js"),
    )
}

/// A view page titled by its trace: style, the page's HTML, the metadata and ops of
/// `data`, the shared controls and the page's own `script`, in one file (no network);
/// `<body>` carries `counters` as `data-` attributes, 0 until the script sets them.
pub(crate) fn page_of<L: Serialize>(data: &ViewData<L>, counters: &[&str], script: &str) -> String {
    let meta = serde_json::to_string(&data.meta).unwrap_or_else(|_| "{}".into());
    let ops = base64::engine::general_purpose::STANDARD.encode(&data.ops);
    let title = crate::report::svg::escape(&data.meta.title);
    let body: String = counters
        .iter()
        .map(|c| format!(" data-{c}=\"0\""))
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\
         <title>pyalloc view: {title}</title><style>{}</style></head>\n\
         <body{body}>\n{}\n\
         <script id=\"meta\" type=\"application/json\">{}</script>\n\
         <script id=\"ops\" type=\"text/plain\">{ops}</script>\n<script>{}</script>\n<script>{}</script>\n</body></html>\n",
        include_str!("view.css"),
        include_str!("view.html").replace("{title}", &title),
        meta.replace("</", "<\\/"),
        include_str!("controls.js"),
        script
    )
}
