//! Segments, slices, spans and the span queues (mimalloc 2.1.2 segment.c).
//!
//! ```text
//!  segment (32 MiB, 32 MiB-aligned, from an arena) = 512 slices of 64 KiB
//!  +-------+------+------+---------------+------------------------+--------------+
//!  |slice 0| pg   | pg   | medium page   | free span (on a queue) | large page   |
//!  |header | 1 sl | 1 sl | 8 slices      |                        | n slices     |
//!  +-------+------+------+---------------+------------------------+--------------+
//!  slice 0 (segment_info_slices = 1): mi_segment_t, 41,304 bytes in CPython 3.13.0
//!
//!  tld->spans[bin]: free spans of every segment, binned by slice count (mi_slice_bin),
//!  newest first. A page of n slices takes the FIRST span with >= n slices of the first
//!  non-empty bin from slice_bin(n) up, splits off the rest (pushed on the front of its
//!  bin), and a freed page's span coalesces with free neighbours and goes on the front.
//!  No span fits: a fresh segment (its slices 1..512 as one free span) and search again.
//!  A segment whose last page is freed goes back to its arena.
//!
//!  huge segment (a block > 16 MiB): info slices + one page to the segment's end, sized to
//!  the block, claimed from an arena like any segment; never on a span queue.
//! ```
//! Invariants, per live segment: its spans tile it, `Σ span slices == slice_entries`,
//! every span is the info span, a page's span, or a free span on queue `slice_bin(count)`;
//! no two free spans are adjacent (coalescing); `used == pages in the segment`.

use super::arena::{
    arena_reserve_size, Arena, MemId, OsSource, ARENA_BLOCK_SIZE, ARENA_META_SIZE,
    ARENA_MIN_OBJ_SIZE, MAX_ARENAS,
};
use super::size_class::{
    page_slices, slice_bin, SEGMENT_BIN_MAX, SEGMENT_SIZE, SLICES_PER_SEGMENT, SLICE_SIZE,
};
use super::{Mimalloc, Purge, NONE};
use crate::addr::Addr;
use crate::error::AllocError;
use crate::slots::reuse_or_push;

/// `sizeof(mi_segment_t)` in CPython 3.13.0's build (FACTS §1): the header in slice 0.
pub const SEGMENT_HEADER_BYTES: u64 = 41_304;
/// The OS page size the header is rounded to first.
pub const OS_PAGE_SIZE: u64 = 4096;

/// One slice entry (`mi_slice_t`), as far as placement needs it.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub(crate) count: u32, // at a span's first slice: slices in the span (`slice_count`)
    pub(crate) first: u32, // at a span's first and last slice: the first slice's index
    pub(crate) free: bool, // at a span's first slice: the span is free (`xblock_size == 0`)
    pub(crate) page: u32,  // every slice of a page's span: the page (NONE otherwise)
    pub(crate) qnext: u32, // span queue: next span id (NONE = end)
    pub(crate) qprev: u32, // span queue: previous span id
}

const EMPTY_SLICE: Slice = Slice {
    count: 0,
    first: 0,
    free: false,
    page: NONE,
    qnext: NONE,
    qprev: NONE,
};

/// One segment (`mi_segment_t`).
#[derive(Debug, Clone)]
pub struct Segment {
    pub(crate) base: u64,            // its address (32 MiB-aligned)
    pub(crate) huge: bool,           // MI_SEGMENT_HUGE: one huge page
    pub(crate) segment_slices: u32,  // slices in the whole segment
    pub(crate) info_slices: u32,     // slices holding the header (`segment_info_slices`)
    pub(crate) slice_entries: u32,   // entries in `slices` (at most 512)
    pub(crate) used: u32,            // pages in it (the header span not counted)
    pub(crate) memid: MemId,         // where its memory came from
    pub(crate) slices: Vec<Slice>,   // the slice entries
    pub(crate) alive: bool,          // false once given back (slot reusable)
    pub(crate) purge_mask: [u64; 8], // slices whose purge is scheduled (`purge_mask`, 64 KiB bits)
    pub(crate) purge_expire: u64,    // page allocation at which it is due (0: none scheduled)
}

