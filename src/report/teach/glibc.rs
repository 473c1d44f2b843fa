//! glibc recordings in `map` and `explain`: the brk heap as a strip of chunks, each in use
//! or in its bin, and what one address is and why, read off the glibc 2.36 model
//! (malloc/malloc.c, ptmalloc2's main arena) replayed through the driver to an event.
//!
//! ```text
//!  base                                                                   brk
//!  | tcache_perthread | in use | tcache[1] | in use | unsorted | ... | top |
//!    <rect class="chunk" data-chunk="0x…" data-size="48" data-state="free" data-bin="tcache[1]">
//!  width ~ log2(size): a 32-byte chunk and a 128 KiB top both stay visible
//! ```
//! The numbers are the model's: the free chunks drawn outside the tcache (top included)
//! are `ordblks + smblks` of the model's `mallinfo2()` and their bytes its `fordblks`;
//! the chunks' sizes add up to `brk - base`.

use super::explain::{Explanation, LastEvent, Owner, SizeClass};
use super::walk::At;
use crate::addr::Addr;
use crate::check::CheckOptions;
use crate::replay::{Flow, ReplayError};
use crate::sysmalloc::glibc::{Bin, BinList, ChunkInfo, ChunkState, Glibc, MallInfo, Served};
use crate::trace::EventKind;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

/// The event that last allocated or freed a user pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlibcTouch {
    /// 0-based event index.
    pub event: u64,
    /// 1-based trace line.
    pub line: u64,
    /// True for an allocation (malloc, calloc, realloc's result, memalign …).
    pub alloc: bool,
    /// The path of malloc.c that served it (allocations).
    pub served: Option<Served>,
    /// Bytes asked for (allocations).
    pub size: u64,
    /// The chunk's size when it was handed out (allocations).
    pub chunk: u64,
    /// Where free put it (frees): its chunk's state right after, `None` when it merged
    /// with a free neighbour or top (no chunk starts there any more).
    pub freed_to: Option<(ChunkState, u64)>,
}

/// A glibc recording replayed up to a point.
pub struct GlibcAt {
    /// The model in the state after the point.
    pub model: Glibc,
    /// The event reached (0-based).
    pub event: u64,
    touched: HashMap<u64, GlibcTouch>, // user pointer -> last event
}

/// The bytes a malloc-family call asks for (`--at-marker`).
fn request(kind: &EventKind) -> Option<u64> {
    match *kind {
        EventKind::Malloc { size, .. }
        | EventKind::Realloc { size, .. }
        | EventKind::Memalign { size, .. }
        | EventKind::Valloc { size, .. }
        | EventKind::Pvalloc { size, .. } => Some(size),
        EventKind::Calloc { nelem, elsize, .. } => nelem.checked_mul(elsize),
        _ => None,
    }
}

