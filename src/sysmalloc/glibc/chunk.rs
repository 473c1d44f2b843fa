//! Chunks and their boundary tags, kept in an arena indexed by address.
//!
//! ```text
//!  glibc:   | [prev_size][size|P] fd bk fd_nextsize bk_nextsize ... | [prev_size][size|P] ...
//!  model:   nodes[i]   = head: state|size    prev: !P|prev_size      (the boundary tag)
//!           nodes[i+1] = fd, bk              (bin links; fd = the request while in use)
//!           nodes[i+2] = fd_nextsize, bk_nextsize                 (large free chunks)
//!  where i = FIRST + (chunk - base) / granule,  granule = MINSIZE / 2 (16 bytes on x86-64)
//! ```
//! glibc keeps a chunk's size, its neighbour's in-use bit (`P`) and its list links in the
//! heap itself. The model keeps the same facts in an array of 8-byte nodes, one per
//! granule, in the same places relative to the chunk: every chunk spans at least two
//! granules, so its links fit in the node after its tag, as glibc's fit after its header.
//! Following a boundary tag is an index computation; list links are node indices.
//! Nodes `0..FIRST` are the bins' sentinels, two each (`bin_at(av, b)` is node `2b`).
//!
//! The node array is zeroed memory ([`Nodes`], a `zeroed::ZeroedVec`: on Linux one
//! anonymous mapping that grows in place): a node no chunk ever wrote stays zero, and a
//! zero page the model never writes is never made resident by the kernel (a dropped
//! array's mapping is kept as a spare for the next array, zeroed where it was used: those
//! pages stay resident, as memory calloc reuses does). So a 1 MiB chunk costs the page
//! holding its tag (4 KiB of nodes), not the 512 KiB of nodes its granules span: the
//! model's memory grows with the chunks, not with their sizes. Invariant:
//! `nodes[len..cap] == 0`.
//!
//! Invariants (checked by `check_invariants`):
//! - chunks tile `base .. top + size(top)` with no gap: `next(p) = p + size(p)`;
//! - `P(next(p)) == !is_binned(p)` and, when binned, `prev_size(next(p)) == size(p)`
//!   (tcache and fastbin chunks count as in use, as in glibc).

use super::params::NBINS;
use crate::zeroed::{Zeroable, ZeroedVec};
use std::collections::HashMap;

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

    /// The state stored in a node's top bits; anything else reads as `None`.
    #[inline]
    fn from_bits(b: u32) -> State {
        match b {
            1 => State::InUse,
            2 => State::Tcache,
            3 => State::Fast,
            4 => State::Unsorted,
            5 => State::Small,
            6 => State::Large,
            7 => State::Top,
            8 => State::Bin,
            _ => State::None,
        }
    }
}

const SIZE_BITS: u32 = 28; // sizes up to 2^28 granules
const SIZE_MASK: u32 = (1 << SIZE_BITS) - 1;
const PREV_FREE: u32 = 1 << 31; // !PREV_INUSE, so that zero means "previous in use"

/// Node index of the first granule of the heap (after the sentinels).
pub const FIRST: u32 = 2 * NBINS as u32;

/// Node index meaning `NULL`: node 0 is `bin_at(0)`, which glibc never uses.
pub const NIL: u32 = 0;

/// The sentinel node of bin `b` (`bin_at(av, b)`).
#[inline]
pub fn bin(b: usize) -> u32 {
    2 * b as u32
}

/// One 8-byte node: a chunk's tag where a chunk starts, its links in the next node.
///
/// ```text
///  tag:   a = state (4 bits) | size in granules (28 bits)
///         b = PREV_FREE (1 bit) | prev_size in granules (31 bits)
///  links: a = fd (or the bytes requested while in use), b = bk
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Node {
    a: u32, // tag: state << 28 | size in granules;  links: fd
    b: u32, // tag: PREV_FREE | prev_size in granules; links: bk
}

impl Node {
    /// Where the chunk is (`None` where no chunk starts).
    #[inline]
    pub fn state(&self) -> State {
        State::from_bits(self.a >> SIZE_BITS)
    }

    /// Moves the chunk to `s`.
    #[inline]
    pub fn set_state(&mut self, s: State) {
        self.a = (self.a & SIZE_MASK) | ((s as u32) << SIZE_BITS);
    }

    /// Size in granules.
    #[inline]
    pub fn size_g(&self) -> u32 {
        self.a & SIZE_MASK
    }

