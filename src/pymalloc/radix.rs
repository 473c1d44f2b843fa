//! `arena_map`: which arena owns an address (obmalloc.c's radix tree, 3.10+), kept by every
//! preset as the model's own O(1) address -> arena index.
//!
//! ```text
//!  3.11+ (ADDRESS_BITS 64, ARENA_BITS 20):  | top 15 | mid 15 | bot 14 | tail 20 |
//!  3.10  (ADDRESS_BITS 48, ARENA_BITS 20):  | ignored 16 | top 10 | mid 10 | bot 8 | tail 20 |
//!  root[top] -> mid node[mid] -> bot node[bot] = { tail_hi, tail_lo }
//!
//!  an arena at base b covers b .. b + ARENA_SIZE: the "ideal" chunk of b (key b >> ARENA_BITS)
//!  from tail(b) up (tail_hi), and the next ideal chunk below tail(b) (tail_lo).
//! ```
//!
//! CPython's tree only answers "is this address inside some arena"; the model also needs
//! *which* arena, so each coverage entry carries the arena_object index beside the tail.
//! Address bits above `ADDRESS_BITS` are masked off before indexing, as obmalloc.c's
//! `MAP_TOP_INDEX(p) & MAP_TOP_MASK` does (3.10 indexes 48 bits, 3.11+ all 64).
//! Nodes are created on first use and never freed, as in obmalloc.c, and counted
//! (`arena_map_mid_count`, `arena_map_bot_count`) because `sys._debugmallocstats()` prints
//! those counts. Invariant: an address `a` is owned by arena `i` iff
//! `arenas[i].address <= a < arenas[i].address + ARENA_SIZE`, and then `lookup(a) == Some(i)`.

/// One leaf entry (`arena_coverage_t`) plus the arena indices it refers to.
#[derive(Debug, Clone, Copy, Default)]
struct Coverage {
    hi: u32,      // arena index + 1 of the arena starting in this chunk (0 = none)
    tail_hi: u32, // offset in this chunk where that arena starts
    lo: u32,      // arena index + 1 of the arena reaching into this chunk from below (0 = none)
    tail_lo: u32, // offset in this chunk where that arena ends (exclusive)
}

/// The arena map: bottom nodes by key `address >> (ARENA_BITS + MAP_BOT_BITS)`.
#[derive(Debug, Clone)]
pub struct ArenaMap {
    arena_bits: u32,                   // ARENA_BITS
    bot_bits: u32,                     // MAP_BOT_BITS
    mid_shift: u32,                    // ARENA_BITS + MAP_BOT_BITS + MAP_MID_BITS
    address_mask: u64,                 // 2^ADDRESS_BITS - 1: the bits the tree indexes
    bots: Vec<(u64, Box<[Coverage]>)>, // bottom nodes, by key
    mids: Vec<u64>,                    // keys of the mid nodes created (address >> mid_shift)
    last: usize,                       // index in `bots` of the last node looked up
}

/// A node the map had to create (CPython `PyMem_RawCalloc`s each one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewNode {
    /// An `arena_map_mid_t`.
    Mid,
    /// An `arena_map_bot_t`.
    Bot,
}

impl ArenaMap {
    /// An empty map for arenas of `1 << arena_bits` bytes, with bottom nodes of
    /// `1 << bot_bits` entries and mid nodes of `1 << mid_bits`, indexing the low
    /// `address_bits` bits of an address.
    pub fn new(arena_bits: u32, mid_bits: u32, bot_bits: u32, address_bits: u32) -> ArenaMap {
        ArenaMap {
            arena_bits,
            bot_bits,
            mid_shift: arena_bits + bot_bits + mid_bits,
            address_mask: if address_bits >= 64 {
                u64::MAX
            } else {
                (1u64 << address_bits) - 1
            },
            bots: Vec::new(),
            mids: Vec::new(),
            last: 0,
        }
    }

    /// Mid nodes created so far (`arena_map_mid_count`).
    pub fn mid_count(&self) -> usize {
        self.mids.len()
    }

    /// Bottom nodes created so far (`arena_map_bot_count`).
    pub fn bot_count(&self) -> usize {
        self.bots.len()
    }

    fn node(&mut self, addr: u64, created: &mut Vec<NewNode>) -> usize {
        let addr = addr & self.address_mask;
        let mid_key = addr >> self.mid_shift;
        if !self.mids.contains(&mid_key) {
            self.mids.push(mid_key);
            created.push(NewNode::Mid);
        }
        let key = addr >> (self.arena_bits + self.bot_bits);
        if let Some(i) = self.bots.iter().position(|(k, _)| *k == key) {
            return i;
        }
        created.push(NewNode::Bot);
        let n = 1usize << self.bot_bits;
        self.bots
            .push((key, vec![Coverage::default(); n].into_boxed_slice()));
        self.bots.len() - 1
    }

