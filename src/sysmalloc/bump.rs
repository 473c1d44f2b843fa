//! A bump allocator: the baseline.
//!
//! ```text
//!   base                     next
//!   | blk | blk | blk | ...  |-> (never moves back; free only forgets)
//! ```
//! Every request is rounded up to `align` and placed at `next`. Frees are checked
//! (a free of a non-live address is an error) but the space is never reused, so its
//! footprint is the upper bound any real allocator should beat.

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use std::collections::HashMap;

/// The bump baseline: live allocations are remembered only to check frees.
#[derive(Debug, Clone)]
pub struct Bump {
    align: u64,              // every block starts on this boundary
    next: Addr,              // where the next block goes
    base: Addr,              // where the first block went
    live: HashMap<u64, u64>, // address -> size asked for
    stats: Stats,            // live_bytes == sum of live sizes
}

impl Bump {
    /// A bump allocator starting at `base`, aligning every block to `align` (a power of two).
    pub fn new(base: Addr, align: u64) -> Bump {
        assert!(align.is_power_of_two());
        let base = base.align_up(align);
        Bump {
            align,
            next: base,
            base,
            live: HashMap::new(),
            stats: Stats::default(),
        }
    }

    /// The largest request accepted: half the 64-bit space, as `PTRDIFF_MAX` bounds malloc.
    pub const MAX_REQUEST: u64 = i64::MAX as u64;
}

impl Allocator for Bump {
    fn name(&self) -> &'static str {
        "bump"
    }

    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        let size = size as u64;
        if size > Self::MAX_REQUEST {
            return Err(AllocError::TooLarge {
                size,
                limit: Self::MAX_REQUEST,
                model: "bump",
            });
        }
        let span = (size.max(1) + self.align - 1) & !(self.align - 1);
        let at = self.next;
        let end =
            at.0.checked_add(span)
                .ok_or_else(|| AllocError::OutOfAddressSpace {
                    what: format!("bump of {size} bytes at {at}"),
                })?;
        self.next = Addr(end);
        self.live.insert(at.0, size);
        self.stats.note_alloc(size);
        self.stats.mapped_bytes = self.next.0 - self.base.0;
        self.stats.peak_mapped_bytes = self.stats.mapped_bytes;
        Ok(at)
    }

    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() {
            return Ok(());
        }
        let size = self.live.remove(&addr.0).ok_or(AllocError::NotLive {
            op: "free",
            addr,
            model: "bump",
        })?;
        self.stats.note_free(size);
        Ok(())
    }

    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        if addr.is_null() {
            return self.malloc(size);
        }
        if !self.live.contains_key(&addr.0) {
            return Err(AllocError::NotLive {
                op: "realloc",
                addr,
                model: "bump",
            });
        }
        super::realloc_by_moving(self, addr, size)
    }

    fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_never_reuses_and_checks_frees() {
        let mut b = Bump::new(Addr(0x1000), 16);
        let a = b.malloc(24).unwrap();
        let c = b.malloc(1).unwrap();
        assert_eq!(c - a, 32);
        b.free(a).unwrap();
        assert!(b.malloc(24).unwrap() > c);
        assert!(matches!(b.free(a), Err(AllocError::NotLive { .. })));
        assert_eq!(b.stats().live_blocks, 2);
    }
}
