//! What of mimalloc's memory is resident, and when mimalloc gives it back (mimalloc 2.1.2
//! segment.c `mi_segment_span_free`, `mi_segment_schedule_purge`, `mi_segment_try_purge`,
//! `mi_segment_commit`; os.c `_mi_os_purge_ex`; options.c `purge_delay` = 10 ms,
//! `purge_decommits` = 1; arena.c `mi_arena_schedule_purge`).
//!
//! ```text
//!  arena (1 GiB, mmap PROT_READ|WRITE, MAP_NORESERVE: committed, nothing resident yet)
//!   segment: header written (mi_segment_t and its slice table: 41,304 bytes -> 11 OS pages)
//!   page:    block 0 .. block capacity written (each extension writes its blocks' links)
//!   page freed -> its coalesced span's slices set in segment.purge_mask, purge_expire set
//!   span reused -> its slices leave purge_mask (mi_segment_commit), expire pushed back
//!   a page allocated from the segment once the delay is over (mi_segment_try_purge):
//!            every run of purge_mask -> madvise(MADV_DONTNEED): those OS pages not resident
//!   segment freed -> back to its arena, still resident until the arena purges it (100 ms)
//!   munmap (a segment mapped on its own) -> gone
//! ```
//! On Linux `_mi_os_purge_ex` decommits with `madvise(MADV_DONTNEED)` and reports that no
//! recommit is needed, so the commit mask never changes (the arena is committed whole):
//! what changes is only which OS pages are resident, which this module keeps, one bit
//! per 4 KiB page of every arena and OS-mapped segment.
//!
//! When a purge is due depends on the wall clock (`purge_delay` is 10 ms of real time),
//! so the model takes it from a [`Purge`] policy: a pinned replay applies the recording's
//! own purges (its `N` lines); a model in its own address space has no clock and follows
//! [`Purge::Due`] unless told otherwise.
//!
//! Invariant: `bytes() == 4096 · Σ regions' set bits`, and every set bit lies in a region
//! (an arena or an OS-mapped segment) that is mapped.

/// The OS page: the unit of residency.
pub const OS_PAGE: u64 = 4096;

/// When a scheduled purge happens, for want of mimalloc's wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// Only where the recording shows one (a pinned replay: each `N … _mi_os_purge_ex`
    /// line is a purge; the model holds none of its own).
    Recorded,
    /// The 10 ms delay is over by the next page allocation: a span freed after page
    /// allocation `t` is purged at allocation `t + 1` from its segment, unless a page
    /// took part of it in between (mimalloc then pushes the expiry back, so the rest goes
    /// at the allocation after); a segment freed to its arena is purged at the next page
    /// allocation. This is mimalloc's rule with the clock read as "one page allocation
    /// takes at least the delay": for a program that frees a structure and then works on,
    /// the purges it makes, and the low bound of resident bytes.
    Due,
    /// No purge ever (every allocation within 10 ms of the previous one): freed spans
    /// stay resident until their segment is unmapped, the high bound.
    Never,
}

/// One mapped region (an arena or an OS-mapped segment) and its OS pages written.
#[derive(Debug, Clone)]
struct Region {
    base: u64,      // its start
    size: u64,      // bytes
    bits: Vec<u64>, // one bit per OS page: written and not given back
}

impl Region {
    /// The indices of its OS pages that overlap `[lo, hi)` (empty when none do).
    fn pages(&self, lo: u64, hi: u64) -> std::ops::Range<usize> {
        let (a, b) = (lo.max(self.base), hi.min(self.base + self.size));
        if a >= b {
            return 0..0;
        }
        ((a - self.base) / OS_PAGE) as usize..(b - self.base).div_ceil(OS_PAGE) as usize
    }
}

/// The OS pages mimalloc has written and not given back, over its regions.
#[derive(Debug, Clone, Default)]
pub struct Resident {
    regions: Vec<Region>, // in the order mapped
    pages: u64,           // set bits over every region
}

