//! `view` of mimalloc: one self-contained HTML page stepping through a CPython 3.13
//! mimalloc recording (or a CPython 3 recording's O/M calls under mimalloc, `--model
//! mimalloc-2.1.2`), the heap redrawn at every event from block changes embedded in it.
//!
//! ```text
//!  Rust (this file)                                     the page (miview.js)
//!  MiWalk every event; after each one:                  decode once into typed arrays
//!   segments born / gone      -> op 6 / 7 (segment)     checkpoints every CK ops
//!   pages born / gone         -> op 4 / 5 (page)        state at event E = checkpoint
//!   the event's own blocks    -> op 0..3 (page, block)     + ops <= E
//!   any page whose counts (used, |free|, |local_free|,  map: a segment = 8 lines of 64
//!     capacity) still differ: its blocks diffed, runs      slices, a slice 18x18 px, a
//!     of one new state as one op (extension, collect)      page's blocks along its pixels
//!  op = (event delta, tag, page|segment, [block, [count]])
//!  tag = kind (0 used, 1 free, 2 local_free, 3 uncarved, 4 page, 5 page gone,
//!        6 segment, 7 segment gone) | rule << 3 | 0x80 when a count follows
//! ```
//! Invariant: after the ops of event `E`, every live page's states equal the model's
//! `Page::blocks` after `E`; `data-pages`, `data-live-blocks` and `data-segments` on
//! `<body>` are the model's page count, `Σ used` and live segments at `E`.
//!
//! The script shared with view.rs's page (the varints, checkpoints, colours, chart and
//! stepping controls) is controls.js, in a `<script>` of its own before this page's.

use super::mimalloc::{on_model, page_kind, MiChange, MiFreed, MiStepped, MiWalk};
use super::view::{varint, Charting};
use crate::mimalloc::arena::OsSource;
use crate::mimalloc::size_class::{self, BIN_HUGE, SLICE_SIZE};
use crate::mimalloc::{BlockState, MemId, Mimalloc, Page};
use crate::replay::mimalloc::ModelRef;
use crate::replay::pymalloc::request_size;
use crate::replay::{Flow, ReplayError};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

const USED: u8 = 0;
const FREE: u8 = 1;
const LOCAL: u8 = 2;
const UNCARVED: u8 = 3;

/// A segment of the page: (base, slices, info slices, huge, arena or -1).
pub type SegmentMeta = (u64, u32, u32, bool, i64);
/// A page of the page: (segment, first slice, slices, block 0, block size, reserved, bin,
/// kind).
pub type PageMeta = (u32, u32, u32, u64, u64, u32, u32, String);

/// mimalloc's layout on the page: where its segments and pages are, and the rules' names.
#[derive(Debug, Clone, Serialize)]
pub struct Segments {
    /// Where the model's addresses come from.
    pub how: String,
    /// Segments in the order of their ops: (base, slices, info slices, huge, arena or -1).
    pub segments: Vec<SegmentMeta>,
    /// Pages in the order of their ops: (segment, first slice, slices, block 0, block
    /// size, reserved, bin, kind).
    pub pages: Vec<PageMeta>,
    /// The rules by code, one line each.
    pub rules: Vec<String>,
}

/// What the page needs besides the ops.
pub type MiViewMeta = super::view::ViewMeta<Segments>;

/// The page's data: the metadata and the op stream.
pub type MiViewData = super::view::ViewData<Segments>;

/// Page `p`'s blocks as the view codes their states (USED, FREE, LOCAL, UNCARVED).
fn block_states(p: &Page) -> Vec<u8> {
    p.blocks()
        .into_iter()
        .map(|(_, b)| match b {
            BlockState::Live { .. } => USED,
            BlockState::Free { .. } => FREE,
            BlockState::LocalFree { .. } => LOCAL,
            BlockState::Untouched => UNCARVED,
        })
        .collect()
}

