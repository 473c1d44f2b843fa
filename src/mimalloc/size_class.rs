//! Size classes ("bins"), page kinds and where a page's first block sits: mimalloc 2.1.2's
//! `mi_bin` (page-queue.c), the queue block sizes of `MI_PAGE_QUEUES_EMPTY` (init.c),
//! `_mi_os_good_alloc_size` (os.c) and `_mi_segment_page_start_from_slice` (segment.c),
//! for 64-bit x86 where `MI_MAX_ALIGN_SIZE` (16) > 8, so `MI_ALIGN2W` is defined.
//!
//! ```text
//!  wsize = ceil(size / 8)                       bin                 block (bytes)
//!  0..=1                                        1                   8
//!  2..=8  (MI_ALIGN2W: rounded to even)         (wsize + 1) & !1    16 32 48 64
//!  9..=16384 (MI_MEDIUM_OBJ_WSIZE_MAX)          w = wsize - 1, b = bsr(w):
//!                                               (b << 2) + ((w >> (b - 2)) & 3) - 3
//!                                                                   4 classes per power of two
//!  more                                         MI_BIN_HUGE (73)    one block = one page
//!  queue MI_BIN_FULL (74) holds pages with no free block of every class
//! ```
//! Invariants: `bin_size(bin(n)) >= n` for `1 <= n <= MI_MEDIUM_OBJ_SIZE_MAX`, and
//! `bin(bin_size(b)) == b` for every bin `b` that some size reaches.

/// `MI_INTPTR_SIZE`: bytes in a machine word.
pub const WORD: u64 = 8;
/// `MI_SEGMENT_SLICE_SIZE`: 64 KiB (`1 << 16`).
pub const SLICE_SIZE: u64 = 1 << 16;
/// `MI_SEGMENT_SIZE`: 32 MiB (`1 << 25`), also the segments' alignment and the arena block.
pub const SEGMENT_SIZE: u64 = 1 << 25;
/// `MI_SLICES_PER_SEGMENT`: 512.
pub const SLICES_PER_SEGMENT: u64 = SEGMENT_SIZE / SLICE_SIZE;
/// `MI_SMALL_PAGE_SIZE`: one slice.
pub const SMALL_PAGE_SIZE: u64 = SLICE_SIZE;
/// `MI_MEDIUM_PAGE_SIZE`: 512 KiB (8 slices).
pub const MEDIUM_PAGE_SIZE: u64 = 8 * SLICE_SIZE;
/// `MI_SMALL_OBJ_SIZE_MAX`: 16 KiB (a small page holds at least 4 blocks).
pub const SMALL_OBJ_SIZE_MAX: u64 = SMALL_PAGE_SIZE / 4;
/// `MI_MEDIUM_OBJ_SIZE_MAX`: 128 KiB.
pub const MEDIUM_OBJ_SIZE_MAX: u64 = MEDIUM_PAGE_SIZE / 4;
/// `MI_LARGE_OBJ_SIZE_MAX`: 16 MiB (half a segment); more is a huge block in its own segment.
pub const LARGE_OBJ_SIZE_MAX: u64 = SEGMENT_SIZE / 2;
/// `MI_SMALL_SIZE_MAX`: 1024 bytes (128 words), the sizes `mi_malloc` serves from
/// `pages_free_direct` without computing the bin.
pub const SMALL_SIZE_MAX: u64 = 128 * WORD;
/// `MI_BIN_HUGE`: the queue of large and huge pages.
pub const BIN_HUGE: usize = 73;
/// `MI_BIN_FULL`: the queue of pages with no free block.
pub const BIN_FULL: usize = BIN_HUGE + 1;
/// Number of page queues in a heap (`pages[MI_BIN_FULL + 1]`).
pub const QUEUES: usize = BIN_FULL + 1;
/// `MI_MEDIUM_OBJ_WSIZE_MAX`.
const MEDIUM_OBJ_WSIZE_MAX: u64 = MEDIUM_OBJ_SIZE_MAX / WORD;

/// The block size of each page queue in words (`MI_PAGE_QUEUES_EMPTY`, init.c); the last
/// two are the huge and full queues' markers (`MI_MEDIUM_OBJ_WSIZE_MAX + 1`, `+ 2`).
const QUEUE_WORDS: [u64; QUEUES] = [
    1,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    10,
    12,
    14,
    16,
    20,
    24,
    28,
    32,
    40,
    48,
    56,
    64,
    80,
    96,
    112,
    128,
    160,
    192,
    224,
    256,
    320,
    384,
    448,
    512,
    640,
    768,
    896,
    1024,
    1280,
    1536,
    1792,
    2048,
    2560,
    3072,
    3584,
    4096,
    5120,
    6144,
    7168,
    8192,
    10240,
    12288,
    14336,
    16384,
    20480,
    24576,
    28672,
    32768,
    40960,
    49152,
    57344,
    65536,
    81920,
    98304,
    114688,
    131072,
    163840,
    196608,
    229376,
    262144,
    327680,
    393216,
    458752,
    524288,
    // huge, full
    MEDIUM_OBJ_WSIZE_MAX + 1,
    MEDIUM_OBJ_WSIZE_MAX + 2,
];

/// `_mi_wsize_from_size`: words needed for `size` bytes.
#[inline(always)]
pub fn wsize(size: u64) -> u64 {
    size.div_ceil(WORD)
}

