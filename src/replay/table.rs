//! The map from a live block's recorded address to the model's, kept small: 11 bytes a
//! slot in 64 open-addressing tables that each grow on their own.
//!
//! ```text
//!   recorded r ──h = (r/8)·φ──> shard = h's top 6 bits ──> slot ⌊h'·cap / 2^64⌋, then +1, +2 …
//!   slot: [ r/8 : 44 bits | m/8 : 44 bits ]   (11 bytes; r/8 == 0 marks a free slot)
//!   each shard grown by a fifth when 9/10 full: it holds between 3/4 and 9/10 of its
//!   slots, so a live entry costs 11 / 0.75 ≈ 14.7 bytes at most; a growth copies one
//!   shard (a 64th of the table), never the whole, and the shards are soon big enough
//!   that the C library maps each growth afresh and unmaps the old (no holes left behind)
//! ```
//! Addresses that do not pack (not 8-aligned, at 2^47 and above, or a model address of 0)
//! go to a plain hash map beside the shards; a trace of a 64-bit user process has none.
//! Deletion shifts the slots behind back (no tombstones), so a probe ends at the first
//! free slot. Invariants: `len == Σ shard.len + |overflow|`; in each shard
//! `len ≤ 9/10 · cap`, and every entry sits between its home slot and the first free slot
//! after it.

use super::live::AddrMap;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS; // 64 shards
const FIRST_CAP: usize = 8; // a shard's slots at its first entry
#[cfg(test)]
const SLOT_BYTES: usize = std::mem::size_of::<Slot>(); // 11
const LOAD: (usize, usize) = (9, 10); // a shard grows rather than pass this load
const GROWTH: usize = 5; // ... by 1/GROWTH of its slots: 9/10 / (6/5) = 3/4 after
const LIMIT: u64 = 1 << 44; // packed halves are below this: addresses below 2^47

/// One slot: the recorded address / 8 in the low 44 bits, the model address / 8 in the
/// high 44 bits of 88, little-endian.
#[derive(Clone, Copy, Default)]
struct Slot([u8; 11]);

impl Slot {
    #[inline(always)]
    fn new(k: u64, v: u64) -> Slot {
        let bits = u128::from(k) | u128::from(v) << 44;
        let mut b = [0; 11];
        b.copy_from_slice(&bits.to_le_bytes()[..11]);
        Slot(b)
    }
    #[inline(always)]
    fn key(self) -> u64 {
        let lo: [u8; 8] = self.0[..8].try_into().expect("8 bytes");
        u64::from_le_bytes(lo) & (LIMIT - 1)
    }
    #[inline(always)]
    fn value(self) -> u64 {
        let hi: [u8; 8] = self.0[3..].try_into().expect("8 bytes");
        u64::from_le_bytes(hi) >> 20
    }
}

/// One open-addressing table with linear probing.
#[derive(Default)]
struct Shard {
    slots: Vec<Slot>, // len() == capacity; key 0 = free
    len: usize,       // occupied slots
}

impl Shard {
    /// Where a key with hash `h` starts probing (`h`'s bits below the shard bits).
    #[inline(always)]
    fn home(&self, h: u64) -> usize {
        ((u128::from(h << SHARD_BITS) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline(always)]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    fn insert(&mut self, k: u64, v: u64) {
        if (self.len + 1) * LOAD.1 > self.slots.len() * LOAD.0 {
            self.grow();
        }
        let mut i = self.home(hash(k));
        while self.slots[i].key() != 0 {
            debug_assert!(self.slots[i].key() != k, "key {k:#x} inserted twice");
            i = self.next(i);
        }
        self.slots[i] = Slot::new(k, v);
        self.len += 1;
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() + self.slots.len() / GROWTH).max(FIRST_CAP);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); cap]);
        for s in old {
            if s.key() != 0 {
                let mut i = self.home(hash(s.key()));
                while self.slots[i].key() != 0 {
                    i = self.next(i);
                }
                self.slots[i] = s;
            }
        }
    }

    fn remove(&mut self, k: u64) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let mut i = self.home(hash(k));
        loop {
            let s = self.slots[i];
            if s.key() == k {
                break;
            }
            if s.key() == 0 {
                return None;
            }
            i = self.next(i);
        }
        let v = self.slots[i].value();
        // Backward shift: move each later entry of the run into the hole when the hole
        // lies between its home and where it sits.
        let cap = self.slots.len();
        let mut hole = i;
        let mut j = self.next(i);
        loop {
            let s = self.slots[j];
            if s.key() == 0 {
                break;
            }
            let home = self.home(hash(s.key()));
            // distance from home to j and from home to the hole, going forward
            let to_j = (j + cap - home) % cap;
            let to_hole = (hole + cap - home) % cap;
            if to_hole <= to_j {
                self.slots[hole] = s;
                hole = j;
            }
            j = self.next(j);
        }
        self.slots[hole] = Slot::default();
        self.len -= 1;
        Some(v)
    }
}

