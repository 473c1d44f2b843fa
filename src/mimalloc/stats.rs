//! The mimalloc section of CPython 3.13's `_PyObject_DebugMallocStats` (Objects/obmalloc.c
//! `py_mimalloc_print_stats`), from the model's state.
//!
//! ```text
//!  Small block threshold = 16384, in 73 size classes.      MI_SMALL_OBJ_SIZE_MAX, MI_BIN_HUGE
//!  Medium block threshold = 131072                          MI_MEDIUM_OBJ_SIZE_MAX
//!  Large object max size = 16777216                         MI_LARGE_OBJ_SIZE_MAX
//!      Allocated Blocks: Σ used                             over every page of the heap
//!      Allocated Bytes: Σ used · block_size                 (mi_heap_visit_blocks, areas only)
//!      Allocated Bytes w/ Overhead: Σ used · full_block_size (no padding: the same)
//!      Bytes Reserved: Σ reserved · block_size
//!      Bytes Committed: Σ capacity · block_size
//! ```
//! Visiting the pages is not read-only in 3.13.0: `_mi_heap_area_init` first collects each
//! page with `force` ([`Mimalloc::collect_for_stats`]), so the numbers are taken after it.

use super::size_class::{BIN_HUGE, LARGE_OBJ_SIZE_MAX, MEDIUM_OBJ_SIZE_MAX, SMALL_OBJ_SIZE_MAX};
use super::{arena::OsSource, Mimalloc};
use std::fmt::Write;

/// The numbers `py_mimalloc_print_stats` prints (`struct _alloc_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MiStats {
    /// `Allocated Blocks`.
    pub allocated_blocks: u64,
    /// `Allocated Bytes`.
    pub allocated_bytes: u64,
    /// `Allocated Bytes w/ Overhead`.
    pub allocated_with_overhead: u64,
    /// `Bytes Reserved`.
    pub bytes_reserved: u64,
    /// `Bytes Committed`.
    pub bytes_committed: u64,
}

impl<S: OsSource> Mimalloc<S> {
    /// The numbers from the heap as it is now (without the collection CPython does first;
    /// see [`debug_malloc_stats`](Self::debug_malloc_stats)).
    pub fn mi_stats(&self) -> MiStats {
        let mut s = MiStats::default();
        for (_, p) in self.pages() {
            let bs = p.block_size();
            s.allocated_blocks += p.used() as u64;
            s.allocated_bytes += p.used() as u64 * bs;
            s.allocated_with_overhead += p.used() as u64 * bs;
            s.bytes_reserved += p.reserved() as u64 * bs;
            s.bytes_committed += p.capacity() as u64 * bs;
        }
        s
    }

    /// What `_PyObject_DebugMallocStats` does and prints for mimalloc in CPython 3.13.0:
    /// every page collected (this changes the free lists), then the section above.
    pub fn debug_malloc_stats(&mut self) -> (MiStats, String) {
        self.collect_for_stats();
        let s = self.mi_stats();
        (s, format_stats(&s))
    }
}

/// The text of the section, line for line as CPython prints it.
pub fn format_stats(s: &MiStats) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Small block threshold = {SMALL_OBJ_SIZE_MAX}, in {BIN_HUGE} size classes."
    );
    let _ = writeln!(out, "Medium block threshold = {MEDIUM_OBJ_SIZE_MAX}");
    let _ = writeln!(out, "Large object max size = {LARGE_OBJ_SIZE_MAX}");
    let _ = writeln!(out, "    Allocated Blocks: {}", s.allocated_blocks);
    let _ = writeln!(out, "    Allocated Bytes: {}", s.allocated_bytes);
    let _ = writeln!(
        out,
        "    Allocated Bytes w/ Overhead: {}",
        s.allocated_with_overhead
    );
    let _ = writeln!(out, "    Bytes Reserved: {}", s.bytes_reserved);
    let _ = writeln!(out, "    Bytes Committed: {}", s.bytes_committed);
    out
}

