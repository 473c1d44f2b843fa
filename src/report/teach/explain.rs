//! `explain`: what is at an address and why, read off the models' own state.
//!
//! ```text
//!  pymalloc (CPython 3 recording, obmalloc.c):
//!    arena slot 3 @0x7fff76f00000 -> pool 12 @0x7fff76f34000 (class 1, 32 B) -> block 17
//!    state: live | free (position 4 in the pool's free list) | untouched (>= nextoffset)
//!  int free list (CPython 2, intobject.c):
//!    malloc(992) block @base -> PyIntBlock 1 -> slot 40 (objects[40] = base + 8 + 24*40)
//! ```
//!
//! Block index `k` of a pymalloc address `a` in pool `p` of class size `s`:
//! `a == p + POOL_OVERHEAD + k * s`; pool index `i` in arena `A`:
//! `p == align_up(A, POOL_SIZE) + i * POOL_SIZE`.

use super::walk::{Rule, Touch, Walk};
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::interp::{IntKind, Interpreter, Py2, Py3, PyError};
use serde::Serialize;
use std::fmt::Write;

/// One owner in the chain from the largest region down to the object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// What it is: `arena`, `pool`, `block`, `malloc block`, `PyIntBlock`, `slot`.
    pub kind: String,
    /// Its number among its kind (arena slot, pool index in its arena, block index in its
    /// pool, PyIntBlock number, `k` of `objects[k]`).
    pub index: u64,
    /// Its address, hex.
    pub address: String,
    /// Its size in bytes (for a malloc block: how far apart the system allocator put it
    /// and its neighbour, its header and rounding included).
    pub size: u64,
}

/// A size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SizeClass {
    /// `szidx` (for a free list: 0, its one object size).
    pub index: u32,
    /// Bytes per block.
    pub bytes: u64,
}

/// The event that last allocated or freed a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastEvent {
    /// 0-based event index in the trace (or in the model's own history).
    pub event: u64,
    /// 1-based trace line (0 without a trace).
    pub line: u64,
    /// `alloc` or `free`.
    pub what: String,
    /// Bytes asked for (allocations).
    pub size: u64,
}

/// Everything `explain` says about one address (`--json` prints this).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// The address, hex.
    pub address: String,
    /// The layer that owns it: `pymalloc 3.11`, `raw allocator`, `int free list` …
    pub layer: String,
    /// Largest region first.
    pub owner_chain: Vec<Owner>,
    /// `live`, `free`, `untouched` (a block never handed out), `not a block start`,
    /// `unmanaged`.
    pub state: String,
    /// 0-based position in its free list (0 = head) when free.
    pub free_list_position: Option<u64>,
    /// Its size class.
    pub size_class: Option<SizeClass>,
    /// The event that last allocated or freed it.
    pub last_event: Option<LastEvent>,
    /// The rule that chose it, when it was last allocated.
    pub rule: Option<String>,
    /// The event after which this is the state (`None` for a model's own start-up state).
    pub at_event: Option<u64>,
    /// The bin a free glibc chunk is in (`tcache[3]`, `fastbin[1]`, `unsorted`,
    /// `smallbin[5]`, `largebin[70]`) or `top`; absent for pymalloc and the free lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin: Option<String>,
    /// More about the owners, one line each (mimalloc: the segment's slices, the page's
    /// lists and counts); absent when there is nothing more.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl Explanation {
    /// The explanation of `addr` in `layer` at event `at_event` with nothing said yet
    /// beyond its last event and rule: the rest is filled in by the caller.
    pub fn blank(
        addr: Addr,
        layer: String,
        last_event: Option<LastEvent>,
        rule: Option<String>,
        at_event: u64,
    ) -> Explanation {
        Explanation {
            address: hex(addr.0),
            layer,
            owner_chain: Vec::new(),
            state: String::new(),
            free_list_position: None,
            size_class: None,
            last_event,
            rule,
            at_event: Some(at_event),
            bin: None,
            details: Vec::new(),
        }
    }

    /// The text a learner reads.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "{} ({})", self.address, self.layer);
        if let Some(e) = self.at_event {
            let _ = writeln!(o, "  state after event {e}");
        }
        for (depth, w) in self.owner_chain.iter().enumerate() {
            let _ = writeln!(
                o,
                "  {}{} {} at {} ({} bytes)",
                "  ".repeat(depth),
                w.kind,
                w.index,
                w.address,
                w.size
            );
        }
        for d in &self.details {
            let _ = writeln!(o, "  {d}");
        }
        if let Some(c) = self.size_class {
            let _ = writeln!(o, "  size class {} ({} bytes)", c.index, c.bytes);
        }
        let _ = match (&self.bin, self.free_list_position) {
            (Some(b), Some(p)) => writeln!(
                o,
                "  {} in {b}, position {p} (0 = the next one malloc takes; in a large bin, the smallest)",
                self.state
            ),
            (Some(b), None) => writeln!(o, "  {} ({b})", self.state),
            (None, Some(p)) => writeln!(
                o,
                "  {}, position {p} in its free list (0 = head)",
                self.state
            ),
            (None, None) => writeln!(o, "  {}", self.state),
        };
        if let Some(e) = &self.last_event {
            let _ = if e.line > 0 {
                writeln!(
                    o,
                    "  last {}: event {} (line {}){}",
                    e.what,
                    e.event,
                    e.line,
                    if e.what == "alloc" {
                        format!(", {} bytes", e.size)
                    } else {
                        String::new()
                    }
                )
            } else {
                writeln!(o, "  last {}: event {}", e.what, e.event)
            };
        }
        if let Some(r) = &self.rule {
            let _ = writeln!(o, "  rule: {r}");
        }
        o
    }
}