impl GlibcAt {
    /// Replays the glibc recording at `path` (as `pyalloc check` does: heap addresses
    /// compared, mmapped ones pinned) up to and including the point `at`.
    ///
    /// # Errors
    /// The trace cannot be read; the model refuses a call or diverges from the recording
    /// before the point (the state would not be glibc's); the trace ends first.
    pub fn replay(
        path: &Path,
        model: Option<String>,
        at: At,
        progress: bool,
    ) -> Result<GlibcAt, ReplayError> {
        let opts = CheckOptions {
            model,
            keep_going: false,
            progress,
        };
        let mut index = 0u64;
        let mut reached = None;
        let mut touched: HashMap<u64, GlibcTouch> = HashMap::new();
        let r = crate::check::glibc::replay_until(path, &opts, |m, ev, got| {
            let i = index;
            index += 1;
            let mut touch = |addr: Addr, alloc: bool, size: u64| {
                if addr.is_null() {
                    return;
                }
                let (served, chunk) = if alloc {
                    (Some(m.served()), m.chunk_of(addr).map_or(0, |c| c.1))
                } else {
                    (None, 0)
                };
                let freed_to = if alloc { None } else { m.chunk_of(addr) };
                touched.insert(
                    addr.0,
                    GlibcTouch {
                        event: i,
                        line: ev.line,
                        alloc,
                        served,
                        size,
                        chunk,
                        freed_to,
                    },
                );
            };
            match ev.kind {
                EventKind::Free { addr, .. } => touch(addr, false, 0),
                EventKind::Realloc { old, size, .. } => {
                    if old != got {
                        touch(old, false, 0);
                    }
                    touch(got, true, size);
                }
                k => {
                    if let Some(size) = request(&k) {
                        touch(got, true, size);
                    }
                }
            }
            let hit = match at {
                At::Event(n) => i == n,
                At::Marker(s) => request(&ev.kind) == Some(s),
                At::End => false,
            };
            if hit {
                reached = Some(i);
                Flow::Stop
            } else {
                Flow::Next
            }
        })?;
        if let Some(d) = &r.report.first_divergence {
            return Err(ReplayError::Unsupported(format!(
                "{}: the model diverged from the recording at event {} (line {}) before the point asked for: {}",
                path.display(),
                d.event,
                d.line,
                d.why
            )));
        }
        let event = match (reached, at) {
            (Some(i), _) => i,
            (None, At::End) if index > 0 => index - 1,
            (None, _) => {
                let what = match at {
                    At::Event(n) => format!("no event {n}"),
                    At::Marker(s) => format!("no malloc-family request of {s} bytes"),
                    At::End => "no events".into(),
                };
                return Err(ReplayError::Unsupported(format!(
                    "{}: {what} among its {index} events",
                    path.display()
                )));
            }
        };
        Ok(GlibcAt {
            model: r.model,
            event,
            touched,
        })
    }

    /// The last event that allocated or freed the user pointer `mem`.
    pub fn last_touch(&self, mem: Addr) -> Option<GlibcTouch> {
        self.touched.get(&mem.0).copied()
    }
}

/// What a learner reads about the path that served a request (malloc.c 2.36's order).
pub fn describe(served: Served, m: &Glibc, chunk: u64) -> String {
    let p = m.params();
    match served {
        Served::Tcache => format!(
            "tcache hit: __libc_malloc popped the head of tcache[{}], a chunk of exactly this size freed earlier (LIFO)",
            p.csize2tidx(chunk)
        ),
        Served::Fastbin => format!(
            "fastbin: _int_malloc popped the head of fastbin[{}] (the tcache of this size was empty); the rest of that fastbin moved to the tcache",
            p.fastbin_index(chunk)
        ),
        Served::SmallBin => format!(
            "smallbin exact fit: the oldest chunk of smallbin[{}] (FIFO); the rest of that bin moved to the tcache",
            p.bin_index(chunk)
        ),
        Served::UnsortedExact => "unsorted exact fit: walking the unsorted bin from its oldest chunk, one of exactly this size was taken".into(),
        Served::TcacheStash => format!(
            "unsorted exact fit, through the tcache: exact fits met in the unsorted bin were stashed in tcache[{}] and the newest of them returned",
            p.csize2tidx(chunk)
        ),
        Served::LastRemainder => "split of the last remainder: a small request whose only unsorted chunk was the last remainder of an earlier split; it was split again and the rest stays the last remainder".into(),
        Served::LargeBin => format!(
            "large bin best fit: the smallest chunk of largebin[{}] that fits, split (the remainder to the unsorted bin)",
            p.bin_index(chunk)
        ),
        Served::Binmap => "split of a larger bin's chunk: no bin of this size had one, so the binmap led to the next non-empty bin; its chunk was split, the remainder to the unsorted bin".into(),
        Served::Top => "split of top: no bin had a fit, so the chunk was carved from the start of top".into(),
        Served::Sysmalloc => "sysmalloc grew the heap: top was too small, so sbrk moved the break and the chunk was carved from the grown top".into(),
        Served::Mmap => "mmapped: the request (at least mmap_threshold) got a mapping of its own (sysmalloc_mmap)".into(),
        Served::ReallocInPlace => "realloc in place: the chunk already had room (or was shrunk, its tail freed)".into(),
        Served::ReallocIntoTop => "realloc into top: the chunk was next to top and grew into it".into(),
        Served::ReallocIntoNext => "realloc into the next chunk: the free chunk after it was absorbed".into(),
        Served::Mremap => "mremap: an mmapped chunk resized by the kernel".into(),
        Served::Memalign => "memalign: _int_memalign over-allocated and gave back the misaligned front and the tail".into(),
        Served::Nothing => "nothing served yet".into(),
    }
}

