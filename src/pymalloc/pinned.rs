//! A lower allocator whose answers are pinned from a recording: the raw calls nested in
//! an O/M call (`m r`, `c r`, `r r` lines: fall-throughs of requests of 0 or more than
//! `SMALL_REQUEST_THRESHOLD` bytes, growth of the `arenas` vector, radix-tree nodes).
//!
//! ```text
//!  trace:  m r 777 55555586a000      <- pushed on `pending` by the replay driver
//!          m O 777 55555586a000      <- replayed: Pymalloc falls through -> PinnedRaw::malloc
//! ```
//! Each call the model makes must be the next pending one, of the same kind and size: the
//! model is thereby held to CPython's own sequence of raw calls. Invariant:
//! `live` holds exactly the addresses handed out and not yet freed.

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use crate::sysmalloc::Bump;
use std::collections::{HashMap, VecDeque};

/// What kind of raw call a recorded nested line was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawCall {
    /// `malloc(size) = addr`.
    Malloc {
        /// Bytes asked.
        size: u64,
        /// Address returned.
        addr: Addr,
    },
    /// `calloc(nelem, elsize) = addr`.
    Calloc {
        /// Elements.
        nelem: u64,
        /// Bytes per element.
        elsize: u64,
        /// Address returned.
        addr: Addr,
    },
    /// `realloc(old, size) = addr`.
    Realloc {
        /// Block given.
        old: Addr,
        /// Bytes asked.
        size: u64,
        /// Address returned.
        addr: Addr,
    },
}

/// The pinned raw allocator.
#[derive(Debug, Clone, Default)]
pub struct PinnedRaw {
    /// Raw calls recorded inside the call being replayed, in order.
    pub pending: VecDeque<RawCall>,
    live: HashMap<u64, u64>, // address -> bytes of each live raw block
    live_bytes: u64,         // sum of `live` sizes
    peak_live_bytes: u64,    // largest live_bytes seen
    own: Option<Bump>,       // own-address mode: answers come from this bump allocator
}

const MISMATCH: AllocError = AllocError::Corrupt {
    message: "the model's raw call is not the recording's next nested raw call",
    addr: Addr::NULL,
    model: "pinned-raw",
};

impl PinnedRaw {
    /// An empty pinned allocator.
    pub fn new() -> PinnedRaw {
        PinnedRaw::default()
    }

    /// An allocator in own-address mode: every call is answered by `bump` (the recording's
    /// nested calls are ignored), for replays whose fall-through addresses are the model's.
    pub fn own(bump: Bump) -> PinnedRaw {
        PinnedRaw {
            own: Some(bump),
            ..PinnedRaw::default()
        }
    }

    /// True in own-address mode.
    pub fn is_own(&self) -> bool {
        self.own.is_some()
    }

    /// Records a block the process got from the raw domain outside pymalloc (a top-level
    /// `R` line), so that a later pymalloc free of it is known.
    pub fn adopt(&mut self, addr: Addr, size: u64) {
        if !addr.is_null() {
            self.add(addr, size);
        }
    }

    /// Forgets a block freed outside pymalloc (a top-level `f R` line).
    pub fn release(&mut self, addr: Addr) {
        if let Some(n) = self.live.remove(&addr.0) {
            self.live_bytes -= n;
        }
    }

    /// True when `addr` is a live raw block.
    pub fn is_live(&self, addr: Addr) -> bool {
        self.live.contains_key(&addr.0)
    }

    fn add(&mut self, addr: Addr, size: u64) {
        if let Some(old) = self.live.insert(addr.0, size) {
            self.live_bytes -= old;
        }
        self.live_bytes += size;
        self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
    }

    fn next(&mut self) -> Result<RawCall, AllocError> {
        self.pending.pop_front().ok_or(MISMATCH)
    }
}

impl Allocator for PinnedRaw {
    fn name(&self) -> &'static str {
        "pinned-raw"
    }

    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        if let Some(b) = &mut self.own {
            return b.malloc(size);
        }
        match self.next()? {
            RawCall::Malloc { size: s, addr } if s == size as u64 => {
                self.add(addr, s);
                Ok(addr)
            }
            _ => Err(MISMATCH),
        }
    }

    fn calloc(&mut self, nelem: usize, elsize: usize) -> Result<Addr, AllocError> {
        if let Some(b) = &mut self.own {
            return b.calloc(nelem, elsize);
        }
        match self.next()? {
            RawCall::Calloc {
                nelem: n,
                elsize: e,
                addr,
            } if n == nelem as u64 && e == elsize as u64 => {
                self.add(addr, n.saturating_mul(e));
                Ok(addr)
            }
            _ => Err(MISMATCH),
        }
    }

    fn realloc(&mut self, old: Addr, size: usize) -> Result<Addr, AllocError> {
        if let Some(b) = &mut self.own {
            return b.realloc(old, size);
        }
        if !old.is_null() && !self.live.contains_key(&old.0) {
            return Err(AllocError::NotLive {
                op: "realloc",
                addr: old,
                model: "pinned-raw",
            });
        }
        match self.next()? {
            RawCall::Realloc {
                old: o,
                size: s,
                addr,
            } if o == old && s == size as u64 => {
                if !addr.is_null() {
                    self.release(old);
                    self.add(addr, s);
                }
                Ok(addr)
            }
            _ => Err(MISMATCH),
        }
    }

    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() {
            return Ok(());
        }
        if let Some(b) = &mut self.own {
            return b.free(addr);
        }
        match self.live.remove(&addr.0) {
            Some(n) => {
                self.live_bytes -= n;
                Ok(())
            }
            None => Err(AllocError::NotLive {
                op: "free",
                addr,
                model: "pinned-raw",
            }),
        }
    }

    fn stats(&self) -> Stats {
        if let Some(b) = &self.own {
            return b.stats();
        }
        Stats {
            live_bytes: self.live_bytes,
            live_blocks: self.live.len() as u64,
            mapped_bytes: 0,
            peak_live_bytes: self.peak_live_bytes,
            peak_mapped_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_the_recorded_call() {
        let mut r = PinnedRaw::new();
        r.pending.push_back(RawCall::Malloc {
            size: 600,
            addr: Addr(0x5000),
        });
        assert!(
            r.calloc(1, 600).is_err(),
            "a calloc is not the recorded malloc"
        );
        r.pending.push_back(RawCall::Malloc {
            size: 600,
            addr: Addr(0x5000),
        });
        assert_eq!(r.malloc(600), Ok(Addr(0x5000)));
        assert!(r.malloc(600).is_err(), "nothing pending");
        assert_eq!(r.free(Addr(0x5000)), Ok(()));
        assert!(matches!(
            r.free(Addr(0x5000)),
            Err(AllocError::NotLive { .. })
        ));
    }
}
