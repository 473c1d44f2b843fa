//! Arenas: `struct arena_object`, `new_arena`, the `usable_arenas` list kept in ascending
//! order of free pools, and the return of wholly free arenas (obmalloc.c
//! `allocate_from_new_pool`'s arena half and `insert_to_freepool`).
//!
//! ```text
//!  arena (ARENA_SIZE bytes from the arena allocator, only page-aligned)
//!  +-------+--------+--------+--------+-- ... --+--------+---------+
//!  |partial| pool 0 | pool 1 | pool 2 |         | pool k | (never  |
//!  | pool  |        |        |        |         |        |  carved)|
//!  +-------+--------+--------+--------+-- ... --+--------+---------+
//!  ^address ^first pool-aligned address              ^ pool_address (next to carve)
//!  a base that is not pool-aligned loses the partial pool: ntotalpools = MAX_POOLS_IN_ARENA - 1
//!
//!  usable_arenas:  A(nfp 1) <-> B(nfp 3) <-> C(nfp 3) <-> D(nfp 7) -> NULL
//!                              nfp2lasta[3] = C (3.8+: the rightmost arena with 3 free pools)
//!  new pools come from the head (the fullest arena), so nearly empty arenas can drain.
//! ```
//!
//! Invariants (checked by the property tests), per allocated arena:
//! `nfreepools == |freepools| + (address + ARENA_SIZE - pool_address) / POOL_SIZE` (free
//! pools plus never-carved ones); an arena is on `usable_arenas` iff `nfreepools > 0`;
//! `usable_arenas` is sorted by `nfreepools` ascending; with `nfp2lasta`, `nfp2lasta[n]` is
//! the last arena of the list with `n` free pools, or NONE when there is none; an
//! arena_object is on `unused_arena_objects` iff its `address == 0`.

use super::pool::{Pool, DUMMY_SIZE_IDX};
use super::preset::{ArenaOrdering, ArenaRelease};
use super::radix::NewNode;
use super::{ArenaSource, Pymalloc, NONE};
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;

/// One `struct arena_object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaObject {
    /// `address`: base of the arena (0 = this slot has no arena).
    pub address: u64,
    /// `pool_address`: next pool to carve.
    pub pool_address: u64,
    /// First pool-aligned address of the arena.
    pub first_pool: u64,
    /// `nfreepools`: free pools + never-carved pools.
    pub nfreepools: u32,
    /// `ntotalpools`: pools that fit after alignment.
    pub ntotalpools: u32,
    /// `freepools`: head of the singly linked list of empty pools (pool id, NONE = NULL).
    pub freepools: u32,
    /// `nextarena`: next on `usable_arenas` (or on `unused_arena_objects`).
    pub nextarena: u32,
    /// `prevarena`: previous on `usable_arenas`.
    pub prevarena: u32,
}

impl ArenaObject {
    fn unused(next: u32) -> ArenaObject {
        ArenaObject {
            address: 0,
            pool_address: 0,
            first_pool: 0,
            nfreepools: 0,
            ntotalpools: 0,
            freepools: NONE,
            nextarena: next,
            prevarena: NONE,
        }
    }
}

