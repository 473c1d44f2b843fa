//! Reading the model's pools for pictures and explanations: which carved pool holds an
//! address, a pool's free list in order, and its occupancy as a bit vector (the source of
//! `pyalloc map` and `pyalloc view`; nothing here is on an allocation path).
//!
//! ```text
//!  pool id = NB_SMALL_SIZE_CLASSES + arena slot * MAX_POOLS_IN_ARENA + pool index
//!  occupancy[k] == 1  <=>  a live block starts at pool + POOL_OVERHEAD + k * size
//!  |occupancy| == NUMBLOCKS(szidx);  count == occupancy.count_ones()
//! ```

use super::pool::DUMMY_SIZE_IDX;
use super::{ArenaSource, Pymalloc, NONE};
use crate::addr::Addr;
use crate::alloc::Allocator;
use bitvec::prelude::{BitVec, Lsb0};

impl<A: Allocator, S: ArenaSource> Pymalloc<A, S> {
    /// The arena slot and carved pool id holding `addr` (`None` outside every carved pool).
    pub fn pool_of(&mut self, addr: Addr) -> Option<(u32, u32)> {
        match self.locate(addr.0)? {
            (_, NONE) => None,
            found => Some(found),
        }
    }

    /// The id of pool `index` (0 = the arena's first pool-aligned pool) of arena `slot`.
    pub fn pool_id(&self, slot: u32, index: u32) -> u32 {
        self.nclasses + slot * self.max_pools + index
    }

    /// Pools carved so far in arena `slot` (`(pool_address - first_pool) / POOL_SIZE`).
    pub fn carved_pools(&self, slot: u32) -> u32 {
        let a = &self.arenas[slot as usize];
        ((a.pool_address - a.first_pool) >> self.pool_bits) as u32
    }

    /// Pool `pool_id`'s free list from its head (`freeblock`), as block addresses.
    pub fn free_list(&self, pool_id: u32) -> Vec<Addr> {
        let p = &self.pools[pool_id as usize];
        let base = self.granule_base(pool_id);
        let mut g = p.freeblock;
        let mut out = Vec::new();
        while g != 0 && out.len() <= self.granules as usize {
            out.push(Addr(p.addr + ((g as u64) << self.shift)));
            g = self.next[base + g as usize];
        }
        out
    }

    /// Which blocks of pool `pool_id` are live, by block index (empty for a pool that
    /// never held a size class).
    pub fn occupancy(&self, pool_id: u32) -> BitVec<u64, Lsb0> {
        let p = &self.pools[pool_id as usize];
        if p.szidx == DUMMY_SIZE_IDX {
            return BitVec::new();
        }
        let size = self.class_bytes(p.szidx as u32);
        let n = self.params.blocks_per_pool(p.szidx as u32) as u64;
        let base = self.granule_base(pool_id);
        (0..n)
            .map(|k| {
                let g = ((self.overhead + k * size) >> self.shift) as usize;
                self.is_live(base + g)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::alloc::Allocator;
    use crate::pymalloc::{Pymalloc, PymallocParams};
    use crate::sysmalloc::Bump;
    use crate::vm::AddressSpace;
    use crate::Platform;

    #[test]
    fn occupancy_and_free_list_follow_mallocs_and_frees() {
        let p = Platform::linux_x86_64();
        let mut m = Pymalloc::new(
            PymallocParams::v3_11(),
            Bump::new(p.heap_start, 16),
            p.address_space() as AddressSpace,
        );
        let a: Vec<_> = (0..5).map(|_| m.malloc(40).unwrap()).collect();
        m.free(a[1]).unwrap();
        m.free(a[3]).unwrap();
        let (_, id) = m.pool_of(a[0]).unwrap();
        let occ = m.occupancy(id);
        assert_eq!(occ.count_ones() as u64, 3);
        assert!(occ[0] && !occ[1] && occ[2] && !occ[3] && occ[4]);
        let fl = m.free_list(id);
        assert_eq!(
            &fl[..2],
            &[a[3], a[1]],
            "LIFO: the block freed last is the head"
        );
        let (slot, _) = m.pool_of(a[0]).unwrap();
        assert_eq!(m.pool_id(slot, 0), id);
    }
}