    /// `prev_size` in granules (meaningful when the previous chunk is free).
    #[inline]
    pub fn prev_size_g(&self) -> u32 {
        self.b & !PREV_FREE
    }

    /// glibc's `PREV_INUSE` bit.
    #[inline]
    pub fn prev_inuse(&self) -> bool {
        self.b & PREV_FREE == 0
    }

    /// Sets glibc's `PREV_INUSE` bit.
    #[inline]
    pub fn set_prev_inuse(&mut self, inuse: bool) {
        if inuse {
            self.b &= !PREV_FREE;
        } else {
            self.b |= PREV_FREE;
        }
    }
}

/// Nodes per page of the node array (4 KiB).
#[cfg(test)]
const PAGE_NODES: usize = 4096 / std::mem::size_of::<Node>();

// SAFETY: a node is two integers, and Copy: all-zero is the empty node (no chunk, the
// previous one in use, NULL links).
unsafe impl Zeroable for Node {}

/// The growable array of nodes, in zeroed memory ([`ZeroedVec`]: what is never written is
/// never resident; it grows in place, with huge pages once large). Every index the model
/// forms is below `len` ([`ZeroedVec::at`] checks in debug builds only): a chunk's tag
/// (at most top's, and [`Heap::grow_to`] keeps two nodes past top's end), a chunk's links
/// (its tag + 1, or + 2 for a large chunk, which spans many granules) or a bin's sentinel;
/// addresses from outside are checked against top before they become indices
/// (`live_chunk`, `chunk_of`).
pub type Nodes = ZeroedVec<Node>;

/// The arena of nodes over the brk heap.
#[derive(Debug, Clone)]
pub struct Heap {
    pub base: u64,                   // address of the first chunk (the heap start, aligned)
    pub shift: u32,                  // log2(granule): 4 on x86-64, 3 on i386
    pub nodes: Nodes,                // 0..FIRST bin sentinels, then one node per granule
    pub big_reqs: HashMap<u32, u64>, // requests of u32::MAX bytes or more (node -> bytes)
}

impl Heap {
    /// An empty heap whose first chunk will be at `base`, in granules of `1 << shift` bytes.
    pub fn new(base: u64, shift: u32) -> Heap {
        let mut h = Heap {
            base,
            shift,
            nodes: Nodes::new(),
            big_reqs: HashMap::new(),
        };
        h.reset(base);
        h
    }

    /// A heap with no memory (a placeholder while its arena is moved out).
    pub fn empty() -> Heap {
        Heap {
            base: 0,
            shift: 0,
            nodes: Nodes::new(),
            big_reqs: HashMap::new(),
        }
    }

    /// Empties the heap, keeping the node array's memory.
    pub fn reset(&mut self, base: u64) {
        self.nodes.clear();
        self.nodes.resize(FIRST as usize);
        for b in 0..NBINS as u32 {
            // the tag (non-zero: a sentinel's "fd_nextsize", the next sentinel's tag, is
            // never NULL), then the links: fd = bk = the sentinel itself
            let s = bin(b as usize);
            self.nodes[s as usize] = Node {
                a: (State::Bin as u32) << SIZE_BITS,
                b: 0,
            };
            self.nodes[s as usize + 1] = Node { a: s, b: s };
        }
        self.big_reqs.clear();
        self.base = base;
    }

    /// Makes room for nodes up to address `end` (exclusive) plus two.
    pub fn grow_to(&mut self, end: u64) {
        let want = FIRST as usize + ((end - self.base) >> self.shift) as usize + 3;
        self.nodes.resize(want);
    }

    /// The largest heap extent (bytes) the node indices can describe.
    pub fn max_extent(&self) -> u64 {
        ((SIZE_MASK - FIRST - 3) as u64) << self.shift
    }

    /// Granules → bytes.
    #[inline]
    pub fn bytes(&self, g: u32) -> u64 {
        (g as u64) << self.shift
    }

    /// Bytes → granules.
    #[inline]
    pub fn g(&self, bytes: u64) -> u32 {
        (bytes >> self.shift) as u32
    }

    /// The node of the chunk at `addr`.
    #[inline]
    pub fn idx(&self, addr: u64) -> u32 {
        FIRST + ((addr - self.base) >> self.shift) as u32
    }

