//! `__libc_free` and `_int_free`: where a freed chunk goes.
//!
//! ```text
//!  mmapped chunk      munmap; if size > mmap_threshold (≤ max): mmap_threshold = size,
//!                     trim_threshold = 2 * size (the dynamic threshold)
//!  size ≤ 0x410       tcache bin, if it holds < 7
//!  size ≤ max_fast    fastbin (LIFO; "double free or corruption (fasttop)" if already on top)
//!  otherwise          merge with a free previous / next chunk, then to the head of the
//!                     unsorted bin, or into top when it borders top; if the merged size is
//!                     ≥ 64 KiB: malloc_consolidate (fastbins), then systrim when
//!                     size(top) ≥ trim_threshold (give back whole pages above top_pad + MINSIZE)
//! ```

use super::chunk::State;
use super::params::FASTBIN_CONSOLIDATION_THRESHOLD;
use super::Glibc;

impl Glibc {
    /// `_int_free` of the in-use chunk at node `p`.
    #[inline]
    pub(super) fn int_free(&mut self, p: u32) {
        self.int_free_g(p, self.heap.n(p).size_g());
    }

    /// `_int_free` of the in-use chunk at node `p`, of `g` granules: the tcache and
    /// fastbin pushes here, the merge out of line.
    #[inline(always)]
    pub(super) fn int_free_g(&mut self, p: u32, g: u32) {
        debug_assert_eq!(g, self.heap.n(p).size_g());
        let size = self.heap.bytes(g);
        let tc = self.tidx(size);
        if self.tcache_usable(tc) && (self.tcache_counts[tc] as u64) < self.params.tcache_count {
            self.tcache_put(p, tc);
            return;
        }
        if size <= self.max_fast {
            let f = self.params.fastbin_index(size);
            self.fastbin_push(p, f);
            return;
        }
        self.free_merge(p);
    }

    /// The rest of `_int_free` for a chunk neither cached nor fast: merged and binned,
    /// then the fastbins consolidated and top trimmed after a merge of 64 KiB or more.
    #[inline(never)]
    fn free_merge(&mut self, p: u32) {
        let merged = self.merge_and_bin(p);
        if merged >= FASTBIN_CONSOLIDATION_THRESHOLD {
            if self.have_fastchunks {
                self.malloc_consolidate();
            }
            if self.top_size() >= self.trim_threshold {
                self.systrim(self.top_pad);
            }
        }
    }

    /// `systrim(pad)`: gives back the whole pages of top above `pad + MINSIZE`.
    pub(super) fn systrim(&mut self, pad: u64) {
        let page = self.vm.page_size();
        let top_size = self.top_size();
        let top_area = top_size as i64 - self.params.min_chunk as i64 - 1;
        if top_area <= pad as i64 {
            return;
        }
        let extra = (top_area as u64 - pad) & !(page - 1);
        if extra == 0 {
            return;
        }
        if self.vm.sbrk(-(extra as i64)).is_ok() {
            self.heap_pages.clear_from(self.vm.brk().0);
            let t = self.top;
            let s = self.heap.size(t) - extra;
            self.heap.set_size(t, s);
            self.note_mapped();
        }
    }

    /// `munmap_chunk` of the mmapped chunk whose user pointer is `mem`, with the dynamic
    /// threshold update `__libc_free` makes first when `update_threshold`.
    pub(super) fn free_mapped(&mut self, mem: u64, update_threshold: bool) {
        let Some(m) = self.mmaps.remove(&mem) else {
            return;
        };
        let chunk_size = m.len - (mem - 2 * self.params.size_sz - m.base);
        if update_threshold && !self.no_dyn_threshold {
            let nomask = chunk_size | 2; // IS_MMAPPED
            if nomask > self.mmap_threshold && nomask <= self.params.mmap_threshold_max {
                self.mmap_threshold = chunk_size;
                self.trim_threshold = 2 * chunk_size;
            }
        }
        self.stats.live_bytes -= m.req;
        self.stats.live_blocks -= 1;
        let _ = self.vm.munmap(crate::addr::Addr(m.base), m.len);
        self.n_mmaps -= 1;
        self.note_mapped();
    }

    /// Marks node `p` free in the statistics.
    #[inline]
    pub(super) fn account_free(&mut self, p: u32) -> u64 {
        let req = self.heap.take_req(p);
        self.stats.live_bytes -= req;
        self.stats.live_blocks -= 1;
        debug_assert_eq!(self.heap.n(p).state(), State::InUse);
        req
    }
}