/// A page as the page knows it.
struct Tracked {
    inc: u32,         // its number in `meta.pages`
    states: Vec<u8>,  // per block: USED, FREE, LOCAL, UNCARVED
    counts: [u32; 4], // blocks in each state
    seen: u64,        // the last step that found it alive
}

/// The gatherer: the model's state as the page last knew it, and the ops so far.
struct Gather {
    ops: Vec<u8>,
    nops: u64,
    last_event: u64,
    segs: HashMap<u64, u32>,      // live segment base -> its number
    pages: HashMap<u64, Tracked>, // live page (block 0 address) -> what the page shows
    meta_segments: Vec<SegmentMeta>,
    meta_pages: Vec<PageMeta>,
    step: u64,
    heartbeat: u64, // the model's generic-path calls at the last step
}

impl Gather {
    fn op(&mut self, event: u64, tag: u8, key: u64, block: Option<(u32, u32)>) {
        varint(&mut self.ops, event - self.last_event);
        self.last_event = event;
        let ranged = matches!(block, Some((_, n)) if n > 1);
        self.ops.push(tag | if ranged { 0x80 } else { 0 });
        varint(&mut self.ops, key);
        if let Some((k, n)) = block {
            varint(&mut self.ops, u64::from(k));
            if ranged {
                varint(&mut self.ops, u64::from(n));
            }
        }
        self.nops += 1;
    }

    /// Sets blocks of page `start` to `new` (the runs that change), emitting their ops.
    fn set_states(&mut self, event: u64, start: u64, new: &[u8], rules: &HashMap<u32, u8>) {
        let Some(t) = self.pages.get_mut(&start) else {
            return;
        };
        let inc = t.inc;
        let mut runs: Vec<(u32, u32, u8, u8)> = Vec::new(); // first, count, state, rule
        for (k, (&old, &st)) in t.states.iter().zip(new).enumerate() {
            if old == st {
                continue;
            }
            t.counts[old as usize] -= 1;
            t.counts[st as usize] += 1;
            let rule = if st == USED {
                rules.get(&(k as u32)).copied().unwrap_or(0)
            } else {
                0
            };
            match runs.last_mut() {
                Some(r) if r.0 + r.1 == k as u32 && r.2 == st && r.3 == 0 && rule == 0 => r.1 += 1,
                _ => runs.push((k as u32, 1, st, rule)),
            }
        }
        t.states.copy_from_slice(new);
        for (k, n, st, rule) in runs {
            self.op(event, st | (rule << 3), u64::from(inc), Some((k, n)));
        }
    }

    /// After event `s.index`: the ops that bring the page's state to the model's. An
    /// event without a block change left the model as it was; one served by the fast path
    /// (no generic-path call, no page emptied) changed only its own blocks' pages.
    fn after<S: OsSource>(&mut self, m: &Mimalloc<S>, s: &MiStepped, marker: bool) {
        if s.changes.is_empty() {
            return;
        }
        let e = s.index;
        self.step += 1;
        let hb = m.heartbeat();
        let sweep = marker
            || hb != self.heartbeat
            || s.changes
                .iter()
                .any(|c| matches!(c, MiChange::Free { freed, .. } if *freed != MiFreed::LocalFree));
        self.heartbeat = hb;
        if sweep {
            self.segments_born(m, e);
        }
        // the event's own blocks, on pages the page knows
        let mut rules: HashMap<u64, HashMap<u32, u8>> = HashMap::new();
        let mut touched: Vec<u64> = Vec::new();
        for c in &s.changes {
            let (addr, st, rule) = match *c {
                MiChange::Alloc { addr, rule } => (addr, USED, rule.code()),
                MiChange::Free { addr, .. } => (addr, LOCAL, 0),
            };
            let Some((_, p)) = m.page_of(crate::addr::Addr(addr)) else {
                continue;
            };
            if addr < p.start() {
                continue;
            }
            let k = ((addr - p.start()) / p.block_size()) as u32;
            rules.entry(p.start()).or_default().insert(k, rule);
            let start = p.start();
            touched.push(start);
            if let Some(t) = self.pages.get_mut(&start) {
                if (k as usize) < t.states.len() && t.states[k as usize] != st {
                    let inc = t.inc;
                    t.counts[t.states[k as usize] as usize] -= 1;
                    t.counts[st as usize] += 1;
                    t.states[k as usize] = st;
                    self.op(e, st | (rule << 3), u64::from(inc), Some((k, 1)));
                }
            }
        }
        if sweep {
            let step = self.step;
            let live: Vec<&Page> = m.pages().map(|(_, p)| p).collect();
            for p in live {
                self.sync_page(m, p, e, &rules, step);
            }
            self.pages_gone(m, e, step);
        } else {
            for start in touched {
                if let Some((_, p)) = m.page_of(crate::addr::Addr(start)) {
                    self.sync_page(m, p, e, &rules, self.step);
                }
            }
        }
    }

