//! The model's invariants, as equations, checked on demand (the property tests call
//! [`Pymalloc::check_invariants`] after every operation).
//!
//! ```text
//!  per carved pool p with a size class:  p.count + |p.freeblock list| + untouched(p) == NUMBLOCKS(p.szidx)
//!                                        p.count == |live blocks of p|
//!                                        p.freeblock == NULL  <=>  p.count == NUMBLOCKS(p.szidx)
//!  per arena a:                          a.nfreepools == |a.freepools| + (a.ntotalpools - carved(a))
//!  usable_arenas:                        a.nfreepools <= a.nextarena.nfreepools, prev/next agree,
//!                                        a on the list  <=>  a.nfreepools > 0
//!  nfp2lasta (3.8+):                     nfp2lasta[n] == last arena on the list with n free pools
//!  live blocks:                          pool + POOL_OVERHEAD <= b,  b + size <= pool + POOL_SIZE,
//!                                        sorted by address, b_i + size_i <= b_{i+1}
//! ```

use super::pool::DUMMY_SIZE_IDX;
use super::preset::ArenaOrdering;
use super::{ArenaSource, Pymalloc, NONE};
use crate::addr::first_overlap;
use crate::alloc::Allocator;

impl<A: Allocator, S: ArenaSource> Pymalloc<A, S> {
    /// Live pymalloc blocks as `(address, block size)`, in address order within each pool.
    pub fn live_blocks(&self) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        for (slot, a) in self.arenas.iter().enumerate() {
            if a.address == 0 {
                continue;
            }
            let carved = ((a.pool_address - a.first_pool) >> self.pool_bits) as u32;
            for i in 0..carved {
                let id = self.nclasses + slot as u32 * self.max_pools + i;
                let p = &self.pools[id as usize];
                if p.szidx == DUMMY_SIZE_IDX {
                    continue;
                }
                let size = self.class_bytes(p.szidx as u32);
                let base = self.granule_base(id);
                for g in 0..self.granules as usize {
                    if self.is_live(base + g) {
                        v.push((p.addr + ((g as u64) << self.shift), size));
                    }
                }
            }
        }
        v
    }

    /// Checks every invariant of the module docs.
    ///
    /// # Errors
    /// The first equation that does not hold, with its numbers.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut on_used = vec![false; self.pools.len()];
        for size in 0..self.nclasses {
            let ring = (size, self.pools[size as usize].nextpool, size);
            let pools = linked(
                &format!("usedpools[{size}]"),
                ring,
                self.pools.len(),
                |id| {
                    let p = &self.pools[id as usize];
                    (p.prevpool, p.nextpool, p.addr)
                },
            )?;
            for id in pools {
                let p = &self.pools[id as usize];
                if p.szidx as u32 != size {
                    return Err(format!(
                        "usedpools[{size}] holds pool {:#x} of class {}",
                        p.addr, p.szidx
                    ));
                }
                on_used[id as usize] = true;
            }
        }
        let mut on_list = vec![false; self.arenas.len()];
        let list = (NONE, self.usable_arenas, NONE);
        let usable = linked("usable_arenas", list, self.arenas.len(), |a| {
            let ao = &self.arenas[a as usize];
            (ao.prevarena, ao.nextarena, ao.address)
        })?;
        for a in usable {
            let ao = &self.arenas[a as usize];
            if ao.address == 0 {
                return Err("usable_arenas holds an unassociated arena_object".into());
            }
            if self.params.ordering != ArenaOrdering::Fifo
                && ao.nextarena != NONE
                && ao.nfreepools > self.arenas[ao.nextarena as usize].nfreepools
            {
                return Err(format!(
                    "usable_arenas not sorted: {} free pools before {}",
                    ao.nfreepools, self.arenas[ao.nextarena as usize].nfreepools
                ));
            }
            if self.params.ordering == ArenaOrdering::Nfp2lasta {
                let last = ao.nextarena == NONE
                    || self.arenas[ao.nextarena as usize].nfreepools != ao.nfreepools;
                if last != (self.nfp2lasta[ao.nfreepools as usize] == a) {
                    return Err(format!(
                        "nfp2lasta[{}] is not the last such arena",
                        ao.nfreepools
                    ));
                }
            }
            on_list[a as usize] = true;
        }
        if self.params.ordering == ArenaOrdering::Nfp2lasta {
            for (n, &l) in self.nfp2lasta.iter().enumerate() {
                if l != NONE
                    && (!on_list[l as usize] || self.arenas[l as usize].nfreepools as usize != n)
                {
                    return Err(format!(
                        "nfp2lasta[{n}] points at an arena without {n} free pools"
                    ));
                }
            }
        }
        let mut live_total = 0u64;
        for (slot, a) in self.arenas.iter().enumerate() {
            if a.address == 0 {
                if on_list[slot] {
                    return Err("an unassociated arena_object is usable".into());
                }
                continue;
            }
            let carved = ((a.pool_address - a.first_pool) >> self.pool_bits) as u32;
            let mut nfree_list = 0u32;
            let mut f = a.freepools;
            while f != NONE {
                nfree_list += 1;
                if self.pools[f as usize].count != 0 {
                    return Err(format!(
                        "freepools holds pool {:#x} with live blocks",
                        self.pools[f as usize].addr
                    ));
                }
                f = self.pools[f as usize].nextpool;
                if nfree_list > carved {
                    return Err("freepools has a cycle".into());
                }
            }
            // nfreepools == |freepools| + never-carved pools
            if a.nfreepools != nfree_list + (a.ntotalpools - carved) {
                return Err(format!(
                    "arena {:#x}: nfreepools {} != {} free + {} never carved",
                    a.address,
                    a.nfreepools,
                    nfree_list,
                    a.ntotalpools - carved
                ));
            }
            if (a.nfreepools > 0) != on_list[slot] {
                return Err(format!(
                    "arena {:#x} with {} free pools is {}on usable_arenas",
                    a.address,
                    a.nfreepools,
                    if on_list[slot] { "" } else { "not " }
                ));
            }
            for i in 0..carved {
                let id = self.nclasses + slot as u32 * self.max_pools + i;
                let p = &self.pools[id as usize];
                if p.addr != a.first_pool + ((i as u64) << self.pool_bits) {
                    return Err(format!("pool {i} of arena {:#x} misplaced", a.address));
                }
                if p.szidx == DUMMY_SIZE_IDX {
                    return Err(format!("carved pool {:#x} never used", p.addr));
                }
                let nblocks = self.params.blocks_per_pool(p.szidx as u32) as u64;
                let free = self.free_list_len(id);
                let untouched = self.untouched_blocks(p);
                // count + |free list| + untouched == NUMBLOCKS
                if p.count as u64 + free + untouched != nblocks {
                    return Err(format!(
                        "pool {:#x}: {} live + {} free + {} untouched != {} blocks",
                        p.addr, p.count, free, untouched, nblocks
                    ));
                }
                let base = self.granule_base(id);
                let live = (0..self.granules as usize)
                    .filter(|&g| self.is_live(base + g))
                    .count() as u64;
                if live != p.count as u64 {
                    return Err(format!(
                        "pool {:#x}: count {} but {} live blocks",
                        p.addr, p.count, live
                    ));
                }
                live_total += live;
                if (p.freeblock == 0) != (p.count as u64 == nblocks) {
                    return Err(format!(
                        "pool {:#x}: freeblock NULL iff full broken",
                        p.addr
                    ));
                }
                let partial = p.count > 0 && (p.count as u64) < nblocks;
                if partial != on_used[id as usize] {
                    return Err(format!(
                        "pool {:#x} ({} of {} blocks) {}on usedpools",
                        p.addr,
                        p.count,
                        nblocks,
                        if on_used[id as usize] { "" } else { "not " }
                    ));
                }
            }
        }
        if live_total != self.live_blocks {
            return Err(format!(
                "{} live blocks counted, {live_total} found",
                self.live_blocks
            ));
        }
        let mut blocks = self.live_blocks();
        blocks.sort_unstable();
        if let Some((a, b)) = first_overlap(blocks.iter().map(|&(b, size)| (b, b + size))) {
            return Err(format!("live blocks {a:#x} and {b:#x} overlap"));
        }
        for &(b, size) in &blocks {
            let pool = b & !(self.pool_size - 1);
            if b < pool + self.overhead || b + size > pool + self.pool_size {
                return Err(format!("block {b:#x} not inside its pool {pool:#x}"));
            }
            if (b - pool - self.overhead) % size != 0 {
                return Err(format!("block {b:#x} not on a block boundary"));
            }
        }
        Ok(())
    }
}

