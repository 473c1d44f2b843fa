//! One preset per CPython era: the numbers and rules of Objects/obmalloc.c as plain data,
//! and the one table that maps a release (or a recording's `# interpreter:` line) to its
//! preset ([`PymallocParams::for_release`]).
//!
//! ```text
//!  preset               releases                       ALIGN thresh classes POOL   ARENA   usable_arenas  empty arena   radix (ADDRESS_BITS: top/mid/bot)  realloc(p, 0), p not pymalloc's
//!  cpython-2.7.0        2.7.0–2.7.16                      8    256     32   4 KiB 256 KiB linear search  always freed  no                                  realloc(p, 1), p if NULL
//!  cpython-2.7.17       2.7.17–2.7.18                    16    512     32   4 KiB 256 KiB linear search  always freed  no                                  realloc(p, 1), p if NULL
//!  cpython-3.3          3.3.0–3.6.15 (python.org)         8    512     64   4 KiB 256 KiB linear search  always freed  no                                  realloc(p, 1), p if NULL
//!  cpython-3.6-pyenv    3.5.10, 3.6.15 built by pyenv    16    512     32   4 KiB 256 KiB linear search  always freed  no                                  realloc(p, 1), p if NULL
//!  cpython-3.7          3.7.0–3.7.3                       8    512     64   4 KiB 256 KiB linear search  always freed  no                                  realloc(p, 0)
//!  cpython-3.7.4        3.7.4–3.7.x                      16    512     32   4 KiB 256 KiB linear search  always freed  no                                  realloc(p, 0)
//!  cpython-3.8          3.8.0–3.8.x                      16    512     32   4 KiB 256 KiB nfp2lasta      always freed  no                                  realloc(p, 0)
//!  cpython-3.9          3.9.0–3.9.x                      16    512     32   4 KiB 256 KiB nfp2lasta      last kept     no                                  realloc(p, 0)
//!  cpython-3.10         3.10.0–3.10.x                    16    512     32  16 KiB   1 MiB nfp2lasta      last kept     48: 10/10/8  (mid 8 KiB, bot 2 KiB) realloc(p, 0)
//!  cpython-3.11         3.11.0–3.11.x                    16    512     32  16 KiB   1 MiB nfp2lasta      last kept     64: 15/15/14 (256 KiB, 128 KiB)     realloc(p, 0)
//!  cpython-3.12         3.12.0–3.12.x                    (the numbers and rules of 3.11)
//!  cpython-3.13         3.13.0–3.13.x (default build)    (the numbers and rules of 3.11)
//! ```
//!
//! Where each row comes from (Objects/obmalloc.c of the release named, read in the source):
//! - ALIGNMENT 16 on 64-bit is bpo-27987 (python/cpython#12850, 3.8.0). It was backported to
//!   2.7 (python/cpython#13319, first in 2.7.17) and to 3.7 (python/cpython#13318, first in
//!   3.7.4), never to 3.6 or 3.5, which were taking security fixes only by then: v3.6.8's
//!   obmalloc.c has `#define ALIGNMENT 8`, and so has v3.6.15's (it is the context of the
//!   patch below). pyenv (commit 28be6599, first in pyenv v2.3.14, 2023) builds 3.5.10 and
//!   3.6.15 with that backport applied (patches/3.6.15/Python-3.6.15/0009-bpo-27987-…), so a
//!   3.6.15 that pyenv built has 16-byte alignment and 32 classes while python.org's has 8
//!   and 64: the recording's header says which (`-- pyenv build`).
//! - SMALL_REQUEST_THRESHOLD is 512 from 3.3 and in 2.7.17+ (256 before).
//! - bpo-18835's clean-up (python/cpython#4200, 3.7.0) split `pymalloc_realloc` out of
//!   `_PyObject_Realloc`: from 3.7 a realloc of a block pymalloc does not own goes to
//!   `PyMem_RawRealloc(p, n)` as it is; up to 3.6 (v3.6.8) a request of 0 bytes asked
//!   `PyMem_RawRealloc(p, 1)` and returned `p` itself when that gave NULL.
//! - bpo-37029 (3.8) replaced the linear search by the `nfp2lasta` fingers (both put an
//!   arena whose free-pool count grew just after the last arena with its old count, so the
//!   order is the same); bpo-37257 (3.9) keeps a wholly free arena when it is the last one
//!   in `usable_arenas`.
//! - 3.10 added the radix tree (bpo-37448, python/cpython#14474) and with it
//!   `USE_LARGE_ARENAS`/`USE_LARGE_POOLS` on 64-bit. v3.10.7's obmalloc.c indexes
//!   `ADDRESS_BITS = 48` bits ("current 64-bit processors are limited to 48-bit physical
//!   addresses"): `INTERIOR_BITS = (48 - 20 + 2) / 3 = 10`, `MAP_BOT_BITS = 48 - 20 - 20 =
//!   8`, so a mid node is 2^10 pointers = 8192 bytes and a bottom node 2^8
//!   `arena_coverage_t` = 2048 bytes (the raw callocs of the 3.10.13 recording).
//!   bpo-45526 (python/cpython#29062, 3.11.0) set `ADDRESS_BITS = POINTER_BITS = 64`:
//!   15/15/14 bits, nodes of 262144 and 131072 bytes.
//! - 3.12 moved obmalloc's state into `_PyRuntime` (Include/internal/pycore_obmalloc.h)
//!   and 3.13 added mimalloc for the free-threaded build; the default build's pymalloc
//!   keeps 3.11's numbers and rules (checked against main's obmalloc.c and the 3.12.1 and
//!   3.13.0 recordings).
//! - The pool header (`struct pool_header`) is 48 bytes on 64-bit and
//!   `POOL_OVERHEAD = round_up(48, ALIGNMENT) = 48` in every era; `struct arena_object` is
//!   48 bytes and the `arenas` vector starts with `INITIAL_ARENA_OBJECTS = 16` slots.
//!
//! Invariants of a preset (checked by [`PymallocParams::validate`]):
//! `ALIGNMENT <= SMALL_REQUEST_THRESHOLD <= 512`, `SMALL_REQUEST_THRESHOLD % ALIGNMENT == 0`,
//! `ARENA_SIZE % POOL_SIZE == 0`, `ARENA_BITS < ADDRESS_BITS <= POINTER_BITS`.

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

