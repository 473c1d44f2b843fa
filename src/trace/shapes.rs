//! Named workload shapes for `pyalloc generate --shape NAME`: the memory behaviours that
//! tell allocators apart, each a seeded, streamed program of phases whose addresses come
//! from a model (as [`synth`](super::synth) does for the random mix).
//!
//! ```text
//!  int-churn   ──╮╭╮╭──╮╭──    a working set of 32-byte objects (ints, floats) churned:
//!                ╰╯╰╯  ╰╯      bursts freed in the order made or at random, made again
//!  dict-waves  ╱|╱|╱|          waves: entries (48–80 B) inserted, the table realloc'd to
//!                               twice its size at 2/3 full, most entries deleted, again
//!  mixed       ╱‾‾╱‾‾╱‾‾       long-lived objects (one in twenty, never freed) among
//!                               short-lived ones freed a few calls later
//!  survivors   ╱‾‾‾‾|__|___    build many small objects in a growing list, free 99 %
//!                               (every 100th survives), free all; a marker request
//!                               (700001, 700101, 700201, 700301 bytes) ends each phase,
//!                               as ../shared/workloads/survivors.py does
//! ```
//! The scale is the number of events asked for: each shape sizes its phases so that the
//! stream ends after exactly that many. Deterministic: the same shape, size and seed give
//! the same events. Memory: the shape's own live set (that is the workload).

use super::synth::Rng;
use super::{Domain, Event, EventKind};
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use std::collections::VecDeque;

/// The shapes, by name, with a line on each (for `--help` and errors).
pub const SHAPES: &[(&str, &str)] = &[
    (
        "int-churn",
        "a working set of 32-byte objects churned in bursts",
    ),
    (
        "dict-waves",
        "entries inserted, the table doubled by realloc, most deleted, in waves",
    ),
    (
        "mixed",
        "long-lived objects (never freed) among short-lived ones",
    ),
    (
        "survivors",
        "build many small objects, free 99% leaving scattered survivors, free all",
    ),
];

/// The marker requests that end the survivors phases (bytearray(n) asks for n + 1).
pub const SURVIVOR_MARKERS: [u64; 4] = [700_001, 700_101, 700_201, 700_301];

/// One shape's generator.
pub struct Shape<'a> {
    model: &'a mut dyn Allocator,
    kind: usize,               // index in SHAPES
    rng: Rng,                  // the seed's stream
    events: u64,               // events asked for
    made: u64,                 // events made
    pending: VecDeque<Step>,   // the current phase's next calls
    live: Vec<(Addr, u64)>,    // the workload's live blocks: model address, size
    list: Option<(Addr, u64)>, // survivors: the growing list (address, bytes)
    phase: u32,                // the phase the shape is in
}

/// A call to make.
#[derive(Debug, Clone, Copy)]
enum Step {
    Malloc(u64),         // a new block of this size
    Free(usize),         // live[i] (swap_remove)
    FreeLast,            // the newest live block
    Realloc(usize, u64), // live[i] to a new size
    Grow,                // survivors: the list grows by 1/8 + 6 slots
    Marker(u64),         // a marker block, freed right after
    FreeList,            // survivors: the list itself is freed
}

