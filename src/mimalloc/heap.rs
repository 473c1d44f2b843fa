//! The heap: malloc, free and realloc as mimalloc 2.1.2 runs them for one thread
//! (alloc.c `mi_malloc`, `mi_free`, `_mi_heap_realloc_zero`; page.c `_mi_malloc_generic`,
//! `mi_find_free_page`, `mi_page_queue_find_free_ex`, `mi_large_huge_page_alloc`).
//!
//! ```text
//!  malloc(n)
//!   n <= 1024: page = pages_free_direct[wsize(n)] (= pages[bin(n)].first);
//!              page->free non-empty: pop it                           <- the fast path
//!   _mi_malloc_generic:
//!   n > 128 KiB: a fresh large (<= 16 MiB) or huge page, one block, front of MI_BIN_HUGE
//!   else queue q = pages[bin(n)]:
//!     1. q.first: collect (local_free -> free if free is empty); has free? use it
//!     2. walk q from first: collect; has free -> use it; capacity < reserved -> extend,
//!        use it; else move the page to the full queue and go on
//!     3. none: _mi_heap_collect_retired, then a fresh page on the front of q
//!  free(p): push on its page's local_free; used == 0 -> retire; page in full -> unfull
//!  realloc(p, n): stays when n <= usable(p) and n >= usable(p) / 2 and n > 0, else
//!    malloc(n), then free(p)
//! ```

use super::page::NOT_LIVE;
use super::size_class::{
    bin, good_alloc_size, wsize, BIN_HUGE, LARGE_OBJ_SIZE_MAX, MEDIUM_OBJ_SIZE_MAX,
    MEDIUM_PAGE_SIZE, SMALL_OBJ_SIZE_MAX, SMALL_SIZE_MAX,
};
use super::{arena::OsSource, Mimalloc, NAME, NONE};
use crate::addr::Addr;
use crate::error::AllocError;

/// The largest request served (`PTRDIFF_MAX`).
pub const MAX_REQUEST: u64 = i64::MAX as u64;

impl<S: OsSource> Mimalloc<S> {
    /// `mi_malloc(size)`.
    ///
    /// # Errors
    /// A request above `PTRDIFF_MAX`, or an address space (or recording) that cannot give
    /// the segment or arena it needs.
    #[inline]
    pub fn mi_malloc(&mut self, size: u64) -> Result<Addr, AllocError> {
        match self.malloc_fast(size) {
            Some(a) => Ok(a),
            None => self.malloc_generic(size),
        }
    }

    /// `mi_malloc`'s fast path alone: a small request served by the first page of its
    /// queue (`pages_free_direct`) when that page's `free` list is not empty; `None`
    /// (nothing changed) when the generic path is needed.
    #[inline(always)]
    pub fn malloc_fast(&mut self, size: u64) -> Option<Addr> {
        if size > SMALL_SIZE_MAX {
            return None;
        }
        let q = self.direct[wsize(size) as usize] as usize;
        let id = self.queues[q].first;
        if id == NONE {
            return None;
        }
        self.page_pop(id, size).map(Addr)
    }

    /// `_mi_page_malloc`'s pop of `page->free`, `None` when it is empty.
    #[inline(always)]
    fn page_pop(&mut self, id: u32, size: u64) -> Option<u64> {
        let p = &mut self.pages[id as usize];
        let i = p.free.pop()?;
        p.used += 1;
        if size <= SMALL_SIZE_MAX {
            p.req[i as usize] = size as u32; // the fast path's requests fit without BIG
        } else {
            p.set_req(i, size);
        }
        let a = p.block(i);
        self.live_blocks += 1;
        self.live_bytes += size;
        self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
        Some(a)
    }

    /// `_mi_malloc_generic`.
    #[inline(never)]
    fn malloc_generic(&mut self, size: u64) -> Result<Addr, AllocError> {
        self.heartbeat += 1; // _mi_deferred_free (no deferred-free hook in CPython)
        let id = if size > MEDIUM_OBJ_SIZE_MAX {
            if size > MAX_REQUEST {
                return Err(AllocError::TooLarge {
                    size,
                    limit: MAX_REQUEST,
                    model: NAME,
                });
            }
            self.large_huge_page_alloc(size)?
        } else {
            self.find_free_page(size)?
        };
        self.page_pop(id, size)
            .map(Addr)
            .ok_or(AllocError::OutOfAddressSpace {
                what: format!("a block of {size} bytes (the page found has none free)"),
            })
    }

    /// `mi_find_free_page`.
    fn find_free_page(&mut self, size: u64) -> Result<u32, AllocError> {
        let q = bin(size);
        let id = self.queues[q].first;
        if id != NONE {
            let p = &mut self.pages[id as usize];
            p.free_collect(false);
            if p.immediate_available() {
                p.retire_expire = 0;
                return Ok(id);
            }
        }
        self.queue_find_free(q)
    }

    /// `mi_page_queue_find_free_ex`.
    fn queue_find_free(&mut self, q: usize) -> Result<u32, AllocError> {
        let mut id = self.queues[q].first;
        while id != NONE {
            let p = &mut self.pages[id as usize];
            let next = p.next;
            p.free_collect(false);
            if p.immediate_available() {
                break;
            }
            if p.capacity < p.reserved {
                p.extend_free();
                self.page_resident_update(id);
                break;
            }
            self.page_to_full(id, q);
            id = next;
        }
        if id != NONE {
            self.pages[id as usize].retire_expire = 0;
            return Ok(id);
        }
        self.collect_retired(false);
        self.page_fresh(q)
    }