    /// Segments the page does not know yet.
    fn segments_born<S: OsSource>(&mut self, m: &Mimalloc<S>, e: u64) {
        for seg in m.segments() {
            let base = seg.base().0;
            if !self.segs.contains_key(&base) {
                let n = self.meta_segments.len() as u32;
                let arena = match seg.memid() {
                    MemId::Arena { arena, .. } => i64::from(arena),
                    MemId::Os => -1,
                };
                self.meta_segments.push((
                    base,
                    (seg.size() / SLICE_SIZE) as u32,
                    seg.info_slices(),
                    seg.is_huge(),
                    arena,
                ));
                self.segs.insert(base, n);
                self.op(e, 6, u64::from(n), None);
            }
        }
    }

    /// Page `p` as the page shows it: born (or re-made with another block size), and its
    /// blocks diffed when its counts differ from the model's.
    fn sync_page<S: OsSource>(
        &mut self,
        m: &Mimalloc<S>,
        p: &Page,
        e: u64,
        rules: &HashMap<u64, HashMap<u32, u8>>,
        step: u64,
    ) {
        let (start, bs, reserved) = (p.start(), p.block_size(), p.reserved());
        let fresh = match self.pages.get(&start) {
            Some(t) => {
                let g = &self.meta_pages[t.inc as usize];
                g.4 != bs || g.5 != reserved
            }
            None => true,
        };
        if fresh {
            if let Some(old) = self.pages.remove(&start) {
                self.op(e, 5, u64::from(old.inc), None);
            }
            let Some((_, seg)) = m.segment_of(crate::addr::Addr(start)) else {
                return;
            };
            if !self.segs.contains_key(&seg.base().0) {
                self.segments_born(m, e);
            }
            let (first, slices) = p.span();
            let kind = page_kind(bs, slices, seg.is_huge());
            let bin = if kind == "large" || kind == "huge" {
                BIN_HUGE
            } else {
                size_class::bin(bs)
            };
            let inc = self.meta_pages.len() as u32;
            self.meta_pages.push((
                self.segs.get(&seg.base().0).copied().unwrap_or(0),
                first,
                slices,
                start,
                bs,
                reserved,
                bin as u32,
                kind.to_string(),
            ));
            self.op(e, 4, u64::from(inc), None);
            self.pages.insert(
                start,
                Tracked {
                    inc,
                    states: vec![UNCARVED; reserved as usize],
                    counts: [0, 0, 0, reserved],
                    seen: step,
                },
            );
        }
        let Some(t) = self.pages.get_mut(&start) else {
            return;
        };
        t.seen = step;
        let want = [
            p.used(),
            p.free_len(),
            p.local_free_len(),
            reserved - p.capacity(),
        ];
        if want != t.counts {
            let states = block_states(p);
            let none = HashMap::new();
            let r = rules.get(&start).unwrap_or(&none);
            self.set_states(e, start, &states, r);
        }
    }