impl Segment {
    /// Its address.
    pub fn base(&self) -> Addr {
        Addr(self.base)
    }
    /// Bytes it spans (`mi_segment_size`).
    pub fn size(&self) -> u64 {
        self.segment_slices as u64 * SLICE_SIZE
    }
    /// True for a huge segment.
    pub fn is_huge(&self) -> bool {
        self.huge
    }
    /// Pages in it.
    pub fn used(&self) -> u32 {
        self.used
    }
    /// Slices holding its header (`segment_info_slices`): slice 0 up to this one.
    pub fn info_slices(&self) -> u32 {
        self.info_slices
    }
    /// Entries of its slice table (`slice_entries`: 512, fewer for a huge segment).
    pub fn slice_entries(&self) -> u32 {
        self.slice_entries
    }
    /// Where its memory came from (an arena's blocks, or a mapping of its own).
    pub fn memid(&self) -> MemId {
        self.memid
    }
    /// Its spans in address order: (first slice, slices, free, page or NONE).
    pub fn spans(&self) -> Vec<(u32, u32, bool, u32)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.slice_entries {
            let s = &self.slices[i as usize];
            let count = s.count.max(1);
            out.push((i, s.count, s.free, s.page));
            i += count;
        }
        out
    }
}

/// A free-span queue (`mi_span_queue_t`).
#[derive(Debug, Clone, Copy)]
pub struct SpanQueue {
    /// First span id (`segment << 10 | slice`).
    pub first: u32,
    /// Last span id.
    pub last: u32,
}

/// The id of slice `slice` of segment `seg` in span-queue links.
#[inline(always)]
pub(crate) fn span_id(seg: u32, slice: u32) -> u32 {
    seg << 10 | slice
}

#[inline(always)]
fn span_parts(id: u32) -> (u32, u32) {
    (id >> 10, id & 0x3ff)
}

/// `mi_segment_calculate_slices(required)`: (segment slices, info slices).
pub fn calculate_slices(required: u64) -> (u64, u64) {
    let isize = SEGMENT_HEADER_BYTES.div_ceil(OS_PAGE_SIZE) * OS_PAGE_SIZE;
    let isize = isize.div_ceil(SLICE_SIZE) * SLICE_SIZE;
    let info = isize / SLICE_SIZE;
    let size = if required == 0 {
        SEGMENT_SIZE
    } else {
        (required + isize).div_ceil(SLICE_SIZE) * SLICE_SIZE
    };
    (size / SLICE_SIZE, info)
}

impl<S: OsSource> Mimalloc<S> {
    fn slice(&self, id: u32) -> &Slice {
        let (s, i) = span_parts(id);
        &self.segments[s as usize].slices[i as usize]
    }

    fn slice_mut(&mut self, id: u32) -> &mut Slice {
        let (s, i) = span_parts(id);
        &mut self.segments[s as usize].slices[i as usize]
    }

    /// `mi_span_queue_push`: the free span at `id` on the front of queue `q`.
    fn span_queue_push(&mut self, q: usize, id: u32) {
        let first = self.spans[q].first;
        {
            let s = self.slice_mut(id);
            s.qprev = NONE;
            s.qnext = first;
            s.free = true;
        }
        if first != NONE {
            self.slice_mut(first).qprev = id;
        } else {
            self.spans[q].last = id;
        }
        self.spans[q].first = id;
    }

    /// `mi_span_queue_delete`.
    fn span_queue_delete(&mut self, q: usize, id: u32) {
        let (next, prev) = {
            let s = self.slice(id);
            (s.qnext, s.qprev)
        };
        if prev != NONE {
            self.slice_mut(prev).qnext = next;
        }
        if self.spans[q].first == id {
            self.spans[q].first = next;
        }
        if next != NONE {
            self.slice_mut(next).qprev = prev;
        }
        if self.spans[q].last == id {
            self.spans[q].last = prev;
        }
        let s = self.slice_mut(id);
        s.qnext = NONE;
        s.qprev = NONE;
        s.free = false;
    }

    /// `mi_segment_span_free`: slices `[index, index + count)` of `seg` become one free
    /// span, on the front of its queue (normal segments).
    fn span_free(&mut self, seg: u32, index: u32, count: u32) {
        let count = count.max(1);
        self.flat_set(seg, index, index.saturating_add(count), NONE);
        let segment = &mut self.segments[seg as usize];
        let huge = segment.huge;
        {
            let s = &mut segment.slices[index as usize];
            s.count = count;
            s.first = index;
            s.page = NONE;
        }
        let last = (index + count - 1).min(segment.slice_entries - 1);
        if last > index {
            let l = &mut segment.slices[last as usize];
            l.first = index;
            l.count = 0;
            l.page = NONE;
        }
        if huge {
            segment.slices[index as usize].free = true;
        } else {
            self.span_queue_push(slice_bin(count as u64), span_id(seg, index));
        }
    }

