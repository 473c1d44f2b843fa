//! One preset per CPython era: the numbers and rules of Objects/obmalloc.c as plain data.
//!
//! ```text
//!  era            ALIGNMENT  threshold  classes  POOL_SIZE  ARENA_SIZE  usable_arenas kept sorted   empty arena     radix
//!  2.7.0–2.7.16       8         256        32      4 KiB     256 KiB    linear search (case 3)       always freed    no
//!  2.7.17–2.7.18     16         512        32      4 KiB     256 KiB    linear search                always freed    no
//!  3.3–3.7.3          8         512        64      4 KiB     256 KiB    linear search                always freed    no
//!  3.7.4–3.7.x       16         512        32      4 KiB     256 KiB    linear search                always freed    no
//!  3.8               16         512        32      4 KiB     256 KiB    nfp2lasta fingers (bpo-37029) always freed    no
//!  3.9               16         512        32      4 KiB     256 KiB    nfp2lasta fingers            last one kept   no
//!  3.10+ (64-bit)    16         512        32     16 KiB       1 MiB    nfp2lasta fingers            last one kept   yes
//! ```
//!
//! Sources: ALIGNMENT became 16 on 64-bit with bpo-27987 (3.8, backported to 2.7.17 and
//! to 3.7.4, python/cpython#13318); SMALL_REQUEST_THRESHOLD is 512 from 3.3 and in 2.7.17+; bpo-37029 (3.8)
//! replaced the linear search by the `nfp2lasta` fingers (both put an arena whose free-pool
//! count grew just before the first arena with at least as many, so the order is the same);
//! bpo-37257 (3.9) keeps a wholly free arena when it is the last one in `usable_arenas`;
//! 3.10 added the radix tree (`WITH_PYMALLOC_RADIX_TREE`) and with it `USE_LARGE_ARENAS` /
//! `USE_LARGE_POOLS` on 64-bit. The pool header (`struct pool_header`) is 48 bytes on 64-bit
//! and `POOL_OVERHEAD = round_up(48, ALIGNMENT) = 48` in every era.
//!
//! Invariants of a preset (checked by [`PymallocParams::validate`]):
//! `ALIGNMENT <= SMALL_REQUEST_THRESHOLD <= 512`, `SMALL_REQUEST_THRESHOLD % ALIGNMENT == 0`,
//! `ARENA_SIZE % POOL_SIZE == 0`.

/// How `usable_arenas` is kept in ascending order of `nfreepools` when a pool is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArenaOrdering {
    /// Before 3.8: walk right from the arena until the next one has at least as many free pools.
    LinearSearch,
    /// 3.8+: jump to `nfp2lasta[old nfreepools]`, the rightmost arena with the old count.
    Nfp2lasta,
    /// A what-if (`order=fifo`): no sorting; an arena that gets a free pool back joins the
    /// tail of `usable_arenas`, so new pools come from the arena that has waited longest.
    Fifo,
}

/// When an arena all of whose pools are free is handed back to the arena allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArenaRelease {
    /// 2.5–3.8: as soon as its last pool is freed.
    Always,
    /// 3.9+ (bpo-37257): unless it is the last arena of `usable_arenas` (`nextarena == NULL`).
    KeepLastInList,
    /// A what-if (`free=never`): arenas are never handed back.
    Never,
}

/// The parameters of one CPython era's obmalloc.c.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PymallocParams {
    /// Preset name (`cpython-3.11`, …).
    pub name: &'static str,
    /// `ALIGNMENT_SHIFT`: log2 of the alignment and of the size-class spacing (3 or 4).
    pub alignment_shift: u32,
    /// `SMALL_REQUEST_THRESHOLD`: largest request served from pools (bytes).
    pub small_request_threshold: u64,
    /// `POOL_BITS`: log2 of `POOL_SIZE` (12 = 4 KiB, 14 = 16 KiB).
    pub pool_bits: u32,
    /// `ARENA_BITS`: log2 of `ARENA_SIZE` (18 = 256 KiB, 20 = 1 MiB).
    pub arena_bits: u32,
    /// `sizeof(struct pool_header)` before rounding up to `ALIGNMENT` (48 on 64-bit).
    pub pool_header_bytes: u64,
    /// `sizeof(struct arena_object)`: bytes per slot of the `arenas` vector (48 on 64-bit).
    pub arena_object_bytes: u64,
    /// `INITIAL_ARENA_OBJECTS`: slots of the first `arenas` vector (doubled on each growth).
    pub initial_arena_objects: u32,
    /// How `usable_arenas` is kept sorted.
    pub ordering: ArenaOrdering,
    /// When a wholly free arena is unmapped.
    pub release: ArenaRelease,
    /// `WITH_PYMALLOC_RADIX_TREE`: arenas tracked by a 3-level radix tree whose nodes are
    /// `PyMem_RawCalloc`ed (they show as nested raw callocs in a trace).
    pub radix_tree: bool,
    /// Bits of a pointer (64 on every preset here).
    pub pointer_bits: u32,
    /// 2.7: a fall-through of 0 bytes asks the system for 1 (`malloc(0)` -> `malloc(1)`,
    /// `realloc(p, 0)` -> `realloc(p, 1)`); 3.x passes 0 to the raw allocator.
    pub raw_zero_as_one: bool,
}

