//! The constants of one glibc build: malloc/malloc.c's macros and `mp_` defaults.
//!
//! ```text
//!  request n ──request2size──▶ chunk size nb = max(MINSIZE, (n + SIZE_SZ + 15) & ~15)
//!  nb ≤ tcache_max_chunk       tcache bin  csize2tidx(nb) = (nb - MINSIZE + 15) / 16   (64 bins × 7)
//!  nb ≤ max_fast               fastbin     fastbin_index(nb) = (nb >> fastbin_shift) - 2
//!  nb < min_large_size         small bin   smallbin_index(nb) = (nb >> 4) + smallbin_correction
//!  otherwise                   large bin   largebin_index(nb)  (64 bins of growing width)
//!  nb ≥ mmap_threshold         mmap, tried only when top cannot serve (sysmalloc)
//! ```
//! Everything here is a preset of plain data: x86-64 and i386 differ only in numbers.

/// Bins in the arena (`NBINS`): bin 0 unused, bin 1 the unsorted bin, 2..63 small, 64..126 large.
pub const NBINS: usize = 128;
/// The unsorted bin's index (`unsorted_chunks(av)` is `bin_at(av, 1)`).
pub const UNSORTED: usize = 1;
/// Fastbins in the arena (`NFASTBINS`).
pub const NFASTBINS: usize = 10;
/// `FASTBIN_CONSOLIDATION_THRESHOLD`: freeing a chunk at least this big consolidates fastbins.
pub const FASTBIN_CONSOLIDATION_THRESHOLD: u64 = 65536;
/// `MAX_ITERS`: unsorted chunks processed by one pass of `_int_malloc` at most.
pub const MAX_ITERS: u32 = 10000;

/// The constants of one glibc build (malloc/malloc.c and its sysdeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlibcParams {
    /// `SIZE_SZ`: bytes in a chunk's size field (the pointer width).
    pub size_sz: u64,
    /// `MALLOC_ALIGNMENT`.
    pub malloc_alignment: u64,
    /// `MINSIZE`: the smallest chunk.
    pub min_chunk: u64,
    /// `TCACHE_MAX_BINS`.
    pub tcache_bins: u64,
    /// `mp_.tcache_count`: entries a tcache bin holds.
    pub tcache_count: u64,
    /// The chunk carved for `tcache_perthread_struct` before the first request.
    pub tcache_struct_chunk: u64,
    /// `mp_.top_pad` (`DEFAULT_TOP_PAD`).
    pub top_pad: u64,
    /// `mp_.tcache_unsorted_limit` (0 = no limit).
    pub tcache_unsorted_limit: u64,
    /// `global_max_fast`: the largest fastbin chunk (`set_max_fast(DEFAULT_MXFAST)`).
    pub max_fast: u64,
    /// `MAX_FAST_SIZE`: the largest value `mallopt(M_MXFAST)` accepts.
    pub max_fast_size: u64,
    /// Shift of `fastbin_index` (4 with 8-byte `SIZE_SZ`, 3 with 4-byte).
    pub fastbin_shift: u32,
    /// `SMALLBIN_CORRECTION` (1 when `MALLOC_ALIGNMENT > 2 * SIZE_SZ`).
    pub smallbin_correction: u64,
    /// `MIN_LARGE_SIZE`: the smallest chunk of a large bin.
    pub min_large_size: u64,
    /// `largebin_index_64` (true) or `largebin_index_32_big` (false).
    pub largebin_64: bool,
    /// `mp_.mmap_threshold` at start (`DEFAULT_MMAP_THRESHOLD_MIN`, 128 KiB).
    pub mmap_threshold: u64,
    /// `DEFAULT_MMAP_THRESHOLD_MAX`: the dynamic threshold never rises above it.
    pub mmap_threshold_max: u64,
    /// `mp_.trim_threshold` at start (`DEFAULT_TRIM_THRESHOLD`, 128 KiB).
    pub trim_threshold: u64,
    /// `mp_.n_mmaps_max` (`DEFAULT_MMAP_MAX`).
    pub n_mmaps_max: u64,
    /// `PTRDIFF_MAX`: larger requests fail (`checked_request2size`).
    pub ptrdiff_max: u64,
}

impl GlibcParams {
    /// glibc 2.36 on x86-64.
    pub fn v2_36_x86_64() -> GlibcParams {
        GlibcParams {
            size_sz: 8,
            malloc_alignment: 16,
            min_chunk: 32,
            tcache_bins: 64,
            tcache_count: 7,
            tcache_struct_chunk: 0x290, // request2size(sizeof(tcache_perthread_struct) = 64*2 + 64*8)
            top_pad: 128 * 1024,
            tcache_unsorted_limit: 0,
            max_fast: 0x80,     // (64 * 8 / 4 + 8) & ~15
            max_fast_size: 160, // 80 * 8 / 4
            fastbin_shift: 4,
            smallbin_correction: 0,
            min_large_size: 0x400, // 64 << 4
            largebin_64: true,
            mmap_threshold: 128 * 1024,
            mmap_threshold_max: 32 << 20, // 4 MiB * sizeof(long)
            trim_threshold: 128 * 1024,
            n_mmaps_max: 65536,
            ptrdiff_max: i64::MAX as u64,
        }
    }

