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

use super::chunk::{bin, State, NIL};
use super::params::UNSORTED;
use super::Glibc;

impl Glibc {
    /// Sets or clears bin `b`'s bit in the exact bin map.
    #[inline]
    pub(super) fn note_bin(&mut self, b: usize) {
        let s = bin(b);
        if self.heap.fd(s) == s {
            self.binmap &= !(1u128 << b);
        } else {
            self.binmap |= 1u128 << b;
        }
    }

    /// The oldest chunk of bin `b` (`last(bin)`), if any.
    #[inline]
    pub(super) fn bin_last(&self, b: usize) -> Option<u32> {
        let s = bin(b);
        let bk = self.heap.bk(s);
        (bk != s).then_some(bk)
    }

    /// Makes node `i` a free chunk of `size` (its previous neighbour in use) and puts it
    /// at the head of the unsorted bin: `set_head (p, size | PREV_INUSE)`, `set_foot`
    /// (which clears the next chunk's P bit), then `bck = unsorted; fwd = bck->fd`.
    #[inline]
    pub(super) fn unsorted_push(&mut self, i: u32, size: u64) {
        let bck = bin(UNSORTED);
        let fwd = self.heap.fd(bck);
        self.write_free(i, size, fwd, bck);
        self.heap.set_fd(bck, i);
        self.heap.set_bk(fwd, i);
    }

    /// The chunk half of [`unsorted_push`](Self::unsorted_push): node `i` becomes a free
    /// chunk of `size` in the unsorted bin between `bk` and `fd` (whose own links the
    /// caller sets): its head, its foot, its links, no nextsize links.
    #[inline(always)]
    pub(super) fn write_free(&mut self, i: u32, size: u64, fd: u32, bk: u32) {
        if self.vm.tracking() {
            self.touch_binned(i, size);
        }
        let g = self.heap.g(size);
        self.heap.set_head_g(i, g, State::Unsorted);
        self.heap.set_foot_g(i + g, g);
        self.heap.set_links(i, fd, bk);
        if !self.params.in_smallbin_range(size) {
            self.heap.set_nextsize(i, NIL, NIL);
        }
    }

    /// Residency of a chunk of `size` put in a bin at node `i`: the header, fd/bk (and
    /// fd/bk_nextsize when large), and the foot: `prev_size` and the cleared P bit of the
    /// next chunk.
    #[inline(always)]
    pub(super) fn touch_binned(&mut self, i: u32, size: u64) {
        let c = self.heap.addr(i);
        if !self.heap_pages.known(c + 8, 40.min(size)) {
            self.touch_slow(c + 8, 40.min(size));
        }
        if !self.heap_pages.known(c + size, 16) {
            self.touch_slow(c + size, 16);
        }
    }

    /// Takes node `i` out of its list with no nextsize bookkeeping.
    #[inline]
    pub(super) fn list_remove(&mut self, i: u32) {
        let (fd, bk) = (self.heap.fd(i), self.heap.bk(i));
        self.heap.set_bk(fd, bk);
        self.heap.set_fd(bk, fd);
    }

    /// `unlink_chunk` of a binned chunk, with the unsorted bin's chunks (no nextsize links,
    /// no binmap bit: [`unsorted_push`](Self::unsorted_push) is their only way in) taken
    /// out in line.
    #[inline(always)]
    pub(super) fn unlink_free(&mut self, i: u32) {
        if self.heap.n(i).state() == State::Unsorted {
            self.list_remove(i);
        } else {
            self.unlink_chunk(i);
        }
    }

    /// `unlink_chunk`: takes a binned chunk out of its bin, keeping the nextsize ring.
    pub(super) fn unlink_chunk(&mut self, i: u32) {
        let (fd, bk) = (self.heap.fd(i), self.heap.bk(i));
        let size = self.heap.size(i);
        let state = self.heap.n(i).state();
        self.heap.set_bk(fd, bk);
        self.heap.set_fd(bk, fd);
        if !self.params.in_smallbin_range(size) {
            let (fdn, bkn) = (self.heap.fd_nextsize(i), self.heap.bk_nextsize(i));
            if fdn != NIL {
                if self.heap.fd_nextsize(fd) == NIL {
                    // the next chunk has the same size: it becomes its group's head
                    if fdn == i {
                        self.heap.set_fd_nextsize(fd, fd);
                        self.heap.set_bk_nextsize(fd, fd);
                    } else {
                        self.heap.set_fd_nextsize(fd, fdn);
                        self.heap.set_bk_nextsize(fd, bkn);
                        self.heap.set_bk_nextsize(fdn, fd);
                        self.heap.set_fd_nextsize(bkn, fd);
                    }
                } else {
                    self.heap.set_bk_nextsize(fdn, bkn);
                    self.heap.set_fd_nextsize(bkn, fdn);
                }
            }
        }
        if matches!(state, State::Small | State::Large) {
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
            bck = bin(b);
            fwd = self.heap.fd(bck);
            state = State::Small;
        } else {
            b = self.params.largebin_index(size);
            let s = bin(b);
            let first = self.heap.fd(s);
            state = State::Large;
            if first != s {
                let last = self.heap.bk(s);
                if size < self.heap.size(last) {
                    // smaller than everything: goes last, and on the ring before the largest
                    fwd = s;
                    bck = last;
                    let ring_next = first; // fwd->fd
                    let ring_prev = self.heap.bk_nextsize(first);
                    self.heap.set_nextsize(i, ring_next, ring_prev);
                    self.heap.set_bk_nextsize(ring_next, i);
                    self.heap.set_fd_nextsize(ring_prev, i);
                } else {
                    let mut f = first;
                    while size < self.heap.size(f) {
                        f = self.heap.fd_nextsize(f);
                    }
                    if size == self.heap.size(f) {
                        // always insert in the second position
                        f = self.heap.fd(f);
                        self.heap.set_nextsize(i, NIL, NIL);
                    } else {
                        let prev = self.heap.bk_nextsize(f);
                        self.heap.set_nextsize(i, f, prev);
                        self.heap.set_bk_nextsize(f, i);
                        self.heap.set_fd_nextsize(prev, i);
                    }
                    fwd = f;
                    bck = self.heap.bk(f);
                }
            } else {
                self.heap.set_nextsize(i, i, i);
                fwd = s;
                bck = s;
            }
        }
        self.heap.set_links(i, fwd, bck);
        self.heap.m(i).set_state(state);
        self.heap.set_bk(fwd, i);
        self.heap.set_fd(bck, i);
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
