//! Sharing one system heap between layers, and a heap that refuses to allocate.
//!
//! In CPython 2 the int and the float free lists both `malloc` their blocks from the
//! same system heap, and so do the tokenizer, list item arrays and the rest: a
//! [`SharedHeap`] is a cheap clone of one allocator (`Rc<RefCell<A>>`) that every
//! layer owns a handle to. Only block refills and frees reach it, never the free lists'
//! hot path.
//!
//! [`NoMalloc`] is the heap under a free list whose block addresses are taken from a
//! trace (`B` lines): it refuses every `malloc`, so a model that needs a block the
//! recording did not show says so instead of inventing an address.

use crate::addr::Addr;
use crate::alloc::{Allocator, Stats};
use crate::error::AllocError;
use std::cell::RefCell;
use std::rc::Rc;

/// A handle to one allocator shared by several layers.
#[derive(Debug)]
pub struct SharedHeap<A>(Rc<RefCell<A>>);

impl<A> Clone for SharedHeap<A> {
    fn clone(&self) -> Self {
        SharedHeap(Rc::clone(&self.0))
    }
}

impl<A: Allocator> SharedHeap<A> {
    /// Shares `heap`.
    pub fn new(heap: A) -> SharedHeap<A> {
        SharedHeap(Rc::new(RefCell::new(heap)))
    }

    /// Runs `f` on the allocator.
    pub fn with<R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        f(&mut self.0.borrow_mut())
    }
}

impl<A: Allocator> Allocator for SharedHeap<A> {
    fn name(&self) -> &'static str {
        self.0.borrow().name()
    }
    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        self.0.borrow_mut().malloc(size)
    }
    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        self.0.borrow_mut().free(addr)
    }
    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        self.0.borrow_mut().realloc(addr, size)
    }
    fn calloc(&mut self, nelem: usize, elsize: usize) -> Result<Addr, AllocError> {
        self.0.borrow_mut().calloc(nelem, elsize)
    }
    fn stats(&self) -> Stats {
        self.0.borrow().stats()
    }
}

/// A heap that refuses every request: addresses must come from somewhere else (a trace).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMalloc;

impl Allocator for NoMalloc {
    fn name(&self) -> &'static str {
        "no-malloc"
    }
    fn malloc(&mut self, size: usize) -> Result<Addr, AllocError> {
        Err(AllocError::OutOfAddressSpace {
            what: format!("malloc({size}): this heap only takes addresses from a trace"),
        })
    }
    fn free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() {
            return Ok(());
        }
        Err(AllocError::NotLive {
            op: "free",
            addr,
            model: "no-malloc",
        })
    }
    fn realloc(&mut self, addr: Addr, size: usize) -> Result<Addr, AllocError> {
        let _ = addr;
        self.malloc(size)
    }
    fn stats(&self) -> Stats {
        Stats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysmalloc::Bump;

    #[test]
    fn clones_share_one_heap() {
        let mut a = SharedHeap::new(Bump::new(Addr(0x1000), 16));
        let mut b = a.clone();
        let x = a.malloc(16).unwrap();
        let y = b.malloc(16).unwrap();
        assert_eq!(y - x, 16);
        assert_eq!(a.stats().live_blocks, 2);
        assert!(NoMalloc.clone().malloc(1).is_err());
    }
}

/// A heap whose `malloc` hands out addresses queued from a trace (its `B`/`b` lines), in
/// order, and refuses when none is queued: the system allocator under a replay.
#[derive(Debug, Clone, Default)]
pub struct TraceHeap {
    given: std::collections::VecDeque<Addr>, // addresses malloc will return, in order
    live: std::collections::HashSet<u64>,    // handed out and not freed
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
        super::realloc_by_moving(self, addr, size)
    }
    fn stats(&self) -> Stats {
        Stats {
            live_blocks: self.live.len() as u64,
            ..Stats::default()
        }
    }
}
