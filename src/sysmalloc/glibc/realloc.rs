//! `_int_realloc` and `_int_memalign`: resizing in place and aligned carving.
//!
//! ```text
//!  _int_realloc(oldp, nb)
//!    size(oldp) ≥ nb                    keep it                                 ┐
//!    next is top, old + size(top) ≥ nb + MINSIZE   grow into top → return       │ then split
//!    next free in a bin, old + next ≥ nb           absorb next                  │ off the rest
//!    else _int_malloc(nb) (no tcache): if it returns the next chunk, absorb it;  │ (≥ MINSIZE)
//!         else copy and _int_free(oldp) → return                                 ┘ by _int_free
//!  _int_memalign(align, nb)
//!    m = _int_malloc(nb + align + MINSIZE); if m is misaligned, the chunk starts at the
//!    first aligned address at least MINSIZE in, the leader is _int_free'd; a tail beyond
//!    nb + MINSIZE is _int_free'd too.
//! ```

use super::chunk::State;
use super::malloc::Out;
use super::{Glibc, Served};
use crate::error::AllocError;

impl Glibc {
    /// `_int_realloc` of the in-use heap chunk at node `oldp` to chunk size `nb`;
    /// returns the user pointer.
    pub(super) fn int_realloc(&mut self, oldp: u32, nb: u64) -> Result<u64, AllocError> {
        let min = self.params.min_chunk;
        let oldsize = self.heap.size(oldp);
        let next = oldp + self.heap.g(oldsize);
        let nextsize = if next == self.top {
            self.top_size()
        } else {
            self.heap.size(next)
        };
        let (newp, newsize);
        if oldsize >= nb {
            newp = oldp;
            newsize = oldsize;
            self.served = Served::ReallocInPlace;
        } else if next == self.top && oldsize + nextsize >= nb + min {
            let total = oldsize + nextsize;
            let pinuse = self.heap.n(oldp).prev_inuse();
            self.heap.clear(next);
            self.heap.set_head(oldp, nb, pinuse, State::InUse);
            let t = oldp + self.heap.g(nb);
            self.heap.set_head(t, total - nb, true, State::Top);
            self.top = t;
            self.wrote(self.heap.addr(t) + 8, 8);
            self.served = Served::ReallocIntoTop;
            return Ok(self.mem(oldp));
        } else if next != self.top
            && self.heap.n(next).state().is_binned()
            && oldsize + nextsize >= nb
        {
            self.unlink_chunk(next);
            self.heap.clear(next);
            newp = oldp;
            newsize = oldsize + nextsize;
            self.heap.set_size(oldp, newsize);
            self.heap.set_inuse(oldp);
            self.served = Served::ReallocIntoNext;
        } else {
            match self.int_malloc(nb).map_err(|e| *e)? {
                Out::Mapped(mem) => {
                    self.int_free(oldp);
                    return Ok(mem);
                }
                Out::Chunk(c) if c == next => {
                    let csize = self.heap.size(c);
                    self.heap.clear(c);
                    newp = oldp;
                    newsize = oldsize + csize;
                    self.heap.set_size(oldp, newsize);
                    self.served = Served::ReallocIntoNext;
                }
                Out::Chunk(c) => {
                    self.int_free(oldp);
                    return Ok(self.mem(c));
                }
            }
        }
        self.split_off_tail(newp, newsize, nb);
        Ok(self.mem(newp))
    }

    /// Gives the tail of in-use chunk `p` (of `size`) beyond `nb` back through `_int_free`
    /// when it is at least MINSIZE (else `p` keeps all of `size`).
    fn split_off_tail(&mut self, p: u32, size: u64, nb: u64) {
        if size - nb < self.params.min_chunk {
            self.heap.set_size(p, size);
            self.heap.set_inuse(p);
        } else {
            self.heap.set_size(p, nb);
            let r = p + self.heap.g(nb);
            self.heap.set_head(r, size - nb, true, State::InUse);
            self.heap.set_inuse(r);
            self.wrote(self.heap.addr(r) + 8, 8);
            self.int_free(r);
        }
    }

    /// `_int_memalign(av, align, bytes)` for chunk size `nb` and a power-of-two `align`
    /// ≥ MINSIZE; returns the user pointer.
    pub(super) fn int_memalign(&mut self, align: u64, nb: u64) -> Result<u64, AllocError> {
        let min = self.params.min_chunk;
        let hdr = 2 * self.params.size_sz;
        let inner =
            self.params
                .checked_request2size(nb + align + min)
                .ok_or(AllocError::TooLarge {
                    size: nb + align + min,
                    limit: self.params.ptrdiff_max,
                    model: super::MODEL,
                })?;
        match self.int_malloc(inner).map_err(|e| *e)? {
            Out::Mapped(mem) => {
                if mem % align == 0 {
                    return Ok(mem);
                }
                let mut newmem = mem.next_multiple_of(align);
                if newmem - mem < min {
                    newmem += align;
                }
                if let Some(m) = self.mmaps.remove(&mem) {
                    self.mmaps.insert(newmem, m);
                }
                Ok(newmem)
            }
            Out::Chunk(mut p) => {
                let m = self.mem(p);
                if m % align != 0 {
                    let mut brk = m.next_multiple_of(align) - hdr;
                    let pa = self.heap.addr(p);
                    if brk - pa < min {
                        brk += align;
                    }
                    let lead = brk - pa;
                    let newsize = self.heap.size(p) - lead;
                    let newp = self.heap.idx(brk);
                    self.heap.set_head(newp, newsize, true, State::InUse);
                    self.heap.set_inuse(newp);
                    self.heap.set_size(p, lead);
                    self.int_free(p);
                    p = newp;
                }
                let size = self.heap.size(p);
                if size > nb + min {
                    self.heap.set_size(p, nb);
                    let r = p + self.heap.g(nb);
                    self.heap.set_head(r, size - nb, true, State::InUse);
                    self.heap.set_inuse(r);
                    self.int_free(r);
                }
                self.served = Served::Memalign;
                Ok(self.mem(p))
            }
        }
    }
}
