//! Pages and their queues (mimalloc 2.1.2 page.c, page-queue.c): the three lists of a
//! page, extension, the per-class page queues with the full queue, and retirement.
//!
//! ```text
//!  page (a span of slices; block 0 at page_start_offset(bs) into its first slice)
//!  +------+----+----+----+----+----+----+----+- ... -+----+---------------+
//!  |offset| b0 | b1 | b2 | b3 | b4 | b5 | b6 |       |b(capacity-1) never used  ... b(reserved-1)
//!  +------+----+----+----+----+----+----+----+- ... -+----+---------------+
//!   free       -> b4 -> b5 -> NULL        malloc pops here
//!   local_free -> b1 -> b3 -> NULL        free pushes here (not on `free`!)
//!  when `free` is empty: local_free becomes free (LIFO: last freed first); when both are
//!  empty and capacity < reserved: extend by max(4096 / bs, 4) blocks, in address order.
//!
//!  heap->pages[bin]  (one queue per size class, newest page first)
//!     first -> page -> page -> ... -> last
//!  heap->pages[MI_BIN_FULL]: pages found with no free block; a free into one moves it
//!     back to the END of its class queue (`_mi_page_unfull`)
//!  a page whose last block is freed is retired: freed at once, unless it is the only page
//!     of its (small or medium) queue; then it waits 1+16 (small) / 1+4 (medium) calls of
//!     `_mi_heap_collect_retired` (one per fresh page the heap needs), and goes if still empty
//! ```
//! Invariant (types.h, one thread so `|thread_free| == 0`), for every page:
//! `used + |free| + |local_free| == capacity <= reserved`, and every block of the three
//! is one of the first `capacity` blocks, `page_start <= b < page_start + reserved·bs`.

use super::size_class::{
    bin, bin_size, page_start_offset, BIN_FULL, MEDIUM_OBJ_SIZE_MAX, SLICE_SIZE, SMALL_OBJ_SIZE_MAX,
};
use super::{arena::OsSource, Mimalloc, NONE};
use crate::error::AllocError;

/// `MI_MAX_EXTEND_SIZE`: an extension touches at most one OS page of blocks…
pub const MAX_EXTEND_SIZE: u64 = 4 * 1024;
/// `MI_MIN_EXTEND`: …but adds at least 4 blocks.
pub const MIN_EXTEND: u64 = 4;
/// `MI_RETIRE_CYCLES`.
pub const RETIRE_CYCLES: u8 = 16;
/// [`Page::free_top`] of an empty `free` list.
pub const NO_TOP: u32 = u32::MAX;
/// A block that no live allocation holds, in [`Page::req`].
pub const NOT_LIVE: u32 = u32::MAX;
/// A live block whose request does not fit in 32 bits (only a huge page's one block can
/// be one): its size is in [`Page::big_req`].
pub const BIG: u32 = u32::MAX - 1;

/// What one block of a page is, for a reader of the model (a heap map, an explanation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockState {
    /// Allocated; the bytes its request asked for.
    Live {
        /// Bytes requested.
        requested: u64,
    },
    /// On the page's `free` list (the next mallocs pop these), at this position from the head.
    Free {
        /// 0 = the head.
        position: u32,
    },
    /// On the page's `local_free` list (freed since the last collection), at this position.
    LocalFree {
        /// 0 = the head.
        position: u32,
    },
    /// Beyond `capacity`: never handed to a list (no extension has reached it).
    Untouched,
}

/// One page (`mi_page_t`): blocks of one size in a span of slices.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub(crate) segment: u32,         // the segment (model index) it lies in
    pub(crate) slice_index: u32,     // its first slice
    pub(crate) slice_count: u32,     // slices in its span
    pub(crate) xblock_size: u64,     // bytes per block (the span's size until initialised)
    pub(crate) magic: u64,           // ⌈2^64 / xblock_size⌉: block index = (magic · off) >> 64
    pub(crate) start: u64,           // address of block 0 (`_mi_page_start`)
    pub(crate) reserved: u32,        // blocks that fit in the page
    pub(crate) capacity: u32,        // blocks handed to the lists so far (extensions)
    pub(crate) used: u32,            // blocks allocated (live)
    pub(crate) free: Vec<u16>,       // `free`, head last: the next malloc pops `free.last()`
    pub(crate) free_top: u32,        // `free.last()`, NO_TOP when empty (the pop reads it first)
    pub(crate) local_free: Vec<u16>, // `local_free`, head last
    pub(crate) req: Vec<u32>, // per block: bytes requested by its live allocation, NOT_LIVE or BIG
    pub(crate) big_req: u64,  // the request of the block marked BIG
    pub(crate) in_full: bool, // `flags.in_full`: on the full queue
    pub(crate) retire_expire: u8, // `retire_expire`: collect rounds left while retired
    pub(crate) next: u32,     // next page in its queue
    pub(crate) prev: u32,     // previous page in its queue
    pub(crate) alive: bool,   // the slot holds a page (else it is on the slot free list)
}

