//! `map`: pymalloc's arenas drawn as rows of pools, each pool a cell coloured by its size
//! class and filled block by block from its occupancy bit vector (obmalloc.c's picture, in
//! SVG); and CPython 2's PyIntBlocks as rows of 41 slots with the free list's chain.
//!
//! ```text
//!  arena 0 @0x7ffff7500000  [##|#.|  |::|..]        one <g class="arena" data-arena="0">
//!                            ^ pool: <g class="pool" data-pool="0x…" data-class="1"
//!                                     data-used="1021" data-state="full|used|empty|untouched">
//!  a block k of pool p is the cell pixel (k % cols, k / cols), dark when live
//! ```
//!
//! The numbers are the model's: per size class, `Σ pools with data-used > 0` and
//! `Σ data-used` equal the "num pools" and "blocks in use" columns of `pyalloc stats`
//! (`_PyObject_DebugMallocStats`) at the same event.

use crate::alloc::Allocator;
use crate::objects::freelist::{BlockType, FreeList};
use crate::pymalloc::{ArenaSource, Pymalloc};
use bitvec::prelude::{BitVec, Lsb0};
use std::fmt::Write;

/// A pool's life stage (obmalloc.c: used / full / empty, plus never carved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolState {
    /// Every block handed out (`count == NUMBLOCKS`): on no list.
    Full,
    /// Some blocks handed out: on `usedpools[szidx]`.
    Used,
    /// Carved, no block in use: on its arena's `freepools`.
    Empty,
    /// Not carved yet (at or above the arena's `pool_address`).
    Untouched,
}

impl PoolState {
    /// The attribute value.
    pub fn name(self) -> &'static str {
        match self {
            PoolState::Full => "full",
            PoolState::Used => "used",
            PoolState::Empty => "empty",
            PoolState::Untouched => "untouched",
        }
    }
}

/// One pool cell.
#[derive(Debug, Clone)]
pub struct PoolCell {
    /// Index in its arena (0 = first pool-aligned pool).
    pub index: u32,
    /// Address.
    pub addr: u64,
    /// Size class (`None`: never used).
    pub szidx: Option<u32>,
    /// Bytes per block.
    pub block_bytes: u64,
    /// Blocks in use (`ref.count`).
    pub used: u32,
    /// `NUMBLOCKS(szidx)`.
    pub nblocks: u32,
    /// Live blocks by index.
    pub live: BitVec<u64, Lsb0>,
    /// Its stage.
    pub state: PoolState,
}

/// One arena row.
#[derive(Debug, Clone)]
pub struct ArenaRow {
    /// `arena_object` slot.
    pub slot: u32,
    /// Base address.
    pub address: u64,
    /// Every pool that fits (`ntotalpools`), carved or not.
    pub pools: Vec<PoolCell>,
}

/// The picture of a pymalloc heap at one moment.
#[derive(Debug, Clone)]
pub struct HeapPicture {
    /// The preset's name.
    pub model: String,
    /// The event after which this is the state.
    pub event: u64,
    /// Size classes of the era.
    pub nclasses: u32,
    /// Mapped arenas, by slot.
    pub arenas: Vec<ArenaRow>,
}