impl<'a> Shape<'a> {
    /// The shape named `name`, `events` long, drawing with `seed`, placed by `model`.
    ///
    /// # Errors
    /// An unknown name, with the known ones.
    pub fn new(
        name: &str,
        model: &'a mut dyn Allocator,
        seed: u64,
        events: u64,
    ) -> Result<Shape<'a>, String> {
        let kind = SHAPES.iter().position(|s| s.0 == name).ok_or_else(|| {
            format!(
                "no shape {name:?} (known: {})",
                SHAPES.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
            )
        })?;
        Ok(Shape {
            model,
            kind,
            rng: Rng::new(seed),
            events,
            made: 0,
            pending: VecDeque::new(),
            live: Vec::new(),
            list: None,
            phase: 0,
        })
    }

    /// Events still to make.
    fn left(&self) -> u64 {
        self.events - self.made
    }

    /// Plans the next phase's calls (at least one while events are left).
    fn plan(&mut self) {
        let left = self.left();
        match SHAPES[self.kind].0 {
            "int-churn" => {
                // grow to a working set, then free a burst and make it again
                let target = (self.events / 20).clamp(16, 100_000) as usize;
                if self.live.len() < target {
                    for _ in 0..(target - self.live.len()).min(left as usize) {
                        self.pending.push_back(Step::Malloc(32));
                    }
                } else {
                    let burst = (1 + self.rng.below(target as u64 / 4 + 1)) as usize;
                    let lifo = self.rng.below(2) == 0;
                    for k in 0..burst.min(self.live.len()) {
                        self.pending.push_back(if lifo {
                            Step::FreeLast
                        } else {
                            Step::Free(self.rng.below((self.live.len() - k) as u64) as usize)
                        });
                    }
                }
            }
            "dict-waves" => {
                // a wave: the table (live[0]) and entries; insert until 2/3 full, resize
                if self.live.is_empty() {
                    self.pending.push_back(Step::Malloc(8 * 24 + 64));
                    return;
                }
                let slots = (self.live[0].1 - 64) / 24;
                let entries = self.live.len() as u64 - 1;
                if self.phase % 2 == 0 && entries * 3 < slots * 2 {
                    for _ in 0..((slots * 2 / 3 - entries).max(1)).min(left) {
                        self.pending
                            .push_back(Step::Malloc(48 + 16 * self.rng.below(3)));
                    }
                } else if self.phase % 2 == 0 {
                    self.pending
                        .push_back(Step::Realloc(0, 2 * slots * 24 + 64));
                    if slots >= 1 << 14 {
                        self.phase += 1; // the wave has peaked: delete
                    }
                } else {
                    // delete 90 % of the entries at random, then shrink the table
                    let n = entries * 9 / 10;
                    for k in 0..n {
                        self.pending
                            .push_back(Step::Free(1 + self.rng.below(entries - k) as usize));
                    }
                    self.pending.push_back(Step::Realloc(0, 8 * 24 + 64));
                    self.phase += 1;
                }
            }
            "mixed" => {
                for _ in 0..64.min(left) {
                    let r = self.rng.below(20);
                    if r == 0 {
                        // long-lived: kept at the front of the live set
                        self.pending
                            .push_back(Step::Malloc(16 * (1 + self.rng.below(32))));
                    } else if self.live.len() > 1 && r < 10 {
                        self.pending.push_back(Step::FreeLast);
                    } else {
                        let size = if self.rng.below(50) == 0 {
                            513 + self.rng.below(8000)
                        } else {
                            16 * (1 + self.rng.below(8))
                        };
                        self.pending.push_back(Step::Malloc(size));
                    }
                }
            }
            _ => self.plan_survivors(left),
        }
        if self.pending.is_empty() {
            self.pending.push_back(Step::Malloc(32));
        }
    }

    /// survivors: phase 0 marker; 1 build; 2 marker; 3 free 99 %; 4 marker; 5 free all;
    /// 6 marker; then single churn.
    fn plan_survivors(&mut self, left: u64) {
        // events: N mallocs + ~N/8·(log) grows + 0.99 N frees + 0.01 N frees + 8 marker events
        let n = (self.events.saturating_sub(16) * 10 / 21).max(1);
        match self.phase {
            0 | 2 | 4 | 6 => {
                self.pending
                    .push_back(Step::Marker(SURVIVOR_MARKERS[(self.phase / 2) as usize]));
            }
            1 => {
                // list_resize: when full, grow to n + n/8 + 6 slots (rounded to 4)
                let mut slots = 0u64;
                for i in 0..n.min(left.saturating_sub(8)) {
                    if i + 1 > slots {
                        self.pending.push_back(Step::Grow);
                        slots = grown(slots);
                    }
                    self.pending.push_back(Step::Malloc(24));
                }
            }
            3 => {
                // keep every 100th, in the order they were made
                let mut k = 0usize;
                let total = self.live.len();
                for i in 0..total {
                    if i % 100 != 0 {
                        self.pending.push_back(Step::Free(i - k));
                        k += 1;
                    }
                }
            }
            5 => {
                for _ in 0..self.live.len() {
                    self.pending.push_back(Step::FreeLast);
                }
                self.pending.push_back(Step::FreeList);
            }
            _ => {
                // what is left of the stream: one object made and dropped at a time
                self.pending.push_back(Step::Malloc(24));
                self.pending.push_back(Step::FreeLast);
                return;
            }
        }
        self.phase += 1;
    }

    fn dom(size: u64) -> Domain {
        if size <= 512 {
            Domain::Obj
        } else {
            Domain::Mem
        }
    }

    /// The next event (its call served by the model), `None` after the last.
    ///
    /// # Errors
    /// What the model refuses.
    pub fn next_event(&mut self) -> Result<Option<Event>, AllocError> {
        if self.made >= self.events {
            return Ok(None);
        }
        let kind = loop {
            let step = match self.pending.pop_front() {
                Some(s) => s,
                None => {
                    self.plan();
                    continue;
                }
            };
            match step {
                Step::Malloc(size) => {
                    let addr = self.model.malloc(size as usize)?;
                    self.live.push((addr, size));
                    break EventKind::Malloc {
                        domain: Self::dom(size),
                        size,
                        addr,
                    };
                }
                Step::Marker(size) => {
                    let addr = self.model.malloc(size as usize)?;
                    self.live.push((addr, size));
                    self.pending.push_front(Step::FreeLast);
                    break EventKind::Malloc {
                        domain: Self::dom(size),
                        size,
                        addr,
                    };
                }
                Step::FreeLast | Step::Free(_) => {
                    if self.live.is_empty() {
                        continue;
                    }
                    let i = match step {
                        Step::Free(i) if i < self.live.len() => i,
                        _ => self.live.len() - 1,
                    };
                    // survivors frees in order: keep the live set's order (remove, not swap)
                    let (addr, size) = if SHAPES[self.kind].0 == "survivors" {
                        self.live.remove(i)
                    } else {
                        self.live.swap_remove(i)
                    };
                    self.model.free(addr)?;
                    break EventKind::Free {
                        domain: Self::dom(size),
                        addr,
                    };
                }
                Step::Realloc(i, size) => {
                    let (old, osize) = self.live[i];
                    let new = self.model.realloc(old, size as usize)?;
                    self.live[i] = (new, size);
                    break EventKind::Realloc {
                        domain: Self::dom(osize.max(size)),
                        old,
                        size,
                        new,
                    };
                }
                Step::FreeList => {
                    let Some((addr, size)) = self.list.take() else {
                        continue;
                    };
                    self.model.free(addr)?;
                    break EventKind::Free {
                        domain: Self::dom(size),
                        addr,
                    };
                }
                Step::Grow => {
                    let (old, bytes) = self.list.unwrap_or((Addr::NULL, 0));
                    let size = grown(bytes / 8) * 8;
                    let new = self.model.realloc(old, size as usize)?;
                    self.list = Some((new, size));
                    break EventKind::Realloc {
                        domain: Self::dom(size),
                        old,
                        size,
                        new,
                    };
                }
            }
        };
        self.made += 1;
        Ok(Some(Event {
            kind,
            line: self.made,
        }))
    }
}

