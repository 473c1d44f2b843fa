//! The system heap under a replayed free list: its block addresses are the recording's
//! (CPython 2.7's `B`/`b` lines, the address glibc's `malloc` gave `fill_free_list`).
//!
//! ```text
//!  trace:  B 992 555555800000   <- the driver queues 555555800000
//!  model:  IntFreeList::fill_free_list -> TraceHeap::malloc(992) = 555555800000
//! ```
//! Invariant: `malloc` returns the queued addresses in order and refuses when none is
//! queued; `live` holds exactly the addresses handed out and not freed.

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use crate::sysmalloc::realloc_by_moving;
use std::collections::{HashSet, VecDeque};

/// A heap whose `malloc` hands out addresses queued from a trace (its `B`/`b` lines), in
/// order, and refuses when none is queued: the system allocator under a replay.
#[derive(Debug, Clone, Default)]
pub struct TraceHeap {
    given: VecDeque<Addr>, // addresses malloc will return, in order
    live: HashSet<u64>,    // handed out and not freed
}

impl TraceHeap {
    /// Queues addresses for the next `malloc` calls.
    pub fn queue(&mut self, addrs: impl IntoIterator<Item = Addr>) {
        self.given.extend(addrs);
    }
}

impl Allocator for TraceHeap {
    fn name(&self) -> &'static str {
        "trace-heap"
    }
    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        let a = self
            .given
            .pop_front()
            .ok_or_else(|| AllocError::OutOfAddressSpace {
                what: format!("malloc({size}): no address left from the trace"),
            })?;
        self.live.insert(a.0);
        Ok(a)
    }
    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() || self.live.remove(&addr.0) {
            return Ok(());
        }
        Err(AllocError::NotLive {
            op: "free",
            addr,
            model: "trace-heap",
        })
    }
    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        realloc_by_moving(self, addr, size)
    }
    fn stats(&self) -> Stats {
        Stats {
            live_blocks: self.live.len() as u64,
            ..Stats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_the_queued_addresses_in_order_then_refuses() {
        let mut h = TraceHeap::default();
        h.queue([Addr(0x5000), Addr(0x6000)]);
        assert_eq!(h.malloc(992), Ok(Addr(0x5000)));
        assert_eq!(h.malloc(992), Ok(Addr(0x6000)));
        assert!(h.malloc(992).is_err(), "nothing queued");
        assert_eq!(h.free(Addr(0x5000)), Ok(()));
        assert!(h.free(Addr(0x5000)).is_err(), "freed already");
        assert_eq!(h.stats().live_blocks, 1);
    }
}
