//! Chunks and their boundary tags, kept in an arena indexed by address.
//!
//! ```text
//!  base                                                              top end = brk
//!  | chunk        | chunk        | free chunk     | chunk | top chunk          |
//!    [size|P] ...   [size|P] ...   [size|P] fd bk   [prev_size][size|P] ...
//!                                  ...   [foot]  ◀─ prev_size of the next chunk
//! ```
//! glibc keeps a chunk's size and its neighbour's in-use bit (`P`, `PREV_INUSE`) in the
//! heap itself. The model keeps the same facts in a [`Node`] per 16-byte granule of the
//! heap (`nodes[NBINS + (addr - base) / 16]`; a node describes a chunk only where one
//! starts), so following a boundary tag is an index computation, and the list links of
//! the bins are node indices. Nodes `0..NBINS` are the bins' sentinels (`bin_at(av, i)`).
//!
//! Invariants (checked by `check_invariants`):
//! - chunks tile `base .. top + size(top)` with no gap: `next(p) = p + size(p)`;
//! - `P(next(p)) == !is_binned(p)` and, when binned, `prev_size(next(p)) == size(p)`
//!   (tcache and fastbin chunks count as in use, as in glibc).

use super::params::NBINS;
use std::collections::HashMap;

/// Node index meaning `NULL`.
pub const NIL: u32 = u32::MAX;

/// Where a chunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No chunk starts at this granule.
    None,
    /// Handed out by malloc and not freed.
    InUse,
    /// In a tcache bin (in use as far as its neighbours can tell).
    Tcache,
    /// In a fastbin (in use as far as its neighbours can tell).
    Fast,
    /// In the unsorted bin.
    Unsorted,
    /// In a small bin.
    Small,
    /// In a large bin.
    Large,
    /// The top chunk.
    Top,
    /// A bin's sentinel (not a chunk).
    Bin,
}

impl State {
    /// Free in a bin of the arena proper (glibc's `!inuse(p)`).
    #[inline]
    pub fn is_binned(self) -> bool {
        matches!(self, State::Unsorted | State::Small | State::Large)
    }
}

/// The boundary tag and list links of one chunk (or one bin sentinel): 20 bytes a granule.
///
/// Sizes are kept in 16-byte granules. A large free chunk's `fd_nextsize`/`bk_nextsize`
/// live where glibc keeps them, inside the chunk: in the `fd`/`bk` of the node of its
/// second granule (no chunk starts there while it is free).
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub size: u32,        // chunk size in granules (0 where no chunk starts)
    pub prev_size: u32,   // the previous chunk's size in granules, valid when !prev_inuse
    pub fd: u32,          // next node in its bin list (NIL at the end of a singly-linked list)
    pub bk: u32,          // previous node in its doubly-linked bin list
    pub slack: u16,       // size in bytes - bytes asked for, while in use (MAX: see big_reqs)
    pub state: State,     // where the chunk is
    pub prev_inuse: bool, // glibc's PREV_INUSE bit of this chunk's size field
}

impl Node {
    /// A node describing nothing.
    pub const EMPTY: Node = Node {
        size: 0,
        prev_size: 0,
        fd: NIL,
        bk: NIL,
        slack: 0,
        state: State::None,
        prev_inuse: true,
    };
}

/// The arena of nodes over the brk heap.
#[derive(Debug, Clone)]
pub struct Heap {
    pub base: u64,        // address of the first chunk (the heap start, 16-byte corrected)
    pub nodes: Vec<Node>, // 0..NBINS bin sentinels, then one node per 16-byte granule
    pub big_reqs: HashMap<u32, u64>, // requests whose slack does not fit a u16 (node -> bytes)
}

impl Heap {
    /// An empty heap whose first chunk will be at `base`.
    pub fn new(base: u64) -> Heap {
        let mut nodes = Vec::with_capacity(NBINS + 4096);
        for i in 0..NBINS as u32 {
            nodes.push(Node {
                fd: i, // so a sentinel's "nextsize" (the next sentinel's fd) is never NULL
                bk: i,
                state: State::Bin,
                ..Node::EMPTY
            });
        }
        Heap {
            base,
            nodes,
            big_reqs: HashMap::new(),
        }
    }

    /// Makes room for nodes up to address `end` (exclusive) plus one.
    pub fn grow_to(&mut self, end: u64) {
        let want = NBINS + ((end - self.base) >> 4) as usize + 1;
        if want > self.nodes.len() {
            self.nodes.resize(want, Node::EMPTY);
        }
    }

