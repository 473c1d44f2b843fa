//! Arenas: the big OS reservations segments are carved from (mimalloc 2.1.2 arena.c), and
//! the OS calls under them (os.c), either the model's own or pinned to a recording.
//!
//! ```text
//!  arena (1 GiB = 32 blocks of MI_ARENA_BLOCK_SIZE = MI_SEGMENT_SIZE, 32 MiB-aligned)
//!  +---------+---------+---------+---------+-- ... --+
//!  | seg 0   | seg 1   | huge seg (k blocks)| free    |   blocks_inuse bitmap
//!  +---------+---------+---------+---------+-- ... --+
//!  mi_arena_try_claim: first fit from block 0 (search_idx is not used: idx = 0)
//! ```
//! `_mi_arena_alloc_aligned(size)` tries every arena in order, then reserves a new one of
//! `arena_reserve` bytes (1 GiB; doubled every 8 arenas from the 8th) when that can hold
//! the request, else maps the segment straight from the OS. The arena's own descriptor
//! (`mi_arena_t` and its bitmaps) is a second OS mapping of one 4 KiB page made right after
//! the reservation (`mi_arena_meta_zalloc`: mimalloc's 8 KiB static area cannot give the
//! 16 MiB alignment it asks for).
//!
//! Invariant: `claimed blocks of an arena == Σ ceil(segment_size / 32 MiB)` over the
//! segments placed in it, and no two segments share a block.

use crate::addr::Addr;
use crate::error::AllocError;

/// `MI_ARENA_BLOCK_SIZE`: one segment, 32 MiB.
pub const ARENA_BLOCK_SIZE: u64 = super::size_class::SEGMENT_SIZE;
/// `mi_option_arena_reserve`'s default on 64-bit: 1 GiB.
pub const ARENA_RESERVE: u64 = 1 << 30;
/// `MI_ARENA_MIN_OBJ_SIZE`: smaller requests never go to an arena (half a block).
pub const ARENA_MIN_OBJ_SIZE: u64 = ARENA_BLOCK_SIZE / 2;
/// `MI_MAX_ARENAS`.
pub const MAX_ARENAS: usize = 112;
/// The size of an arena's descriptor mapping (one OS page).
pub const ARENA_META_SIZE: u64 = 4096;

/// Where mimalloc's OS calls (`mmap` / `munmap` through `unix_mmap`) get their answers.
pub trait OsSource {
    /// `_mi_os_alloc_aligned(size, align)`: a fresh mapping of `size` bytes at a multiple
    /// of `align` (arena reservations and OS-backed segments; `align` > 1), or an
    /// unaligned one (`align` == 1: the arena descriptor).
    ///
    /// # Errors
    /// The address space is exhausted, or (pinned) the recording shows no such mapping.
    fn mmap(&mut self, size: u64, align: u64) -> Result<Addr, AllocError>;

    /// `_mi_os_free`: the mapping at `addr` goes back to the OS.
    fn munmap(&mut self, addr: Addr, size: u64);
}

/// The model's own address space, as mimalloc lays it out on Linux: aligned mappings at
/// `_mi_os_get_aligned_hint`'s hints (a start plus every earlier aligned mapping rounded
/// up to 32 MiB), the rest top-down below `top` as the kernel places unhinted mmaps.
#[derive(Debug, Clone)]
pub struct OwnOs {
    /// The next hint (`mi_os_aligned_base`).
    pub hint: u64,
    /// The next unhinted mapping ends here.
    pub top: u64,
    /// Mappings made (address, size).
    pub mapped: Vec<(Addr, u64)>,
    /// `mmap` calls made.
    pub mmaps: u64,
    /// `munmap` calls made.
    pub munmaps: u64,
}

impl OwnOs {
    /// The start CPython 3.13.0 shows on Linux x86-64 when mimalloc's random source is
    /// pinned to zero bytes (`0x31540000000`, the traces' arena base; with real randomness
    /// only this base moves, by a multiple of 32 MiB).
    pub const PINNED_RANDOM_BASE: u64 = 0x315_4000_0000;

