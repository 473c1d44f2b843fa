//! `_int_malloc`: the order in which glibc 2.36 looks for a chunk.
//!
//! ```text
//!  nb ≤ max_fast      1. fastbin[nb] (LIFO); stash the rest of that bin into the tcache
//!  small nb           2. small bin[nb] (oldest first); stash the rest into the tcache
//!  large nb           2'. malloc_consolidate() if any fastbin chunk exists
//!                     3. unsorted bin, oldest first, for each chunk c:
//!                        - small nb, c the only one and c == last_remainder, size > nb+MINSIZE:
//!                          split c, the rest stays the last remainder          → return
//!                        - size(c) == nb: to the tcache if room (return_cached), else → return
//!                        - otherwise sort c into its small/large bin (≤ 10000 per pass)
//!                        then, if an exact fit went to the tcache, return the newest cached
//!                     4. large nb: best fit in bin[nb] (smallest ≥ nb, the second of its size)
//!                     5. the first non-empty bin above: its oldest/smallest chunk, split
//!                        (small nb: the remainder becomes last_remainder)
//!                     6. top, if size(top) ≥ nb + MINSIZE; else consolidate fastbins and
//!                        retry from 3; else sysmalloc (mmap if nb ≥ mmap_threshold, or sbrk)
//! ```
//! Remainders of splits go to the head of the unsorted bin.

use super::chunk::{bin, State, NIL};
use super::params::{MAX_ITERS, NFASTBINS, UNSORTED};
use super::{Glibc, Mapped, Served};
use crate::error::AllocError;

/// What `_int_malloc` handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Out {
    /// A chunk of the brk heap (its node), marked in use.
    Chunk(u32),
    /// An mmapped chunk (its user pointer).
    Mapped(u64),
}

/// [`Out`] packed in one word, so that `Result<Got, Box<AllocError>>` comes back in two
/// registers (an enum of a `u32` and a `u64` payload is returned through memory): a
/// node, or an mmapped chunk's user pointer with [`Got::MAPPED`] set (no user-space
/// address has bit 63 set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Got(u64);

impl Got {
    /// The flag of an mmapped chunk's user pointer.
    const MAPPED: u64 = 1 << 63;

    /// A chunk of the brk heap.
    #[inline(always)]
    pub(super) fn chunk(c: u32) -> Got {
        Got(c as u64)
    }

    /// An mmapped chunk.
    #[inline(always)]
    pub(super) fn mapped(mem: u64) -> Got {
        debug_assert_eq!(mem & Got::MAPPED, 0, "a user-space address");
        Got(mem | Got::MAPPED)
    }

    /// Unpacked.
    #[inline(always)]
    pub(super) fn out(self) -> Out {
        if self.0 & Got::MAPPED != 0 {
            Out::Mapped(self.0 & !Got::MAPPED)
        } else {
            Out::Chunk(self.0 as u32)
        }
    }
}

impl Glibc {
    /// `_int_malloc(av, bytes)` for a chunk size `nb` (already `request2size`d). The error
    /// is boxed and the chunk packed: the result comes back in two registers (it fails
    /// only where sysmalloc does).
    #[inline(always)]
    pub(super) fn int_malloc(&mut self, nb: u64) -> Result<Out, Box<AllocError>> {
        match self.int_malloc_quick(nb) {
            Some(c) => Ok(Out::Chunk(c)),
            None => self.int_malloc_full(nb),
        }
    }

    /// [`int_malloc`](Self::int_malloc) with no quick path first.
    #[inline(always)]
    pub(super) fn int_malloc_full(&mut self, nb: u64) -> Result<Out, Box<AllocError>> {
        self.int_malloc_packed(nb).map(Got::out)
    }