impl Page {
    /// Bytes per block (`mi_page_block_size`).
    pub fn block_size(&self) -> u64 {
        self.xblock_size
    }
    /// Address of block 0.
    pub fn start(&self) -> u64 {
        self.start
    }
    /// `reserved`.
    pub fn reserved(&self) -> u32 {
        self.reserved
    }
    /// `capacity`.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }
    /// `used`.
    pub fn used(&self) -> u32 {
        self.used
    }
    /// Sets the block size (and the reciprocal [`block_index`](Self::block_index) uses).
    #[inline]
    pub(crate) fn set_block_size(&mut self, bs: u64) {
        self.xblock_size = bs;
        self.magic = (u64::MAX / bs.max(1)).wrapping_add(1);
    }

    /// The index of the block `off` bytes past block 0 starts in, and whether `off` is that
    /// block's start: `off / block_size` as one multiplication by the stored reciprocal
    /// (exact for every `off < 2^32`, Lemire, Kaser & Kurz 2019), a division beyond.
    #[inline(always)]
    pub(crate) fn block_index(&self, off: u64) -> (u64, bool) {
        let i = if off >> 32 == 0 {
            ((u128::from(self.magic) * u128::from(off)) >> 64) as u64
        } else {
            off / self.xblock_size
        };
        (i, i.wrapping_mul(self.xblock_size) == off)
    }

    /// Marks block `i` live with a request of `size` bytes.
    #[inline(always)]
    pub(crate) fn set_req(&mut self, i: u16, size: u64) {
        self.req[i as usize] = if size < u64::from(BIG) {
            size as u32
        } else {
            self.big_req = size;
            BIG
        };
    }

    /// The bytes requested by live block `i` (`None` when it is not live).
    #[inline(always)]
    pub(crate) fn req_bytes(&self, i: u16) -> Option<u64> {
        match self.req[i as usize] {
            NOT_LIVE => None,
            BIG => Some(self.big_req),
            r => Some(u64::from(r)),
        }
    }

