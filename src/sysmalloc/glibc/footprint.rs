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
    use crate::alloc::Allocator;
    use crate::platform::Platform;
    use crate::sysmalloc::glibc::{Glibc, GlibcParams};

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
