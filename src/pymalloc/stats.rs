//! `sys._debugmallocstats()` from the model's own state: obmalloc.c
//! `_PyObject_DebugMallocStats` and its `printone` layout, number for number.
//!
//! ```text
//!  Small block threshold = 512, in 32 size classes.
//!
//!  class   size   num pools   blocks in use  avail blocks
//!  -----   ----   ---------   -------------  ------------
//!      1     32         395          201163           287      "%5u %6u %11zu %15zu %13zu"
//!  ...
//!  # arenas allocated total           =                   15   printone: label padded to 35,
//!                                                              '=', value with commas in 21
//! ```
//! The layout is the same from 2.7 to 3.13 but for two parts: 2.7's function exists only
//! in PYMALLOC_DEBUG builds and always prints `# times object malloc called` (the debug
//! API's `serialno`) before the arena lines ([`DebugMallocStats::serialno`]; 3.x prints it
//! only under the debug hooks, never in a default build), and 3.10+ append the radix
//! tree's `arena map counts`. The pool and arena sizes are the era's (3.6–3.9: 4 KiB
//! pools, 256 KiB arenas; 3.10+: 16 KiB and 1 MiB).
//!
//! Accounting equation (asserted by CPython, and by the tests here):
//! `allocated + available + unused pools * POOL_SIZE + pool headers + quantization
//!  + arena alignment == narenas * ARENA_SIZE`.

use super::{ArenaSource, Pymalloc};
use crate::alloc::Allocator;
use std::fmt::Write;

/// The numbers `_PyObject_DebugMallocStats` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DebugMallocStats {
    /// `SMALL_REQUEST_THRESHOLD`.
    pub threshold: u64,
    /// Number of size classes (`SMALL_REQUEST_THRESHOLD >> ALIGNMENT_SHIFT`).
    pub nclasses: u32,
    /// Per size class: (index, block size, pools, blocks in use, available blocks), classes
    /// with no pool left out.
    pub classes: Vec<(u32, u64, u64, u64, u64)>,
    /// `ntimes_arena_allocated`.
    pub arenas_allocated_total: u64,
    /// Arenas mapped now.
    pub arenas_current: u64,
    /// `narenas_highwater`.
    pub arenas_highwater: u64,
    /// `ARENA_SIZE`.
    pub arena_size: u64,
    /// `POOL_SIZE`.
    pub pool_size: u64,
    /// Bytes in allocated blocks.
    pub allocated_bytes: u64,
    /// Bytes in available blocks of used pools.
    pub available_bytes: u64,
    /// Free pools + never-carved pools of all arenas.
    pub unused_pools: u64,
    /// Bytes of pool headers in used and full pools.
    pub pool_header_bytes: u64,
    /// Bytes lost at the ends of used and full pools.
    pub quantization: u64,
    /// Bytes lost to arenas that are not pool-aligned.
    pub arena_alignment: u64,
    /// `serialno`, printed as `# times object malloc called` where the era prints it (2.7):
    /// the object allocator's malloc, calloc and realloc calls the model has served.
    pub serialno: Option<u64>,
    /// Radix tree: (mid nodes, bot nodes, root bytes, mid bytes, bot bytes), when the era has one.
    pub radix: Option<(u64, u64, u64, u64, u64)>,
}

/// `printone`: the label padded to 35 columns, `=`, the value with thousands commas
/// right-aligned in 21 columns.
pub fn printone(out: &mut String, msg: &str, value: u64) {
    out.push_str(msg);
    for _ in msg.len()..35 {
        out.push(' ');
    }
    out.push('=');
    let digits = value.to_string();
    let mut grouped = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let _ = writeln!(out, "{grouped:>21}");
}