impl HeapPicture {
    /// Reads the picture off a pymalloc model.
    pub fn of<A: Allocator, S: ArenaSource>(m: &Pymalloc<A, S>, event: u64) -> HeapPicture {
        let p = m.params();
        let mut arenas = Vec::new();
        for (slot, a) in m.arenas().iter().enumerate() {
            if a.address == 0 {
                continue;
            }
            let carved = m.carved_pools(slot as u32);
            let pools = (0..a.ntotalpools)
                .map(|i| {
                    let addr = a.first_pool + i as u64 * p.pool_size();
                    if i >= carved {
                        return PoolCell {
                            index: i,
                            addr,
                            szidx: None,
                            block_bytes: 0,
                            used: 0,
                            nblocks: 0,
                            live: BitVec::new(),
                            state: PoolState::Untouched,
                        };
                    }
                    let id = m.pool_id(slot as u32, i);
                    let pool = m.pools()[id as usize];
                    let szidx = (pool.szidx != crate::pymalloc::pool::DUMMY_SIZE_IDX)
                        .then_some(pool.szidx as u32);
                    let nblocks = szidx.map_or(0, |s| p.blocks_per_pool(s));
                    let state = if pool.count == 0 {
                        PoolState::Empty
                    } else if pool.count == nblocks {
                        PoolState::Full
                    } else {
                        PoolState::Used
                    };
                    PoolCell {
                        index: i,
                        addr,
                        szidx,
                        block_bytes: szidx.map_or(0, |s| p.class_size(s)),
                        used: pool.count,
                        nblocks,
                        live: m.occupancy(id),
                        state,
                    }
                })
                .collect();
            arenas.push(ArenaRow {
                slot: slot as u32,
                address: a.address,
                pools,
            });
        }
        HeapPicture {
            model: p.name.to_string(),
            event,
            nclasses: m.nclasses(),
            arenas,
        }
    }

    /// Per size class: (pools in use, blocks in use), the "num pools" and "blocks in use"
    /// columns of `_PyObject_DebugMallocStats`.
    pub fn per_class(&self) -> Vec<(u32, u64, u64)> {
        let mut v = vec![(0u64, 0u64); self.nclasses as usize];
        for c in self.arenas.iter().flat_map(|a| &a.pools) {
            if let (Some(s), true) = (c.szidx, c.used > 0) {
                v[s as usize].0 += 1;
                v[s as usize].1 += c.used as u64;
            }
        }
        v.into_iter()
            .enumerate()
            .filter(|(_, (p, _))| *p > 0)
            .map(|(i, (p, b))| (i as u32, p, b))
            .collect()
    }
}

/// The colour of size class `s`: hues spread by the golden angle so neighbours differ.
pub fn class_hue(s: u32) -> u32 {
    (s * 137 + 200) % 360
}

const CELL: u64 = 32; // pool cell side (px)
const GAP: u64 = 4; // between cells
const LABEL: u64 = 280; // arena label column
const ROW: u64 = CELL + GAP;

/// The picture as a standalone SVG (every pool a `<g>` with its data attributes).
pub fn svg(pic: &HeapPicture) -> String {
    let cols = pic.arenas.iter().map(|a| a.pools.len()).max().unwrap_or(0) as u64;
    let classes = pic.per_class();
    let legend_rows = 2 + classes.len().div_ceil(6) as u64;
    let width = LABEL + cols * (CELL + GAP) + 10;
    let height = 40 + pic.arenas.len() as u64 * ROW + legend_rows * 18 + 20;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="monospace" font-size="12" data-event="{}" data-model="{}">"#,
        pic.event, pic.model
    );
    let _ = writeln!(
        o,
        r#"<text x="4" y="16">{} after event {}: {} arenas, {} pools in use, {} blocks in use</text>"#,
        pic.model,
        pic.event,
        pic.arenas.len(),
        classes.iter().map(|c| c.1).sum::<u64>(),
        classes.iter().map(|c| c.2).sum::<u64>()
    );
    for (row, a) in pic.arenas.iter().enumerate() {
        let y = 30 + row as u64 * ROW;
        let used = a.pools.iter().filter(|p| p.used > 0).count();
        let _ = writeln!(
            o,
            r#"<g class="arena" data-arena="{}" data-address="{:#x}"><text x="4" y="{}">arena {} {:#x} ({used} used)</text>"#,
            a.slot,
            a.address,
            y + CELL / 2 + 4,
            a.slot,
            a.address
        );
        for p in &a.pools {
            pool_svg(&mut o, p, LABEL + p.index as u64 * (CELL + GAP), y);
        }
        o.push_str("</g>\n");
    }
    let mut y = 40 + pic.arenas.len() as u64 * ROW;
    let _ = writeln!(
        o,
        r##"<text x="4" y="{y}">pool border: thick = full, thin = used, dashed = empty (on freepools), grey = never carved; dark pixels = live blocks</text>"##
    );
    y += 18;
    for (k, (s, pools, blocks)) in classes.iter().enumerate() {
        let x = 4 + (k % 6) as u64 * 300;
        let yy = y + (k / 6) as u64 * 18;
        let _ = writeln!(
            o,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="hsl({},65%,40%)"/><text x="{}" y="{}">class {s}: {pools} pools, {blocks} blocks</text>"#,
            yy - 10,
            class_hue(*s),
            x + 16,
            yy
        );
    }
    o.push_str("</svg>\n");
    o
}