fn hex(a: u64) -> String {
    format!("{a:#x}")
}

/// Explains `addr` in the state `walk` has reached.
pub fn explain_in_walk(walk: &mut Walk, addr: Addr, at_event: u64) -> Explanation {
    let touch = walk.last_touch(addr);
    let model = walk.model_mut();
    let params = model.params().clone();
    let layer = format!("pymalloc {}", params.name);
    let last_event = touch.map(last_event);
    let rule = touch.and_then(|t| t.rule).map(|r| r.describe());
    let Some(info) = model.block_info(addr) else {
        return Explanation {
            address: hex(addr.0),
            layer: "raw allocator (a fall-through: in no arena)".into(),
            owner_chain: Vec::new(),
            state: "unmanaged".into(),
            free_list_position: None,
            size_class: None,
            last_event,
            rule: rule.or(Some(Rule::FallThrough.describe())),
            at_event: Some(at_event),
            bin: None,
            details: Vec::new(),
        };
    };
    let slot = model
        .arenas()
        .iter()
        .position(|a| a.address == info.arena.0)
        .unwrap_or(0) as u32;
    let a = model.arenas()[slot as usize];
    let pool_index = (info.pool.0 - a.first_pool) / params.pool_size();
    let mut chain = vec![
        Owner {
            kind: "arena".into(),
            index: slot as u64,
            address: hex(a.address),
            size: params.arena_size(),
        },
        Owner {
            kind: "pool".into(),
            index: pool_index,
            address: hex(info.pool.0),
            size: params.pool_size(),
        },
    ];
    let Some(szidx) = info.szidx else {
        return Explanation {
            owner_chain: chain,
            state: "in a pool never used (no size class yet)".into(),
            ..Explanation::blank(addr, layer, last_event, rule, at_event)
        };
    };
    let bytes = params.class_size(szidx);
    let off = addr.0 - info.pool.0;
    let overhead = params.pool_overhead();
    let (state, pos) = if off < overhead {
        ("pool header".to_string(), None)
    } else {
        let k = (off - overhead) / bytes;
        let start = info.pool.0 + overhead + k * bytes;
        chain.push(Owner {
            kind: "block".into(),
            index: k,
            address: hex(start),
            size: bytes,
        });
        let (_, id) = model.pool_of(addr).expect("block_info found a carved pool");
        let free = model.free_list(id);
        let pos = free.iter().position(|b| b.0 == start).map(|p| p as u64);
        let state = if start != addr.0 {
            format!("inside block {k} ({} bytes in)", addr.0 - start)
        } else if info.live {
            "live".into()
        } else if pos.is_some() {
            "free".into()
        } else if start >= info.pool.0 + info.nextoffset as u64 {
            "untouched (at or above nextoffset: never handed out)".into()
        } else {
            "free".into()
        };
        (state, pos)
    };
    Explanation {
        address: hex(addr.0),
        layer,
        owner_chain: chain,
        state,
        free_list_position: pos,
        size_class: Some(SizeClass {
            index: szidx,
            bytes,
        }),
        last_event,
        rule,
        at_event: Some(at_event),
        bin: None,
        details: Vec::new(),
    }
}