impl DebugMallocStats {
    /// The text `_PyObject_DebugMallocStats` writes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Small block threshold = {}, in {} size classes.",
            self.threshold, self.nclasses
        );
        out.push('\n');
        out.push_str("class   size   num pools   blocks in use  avail blocks\n");
        out.push_str("-----   ----   ---------   -------------  ------------\n");
        for &(i, size, p, b, f) in &self.classes {
            let _ = writeln!(out, "{i:5} {size:6} {p:11} {b:15} {f:13}");
        }
        out.push('\n');
        if let Some(n) = self.serialno {
            printone(&mut out, "# times object malloc called", n);
        }
        printone(
            &mut out,
            "# arenas allocated total",
            self.arenas_allocated_total,
        );
        printone(
            &mut out,
            "# arenas reclaimed",
            self.arenas_allocated_total - self.arenas_current,
        );
        printone(&mut out, "# arenas highwater mark", self.arenas_highwater);
        printone(&mut out, "# arenas allocated current", self.arenas_current);
        printone(
            &mut out,
            &format!(
                "{} arenas * {} bytes/arena",
                self.arenas_current, self.arena_size
            ),
            self.arenas_current * self.arena_size,
        );
        out.push('\n');
        printone(
            &mut out,
            "# bytes in allocated blocks",
            self.allocated_bytes,
        );
        printone(
            &mut out,
            "# bytes in available blocks",
            self.available_bytes,
        );
        printone(
            &mut out,
            &format!(
                "{} unused pools * {} bytes",
                self.unused_pools, self.pool_size
            ),
            self.unused_pools * self.pool_size,
        );
        printone(
            &mut out,
            "# bytes lost to pool headers",
            self.pool_header_bytes,
        );
        printone(&mut out, "# bytes lost to quantization", self.quantization);
        printone(
            &mut out,
            "# bytes lost to arena alignment",
            self.arena_alignment,
        );
        printone(&mut out, "Total", self.total());
        if let Some((mid, bot, root_b, mid_b, bot_b)) = self.radix {
            out.push_str("\narena map counts\n");
            printone(&mut out, "# arena map mid nodes", mid);
            printone(&mut out, "# arena map bot nodes", bot);
            out.push('\n');
            printone(&mut out, "# bytes lost to arena map root", root_b);
            printone(&mut out, "# bytes lost to arena map mid", mid_b * mid);
            printone(&mut out, "# bytes lost to arena map bot", bot_b * bot);
            printone(&mut out, "Total", root_b + mid_b * mid + bot_b * bot);
        }
        out
    }

    /// The sum CPython asserts equals `narenas * ARENA_SIZE`.
    pub fn total(&self) -> u64 {
        self.allocated_bytes
            + self.available_bytes
            + self.unused_pools * self.pool_size
            + self.pool_header_bytes
            + self.quantization
            + self.arena_alignment
    }
}

/// Where pymalloc's arena bytes go, for a footprint report: `_PyObject_DebugMallocStats`'s
/// split with its unused pools told apart (in arenas still in use, or whole free arenas)
/// and the program's requests beside the blocks that hold them.
/// `allocated + available + pool_headers + quantization + empty_pools + free_arenas
///  + arena_alignment == total == narenas * ARENA_SIZE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArenaUse {
    /// Bytes the program asked for in live blocks (`allocated - requested`: size-class rounding).
    pub requested: u64,
    /// Bytes of live blocks.
    pub allocated: u64,
    /// Free blocks of used pools (their free lists and the part not yet carved).
    pub available: u64,
    /// Pool headers of used pools.
    pub pool_headers: u64,
    /// The ends of used pools no block fits.
    pub quantization: u64,
    /// Empty and never-carved pools of arenas that hold a used pool.
    pub empty_pools: u64,
    /// Arenas with no used pool (kept: 3.9+ keeps one), whole.
    pub free_arenas: u64,
    /// What arenas in use lose to not being pool-aligned.
    pub arena_alignment: u64,
    /// Bytes of arenas mapped.
    pub total: u64,
}

impl<A: Allocator, S: ArenaSource> Pymalloc<A, S> {
    /// [`ArenaUse`] from the model's state (one walk of the arenas and the size classes).
    pub fn arena_use(&self) -> ArenaUse {
        let d = self.debug_malloc_stats();
        let mut u = ArenaUse {
            requested: self.live_bytes,
            allocated: d.allocated_bytes,
            available: d.available_bytes,
            pool_headers: d.pool_header_bytes,
            quantization: d.quantization,
            total: d.arenas_current * d.arena_size,
            ..ArenaUse::default()
        };
        for a in self.arenas.iter().filter(|a| a.address != 0) {
            if a.nfreepools == a.ntotalpools {
                u.free_arenas += d.arena_size;
            } else {
                u.empty_pools += a.nfreepools as u64 * self.pool_size;
                if a.address & (self.pool_size - 1) != 0 {
                    u.arena_alignment += self.pool_size;
                }
            }
        }
        u
    }