fn pool_svg(o: &mut String, p: &PoolCell, x: u64, y: u64) {
    let (fill, stroke, extra) = match (p.state, p.szidx) {
        (PoolState::Untouched, _) | (_, None) => ("#f2f2f2".to_string(), "#ccc".to_string(), ""),
        (st, Some(s)) => {
            let h = class_hue(s);
            (
                format!("hsl({h},60%,92%)"),
                match st {
                    PoolState::Full => "#000".to_string(),
                    PoolState::Empty => "#888".to_string(),
                    _ => format!("hsl({h},65%,40%)"),
                },
                match st {
                    PoolState::Full => r#" stroke-width="2""#,
                    PoolState::Empty => r#" stroke-dasharray="3 2""#,
                    _ => "",
                },
            )
        }
    };
    let _ = write!(
        o,
        r#"<g class="pool" data-pool="{:#x}" data-class="{}" data-used="{}" data-blocks="{}" data-state="{}"><title>pool {:#x}: {}</title><rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}" stroke="{stroke}"{extra}/>"#,
        p.addr,
        p.szidx.map_or(String::new(), |s| s.to_string()),
        p.used,
        p.nblocks,
        p.state.name(),
        p.addr,
        match p.szidx {
            Some(s) => format!(
                "class {s} ({} bytes), {} of {} blocks in use, {}",
                p.block_bytes,
                p.used,
                p.nblocks,
                p.state.name()
            ),
            None => p.state.name().to_string(),
        }
    );
    if let (Some(s), true) = (p.szidx, p.used > 0) {
        // Blocks on a grid of `cols` columns; runs of live blocks in a row as one rectangle.
        let cols = (p.nblocks as f64).sqrt().ceil().max(1.0) as usize;
        let px = CELL as f64 / cols as f64;
        let mut d = String::new();
        let n = p.nblocks as usize;
        for r in 0..n.div_ceil(cols) {
            let row = &p.live[r * cols..((r + 1) * cols).min(n)];
            let mut c = 0;
            while c < row.len() {
                if !row[c] {
                    c += 1;
                    continue;
                }
                let start = c;
                while c < row.len() && row[c] {
                    c += 1;
                }
                let _ = write!(
                    d,
                    "M{:.2} {:.2}h{:.2}v{:.2}h-{:.2}z",
                    x as f64 + start as f64 * px,
                    y as f64 + r as f64 * px,
                    (c - start) as f64 * px,
                    px,
                    (c - start) as f64 * px
                );
            }
        }
        let _ = write!(o, r#"<path d="{d}" fill="hsl({},65%,40%)"/>"#, class_hue(s));
    }
    o.push_str("</g>\n");
}

/// The picture in an HTML page (the SVG inline, hover titles on every pool).
pub fn html(pic: &HeapPicture, title: &str) -> String {
    page(
        title,
        pic.event,
        "g.pool:hover rect{stroke:#f0f;stroke-width:3}",
        &svg(pic),
    )
}

/// A map's HTML page, whatever the heap: `svg`, the picture after event `event`, under
/// the heading `title`; `hover`, the CSS rule that outlines the part under the pointer.
pub(crate) fn page(title: &str, event: u64, hover: &str, svg: &str) -> String {
    let title = escape(title);
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:monospace}} {hover}</style>\
         </head><body data-event=\"{event}\">\n<h1>{title}</h1>\n{svg}</body></html>\n"
    )
}

/// Escapes text for HTML (the one escape of every report: the SVG charts' too).
pub use crate::report::svg::escape;