    /// The two commonest ways `_int_malloc` serves a small request, taken as its full
    /// search would take them, in line and with nothing to spill: when no fastbin chunk
    /// of size `nb` and no chunk of its small bin exists, the split of the unsorted bin's
    /// only chunk when that is the last remainder (3.), or, with the unsorted bin empty and
    /// no non-empty bin above `nb`'s, a split of top (6.). `None` (nothing changed) sends
    /// the request through the full search from its start.
    #[inline(always)]
    pub(super) fn int_malloc_quick(&mut self, nb: u64) -> Option<u32> {
        if !self.params.in_smallbin_range(nb)
            || (nb <= self.max_fast && self.fastbins[self.params.fastbin_index(nb)] != NIL)
        {
            return None;
        }
        let idx = self.params.smallbin_index(nb);
        if self.bin_last(idx).is_some() {
            return None;
        }
        let min = self.params.min_chunk;
        match self.bin_last(UNSORTED) {
            Some(victim) => {
                let size = self.heap.size(victim);
                if self.heap.bk(victim) != bin(UNSORTED)
                    || victim != self.last_remainder
                    || size <= nb + min
                {
                    return None;
                }
                self.split_last_remainder(victim, size, nb);
                Some(victim)
            }
            None => {
                if self.next_nonempty_bin(idx).is_some()
                    || self.top == NIL
                    || self.top_size() < nb + min
                {
                    return None;
                }
                self.served = Served::Top;
                Some(self.split_top(nb))
            }
        }
    }

    /// Serves `nb` from the start of `victim` (of `size` > `nb + MINSIZE`), the unsorted
    /// bin's only chunk and the last remainder; the rest becomes both.
    #[inline(always)]
    fn split_last_remainder(&mut self, victim: u32, size: u64, nb: u64) {
        // victim is the unsorted bin's only chunk (its bk is the bin): unlinking it empties
        // the bin, and the remainder pushed at the head is alone in it
        let r = victim + self.heap.g(nb);
        let rsize = size - nb;
        debug_assert_eq!(self.heap.fd(victim), bin(UNSORTED));
        debug_assert_eq!(self.heap.bk(victim), bin(UNSORTED));
        let pinuse = self.heap.n(victim).prev_inuse();
        self.heap.set_head(victim, nb, pinuse, State::InUse);
        self.write_free(r, rsize, bin(UNSORTED), bin(UNSORTED));
        self.heap.set_links(bin(UNSORTED), r, r);
        self.last_remainder = r;
        self.served = Served::LastRemainder;
    }

    /// The body of [`int_malloc`](Self::int_malloc).
    fn int_malloc_packed(&mut self, nb: u64) -> Result<Got, Box<AllocError>> {
        let min = self.params.min_chunk;
        let tc = self.tidx(nb);
        // 1. fastbins
        if nb <= self.max_fast {
            let f = self.params.fastbin_index(nb);
            if let Some(v) = self.fastbin_pop(f) {
                if self.tcache_usable(tc) {
                    while (self.tcache_counts[tc] as u64) < self.params.tcache_count {
                        match self.fastbin_pop(f) {
                            Some(c) => self.tcache_put(c, tc),
                            None => break,
                        }
                    }
                }
                self.served = Served::Fastbin;
                return Ok(Got::chunk(v));
            }
        }
        // 2. small bin of exactly nb
        let small = self.params.in_smallbin_range(nb);
        let idx;
        if small {
            idx = self.params.smallbin_index(nb);
            if let Some(v) = self.bin_last(idx) {
                self.take_from_small_bin(v, idx);
                if self.tcache_usable(tc) {
                    while (self.tcache_counts[tc] as u64) < self.params.tcache_count {
                        match self.bin_last(idx) {
                            Some(c) => {
                                self.take_from_small_bin(c, idx);
                                self.tcache_put(c, tc);
                            }
                            None => break,
                        }
                    }
                }
                self.served = Served::SmallBin;
                return Ok(Got::chunk(v));
            }
        } else {
            idx = self.params.largebin_index(nb);
            if self.have_fastchunks {
                self.malloc_consolidate();
            }
        }

        let tcache_nb = self.tcache_usable(tc);
        let mut return_cached = false;
        let mut tcache_unsorted_count: u64 = 0;
        loop {
            // 3. the unsorted bin, from its tail
            let mut iters = 0u32;
            while let Some(victim) = self.bin_last(UNSORTED) {
                let bck = self.heap.bk(victim);
                let size = self.heap.size(victim);
                if small && bck == bin(UNSORTED) && victim == self.last_remainder && size > nb + min
                {
                    self.split_last_remainder(victim, size, nb);
                    return Ok(Got::chunk(victim));
                }
                self.list_remove(victim);
                if size == nb {
                    self.heap.set_inuse(victim);
                    self.heap.m(victim).set_state(State::InUse);
                    if tcache_nb && (self.tcache_counts[tc] as u64) < self.params.tcache_count {
                        self.tcache_put(victim, tc);
                        return_cached = true;
                        continue;
                    }
                    self.served = Served::UnsortedExact;
                    return Ok(Got::chunk(victim));
                }
                self.bin_insert(victim);
                tcache_unsorted_count += 1;
                if return_cached
                    && self.params.tcache_unsorted_limit > 0
                    && tcache_unsorted_count > self.params.tcache_unsorted_limit
                {
                    self.served = Served::TcacheStash;
                    return Ok(Got::chunk(self.tcache_get(tc)));
                }
                iters += 1;
                if iters >= MAX_ITERS {
                    break;
                }
            }
            if return_cached {
                self.served = Served::TcacheStash;
                return Ok(Got::chunk(self.tcache_get(tc)));
            }
            // 4. large request: best fit in its own bin
            if !small {
                let sb = bin(idx);
                let first = self.heap.fd(sb);
                if first != sb && self.heap.size(first) >= nb {
                    let mut v = self.heap.bk_nextsize(first);
                    while self.heap.size(v) < nb {
                        v = self.heap.bk_nextsize(v);
                    }
                    let last = self.heap.bk(sb);
                    let vfd = self.heap.fd(v);
                    if v != last && self.heap.size(v) == self.heap.size(vfd) {
                        v = vfd;
                    }
                    self.split_binned(v, nb, false);
                    self.served = Served::LargeBin;
                    return Ok(Got::chunk(v));
                }
            }
            // 5. the next non-empty bin up
            if let Some(b) = self.next_nonempty_bin(idx) {
                let v = self.heap.bk(bin(b));
                self.split_binned(v, nb, small);
                self.served = Served::Binmap;
                return Ok(Got::chunk(v));
            }
            // 6. top
            if self.top != NIL && self.top_size() >= nb + min {
                let v = self.split_top(nb);
                self.served = Served::Top;
                return Ok(Got::chunk(v));
            } else if self.have_fastchunks {
                // glibc recomputes idx here because its binmap scan advanced it; the
                // model's scan leaves idx as it was (bin_index(nb))
                self.malloc_consolidate();
            } else {
                return self.sysmalloc(nb);
            }
        }
    }

