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
            let mut id = self.pools[size as usize].nextpool;
            let mut prev = size;
            let mut steps = 0usize;
            while id != size {
                let p = &self.pools[id as usize];
                if p.prevpool != prev {
                    return Err(format!(
                        "usedpools[{size}]: pool {:#x} prevpool wrong",
                        p.addr
                    ));
                }
                if p.szidx as u32 != size {
                    return Err(format!(
                        "usedpools[{size}] holds pool {:#x} of class {}",
                        p.addr, p.szidx
                    ));
                }
                on_used[id as usize] = true;
                prev = id;
                id = p.nextpool;
                steps += 1;
                if steps > self.pools.len() {
                    return Err(format!("usedpools[{size}] is not circular"));
                }
            }
        }
        let mut on_list = vec![false; self.arenas.len()];
        let mut prev = NONE;
        let mut a = self.usable_arenas;
        let mut steps = 0usize;
        while a != NONE {
            let ao = &self.arenas[a as usize];
            if ao.prevarena != prev {
                return Err(format!(
                    "usable_arenas: arena {:#x} prevarena wrong",
                    ao.address
                ));
            }
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
            prev = a;
            a = ao.nextarena;
            steps += 1;
            if steps > self.arenas.len() {
                return Err("usable_arenas has a cycle".into());
            }
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