    /// The address of the chunk of node `i`.
    #[inline]
    pub fn addr(&self, i: u32) -> u64 {
        self.base + (((i - FIRST) as u64) << self.shift)
    }

    /// True when `addr` could be a chunk start in the arena: at or past base, on the grid.
    #[inline]
    pub fn on_grid(&self, addr: u64) -> bool {
        addr >= self.base && (addr - self.base) & ((1 << self.shift) - 1) == 0
    }

    /// Node `i` (a tag or a chunk's links).
    #[inline(always)]
    fn node(&self, i: usize) -> &Node {
        // SAFETY: every index the model forms is below the array's length (see [`Nodes`]:
        // tags up to top's, links one or two after a tag, sentinels; outside addresses are
        // checked against top first); debug builds check it.
        unsafe { self.nodes.at(i) }
    }

    /// Node `i`, mutably (as [`node`](Self::node)).
    #[inline(always)]
    fn node_mut(&mut self, i: usize) -> &mut Node {
        // SAFETY: as in `node`.
        unsafe { self.nodes.at_mut(i) }
    }

    /// The tag at node `i`.
    #[inline(always)]
    pub fn n(&self, i: u32) -> &Node {
        self.node(i as usize)
    }

    /// The tag at node `i`, mutably.
    #[inline(always)]
    pub fn m(&mut self, i: u32) -> &mut Node {
        self.node_mut(i as usize)
    }

    /// `p->fd`.
    #[inline(always)]
    pub fn fd(&self, i: u32) -> u32 {
        self.node(i as usize + 1).a
    }

    /// `p->bk`.
    #[inline(always)]
    pub fn bk(&self, i: u32) -> u32 {
        self.node(i as usize + 1).b
    }

    /// Sets `p->fd`.
    #[inline(always)]
    pub fn set_fd(&mut self, i: u32, v: u32) {
        self.node_mut(i as usize + 1).a = v;
    }

    /// Sets `p->bk`.
    #[inline(always)]
    pub fn set_bk(&mut self, i: u32, v: u32) {
        self.node_mut(i as usize + 1).b = v;
    }

    /// Sets `p->fd` and `p->bk` (one store).
    #[inline(always)]
    pub fn set_links(&mut self, i: u32, fd: u32, bk: u32) {
        *self.node_mut(i as usize + 1) = Node { a: fd, b: bk };
    }

    /// Sets `p->fd_nextsize` and `p->bk_nextsize` (one store).
    #[inline(always)]
    pub fn set_nextsize(&mut self, i: u32, fd: u32, bk: u32) {
        *self.node_mut(i as usize + 2) = Node { a: fd, b: bk };
    }

    /// `p->fd_nextsize` (large chunks only: they span many granules).
    #[inline(always)]
    pub fn fd_nextsize(&self, i: u32) -> u32 {
        self.node(i as usize + 2).a
    }

    /// `p->bk_nextsize`.
    #[inline(always)]
    pub fn bk_nextsize(&self, i: u32) -> u32 {
        self.node(i as usize + 2).b
    }

    /// Sets `p->fd_nextsize`.
    #[inline(always)]
    pub fn set_fd_nextsize(&mut self, i: u32, v: u32) {
        self.node_mut(i as usize + 2).a = v;
    }

    /// Sets `p->bk_nextsize`.
    #[inline(always)]
    pub fn set_bk_nextsize(&mut self, i: u32, v: u32) {
        self.node_mut(i as usize + 2).b = v;
    }

    /// The size in bytes of the chunk at node `i` (`chunksize`).
    #[inline]
    pub fn size(&self, i: u32) -> u64 {
        (self.n(i).size_g() as u64) << self.shift
    }

    /// Sets the size in bytes of the chunk at node `i` (`set_head_size`).
    #[inline]
    pub fn set_size(&mut self, i: u32, bytes: u64) {
        let g = self.g(bytes);
        let n = self.m(i);
        n.a = (n.a & !SIZE_MASK) | g;
    }

    /// `prev_size(p)` in bytes.
    #[inline]
    pub fn prev_size(&self, i: u32) -> u64 {
        ((self.n(i).b & !PREV_FREE) as u64) << self.shift
    }

    /// Records that the in-use chunk at node `i` serves a request of `req` bytes (kept
    /// where `fd` is: in use, a chunk has no links; `u32::MAX` there sends it to `big_reqs`).
    #[inline(always)]
    pub fn set_req(&mut self, i: u32, req: u64) {
        if req < u32::MAX as u64 {
            self.set_fd(i, req as u32);
        } else {
            self.set_big_req(i, req);
        }
    }