    /// Takes the oldest chunk `v` of small bin `idx` for use.
    #[inline]
    fn take_from_small_bin(&mut self, v: u32, idx: usize) {
        self.list_remove(v);
        self.note_bin(idx);
        self.heap.set_inuse(v);
        self.heap.m(v).set_state(State::InUse);
    }

    /// Unlinks binned chunk `v` and serves `nb` from it, the rest (if ≥ MINSIZE) to the
    /// unsorted bin, advertised as the last remainder when `advertise`.
    fn split_binned(&mut self, v: u32, nb: u64, advertise: bool) {
        let size = self.heap.size(v);
        let rsize = size - nb;
        self.unlink_chunk(v);
        if rsize < self.params.min_chunk {
            self.heap.set_inuse(v);
            self.heap.m(v).set_state(State::InUse);
        } else {
            let r = v + self.heap.g(nb);
            let pinuse = self.heap.n(v).prev_inuse();
            self.heap.set_head(v, nb, pinuse, State::InUse);
            self.unsorted_push(r, rsize);
            if advertise {
                self.last_remainder = r;
            }
        }
    }

    /// Carves `nb` bytes from the start of top (which has at least `nb + MINSIZE`).
    #[inline(always)]
    pub(super) fn split_top(&mut self, nb: u64) -> u32 {
        let v = self.top;
        let size = self.top_size();
        let pinuse = self.heap.n(v).prev_inuse();
        let r = v + self.heap.g(nb);
        self.heap.set_head(v, nb, pinuse, State::InUse);
        self.heap.set_head(r, size - nb, true, State::Top);
        self.top = r;
        self.wrote(self.heap.addr(r) + 8, 8); // set_head (remainder = the new top)
        v
    }