/// What a learner reads about where `free` put a chunk (malloc.c 2.36 `_int_free`).
pub fn describe_free(to: Option<(ChunkState, u64)>, m: &Glibc) -> String {
    let p = m.params();
    match to {
        Some((ChunkState::Tcache, size)) => format!(
            "free: tcache_put pushed it on tcache[{}] (that bin had room: fewer than {} chunks)",
            p.csize2tidx(size),
            p.tcache_count
        ),
        Some((ChunkState::Fast, size)) => format!(
            "free: its tcache bin was full and it is small (at most global_max_fast), so it went on fastbin[{}] unmerged",
            p.fastbin_index(size)
        ),
        Some((ChunkState::Unsorted, _)) => "free: its tcache bin was full (or there is none for this size) and it is too large for a fastbin, so _int_free put it at the head of the unsorted bin (merged with a free chunk after it, if there was one)".into(),
        Some((ChunkState::Top, _)) => "free: it bordered top, so _int_free merged it into top".into(),
        Some((s, _)) => format!("free: left it {s:?}"),
        None => "free: _int_free merged it with a free neighbour (into the unsorted bin, or into top): no chunk starts there any more".into(),
    }
}

/// One chunk cell of the strip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkCell {
    /// The chunk's address.
    pub addr: u64,
    /// `chunksize`.
    pub size: u64,
    /// Where it is.
    pub state: ChunkState,
    /// Its bin and position in it (free chunks).
    pub bin: Option<(Bin, usize)>,
}

impl ChunkCell {
    /// `inuse`, `free` (in a bin, the tcache included) or `top`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            ChunkState::Top => "top",
            ChunkState::InUse => "inuse",
            _ => "free",
        }
    }
}

/// The brk heap at one moment.
#[derive(Debug, Clone)]
pub struct ChunkPicture {
    /// The model's name.
    pub model: String,
    /// The event after which this is the state.
    pub event: u64,
    /// The first chunk's address.
    pub base: u64,
    /// Every chunk, top last.
    pub chunks: Vec<ChunkCell>,
    /// Every non-empty bin.
    pub bins: Vec<BinList>,
    /// Live mmapped chunks (user pointer, mapping length).
    pub mmapped: Vec<(Addr, u64)>,
}

impl ChunkPicture {
    /// Reads the picture off the model.
    pub fn of(m: &Glibc, event: u64) -> ChunkPicture {
        let bins = m.bins();
        let mut where_: HashMap<u64, (Bin, usize)> = HashMap::new();
        for b in &bins {
            for (pos, c) in b.chunks.iter().enumerate() {
                where_.insert(c.0, (b.bin, pos));
            }
        }
        let chunks = m
            .chunks()
            .into_iter()
            .map(|ChunkInfo { addr, size, state }| ChunkCell {
                addr: addr.0,
                size,
                state,
                bin: where_.get(&addr.0).copied(),
            })
            .collect();
        ChunkPicture {
            model: crate::alloc::Allocator::name(m).to_string(),
            event,
            base: m.heap_base().0,
            chunks,
            bins,
            mmapped: m.mmapped_chunks(),
        }
    }