    /// `mi_segment_span_allocate`: slices `[index, index + count)` of `seg` become a page
    /// (or, with `page == NONE`, the header span).
    fn span_allocate(&mut self, seg: u32, index: u32, count: u32, page: u32) {
        let segment = &mut self.segments[seg as usize];
        let end = (index + count).min(segment.slice_entries);
        for i in index..end {
            let s = &mut segment.slices[i as usize];
            s.page = page;
            s.first = index;
            s.free = false;
            s.count = 0;
        }
        segment.slices[index as usize].count = count;
        self.flat_set(seg, index, end, page);
        let now = self.page_allocs;
        let segment = &mut self.segments[seg as usize];
        if page != NONE && !segment.huge {
            // mi_segment_ensure_committed → mi_segment_commit: the span's slices leave the
            // purge mask, and the expiry moves back when any was scheduled
            if purge_bits(&mut segment.purge_mask, index, end, false) {
                segment.purge_expire = now + 1;
            }
        }
        if page != NONE {
            segment.used += 1;
            let p = &mut self.pages[page as usize];
            p.segment = seg;
            p.slice_index = index;
            p.slice_count = count;
            p.set_block_size(count as u64 * SLICE_SIZE);
        }
    }

    /// `mi_segment_schedule_purge` of slices `[index, index + count)` (a freed page's
    /// coalesced span), the delay read by the [`Purge`] policy.
    fn schedule_purge(&mut self, seg: u32, index: u32, count: u32) {
        let now = self.page_allocs;
        let segment = &mut self.segments[seg as usize];
        let end = (index + count).min(segment.slice_entries);
        purge_bits(
            &mut segment.purge_mask,
            index.max(segment.info_slices),
            end,
            true,
        );
        if segment.purge_expire == 0 {
            segment.purge_expire = now + 1;
        } else if segment.purge_expire <= now {
            // expired and not yet purged: purged now (purge_extend_delay is long over)
            self.try_purge(seg, true);
        }
    }

    /// `mi_segment_try_purge(segment, force)`: every run of the purge mask madvised, when
    /// the policy says the delay is over (or `force`).
    pub(crate) fn try_purge(&mut self, seg: u32, force: bool) {
        let now = self.page_allocs;
        let segment = &mut self.segments[seg as usize];
        if segment.purge_mask == [0; 8] || self.purge != Purge::Due {
            return;
        }
        if !force && now < segment.purge_expire {
            return;
        }
        let mask = std::mem::replace(&mut segment.purge_mask, [0; 8]);
        segment.purge_expire = 0;
        let base = segment.base;
        let mut i = 0;
        while i < SLICES_PER_SEGMENT as u32 {
            if !bit(&mask, i) {
                i += 1;
                continue;
            }
            let start = i;
            while i < SLICES_PER_SEGMENT as u32 && bit(&mask, i) {
                i += 1;
            }
            let (lo, hi) = (
                base + start as u64 * SLICE_SIZE,
                base + i as u64 * SLICE_SIZE,
            );
            self.purged_bytes += self.resident.purge(lo, hi);
            self.purge_calls += 1;
        }
    }

    /// `mi_arenas_try_purge`: freed segments whose arena purge is due, given back.
    fn arena_try_purge(&mut self) {
        if self.purge != Purge::Due || self.arena_purge.is_empty() {
            return;
        }
        let now = self.page_allocs;
        let mut k = 0;
        while k < self.arena_purge.len() {
            let (lo, hi, due) = self.arena_purge[k];
            if due <= now {
                self.arena_purge.swap_remove(k);
                self.purged_bytes += self.resident.purge(lo, hi);
                self.purge_calls += 1;
            } else {
                k += 1;
            }
        }
    }