impl ArenaOrdering {
    /// A sentence for `pyalloc presets`.
    pub fn describe(self) -> &'static str {
        match self {
            ArenaOrdering::LinearSearch => {
                "linear search right to the first arena with as many free pools"
            }
            ArenaOrdering::Nfp2lasta => {
                "after nfp2lasta[old count], the last arena with the old count (bpo-37029)"
            }
            ArenaOrdering::Fifo => {
                "what-if: not sorted; a full arena with a free pool joins the tail"
            }
        }
    }
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

impl ArenaRelease {
    /// A sentence for `pyalloc presets`.
    pub fn describe(self) -> &'static str {
        match self {
            ArenaRelease::Always => "freed as soon as its last pool is free",
            ArenaRelease::KeepLastInList => {
                "freed unless it is the last of usable_arenas (bpo-37257)"
            }
            ArenaRelease::Never => "what-if: never freed",
        }
    }
}

/// The parameters of one CPython era's obmalloc.c.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PymallocParams {
    /// Preset name (`cpython-3.11`, …).
    pub name: &'static str,
    /// The releases this preset covers, in words (`3.7.4–3.7.x`).
    pub releases: &'static str,
    /// The obmalloc.c it follows and the change that set its numbers.
    pub source: &'static str,
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
    /// `ADDRESS_BITS`: the low address bits the radix tree indexes (3.10: 48; 3.11+: 64);
    /// higher bits are masked off (`MAP_TOP_INDEX(p) & MAP_TOP_MASK`).
    pub address_bits: u32,
    /// Bits of a pointer (64 on every preset here).
    pub pointer_bits: u32,
    /// 2.7: a fall-through of 0 bytes asks the system for 1 (`malloc(0)` -> `malloc(1)`);
    /// 3.x passes 0 to the raw allocator.
    pub raw_zero_as_one: bool,
    /// 2.7–3.6: `realloc(p, 0)` of a block pymalloc does not own asks the lower allocator
    /// for `realloc(p, 1)` and returns `p` itself when that answers NULL; 3.7+ passes 0.
    pub foreign_realloc_zero_as_one: bool,
    /// `_PyObject_DebugMallocStats` prints `# times object malloc called` (2.7: the
    /// function exists only in PYMALLOC_DEBUG builds, and always prints it; 3.x only under
    /// the debug hooks, which a recording of the default build never has).
    pub stats_serialno: bool,
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
            releases: "2.7.0–2.7.16",
            source: "Objects/obmalloc.c of 2.7 before the bpo-27987 backport",
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
            address_bits: 64,
            pointer_bits: 64,
            raw_zero_as_one: true,
            foreign_realloc_zero_as_one: true,
            stats_serialno: true,
        }
    }

    /// CPython 2.7.17 – 2.7.18, 64-bit: 16-byte classes up to 512 bytes (bpo-27987 backport).
    pub fn v2_7_17() -> Self {
        PymallocParams {
            name: "cpython-2.7.17",
            releases: "2.7.17–2.7.18",
            source: "Objects/obmalloc.c of v2.7.18; bpo-27987 backport python/cpython#13319",
            alignment_shift: 4,
            small_request_threshold: 512,
            ..Self::v2_7_0()
        }
    }

    /// CPython 3.3 – 3.6.15 as python.org released them, 64-bit: 8-byte classes up to
    /// 512 bytes; a foreign `realloc(p, 0)` asks for 1 byte.
    pub fn v3_3() -> Self {
        PymallocParams {
            name: "cpython-3.3",
            releases: "3.3.0–3.6.15 (python.org sources)",
            source: "Objects/obmalloc.c of v3.6.8 (ALIGNMENT 8 through v3.6.15)",
            alignment_shift: 3,
            small_request_threshold: 512,
            raw_zero_as_one: false,
            stats_serialno: false,
            ..Self::v2_7_0()
        }
    }

    /// CPython 3.5.10 and 3.6.15 as pyenv (v2.3.14+) builds them: 3.6's rules with the
    /// bpo-27987 backport applied (16-byte alignment, 32 classes).
    pub fn v3_6_pyenv() -> Self {
        PymallocParams {
            name: "cpython-3.6-pyenv",
            releases: "3.5.10 and 3.6.15 built by pyenv 2.3.14+",
            source:
                "Objects/obmalloc.c of v3.6.15 + pyenv patch 0009-bpo-27987 (pyenv commit 28be6599)",
            alignment_shift: 4,
            ..Self::v3_3()
        }
    }

    /// CPython 3.7.0 – 3.7.3: 8-byte classes; a foreign realloc passes its size as it is.
    pub fn v3_7() -> Self {
        PymallocParams {
            name: "cpython-3.7",
            releases: "3.7.0–3.7.3",
            source: "Objects/obmalloc.c of v3.7.3; pymalloc_realloc from python/cpython#4200",
            foreign_realloc_zero_as_one: false,
            ..Self::v3_3()
        }
    }

    /// CPython 3.7.4 and later 3.7 releases: the 16-byte alignment backported, the rest as 3.7.0.
    pub fn v3_7_4() -> Self {
        PymallocParams {
            name: "cpython-3.7.4",
            releases: "3.7.4–3.7.x",
            source: "Objects/obmalloc.c of v3.7.4+; bpo-27987 backport python/cpython#13318",
            alignment_shift: 4,
            ..Self::v3_7()
        }
    }

    /// CPython 3.8: 16-byte classes, `nfp2lasta` ordering, empty arenas always freed.
    pub fn v3_8() -> Self {
        PymallocParams {
            name: "cpython-3.8",
            releases: "3.8.0–3.8.x",
            source: "Objects/obmalloc.c of v3.8.16; nfp2lasta from bpo-37029",
            ordering: ArenaOrdering::Nfp2lasta,
            ..Self::v3_7_4()
        }
    }

    /// CPython 3.9: as 3.8, but the last wholly free arena of `usable_arenas` is kept.
    pub fn v3_9() -> Self {
        PymallocParams {
            name: "cpython-3.9",
            releases: "3.9.0–3.9.x",
            source: "Objects/obmalloc.c of v3.9.13; the kept arena from bpo-37257",
            release: ArenaRelease::KeepLastInList,
            ..Self::v3_8()
        }
    }

    /// CPython 3.10, 64-bit: radix tree over 48 address bits, 16 KiB pools, 1 MiB arenas.
    pub fn v3_10() -> Self {
        PymallocParams {
            name: "cpython-3.10",
            releases: "3.10.0–3.10.x",
            source: "Objects/obmalloc.c of v3.10.7; radix tree from bpo-37448 (ADDRESS_BITS 48)",
            pool_bits: 14,
            arena_bits: 20,
            radix_tree: true,
            address_bits: 48,
            ..Self::v3_9()
        }
    }

    /// CPython 3.11, 64-bit: as 3.10 with the radix tree over all 64 address bits.
    pub fn v3_11() -> Self {
        PymallocParams {
            name: "cpython-3.11",
            releases: "3.11.0–3.11.x",
            source: "Objects/obmalloc.c of the 3.11 branch; ADDRESS_BITS 64 from bpo-45526 (python/cpython#29062)",
            address_bits: 64,
            ..Self::v3_10()
        }
    }

    /// CPython 3.12: 3.11's numbers and rules (state moved into `_PyRuntime`).
    pub fn v3_12() -> Self {
        PymallocParams {
            name: "cpython-3.12",
            releases: "3.12.0–3.12.x",
            source:
                "Objects/obmalloc.c and Include/internal/pycore_obmalloc.h of 3.12: 3.11's numbers",
            ..Self::v3_11()
        }
    }

    /// CPython 3.13, default (GIL) build: 3.11's numbers and rules.
    pub fn v3_13() -> Self {
        PymallocParams {
            name: "cpython-3.13",
            releases: "3.13.0–3.13.x (default build; the free-threaded build uses mimalloc)",
            source: "Objects/obmalloc.c of 3.13: 3.11's numbers for the default build",
            ..Self::v3_11()
        }
    }

    /// Every preset, oldest first.
    pub fn presets() -> Vec<PymallocParams> {
        vec![
            Self::v2_7_0(),
            Self::v2_7_17(),
            Self::v3_3(),
            Self::v3_6_pyenv(),
            Self::v3_7(),
            Self::v3_7_4(),
            Self::v3_8(),
            Self::v3_9(),
            Self::v3_10(),
            Self::v3_11(),
            Self::v3_12(),
            Self::v3_13(),
        ]
    }

    /// The preset of one CPython release — the one table from versions to presets.
    ///
    /// `release` is a version (`3.6.15`, `3.12`, `cpython-3.10.13`; a missing micro
    /// counts as 0) or a recording's whole `# interpreter:` line (`CPython 3.6.15
    /// (default, …) -- pyenv build …`): the version is its first `X.Y[.Z]` token, and the
    /// word `pyenv` marks a build by pyenv, which patches 3.5.10 and 3.6.15 with
    /// bpo-27987 (see the module doc). `None` for a release no preset covers (before 2.7,
    /// 3.0–3.2, after 3.13).
    pub fn for_release(release: &str) -> Option<PymallocParams> {
        let (major, minor, micro) = parse_version(release)?;
        let pyenv = release.contains("pyenv");
        let p = match (major, minor) {
            (2, 7) if micro >= 17 => Self::v2_7_17(),
            (2, 7) => Self::v2_7_0(),
            (3, 5) if pyenv && micro == 10 => Self::v3_6_pyenv(),
            (3, 6) if pyenv && micro == 15 => Self::v3_6_pyenv(),
            (3, 3..=6) => Self::v3_3(),
            (3, 7) if micro >= 4 => Self::v3_7_4(),
            (3, 7) => Self::v3_7(),
            (3, 8) => Self::v3_8(),
            (3, 9) => Self::v3_9(),
            (3, 10) => Self::v3_10(),
            (3, 11) => Self::v3_11(),
            (3, 12) => Self::v3_12(),
            (3, 13) => Self::v3_13(),
            _ => return None,
        };
        Some(p)
    }

    /// A preset by name: a preset's own name (`cpython-3.6-pyenv`, `cpython-3.11` …), or
    /// any release [`for_release`](Self::for_release) knows (`3.11`, `2.7.18`,
    /// `cpython-2.7.5` …).
    pub fn by_name(name: &str) -> Option<PymallocParams> {
        Self::presets()
            .into_iter()
            .find(|p| p.name == name || p.name.strip_prefix("cpython-") == Some(name))
            .or_else(|| Self::for_release(name))
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

    /// Radix-tree geometry (`MAP_TOP_BITS`, `MAP_MID_BITS`, `MAP_BOT_BITS`):
    /// `INTERIOR_BITS = (ADDRESS_BITS - ARENA_BITS + 2) / 3` for the top and mid levels,
    /// `MAP_BOT_BITS = ADDRESS_BITS - ARENA_BITS - 2 * INTERIOR_BITS`.
    pub fn radix_bits(&self) -> (u32, u32, u32) {
        let interior = (self.address_bits - self.arena_bits).div_ceil(3);
        (
            interior,
            interior,
            self.address_bits - self.arena_bits - 2 * interior,
        )
    }

    /// `sizeof(arena_map_mid_t)` (a mid node: `2^MAP_MID_BITS` pointers) and
    /// `sizeof(arena_map_bot_t)` (a bottom node: `2^MAP_BOT_BITS` 8-byte
    /// `arena_coverage_t`), the sizes of the raw callocs that create them.
    pub fn radix_node_bytes(&self) -> (u64, u64) {
        let (_, mid, bot) = self.radix_bits();
        (
            (1u64 << mid) * (self.pointer_bits / 8) as u64,
            (1u64 << bot) * 8,
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
        if !(self.arena_bits < self.address_bits && self.address_bits <= self.pointer_bits) {
            return Err(format!(
                "{}: need ARENA_BITS < ADDRESS_BITS <= POINTER_BITS",
                self.name
            ));
        }
        Ok(())
    }
}

/// What `pyalloc presets` shows of one preset (serialized as its `--json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PresetSummary {
    /// Preset name.
    pub name: &'static str,
    /// The releases it covers.
    pub releases: &'static str,
    /// The obmalloc.c it follows.
    pub source: &'static str,
    /// `ALIGNMENT` (bytes).
    pub alignment: u64,
    /// `SMALL_REQUEST_THRESHOLD` (bytes).
    pub small_request_threshold: u64,
    /// `NB_SMALL_SIZE_CLASSES`.
    pub size_classes: u32,
    /// `POOL_SIZE` (bytes).
    pub pool_size: u64,
    /// `POOL_OVERHEAD` (bytes).
    pub pool_overhead: u64,
    /// `ARENA_SIZE` (bytes).
    pub arena_size: u64,
    /// `MAX_POOLS_IN_ARENA`.
    pub pools_per_arena: u32,
    /// The radix tree, when the era has one.
    pub radix: Option<RadixSummary>,
    /// How `usable_arenas` is kept sorted.
    pub arena_ordering: &'static str,
    /// When a wholly free arena is given back.
    pub arena_freeing: &'static str,
    /// What a request of 0 bytes asks the raw allocator for.
    pub malloc_zero: &'static str,
    /// What `realloc(p, 0)` of a block pymalloc does not own asks the raw allocator for.
    pub foreign_realloc_zero: &'static str,
}

