//! An allocator that keeps nothing: a baseline, not a model of a libc. [`Null`] hands out
//! fresh addresses (16 apart) and remembers none, so a replay through it measures what
//! reading the trace and mapping its addresses cost.
//!
//! Invariant of [`Null`]: `next == 16 × requests served`; its `live_blocks` is
//! `mallocs − frees` (saturating), and it tracks no bytes.

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;

/// The null model: hands out fresh addresses and keeps nothing, so a replay through it
/// measures what reading and mapping the trace cost. `live_bytes` is not tracked.
#[derive(Debug, Default)]
pub struct Null {
    next: u64,    // 16 × the number of requests served
    stats: Stats, // live_blocks only
}

impl Allocator for Null {
    fn name(&self) -> &'static str {
        "null"
    }
    fn malloc(&mut self, _size: usize) -> Result<Addr, AllocError> {
        self.next += 16;
        self.stats.live_blocks += 1;
        Ok(Addr(self.next))
    }
    fn free(&mut self, _addr: Addr) -> Result<(), AllocError> {
        self.stats.live_blocks = self.stats.live_blocks.saturating_sub(1);
        Ok(())
    }
    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        if !addr.is_null() {
            self.free(addr)?;
        }
        self.malloc(size)
    }
    fn stats(&self) -> Stats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_hands_out_fresh_addresses() {
        let mut n = Null::default();
        let a = n.malloc(8).unwrap();
        let b = n.realloc(a, 100).unwrap();
        assert_ne!(a, b);
        assert_eq!(b - a, 16);
        assert_eq!(n.stats().live_blocks, 1);
    }
}