    /// The free chunks `mallinfo2()` counts (bins, fastbins and top; not the tcache):
    /// (count, bytes) — its `ordblks + smblks` and `fordblks`.
    pub fn free_outside_tcache(&self) -> (u64, u64) {
        self.chunks
            .iter()
            .filter(|c| {
                c.state == ChunkState::Top
                    || (c.state != ChunkState::InUse && c.state != ChunkState::Tcache)
            })
            .fold((0, 0), |(n, b), c| (n + 1, b + c.size))
    }
}

const ROW_W: f64 = 1200.0; // strip row width (px)
const ROW_H: f64 = 22.0; // chunk height
const ROW_GAP: f64 = 6.0;

/// The width of a chunk: logarithmic in its size, so small chunks stay visible.
fn width(size: u64, min: u64) -> f64 {
    let r = (size.max(min) as f64 / min as f64).log2();
    (4.0 + 5.0 * r).min(ROW_W)
}

fn colour(state: ChunkState) -> &'static str {
    match state {
        ChunkState::InUse => "#7f9fb0",
        ChunkState::Tcache => "#ffd54a",
        ChunkState::Fast => "#ff9a3c",
        ChunkState::Unsorted => "#c58af0",
        ChunkState::Small => "#6cc56c",
        ChunkState::Large => "#2aa3a3",
        ChunkState::Top => "#f4f4f4",
        _ => "#ffffff",
    }
}