    /// Address of block `i`.
    #[inline(always)]
    pub fn block(&self, i: u16) -> u64 {
        self.start + i as u64 * self.xblock_size
    }
    /// Blocks on `free` (`|free|`).
    pub fn free_len(&self) -> u32 {
        self.free.len() as u32
    }
    /// Blocks on `local_free` (`|local_free|`).
    pub fn local_free_len(&self) -> u32 {
        self.local_free.len() as u32
    }
    /// The `free` list, head first.
    pub fn free_list(&self) -> impl Iterator<Item = u64> + '_ {
        self.free.iter().rev().map(|&i| self.block(i))
    }
    /// The `local_free` list, head first.
    pub fn local_free_list(&self) -> impl Iterator<Item = u64> + '_ {
        self.local_free.iter().rev().map(|&i| self.block(i))
    }
    /// Block `i`'s state (`None` beyond `reserved`). Walks the lists: for one block; use
    /// [`blocks`](Self::blocks) for all of them.
    pub fn block_state(&self, i: u16) -> Option<BlockState> {
        if u32::from(i) >= self.reserved {
            return None;
        }
        if let Some(requested) = self.req_bytes(i) {
            return Some(BlockState::Live { requested });
        }
        let pos = |l: &Vec<u16>| l.iter().rev().position(|&b| b == i).map(|p| p as u32);
        Some(if let Some(position) = pos(&self.free) {
            BlockState::Free { position }
        } else if let Some(position) = pos(&self.local_free) {
            BlockState::LocalFree { position }
        } else {
            BlockState::Untouched
        })
    }

    /// Every block of the page, in address order: (address, state). Reads the lists once.
    pub fn blocks(&self) -> Vec<(u64, BlockState)> {
        let mut st = vec![BlockState::Untouched; self.reserved as usize];
        for (k, &i) in self.free.iter().rev().enumerate() {
            st[i as usize] = BlockState::Free { position: k as u32 };
        }
        for (k, &i) in self.local_free.iter().rev().enumerate() {
            st[i as usize] = BlockState::LocalFree { position: k as u32 };
        }
        for (i, s) in st.iter_mut().enumerate() {
            if let Some(requested) = self.req_bytes(i as u16) {
                *s = BlockState::Live { requested };
            }
        }
        st.into_iter()
            .enumerate()
            .map(|(i, s)| (self.block(i as u16), s))
            .collect()
    }

    /// `mi_page_immediate_available`: `free` is not empty.
    #[inline(always)]
    pub fn immediate_available(&self) -> bool {
        !self.free.is_empty()
    }
    /// The queue it belongs in (`mi_page_queue_of`).
    pub fn queue(&self) -> usize {
        if self.in_full {
            BIN_FULL
        } else {
            bin(self.xblock_size)
        }
    }
    /// True while the page is retired (empty, kept for `retire_expire` more rounds).
    pub fn retire_expire(&self) -> u8 {
        self.retire_expire
    }
    /// Its span: (first slice, slices).
    pub fn span(&self) -> (u32, u32) {
        (self.slice_index, self.slice_count)
    }
    /// The segment (model index) it lies in.
    pub fn segment_index(&self) -> u32 {
        self.segment
    }
    /// True when the page is on the full queue.
    pub fn in_full(&self) -> bool {
        self.in_full
    }

    /// Keeps `free_top == free.last()` after a change of `free`.
    #[inline(always)]
    pub(crate) fn sync_top(&mut self) {
        self.free_top = self.free.last().map_or(NO_TOP, |&b| u32::from(b));
    }

    /// `_mi_page_free_collect` for one thread: `local_free` becomes `free` when `free` is
    /// empty; with `force` it is put in front of a non-empty `free` as well.
    #[inline]
    pub(crate) fn free_collect(&mut self, force: bool) {
        if self.local_free.is_empty() {
            return;
        }
        if self.free.is_empty() {
            std::mem::swap(&mut self.free, &mut self.local_free);
            self.sync_top();
        } else if force {
            // head last: local_free's blocks go on top of free's
            let lf = std::mem::take(&mut self.local_free);
            self.free.extend_from_slice(&lf);
            self.sync_top();
            self.local_free = lf;
            self.local_free.clear();
        }
    }

    /// `mi_page_extend_free`: up to `max(4096 / bs, 4)` never-used blocks onto the empty
    /// `free` list, lowest address first.
    pub(crate) fn extend_free(&mut self) {
        if !self.free.is_empty() || self.capacity >= self.reserved {
            return;
        }
        let bsize = self.xblock_size;
        let max_extend = if bsize >= MAX_EXTEND_SIZE {
            MIN_EXTEND
        } else {
            (MAX_EXTEND_SIZE / bsize).max(MIN_EXTEND)
        };
        let extend = ((self.reserved - self.capacity) as u64).min(max_extend) as u32;
        let (lo, hi) = (self.capacity, self.capacity + extend);
        self.free.extend((lo..hi).rev().map(|i| i as u16));
        self.sync_top();
        self.capacity = hi;
    }
}

/// A page queue (`mi_page_queue_t`).
#[derive(Debug, Clone, Copy)]
pub struct PageQueue {
    /// First page (`first`; the one `pages_free_direct` points at).
    pub first: u32,
    /// Last page.
    pub last: u32,
    /// Its block size (`block_size`).
    pub block_size: u64,
}

impl<S: OsSource> Mimalloc<S> {
    /// A slot for a new page.
    pub(crate) fn new_page_slot(&mut self) -> u32 {
        if let Some(id) = self.free_page_ids.pop() {
            self.pages[id as usize].alive = true;
            id
        } else {
            self.pages.push(Page {
                free_top: NO_TOP,
                alive: true,
                next: NONE,
                prev: NONE,
                ..Page::default()
            });
            (self.pages.len() - 1) as u32
        }
    }