/// `struct pool_header` on 64-bit: 4 pointer-sized members + 4 `uint`s.
const POOL_HEADER_64: u64 = 4 * 8 + 4 * 4;
/// `struct arena_object` on 64-bit: address, pool_address, 2 `uint`s, 3 pointers.
const ARENA_OBJECT_64: u64 = 8 + 8 + 4 + 4 + 8 + 8 + 8;

impl PymallocParams {
    /// CPython 2.7.0 – 2.7.16, 64-bit: 8-byte classes up to 256 bytes, 4 KiB pools, 256 KiB arenas.
    pub fn v2_7_0() -> Self {
        PymallocParams {
            name: "cpython-2.7.0",
            alignment_shift: 3,
            small_request_threshold: 256,
            pool_bits: 12,
            arena_bits: 18,
            pool_header_bytes: POOL_HEADER_64,
            arena_object_bytes: ARENA_OBJECT_64,
            initial_arena_objects: 16,
            ordering: ArenaOrdering::LinearSearch,
            release: ArenaRelease::Always,
            radix_tree: false,
            pointer_bits: 64,
            raw_zero_as_one: true,
        }
    }

    /// CPython 2.7.17 – 2.7.18, 64-bit: 16-byte classes up to 512 bytes (bpo-27987 backport).
    pub fn v2_7_17() -> Self {
        PymallocParams {
            name: "cpython-2.7.17",
            alignment_shift: 4,
            small_request_threshold: 512,
            ..Self::v2_7_0()
        }
    }

    /// CPython 3.3 – 3.7.3 ("3.x before 3.8"), 64-bit: 8-byte classes up to 512 bytes.
    pub fn v3_3() -> Self {
        PymallocParams {
            name: "cpython-3.3",
            alignment_shift: 3,
            small_request_threshold: 512,
            raw_zero_as_one: false,
            ..Self::v2_7_0()
        }
    }

    /// CPython 3.7.4 and later 3.7 releases: the 16-byte alignment backported, the rest as 3.3.
    pub fn v3_7_4() -> Self {
        PymallocParams {
            name: "cpython-3.7.4",
            alignment_shift: 4,
            ..Self::v3_3()
        }
    }

    /// CPython 3.8: 16-byte classes, `nfp2lasta` ordering, empty arenas always freed.
    pub fn v3_8() -> Self {
        PymallocParams {
            name: "cpython-3.8",
            alignment_shift: 4,
            small_request_threshold: 512,
            ordering: ArenaOrdering::Nfp2lasta,
            raw_zero_as_one: false,
            ..Self::v2_7_0()
        }
    }

    /// CPython 3.9: as 3.8, but the last wholly free arena of `usable_arenas` is kept.
    pub fn v3_9() -> Self {
        PymallocParams {
            name: "cpython-3.9",
            release: ArenaRelease::KeepLastInList,
            ..Self::v3_8()
        }
    }

    /// CPython 3.10 and later (3.11, 3.12, 3.13 default GIL build), 64-bit: radix tree,
    /// 16 KiB pools, 1 MiB arenas.
    pub fn v3_10() -> Self {
        PymallocParams {
            name: "cpython-3.10",
            pool_bits: 14,
            arena_bits: 20,
            radix_tree: true,
            ..Self::v3_9()
        }
    }

    /// The same as [`v3_10`](Self::v3_10), named for the recordings (`cpython-3.11`).
    pub fn v3_11() -> Self {
        PymallocParams {
            name: "cpython-3.11",
            ..Self::v3_10()
        }
    }

    /// Every preset, oldest first.
    pub fn presets() -> Vec<PymallocParams> {
        vec![
            Self::v2_7_0(),
            Self::v2_7_17(),
            Self::v3_3(),
            Self::v3_7_4(),
            Self::v3_8(),
            Self::v3_9(),
            Self::v3_10(),
            Self::v3_11(),
        ]
    }

    /// A preset by name: `cpython-3.11`, `3.11`, `2.7.18`, `cpython-2.7.5` … (any version
    /// of an era names that era's preset).
    pub fn by_name(name: &str) -> Option<PymallocParams> {
        let v = name.strip_prefix("cpython-").unwrap_or(name);
        let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().flatten().unwrap_or(0);
        let micro = parts.next().flatten().unwrap_or(0);
        let p = match (major, minor) {
            (2, 7) if micro >= 17 => Self::v2_7_17(),
            (2, 7) => Self::v2_7_0(),
            (3, 11) => Self::v3_11(),
            (3, m) if m >= 10 => Self::v3_10(),
            (3, 9) => Self::v3_9(),
            (3, 8) => Self::v3_8(),
            (3, 7) if micro >= 4 => Self::v3_7_4(),
            (3, m) if (3..8).contains(&m) => Self::v3_3(),
            _ => return None,
        };
        Some(p)
    }