impl Resident {
    /// A region of `size` bytes at `base` was mapped (nothing resident in it yet).
    pub fn map(&mut self, base: u64, size: u64) {
        let words = size.div_ceil(OS_PAGE).div_ceil(64) as usize;
        self.regions.push(Region {
            base,
            size,
            bits: vec![0; words],
        });
    }

    /// The region at `base` was unmapped: its pages are given back.
    pub fn unmap(&mut self, base: u64) {
        if let Some(i) = self.regions.iter().position(|r| r.base == base) {
            let r = self.regions.swap_remove(i);
            self.pages -= r
                .bits
                .iter()
                .map(|w| u64::from(w.count_ones()))
                .sum::<u64>();
        }
    }

    /// Bytes written and not given back.
    pub fn bytes(&self) -> u64 {
        self.pages * OS_PAGE
    }

    /// The OS pages of `[lo, hi)` resident in the regions, in bytes.
    pub fn bytes_in(&self, lo: u64, hi: u64) -> u64 {
        let mut n = 0;
        self.each_page(lo, hi, |bits, i| {
            n += (bits[i / 64] >> (i % 64)) & 1;
        });
        n * OS_PAGE
    }

    /// `[lo, hi)` written: its OS pages (partly covered ones too) become resident.
    pub fn touch(&mut self, lo: u64, hi: u64) {
        let mut added = 0;
        self.each_page_mut(lo, hi, |bits, i| {
            let (w, b) = (i / 64, 1u64 << (i % 64));
            if bits[w] & b == 0 {
                bits[w] |= b;
                added += 1;
            }
        });
        self.pages += added;
    }

    /// `madvise([lo, hi), MADV_DONTNEED)`: its OS pages are given back; returns the bytes
    /// that were resident.
    pub fn purge(&mut self, lo: u64, hi: u64) -> u64 {
        let mut gone = 0;
        self.each_page_mut(lo, hi, |bits, i| {
            let (w, b) = (i / 64, 1u64 << (i % 64));
            if bits[w] & b != 0 {
                bits[w] &= !b;
                gone += 1;
            }
        });
        self.pages -= gone;
        gone * OS_PAGE
    }

    /// Calls `f(bits, page index)` for every OS page overlapping `[lo, hi)` in a region.
    fn each_page(&self, lo: u64, hi: u64, mut f: impl FnMut(&[u64], usize)) {
        for r in &self.regions {
            for i in r.pages(lo, hi) {
                f(&r.bits, i);
            }
        }
    }

    /// [`each_page`](Self::each_page), mutably.
    fn each_page_mut(&mut self, lo: u64, hi: u64, mut f: impl FnMut(&mut [u64], usize)) {
        for r in &mut self.regions {
            for i in r.pages(lo, hi) {
                f(&mut r.bits, i);
            }
        }
    }

    /// Recounts the set bits (for the invariant `bytes() == 4096 · Σ set bits`).
    pub fn recount(&self) -> u64 {
        self.regions
            .iter()
            .flat_map(|r| r.bits.iter())
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>()
            * OS_PAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_pages_stay_until_purged_or_unmapped() {
        let mut r = Resident::default();
        r.map(1 << 30, 1 << 20);
        r.touch((1 << 30) + 10, (1 << 30) + 4097); // two pages, partly covered
        assert_eq!(r.bytes(), 2 * OS_PAGE);
        r.touch(1 << 30, (1 << 30) + 100); // already resident
        assert_eq!(r.bytes(), 2 * OS_PAGE);
        assert_eq!(
            r.purge((1 << 30) + OS_PAGE, (1 << 30) + 3 * OS_PAGE),
            OS_PAGE
        );
        assert_eq!(r.bytes(), OS_PAGE);
        r.touch(0, 100); // outside every region: nothing
        assert_eq!(r.bytes(), OS_PAGE);
        assert_eq!(r.recount(), r.bytes());
        r.unmap(1 << 30);
        assert_eq!(r.bytes(), 0);
    }
}
