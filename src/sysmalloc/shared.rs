//! Sharing one system heap between layers.
//!
//! In CPython 2 the int and the float free lists both `malloc` their blocks from the
//! same system heap, and so do the tokenizer, list item arrays and the rest: a
//! [`SharedHeap`] is a cheap clone of one allocator (`Rc<RefCell<A>>`) that every
//! layer owns a handle to. Only block refills and frees reach it, never the free lists'
//! hot path.

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
    }
}
