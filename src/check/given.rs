//! The lower allocator of a replay whose recording logs no raw calls (CPython 2.7's PYREC
//! traces): each fall-through answer is the address on the pymalloc line itself.
//!
//! ```text
//!  trace:   m O 777 55555586a000   request > SMALL_REQUEST_THRESHOLD: glibc's malloc(777)
//!  driver:  GivenRaw.expect = Malloc { size: 777, addr: 55555586a000 }
//!  model:   Pymalloc::malloc(777) -> falls through -> GivenRaw::malloc(777) = 55555586a000
//!           (the expectation is consumed; the driver checks that it was)
//!  model:   new_arena grows the `arenas` vector: realloc(vector, n) -> hidden bump allocator
//! ```
//! A call that is not the expected one (pymalloc's own bookkeeping, which 2.7 does not
//! log) is served by a bump allocator whose addresses are never compared.
//! Invariant: `given` holds exactly the fall-through blocks handed out and not yet freed;
//! `hidden` holds exactly the bookkeeping blocks; a free or realloc of an address in
//! neither is refused as not live.

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use crate::pymalloc::RawCall;
use crate::sysmalloc::Bump;
use std::collections::{HashMap, HashSet};

/// A lower allocator answering the one system call the recording implies for the call
/// being replayed, and serving the calls the recording does not show from a bump allocator.
#[derive(Debug, Clone)]
pub struct GivenRaw {
    /// The system call the recording implies for the pymalloc call being replayed.
    pub expect: Option<RawCall>,
    given: HashMap<u64, u64>, // fall-through address -> bytes asked, of each live block
    hidden: Bump,             // pymalloc's bookkeeping (the `arenas` vector)
    hidden_live: HashSet<u64>, // live bookkeeping blocks
    /// Calls served from the hidden bump allocator (not in the recording).
    pub hidden_calls: u64,
    live_bytes: u64,      // sum of `given` sizes
    peak_live_bytes: u64, // largest live_bytes
}

impl GivenRaw {
    /// An allocator whose hidden blocks are placed from `hidden_base` up (anywhere no
    /// recorded address lies; they are never compared).
    pub fn new(hidden_base: Addr) -> GivenRaw {
        GivenRaw {
            expect: None,
            given: HashMap::new(),
            hidden: Bump::new(hidden_base, 16),
            hidden_live: HashSet::new(),
            hidden_calls: 0,
            live_bytes: 0,
            peak_live_bytes: 0,
        }
    }

    /// True when `addr` is a live fall-through block.
    pub fn is_given(&self, addr: Addr) -> bool {
        self.given.contains_key(&addr.0)
    }

    fn add(&mut self, addr: Addr, size: u64) {
        if let Some(old) = self.given.insert(addr.0, size) {
            self.live_bytes -= old;
        }
        self.live_bytes += size;
        self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
    }

    fn remove(&mut self, addr: Addr) -> bool {
        match self.given.remove(&addr.0) {
            Some(n) => {
                self.live_bytes -= n;
                true
            }
            None => false,
        }
    }

    fn hidden_new(&mut self, r: Result<Addr, AllocError>) -> Result<Addr, AllocError> {
        let a = r?;
        self.hidden_calls += 1;
        self.hidden_live.insert(a.0);
        Ok(a)
    }

    fn not_live(op: &'static str, addr: Addr) -> AllocError {
        AllocError::NotLive {
            op,
            addr,
            model: "given-raw",
        }
    }
}

impl Allocator for GivenRaw {
    fn name(&self) -> &'static str {
        "given-raw"
    }

    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        match self.expect {
            Some(RawCall::Malloc { size: s, addr }) if s == size as u64 => {
                self.expect = None;
                self.add(addr, s);
                Ok(addr)
            }
            _ => {
                let r = self.hidden.malloc(size);
                self.hidden_new(r)
            }
        }
    }

    fn calloc(&mut self, nelem: usize, elsize: usize) -> Result<Addr, AllocError> {
        match self.expect {
            Some(RawCall::Calloc {
                nelem: n,
                elsize: e,
                addr,
            }) if n == nelem as u64 && e == elsize as u64 => {
                self.expect = None;
                self.add(addr, n.saturating_mul(e));
                Ok(addr)
            }
            _ => {
                let r = self.hidden.calloc(nelem, elsize);
                self.hidden_new(r)
            }
        }
    }

    fn realloc(&mut self, old: Addr, size: usize) -> Result<Addr, AllocError> {
        match self.expect {
            Some(RawCall::Realloc {
                old: o,
                size: s,
                addr,
            }) if o == old && s == size as u64 => {
                if !old.is_null() && !self.remove(old) {
                    return Err(Self::not_live("realloc", old));
                }
                self.expect = None;
                if !addr.is_null() {
                    self.add(addr, s);
                }
                Ok(addr)
            }
            _ => {
                if !old.is_null() && !self.hidden_live.remove(&old.0) {
                    return Err(Self::not_live("realloc", old));
                }
                let r = self.hidden.realloc(old, size);
                self.hidden_new(r)
            }
        }
    }

    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() || self.remove(addr) {
            return Ok(());
        }
        if self.hidden_live.remove(&addr.0) {
            return self.hidden.free(addr);
        }
        Err(Self::not_live("free", addr))
    }

    fn stats(&self) -> Stats {
        let h = self.hidden.stats();
        Stats {
            live_bytes: self.live_bytes + h.live_bytes,
            live_blocks: self.given.len() as u64 + h.live_blocks,
            mapped_bytes: 0,
            peak_live_bytes: self.peak_live_bytes + h.peak_live_bytes,
            peak_mapped_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_expected_call_and_hides_the_rest() {
        let mut g = GivenRaw::new(Addr(0x1000));
        g.expect = Some(RawCall::Malloc {
            size: 600,
            addr: Addr(0x5555_0000),
        });
        // A call of another size is bookkeeping: hidden, the expectation stays.
        let v = g.realloc(Addr::NULL, 64).unwrap();
        assert_eq!(g.hidden_calls, 1);
        assert!(g.expect.is_some());
        assert_eq!(g.malloc(600), Ok(Addr(0x5555_0000)));
        assert!(g.expect.is_none() && g.is_given(Addr(0x5555_0000)));
        g.expect = Some(RawCall::Realloc {
            old: Addr(0x5555_0000),
            size: 900,
            addr: Addr(0x6666_0000),
        });
        assert_eq!(g.realloc(Addr(0x5555_0000), 900), Ok(Addr(0x6666_0000)));
        assert!(!g.is_given(Addr(0x5555_0000)) && g.is_given(Addr(0x6666_0000)));
        assert_eq!(g.stats().live_bytes, 900 + 64);
        assert_eq!(g.free(Addr(0x6666_0000)), Ok(()));
        assert!(matches!(
            g.free(Addr(0x6666_0000)),
            Err(AllocError::NotLive { .. })
        ));
        assert_eq!(g.free(v), Ok(()), "a hidden block frees");
        assert!(g.free(Addr(0x7777)).is_err(), "never handed out");
    }
}
