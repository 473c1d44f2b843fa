//! The model's invariants, checked as the equations of [`super`]'s documentation (the
//! property tests call [`Mimalloc::check_invariants`] after every step of random programs).

use super::page::NOT_LIVE;
use super::segment::span_id;
use super::size_class::{bin, slice_bin, BIN_FULL, BIN_HUGE, SLICE_SIZE};
use super::{arena::OsSource, Mimalloc, NONE};

impl<S: OsSource> Mimalloc<S> {
    /// The first arena's flat slice table says what the segments do: `flat_pages[k] ==
    /// id` for every slice `k` of every live page `id`'s span (within its segment's slice
    /// entries) in that arena, and `NONE` everywhere else.
    fn check_flat_pages(&self) -> Result<(), String> {
        let mut want = vec![NONE; self.flat_pages.len()];
        for (id, p) in self.pages.iter().enumerate().filter(|(_, p)| p.alive) {
            let seg = &self.segments[p.segment as usize];
            let k0 = seg.base.wrapping_sub(self.flat_base) / SLICE_SIZE;
            if k0 >= want.len() as u64 {
                continue;
            }
            let end = (p.slice_index + p.slice_count).min(seg.slice_entries);
            for i in p.slice_index..end {
                if let Some(w) = want.get_mut(k0 as usize + i as usize) {
                    *w = id as u32;
                }
            }
        }
        match want.iter().zip(&self.flat_pages).position(|(w, f)| w != f) {
            None => Ok(()),
            Some(k) => Err(format!(
                "the flat slice table says page {} at slice {k} of the first arena, the \
                 pages say {}",
                self.flat_pages[k] as i64, want[k] as i64
            )),
        }
    }