/// The strip as a standalone SVG: every chunk a `<rect class="chunk">` with `data-chunk`,
/// `data-size`, `data-state`, `data-bin` (free chunks and top) and `data-position`; every
/// non-empty bin a `<g class="bin" data-bin data-count data-bytes>` in the table below.
pub fn svg(pic: &ChunkPicture, m: &Glibc) -> String {
    let min = m.params().min_chunk;
    let mut cells = Vec::with_capacity(pic.chunks.len());
    let (mut x, mut row) = (0.0f64, 0u32);
    for c in &pic.chunks {
        let w = width(c.size, min);
        if x + w > ROW_W && x > 0.0 {
            x = 0.0;
            row += 1;
        }
        cells.push((x, row, w));
        x += w;
    }
    let rows = row + 1;
    let strip_top = 58.0;
    let table_top = strip_top + rows as f64 * (ROW_H + ROW_GAP) + 50.0;
    let height = table_top + (pic.bins.len() as f64 + 2.0) * 16.0 + 20.0;
    let mi: MallInfo = m.mallinfo();
    let (inuse, tcache) = pic
        .chunks
        .iter()
        .fold((0u64, 0u64), |(u, t), c| match c.state {
            ChunkState::InUse => (u + 1, t),
            ChunkState::Tcache => (u, t + 1),
            _ => (u, t),
        });
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {height}" width="{w}" height="{height}" font-family="monospace" font-size="12" data-event="{}" data-model="{}" data-chunks="{}">"#,
        pic.event,
        pic.model,
        pic.chunks.len(),
        w = ROW_W + 20.0,
    );
    let _ = writeln!(
        o,
        r#"<text x="4" y="16">{} after event {}: brk heap {:#x}..{:#x} ({} bytes)</text><text x="4" y="32">{} chunks: {inuse} in use, {tcache} in the tcache, {} free in bins and fastbins, top {} bytes; {} mmapped chunks</text>"#,
        pic.model,
        pic.event,
        pic.base,
        pic.base + pic.chunks.iter().map(|c| c.size).sum::<u64>(),
        mi.arena,
        pic.chunks.len(),
        mi.ordblks - 1 + mi.smblks,
        mi.keepcost,
        pic.mmapped.len()
    );
    let _ = writeln!(
        o,
        r#"<text x="4" y="48">mallinfo2: arena {} ordblks {} smblks {} fsmblks {} uordblks {} fordblks {} keepcost {} hblks {} hblkhd {}</text>"#,
        mi.arena,
        mi.ordblks,
        mi.smblks,
        mi.fsmblks,
        mi.uordblks,
        mi.fordblks,
        mi.keepcost,
        mi.hblks,
        mi.hblkhd
    );
    o.push_str("<g class=\"heap\">\n");
    for (c, &(x, row, w)) in pic.chunks.iter().zip(&cells) {
        let y = strip_top + row as f64 * (ROW_H + ROW_GAP);
        let (bin, pos) = match (c.state, c.bin) {
            (ChunkState::Top, _) => (" data-bin=\"top\"".to_string(), String::new()),
            (_, Some((b, p))) => (
                format!(" data-bin=\"{b}\""),
                format!(" data-position=\"{p}\""),
            ),
            _ => (String::new(), String::new()),
        };
        let what = match (c.state, c.bin) {
            (ChunkState::Top, _) => "top".to_string(),
            (_, Some((b, p))) => format!("free in {b}, position {p}"),
            _ => "in use".to_string(),
        };
        let _ = writeln!(
            o,
            r##"<rect class="chunk" data-chunk="{:#x}" data-size="{}" data-state="{}"{bin}{pos} x="{:.1}" y="{y:.1}" width="{:.1}" height="{ROW_H}" fill="{}" stroke="#333" stroke-width="0.5"><title>chunk {:#x} ({} bytes, user pointer {:#x}): {what}</title></rect>"##,
            c.addr,
            c.size,
            c.state_name(),
            10.0 + x,
            w,
            colour(c.state),
            c.addr,
            c.size,
            c.addr + 2 * m.params().size_sz,
        );
    }
    o.push_str("</g>\n");
    let ly = table_top - 30.0;
    for (k, (name, st)) in [
        ("in use", ChunkState::InUse),
        ("tcache", ChunkState::Tcache),
        ("fastbin", ChunkState::Fast),
        ("unsorted", ChunkState::Unsorted),
        ("smallbin", ChunkState::Small),
        ("largebin", ChunkState::Large),
        ("top", ChunkState::Top),
    ]
    .iter()
    .enumerate()
    {
        let lx = 10.0 + k as f64 * 120.0;
        let _ = writeln!(
            o,
            r##"<rect x="{lx}" y="{}" width="12" height="12" fill="{}" stroke="#333" stroke-width="0.5"/><text x="{}" y="{ly}">{name}</text>"##,
            ly - 10.0,
            colour(*st),
            lx + 16.0
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="4" y="{}">width ~ log2(chunk size); bins (position 0 = the next one malloc takes; in a large bin, the smallest):</text>"#,
        table_top - 6.0
    );
    for (k, b) in pic.bins.iter().enumerate() {
        let bytes: u64 = b
            .chunks
            .iter()
            .filter_map(|a| pic.chunks.iter().find(|c| c.addr == a.0))
            .map(|c| c.size)
            .sum();
        let list: Vec<String> = b.chunks.iter().take(6).map(|a| format!("{a}")).collect();
        let more = if b.chunks.len() > 6 { " …" } else { "" };
        let _ = writeln!(
            o,
            r#"<g class="bin" data-bin="{}" data-count="{}" data-bytes="{bytes}"><text x="4" y="{}">{}: {} chunks, {bytes} bytes: {}{more}</text></g>"#,
            b.bin,
            b.chunks.len(),
            table_top + 12.0 + k as f64 * 16.0,
            b.bin,
            b.chunks.len(),
            list.join(" ")
        );
    }
    o.push_str("</svg>\n");
    o
}

/// The strip in an HTML page.
pub fn html(pic: &ChunkPicture, m: &Glibc, title: &str) -> String {
    let hover = "rect.chunk:hover{stroke:#f0f;stroke-width:2}";
    super::map::page(title, pic.event, hover, &svg(pic, m))
}

fn hex(a: u64) -> String {
    format!("{a:#x}")
}