impl<A: Allocator, S: ArenaSource> Pymalloc<A, S> {
    /// `new_arena`: take an arena_object off `unused_arena_objects` (growing the `arenas`
    /// vector by `PyMem_RawRealloc` when none is left) and map an arena for it.
    fn new_arena(&mut self) -> Result<u32, AllocError> {
        if self.unused_arena_objects == NONE {
            let maxarenas = self.arenas.len() as u32;
            let numarenas = if maxarenas == 0 {
                self.params.initial_arena_objects
            } else {
                maxarenas << 1
            };
            let nbytes = numarenas as u64 * self.params.arena_object_bytes;
            self.arenas_vector = self.lower.realloc(self.arenas_vector, nbytes as usize)?;
            for i in maxarenas..numarenas {
                let next = if i < numarenas - 1 { i + 1 } else { NONE };
                self.arenas.push(ArenaObject::unused(next));
            }
            self.unused_arena_objects = maxarenas;
            let npools = self.nclasses as usize + numarenas as usize * self.max_pools as usize;
            self.pools.resize(npools, Pool::head(NONE));
            let ngran = npools << self.granule_bits;
            // A fresh zeroed vector (pages the system zeroes on first touch: only the pools
            // used ever cost memory), the old slots copied in.
            let mut next = vec![0u16; ngran];
            next[..self.next.len()].copy_from_slice(&self.next);
            self.next = next;
        }
        let slot = self.unused_arena_objects;
        self.unused_arena_objects = self.arenas[slot as usize].nextarena;
        let arena_size = self.params.arena_size();
        let address = match self
            .source
            .alloc_arena(arena_size, self.lower.address_space_mut())
        {
            Ok(a) if !a.is_null() => a.0,
            other => {
                self.arenas[slot as usize].nextarena = self.unused_arena_objects;
                self.unused_arena_objects = slot;
                return Err(other.err().unwrap_or(AllocError::OutOfAddressSpace {
                    what: "arena".into(),
                }));
            }
        };
        for node in self.map.mark_used(address, slot) {
            if self.params.radix_tree {
                let bytes = match node {
                    NewNode::Mid => self.radix_mid_bytes,
                    NewNode::Bot => self.radix_bot_bytes,
                };
                self.lower.calloc(1, bytes as usize)?;
            }
        }
        self.narenas_currently_allocated += 1;
        self.ntimes_arena_allocated += 1;
        self.narenas_highwater = self.narenas_highwater.max(self.narenas_currently_allocated);
        self.mapped_bytes += arena_size;
        self.peak_mapped_bytes = self.peak_mapped_bytes.max(self.mapped_bytes);
        let mut nfree = self.max_pools;
        let mut pool_address = address;
        let excess = address & (self.pool_size - 1);
        if excess != 0 {
            nfree -= 1;
            pool_address += self.pool_size - excess;
        }
        // Pool headers of this slot start blank (a pool is carved iff its `addr` is set).
        let pool0 = (self.nclasses + slot * self.max_pools) as usize;
        for p in &mut self.pools[pool0..pool0 + self.max_pools as usize] {
            *p = Pool::head(NONE);
            p.addr = 0;
        }
        let a = &mut self.arenas[slot as usize];
        a.address = address;
        a.freepools = NONE;
        a.pool_address = pool_address;
        a.first_pool = pool_address;
        a.nfreepools = nfree;
        a.ntotalpools = nfree;
        Ok(slot)
    }

    /// `allocate_from_new_pool`: no used pool of class `size`; take an empty pool from the
    /// head of `usable_arenas` (mapping a new arena when the list is empty), or carve one.
    pub(crate) fn allocate_from_new_pool(&mut self, size: u32) -> Result<(u32, u16), AllocError> {
        let nfp = self.params.ordering == ArenaOrdering::Nfp2lasta;
        if self.usable_arenas == NONE {
            let slot = self.new_arena()?;
            self.usable_arenas = slot;
            let a = &mut self.arenas[slot as usize];
            a.nextarena = NONE;
            a.prevarena = NONE;
            if nfp {
                self.nfp2lasta[a.nfreepools as usize] = slot;
            }
        }
        let ua = self.usable_arenas;
        let nf = self.arenas[ua as usize].nfreepools;
        if nfp {
            if self.nfp2lasta[nf as usize] == ua {
                self.nfp2lasta[nf as usize] = NONE;
            }
            if nf > 1 {
                self.nfp2lasta[nf as usize - 1] = ua;
            }
        }
        let cached = self.arenas[ua as usize].freepools;
        let pool = if cached != NONE {
            let a = &mut self.arenas[ua as usize];
            a.freepools = self.pools[cached as usize].nextpool;
            cached
        } else {
            let a = &mut self.arenas[ua as usize];
            let addr = a.pool_address;
            let id = self.nclasses
                + ua * self.max_pools
                + ((addr - a.first_pool) >> self.pool_bits) as u32;
            a.pool_address += self.pool_size;
            let p = &mut self.pools[id as usize];
            p.addr = addr;
            p.szidx = DUMMY_SIZE_IDX;
            if self.hot_slot == ua {
                self.make_hot(ua); // one more carved pool in the hot span
            }
            id
        };
        let a = &mut self.arenas[ua as usize];
        a.nfreepools -= 1;
        if a.nfreepools == 0 {
            // Wholly allocated: unlink from usable_arenas.
            let next = a.nextarena;
            self.usable_arenas = next;
            if next != NONE {
                self.arenas[next as usize].prevarena = NONE;
            }
        }
        Ok(self.start_pool(pool, size))
    }