fn last_event(t: Touch) -> LastEvent {
    LastEvent {
        event: t.event,
        line: t.line,
        what: if t.alloc { "alloc" } else { "free" }.into(),
        size: t.size,
    }
}

/// Explains `id(value)` in CPython 3.11 (the static small-int array).
///
/// # Errors
/// A value outside the cache (a `PyLongObject` from pymalloc, not placed by this facade).
pub fn explain_int_py3(py: &mut Py3, value: i64) -> Result<Explanation, PyError> {
    let o = py.int(value)?;
    let detail = py.explain(&o);
    Ok(Explanation {
        address: hex(o.addr.0),
        layer: "small-int array (CPython 3.11)".into(),
        owner_chain: Vec::new(),
        state: "live (immortal)".into(),
        free_list_position: None,
        size_class: None,
        last_event: None,
        rule: Some(detail),
        at_event: None,
        bin: None,
        details: Vec::new(),
    })
}

/// Explains `id(value)` in a CPython 2 interpreter `py` (the int free list's PyIntBlocks).
///
/// # Errors
/// A value the model does not place (a long), or the model's refusal.
pub fn explain_int<A: Allocator, O>(
    py: &mut Py2<A, O>,
    value: i64,
) -> Result<Explanation, PyError> {
    let o = py.int(value)?;
    let layout = *py.ints().layout();
    let detail = py.explain(&o);
    if o.kind == IntKind::Long {
        return Err(PyError::NotModelled(format!(
            "{value} is a long on {}: it lives in pymalloc, not in a PyIntBlock",
            py.platform().name
        )));
    }
    let heap = py.heap().name();
    let w = py
        .ints_mut()
        .whereabouts(o.addr)
        .ok_or_else(|| PyError::NotModelled(format!("{} is in no PyIntBlock", o.addr)))?;
    // How far apart the system allocator put this block and its neighbour: 992 bytes on
    // macOS (tiny quanta, no header), 1008 with glibc (a chunk header, 16-byte rounding).
    let mut bases: Vec<u64> = py.ints().block_list().map(|a| a.0).collect();
    bases.sort_unstable();
    let i = bases.iter().position(|&b| b == w.base.0).unwrap_or(0);
    let spacing = match (bases.get(i + 1), i.checked_sub(1).map(|j| bases[j])) {
        (Some(&next), _) => Some(next - w.base.0),
        (None, Some(prev)) => Some(w.base.0 - prev),
        _ => None,
    };
    let fresh = w.k == layout.n_objects - 1;
    let rule = if fresh {
        format!(
            "fill_free_list: the free list was empty, so a new PyIntBlock was malloc'd ({} bytes) and its objects[{}] became the head (a fresh block is threaded from the top down, objects[{}] first)",
            layout.block_size,
            layout.n_objects - 1,
            layout.n_objects - 1
        )
    } else {
        format!("free-list head: PyInt_FromLong popped the head ({detail})")
    };
    let pops = match o.kind {
        IntKind::Small => Some(value + 5),
        _ => None,
    };
    Ok(Explanation {
        address: hex(o.addr.0),
        layer: format!("int free list (CPython 2.7 intobject.c) over {heap}"),
        owner_chain: vec![
            Owner {
                kind: format!("malloc block ({heap})"),
                index: w.block as u64,
                address: hex(w.base.0),
                size: spacing.unwrap_or(layout.block_size),
            },
            Owner {
                kind: "PyIntBlock".into(),
                index: w.block as u64,
                address: hex(w.base.0),
                size: layout.block_size,
            },
            Owner {
                kind: "slot".into(),
                index: w.k as u64,
                address: hex(o.addr.0),
                size: layout.object_size,
            },
        ],
        state: if w.live { "live" } else { "free" }.into(),
        free_list_position: None,
        size_class: Some(SizeClass {
            index: 0,
            bytes: layout.object_size,
        }),
        last_event: pops.map(|p| LastEvent {
            event: p as u64,
            line: 0,
            what: "alloc (_PyInt_Init's PyInt_FromLong pop, 0-based)".into(),
            size: layout.object_size,
        }),
        rule: Some(rule),
        at_event: None,
        bin: None,
        details: Vec::new(),
    })
}