    /// A purge the recording shows (`madvise(addr, size, MADV_DONTNEED)` from
    /// `_mi_os_purge_ex`): those OS pages given back, and the scheduled purge it was
    /// taken off the segment's mask (or the arena's); counted in
    /// [`unscheduled_purges`](Mimalloc::unscheduled_purges) when the model had none there.
    pub fn os_purge(&mut self, addr: Addr, size: u64) {
        let (lo, hi) = (addr.0, addr.0.saturating_add(size));
        self.purged_bytes += self.resident.purge(lo, hi);
        self.purge_calls += 1;
        let mut scheduled = false;
        if let Some(k) = self
            .arena_purge
            .iter()
            .position(|&(a, b, _)| a <= lo && hi <= b)
        {
            self.arena_purge.swap_remove(k);
            scheduled = true;
        } else if let Some(seg) = self.segment_at(lo) {
            let segment = &mut self.segments[seg as usize];
            let first = ((lo - segment.base) / SLICE_SIZE) as u32;
            let end = (hi - segment.base).div_ceil(SLICE_SIZE) as u32;
            let all =
                (first..end.min(SLICES_PER_SEGMENT as u32)).all(|i| bit(&segment.purge_mask, i));
            if all && end > first {
                purge_bits(&mut segment.purge_mask, first, end, false);
                if segment.purge_mask == [0; 8] {
                    segment.purge_expire = 0;
                }
                scheduled = true;
            }
        }
        if !scheduled {
            self.unscheduled_purges += 1;
        }
    }

    /// `mi_segment_span_free_coalesce`: a page's span freed, merged with free neighbours.
    fn span_free_coalesce(&mut self, seg: u32, index: u32) {
        let segment = &self.segments[seg as usize];
        if segment.huge {
            let count = segment.slices[index as usize].count;
            self.segments[seg as usize].slices[index as usize].free = true;
            self.flat_set(seg, index, index.saturating_add(count), NONE);
            return;
        }
        let mut index = index;
        let mut count = segment.slices[index as usize].count;
        let next = index + count;
        if next < segment.slice_entries && segment.slices[next as usize].free {
            let n = segment.slices[next as usize].count;
            count += n;
            self.span_queue_delete(slice_bin(n as u64), span_id(seg, next));
        }
        if index > 0 {
            let segment = &self.segments[seg as usize];
            let prev = segment.slices[(index - 1) as usize].first;
            if segment.slices[prev as usize].free {
                let n = segment.slices[prev as usize].count;
                count += n;
                self.span_queue_delete(slice_bin(n as u64), span_id(seg, prev));
                index = prev;
            }
        }
        self.span_free(seg, index, count);
        self.schedule_purge(seg, index, count);
    }

    /// `mi_segments_page_find_and_allocate`: the first fitting free span, best bin first.
    fn find_and_allocate(&mut self, slices: u32) -> Option<u32> {
        let mut q = slice_bin(slices as u64);
        while q <= SEGMENT_BIN_MAX {
            let mut id = self.spans[q].first;
            while id != NONE {
                let s = *self.slice(id);
                if s.count >= slices {
                    self.span_queue_delete(q, id);
                    let (seg, index) = span_parts(id);
                    if s.count > slices {
                        // mi_segment_slice_split: the rest is a free span of its own
                        self.span_free(seg, index + slices, s.count - slices);
                        self.segments[seg as usize].slices[index as usize].count = slices;
                    }
                    let page = self.new_page_slot();
                    self.span_allocate(seg, index, slices, page);
                    return Some(page);
                }
                id = s.qnext;
            }
            q += 1;
        }
        None
    }

    /// `mi_segments_page_alloc`: a page span of `required` bytes, from a free span or a
    /// fresh segment.
    pub(crate) fn segments_page_alloc(&mut self, required: u64) -> Result<u32, AllocError> {
        self.page_allocs += 1;
        self.arena_try_purge();
        let slices = page_slices(required) as u32;
        let page = match self.find_and_allocate(slices) {
            Some(p) => p,
            None => {
                self.segment_alloc(0)?;
                self.find_and_allocate(slices)
                    .ok_or(AllocError::OutOfAddressSpace {
                        what: format!("a page of {slices} slices in a fresh segment"),
                    })?
            }
        };
        self.try_purge(self.pages[page as usize].segment, false);
        Ok(page)
    }

    /// `mi_segment_huge_page_alloc`: a segment of its own holding one page of `size` bytes.
    pub(crate) fn huge_page_alloc(&mut self, size: u64) -> Result<u32, AllocError> {
        let seg = self.segment_alloc(size)?;
        let segment = &self.segments[seg as usize];
        let (info, total) = (segment.info_slices, segment.segment_slices);
        let page = self.new_page_slot();
        self.span_allocate(seg, info, total - info, page);
        Ok(page)
    }

