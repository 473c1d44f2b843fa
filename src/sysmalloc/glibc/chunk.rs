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

/// Node index meaning `NULL`: node 0 is `bin_at(0)`, which glibc never uses, so an
/// all-zero node is an empty one.
pub const NIL: u32 = 0;

/// Where a chunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
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

const SIZE_BITS: u32 = 28; // chunk sizes up to 2^28 granules (4 GiB)
const SIZE_MASK: u32 = (1 << SIZE_BITS) - 1;
const PREV_FREE: u32 = 1 << 31; // !PREV_INUSE, so that zero means "previous in use"

/// The boundary tag and list links of one chunk (or one bin sentinel): 16 bytes a
/// 16-byte granule, four to a cache line, all zero when empty.
///
/// ```text
///  head: state (4 bits) | size in granules (28 bits)
///  prev: PREV_FREE (1 bit) | prev_size in granules (31 bits)   (glibc's P bit and foot)
///  fd, bk: list links (node indices, 0 = NULL); while in use, fd holds the slack
///          (chunk bytes - bytes asked for; u32::MAX: see big_reqs)
/// ```
/// A large free chunk's `fd_nextsize`/`bk_nextsize` live where glibc keeps them, inside
/// the chunk: in the `fd`/`bk` of the node of its second granule (no chunk starts there
/// while it is free).
#[derive(Debug, Clone, Copy, Default)]
pub struct Node {
    head: u32,   // state << 28 | size in granules
    prev: u32,   // PREV_FREE | previous chunk's size in granules (valid when PREV_FREE)
    pub fd: u32, // next node in its bin list (NIL at the end); the slack while in use
    pub bk: u32, // previous node in its doubly-linked bin list
}

impl Node {
    /// A node describing nothing.
    pub const EMPTY: Node = Node {
        head: 0,
        prev: 0,
        fd: NIL,
        bk: NIL,
    };

    /// Where the chunk is.
    #[inline]
    pub fn state(&self) -> State {
        // SAFETY: the top bits only ever hold a `State` written by `set_state`/`set_head`
        unsafe { std::mem::transmute::<u8, State>((self.head >> SIZE_BITS) as u8) }
    }

    /// Moves the chunk to `s`.
    #[inline]
    pub fn set_state(&mut self, s: State) {
        self.head = (self.head & SIZE_MASK) | ((s as u32) << SIZE_BITS);
    }

    /// Size in granules.
    #[inline]
    pub fn size_g(&self) -> u32 {
        self.head & SIZE_MASK
    }

    /// glibc's `PREV_INUSE` bit.
    #[inline]
    pub fn prev_inuse(&self) -> bool {
        self.prev & PREV_FREE == 0
    }

    /// Sets glibc's `PREV_INUSE` bit.
    #[inline]
    pub fn set_prev_inuse(&mut self, inuse: bool) {
        if inuse {
            self.prev &= !PREV_FREE;
        } else {
            self.prev |= PREV_FREE;
        }
    }
}

/// The arena of nodes over the brk heap.
#[derive(Debug, Clone)]
pub struct Heap {
    pub base: u64,        // address of the first chunk (the heap start, 16-byte corrected)
    pub nodes: Vec<Node>, // 0..NBINS bin sentinels, then one node per 16-byte granule
    pub big_reqs: HashMap<u32, u64>, // requests whose slack does not fit a u32 (node -> bytes)
}

impl Heap {
    /// An empty heap whose first chunk will be at `base`.
    pub fn new(base: u64) -> Heap {
        let mut nodes = Vec::with_capacity(NBINS + 4096);
        for i in 0..NBINS as u32 {
            nodes.push(Node {
                head: (State::Bin as u32) << SIZE_BITS,
                prev: 0,
                fd: i, // so a sentinel's "nextsize" (the next sentinel's fd) is never NULL
                bk: i,
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
        (self.n(i).size_g() as u64) << 4
    }

    /// Sets the size in bytes of the chunk at node `i` (`set_head_size`).
    #[inline]
    pub fn set_size(&mut self, i: u32, bytes: u64) {
        debug_assert!(bytes >> 4 <= SIZE_MASK as u64);
        let n = self.m(i);
        n.head = (n.head & !SIZE_MASK) | (bytes >> 4) as u32;
    }

    /// `prev_size(p)` in bytes.
    #[inline]
    pub fn prev_size(&self, i: u32) -> u64 {
        ((self.n(i).prev & !PREV_FREE) as u64) << 4
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
        if slack < u32::MAX as u64 {
            self.m(i).fd = slack as u32;
        } else {
            self.m(i).fd = u32::MAX;
            self.big_reqs.insert(i, req);
        }
    }

    /// The bytes asked for by the in-use chunk at node `i` (forgotten after).
    #[inline]
    pub fn take_req(&mut self, i: u32) -> u64 {
        let slack = self.n(i).fd;
        if slack == u32::MAX {
            self.big_reqs.remove(&i).unwrap_or(0)
        } else {
            self.size(i) - slack as u64
        }
    }

    /// The node of the chunk after the chunk of node `i` (`next_chunk`).
    #[inline]
    pub fn next(&self, i: u32) -> u32 {
        i + self.n(i).size_g()
    }

    /// `set_inuse_bit_at_offset(p, size)`: the chunk of node `i` is in use.
    #[inline]
    pub fn set_inuse(&mut self, i: u32) {
        let nx = self.next(i);
        self.m(nx).set_prev_inuse(true);
    }

    /// `set_foot` + clearing the neighbour's `P`: the chunk of node `i` is free in a bin.
    #[inline]
    pub fn set_free_foot(&mut self, i: u32) {
        let size = self.n(i).size_g();
        let nx = i + size;
        self.m(nx).prev = PREV_FREE | size;
    }

    /// Writes a fresh chunk header at node `i`.
    #[inline]
    pub fn set_head(&mut self, i: u32, size: u64, prev_inuse: bool, state: State) {
        debug_assert!(size >> 4 <= SIZE_MASK as u64);
        let n = self.m(i);
        n.head = ((state as u32) << SIZE_BITS) | (size >> 4) as u32;
        n.set_prev_inuse(prev_inuse);
    }

    /// Forgets the header at node `i` (its chunk was merged into a neighbour).
    #[inline]
    pub fn clear(&mut self, i: u32) {
        self.m(i).head = 0;
    }
}