    /// Hints from `base`, unhinted mappings below `top`.
    pub fn new(base: u64, top: u64) -> OwnOs {
        OwnOs {
            hint: base,
            top,
            mapped: Vec::new(),
            mmaps: 0,
            munmaps: 0,
        }
    }
}

impl Default for OwnOs {
    fn default() -> Self {
        OwnOs::new(Self::PINNED_RANDOM_BASE, 0x7fff_f7ff_f000)
    }
}

impl OsSource for OwnOs {
    fn mmap(&mut self, size: u64, align: u64) -> Result<Addr, AllocError> {
        let size_up = size.div_ceil(4096) * 4096;
        let addr = if align > 1 {
            let a = self.hint.div_ceil(align) * align;
            self.hint = a + size_up.div_ceil(ARENA_BLOCK_SIZE) * ARENA_BLOCK_SIZE;
            a
        } else {
            self.top =
                self.top
                    .checked_sub(size_up)
                    .ok_or_else(|| AllocError::OutOfAddressSpace {
                        what: format!("an mmap of {size} bytes"),
                    })?;
            self.top
        };
        self.mapped.push((Addr(addr), size));
        self.mmaps += 1;
        Ok(Addr(addr))
    }

    fn munmap(&mut self, addr: Addr, _size: u64) {
        self.mapped.retain(|&(a, _)| a != addr);
        self.munmaps += 1;
    }
}

/// Mappings taken from a recording: the `S` lines mimalloc's OS layer made inside the
/// call being replayed are queued here before the call, and the model must ask for
/// exactly those, in order and size.
#[derive(Debug, Clone, Default)]
pub struct PinnedOs {
    /// Recorded mappings (size, address) not yet asked for.
    pub pending: std::collections::VecDeque<(u64, Addr)>,
    /// Recorded unmappings (address, size) not yet made by the model.
    pub pending_unmaps: Vec<(Addr, u64)>,
    /// Mappings the model made that the recording did not show, and unmappings the model
    /// made that it did not show (both empty while the model agrees).
    pub unexpected: Vec<String>,
    /// Mappings and unmappings made in agreement with the recording.
    pub agreed: u64,
}

impl OsSource for PinnedOs {
    fn mmap(&mut self, size: u64, align: u64) -> Result<Addr, AllocError> {
        match self.pending.front() {
            Some(&(s, a)) if s == size && a.is_aligned(align.max(1)) => {
                self.pending.pop_front();
                self.agreed += 1;
                Ok(a)
            }
            other => {
                let seen = other.map_or("none".to_string(), |(s, a)| format!("{s} bytes at {a}"));
                Err(AllocError::OutOfAddressSpace {
                    what: format!(
                        "the model maps {size} bytes ({align}-aligned) but the recording's next \
                         mimalloc mmap in this call is {seen}"
                    ),
                })
            }
        }
    }

    fn munmap(&mut self, addr: Addr, size: u64) {
        if let Some(i) = self.pending_unmaps.iter().position(|&(a, _)| a == addr) {
            self.pending_unmaps.remove(i);
            self.agreed += 1;
        } else {
            self.unexpected.push(format!(
                "the model unmaps {size} bytes at {addr}, the recording does not"
            ));
        }
    }
}

/// Where a segment's memory came from (`mi_memid_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemId {
    /// Blocks `[block, block + blocks)` of arena `arena`.
    Arena {
        /// Index in the model's arena list.
        arena: u32,
        /// First block.
        block: u32,
        /// Blocks claimed.
        blocks: u32,
    },
    /// A mapping of its own (`MI_MEM_OS`).
    Os,
}

/// One arena (`mi_arena_t`): a reservation cut into 32 MiB blocks.
#[derive(Debug, Clone)]
pub struct Arena {
    /// Start of the reservation (`start`).
    pub start: Addr,
    /// Blocks in it (`block_count`).
    pub block_count: u32,
    /// `blocks_inuse`: bit i set when block i is claimed.
    pub inuse: Vec<u64>,
    /// The segment (model index) starting at each block, `u32::MAX` for none.
    pub segment_at: Vec<u32>,
    /// Where its descriptor was mapped.
    pub meta: Addr,
}