    /// `resident_bytes == 4096 · Σ OS pages written and not purged` (recounted), every live
    /// page's blocks to its capacity resident, every live segment's header resident, and
    /// no purge scheduled over a live page's slice.
    fn check_resident(&self) -> Result<(), String> {
        let counted = self.resident.recount();
        if counted != self.resident.bytes() {
            return Err(format!(
                "resident: {counted} bytes recounted, the model keeps {}",
                self.resident.bytes()
            ));
        }
        for s in self.segments() {
            let hdr = super::segment::SEGMENT_HEADER_BYTES;
            let want = hdr.div_ceil(super::resident::OS_PAGE) * super::resident::OS_PAGE;
            if self.resident.bytes_in(s.base, s.base + hdr) != want {
                return Err(format!("segment {}: its header is not resident", s.base()));
            }
        }
        for p in self.pages.iter().filter(|p| p.alive) {
            let end = p.start + p.capacity as u64 * p.xblock_size;
            let lo = p.start - p.start % super::resident::OS_PAGE;
            let want = end.saturating_sub(lo).div_ceil(super::resident::OS_PAGE)
                * super::resident::OS_PAGE;
            if self.resident.bytes_in(p.start, end) != want {
                return Err(format!(
                    "page at {:#x}: its {} blocks handed out are not all resident",
                    p.start, p.capacity
                ));
            }
            let seg = &self.segments[p.segment as usize];
            for i in p.slice_index..(p.slice_index + p.slice_count).min(512) {
                if (seg.purge_mask[(i / 64) as usize] >> (i % 64)) & 1 == 1 {
                    return Err(format!(
                        "page at {:#x}: slice {i} of its span is scheduled for a purge",
                        p.start
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks every invariant; the first broken one, in words.
    ///
    /// # Errors
    /// The equation that does not hold, with the page, segment or span involved.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut on_queue = vec![0u32; self.pages.len()];
        let mut used_per_segment = vec![0u32; self.segments.len()];
        let mut live = 0u64;
        for (q, queue) in self.queues.iter().enumerate() {
            let (mut id, mut prev) = (queue.first, NONE);
            while id != NONE {
                let p = &self.pages[id as usize];
                if !p.alive {
                    return Err(format!("queue {q} holds dead page slot {id}"));
                }
                if p.prev != prev {
                    return Err(format!("queue {q}: page {id}'s prev link is broken"));
                }
                on_queue[id as usize] += 1;
                let want = if p.in_full {
                    BIN_FULL
                } else if q == BIN_HUGE {
                    BIN_HUGE
                } else {
                    bin(p.xblock_size)
                };
                if want != q {
                    return Err(format!(
                        "page {id} ({}-byte blocks, in_full {}) sits on queue {q}, not {want}",
                        p.xblock_size, p.in_full
                    ));
                }
                self.check_page(id)?;
                live += p.used as u64;
                used_per_segment[p.segment as usize] += 1;
                prev = id;
                id = p.next;
            }
            if queue.last != prev {
                return Err(format!("queue {q}: last is not the last page"));
            }
        }
        for (id, p) in self.pages.iter().enumerate() {
            if p.alive && on_queue[id] != 1 {
                return Err(format!("page {id} is on {} queues, not 1", on_queue[id]));
            }
        }
        if live != self.live_blocks {
            return Err(format!(
                "Σ used == {live} but the heap counts {} live blocks",
                self.live_blocks
            ));
        }
        self.check_flat_pages()?;
        self.check_resident()?;
        let mut on_span_queue = std::collections::HashSet::new();
        for (q, sq) in self.spans.iter().enumerate() {
            let mut id = sq.first;
            while id != NONE {
                let (seg, i) = (id >> 10, id & 0x3ff);
                let s = &self.segments[seg as usize].slices[i as usize];
                if slice_bin(s.count as u64) != q || !s.free {
                    return Err(format!(
                        "span queue {q} holds segment {seg} slice {i} of {} slices (free {})",
                        s.count, s.free
                    ));
                }
                on_span_queue.insert(id);
                id = s.qnext;
            }
        }
        let mut extents = Vec::new();
        for (si, seg) in self.segments.iter().enumerate() {
            if !seg.alive {
                continue;
            }
            extents.push((seg.base, seg.base + seg.size()));
            if seg.used != used_per_segment[si] {
                return Err(format!(
                    "segment {} counts {} pages but holds {}",
                    seg.base(),
                    seg.used,
                    used_per_segment[si]
                ));
            }
            let mut total = 0u64;
            let mut prev_free = false;
            for (i, count, free, page) in seg.spans() {
                if count == 0 {
                    return Err(format!(
                        "segment {} slice {i}: a span of 0 slices",
                        seg.base()
                    ));
                }
                total += count as u64;
                if free && prev_free {
                    return Err(format!(
                        "segment {} slice {i}: two free spans side by side (not coalesced)",
                        seg.base()
                    ));
                }
                prev_free = free;
                if free && !seg.huge && !on_span_queue.contains(&span_id(si as u32, i)) {
                    return Err(format!(
                        "segment {} slice {i}: a free span on no span queue",
                        seg.base()
                    ));
                }
                if page != NONE {
                    let p = &self.pages[page as usize];
                    if p.segment != si as u32 || p.slice_index != i || p.slice_count != count {
                        return Err(format!(
                            "segment {} slice {i}: the span and page {page} disagree",
                            seg.base()
                        ));
                    }
                } else if !free && i != 0 {
                    return Err(format!(
                        "segment {} slice {i}: a used span without a page",
                        seg.base()
                    ));
                }
            }
            let want = if seg.huge {
                seg.segment_slices as u64
            } else {
                seg.slice_entries as u64
            };
            if total != want {
                return Err(format!(
                    "segment {}: spans cover {total} slices, not {want}",
                    seg.base()
                ));
            }
        }
        extents.sort_unstable();
        for w in extents.windows(2) {
            if w[0].1 > w[1].0 {
                return Err(format!(
                    "segments at {:#x} and {:#x} overlap",
                    w[0].0, w[1].0
                ));
            }
        }
        Ok(())
    }

    /// The equations of one page.
    fn check_page(&self, id: u32) -> Result<(), String> {
        let p = &self.pages[id as usize];
        let top = p.free.last().map_or(super::page::NO_TOP, |&b| u32::from(b));
        if p.free_top != top {
            return Err(format!(
                "page {id}: free_top {} is not the head of free ({top})",
                p.free_top
            ));
        }
        let nf = p.free.len() + p.local_free.len();
        if p.used as usize + nf != p.capacity as usize {
            return Err(format!(
                "page {id}: used {} + |free| {} + |local_free| {} != capacity {}",
                p.used,
                p.free.len(),
                p.local_free.len(),
                p.capacity
            ));
        }
        if p.capacity > p.reserved {
            return Err(format!(
                "page {id}: capacity {} > reserved {}",
                p.capacity, p.reserved
            ));
        }
        let mut seen = vec![false; p.capacity as usize];
        for &i in p.free.iter().chain(&p.local_free) {
            if i as u32 >= p.capacity || std::mem::replace(&mut seen[i as usize], true) {
                return Err(format!(
                    "page {id}: block {i} listed twice or beyond capacity"
                ));
            }
            if p.req[i as usize] != NOT_LIVE {
                return Err(format!("page {id}: block {i} is both free and live"));
            }
        }
        let live = p.req.iter().filter(|&&r| r != NOT_LIVE).count();
        if live != p.used as usize {
            return Err(format!(
                "page {id}: {live} live blocks but used == {}",
                p.used
            ));
        }
        if let Some(i) = p.req[p.capacity as usize..]
            .iter()
            .position(|&r| r != NOT_LIVE)
        {
            return Err(format!(
                "page {id}: block {} beyond capacity is live",
                p.capacity as usize + i
            ));
        }
        let seg = &self.segments[p.segment as usize];
        let span_start = seg.base + p.slice_index as u64 * SLICE_SIZE;
        let span_end = span_start + p.slice_count as u64 * SLICE_SIZE;
        if p.start < span_start || p.start + p.reserved as u64 * p.xblock_size > span_end {
            return Err(format!("page {id}: blocks spill out of its span"));
        }
        if p.slice_index + p.slice_count > seg.segment_slices {
            return Err(format!("page {id}: its span spills out of its segment"));
        }
        Ok(())
    }
}
