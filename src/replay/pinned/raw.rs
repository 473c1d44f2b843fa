//! The lower allocator of a pinned pymalloc replay: its answers are the system calls the
//! recording shows (or implies), so the model is held to CPython's own sequence of them.
//!
//! ```text
//!  CPython 3 (Expect::Sequence): the nested raw calls are logged
//!    trace:  m r 777 55555586a000      <- expect(): queued by the replay driver
//!            m O 777 55555586a000      <- Pymalloc falls through -> PinnedRaw::malloc(777)
//!                                         must be the next queued call, same kind and size
//!  CPython 2.7 (Expect::Implied): nothing nested is logged
//!    trace:  m O 777 55555586a000      <- the driver expects malloc(777) = 55555586a000
//!            the model's other calls (the `arenas` vector) come from a hidden bump
//!            allocator whose addresses are never compared
//!  own mode (Expect::Own): every call is a bump allocator's, the recording is not read
//! ```
//! Invariants: `live` holds exactly the recorded blocks handed out (or adopted from
//! top-level `R` lines) and not yet freed, `live_bytes == Σ live sizes`; in
//! `Implied`, `hidden_live` holds exactly the hidden blocks; a free or realloc of an
//! address in neither is refused as not live.

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use crate::sysmalloc::Bump;
use std::collections::{HashMap, HashSet, VecDeque};

/// One raw call of a recording: what was asked and what the system allocator answered.
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

impl std::fmt::Display for RawCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            RawCall::Malloc { size, addr } => write!(f, "malloc({size}) = {addr}"),
            RawCall::Calloc {
                nelem,
                elsize,
                addr,
            } => write!(f, "calloc({nelem}, {elsize}) = {addr}"),
            RawCall::Realloc { old, size, addr } => write!(f, "realloc({old}, {size}) = {addr}"),
        }
    }
}

/// How the calls the model makes are held to the recording.
#[derive(Debug, Clone)]
enum Expect {
    /// Every call must be the next queued one (CPython 3's logged nested raw calls).
    Sequence,
    /// The queued call is answered when the model makes it; any other call is pymalloc's
    /// bookkeeping, served by `hidden` (CPython 2.7 logs no nested call).
    Implied {
        hidden: Bump,              // pymalloc's bookkeeping blocks
        hidden_live: HashSet<u64>, // live hidden blocks
        hidden_calls: u64,         // calls served by `hidden`
    },
    /// Every call is answered by this bump allocator; the recording is not read.
    Own(Bump),
}

/// The raw allocator under a pinned pymalloc replay.
#[derive(Debug, Clone)]
pub struct PinnedRaw {
    expect: Expect,             // the policy
    pending: VecDeque<RawCall>, // calls recorded for the call being replayed, in order
    live: HashMap<u64, u64>,    // address -> bytes of each live recorded block
    live_bytes: u64,            // Σ live sizes
    peak_live_bytes: u64,       // largest live_bytes seen
}

impl Default for PinnedRaw {
    fn default() -> Self {
        PinnedRaw::sequence()
    }
}

const MISMATCH: AllocError = AllocError::Corrupt {
    message: "the model made a raw call (a fall-through, arena-vector or radix-node \
              allocation) that is not the one CPython made next, so the model's pymalloc \
              state differs from the process's; try the preset of the recording's release \
              (`pyalloc presets`)",
    addr: Addr::NULL,
    model: RAW,
};

const MISSING: AllocError = AllocError::Corrupt {
    message: "pymalloc passed this call to CPython's raw allocator (PyMem_RawMalloc serves \
              requests of 0 or more than 512 bytes, the arenas vector and radix-tree nodes), \
              but the recording shows no raw call (an `r` line) before it: lines were lost, \
              or the model's state differs from the process's (try the preset of the \
              recording's release, `pyalloc presets`)",
    addr: Addr::NULL,
    model: RAW,
};

/// How errors name this allocator: the raw domain as the recording shows it.
const RAW: &str = "CPython's raw allocator (as recorded)";

impl PinnedRaw {
    /// Every call the model makes must be the next one queued with [`expect`](Self::expect).
    pub fn sequence() -> PinnedRaw {
        PinnedRaw::with(Expect::Sequence)
    }