    /// Pages and segments the model no longer has (after a sweep that saw every live page
    /// at `step`).
    fn pages_gone<S: OsSource>(&mut self, m: &Mimalloc<S>, e: u64, step: u64) {
        // in address order: the maps' own order differs from run to run, the page must not
        let mut gone: Vec<u64> = self
            .pages
            .iter()
            .filter(|(_, t)| t.seen != step)
            .map(|(&a, _)| a)
            .collect();
        gone.sort_unstable();
        for a in gone {
            if let Some(t) = self.pages.remove(&a) {
                self.op(e, 5, u64::from(t.inc), None);
            }
        }
        let alive: Vec<u64> = m.segments().map(|s| s.base().0).collect();
        let mut gone: Vec<(u64, u32)> = self
            .segs
            .iter()
            .filter(|(b, _)| !alive.contains(b))
            .map(|(&b, &n)| (b, n))
            .collect();
        gone.sort_unstable();
        for (b, n) in gone {
            self.segs.remove(&b);
            self.op(e, 7, u64::from(n), None);
        }
    }
}

/// Walks the whole recording at `path` and gathers the page's data; `markers` are request
/// sizes whose first top-level O/M request gets a jump button (besides the recording's
/// stats markers and the peak of live bytes).
///
/// # Errors
/// As [`MiWalk::replay`].
pub fn build(
    path: &Path,
    model: Option<String>,
    markers: &[u64],
    progress: bool,
) -> Result<MiViewData, ReplayError> {
    let mut g = Gather {
        ops: Vec::new(),
        nops: 0,
        last_event: 0,
        segs: HashMap::new(),
        pages: HashMap::new(),
        meta_segments: Vec::new(),
        meta_pages: Vec::new(),
        step: 0,
        heartbeat: 0,
    };
    let mut chart = Charting::new(markers);
    let mut stats_added = false;
    let walk = MiWalk::replay(path, model, progress, |w, s| {
        if !stats_added {
            stats_added = true;
            for &n in w.stats_sizes() {
                chart.add_marker(n);
            }
        }
        let marker = request_size(&s.event.kind).is_some_and(|n| w.stats_sizes().contains(&n));
        chart.event(s.index, &s.event.kind);
        let (live, segs, resident) = on_model!(w, m => {
            g.after(m, s, marker);
            use crate::alloc::Allocator;
            (m.stats().live_bytes, m.segment_bytes(), m.resident_bytes())
        });
        chart.footprint(s.index, live, segs, resident);
        Flow::Next
    })?;
    let model_name = on_model!(walk, m => { use crate::alloc::Allocator; m.name().to_string() });
    Ok(MiViewData {
        meta: MiViewMeta {
            title: walk.name().to_string(),
            model: model_name,
            events: walk.events(),
            layout: Segments {
                how: walk.how().to_string(),
                segments: g.meta_segments,
                pages: g.meta_pages,
                rules: super::mimalloc::MiRule::SHORT
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            },
            chart: chart.finish(),
            ops: g.nops,
        },
        ops: g.ops,
    })
}

/// Whether `walk`'s model has the state the page shows after its last event: every live
/// page's block states (the invariant above), for tests.
pub fn pages_of(walk: &MiWalk) -> Vec<(u64, Vec<u8>)> {
    on_model!(walk, m => {
        let mut v: Vec<(u64, Vec<u8>)> = m
            .pages()
            .map(|(_, p)| {
                (
                    p.start(),
                    block_states(p),
                )
            })
            .collect();
        v.sort();
        v
    })
}

/// The page: HTML, style and script in one file, the data embedded (no network).
pub fn page(data: &MiViewData) -> String {
    super::view::page_of(
        data,
        &["event", "segments", "pages", "live-blocks"],
        include_str!("miview.js"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_through_seven_bit_groups() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
    }
}