/// Explains `addr` (a user pointer, a chunk address or any byte of the heap) in the
/// state `g` reached.
pub fn explain(g: &GlibcAt, addr: Addr) -> Explanation {
    let m = &g.model;
    let sz = m.params().size_sz;
    let layer = format!("{} ptmalloc2, main arena", crate::alloc::Allocator::name(m));
    let touch = g
        .last_touch(addr)
        .or_else(|| g.last_touch(Addr(addr.0 + 2 * sz)));
    let last_event = touch.map(|t| LastEvent {
        event: t.event,
        line: t.line,
        what: if t.alloc { "alloc" } else { "free" }.into(),
        size: t.size,
    });
    let rule = touch.map(|t| match t.served {
        Some(s) => describe(s, m, t.chunk),
        None => describe_free(t.freed_to, m),
    });
    let blank = Explanation {
        address: hex(addr.0),
        layer: layer.clone(),
        owner_chain: Vec::new(),
        state: "unmanaged".into(),
        free_list_position: None,
        size_class: None,
        last_event: last_event.clone(),
        rule: rule.clone(),
        at_event: Some(g.event),
        bin: None,
        details: Vec::new(),
    };
    if let Some(&(mem, len)) = m
        .mmapped_chunks()
        .iter()
        .find(|(mem, len)| addr.0 >= mem.0 - 2 * sz && addr.0 < mem.0 - 2 * sz + len)
    {
        return Explanation {
            layer: format!("{layer}: mmapped"),
            owner_chain: vec![Owner {
                kind: "mmapped chunk".into(),
                index: 0,
                address: hex(mem.0 - 2 * sz),
                size: len,
            }],
            state: if addr == mem {
                "live".into()
            } else {
                format!("inside the mmapped chunk of {mem}")
            },
            ..blank
        };
    }
    let chunks = m.chunks();
    let k = chunks.partition_point(|c| c.addr.0 <= addr.0);
    let Some(c) = k.checked_sub(1).map(|k| chunks[k]) else {
        return Explanation {
            state: "unmanaged (below the brk heap)".into(),
            ..blank
        };
    };
    let end = c.addr.0 + c.size;
    if addr.0 >= end {
        return Explanation {
            state: "unmanaged (above the break)".into(),
            ..blank
        };
    }
    let bins = m.bins();
    let bin = bins.iter().find_map(|b| {
        b.chunks
            .iter()
            .position(|a| *a == c.addr)
            .map(|p| (b.bin, p))
    });
    let mem = c.addr.0 + 2 * sz;
    let at = if addr.0 == mem {
        String::new()
    } else {
        format!(
            " ({} bytes into the chunk, whose user pointer is {:#x})",
            addr.0 - c.addr.0,
            mem
        )
    };
    let state = match c.state {
        ChunkState::InUse
            if k == 1 && chunks.len() > 1 && c.size == m.params().tcache_struct_chunk =>
        {
            format!("live: glibc's own tcache_perthread_struct{at}")
        }
        ChunkState::InUse => format!("live{at}"),
        ChunkState::Top => format!("top (free, carved from its start){at}"),
        _ => format!("free{at}"),
    };
    Explanation {
        owner_chain: vec![
            Owner {
                kind: "brk heap".into(),
                index: 0,
                address: hex(m.heap_base().0),
                size: m.mallinfo().arena,
            },
            Owner {
                kind: "chunk".into(),
                index: (k - 1) as u64,
                address: hex(c.addr.0),
                size: c.size,
            },
        ],
        state,
        free_list_position: bin.map(|b| b.1 as u64),
        size_class: Some(SizeClass {
            index: m.params().bin_index(c.size) as u32,
            bytes: c.size,
        }),
        bin: match c.state {
            ChunkState::Top => Some("top".into()),
            _ => bin.map(|b| b.0.to_string()),
        },
        ..blank
    }
}