    /// The call queued with [`expect`](Self::expect) is answered when the model makes it;
    /// other calls are served from a bump allocator placing blocks from `hidden_base` up
    /// (anywhere no recorded address lies: they are never compared).
    pub fn implied(hidden_base: Addr) -> PinnedRaw {
        PinnedRaw::with(Expect::Implied {
            hidden: Bump::new(hidden_base, 16),
            hidden_live: HashSet::new(),
            hidden_calls: 0,
        })
    }

    /// Own-address mode: every call is answered by `bump`; nothing queued is read.
    pub fn own(bump: Bump) -> PinnedRaw {
        PinnedRaw::with(Expect::Own(bump))
    }

    fn with(expect: Expect) -> PinnedRaw {
        PinnedRaw {
            expect,
            pending: VecDeque::new(),
            live: HashMap::new(),
            live_bytes: 0,
            peak_live_bytes: 0,
        }
    }

    /// True in own-address mode.
    pub fn is_own(&self) -> bool {
        matches!(self.expect, Expect::Own(_))
    }

    /// Queues a call the recording shows (or implies) for the call being replayed.
    pub fn expect(&mut self, call: RawCall) {
        self.pending.push_back(call);
    }

    /// Calls queued and not made by the model.
    pub fn pending(&self) -> impl Iterator<Item = &RawCall> {
        self.pending.iter()
    }

    /// True when no queued call is left.
    #[inline(always)]
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// Ends the call being replayed: the calls still queued (not made), oldest first.
    pub fn end_call(&mut self) -> Vec<RawCall> {
        self.pending.drain(..).collect()
    }

    /// Calls served from the hidden allocator (`Implied` only: not in the recording).
    pub fn hidden_calls(&self) -> u64 {
        match &self.expect {
            Expect::Implied { hidden_calls, .. } => *hidden_calls,
            _ => 0,
        }
    }

    /// Records a block the process got from the raw domain outside pymalloc (a top-level
    /// `R` line), so that a later pymalloc free of it is known.
    pub fn adopt(&mut self, addr: Addr, size: u64) {
        if !addr.is_null() {
            self.add(addr, size);
        }
    }

    /// Forgets a block freed outside pymalloc (a top-level `f R` line); false when it was
    /// not live.
    pub fn release(&mut self, addr: Addr) -> bool {
        match self.live.remove(&addr.0) {
            Some(n) => {
                self.live_bytes -= n;
                true
            }
            None => false,
        }
    }

    /// True when `addr` is a live recorded block.
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

    fn not_live(op: &'static str, addr: Addr) -> AllocError {
        AllocError::NotLive {
            op,
            addr,
            model: RAW,
        }
    }

    /// The queued call, when `matches` it: taken off the queue. `Sequence` takes the
    /// front call whatever it is, and a call that does not match is an error.
    fn answer(
        &mut self,
        matches: impl Fn(&RawCall) -> bool,
    ) -> Result<Option<RawCall>, AllocError> {
        match self.expect {
            Expect::Sequence => match self.pending.pop_front() {
                Some(c) if matches(&c) => Ok(Some(c)),
                Some(_) => Err(MISMATCH),
                None => Err(MISSING),
            },
            _ => match self.pending.front() {
                Some(c) if matches(c) => Ok(self.pending.pop_front()),
                _ => Ok(None),
            },
        }
    }

    /// A call the recording does not show (`Implied`): served from the hidden allocator.
    fn hidden(
        &mut self,
        call: impl FnOnce(&mut Bump) -> Result<Addr, AllocError>,
    ) -> Result<Addr, AllocError> {
        let Expect::Implied {
            hidden,
            hidden_live,
            hidden_calls,
        } = &mut self.expect
        else {
            return Err(MISMATCH);
        };
        let a = call(hidden)?;
        *hidden_calls += 1;
        hidden_live.insert(a.0);
        Ok(a)
    }
}