/// `mi_bin(size)`: the page queue a request of `size` bytes is served from.
#[inline]
pub fn bin(size: u64) -> usize {
    let w = wsize(size);
    if w <= 1 {
        1
    } else if w <= 8 {
        ((w + 1) & !1) as usize
    } else if w > MEDIUM_OBJ_WSIZE_MAX {
        BIN_HUGE
    } else {
        let w = w - 1;
        let b = 63 - w.leading_zeros() as u64; // mi_bsr
        (((b << 2) + ((w >> (b - 2)) & 3)) - 3) as usize
    }
}

/// The block size of queue `bin` in bytes (`_mi_bin_size`).
#[inline]
pub fn bin_size(bin: usize) -> u64 {
    QUEUE_WORDS[bin] * WORD
}

/// `mi_bin` for every request of at most [`SMALL_SIZE_MAX`] bytes, by word count: the
/// table `pages_free_direct` amounts to (`DIRECT[wsize(n)] == bin(n)`).
pub fn direct_bins() -> [u8; 129] {
    let mut t = [0u8; 129];
    for (w, slot) in t.iter_mut().enumerate() {
        *slot = bin(w as u64 * WORD) as u8;
    }
    t
}

/// `_mi_os_good_alloc_size`: a large request rounded up to 4 KiB (below 512 KiB), 64 KiB
/// (below 2 MiB), 256 KiB (below 8 MiB), 1 MiB (below 32 MiB) or 4 MiB.
pub fn good_alloc_size(size: u64) -> u64 {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    let align = if size < 512 * KIB {
        4 * KIB
    } else if size < 2 * MIB {
        64 * KIB
    } else if size < 8 * MIB {
        256 * KIB
    } else if size < 32 * MIB {
        MIB
    } else {
        4 * MIB
    };
    if size >= u64::MAX - align {
        return size;
    }
    size.div_ceil(align) * align
}

/// `_mi_segment_page_start_from_slice`: how far into its first slice a page's block 0
/// sits, so that small pages do not all start on an OS page (`3·bs` up to 64 bytes, `bs`
/// up to 512, else 0; always a multiple of the block size).
#[inline]
pub fn page_start_offset(xblock_size: u64) -> u64 {
    if xblock_size < WORD {
        0
    } else if xblock_size <= 64 {
        3 * xblock_size
    } else if xblock_size <= 512 {
        xblock_size
    } else {
        0
    }
}

/// The span size of a page in slices (`mi_segments_page_alloc`): `required` rounded up to
/// a slice, or to a medium page above 512 KiB.
pub fn page_slices(required: u64) -> u64 {
    let align = if required > MEDIUM_PAGE_SIZE {
        MEDIUM_PAGE_SIZE
    } else {
        SLICE_SIZE
    };
    required.div_ceil(align) * align / SLICE_SIZE
}

/// `mi_slice_bin`: the span queue a free span of `slice_count` slices sits in (0..=35).
#[inline]
pub fn slice_bin(slice_count: u64) -> usize {
    if slice_count <= 1 {
        return slice_count as usize;
    }
    let sc = slice_count - 1;
    let s = 63 - sc.leading_zeros() as u64;
    if s <= 2 {
        return (sc + 1) as usize;
    }
    (((s << 2) | ((sc >> (s - 2)) & 3)) - 4) as usize
}

/// `MI_SEGMENT_BIN_MAX`: the last span queue (types.h sizes `spans[]` for 1024-slice
/// segments; with 512 slices the largest span is in bin 31).
pub const SEGMENT_BIN_MAX: usize = 35;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_fits_its_bin_and_bins_are_fixed_points() {
        for n in 0..=MEDIUM_OBJ_SIZE_MAX {
            let b = bin(n);
            assert!(b < BIN_HUGE, "size {n}");
            assert!(bin_size(b) >= n.max(1), "size {n} bin {b}");
            assert_eq!(bin(bin_size(b)), b, "bin {b}");
            if b > 1 {
                // the previous reachable class is smaller than the request
                let prev = (1..b).rev().find(|&p| bin(bin_size(p)) == p).unwrap();
                assert!(bin_size(prev) < n, "size {n}: bin {b} not the smallest");
            }
        }
        assert_eq!(bin(MEDIUM_OBJ_SIZE_MAX + 1), BIN_HUGE);
    }

    #[test]
    fn the_direct_table_agrees_with_bin() {
        let t = direct_bins();
        for n in 0..=SMALL_SIZE_MAX {
            assert_eq!(t[wsize(n) as usize] as usize, bin(n), "size {n}");
        }
    }

    #[test]
    fn slice_bins_grow_with_the_span_and_end_at_the_segment() {
        let mut last = 0;
        for n in 0..=SLICES_PER_SEGMENT {
            let b = slice_bin(n);
            assert!(b >= last);
            last = b;
        }
        // 512 slices: bin 31 (the queue array is sized for 1024-slice segments)
        assert_eq!(slice_bin(SLICES_PER_SEGMENT), 31);
        assert!(slice_bin(SLICES_PER_SEGMENT) <= SEGMENT_BIN_MAX);
    }

    #[test]
    fn page_offsets_are_block_multiples() {
        for bs in [8u64, 16, 48, 64, 80, 512, 640, 114688] {
            assert_eq!(page_start_offset(bs) % bs, 0);
        }
    }
}
