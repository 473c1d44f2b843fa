//! Where glibc's bytes go: the brk heap and the mmapped chunks split into what the program
//! asked for and what the allocator adds (malloc.c's own accounting is `mallinfo2`; this is
//! the finer split a footprint report needs).
//!
//! ```text
//!  brk_start  heap.base                                                     top        brk
//!  | front  | [size|P] req ... pad | [size|P] free chunk ... | ... | [size|P] top ... |
//!    ^ alignment  ^ header (SIZE_SZ)  ^ alignment: csz - SIZE_SZ - req    ^ free_chunks / top
//!  mmapped chunk: | prev_size size | req ... | page rounding |   headers = 2 * SIZE_SZ
//! ```
//! An in-use chunk of `csz` bytes holds `csz - SIZE_SZ` for the program (it borrows the
//! next chunk's `prev_size`), so its overhead is one header plus the rounding of `req` up to
//! MALLOC_ALIGNMENT (and MINSIZE). Equation, checked by the tests:
//! `requested + headers + alignment + metadata + free_chunks + top
//!  == (brk - brk_start) + Σ mmapped lengths`.

use super::chunk::State;
use super::{Glibc, NIL};

/// glibc's bytes by what they hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HeapUse {
    /// Bytes asked for by live chunks (heap and mmapped).
    pub requested: u64,
    /// Chunk headers of live chunks: `SIZE_SZ` in the heap, `2 * SIZE_SZ` mmapped.
    pub headers: u64,
    /// Rounding of live requests to MALLOC_ALIGNMENT / MINSIZE / pages, and the heap's
    /// front gap before its first chunk.
    pub alignment: u64,
    /// glibc's own chunk: the `tcache_perthread_struct`, the heap's first.
    pub metadata: u64,
    /// Free chunks in the tcache, fastbins and bins.
    pub free_chunks: u64,
    /// The top chunk.
    pub top: u64,
    /// The heap's extent plus every mmapped chunk's mapping: what the parts sum to.
    pub total: u64,
}

/// The pages of the brk heap the model's writes made resident, as the address space has
/// them: a filter in front of [`AddressSpace::touch`](crate::vm::AddressSpace::touch), so
/// that a write to a page already known resident costs one bit test. Only glibc moves the
/// break, and heap pages stop being resident only when it shrinks (systrim), where
/// [`clear_from`](Self::clear_from) forgets them. Invariant: a bit set here ⇒ that page
/// is resident in the address space.
#[derive(Debug, Clone)]
pub(super) struct HeapPages {
    first: u64,     // page number of brk_start: bit k is page first + k
    shift: u32,     // log2(page size)
    bits: Vec<u64>, // bit k set: page first + k known resident
}

impl HeapPages {
    /// No page known resident, for a heap starting at `brk_start`.
    pub(super) fn new(brk_start: u64, page_size: u64) -> HeapPages {
        let shift = page_size.trailing_zeros();
        HeapPages {
            first: brk_start >> shift,
            shift,
            bits: Vec::new(),
        }
    }

    /// True when `addr..addr + len` lies on one or two pages known resident (any page
    /// below the heap's start, or past the pages ever noted, is not known).
    #[inline(always)]
    pub(super) fn known(&self, addr: u64, len: u64) -> bool {
        let lo = (addr >> self.shift).wrapping_sub(self.first);
        let hi = ((addr + len.max(1) - 1) >> self.shift).wrapping_sub(self.first);
        let d = hi.wrapping_sub(lo); // 0: one page, 1: two
        if d > 1 {
            return false;
        }
        let Some(&w) = self.bits.get((lo >> 6) as usize) else {
            return false;
        };
        let s = lo & 63;
        if s < 63 || d == 0 {
            let m = (d << 1) | 1; // the page's bit, and the next one's for two
            return (w >> s) & m == m;
        }
        // the last page of one word and the first of the next
        w >> 63 == 1
            && self
                .bits
                .get((hi >> 6) as usize)
                .is_some_and(|&v| v & 1 == 1)
    }

    /// The pages of `addr..addr + len` (len > 0, within the heap) are resident.
    pub(super) fn set(&mut self, addr: u64, len: u64) {
        let lo = (addr >> self.shift) - self.first;
        let hi = ((addr + len - 1) >> self.shift) - self.first;
        let need = (hi >> 6) as usize + 1;
        if self.bits.len() < need {
            self.bits.resize(need, 0);
        }
        for k in lo..=hi {
            self.bits[(k >> 6) as usize] |= 1 << (k & 63);
        }
    }

    /// The break moved down to `brk`: pages from the one holding it up are forgotten
    /// (the address space gives back those above it; forgetting one more is only slower).
    pub(super) fn clear_from(&mut self, brk: u64) {
        let lo = (brk >> self.shift).saturating_sub(self.first);
        let w = (lo >> 6) as usize;
        if w < self.bits.len() {
            self.bits[w] &= !(u64::MAX << (lo & 63));
            self.bits.truncate(w + 1);
        }
    }
}