/// CPython 2's PyIntBlocks (or PyFloatBlocks) as rows of slots, live dark, with the free
/// list's first links drawn as arrows from slot to slot.
pub fn freelist_svg<A: Allocator, T: BlockType>(fl: &FreeList<A, T>, title: &str) -> String {
    let l = *fl.layout();
    let n = l.n_objects as u64;
    let live: std::collections::HashSet<u64> = fl.live_addrs().map(|a| a.0).collect();
    let blocks: Vec<_> = fl.block_list().collect();
    let mut bases: Vec<_> = blocks.clone();
    bases.sort();
    let slot_w = 22u64;
    let width = 200 + n * slot_w + 20;
    let height = 50 + bases.len() as u64 * 40 + 40;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="monospace" font-size="11">"#
    );
    let _ = writeln!(
        o,
        r##"<defs><marker id="arrow" viewBox="0 0 6 6" refX="5" refY="3" markerWidth="5" markerHeight="5" orient="auto"><path d="M0 0L6 3L0 6z" fill="#c00"/></marker></defs><text x="4" y="14">{}: {} {} of {} slots, {} bytes each, at base + {} + {}·k</text>"##,
        escape(title),
        blocks.len(),
        T::BLOCK_NAME,
        n,
        l.object_size,
        l.objects_offset,
        l.object_size
    );
    // Block number = order of creation, which is the order of `blocks` reversed
    // (block_list is newest first until ClearFreeList reorders it).
    let pos_of = |addr: u64| -> Option<(u64, u64)> {
        bases.iter().enumerate().find_map(|(row, &b)| {
            let off = addr.checked_sub(b.0 + l.objects_offset)?;
            (off < n * l.object_size).then(|| (row as u64, off / l.object_size))
        })
    };
    for (row, b) in bases.iter().enumerate() {
        let y = 30 + row as u64 * 40;
        let _ = writeln!(
            o,
            r#"<g class="intblock" data-block="{:#x}"><text x="4" y="{}">{} {:#x}</text>"#,
            b.0,
            y + 14,
            T::BLOCK_NAME,
            b.0
        );
        for k in 0..n {
            let addr = b.0 + l.objects_offset + k * l.object_size;
            let live = live.contains(&addr);
            let _ = writeln!(
                o,
                r##"<rect class="slot" data-slot="{k}" data-addr="{addr}" data-live="{}" x="{}" y="{y}" width="{}" height="20" fill="{}" stroke="#555"><title>objects[{k}] = {addr:#x} ({})</title></rect>"##,
                live as u8,
                200 + k * slot_w,
                slot_w - 2,
                if live { "#2a6" } else { "#eee" },
                if live { "live" } else { "free" }
            );
        }
        o.push_str("</g>\n");
    }
    let free: Vec<_> = fl.free_addrs().take(64).collect();
    let centre = |(row, k): (u64, u64)| (200 + k * slot_w + (slot_w - 2) / 2, 30 + row * 40 + 10);
    if let Some(&h) = free.first() {
        if let Some(p) = pos_of(h.0) {
            let (x, y) = centre(p);
            let _ = writeln!(
                o,
                r##"<text x="{}" y="{}" fill="#c00">free_list</text>"##,
                x.saturating_sub(20),
                y + 22
            );
        }
    }
    for w in free.windows(2) {
        if let (Some(a), Some(b)) = (pos_of(w[0].0), pos_of(w[1].0)) {
            let ((x1, y1), (x2, y2)) = (centre(a), centre(b));
            let _ = writeln!(
                o,
                r##"<path class="link" d="M{x1} {y1}Q{} {} {x2} {y2}" fill="none" stroke="#c00" marker-end="url(#arrow)"/>"##,
                (x1 + x2) / 2,
                y1.min(y2).saturating_sub(14)
            );
        }
    }
    let _ = writeln!(
        o,
        r##"<text x="4" y="{}">green = live object, grey = free slot; red arrows: the free list from its head (first {} links)</text>"##,
        height - 12,
        free.len().saturating_sub(1)
    );
    o.push_str("</svg>\n");
    o
}