/// The nodes of a doubly linked list, in order: `(head, first, end)` = the node (or
/// [`NONE`]) before `first`, the first node, and what the last node's `next` is (the head
/// of a ring such as `usedpools[i]`, [`NONE`] for a list such as `usable_arenas`).
/// `node(x)` = `(prev, next, address)`. Holds `prev(next(x)) == x` along the list, and at
/// most `bound` nodes (else the list has a cycle); errors name `list` and the address.
fn linked(
    list: &str,
    (head, first, end): (u32, u32, u32),
    bound: usize,
    node: impl Fn(u32) -> (u32, u32, u64),
) -> Result<Vec<u32>, String> {
    let mut nodes = Vec::new();
    let (mut before, mut x) = (head, first);
    while x != end {
        let (prev, next, addr) = node(x);
        if prev != before {
            return Err(format!("{list}: {addr:#x}'s prev link is wrong"));
        }
        nodes.push(x);
        if nodes.len() > bound {
            return Err(format!("{list} has a cycle"));
        }
        (before, x) = (x, next);
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::super::PymallocParams;
    use super::*;
    use crate::sysmalloc::Bump;
    use crate::vm::AddressSpace;
    use crate::Platform;

    /// A broken back link or a cycle in `usedpools` or `usable_arenas` is found and named.
    #[test]
    fn broken_links_and_cycles_are_named() {
        let p = Platform::linux_x86_64();
        let mut m = Pymalloc::new(
            PymallocParams::v3_11(),
            Bump::new(p.heap_start, 16),
            p.address_space() as AddressSpace,
        );
        let a = m.malloc(40).unwrap();
        let b = m.malloc(400).unwrap();
        assert_eq!(m.check_invariants(), Ok(()));
        let (_, pa) = m.pool_of(a).unwrap();
        let (_, pb) = m.pool_of(b).unwrap();
        let saved = m.pools[pa as usize].prevpool;
        m.pools[pa as usize].prevpool = pb;
        let e = m.check_invariants().unwrap_err();
        assert!(
            e.starts_with("usedpools[") && e.contains("prev link"),
            "{e}"
        );
        m.pools[pa as usize].prevpool = saved;
        assert_eq!(m.check_invariants(), Ok(()));
        let arena = m.usable_arenas as usize;
        m.arenas[arena].nextarena = arena as u32; // a list that comes back to itself
        let e = m.check_invariants().unwrap_err();
        assert!(e.starts_with("usable_arenas:"), "{e}");
    }
}