    /// Gives a page's slot back (its lists keep their buffers for the next page).
    pub(crate) fn drop_page_slot(&mut self, id: u32) {
        let p = &mut self.pages[id as usize];
        p.alive = false;
        p.free.clear();
        p.free_top = NO_TOP;
        p.local_free.clear();
        p.req.clear();
        p.used = 0;
        p.capacity = 0;
        p.reserved = 0;
        p.in_full = false;
        p.retire_expire = 0;
        p.next = NONE;
        p.prev = NONE;
        self.free_page_ids.push(id);
    }

    /// `mi_page_init`: blocks of `block_size` bytes, then the first extension.
    pub(crate) fn page_init(&mut self, id: u32, block_size: u64) {
        let base = self.segments[self.pages[id as usize].segment as usize].base;
        let p = &mut self.pages[id as usize];
        p.set_block_size(block_size);
        let offset = page_start_offset(block_size);
        let page_size = p.slice_count as u64 * SLICE_SIZE - offset;
        p.start = base + p.slice_index as u64 * SLICE_SIZE + offset;
        p.reserved = (page_size / block_size) as u32;
        p.capacity = 0;
        p.used = 0;
        p.req.clear();
        p.req.resize(p.reserved as usize, NOT_LIVE);
        p.extend_free();
        self.page_resident_update(id);
    }

    /// Page `id`'s blocks handed to its lists so far are written (after an extension):
    /// their OS pages become resident ([`resident`](super::resident)).
    pub(crate) fn page_resident_update(&mut self, id: u32) {
        let p = &self.pages[id as usize];
        let end = p.start + p.capacity as u64 * p.xblock_size;
        self.resident.touch(p.start, end);
    }

    /// `mi_page_queue_push`: `id` at the front of queue `q`.
    pub(crate) fn queue_push(&mut self, q: usize, id: u32) {
        let first = self.queues[q].first;
        {
            let p = &mut self.pages[id as usize];
            p.in_full = q == BIN_FULL;
            p.next = first;
            p.prev = NONE;
        }
        if first != NONE {
            self.pages[first as usize].prev = id;
        } else {
            self.queues[q].last = id;
        }
        self.queues[q].first = id;
    }

    /// `mi_page_queue_remove`.
    pub(crate) fn queue_remove(&mut self, q: usize, id: u32) {
        let (next, prev) = {
            let p = &self.pages[id as usize];
            (p.next, p.prev)
        };
        if prev != NONE {
            self.pages[prev as usize].next = next;
        }
        if next != NONE {
            self.pages[next as usize].prev = prev;
        }
        let queue = &mut self.queues[q];
        if queue.last == id {
            queue.last = prev;
        }
        if queue.first == id {
            queue.first = next;
        }
        let p = &mut self.pages[id as usize];
        p.next = NONE;
        p.prev = NONE;
        p.in_full = false;
    }

    /// `mi_page_queue_enqueue_from`: `id` from queue `from` to the END of queue `to`.
    pub(crate) fn queue_enqueue_from(&mut self, to: usize, from: usize, id: u32) {
        self.queue_remove(from, id);
        let last = self.queues[to].last;
        {
            let p = &mut self.pages[id as usize];
            p.prev = last;
            p.next = NONE;
            p.in_full = to == BIN_FULL;
        }
        if last != NONE {
            self.pages[last as usize].next = id;
        } else {
            self.queues[to].first = id;
        }
        self.queues[to].last = id;
    }

    /// `mi_page_to_full`.
    pub(crate) fn page_to_full(&mut self, id: u32, q: usize) {
        if self.pages[id as usize].in_full {
            return;
        }
        self.queue_enqueue_from(BIN_FULL, q, id);
        self.pages[id as usize].free_collect(false);
    }

    /// `_mi_page_unfull`: back to the end of its class queue.
    pub(crate) fn page_unfull(&mut self, id: u32) {
        if !self.pages[id as usize].in_full {
            return;
        }
        let q = bin(self.pages[id as usize].xblock_size);
        self.queue_enqueue_from(q, BIN_FULL, id);
    }