    /// `mi_page_fresh`: a new page of queue `q`'s block size, on the front of `q`.
    fn page_fresh(&mut self, q: usize) -> Result<u32, AllocError> {
        let bs = self.queues[q].block_size;
        let required = if bs <= SMALL_OBJ_SIZE_MAX {
            bs
        } else {
            MEDIUM_PAGE_SIZE
        };
        let id = self.segments_page_alloc(required)?;
        self.page_init(id, bs);
        self.queue_push(q, id);
        Ok(id)
    }

    /// `mi_large_huge_page_alloc`: one block that is the whole page, on `MI_BIN_HUGE`.
    fn large_huge_page_alloc(&mut self, size: u64) -> Result<u32, AllocError> {
        let block_size = good_alloc_size(size);
        let id = if block_size <= LARGE_OBJ_SIZE_MAX {
            self.segments_page_alloc(block_size)?
        } else {
            self.huge_page_alloc(block_size)?
        };
        // the huge queue's pages take the span's size as their block size
        let full = self.pages[id as usize].slice_count as u64 * super::size_class::SLICE_SIZE;
        self.page_init(id, full);
        self.queue_push(BIN_HUGE, id);
        Ok(id)
    }

    /// `mi_free(addr)`; `free(NULL)` does nothing.
    ///
    /// # Errors
    /// `addr` is not a live block of this heap (never allocated, or freed already).
    #[inline]
    pub fn mi_free(&mut self, addr: Addr) -> Result<(), AllocError> {
        if addr.is_null() {
            return Ok(());
        }
        let Some((id, i)) = self.block_of(addr.0) else {
            return Err(self.not_live("free", addr.0));
        };
        let p = &mut self.pages[id as usize];
        let Some(req) = p.req_bytes(i) else {
            return Err(self.not_live("free", addr.0));
        };
        p.req[i as usize] = NOT_LIVE;
        p.local_free.push(i);
        p.used -= 1;
        self.live_blocks -= 1;
        self.live_bytes -= req;
        if p.used == 0 {
            self.page_retire(id);
        } else if p.in_full {
            self.page_unfull(id);
        }
        Ok(())
    }

    /// `mi_free`'s common case alone: `addr` is a live block of a page in the first arena
    /// that keeps other live blocks and is not on the full queue, so the free is a push on
    /// its `local_free` and nothing else. False (nothing changed) for every other case,
    /// which [`mi_free`](Self::mi_free) then takes in full (refusals included).
    #[inline(always)]
    pub fn free_fast(&mut self, addr: u64) -> bool {
        let k = addr.wrapping_sub(self.flat_base) / super::size_class::SLICE_SIZE;
        let Some(&id) = self.flat_pages.get(k as usize) else {
            return false;
        };
        let Some(p) = self.pages.get_mut(id as usize) else {
            return false; // NONE: no page there
        };
        let (i, exact) = p.block_index(addr.wrapping_sub(p.start));
        if !exact || i >= u64::from(p.reserved) || p.used <= 1 || p.in_full {
            return false;
        }
        let r = p.req[i as usize];
        if r >= super::page::BIG {
            return false; // not live (NOT_LIVE), or a request kept in big_req
        }
        p.req[i as usize] = NOT_LIVE;
        p.local_free.push(i as u16);
        p.used -= 1;
        self.live_blocks -= 1;
        self.live_bytes -= u64::from(r);
        true
    }

    /// `mi_usable_size(addr)`: the block's size (the whole page for large and huge ones).
    ///
    /// # Errors
    /// `addr` is not a live block.
    pub fn usable_size(&self, addr: Addr) -> Result<u64, AllocError> {
        match self.block_of(addr.0) {
            Some((id, i)) if self.pages[id as usize].req[i as usize] != NOT_LIVE => {
                Ok(self.pages[id as usize].xblock_size)
            }
            _ => Err(self.not_live("realloc", addr.0)),
        }
    }

    /// `mi_realloc(addr, size)`.
    ///
    /// # Errors
    /// As [`mi_malloc`](Self::mi_malloc) and [`mi_free`](Self::mi_free).
    pub fn mi_realloc(&mut self, addr: Addr, size: u64) -> Result<Addr, AllocError> {
        if addr.is_null() {
            return self.mi_malloc(size);
        }
        let usable = self.usable_size(addr)?;
        if size <= usable && size >= usable / 2 && size > 0 {
            let (id, i) = self.block_of(addr.0).expect("checked live");
            let p = &mut self.pages[id as usize];
            let old = p.req_bytes(i).expect("checked live");
            p.set_req(i, size);
            self.live_bytes = self.live_bytes - old + size;
            self.peak_live_bytes = self.peak_live_bytes.max(self.live_bytes);
            return Ok(addr);
        }
        let new = self.mi_malloc(size)?;
        self.mi_free(addr)?;
        Ok(new)
    }

    /// `mi_calloc(nelem, elsize)`: placed as `mi_malloc` of the product.
    ///
    /// # Errors
    /// The product overflows; else as [`mi_malloc`](Self::mi_malloc).
    pub fn mi_calloc(&mut self, nelem: u64, elsize: u64) -> Result<Addr, AllocError> {
        let n = nelem.checked_mul(elsize).ok_or(AllocError::TooLarge {
            size: u64::MAX,
            limit: MAX_REQUEST,
            model: NAME,
        })?;
        self.mi_malloc(n)
    }

    /// What CPython 3.13.0's `_PyObject_DebugMallocStats` does to the heap before it
    /// counts (`_mi_heap_area_init` → `_mi_page_free_collect(page, force = true)` on every
    /// page): each page's `local_free` goes in front of its `free`.
    pub fn collect_for_stats(&mut self) {
        for q in 0..self.queues.len() {
            let mut id = self.queues[q].first;
            while id != NONE {
                let p = &mut self.pages[id as usize];
                p.free_collect(true);
                id = p.next;
            }
        }
    }
}