impl Arena {
    /// An arena of `size` bytes at `start`, descriptor at `meta`.
    pub fn new(start: Addr, size: u64, meta: Addr) -> Arena {
        let n = (size / ARENA_BLOCK_SIZE) as u32;
        Arena {
            start,
            block_count: n,
            inuse: vec![0; (n as usize).div_ceil(64)],
            segment_at: vec![u32::MAX; n as usize],
            meta,
        }
    }

    /// Bytes reserved.
    pub fn size(&self) -> u64 {
        self.block_count as u64 * ARENA_BLOCK_SIZE
    }

    fn is_set(&self, i: u32) -> bool {
        self.inuse[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    fn set(&mut self, i: u32, on: bool) {
        let w = &mut self.inuse[(i / 64) as usize];
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }

    /// `mi_arena_try_claim`: the first run of `count` free blocks from block 0, claimed.
    pub fn try_claim(&mut self, count: u32) -> Option<u32> {
        let mut run = 0;
        for i in 0..self.block_count {
            if self.is_set(i) {
                run = 0;
            } else {
                run += 1;
                if run == count {
                    let first = i + 1 - count;
                    for j in first..=i {
                        self.set(j, true);
                    }
                    return Some(first);
                }
            }
        }
        None
    }

    /// `_mi_bitmap_unclaim_across`: blocks `[first, first + count)` free again; false when
    /// one of them was not claimed.
    pub fn unclaim(&mut self, first: u32, count: u32) -> bool {
        let mut all = true;
        for j in first..first + count {
            all &= self.is_set(j);
            self.set(j, false);
        }
        all
    }

    /// Blocks claimed now.
    pub fn claimed(&self) -> u32 {
        self.inuse.iter().map(|w| w.count_ones()).sum()
    }

    /// The block `addr` falls in, if inside the arena.
    #[inline]
    pub fn block_of(&self, addr: u64) -> Option<u32> {
        let off = addr.wrapping_sub(self.start.0);
        (off < self.size()).then_some((off / ARENA_BLOCK_SIZE) as u32)
    }
}

/// The size of the `n`-th arena reserved (`mi_arena_reserve`: doubled every 8 arenas
/// from the 8th to the 128th).
pub fn arena_reserve_size(arena_count: usize) -> u64 {
    if (8..=128).contains(&arena_count) {
        (1u64 << (arena_count / 8)) * ARENA_RESERVE
    } else {
        ARENA_RESERVE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_first_fit_and_come_back() {
        let mut a = Arena::new(Addr(1 << 40), ARENA_RESERVE, Addr::NULL);
        assert_eq!(a.block_count, 32);
        assert_eq!(a.try_claim(1), Some(0));
        assert_eq!(a.try_claim(2), Some(1));
        assert_eq!(a.try_claim(1), Some(3));
        assert!(a.unclaim(1, 2));
        assert_eq!(a.try_claim(1), Some(1));
        assert_eq!(a.try_claim(2), Some(4));
        assert_eq!(a.claimed(), 5); // 0, 1, 3, 4, 5
        assert!(!a.unclaim(10, 1));
        assert_eq!(a.try_claim(33), None);
    }

    #[test]
    fn pinned_mappings_must_match_in_size() {
        let mut p = PinnedOs::default();
        p.pending.push_back((ARENA_RESERVE, Addr(0x315_4000_0000)));
        assert!(p.mmap(4096, 1).is_err());
        assert_eq!(
            p.mmap(ARENA_RESERVE, ARENA_BLOCK_SIZE).unwrap(),
            Addr(0x315_4000_0000)
        );
        assert!(p.mmap(ARENA_RESERVE, ARENA_BLOCK_SIZE).is_err());
    }
}