/// The radix tree's geometry (3.10+).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RadixSummary {
    /// `ADDRESS_BITS`.
    pub address_bits: u32,
    /// `MAP_TOP_BITS`, `MAP_MID_BITS`, `MAP_BOT_BITS`.
    pub level_bits: [u32; 3],
    /// `sizeof(arena_map_root)` (static, never allocated).
    pub root_bytes: u64,
    /// `sizeof(arena_map_mid_t)`: one raw calloc per mid node.
    pub mid_node_bytes: u64,
    /// `sizeof(arena_map_bot_t)`: one raw calloc per bottom node.
    pub bot_node_bytes: u64,
}

impl PymallocParams {
    /// The preset's parameters as `pyalloc presets` lists them.
    pub fn summary(&self) -> PresetSummary {
        let radix = self.radix_tree.then(|| {
            let (top, mid, bot) = self.radix_bits();
            let (mid_node_bytes, bot_node_bytes) = self.radix_node_bytes();
            RadixSummary {
                address_bits: self.address_bits,
                level_bits: [top, mid, bot],
                root_bytes: (1u64 << top) * (self.pointer_bits / 8) as u64,
                mid_node_bytes,
                bot_node_bytes,
            }
        });
        PresetSummary {
            name: self.name,
            releases: self.releases,
            source: self.source,
            alignment: self.alignment(),
            small_request_threshold: self.small_request_threshold,
            size_classes: self.size_classes(),
            pool_size: self.pool_size(),
            pool_overhead: self.pool_overhead(),
            arena_size: self.arena_size(),
            pools_per_arena: self.max_pools_in_arena(),
            radix,
            arena_ordering: self.ordering.describe(),
            arena_freeing: self.release.describe(),
            malloc_zero: if self.raw_zero_as_one {
                "malloc(1)"
            } else {
                "malloc(0)"
            },
            foreign_realloc_zero: if self.foreign_realloc_zero_as_one {
                "realloc(p, 1), keeping p when that gives NULL"
            } else {
                "realloc(p, 0)"
            },
        }
    }
}