    /// Merges free chunk `p` (of `size`, not yet in any list) with its free neighbours and
    /// puts the result at the head of the unsorted bin or into top; returns the merged size.
    /// The body shared by `_int_free` and `malloc_consolidate`.
    #[inline]
    pub(super) fn merge_and_bin(&mut self, p: u32) -> u64 {
        let mut p = p;
        let tag = *self.heap.n(p);
        let mut g = tag.size_g(); // the merged size, in granules
        let next = p + g;
        if !tag.prev_inuse() {
            let pg = tag.prev_size_g();
            self.heap.clear(p);
            p -= pg;
            self.unlink_free(p);
            g += pg;
        }
        if next != self.top {
            let ng = self.heap.n(next).size_g();
            let nextinuse = self.heap.n(next + ng).prev_inuse();
            if !nextinuse {
                self.unlink_free(next);
                self.heap.clear(next);
                g += ng;
            }
            // clear_inuse_bit_at_offset(next) when next stays: the foot unsorted_push
            // writes at p + size (prev_size and P = 0) is that bit
            let size = self.heap.bytes(g);
            self.unsorted_push(p, size);
            size
        } else {
            let size = self.heap.bytes(g) + self.top_size();
            self.heap.clear(next);
            self.heap.set_head(p, size, true, State::Top);
            self.top = p;
            self.wrote(self.heap.addr(p) + 8, 8);
            size
        }
    }

    /// `malloc_consolidate`: every fastbin chunk, bin by bin and newest first, is merged
    /// with its free neighbours into the unsorted bin (or top).
    ///
    /// A run of fastbin chunks that lie one after the other (freed from the highest down,
    /// as a list frees its items, so a fastbin holds them lowest first) merges chunk by
    /// chunk into the unsorted bin's newest chunk: each step takes that chunk out, grows
    /// it and puts it back at the head, where it was. The model keeps that chunk
    /// `pending` (node, granules) instead, its list place kept and its head and foot
    /// written once, when a chunk that does not continue it comes (or at the end): the
    /// same heap as glibc's step by step (interior nodes aside, which nothing reads).
    /// Invariant: a pending chunk is the unsorted bin's head, its links written.
    pub(super) fn malloc_consolidate(&mut self) {
        self.have_fastchunks = false;
        let mut pending: Option<(u32, u32)> = None;
        for f in 0..NFASTBINS {
            let mut p = std::mem::replace(&mut self.fastbins[f], NIL);
            while p != NIL {
                let nextp = self.heap.fd(p);
                self.heap.set_fd(p, NIL);
                if let Some((q, gq)) = pending {
                    if p == q + gq {
                        // p's previous chunk is q (free, its foot not yet written): merged
                        // backward; p's next chunk in use and not top: no forward merge
                        let g = self.heap.n(p).size_g();
                        let next = p + g;
                        if next != self.top
                            && self.heap.n(next + self.heap.n(next).size_g()).prev_inuse()
                        {
                            debug_assert_eq!(self.heap.fd(bin(UNSORTED)), q);
                            self.heap.clear(p);
                            pending = Some((q, gq + g));
                            if self.vm.tracking() {
                                // what glibc's writes of this step touch
                                self.touch_binned(q, self.heap.bytes(gq + g));
                            }
                            p = nextp;
                            continue;
                        }
                    }
                    self.write_pending(q, gq);
                    pending = None;
                }
                let top = self.top;
                let size = self.merge_and_bin(p);
                if self.top == top {
                    // binned at the unsorted bin's head, written whole
                    pending = Some((self.heap.fd(bin(UNSORTED)), self.heap.g(size)));
                }
                p = nextp;
            }
        }
        if let Some((q, gq)) = pending {
            self.write_pending(q, gq);
        }
    }

    /// Writes the head and foot of the unsorted bin's head `q` grown to `g` granules (its
    /// links as they are), as its last push would have.
    #[inline]
    fn write_pending(&mut self, q: u32, g: u32) {
        debug_assert_eq!(self.heap.fd(bin(UNSORTED)), q);
        debug_assert_eq!(self.heap.bk(q), bin(UNSORTED));
        let fd = self.heap.fd(q);
        self.write_free(q, self.heap.bytes(g), fd, bin(UNSORTED));
    }