#[inline(always)]
fn hash(k: u64) -> u64 {
    k.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Recorded address → model address for the live blocks a model placed elsewhere.
pub(crate) struct AddrTable {
    shards: Box<[Shard]>,   // by the top SHARD_BITS of the key's hash
    overflow: AddrMap<u64>, // entries whose addresses do not pack
    len: usize,             // entries in both
}

impl Default for AddrTable {
    fn default() -> AddrTable {
        AddrTable {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            overflow: AddrMap::default(),
            len: 0,
        }
    }
}

/// The packed key of a recorded address, when it packs.
#[inline(always)]
fn packed(a: u64) -> Option<u64> {
    (a & 7 == 0 && a != 0 && a < LIMIT << 3).then_some(a >> 3)
}

impl AddrTable {
    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline(always)]
    fn shard(&mut self, k: u64) -> &mut Shard {
        &mut self.shards[(hash(k) >> (64 - SHARD_BITS)) as usize]
    }

    /// Maps `rec` to `model`; `rec` must not be in the table (the driver has checked that
    /// a recorded address is not returned while live).
    #[inline]
    pub(crate) fn insert(&mut self, rec: u64, model: u64) {
        self.len += 1;
        match (packed(rec), packed(model)) {
            (Some(k), Some(v)) => self.shard(k).insert(k, v),
            _ => {
                self.overflow.insert(rec, model);
            }
        }
    }

    /// Takes `rec` out, with the model address it mapped to.
    #[inline]
    pub(crate) fn remove(&mut self, rec: u64) -> Option<u64> {
        let got = match packed(rec) {
            Some(k) => self.shard(k).remove(k).map(|v| v << 3),
            None => None,
        };
        let got = match got {
            None if !self.overflow.is_empty() => self.overflow.remove(&rec),
            g => g,
        };
        if got.is_some() {
            self.len -= 1;
        }
        got
    }

    /// Bytes the shards' slots take (the overflow map, empty for real traces, not counted).
    #[cfg(test)]
    fn slot_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.slots.len()).sum::<usize>() * SLOT_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    #[test]
    fn a_slot_is_11_bytes_and_packs_both_halves() {
        assert_eq!(SLOT_BYTES, 11);
        for (k, v) in [
            (LIMIT - 1, 0x0fff_5678_9abc),
            (1, LIMIT - 1),
            (0x0abc_def0_1234, 7),
        ] {
            let s = Slot::new(k, v);
            assert_eq!((s.key(), s.value()), (k, v));
        }
    }

    #[test]
    fn a_live_entry_costs_at_most_11_bytes_over_three_quarters() {
        // Dense addresses, as a heap hands them out; the bound holds at every size
        // reached, just before and just after the shards grow.
        let mut t = AddrTable::default();
        let mut worst: f64 = 0.0;
        for i in 1..=400_000u64 {
            t.insert(0x5555_5556_0000 + 32 * i, 16 * i);
            if i >= 50_000 && i % 997 == 0 {
                worst = worst.max(t.slot_bytes() as f64 / t.len() as f64);
            }
        }
        let bound = SLOT_BYTES as f64 / 0.75;
        assert!(worst <= bound, "{worst:.2} bytes per entry > {bound:.2}");
        assert!(worst <= 24.0);
    }

    #[test]
    fn it_agrees_with_a_hash_map_under_random_inserts_and_removes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut t = AddrTable::default();
        let mut m: HashMap<u64, u64> = HashMap::new();
        let mut keys: Vec<u64> = Vec::new();
        for _ in 0..200_000 {
            if keys.is_empty() || rng.gen_bool(0.55) {
                // mostly packable, some not (odd, huge) to reach the overflow map
                let rec = match rng.gen_range(0..20) {
                    0 => rng.gen::<u64>() | 1,
                    1 => rng.gen::<u64>() | (1 << 63),
                    _ => rng.gen_range(1..1u64 << 20) * 16,
                };
                if m.contains_key(&rec) {
                    continue;
                }
                let model = match rng.gen_range(0..20) {
                    0 => 0,
                    _ => rng.gen_range(1..1u64 << 40) * 8,
                };
                t.insert(rec, model);
                m.insert(rec, model);
                keys.push(rec);
            } else {
                let i = rng.gen_range(0..keys.len());
                let rec = keys.swap_remove(i);
                assert_eq!(t.remove(rec), m.remove(&rec));
                // absent now, and an address never inserted is absent too
                assert_eq!(t.remove(rec), None);
            }
            assert_eq!(t.len(), m.len());
        }
        for rec in keys {
            assert_eq!(t.remove(rec), m.remove(&rec));
        }
        assert!(t.is_empty());
    }
}