/// The first `X.Y[.Z]` token of `text` (`3.6.15` in `CPython 3.6.15 (default, …)`); the
/// micro version is 0 when absent and its leading digits otherwise (`0` in `3.13.0rc1`).
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts =
            b[i].is_ascii_digit() && (i == 0 || !(b[i - 1].is_ascii_digit() || b[i - 1] == b'.'));
        if starts {
            let mut parts = [0u32; 3];
            let mut n = 0;
            let mut j = i;
            while n < 3 {
                let k = j;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j == k {
                    break;
                }
                parts[n] = text[k..j].parse().ok()?;
                n += 1;
                if j < b.len() && b[j] == b'.' && n < 3 {
                    j += 1;
                } else {
                    break;
                }
            }
            if n >= 2 {
                return Some((parts[0], parts[1], parts[2]));
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_named_by_its_version() {
        for p in PymallocParams::presets() {
            p.validate().unwrap();
            assert_eq!(PymallocParams::by_name(p.name).as_ref(), Some(&p));
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
        assert!(PymallocParams::by_name("3.14").is_none());
        assert!(PymallocParams::by_name("3.2.6").is_none());
        assert_eq!(PymallocParams::by_name("3.7.3").unwrap().alignment(), 8);
        assert_eq!(PymallocParams::by_name("3.7.4").unwrap().alignment(), 16);
        assert_eq!(
            PymallocParams::by_name("3.12").unwrap().name,
            "cpython-3.12"
        );
        assert_eq!(
            PymallocParams::by_name("cpython-3.13").unwrap().name,
            "cpython-3.13"
        );
    }

    #[test]
    fn the_release_table_follows_the_source_history() {
        let name = |r: &str| PymallocParams::for_release(r).map(|p| p.name);
        // python.org's 3.6 never had bpo-27987; pyenv patches 3.5.10 and 3.6.15 only.
        assert_eq!(name("3.6.0"), Some("cpython-3.3"));
        assert_eq!(name("3.6.15"), Some("cpython-3.3"));
        let line = "CPython 3.6.15 (default, May  9 2026, 07:30:54)  [GCC 12.2.0] -- pyenv build ~/.pyenv/versions/3.6.15";
        assert_eq!(name(line), Some("cpython-3.6-pyenv"));
        assert_eq!(
            name("CPython 3.6.14 (default) -- pyenv build"),
            Some("cpython-3.3")
        );
        assert_eq!(
            name("CPython 3.5.10 -- pyenv build"),
            Some("cpython-3.6-pyenv")
        );
        assert_eq!(name("3.7.0"), Some("cpython-3.7"));
        assert_eq!(
            name("3.7.16 (default) -- pyenv build"),
            Some("cpython-3.7.4")
        );
        assert_eq!(name("cpython-3.10.13"), Some("cpython-3.10"));
        assert_eq!(name("CPython 3.13.0rc1 (main)"), Some("cpython-3.13"));
        assert_eq!(name("no version here"), None);
        let (a, b) = (
            PymallocParams::for_release("3.6.0").unwrap(),
            PymallocParams::for_release(line).unwrap(),
        );
        assert_eq!((a.alignment(), a.size_classes()), (8, 64));
        assert_eq!((b.alignment(), b.size_classes()), (16, 32));
        assert!(a.foreign_realloc_zero_as_one && b.foreign_realloc_zero_as_one);
        assert!(
            !PymallocParams::for_release("3.7.0")
                .unwrap()
                .foreign_realloc_zero_as_one
        );
    }

    #[test]
    fn radix_nodes_follow_address_bits() {
        // 3.10: ADDRESS_BITS 48 -> 10/10/8 bits; 3.11+: 64 -> 15/15/14.
        let p = PymallocParams::v3_10();
        assert_eq!(p.radix_bits(), (10, 10, 8));
        assert_eq!(p.radix_node_bytes(), ((1 << 10) * 8, (1 << 8) * 8));
        for p in [
            PymallocParams::v3_11(),
            PymallocParams::v3_12(),
            PymallocParams::v3_13(),
        ] {
            assert_eq!(p.radix_bits(), (15, 15, 14));
            assert_eq!(p.radix_node_bytes(), ((1 << 15) * 8, (1 << 14) * 8));
        }
    }

    #[test]
    fn the_summary_is_the_preset_s_own_arithmetic() {
        for p in PymallocParams::presets() {
            let s = p.summary();
            assert_eq!(
                s.size_classes as u64 * s.alignment,
                s.small_request_threshold
            );
            assert_eq!(s.pools_per_arena as u64 * s.pool_size, s.arena_size);
            assert_eq!(s.radix.is_some(), p.radix_tree, "{}", p.name);
            if let Some(r) = s.radix {
                assert_eq!(
                    r.level_bits.iter().sum::<u32>() + p.arena_bits,
                    r.address_bits
                );
                assert_eq!((r.mid_node_bytes, r.bot_node_bytes), p.radix_node_bytes());
            }
        }
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
        let old = PymallocParams::v3_3();
        assert_eq!(old.size_classes(), 64);
    }
}