/// The slots a full list of `slots` grows to (listobject.c `list_resize` for one more item).
fn grown(slots: u64) -> u64 {
    let n = slots + 1;
    (n + (n >> 3) + 6) & !3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;
    use crate::stack::Route;
    use crate::sysmalloc::glibc::{Glibc, GlibcParams};

    fn glibc() -> Glibc {
        Glibc::new(
            GlibcParams::v2_36_x86_64(),
            Platform::linux_x86_64().address_space(),
        )
    }

    fn events(name: &str, seed: u64, n: u64) -> Vec<Event> {
        let mut m = glibc();
        let mut s = Shape::new(name, &mut m, seed, n).unwrap();
        let mut v = Vec::new();
        while let Some(e) = s.next_event().unwrap() {
            v.push(e);
        }
        v
    }

    #[test]
    fn every_shape_makes_exactly_the_events_asked_for_and_repeats_with_its_seed() {
        for (name, _) in SHAPES {
            let a = events(name, 3, 20_000);
            assert_eq!(a.len(), 20_000, "{name}");
            assert_eq!(a, events(name, 3, 20_000), "{name}");
        }
        assert_ne!(events("int-churn", 3, 5000), events("int-churn", 4, 5000));
        let mut m = glibc();
        assert!(Shape::new("zigzag", &mut m, 1, 10)
            .err()
            .unwrap()
            .contains("int-churn"));
    }

    #[test]
    fn survivors_leaves_one_in_a_hundred_then_nothing() {
        let ev = events("survivors", 1, 30_000);
        let marks: Vec<usize> = ev
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.kind, EventKind::Malloc { size, .. } if SURVIVOR_MARKERS.contains(&size)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(marks.len(), 4);
        // live 24-byte blocks at each marker, counted from the stream itself
        let mut live = std::collections::HashSet::new();
        let mut at = Vec::new();
        for (i, e) in ev.iter().enumerate() {
            match e.kind {
                EventKind::Malloc { size: 24, addr, .. } => {
                    live.insert(addr);
                }
                EventKind::Free { addr, .. } => {
                    live.remove(&addr);
                }
                _ => {}
            }
            if marks.contains(&i) {
                at.push(live.len());
            }
        }
        assert_eq!(at[0], 0);
        assert_eq!(at[2], at[1].div_ceil(100));
        assert_eq!(at[3], 0);
        // the survivors pin pymalloc's pools: after the 99 % free, resident stays high
        let spec = crate::replay::ModelSpec::parse("cpython-3.11/glibc-2.36").unwrap();
        let mut s = spec.stack().unwrap();
        let mut map = std::collections::HashMap::new();
        let mut res = Vec::new();
        for (i, e) in ev.iter().enumerate() {
            match e.kind {
                EventKind::Malloc { size, addr, .. } => {
                    map.insert(addr, s.malloc(Route::Object, size).unwrap());
                }
                EventKind::Realloc { old, size, new, .. } => {
                    let from = if old.is_null() {
                        Addr::NULL
                    } else {
                        map.remove(&old).unwrap()
                    };
                    map.insert(new, s.realloc(Route::Object, from, size).unwrap());
                }
                EventKind::Free { addr, .. } => {
                    s.free(Route::Object, map.remove(&addr).unwrap()).unwrap()
                }
                _ => {}
            }
            if marks.contains(&i) {
                res.push(s.resident());
            }
        }
        let built = res[1] - res[0];
        assert!(res[2] - res[0] > built * 9 / 10, "{res:?}");
    }
}
