//! The per-thread cache and the fastbins: singly-linked LIFO lists of chunks that stay
//! "in use" as far as their neighbours can tell (their successor's `P` bit stays set).
//!
//! ```text
//!  tcache_perthread_struct (0x290-byte chunk at the heap start, carved before the first call)
//!    counts[64]   entries[64] ─▶ e ─▶ e ─▶ … (≤ 7)     tcache_put/tcache_get at the head
//!  fastbinsY[10]               ─▶ c ─▶ c ─▶ …          chunks ≤ global_max_fast (0x80), LIFO
//! ```
//! malloc/malloc.c: `tcache_put`, `tcache_get`, `MAYBE_INIT_TCACHE`, the fastbin parts of
//! `_int_malloc` and `_int_free`.
//!
//! Invariants: `counts[t] == |entries[t]| ≤ tcache_count`; every chunk in `entries[t]` has
//! `csize2tidx(size) == t`; every chunk in `fastbinsY[f]` has `fastbin_index(size) == f`.

use super::chunk::{State, NIL};
use super::Glibc;

impl Glibc {
    /// `tcache_put`: pushes the chunk of node `i` on tcache bin `t`.
    #[inline(always)]
    pub(super) fn tcache_put(&mut self, i: u32, t: usize) {
        self.wrote(self.mem(i), 16); // e->next, e->key
        let head = self.tcache_entries[t];
        self.heap.set_fd(i, head);
        self.heap.m(i).set_state(State::Tcache);
        self.tcache_entries[t] = i;
        self.tcache_counts[t] += 1;
    }

    /// `tcache_get`: pops the newest chunk of tcache bin `t` (which must be non-empty).
    #[inline]
    pub(super) fn tcache_get(&mut self, t: usize) -> u32 {
        let i = self.tcache_entries[t];
        self.tcache_entries[t] = self.heap.fd(i);
        self.heap.m(i).set_state(State::InUse);
        self.tcache_counts[t] -= 1;
        i
    }

    /// True when bin `t` exists and the tcache has been set up (`tcache && tc_idx < mp_.tcache_bins`).
    #[inline]
    pub(super) fn tcache_usable(&self, t: usize) -> bool {
        t < self.tcache_lim // 0 until the tcache is set up
    }

    /// Pushes the chunk of node `i` on fastbin `f`.
    #[inline(always)]
    pub(super) fn fastbin_push(&mut self, i: u32, f: usize) {
        self.wrote(self.mem(i), 8); // p->fd
        let head = self.fastbins[f];
        self.heap.set_fd(i, head);
        self.heap.m(i).set_state(State::Fast);
        self.fastbins[f] = i;
        self.have_fastchunks = true;
    }

    /// Pops the newest chunk of fastbin `f`, if any.
    #[inline]
    pub(super) fn fastbin_pop(&mut self, f: usize) -> Option<u32> {
        let i = self.fastbins[f];
        if i == NIL {
            return None;
        }
        self.fastbins[f] = self.heap.fd(i);
        self.heap.m(i).set_state(State::InUse);
        Some(i)
    }
}