    /// `_mi_page_free`: out of its queue, its span back to the segment.
    pub(crate) fn page_free(&mut self, id: u32, q: usize) {
        self.queue_remove(q, id);
        self.segment_page_free(id);
    }

    /// `_mi_page_retire`: called when the page's last block was freed.
    pub(crate) fn page_retire(&mut self, id: u32) {
        let p = &self.pages[id as usize];
        let q = p.queue();
        let bs = p.xblock_size;
        if bs <= MEDIUM_OBJ_SIZE_MAX && self.queues[q].block_size <= MEDIUM_OBJ_SIZE_MAX {
            let queue = self.queues[q];
            if queue.first == id && queue.last == id {
                self.pages[id as usize].retire_expire = 1 + if bs <= SMALL_OBJ_SIZE_MAX {
                    RETIRE_CYCLES
                } else {
                    RETIRE_CYCLES / 4
                };
                self.page_retired_min = self.page_retired_min.min(q);
                self.page_retired_max = self.page_retired_max.max(q);
                return;
            }
        }
        self.page_free(id, q);
    }

    /// `_mi_heap_collect_retired(heap, force)`: one round of the retired pages' countdown.
    pub(crate) fn collect_retired(&mut self, force: bool) {
        let (mut min, mut max) = (BIN_FULL, 0);
        let (lo, hi) = (self.page_retired_min, self.page_retired_max);
        let mut q = lo;
        while q <= hi {
            let id = self.queues[q].first;
            if id != NONE && self.pages[id as usize].retire_expire != 0 {
                let p = &mut self.pages[id as usize];
                if p.used == 0 {
                    p.retire_expire -= 1;
                    if force || p.retire_expire == 0 {
                        self.page_free(id, q);
                    } else {
                        min = min.min(q);
                        max = max.max(q);
                    }
                } else {
                    p.retire_expire = 0;
                }
            }
            q += 1;
        }
        self.page_retired_min = min;
        self.page_retired_max = max;
    }

    /// The queues of an empty heap (`_mi_heap_empty.pages`).
    pub(crate) fn empty_queues() -> Vec<PageQueue> {
        (0..super::size_class::QUEUES)
            .map(|q| PageQueue {
                first: NONE,
                last: NONE,
                block_size: bin_size(q),
            })
            .collect()
    }

    /// The page holding `addr` and the block index there, if `addr` is a block start.
    #[inline(always)]
    pub(crate) fn block_of(&self, addr: u64) -> Option<(u32, u16)> {
        let id = self.page_at(addr)?;
        let p = &self.pages[id as usize];
        let (i, exact) = p.block_index(addr.wrapping_sub(p.start));
        (exact && i < p.reserved as u64).then_some((id, i as u16))
    }

    /// Refusal of a free of `addr` that no live block starts at.
    #[cold]
    pub(crate) fn not_live(&self, op: &'static str, addr: u64) -> AllocError {
        match self.block_of(addr) {
            Some((id, i)) if (i as u32) < self.pages[id as usize].capacity => {
                AllocError::DoubleFree {
                    addr: crate::addr::Addr(addr),
                    model: super::NAME,
                }
            }
            _ => AllocError::NotLive {
                op,
                addr: crate::addr::Addr(addr),
                model: super::NAME,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_index_is_the_division_for_every_block_size() {
        // every queue's block size, a huge page's and a few odd ones; offsets around each
        // block boundary, up to and past 2^32
        let mut sizes: Vec<u64> = (0..super::super::size_class::QUEUES)
            .map(bin_size)
            .filter(|&b| b > 0)
            .collect();
        sizes.extend([8, 24, 48, 80, 4096 * 3 + 8, 20 << 20, (1 << 32) + 4096]);
        for bs in sizes {
            let mut p = Page::default();
            p.set_block_size(bs);
            for k in [
                0u64,
                1,
                2,
                3,
                7,
                1000,
                65535,
                (1 << 32) / bs,
                (1 << 32) / bs + 1,
            ] {
                for off in [
                    k * bs,
                    (k * bs).wrapping_sub(1),
                    k * bs + 1,
                    k * bs + bs / 2,
                ] {
                    let (i, exact) = p.block_index(off);
                    assert_eq!((i, exact), (off / bs, off % bs == 0), "bs {bs} off {off}");
                }
            }
        }
    }
}