    /// `mi_segment_alloc(required)`: a normal segment (`required == 0`) with its free span
    /// queued, or a huge one sized for `required` bytes; its model index.
    fn segment_alloc(&mut self, required: u64) -> Result<u32, AllocError> {
        let (segment_slices, info_slices) = calculate_slices(required);
        let size = segment_slices * SLICE_SIZE;
        let (base, memid) = self.arena_alloc(size)?;
        let slice_entries = segment_slices.min(SLICES_PER_SEGMENT) as u32;
        let segment = Segment {
            base: base.0,
            huge: required != 0,
            segment_slices: segment_slices as u32,
            info_slices: info_slices as u32,
            slice_entries,
            used: 0,
            memid,
            slices: vec![EMPTY_SLICE; slice_entries as usize],
            alive: true,
            purge_mask: [0; 8],
            purge_expire: 0,
        };
        let seg = reuse_or_push(&mut self.segments, &mut self.free_segment_ids, segment);
        match memid {
            MemId::Arena { arena, block, .. } => {
                self.arenas[arena as usize].segment_at[block as usize] = seg
            }
            MemId::Os => {
                self.os_segments.insert(base.0 >> 25, seg);
                self.resident.map(base.0, size);
            }
        }
        self.mapped_bytes += size;
        // mi_segment_init writes the segment and its slice table
        self.resident.touch(base.0, base.0 + SEGMENT_HEADER_BYTES);
        self.peak_mapped_bytes = self.peak_mapped_bytes.max(self.mapped());
        self.span_allocate(seg, 0, info_slices as u32, NONE);
        if required == 0 {
            self.span_free(seg, info_slices as u32, slice_entries - info_slices as u32);
        }
        Ok(seg)
    }

    /// `mi_segment_free`: its free spans off the queues, its memory back to the arena.
    fn segment_free(&mut self, seg: u32) {
        let segment = &self.segments[seg as usize];
        if !segment.huge {
            for (i, count, free, _) in segment.spans() {
                if free {
                    self.span_queue_delete(slice_bin(count as u64), span_id(seg, i));
                }
            }
        }
        self.flat_set(seg, 0, u32::MAX, NONE);
        let segment = &mut self.segments[seg as usize];
        segment.alive = false;
        let (base, size, memid) = (segment.base, segment.size(), segment.memid);
        segment.purge_mask = [0; 8];
        segment.purge_expire = 0;
        self.mapped_bytes -= size;
        match memid {
            MemId::Arena {
                arena,
                block,
                blocks,
            } => {
                let a = &mut self.arenas[arena as usize];
                a.unclaim(block, blocks);
                a.segment_at[block as usize] = NONE;
                // _mi_arena_free: mi_arena_schedule_purge (10 × purge_delay)
                let end = base + blocks as u64 * ARENA_BLOCK_SIZE;
                self.arena_purge.push((base, end, self.page_allocs + 1));
            }
            MemId::Os => {
                self.os_segments.remove(&(base >> 25));
                self.os.munmap(Addr(base), size);
                self.resident.unmap(base);
            }
        }
        self.free_segment_ids.push(seg);
    }

    /// `_mi_segment_page_free`: the page's span back to its segment, the segment back to
    /// its arena when it holds no page any more.
    pub(crate) fn segment_page_free(&mut self, page: u32) {
        let (seg, index) = {
            let p = &self.pages[page as usize];
            (p.segment, p.slice_index)
        };
        self.drop_page_slot(page);
        self.span_free_coalesce(seg, index);
        let segment = &mut self.segments[seg as usize];
        segment.used -= 1;
        if segment.used == 0 {
            self.segment_free(seg);
        }
    }

    /// `_mi_arena_alloc_aligned(size, MI_SEGMENT_ALIGN)`: first fit in the arenas in order,
    /// else a new arena, else a mapping of its own.
    fn arena_alloc(&mut self, size: u64) -> Result<(Addr, MemId), AllocError> {
        let blocks = size.div_ceil(ARENA_BLOCK_SIZE) as u32;
        if size >= ARENA_MIN_OBJ_SIZE {
            for (i, a) in self.arenas.iter_mut().enumerate() {
                if let Some(b) = a.try_claim(blocks) {
                    let addr = a.start + b as u64 * ARENA_BLOCK_SIZE;
                    // mi_arena_alloc_at: its blocks' scheduled purge is dropped
                    let end = addr.0 + blocks as u64 * ARENA_BLOCK_SIZE;
                    self.arena_purge
                        .retain(|&(lo, hi, _)| hi <= addr.0 || end <= lo);
                    return Ok((addr, arena_memid(i, b, blocks)));
                }
            }
            let reserve = arena_reserve_size(self.arenas.len());
            if self.arenas.len() <= MAX_ARENAS - 4 && reserve >= size {
                let start = self.os.mmap(reserve, SEGMENT_SIZE)?;
                let meta = self.os.mmap(ARENA_META_SIZE, 1)?;
                self.resident.map(start.0, reserve);
                // the arena's descriptor (mi_arena_t and its bitmaps), written at once
                self.resident.map(meta.0, ARENA_META_SIZE);
                self.resident.touch(meta.0, meta.0 + ARENA_META_SIZE);
                let mut a = Arena::new(start, reserve, meta);
                let b = a.try_claim(blocks).ok_or(AllocError::OutOfAddressSpace {
                    what: format!("{size} bytes in a fresh arena of {reserve}"),
                })?;
                if self.arenas.is_empty() {
                    self.flat_base = start.0;
                    self.flat_pages = vec![NONE; (reserve / SLICE_SIZE) as usize];
                }
                self.arenas.push(a);
                return Ok((
                    start + b as u64 * ARENA_BLOCK_SIZE,
                    arena_memid(self.arenas.len() - 1, b, blocks),
                ));
            }
        }
        Ok((self.os.mmap(size, SEGMENT_SIZE)?, MemId::Os))
    }

