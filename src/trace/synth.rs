//! Synthetic workloads: a long, Python-like stream of requests whose addresses come from a
//! model, so that replaying it through the same model is exact.
//!
//! ```text
//!   live target  ~~~/\/\~~~~/\~~~   a random walk between min_live and max_live blocks
//!   each step:   malloc (size drawn from the class mix) · free (a recent block, or any)
//!                · realloc (grow or shrink a live block) · calloc
//!   sizes:       mostly 16..512 (the small-object classes, 32 bytes the commonest, as in
//!                CPython's ints.trace), a few larger (lists, dict tables, buffers)
//! ```
//! Deterministic: the same seed gives the same events. The live set is bounded, so a
//! replay's memory stays flat however long the stream is.

use super::{Domain, Event, EventKind};
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;

/// A xorshift64* generator (deterministic, no dependencies).
#[derive(Debug, Clone)]
pub struct Rng(u64); // state, never zero

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// A workload generator driving a model.
pub struct Synth<'a> {
    model: &'a mut dyn Allocator,
    rng: Rng,
    live: Vec<(Addr, u64)>, // live blocks: model address, size
    target: u64,            // the live-set size the walk is heading for
    min_live: u64,          // lower bound of the walk
    max_live: u64,          // upper bound of the walk
    line: u64,              // events made (the next event's line - 1)
}

impl<'a> Synth<'a> {
    /// A generator whose live set wanders between `min_live` and `max_live` blocks.
    pub fn new(model: &'a mut dyn Allocator, seed: u64, min_live: u64, max_live: u64) -> Synth<'a> {
        assert!(min_live < max_live);
        Synth {
            model,
            rng: Rng::new(seed),
            live: Vec::new(),
            target: (min_live + max_live) / 2,
            min_live,
            max_live,
            line: 0,
        }
    }

    fn size(&mut self) -> u64 {
        let r = self.rng.below(1000);
        match r {
            0..=549 => 32,                              // ints, small tuples
            550..=699 => 48 + 16 * self.rng.below(3),   // 48..80
            700..=949 => 16 * (1 + self.rng.below(32)), // any small class
            950..=994 => 513 + self.rng.below(4000),    // lists, dict tables
            _ => 8192 + self.rng.below(300_000),        // buffers
        }
    }

    /// The next event, its request already served by the model.
    ///
    /// # Errors
    /// What the model refuses.
    pub fn next_event(&mut self) -> Result<Event, AllocError> {
        if self.rng.below(100_000) == 0 {
            self.target = self.min_live + self.rng.below(self.max_live - self.min_live);
        }
        let n = self.live.len() as u64;
        let want_alloc = if n <= self.min_live {
            true
        } else if n >= self.max_live {
            false
        } else if n < self.target {
            self.rng.below(100) < 60
        } else {
            self.rng.below(100) < 40
        };
        let dom = |size: u64| {
            if size <= 512 {
                Domain::Obj
            } else {
                Domain::Mem
            }
        };
        let kind = if want_alloc {
            let size = self.size();
            if self.rng.below(50) == 0 {
                let (nelem, elsize) = (size / 8 + 1, 8);
                let addr = self.model.calloc(nelem as usize, elsize as usize)?;
                self.live.push((addr, nelem * elsize));
                EventKind::Calloc {
                    domain: dom(nelem * elsize),
                    nelem,
                    elsize,
                    addr,
                }
            } else {
                let addr = self.model.malloc(size as usize)?;
                self.live.push((addr, size));
                EventKind::Malloc {
                    domain: dom(size),
                    size,
                    addr,
                }
            }
        } else {
            // mostly a recent block (LIFO-ish lifetimes), sometimes any
            let i = if self.rng.below(10) < 7 {
                n - 1 - self.rng.below(n.min(64))
            } else {
                self.rng.below(n)
            } as usize;
            if self.rng.below(12) == 0 {
                let (old, osize) = self.live[i];
                let size = if self.rng.below(2) == 0 {
                    osize + osize / 2 + 8
                } else {
                    (osize / 2).max(1)
                };
                let new = self.model.realloc(old, size as usize)?;
                self.live[i] = (new, size);
                EventKind::Realloc {
                    domain: dom(osize.max(size)),
                    old,
                    size,
                    new,
                }
            } else {
                let (addr, size) = self.live.swap_remove(i);
                self.model.free(addr)?;
                EventKind::Free {
                    domain: dom(size),
                    addr,
                }
            }
        };
        self.line += 1;
        Ok(Event {
            kind,
            line: self.line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{model_by_name, replay, ReplayOptions};
    use crate::trace::binary::{BinaryReader, BinaryWriter};
    use crate::trace::TraceHeader;

    #[test]
    fn a_generated_stream_replays_exactly_through_its_own_model() {
        let mut gen_model = model_by_name("glibc-2.36").unwrap();
        let mut g = Synth::new(gen_model.as_mut(), 7, 100, 2000);
        let mut w = BinaryWriter::new(Vec::new(), &TraceHeader::default()).unwrap();
        for _ in 0..50_000 {
            w.write_event(&g.next_event().unwrap()).unwrap();
        }
        let live = g.live.len() as u64;
        let bytes = w.finish().unwrap();
        let mut r = BinaryReader::from_bytes("synth", bytes).unwrap();
        let mut m = model_by_name("glibc-2.36").unwrap();
        let rep = replay(&mut r, m.as_mut(), &ReplayOptions::default()).unwrap();
        assert_eq!(rep.events, 50_000);
        assert_eq!(
            rep.same_address,
            rep.replayed
                - rep.counts.get("f O").copied().unwrap_or(0)
                - rep.counts.get("f M").copied().unwrap_or(0)
        );
        assert_eq!(rep.moved_live, 0);
        assert_eq!(rep.model_stats.live_blocks, live);
        assert_eq!(m.stats(), gen_model.stats());
    }
}