impl Glibc {
    /// Walks the heap chunk by chunk and the mmapped chunks: see [`HeapUse`].
    pub fn heap_use(&self) -> HeapUse {
        let size_sz = self.params.size_sz;
        let h = &self.heap;
        let start = self.vm.brk_start().0;
        let mut u = HeapUse {
            total: self.vm.brk().0 - start,
            ..HeapUse::default()
        };
        if self.top != NIL {
            u.alignment += h.base - start;
            let first = h.idx(h.base);
            let mut i = first;
            while i != self.top {
                let csz = h.size(i);
                match h.n(i).state() {
                    State::InUse if i == first && self.tcache_inited => u.metadata += csz,
                    State::InUse => {
                        let req = h.req(i);
                        u.requested += req;
                        u.headers += size_sz;
                        u.alignment += csz - size_sz - req;
                    }
                    _ => u.free_chunks += csz,
                }
                i = h.next(i);
            }
            u.top = self.top_size();
        } else {
            u.alignment += u.total; // no chunk yet: whatever was grown is slack
        }
        for m in self.mmaps.values() {
            u.total += m.len;
            u.requested += m.req;
            u.headers += 2 * size_sz;
            u.alignment += m.len - 2 * size_sz - m.req;
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::HeapPages;
    use crate::alloc::Allocator;
    use crate::platform::Platform;
    use crate::sysmalloc::glibc::{Glibc, GlibcParams};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// HeapPages knows a range exactly when every page of it (one or two) was set and not
    /// cleared since, checked against a plain set of pages over a program of sets and clears.
    #[test]
    fn heap_pages_know_what_was_set_and_not_cleared() {
        let (start, page) = (0x55_5555_5000u64, 4096u64);
        let mut hp = HeapPages::new(start, page);
        let mut want = std::collections::BTreeSet::new();
        let mut rng = StdRng::seed_from_u64(12345);
        for step in 0..4000u64 {
            let x: u64 = rng.gen();
            let addr = start + (x >> 20) % (300 * page);
            let len = 1 + (x >> 8) % (3 * page);
            if step % 97 == 96 {
                let brk = start + (x >> 24) % (300 * page);
                hp.clear_from(brk);
                want.retain(|&p| p < brk / page); // the page holding brk is forgotten too
            } else {
                hp.set(addr, len);
                want.extend(addr / page..=(addr + len - 1) / page);
            }
            for probe in [addr, addr + len, start + (x >> 30) % (310 * page)] {
                for l in [1, 16, page, 2 * page] {
                    let (lo, hi) = (probe / page, (probe + l - 1) / page);
                    let all = (lo..=hi).all(|p| want.contains(&p));
                    assert_eq!(hp.known(probe, l), hi - lo <= 1 && all, "step {step}");
                }
            }
        }
        assert!(
            !hp.known(start - 1, 1),
            "below the heap's start nothing is known"
        );
    }

    #[test]
    fn the_parts_add_up_to_the_heap_and_the_mappings_after_every_step() {
        let p = Platform::linux_x86_64();
        let mut g = Glibc::new(GlibcParams::v2_36_x86_64(), p.address_space());
        let mut live = Vec::new();
        let mut asked = 0u64;
        // a program of mallocs, frees, reallocs, a calloc and big (mmapped) requests
        for k in 0..400u64 {
            let size = match k % 7 {
                0 => 200_000 + k,
                1 => 1 + k * 3,
                _ => 24 + (k * 37) % 900,
            };
            let a = if k % 11 == 0 {
                g.calloc(3, size as usize).unwrap()
            } else {
                g.malloc(size as usize).unwrap()
            };
            let size = if k % 11 == 0 { 3 * size } else { size };
            live.push((a, size));
            asked += size;
            if k % 3 == 0 {
                let (a, s) = live.swap_remove((k as usize * 7) % live.len());
                g.free(a).unwrap();
                asked -= s;
            }
            if k % 5 == 0 && !live.is_empty() {
                let j = (k as usize * 13) % live.len();
                let (a, s) = live[j];
                let n = s / 2 + 100;
                live[j] = (g.realloc(a, n as usize).unwrap(), n);
                asked = asked - s + n;
            }
            let u = g.heap_use();
            let vm = g.address_space();
            assert_eq!(u.total, vm.heap_bytes() + vm.mapped_bytes(), "step {k}");
            assert_eq!(
                u.requested + u.headers + u.alignment + u.metadata + u.free_chunks + u.top,
                u.total,
                "step {k}: {u:?}"
            );
            assert_eq!(u.requested, asked, "step {k}: the program's own count");
        }
        let u = g.heap_use();
        assert!(u.free_chunks > 0 && u.top > 0 && u.headers > 0, "{u:?}");
        assert_eq!(
            u.metadata,
            g.params().chunk_size(64 * 2 + 64 * 8),
            "tcache_perthread_struct: counts[64] u16, entries[64]"
        );
    }
}