    /// The segment (model index) whose first 32 MiB hold `addr` (`_mi_ptr_segment`).
    #[inline]
    pub(crate) fn segment_at(&self, addr: u64) -> Option<u32> {
        for a in &self.arenas {
            if let Some(b) = a.block_of(addr) {
                let s = a.segment_at[b as usize];
                return (s != NONE).then_some(s);
            }
        }
        self.os_segments.get(&(addr >> 25)).copied()
    }

    /// Slices `[index, end)` of segment `seg` now belong to `page` (or, `NONE`, to no
    /// page) in the first arena's flat slice table (segments elsewhere have none).
    fn flat_set(&mut self, seg: u32, index: u32, end: u32, page: u32) {
        let segment = &self.segments[seg as usize];
        let end = end.min(segment.slice_entries);
        let k = segment.base.wrapping_sub(self.flat_base) / SLICE_SIZE;
        if self.flat_pages.is_empty() || k >= self.flat_pages.len() as u64 {
            return;
        }
        let len = self.flat_pages.len();
        let (from, to) = (k as usize + index as usize, k as usize + end as usize);
        if let Some(slots) = self.flat_pages.get_mut(from..to.min(len)) {
            slots.fill(page);
        }
    }

    /// The page whose span holds `addr`, if any (`_mi_segment_page_of`): for the first
    /// arena, one look in its flat slice table (`flat_pages[(addr - start) >> 16]`, kept
    /// equal to the segments' slice entries); else segment, then slice.
    #[inline(always)]
    pub(crate) fn page_at(&self, addr: u64) -> Option<u32> {
        let k = addr.wrapping_sub(self.flat_base) / SLICE_SIZE;
        if let Some(&id) = self.flat_pages.get(k as usize) {
            return (id != NONE).then_some(id);
        }
        self.page_at_slow(addr)
    }

    #[inline(never)]
    fn page_at_slow(&self, addr: u64) -> Option<u32> {
        let seg = self.segment_at(addr)?;
        let segment = &self.segments[seg as usize];
        let i = ((addr - segment.base) / SLICE_SIZE) as usize;
        let page = segment.slices.get(i)?.page;
        (page != NONE).then_some(page)
    }
}

/// Bit `i` of a segment's slice mask.
fn bit(mask: &[u64; 8], i: u32) -> bool {
    (mask[(i / 64) as usize] >> (i % 64)) & 1 == 1
}

/// Sets (`on`) or clears bits `[lo, hi)` of a slice mask; true when any was set before.
fn purge_bits(mask: &mut [u64; 8], lo: u32, hi: u32, on: bool) -> bool {
    let mut any = false;
    for i in lo..hi.min(SLICES_PER_SEGMENT as u32) {
        let (w, b) = ((i / 64) as usize, 1u64 << (i % 64));
        any |= mask[w] & b != 0;
        if on {
            mask[w] |= b;
        } else {
            mask[w] &= !b;
        }
    }
    any
}

fn arena_memid(arena: usize, block: u32, blocks: u32) -> MemId {
    MemId::Arena {
        arena: arena as u32,
        block,
        blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_takes_one_slice_and_a_huge_segment_fits_its_block() {
        assert_eq!(calculate_slices(0), (512, 1));
        // the segments trace's 20000001-byte block: good size 20 MiB, + one header slice
        assert_eq!(calculate_slices(20 << 20), (321, 1));
    }
}
