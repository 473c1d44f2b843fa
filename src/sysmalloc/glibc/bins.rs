//! The arena's doubly-linked bins: unsorted, small (FIFO) and large (sorted).
//!
//! ```text
//!  bin_at(1)  unsorted:  fd ─▶ newest … oldest ◀─ bk      insert at fd, take from bk
//!  bin_at(i)  small:     fd ─▶ newest … oldest ◀─ bk      insert at fd, take from bk (FIFO)
//!  bin_at(i)  large:     fd ─▶ largest … smallest ◀─ bk   sorted by size, descending;
//!             the first chunk of each size is on the nextsize ring (fd_nextsize ─▶ smaller),
//!             a chunk of a size already present goes second, right after that first one.
//! ```
//! malloc/malloc.c: `unlink_chunk`, the "place chunk in bin" block of `_int_malloc`.
//! `binmap` here is exact (bit i set ⇔ bin i non-empty); glibc's is a superset cleared
//! lazily, and it is only ever used to find the first non-empty bin, so both choose alike.
//!
//! Invariants: every chunk of small bin i has `smallbin_index(size) == i`; every chunk of
//! large bin i has `largebin_index(size) == i`, sizes non-increasing along fd.

use super::chunk::{State, NIL};
use super::params::UNSORTED;
use super::Glibc;

impl Glibc {
    /// Sets or clears bin `b`'s bit in the exact bin map.
    #[inline]
    pub(super) fn note_bin(&mut self, b: usize) {
        let s = b as u32;
        if self.heap.n(s).fd == s {
            self.binmap &= !(1u128 << b);
        } else {
            self.binmap |= 1u128 << b;
        }
    }

    /// The oldest chunk of bin `b` (`last(bin)`), if any.
    #[inline]
    pub(super) fn bin_last(&self, b: usize) -> Option<u32> {
        let bk = self.heap.n(b as u32).bk;
        (bk != b as u32).then_some(bk)
    }

    /// Puts node `i` at the head of the unsorted bin (`bck = unsorted; fwd = bck->fd`).
    #[inline]
    pub(super) fn unsorted_push(&mut self, i: u32) {
        let bck = UNSORTED as u32;
        let fwd = self.heap.n(bck).fd;
        {
            let n = self.heap.m(i);
            n.fd = fwd;
            n.bk = bck;
            n.state = State::Unsorted;
            n.fd_nextsize = NIL;
            n.bk_nextsize = NIL;
        }
        self.heap.m(bck).fd = i;
        self.heap.m(fwd).bk = i;
    }

    /// Takes node `i` out of its list with no nextsize bookkeeping.
    #[inline]
    pub(super) fn list_remove(&mut self, i: u32) {
        let (fd, bk) = {
            let n = self.heap.n(i);
            (n.fd, n.bk)
        };
        self.heap.m(fd).bk = bk;
        self.heap.m(bk).fd = fd;
    }

    /// `unlink_chunk`: takes a binned chunk out of its bin, keeping the nextsize ring.
    pub(super) fn unlink_chunk(&mut self, i: u32) {
        let n = *self.heap.n(i);
        self.heap.m(n.fd).bk = n.bk;
        self.heap.m(n.bk).fd = n.fd;
        if !self.params.in_smallbin_range(n.size) && n.fd_nextsize != NIL {
            if self.heap.n(n.fd).fd_nextsize == NIL {
                // the next chunk has the same size: it becomes its group's head
                if n.fd_nextsize == i {
                    let f = self.heap.m(n.fd);
                    f.fd_nextsize = n.fd;
                    f.bk_nextsize = n.fd;
                } else {
                    {
                        let f = self.heap.m(n.fd);
                        f.fd_nextsize = n.fd_nextsize;
                        f.bk_nextsize = n.bk_nextsize;
                    }
                    self.heap.m(n.fd_nextsize).bk_nextsize = n.fd;
                    self.heap.m(n.bk_nextsize).fd_nextsize = n.fd;
                }
            } else {
                self.heap.m(n.fd_nextsize).bk_nextsize = n.bk_nextsize;
                self.heap.m(n.bk_nextsize).fd_nextsize = n.fd_nextsize;
            }
        }
        match n.state {
            State::Small | State::Large => {
                let b = self.params.bin_index(n.size);
                self.note_bin(b);
            }
            _ => {}
        }
        let m = self.heap.m(i);
        m.fd_nextsize = NIL;
        m.bk_nextsize = NIL;
    }

    /// "place chunk in bin": a chunk leaving the unsorted bin goes to its small or large bin.
    pub(super) fn bin_insert(&mut self, i: u32) {
        let size = self.heap.n(i).size;
        let (bck, fwd, state, b);
        if self.params.in_smallbin_range(size) {
            b = self.params.smallbin_index(size);
            bck = b as u32;
            fwd = self.heap.n(bck).fd;
            state = State::Small;
        } else {
            b = self.params.largebin_index(size);
            let bin = b as u32;
            let first = self.heap.n(bin).fd;
            state = State::Large;
            if first != bin {
                let last = self.heap.n(bin).bk;
                if size < self.heap.n(last).size {
                    // smaller than everything: goes last, and on the ring before the largest
                    fwd = bin;
                    bck = last;
                    let ring_next = first; // fwd->fd
                    let ring_prev = self.heap.n(first).bk_nextsize;
                    {
                        let v = self.heap.m(i);
                        v.fd_nextsize = ring_next;
                        v.bk_nextsize = ring_prev;
                    }
                    self.heap.m(ring_next).bk_nextsize = i;
                    self.heap.m(ring_prev).fd_nextsize = i;
                } else {
                    let mut f = first;
                    while size < self.heap.n(f).size {
                        f = self.heap.n(f).fd_nextsize;
                    }
                    if size == self.heap.n(f).size {
                        // always insert in the second position
                        f = self.heap.n(f).fd;
                        let v = self.heap.m(i);
                        v.fd_nextsize = NIL;
                        v.bk_nextsize = NIL;
                    } else {
                        let prev = self.heap.n(f).bk_nextsize;
                        {
                            let v = self.heap.m(i);
                            v.fd_nextsize = f;
                            v.bk_nextsize = prev;
                        }
                        self.heap.m(f).bk_nextsize = i;
                        self.heap.m(prev).fd_nextsize = i;
                    }
                    fwd = f;
                    bck = self.heap.n(f).bk;
                }
            } else {
                let v = self.heap.m(i);
                v.fd_nextsize = i;
                v.bk_nextsize = i;
                fwd = bin;
                bck = bin;
            }
        }
        {
            let v = self.heap.m(i);
            v.bk = bck;
            v.fd = fwd;
            v.state = state;
        }
        self.heap.m(fwd).bk = i;
        self.heap.m(bck).fd = i;
        self.binmap |= 1u128 << b;
    }

    /// The first non-empty bin with an index above `idx` (the binmap scan).
    #[inline]
    pub(super) fn next_nonempty_bin(&self, idx: usize) -> Option<usize> {
        if idx + 1 >= 128 {
            return None;
        }
        let m = self.binmap >> (idx + 1);
        (m != 0).then(|| idx + 1 + m.trailing_zeros() as usize)
    }
}