    /// `ALIGNMENT` (bytes).
    pub fn alignment(&self) -> u64 {
        1 << self.alignment_shift
    }

    /// `POOL_SIZE` (bytes).
    pub fn pool_size(&self) -> u64 {
        1 << self.pool_bits
    }

    /// `ARENA_SIZE` (bytes).
    pub fn arena_size(&self) -> u64 {
        1 << self.arena_bits
    }

    /// `MAX_POOLS_IN_ARENA = ARENA_SIZE / POOL_SIZE`.
    pub fn max_pools_in_arena(&self) -> u32 {
        1 << (self.arena_bits - self.pool_bits)
    }

    /// `NB_SMALL_SIZE_CLASSES = SMALL_REQUEST_THRESHOLD / ALIGNMENT`.
    pub fn size_classes(&self) -> u32 {
        (self.small_request_threshold >> self.alignment_shift) as u32
    }

    /// `POOL_OVERHEAD = round_up(sizeof(struct pool_header), ALIGNMENT)`.
    pub fn pool_overhead(&self) -> u64 {
        let a = self.alignment();
        (self.pool_header_bytes + a - 1) & !(a - 1)
    }

    /// `INDEX2SIZE(i) = (i + 1) << ALIGNMENT_SHIFT`.
    pub fn class_size(&self, szidx: u32) -> u64 {
        ((szidx as u64) + 1) << self.alignment_shift
    }

    /// The size class of a request of `nbytes` (1..=threshold): `(nbytes - 1) >> ALIGNMENT_SHIFT`.
    pub fn size_class(&self, nbytes: u64) -> Option<u32> {
        (nbytes >= 1 && nbytes <= self.small_request_threshold)
            .then(|| ((nbytes - 1) >> self.alignment_shift) as u32)
    }

    /// `NUMBLOCKS(i) = (POOL_SIZE - POOL_OVERHEAD) / INDEX2SIZE(i)`.
    pub fn blocks_per_pool(&self, szidx: u32) -> u32 {
        ((self.pool_size() - self.pool_overhead()) / self.class_size(szidx)) as u32
    }

    /// Radix-tree geometry (`MAP_TOP_BITS`, `MAP_MID_BITS`, `MAP_BOT_BITS`) for 64-bit
    /// pointers with `IGNORE_BITS = 0`: interior levels of `(64 - ARENA_BITS + 2) / 3` bits.
    pub fn radix_bits(&self) -> (u32, u32, u32) {
        let interior = (self.pointer_bits - self.arena_bits).div_ceil(3);
        (
            interior,
            interior,
            self.pointer_bits - self.arena_bits - 2 * interior,
        )
    }

    /// Checks the preset's own invariants.
    ///
    /// # Errors
    /// A message naming the broken rule.
    pub fn validate(&self) -> Result<(), String> {
        let a = self.alignment();
        if !(a <= self.small_request_threshold && self.small_request_threshold <= 512) {
            return Err(format!("{}: need ALIGNMENT <= threshold <= 512", self.name));
        }
        if self.small_request_threshold % a != 0 {
            return Err(format!(
                "{}: threshold not a multiple of ALIGNMENT",
                self.name
            ));
        }
        if self.arena_bits < self.pool_bits + 2
            || self.pool_bits < 9
            || self.arena_bits > 30
            || self.pool_bits - self.alignment_shift > 14
        {
            return Err(format!("{}: bad pool/arena sizes", self.name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_named_by_its_version() {
        for p in PymallocParams::presets() {
            p.validate().unwrap();
        }
        assert_eq!(PymallocParams::by_name("3.11").unwrap().pool_size(), 16384);
        assert_eq!(PymallocParams::by_name("2.7.18").unwrap().alignment(), 16);
        assert_eq!(
            PymallocParams::by_name("2.7.5")
                .unwrap()
                .small_request_threshold,
            256
        );
        assert_eq!(
            PymallocParams::by_name("cpython-3.8").unwrap().release,
            ArenaRelease::Always
        );
        assert!(PymallocParams::by_name("4.0").is_none());
        assert_eq!(PymallocParams::by_name("3.7.3").unwrap().alignment(), 8);
        assert_eq!(PymallocParams::by_name("3.7.4").unwrap().alignment(), 16);
    }

    #[test]
    fn class_arithmetic_follows_obmalloc() {
        let p = PymallocParams::v3_11();
        assert_eq!(p.size_classes(), 32);
        assert_eq!(p.pool_overhead(), 48);
        assert_eq!(p.size_class(1), Some(0));
        assert_eq!(p.size_class(16), Some(0));
        assert_eq!(p.size_class(17), Some(1));
        assert_eq!(p.size_class(512), Some(31));
        assert_eq!(p.size_class(0), None);
        assert_eq!(p.size_class(513), None);
        assert_eq!(p.blocks_per_pool(0), (16384 - 48) / 16);
        assert_eq!(p.max_pools_in_arena(), 64);
        assert_eq!(p.radix_bits(), (15, 15, 14));
        let old = PymallocParams::v3_3();
        assert_eq!(old.size_classes(), 64);
    }
}