impl Allocator for PinnedRaw {
    fn name(&self) -> &'static str {
        "pinned-raw"
    }

    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        if let Expect::Own(b) = &mut self.expect {
            return b.malloc(size);
        }
        let n = size as u64;
        match self.answer(|c| matches!(*c, RawCall::Malloc { size: s, .. } if s == n))? {
            Some(RawCall::Malloc { addr, .. }) => {
                self.add(addr, n);
                Ok(addr)
            }
            _ => self.hidden(|h| h.malloc(size)),
        }
    }

    fn calloc(&mut self, nelem: usize, elsize: usize) -> Result<Addr, AllocError> {
        if let Expect::Own(b) = &mut self.expect {
            return b.calloc(nelem, elsize);
        }
        let (n, e) = (nelem as u64, elsize as u64);
        let is = |c: &RawCall| matches!(*c, RawCall::Calloc { nelem: cn, elsize: ce, .. } if cn == n && ce == e);
        match self.answer(is)? {
            Some(RawCall::Calloc { addr, .. }) => {
                self.add(addr, n.saturating_mul(e));
                Ok(addr)
            }
            _ => self.hidden(|h| h.calloc(nelem, elsize)),
        }
    }

    fn realloc(&mut self, old: Addr, size: usize) -> Result<Addr, AllocError> {
        if let Expect::Own(b) = &mut self.expect {
            return b.realloc(old, size);
        }
        let n = size as u64;
        let is = |c: &RawCall| matches!(*c, RawCall::Realloc { old: o, size: s, .. } if o == old && s == n);
        let recorded = old.is_null() || self.is_live(old);
        if matches!(self.expect, Expect::Sequence) && !recorded {
            return Err(Self::not_live("realloc", old));
        }
        if recorded {
            if let Some(RawCall::Realloc { addr, .. }) = self.answer(is)? {
                if !addr.is_null() {
                    self.release(old);
                    self.add(addr, n);
                }
                return Ok(addr);
            }
        }
        if let Expect::Implied { hidden_live, .. } = &mut self.expect {
            if !old.is_null() && !hidden_live.remove(&old.0) {
                return Err(Self::not_live("realloc", old));
            }
        }
        self.hidden(|h| h.realloc(old, size))
    }

    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() {
            return Ok(());
        }
        if let Expect::Own(b) = &mut self.expect {
            return b.free(addr);
        }
        if self.release(addr) {
            return Ok(());
        }
        if let Expect::Implied {
            hidden,
            hidden_live,
            ..
        } = &mut self.expect
        {
            if hidden_live.remove(&addr.0) {
                return hidden.free(addr);
            }
        }
        Err(Self::not_live("free", addr))
    }

    fn stats(&self) -> Stats {
        let own = Stats {
            live_bytes: self.live_bytes,
            live_blocks: self.live.len() as u64,
            mapped_bytes: 0,
            peak_live_bytes: self.peak_live_bytes,
            peak_mapped_bytes: 0,
        };
        match &self.expect {
            Expect::Own(b) => b.stats(),
            Expect::Sequence => own,
            Expect::Implied { hidden, .. } => {
                let h = hidden.stats();
                Stats {
                    live_bytes: own.live_bytes + h.live_bytes,
                    live_blocks: own.live_blocks + h.live_blocks,
                    peak_live_bytes: own.peak_live_bytes + h.peak_live_bytes,
                    ..own
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_answers_only_the_recorded_call() {
        let mut r = PinnedRaw::sequence();
        r.expect(RawCall::Malloc {
            size: 600,
            addr: Addr(0x5000),
        });
        assert!(
            r.calloc(1, 600).is_err(),
            "a calloc is not the recorded malloc"
        );
        r.expect(RawCall::Malloc {
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

    #[test]
    fn implied_answers_the_expected_call_and_hides_the_rest() {
        let mut g = PinnedRaw::implied(Addr(0x1000));
        g.expect(RawCall::Malloc {
            size: 600,
            addr: Addr(0x5555_0000),
        });
        // A call of another size is bookkeeping: hidden, the expectation stays.
        let v = g.realloc(Addr::NULL, 64).unwrap();
        assert_eq!(g.hidden_calls(), 1);
        assert!(!g.is_settled());
        assert_eq!(g.malloc(600), Ok(Addr(0x5555_0000)));
        assert!(g.is_settled() && g.is_live(Addr(0x5555_0000)));
        g.expect(RawCall::Realloc {
            old: Addr(0x5555_0000),
            size: 900,
            addr: Addr(0x6666_0000),
        });
        assert_eq!(g.realloc(Addr(0x5555_0000), 900), Ok(Addr(0x6666_0000)));
        assert!(!g.is_live(Addr(0x5555_0000)) && g.is_live(Addr(0x6666_0000)));
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