    /// `insert_to_freepool`: `pool` just became empty. Unlink it from `usedpools`, push it
    /// on its arena's `freepools`, and keep `usable_arenas` sorted — or give the arena back.
    pub(crate) fn insert_to_freepool(&mut self, pool: u32) -> Result<(), AllocError> {
        let p = self.pools[pool as usize];
        self.pools[p.nextpool as usize].prevpool = p.prevpool;
        self.pools[p.prevpool as usize].nextpool = p.nextpool;
        let ao = self.arenaindex(pool);
        self.pools[pool as usize].nextpool = self.arenas[ao as usize].freepools;
        self.arenas[ao as usize].freepools = pool;
        let nfp = self.params.ordering == ArenaOrdering::Nfp2lasta;
        let mut nf = self.arenas[ao as usize].nfreepools;
        let lastnf = if nfp {
            self.nfp2lasta[nf as usize]
        } else {
            NONE
        };
        if nfp && lastnf == ao {
            let prev = self.arenas[ao as usize].prevarena;
            self.nfp2lasta[nf as usize] =
                if prev != NONE && self.arenas[prev as usize].nfreepools == nf {
                    prev
                } else {
                    NONE
                };
        }
        nf += 1;
        self.arenas[ao as usize].nfreepools = nf;
        let a = self.arenas[ao as usize];

        let release = match self.params.release {
            ArenaRelease::Always => true,
            ArenaRelease::KeepLastInList => a.nextarena != NONE,
            ArenaRelease::Never => false,
        };
        if nf == a.ntotalpools && release {
            // Case 1: free the whole arena.
            if a.prevarena == NONE {
                self.usable_arenas = a.nextarena;
            } else {
                self.arenas[a.prevarena as usize].nextarena = a.nextarena;
            }
            if a.nextarena != NONE {
                self.arenas[a.nextarena as usize].prevarena = a.prevarena;
            }
            self.arenas[ao as usize].nextarena = self.unused_arena_objects;
            self.unused_arena_objects = ao;
            self.map.mark_unused(a.address);
            let size = self.params.arena_size();
            self.source
                .free_arena(Addr(a.address), size, self.lower.address_space_mut())?;
            self.arenas[ao as usize].address = 0;
            if self.hot_slot == ao {
                self.hot_span = 0;
                self.hot_slot = NONE;
            }
            self.narenas_currently_allocated -= 1;
            self.mapped_bytes -= size;
            return Ok(());
        }
        if self.params.ordering == ArenaOrdering::Fifo {
            if nf == 1 {
                // it was full, so on no list: to the tail
                let mut last = self.usable_arenas;
                while last != NONE && self.arenas[last as usize].nextarena != NONE {
                    last = self.arenas[last as usize].nextarena;
                }
                let a = &mut self.arenas[ao as usize];
                a.nextarena = NONE;
                a.prevarena = last;
                if last == NONE {
                    self.usable_arenas = ao;
                } else {
                    self.arenas[last as usize].nextarena = ao;
                }
            }
            return Ok(());
        }
        if nf == 1 {
            // Case 2: it was full, so on no list: put it at the head.
            let head = self.usable_arenas;
            let a = &mut self.arenas[ao as usize];
            a.nextarena = head;
            a.prevarena = NONE;
            if head != NONE {
                self.arenas[head as usize].prevarena = ao;
            }
            self.usable_arenas = ao;
            if nfp && self.nfp2lasta[1] == NONE {
                self.nfp2lasta[1] = ao;
            }
            return Ok(());
        }
        if nfp {
            if self.nfp2lasta[nf as usize] == NONE {
                self.nfp2lasta[nf as usize] = ao;
            }
            if ao == lastnf || lastnf == NONE {
                // Case 4: it was the rightmost of its old count, so it stays in order.
                debug_assert!(lastnf != NONE);
                return Ok(());
            }
            self.unlink_usable(ao);
            // Case 3: insert after lastnf.
            let after = self.arenas[lastnf as usize].nextarena;
            let a = &mut self.arenas[ao as usize];
            a.prevarena = lastnf;
            a.nextarena = after;
            if after != NONE {
                self.arenas[after as usize].prevarena = ao;
            }
            self.arenas[lastnf as usize].nextarena = ao;
        } else {
            if a.nextarena == NONE || nf <= self.arenas[a.nextarena as usize].nfreepools {
                return Ok(()); // Case 4.
            }
            self.unlink_usable(ao);
            // Case 3 before 3.8: walk right while the next arena has fewer free pools.
            let mut prev = a.prevarena;
            let mut next = a.nextarena;
            while next != NONE && nf > self.arenas[next as usize].nfreepools {
                prev = next;
                next = self.arenas[next as usize].nextarena;
            }
            let a = &mut self.arenas[ao as usize];
            a.prevarena = prev;
            a.nextarena = next;
            if prev != NONE {
                self.arenas[prev as usize].nextarena = ao;
            } else {
                self.usable_arenas = ao;
            }
            if next != NONE {
                self.arenas[next as usize].prevarena = ao;
            }
        }
        Ok(())
    }

    /// Unlinks `ao` from `usable_arenas`, leaving its own links as they were.
    fn unlink_usable(&mut self, ao: u32) {
        let a = self.arenas[ao as usize];
        if a.prevarena != NONE {
            self.arenas[a.prevarena as usize].nextarena = a.nextarena;
        } else {
            self.usable_arenas = a.nextarena;
        }
        if a.nextarena != NONE {
            self.arenas[a.nextarena as usize].prevarena = a.prevarena;
        }
    }
}