/// The `_PyObject_DebugMallocStats` sections of a recorder's `*.stderr.txt`: the numbers
/// CPython printed at each marker, in order.
pub fn parse_stderr_stats(text: &str) -> Vec<MiStats> {
    let mut out = Vec::new();
    let mut cur: Option<MiStats> = None;
    for line in text.lines() {
        if line.starts_with("=== recorder: _PyObject_DebugMallocStats()") {
            cur = Some(MiStats::default());
            continue;
        }
        if line.starts_with("=== recorder: end of stats") {
            out.extend(cur.take());
            continue;
        }
        let Some(s) = cur.as_mut() else { continue };
        let Some((key, value)) = line.trim().split_once(": ") else {
            continue;
        };
        let Ok(v) = value.trim().parse::<u64>() else {
            continue;
        };
        match key {
            "Allocated Blocks" => s.allocated_blocks = v,
            "Allocated Bytes" => s.allocated_bytes = v,
            "Allocated Bytes w/ Overhead" => s.allocated_with_overhead = v,
            "Bytes Reserved" => s.bytes_reserved = v,
            "Bytes Committed" => s.bytes_committed = v,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Mimalloc;
    use crate::addr::Addr;

    #[test]
    fn counts_follow_allocations_and_collection_reorders_free_lists() {
        let mut m = Mimalloc::default();
        let a = m.mi_malloc(24).unwrap();
        let b = m.mi_malloc(24).unwrap();
        let s = m.mi_stats();
        assert_eq!(s.allocated_blocks, 2);
        assert_eq!(s.allocated_bytes, 64);
        // first extension of a 32-byte page: 4096 / 32 blocks committed
        assert_eq!(s.bytes_committed, 128 * 32);
        m.mi_free(a).unwrap();
        // `a` waits on local_free: the next malloc takes a fresh block …
        let c = m.mi_malloc(24).unwrap();
        assert_ne!(c, a);
        m.mi_free(b).unwrap();
        // … but after the stats call local_free is in front of free: b (freed last) first
        let (s, text) = m.debug_malloc_stats();
        assert_eq!(s.allocated_blocks, 1);
        assert!(text.contains("    Allocated Blocks: 1\n"));
        assert_eq!(m.mi_malloc(24).unwrap(), b);
        assert_eq!(m.mi_malloc(24).unwrap(), a);
        assert_ne!(m.mi_malloc(24).unwrap(), Addr(0));
    }
}

/// What holds mimalloc's mapped bytes, by cause (a walk of the model's state):
/// `requested + rounding + page_offsets + free_blocks + uncarved + free_spans + metadata +
/// unclaimed == total == Mimalloc::mapped()`.
///
/// ```text
///  arena ─┬ descriptor                                   metadata
///         ├ blocks no segment claimed (and the tails of  unclaimed ("reserved, not in use":
///         │  huge segments' last blocks)                  MAP_NORESERVE, never touched)
///         └ segment ─┬ header slices (mi_segment_t, slices[])   metadata
///                    ├ free span                                free_spans
///                    └ page span ─┬ before block 0              page_offsets
///                                 ├ live blocks: request        requested
///                                 │              block − request rounding
///                                 ├ free / local_free blocks    free_blocks
///                                 ├ blocks beyond capacity      uncarved
///                                 └ after the last block        rounding
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MiUse {
    /// Bytes the live blocks' requests asked for.
    pub requested: u64,
    /// Live blocks' size-class rounding and the page ends no block fits.
    pub rounding: u64,
    /// Each page's bytes before its first block (`page_start_offset`).
    pub page_offsets: u64,
    /// Blocks on `free` or `local_free` of pages (used or retired).
    pub free_blocks: u64,
    /// Blocks of pages beyond their capacity (never extended to).
    pub uncarved: u64,
    /// Free spans of live segments.
    pub free_spans: u64,
    /// Segment header slices and arena descriptors.
    pub metadata: u64,
    /// Arena bytes no live segment holds.
    pub unclaimed: u64,
    /// The sum: bytes mapped.
    pub total: u64,
}

impl<S: OsSource> Mimalloc<S> {
    /// Mapped bytes by cause ([`MiUse`]), walked from the arenas, segments and pages.
    pub fn usage(&self) -> MiUse {
        use super::arena::ARENA_META_SIZE;
        use super::size_class::SLICE_SIZE;
        let mut u = MiUse::default();
        for a in &self.arenas {
            u.metadata += ARENA_META_SIZE;
            u.unclaimed += a.size();
        }
        for s in self.segments() {
            if matches!(s.memid, super::arena::MemId::Arena { .. }) {
                u.unclaimed -= s.size();
            }
            u.metadata += s.info_slices as u64 * SLICE_SIZE;
            for (first, count, free, id) in s.spans() {
                if first < s.info_slices {
                    continue; // the header span
                }
                let span = count as u64 * SLICE_SIZE;
                let Some(p) = self.page(id).filter(|_| !free) else {
                    u.free_spans += span;
                    continue;
                };
                let bs = p.block_size();
                let span_start = s.base + first as u64 * SLICE_SIZE;
                let offset = p.start() - span_start;
                u.page_offsets += offset;
                u.rounding += span - offset - p.reserved() as u64 * bs;
                u.uncarved += (p.reserved() - p.capacity()) as u64 * bs;
                u.free_blocks += (p.capacity() - p.used()) as u64 * bs;
                for i in 0..p.capacity() {
                    if let Some(r) = p.req_bytes(i as u16) {
                        u.requested += r;
                        u.rounding += bs - r;
                    }
                }
            }
        }
        u.total = u.requested
            + u.rounding
            + u.page_offsets
            + u.free_blocks
            + u.uncarved
            + u.free_spans
            + u.metadata
            + u.unclaimed;
        u
    }
}