    /// The node of the chunk at `addr`.
    #[inline]
    pub fn idx(&self, addr: u64) -> u32 {
        (NBINS as u64 + ((addr - self.base) >> 4)) as u32
    }

    /// The address of the chunk of node `i`.
    #[inline]
    pub fn addr(&self, i: u32) -> u64 {
        self.base + (((i as u64) - NBINS as u64) << 4)
    }

    /// True when `addr` could be a chunk start in the arena: at or past base, on the grid.
    #[inline]
    pub fn on_grid(&self, addr: u64) -> bool {
        addr >= self.base && (addr - self.base) & 15 == 0
    }

    /// The node at `i`.
    #[inline]
    pub fn n(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    /// The node at `i`, mutably.
    #[inline]
    pub fn m(&mut self, i: u32) -> &mut Node {
        &mut self.nodes[i as usize]
    }

    /// The size in bytes of the chunk at node `i` (`chunksize`).
    #[inline]
    pub fn size(&self, i: u32) -> u64 {
        (self.n(i).size as u64) << 4
    }

    /// Sets the size in bytes of the chunk at node `i` (`set_head_size`).
    #[inline]
    pub fn set_size(&mut self, i: u32, bytes: u64) {
        self.m(i).size = (bytes >> 4) as u32;
    }

    /// `prev_size(p)` in bytes.
    #[inline]
    pub fn prev_size(&self, i: u32) -> u64 {
        (self.n(i).prev_size as u64) << 4
    }

    /// `p->fd_nextsize` (kept in the node of the chunk's second granule).
    #[inline]
    pub fn fd_nextsize(&self, i: u32) -> u32 {
        self.n(i + 1).fd
    }

    /// `p->bk_nextsize`.
    #[inline]
    pub fn bk_nextsize(&self, i: u32) -> u32 {
        self.n(i + 1).bk
    }

    /// Sets `p->fd_nextsize`.
    #[inline]
    pub fn set_fd_nextsize(&mut self, i: u32, v: u32) {
        self.m(i + 1).fd = v;
    }

    /// Sets `p->bk_nextsize`.
    #[inline]
    pub fn set_bk_nextsize(&mut self, i: u32, v: u32) {
        self.m(i + 1).bk = v;
    }

    /// Records that the in-use chunk at node `i` serves a request of `req` bytes.
    #[inline]
    pub fn set_req(&mut self, i: u32, req: u64) {
        let slack = self.size(i).wrapping_sub(req);
        if slack < u16::MAX as u64 {
            self.m(i).slack = slack as u16;
        } else {
            self.m(i).slack = u16::MAX;
            self.big_reqs.insert(i, req);
        }
    }

    /// The bytes asked for by the in-use chunk at node `i` (forgotten after).
    #[inline]
    pub fn take_req(&mut self, i: u32) -> u64 {
        let slack = self.n(i).slack;
        if slack == u16::MAX {
            self.big_reqs.remove(&i).unwrap_or(0)
        } else {
            self.size(i) - slack as u64
        }
    }

    /// The node of the chunk after the chunk of node `i` (`next_chunk`).
    #[inline]
    pub fn next(&self, i: u32) -> u32 {
        i + self.n(i).size
    }

    /// `set_inuse_bit_at_offset(p, size)`: the chunk of node `i` is in use.
    #[inline]
    pub fn set_inuse(&mut self, i: u32) {
        let nx = self.next(i);
        self.m(nx).prev_inuse = true;
    }

    /// `set_foot` + clearing the neighbour's `P`: the chunk of node `i` is free in a bin.
    #[inline]
    pub fn set_free_foot(&mut self, i: u32) {
        let size = self.n(i).size;
        let nx = i + size;
        let n = self.m(nx);
        n.prev_size = size;
        n.prev_inuse = false;
    }

    /// Writes a fresh chunk header at node `i`.
    #[inline]
    pub fn set_head(&mut self, i: u32, size: u64, prev_inuse: bool, state: State) {
        let n = self.m(i);
        n.size = (size >> 4) as u32;
        n.prev_inuse = prev_inuse;
        n.state = state;
    }

    /// Forgets the header at node `i` (its chunk was merged into a neighbour).
    #[inline]
    pub fn clear(&mut self, i: u32) {
        let n = self.m(i);
        n.size = 0;
        n.state = State::None;
    }
}