    /// glibc 2.36 on i386 (`MALLOC_ALIGNMENT` is 16 there too, since 2.26, so chunks
    /// start 8 bytes past a 16-byte boundary and small bins are shifted by one).
    pub fn v2_36_i386() -> GlibcParams {
        GlibcParams {
            size_sz: 4,
            malloc_alignment: 16,
            min_chunk: 16,
            tcache_bins: 64,
            tcache_count: 7,
            tcache_struct_chunk: 0x190, // request2size(64*2 + 64*4)
            top_pad: 128 * 1024,
            tcache_unsorted_limit: 0,
            max_fast: 0x40,    // (64 * 4 / 4 + 4) & ~15
            max_fast_size: 80, // 80 * 4 / 4
            fastbin_shift: 3,
            smallbin_correction: 1,
            min_large_size: 0x3f0, // (64 - 1) << 4
            largebin_64: false,
            mmap_threshold: 128 * 1024,
            mmap_threshold_max: 512 * 1024,
            trim_threshold: 128 * 1024,
            n_mmaps_max: 65536,
            ptrdiff_max: i32::MAX as u64,
        }
    }

    /// `request2size`: the chunk size serving a request of `n` bytes (no overflow check).
    pub fn chunk_size(&self, n: u64) -> u64 {
        let mask = self.malloc_alignment - 1;
        (n.saturating_add(self.size_sz + mask) & !mask).max(self.min_chunk)
    }

    /// `checked_request2size`: `None` for requests beyond `PTRDIFF_MAX`.
    pub fn checked_request2size(&self, n: u64) -> Option<u64> {
        (n <= self.ptrdiff_max).then(|| self.chunk_size(n))
    }

    /// The largest chunk size the tcache holds (`tidx2usize(TCACHE_MAX_BINS - 1)` + `SIZE_SZ`).
    pub fn tcache_max_chunk(&self) -> u64 {
        self.min_chunk + (self.tcache_bins - 1) * self.malloc_alignment
    }

    /// `csize2tidx`: the tcache bin of a chunk size.
    #[inline]
    pub fn csize2tidx(&self, nb: u64) -> usize {
        // MALLOC_ALIGNMENT is a power of two: a shift, not a division, on the hot path
        ((nb - self.min_chunk + self.malloc_alignment - 1)
            >> self.malloc_alignment.trailing_zeros()) as usize
    }

    /// `fastbin_index`.
    #[inline]
    pub fn fastbin_index(&self, nb: u64) -> usize {
        ((nb >> self.fastbin_shift) - 2) as usize
    }

    /// `in_smallbin_range`.
    #[inline]
    pub fn in_smallbin_range(&self, nb: u64) -> bool {
        nb < self.min_large_size
    }

    /// `smallbin_index`.
    #[inline]
    pub fn smallbin_index(&self, nb: u64) -> usize {
        ((nb >> 4) + self.smallbin_correction) as usize
    }

    /// `largebin_index` (`largebin_index_64` or `largebin_index_32_big`).
    #[inline]
    pub fn largebin_index(&self, sz: u64) -> usize {
        let (first, base6) = if self.largebin_64 { (48, 48) } else { (45, 49) };
        (if (sz >> 6) <= first {
            base6 + (sz >> 6)
        } else if (sz >> 9) <= 20 {
            91 + (sz >> 9)
        } else if (sz >> 12) <= 10 {
            110 + (sz >> 12)
        } else if (sz >> 15) <= 4 {
            119 + (sz >> 15)
        } else if (sz >> 18) <= 2 {
            124 + (sz >> 18)
        } else {
            126
        }) as usize
    }

    /// `bin_index`: small or large.
    #[inline]
    pub fn bin_index(&self, sz: u64) -> usize {
        if self.in_smallbin_range(sz) {
            self.smallbin_index(sz)
        } else {
            self.largebin_index(sz)
        }
    }

    /// `set_max_fast(s)`: the `global_max_fast` that `mallopt(M_MXFAST, s)` sets
    /// (an impossibly small value for `s ≤ MALLOC_ALIGN_MASK - SIZE_SZ`, 2.32 on).
    pub fn max_fast_for(&self, s: u64) -> u64 {
        if s <= self.malloc_alignment - 1 - self.size_sz {
            self.min_chunk / 2
        } else {
            (s + self.size_sz) & !(self.malloc_alignment - 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_sizes_and_indices_follow_malloc_c() {
        let p = GlibcParams::v2_36_x86_64();
        assert_eq!(p.chunk_size(0), 32);
        assert_eq!(p.chunk_size(24), 32);
        assert_eq!(p.chunk_size(25), 48);
        assert_eq!(p.chunk_size(992), 1008);
        assert_eq!(p.tcache_max_chunk(), 0x410);
        assert_eq!(p.csize2tidx(0x410), 63);
        assert_eq!(p.fastbin_index(0x80), 6);
        assert_eq!(p.smallbin_index(0x3f0), 63);
        assert_eq!(p.largebin_index(0x400), 64);
        assert_eq!(p.largebin_index(0xc30), 96); // 48 + (0xc30 >> 6)
        assert_eq!(p.largebin_index(0xc40), 97); // 91 + (0xc40 >> 9)
        assert_eq!(p.max_fast_for(128), p.max_fast);
        assert_eq!(p.checked_request2size(u64::MAX), None);
        assert_eq!(p.max_fast, p.max_fast_for(64 * p.size_sz / 4));
    }

    #[test]
    fn i386_sizes_and_indices_follow_malloc_c() {
        let p = GlibcParams::v2_36_i386();
        assert_eq!(p.chunk_size(0), 16);
        assert_eq!(p.chunk_size(12), 16);
        assert_eq!(p.chunk_size(13), 32);
        assert_eq!(p.smallbin_index(16), 2);
        assert_eq!(p.largebin_index(0x3f0), 49 + 15);
        assert_eq!(p.max_fast, p.max_fast_for(64 * p.size_sz / 4));
    }
}
