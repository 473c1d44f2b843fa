//! Read-only views of the model's state for readers (`pyalloc map` and `explain` of glibc
//! traces): the brk heap's chunks in address order, every bin's chunks in list order, and
//! `mallinfo2()` as glibc 2.36 computes it (malloc.c `int_mallinfo`: it walks the bins,
//! not the heap, so the two views check each other).
//!
//! ```text
//!  heap:   base | chunk | chunk | ... | top |  brk          chunks(): one ChunkInfo each
//!  bins:   tcache[t] ─▶ …   fastbin[f] ─▶ …                   head first (the next one taken)
//!          unsorted, smallbin[i], largebin[i]: from last(bin) along bk (int_mallinfo's walk):
//!          the next one an unsorted or small-bin request takes first; a large bin's smallest
//! ```
//! Equations (at any moment): `Σ size over chunks() == brk - base`;
//! `ordblks == 1 + |chunks in unsorted, small and large bins|`, `smblks == |fastbin chunks|`;
//! `fordblks == size(top) + Σ size of binned and fastbin chunks`; tcache chunks count as
//! in use (`uordblks`), as in glibc.

use super::chunk::{bin, State, NIL};
use super::params::{NBINS, UNSORTED};
use super::Glibc;
use crate::addr::Addr;
use std::fmt;

/// A bin of the arena or the thread's cache, by malloc.c's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bin {
    /// `tcache->entries[t]`.
    Tcache(usize),
    /// `fastbinsY[f]`.
    Fastbin(usize),
    /// `bin_at(av, 1)`.
    Unsorted,
    /// `bin_at(av, i)`, `2 <= i < 64` on x86-64.
    Small(usize),
    /// `bin_at(av, i)`, `64 <= i < 127`.
    Large(usize),
}

impl fmt::Display for Bin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Bin::Tcache(i) => write!(f, "tcache[{i}]"),
            Bin::Fastbin(i) => write!(f, "fastbin[{i}]"),
            Bin::Unsorted => f.write_str("unsorted"),
            Bin::Small(i) => write!(f, "smallbin[{i}]"),
            Bin::Large(i) => write!(f, "largebin[{i}]"),
        }
    }
}

/// One chunk of the brk heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkInfo {
    /// The chunk's address (its `prev_size` field; the user pointer is `2 * SIZE_SZ` on).
    pub addr: Addr,
    /// `chunksize`.
    pub size: u64,
    /// In use, in which kind of bin, or top.
    pub state: State,
}

/// A non-empty bin and its chunks' addresses in list order (see the module's picture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinList {
    /// Which bin.
    pub bin: Bin,
    /// Chunk addresses, position 0 first.
    pub chunks: Vec<Addr>,
}

/// `struct mallinfo2` of the main arena, as `int_mallinfo` fills it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MallInfo {
    /// `av->system_mem`: bytes of the brk heap.
    pub arena: u64,
    /// Free chunks in the unsorted, small and large bins, plus top.
    pub ordblks: u64,
    /// Free chunks in the fastbins.
    pub smblks: u64,
    /// Mmapped chunks (`mp_.n_mmaps`).
    pub hblks: u64,
    /// Bytes in mmapped chunks (`mp_.mmapped_mem`).
    pub hblkhd: u64,
    /// Bytes in fastbin chunks.
    pub fsmblks: u64,
    /// `arena - fordblks`.
    pub uordblks: u64,
    /// Free bytes: top, fastbins and bins.
    pub fordblks: u64,
    /// `chunksize(av->top)`.
    pub keepcost: u64,
}

impl Glibc {
    /// The address of the heap's first chunk (the tcache_perthread_struct once made).
    pub fn heap_base(&self) -> Addr {
        Addr(self.heap.base)
    }

    /// Every chunk of the brk heap from its first to top, in address order (empty before
    /// the first sbrk).
    pub fn chunks(&self) -> Vec<ChunkInfo> {
        let mut out = Vec::new();
        if self.top == NIL {
            return out;
        }
        let mut i = self.heap.idx(self.heap.base);
        while i != self.top && i < self.top {
            let size = self.heap.size(i);
            out.push(ChunkInfo {
                addr: Addr(self.heap.addr(i)),
                size,
                state: self.heap.n(i).state(),
            });
            if size == 0 {
                break; // not a chunk start: the walk would not move
            }
            i = self.heap.next(i);
        }
        out.push(ChunkInfo {
            addr: Addr(self.heap.addr(self.top)),
            size: self.top_size(),
            state: State::Top,
        });
        out
    }

    /// Every non-empty bin and its chunks (tcache bins, fastbins, then bins 1..NBINS).
    pub fn bins(&self) -> Vec<BinList> {
        let mut out = Vec::new();
        let singly = |mut i: u32| {
            let mut v = Vec::new();
            while i != NIL {
                v.push(Addr(self.heap.addr(i)));
                i = self.heap.fd(i);
            }
            v
        };
        for (t, &head) in self.tcache_entries.iter().enumerate() {
            if head != NIL {
                out.push(BinList {
                    bin: Bin::Tcache(t),
                    chunks: singly(head),
                });
            }
        }
        for (f, &head) in self.fastbins.iter().enumerate() {
            if head != NIL {
                out.push(BinList {
                    bin: Bin::Fastbin(f),
                    chunks: singly(head),
                });
            }
        }
        for b in UNSORTED..NBINS {
            let s = bin(b);
            let mut p = self.heap.bk(s);
            let mut v = Vec::new();
            while p != s {
                v.push(Addr(self.heap.addr(p)));
                p = self.heap.bk(p);
            }
            if v.is_empty() {
                continue;
            }
            let which = if b == UNSORTED {
                Bin::Unsorted
            } else if self
                .params
                .in_smallbin_range(self.heap.size(self.heap.bk(s)))
            {
                Bin::Small(b)
            } else {
                Bin::Large(b)
            };
            out.push(BinList {
                bin: which,
                chunks: v,
            });
        }
        out
    }

    /// Live mmapped chunks as (user pointer, mapping length), by address.
    pub fn mmapped_chunks(&self) -> Vec<(Addr, u64)> {
        let mut v: Vec<(Addr, u64)> = self.mmaps.iter().map(|(&m, c)| (Addr(m), c.len)).collect();
        v.sort_unstable();
        v
    }

    /// `mallinfo2()` of the main arena (malloc.c `int_mallinfo`, `__libc_mallinfo2`).
    pub fn mallinfo(&self) -> MallInfo {
        let mut m = MallInfo {
            arena: self.vm.heap_bytes(),
            hblks: self.n_mmaps,
            hblkhd: self.mmaps.values().map(|c| c.len).sum(),
            ..MallInfo::default()
        };
        if self.top == NIL {
            return m;
        }
        let mut avail = self.top_size();
        m.keepcost = avail;
        m.ordblks = 1;
        for &head in &self.fastbins {
            let mut p = head;
            while p != NIL {
                m.smblks += 1;
                m.fsmblks += self.heap.size(p);
                p = self.heap.fd(p);
            }
        }
        avail += m.fsmblks;
        for b in UNSORTED..NBINS {
            let s = bin(b);
            let mut p = self.heap.bk(s);
            while p != s {
                m.ordblks += 1;
                avail += self.heap.size(p);
                p = self.heap.bk(p);
            }
        }
        m.fordblks = avail;
        m.uordblks = m.arena - avail;
        m
    }
}