    /// `set_req` of a request that does not fit the node (rare: out of line).
    #[cold]
    #[inline(never)]
    fn set_big_req(&mut self, i: u32, req: u64) {
        self.set_fd(i, u32::MAX);
        self.big_reqs.insert(i, req);
    }

    /// The bytes asked for by the in-use chunk at node `i` (kept).
    pub fn req(&self, i: u32) -> u64 {
        match self.fd(i) {
            u32::MAX => self.big_reqs.get(&i).copied().unwrap_or(0),
            req => req as u64,
        }
    }

    /// The bytes asked for by the in-use chunk at node `i` (forgotten after).
    #[inline(always)]
    pub fn take_req(&mut self, i: u32) -> u64 {
        match self.fd(i) {
            u32::MAX => self.take_big_req(i),
            req => req as u64,
        }
    }

    /// `take_req` of a request kept in `big_reqs` (rare: out of line).
    #[cold]
    #[inline(never)]
    fn take_big_req(&mut self, i: u32) -> u64 {
        self.big_reqs.remove(&i).unwrap_or(0)
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

    /// Writes a fresh chunk header at node `i`.
    #[inline]
    pub fn set_head(&mut self, i: u32, size: u64, prev_inuse: bool, state: State) {
        let g = self.g(size);
        debug_assert!(g <= SIZE_MASK);
        let n = self.m(i);
        n.a = ((state as u32) << SIZE_BITS) | g;
        n.set_prev_inuse(prev_inuse);
    }

    /// `set_head (p, size | PREV_INUSE)` with the size in granules and the chunk's state.
    #[inline(always)]
    pub fn set_head_g(&mut self, i: u32, g: u32, state: State) {
        debug_assert!(g <= SIZE_MASK);
        let n = self.m(i);
        n.a = ((state as u32) << SIZE_BITS) | g;
        n.b &= !PREV_FREE;
    }

    /// `set_foot` of a free chunk of `g` granules ending at node `nx` (its neighbour's
    /// tag): `prev_size = g`, and the neighbour's `P` bit cleared.
    #[inline(always)]
    pub fn set_foot_g(&mut self, nx: u32, g: u32) {
        self.m(nx).b = PREV_FREE | g;
    }

    /// Forgets the header at node `i` (its chunk was merged into a neighbour).
    #[inline]
    pub fn clear(&mut self, i: u32) {
        self.m(i).a = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_array_reads_as_empty_whatever_array_gave_its_memory_back() {
        for round in 0..4 {
            let mut n = Nodes::new();
            n.resize(5 * PAGE_NODES + round);
            assert!(n.iter().all(|x| x.a | x.b == 0), "round {round}");
            for i in (0..n.len()).step_by(7) {
                n[i] = Node { a: 9, b: 9 };
            }
            n.resize(40 * PAGE_NODES); // a grow past a spare's size keeps what was written
            assert_eq!((n[7].a, n[7].b), (9, 9));
            assert!(n[5 * PAGE_NODES + 4..].iter().all(|x| x.a | x.b == 0));
        }
    }

    #[test]
    fn nodes_grow_and_clone_keep_every_written_node_and_read_the_rest_as_empty() {
        let mut n = Nodes::new();
        let at = [
            0usize,
            1,
            PAGE_NODES - 1,
            5 * PAGE_NODES + 3,
            40 * PAGE_NODES,
        ];
        for (k, &i) in at.iter().enumerate() {
            n.resize(i + 1);
            n[i] = Node {
                a: k as u32 + 1,
                b: 7,
            };
        }
        n.resize(1000 * PAGE_NODES); // several doublings past the last write
        let c = n.clone();
        for m in [&n, &c] {
            assert_eq!(m.len(), 1000 * PAGE_NODES);
            for (k, &i) in at.iter().enumerate() {
                assert_eq!((m[i].a, m[i].b), (k as u32 + 1, 7));
            }
            let written = m.iter().filter(|x| x.a | x.b != 0).count();
            assert_eq!(written, at.len(), "every other node reads as empty");
        }
        n.clear();
        assert_eq!(n.len(), 0);
        n.resize(10);
        assert!(
            n.iter().all(|x| x.a | x.b == 0),
            "cleared nodes are empty again"
        );
    }
}