    /// The model's statistics, walked as `_PyObject_DebugMallocStats` walks CPython's:
    /// every allocated arena, every carved pool with `count > 0`.
    pub fn debug_malloc_stats(&self) -> DebugMallocStats {
        let n = self.nclasses as usize;
        let (mut numpools, mut numblocks, mut numfree) =
            (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
        let mut s = DebugMallocStats {
            threshold: self.threshold,
            nclasses: self.nclasses,
            arena_size: self.params.arena_size(),
            pool_size: self.pool_size,
            arenas_allocated_total: self.ntimes_arena_allocated,
            arenas_highwater: self.narenas_highwater,
            serialno: self.params.stats_serialno.then_some(self.serialno),
            ..Default::default()
        };
        for (slot, a) in self.arenas.iter().enumerate() {
            if a.address == 0 {
                continue;
            }
            s.arenas_current += 1;
            s.unused_pools += a.nfreepools as u64;
            if a.address & (self.pool_size - 1) != 0 {
                s.arena_alignment += self.pool_size;
            }
            let carved = ((a.pool_address - a.first_pool) >> self.pool_bits) as u32;
            for i in 0..carved {
                let p = &self.pools[(self.nclasses + slot as u32 * self.max_pools + i) as usize];
                if p.count == 0 {
                    continue;
                }
                let sz = p.szidx as usize;
                numpools[sz] += 1;
                numblocks[sz] += p.count as u64;
                numfree[sz] += (self.params.blocks_per_pool(sz as u32) - p.count) as u64;
            }
        }
        for i in 0..n {
            if numpools[i] == 0 {
                continue;
            }
            let size = self.class_bytes(i as u32);
            s.classes
                .push((i as u32, size, numpools[i], numblocks[i], numfree[i]));
            s.allocated_bytes += numblocks[i] * size;
            s.available_bytes += numfree[i] * size;
            s.pool_header_bytes += numpools[i] * self.overhead;
            s.quantization += numpools[i] * ((self.pool_size - self.overhead) % size);
        }
        if self.params.radix_tree {
            s.radix = Some((
                self.map.mid_count() as u64,
                self.map.bot_count() as u64,
                self.radix_root_bytes,
                self.radix_mid_bytes,
                self.radix_bot_bytes,
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_2_7_layout_prints_serialno_before_the_arena_lines() {
        use crate::pymalloc::PymallocParams;
        use crate::replay::pinned::PinnedArenas;
        use crate::sysmalloc::Bump;
        use crate::{Addr, Platform};
        for (p, shown) in [
            (PymallocParams::v2_7_17(), true),
            (PymallocParams::v3_6_pyenv(), false),
            (PymallocParams::v3_11(), false),
        ] {
            let platform = Platform::linux_x86_64();
            let mut m = Pymalloc::new(
                p.clone(),
                Bump::new(platform.heap_start, 16),
                PinnedArenas::own(platform.address_space()),
            );
            let a = m.malloc(40).unwrap();
            let b = m.realloc(a, 100).unwrap();
            m.free(b).unwrap();
            m.malloc(7).unwrap();
            let text = m.debug_malloc_stats().render();
            let line = "# times object malloc called";
            assert_eq!(text.contains(line), shown, "{}", p.name);
            if shown {
                // malloc, realloc (its inner malloc is not a call of the API), malloc.
                let mut expect = String::new();
                printone(&mut expect, line, 3);
                let at = text.find(&expect).expect("the serialno line");
                assert!(at < text.find("# arenas allocated total").unwrap());
                assert!(text.contains(&format!("{} arenas * {} bytes/arena", 1, p.arena_size())));
            }
            let _ = Addr::NULL;
        }
    }

    #[test]
    fn printone_pads_and_groups_like_obmalloc() {
        let mut s = String::new();
        printone(&mut s, "Total", 10_485_760);
        assert_eq!(
            s,
            format!("Total{}={}10,485,760\n", " ".repeat(30), " ".repeat(11))
        );
        let mut s = String::new();
        printone(&mut s, "# arenas reclaimed", 0);
        assert!(s.ends_with(&format!("={}0\n", " ".repeat(20))));
    }
}