    fn index(&self, addr: u64) -> usize {
        ((addr >> self.arena_bits) & ((1 << self.bot_bits) - 1)) as usize
    }

    /// `arena_map_mark_used(base, 1)` for arena `arena`; returns the nodes created, in the
    /// order obmalloc.c allocates them (base's mid, base's bot, then the next chunk's).
    pub fn mark_used(&mut self, base: u64, arena: u32) -> Vec<NewNode> {
        let mut created = Vec::new();
        let mask = (1u64 << self.arena_bits) - 1;
        let tail = (base & mask) as u32;
        let n = self.node(base, &mut created);
        let i = self.index(base);
        self.bots[n].1[i].hi = arena + 1;
        self.bots[n].1[i].tail_hi = tail;
        if tail != 0 {
            let next = base + (1u64 << self.arena_bits);
            let n2 = self.node(next, &mut created);
            let i2 = self.index(next);
            self.bots[n2].1[i2].lo = arena + 1;
            self.bots[n2].1[i2].tail_lo = tail;
        }
        created
    }

    /// `arena_map_mark_used(base, 0)`: the arena at `base` is gone.
    pub fn mark_unused(&mut self, base: u64) {
        let mask = (1u64 << self.arena_bits) - 1;
        let tail = base & mask;
        let mut scratch = Vec::new();
        let n = self.node(base, &mut scratch);
        let i = self.index(base);
        self.bots[n].1[i].hi = 0;
        self.bots[n].1[i].tail_hi = 0;
        if tail != 0 {
            let next = base + (1u64 << self.arena_bits);
            let n2 = self.node(next, &mut scratch);
            let i2 = self.index(next);
            self.bots[n2].1[i2].lo = 0;
            self.bots[n2].1[i2].tail_lo = 0;
        }
    }

    /// The index of the arena owning `addr`, if any (`arena_map_is_used`, plus which).
    #[inline]
    pub fn lookup(&mut self, addr: u64) -> Option<u32> {
        let key = (addr & self.address_mask) >> (self.arena_bits + self.bot_bits);
        let node = match self.bots.get(self.last) {
            Some((k, node)) if *k == key => node,
            _ => {
                let i = self.bots.iter().position(|(k, _)| *k == key)?;
                self.last = i;
                &self.bots[i].1
            }
        };
        let c = node[self.index(addr)];
        let tail = (addr & ((1u64 << self.arena_bits) - 1)) as u32;
        if c.lo != 0 && tail < c.tail_lo {
            Some(c.lo - 1)
        } else if c.hi != 0 && tail >= c.tail_hi {
            Some(c.hi - 1)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaligned_arena_covers_two_chunks_and_only_itself() {
        let mut m = ArenaMap::new(20, 15, 14, 64);
        let base = 0x7fff_7690_3000u64; // not 1 MiB aligned
        let created = m.mark_used(base, 3);
        assert_eq!(created, vec![NewNode::Mid, NewNode::Bot]);
        assert_eq!(m.lookup(base), Some(3));
        assert_eq!(m.lookup(base - 1), None);
        assert_eq!(m.lookup(base + (1 << 20) - 1), Some(3));
        assert_eq!(m.lookup(base + (1 << 20)), None);
        let other = base + (1 << 20);
        assert!(m.mark_used(other, 4).is_empty());
        assert_eq!(m.lookup(base + (1 << 20)), Some(4));
        assert_eq!(m.lookup(base + (1 << 20) - 16), Some(3));
        m.mark_unused(base);
        assert_eq!(m.lookup(base + 16), None);
        assert_eq!(m.lookup(other + 16), Some(4));
        assert_eq!((m.mid_count(), m.bot_count()), (1, 1));
    }

    #[test]
    fn a_48_bit_tree_ignores_the_high_bits_as_3_10_does() {
        let mut m = ArenaMap::new(20, 10, 8, 48);
        let base = 0x7fff_7700_0000u64;
        assert_eq!(m.mark_used(base, 0), vec![NewNode::Mid, NewNode::Bot]);
        // An address differing only above bit 47 indexes the same leaf.
        assert_eq!(m.lookup(base | (1 << 60)), Some(0));
        // The next mid node starts 2^(20 + 8 + 10) bytes further.
        assert_eq!(
            m.mark_used(base + (1 << 38), 1),
            vec![NewNode::Mid, NewNode::Bot]
        );
        assert_eq!(m.mark_used(base + (1 << 28), 2), vec![NewNode::Bot]);
        assert_eq!((m.mid_count(), m.bot_count()), (2, 3));
    }
}
