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
            n.set_state(State::Unsorted);
        }
        if !self.params.in_smallbin_range(self.heap.size(i)) {
            self.heap.set_fd_nextsize(i, NIL);
            self.heap.set_bk_nextsize(i, NIL);
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
        let size = self.heap.size(i);
        self.heap.m(n.fd).bk = n.bk;
        self.heap.m(n.bk).fd = n.fd;
        if !self.params.in_smallbin_range(size) {
            let (fdn, bkn) = (self.heap.fd_nextsize(i), self.heap.bk_nextsize(i));
            if fdn != NIL {
                if self.heap.fd_nextsize(n.fd) == NIL {
                    // the next chunk has the same size: it becomes its group's head
                    if fdn == i {
                        self.heap.set_fd_nextsize(n.fd, n.fd);
                        self.heap.set_bk_nextsize(n.fd, n.fd);
                    } else {
                        self.heap.set_fd_nextsize(n.fd, fdn);
                        self.heap.set_bk_nextsize(n.fd, bkn);
                        self.heap.set_bk_nextsize(fdn, n.fd);
                        self.heap.set_fd_nextsize(bkn, n.fd);
                    }
                } else {
                    self.heap.set_bk_nextsize(fdn, bkn);
                    self.heap.set_fd_nextsize(bkn, fdn);
                }
            }
        }
        if matches!(n.state(), State::Small | State::Large) {
            let b = self.params.bin_index(size);
            self.note_bin(b);
        }
    }

    /// "place chunk in bin": a chunk leaving the unsorted bin goes to its small or large bin.
    pub(super) fn bin_insert(&mut self, i: u32) {
        let size = self.heap.size(i);
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
                if size < self.heap.size(last) {
                    // smaller than everything: goes last, and on the ring before the largest
                    fwd = bin;
                    bck = last;
                    let ring_next = first; // fwd->fd
                    let ring_prev = self.heap.bk_nextsize(first);
                    self.heap.set_fd_nextsize(i, ring_next);
                    self.heap.set_bk_nextsize(i, ring_prev);
                    self.heap.set_bk_nextsize(ring_next, i);
                    self.heap.set_fd_nextsize(ring_prev, i);
                } else {
                    let mut f = first;
                    while size < self.heap.size(f) {
                        f = self.heap.fd_nextsize(f);
                    }
                    if size == self.heap.size(f) {
                        // always insert in the second position
                        f = self.heap.n(f).fd;
                        self.heap.set_fd_nextsize(i, NIL);
                        self.heap.set_bk_nextsize(i, NIL);
                    } else {
                        let prev = self.heap.bk_nextsize(f);
                        self.heap.set_fd_nextsize(i, f);
                        self.heap.set_bk_nextsize(i, prev);
                        self.heap.set_bk_nextsize(f, i);
                        self.heap.set_fd_nextsize(prev, i);
                    }
                    fwd = f;
                    bck = self.heap.n(f).bk;
                }
            } else {
                self.heap.set_fd_nextsize(i, i);
                self.heap.set_bk_nextsize(i, i);
                fwd = bin;
                bck = bin;
            }
        }
        {
            let v = self.heap.m(i);
            v.bk = bck;
            v.fd = fwd;
            v.set_state(state);
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