    /// `sysmalloc`: mmap a chunk of its own when `nb ≥ mmap_threshold`, else grow top by
    /// sbrk (`nb + top_pad + MINSIZE - size(top)`, page-rounded) and split it.
    pub(super) fn sysmalloc(&mut self, nb: u64) -> Result<Got, Box<AllocError>> {
        if nb >= self.mmap_threshold && self.n_mmaps < self.n_mmaps_max {
            if let Ok(mem) = self.mmap_chunk(nb) {
                self.served = Served::Mmap;
                return Ok(Got::mapped(mem));
            }
        }
        let page = self.vm.page_size();
        let min = self.params.min_chunk;
        let old_size = if self.top == NIL { 0 } else { self.top_size() };
        let old_end = if self.top == NIL {
            0
        } else {
            self.heap.addr(self.top) + old_size
        };
        let size = (nb + self.top_pad + min - old_size).next_multiple_of(page);
        let end = self
            .vm
            .brk()
            .0
            .checked_add(size + page + self.params.malloc_alignment);
        let ceiling = self.vm.brk_ceiling();
        if self
            .vm
            .brk()
            .0
            .checked_add(size)
            .map_or(true, |e| e > ceiling.0)
        {
            // MORECORE fails, and so does the mmap glibc tries in its place: ENOMEM
            return Err(Box::new(AllocError::OutOfAddressSpace {
                what: format!(
                    "no mapping can hold a chunk of {nb} bytes and the brk heap cannot grow by \
                     {size} bytes below {ceiling} (glibc 2.36's malloc returns NULL, ENOMEM)"
                ),
            }));
        }
        if end.map_or(true, |end| end - self.heap.base > self.heap.max_extent()) {
            return Err(Box::new(AllocError::ModelLimit {
                what: format!(
                    "a brk heap of more than {} bytes ({} GiB; glibc would grow it by {size} \
                     bytes more, after {} mmapped chunks)",
                    self.heap.max_extent(),
                    (self.heap.max_extent() + (1 << 30) - 1) >> 30,
                    self.n_mmaps
                ),
                model: super::MODEL,
            }));
        }
        let brk = self.vm.sbrk(size as i64)?.0;
        if self.top != NIL && brk == old_end {
            self.heap.grow_to(brk + size);
            let t = self.top;
            let s = self.heap.size(t) + size;
            self.heap.set_size(t, s);
        } else {
            // the first sbrk: align the first chunk, end the heap on a page boundary
            let hdr = 2 * self.params.size_sz;
            let misalign = (brk + hdr) & (self.params.malloc_alignment - 1);
            let front = if misalign > 0 {
                self.params.malloc_alignment - misalign
            } else {
                0
            };
            let aligned_brk = brk + front;
            let end = brk + size + front;
            let correction = front + (end.next_multiple_of(page) - end);
            if correction > 0 {
                self.vm.sbrk(correction as i64)?;
            }
            let top_end = brk + size + correction;
            self.heap.grow_to(top_end);
            let t = self.heap.idx(aligned_brk);
            self.heap
                .set_head(t, top_end - aligned_brk, true, State::Top);
            self.top = t;
            self.wrote(aligned_brk + 8, 8);
        }
        self.note_mapped();
        let v = self.split_top(nb);
        self.served = Served::Sysmalloc;
        Ok(Got::chunk(v))
    }

    /// `sysmalloc_mmap`: a chunk of `nb` bytes in a mapping of its own; returns its user pointer.
    pub(super) fn mmap_chunk(&mut self, nb: u64) -> Result<u64, AllocError> {
        let page = self.vm.page_size();
        let len = (nb + self.params.size_sz).next_multiple_of(page);
        let base = self.map(len)?;
        let mem = base + self.mem_offset_mmapped();
        self.mmaps.insert(mem, Mapped { base, len, req: 0 });
        self.n_mmaps += 1;
        self.note_mapped();
        Ok(mem)
    }

    /// Offset of the user pointer from an mmapped chunk's mapping
    /// (`chunk2mem` plus the front correction on i386).
    pub(super) fn mem_offset_mmapped(&self) -> u64 {
        (2 * self.params.size_sz).next_multiple_of(self.params.malloc_alignment)
    }

    /// Maps `len` bytes: at the pinned base when one was given, else top-down.
    pub(super) fn map(&mut self, len: u64) -> Result<u64, AllocError> {
        if let Some(base) = self.mmap_pin.take() {
            if self.vm.map_fixed(crate::addr::Addr(base), len).is_ok() {
                return Ok(base);
            }
        }
        Ok(self.vm.mmap(len)?.0)
    }
}
