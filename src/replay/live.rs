//! The recording's own consistency, checked once in the driver whatever the model: every
//! address a CPython `O`/`M` call or a C library call returned is live from that event to
//! the free (or realloc) that gives it back.
//!
//! ```text
//!   m O 56 A   A born (line n)       A already live  -> "returned while still live"
//!   f O A      A dies                A not live      -> "never allocated (or already freed)"
//!   r O A 80 B A dies, B born        (NULL with size > 0: the call failed, A stays)
//!   f R C      C not a live R block  -> counted in `raw_unknown`, not an error: CPython 3
//!              recordings can miss raw calls made while CPython swaps its default raw
//!              allocator in (their header says so)
//!   A 1048576 X arena X mapped      X already mapped -> "mapped again while still mapped"
//!   F X 1048576 X unmapped          X not mapped     -> "unmapped while not mapped"
//! ```
//! Calls nested in another (`r`) and free-list lines are the model's business, not the
//! recording's consistency. Invariants: the held set holds exactly the O/M and C library
//! blocks the recording returned and has not given back; `arenas` exactly the arenas it
//! mapped and has not unmapped. Where the sets live is [`LiveSets`]'s business: bits here
//! ([`Bits`]), marks beside `compare`'s block ids there (the rules, and so every message,
//! are these).

use super::error::Cause;
use super::pages::PageIndex;
use crate::addr::Addr;
use crate::trace::{Domain, Event, EventKind};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for addresses: one multiply and a fold.
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        // The product's high bits are well mixed, its low bits are not (addresses are
        // 16-aligned): fold the high half down, since the table indexes by the low bits.
        let h = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

pub(crate) type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;
pub(crate) type AddrSet = HashSet<u64, BuildHasherDefault<AddrHasher>>;

/// A set of addresses kept as bits: one bit per 8-byte granule, in 64 KiB pages. Blocks
/// cluster in arenas and heaps, so the pages are few and the page of the last address
/// is usually one of the last few: a set operation is a shift and a bit test. A page
/// holding fewer than [`DENSE`] addresses (a large block's page: mmapped chunks lie 1 MiB
/// apart) keeps them in a short list instead, so a set of sparse addresses costs tens of
/// bytes per address, not a 1 KiB page each.
/// Invariant: `a ∈ set ⇔ bit (a mod 2^16) / 8 of page a / 2^16 is set` for 8-aligned
/// `a` of a dense page, `a ∈ sparse[a / 2^16]` on a sparse page (`|list| < DENSE`); other
/// addresses (only a malformed trace has them) are kept exactly in `odd`.
#[derive(Default)]
struct LiveSet {
    pages: PageIndex<16>,    // dense page number -> index into `bits`
    bits: Vec<[u64; 128]>,   // 8192 granules of 8 bytes: 64 KiB each
    sparse: AddrMap<Sparse>, // page number -> its addresses, while fewer than DENSE
    odd: AddrSet,            // addresses that are not 8-aligned
}

/// The addresses of a sparse page: most hold one (a large block's), kept inline (16 bytes).
enum Sparse {
    One(u64),
    Many(Box<Vec<u64>>),
}

/// Addresses on one 64 KiB page from which it is kept as bits (a list of 128 addresses
/// takes the 1 KiB a page of bits does).
const DENSE: usize = 128;

impl LiveSet {
    /// The bit of `a` when its page is dense: (index into `bits`, word, mask).
    #[inline(always)]
    fn slot(&mut self, a: u64) -> Option<(usize, usize, u64)> {
        let i = self.pages.get(a >> 16)?;
        let g = (a & 0xffff) >> 3;
        Some((i as usize, (g >> 6) as usize, 1u64 << (g & 63)))
    }

    /// Adds `a`; false when it was there.
    #[inline(always)]
    fn insert(&mut self, a: u64) -> bool {
        if a & 7 != 0 {
            return self.odd.insert(a);
        }
        if let Some((i, w, b)) = self.slot(a) {
            let word = &mut self.bits[i][w];
            let fresh = *word & b == 0;
            *word |= b;
            return fresh;
        }
        self.insert_sparse(a)
    }

    /// Adds `a` to its sparse page, which becomes dense at [`DENSE`] addresses.
    #[cold]
    fn insert_sparse(&mut self, a: u64) -> bool {
        use std::collections::hash_map::Entry;
        let page = a >> 16;
        let list = match self.sparse.entry(page) {
            Entry::Vacant(v) => {
                v.insert(Sparse::One(a));
                return true;
            }
            Entry::Occupied(o) => o.into_mut(),
        };
        let full = match list {
            Sparse::One(x) if *x == a => return false,
            Sparse::One(x) => {
                *list = Sparse::Many(Box::new(vec![*x, a]));
                return true;
            }
            Sparse::Many(v) if v.contains(&a) => return false,
            Sparse::Many(v) => {
                v.push(a);
                if v.len() < DENSE {
                    return true;
                }
                std::mem::take(v)
            }
        };
        self.sparse.remove(&page);
        self.pages.insert(page, self.bits.len() as u32);
        self.bits.push([0; 128]);
        for x in full.iter() {
            self.insert(*x);
        }
        true
    }

    /// Takes `a` out; false when it was not there.
    #[inline(always)]
    fn remove(&mut self, a: u64) -> bool {
        if a & 7 != 0 {
            return self.odd.remove(&a);
        }
        if let Some((i, w, b)) = self.slot(a) {
            let word = &mut self.bits[i][w];
            let was = *word & b != 0;
            *word &= !b;
            return was;
        }
        self.remove_sparse(a)
    }

    #[cold]
    fn remove_sparse(&mut self, a: u64) -> bool {
        let page = a >> 16;
        let empty = match self.sparse.get_mut(&page) {
            Some(Sparse::One(x)) if *x == a => true,
            Some(Sparse::Many(v)) => match v.iter().position(|&x| x == a) {
                Some(at) => {
                    v.swap_remove(at);
                    v.is_empty()
                }
                None => return false,
            },
            _ => return false,
        };
        if empty {
            self.sparse.remove(&page);
        }
        true
    }
}

/// Which namespace a domain's addresses live in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Space {
    /// O, M and C library calls: held exactly.
    Held,
    /// Top-level raw calls: counted when a free does not match.
    Raw,
    /// Nested calls: the model's business.
    None,
}

fn space(d: Domain) -> Space {
    match d {
        Domain::Obj | Domain::Mem | Domain::Libc => Space::Held,
        Domain::Raw => Space::Raw,
        Domain::RawNested => Space::None,
    }
}

/// The two sets of live addresses a [`Liveness`] keeps: the O/M and C library blocks
/// (held) and the top-level raw blocks (raw). The driver keeps them as bits ([`Bits`]);
/// `compare` keeps them as two marks in the slots of its recorded address → block id
/// table, so that one lookup of an address serves both.
/// Invariant: `insert(raw, a)` is true iff `a` was not in that set; `remove(raw, a)` is
/// true iff it was; the two sets are independent.
pub(crate) trait LiveSets {
    /// Adds `a` to the raw set (`raw`) or the held set; false when it was there.
    fn insert(&mut self, raw: bool, a: u64) -> bool;
    /// Takes `a` out of the raw set (`raw`) or the held set; false when it was not there.
    fn remove(&mut self, raw: bool, a: u64) -> bool;
}

/// The driver's live sets: a bit per 8-byte granule each.
#[derive(Default)]
pub(crate) struct Bits {
    live: LiveSet, // O/M and C library blocks
    raw: LiveSet,  // live top-level raw blocks
}

impl Bits {
    /// The raw set or the other.
    #[inline(always)]
    fn set(&mut self, raw: bool) -> &mut LiveSet {
        if raw {
            &mut self.raw
        } else {
            &mut self.live
        }
    }
}

impl LiveSets for Bits {
    #[inline(always)]
    fn insert(&mut self, raw: bool, a: u64) -> bool {
        self.set(raw).insert(a)
    }

    #[inline(always)]
    fn remove(&mut self, raw: bool, a: u64) -> bool {
        self.set(raw).remove(a)
    }
}

/// The live blocks of a recording, as the recording itself says, in sets `S`.
#[derive(Default)]
pub(crate) struct Liveness<S = Bits> {
    /// The held and the raw blocks.
    pub sets: S,
    arenas: HashSet<u64>, // pymalloc arenas mapped and not unmapped (a few dozen)
    /// Top-level raw frees and reallocs of an address no raw call returned.
    pub raw_unknown: u64,
}

/// What the liveness check saw at one event.
#[derive(Clone, Copy, Default)]
pub(crate) struct Seen {
    /// A free or realloc gave back a block the recording held.
    pub given_back: bool,
}

impl<S: LiveSets> Liveness<S> {
    /// Checks event `e` against the live blocks and applies it.
    ///
    /// # Errors
    /// A free or realloc of an address not live, an address returned while still live.
    #[inline]
    pub(crate) fn apply(&mut self, e: &Event) -> Result<Seen, Cause> {
        self.apply_inlined(e)
    }

    /// [`apply`](Self::apply), inlined into the caller's loop (compare's feed, whose
    /// sets share their lookups with its own table).
    ///
    /// # Errors
    /// As [`apply`](Self::apply).
    #[inline(always)]
    pub(crate) fn apply_inlined(&mut self, e: &Event) -> Result<Seen, Cause> {
        match e.kind {
            EventKind::Malloc { domain, addr, .. } | EventKind::Calloc { domain, addr, .. } => {
                self.born(space(domain), addr)?;
            }
            EventKind::Memalign { addr, .. }
            | EventKind::Valloc { addr, .. }
            | EventKind::Pvalloc { addr, .. } => self.born(Space::Held, addr)?,
            EventKind::Free { domain, addr } => {
                return self.dies(space(domain), "free", addr);
            }
            EventKind::Realloc {
                domain,
                old,
                size,
                new,
            } => {
                let sp = space(domain);
                if sp == Space::None {
                    return Ok(Seen::default());
                }
                let seen = self.dies(sp, "realloc", old)?;
                if new.is_null() && size > 0 && !old.is_null() {
                    // the call failed: the block stays where it was
                    self.sets.insert(sp != Space::Held, old.0);
                }
                self.born(sp, new)?;
                return Ok(seen);
            }
            EventKind::ArenaAlloc { addr, .. } if !addr.is_null() => {
                if !self.arenas.insert(addr.0) {
                    let what = "mapped again while still mapped";
                    return Err(Cause::Arena { what, addr });
                }
            }
            EventKind::ArenaFree { addr, .. } => {
                if !self.arenas.remove(&addr.0) {
                    let what = "unmapped while not mapped";
                    return Err(Cause::Arena { what, addr });
                }
            }
            _ => {}
        }
        Ok(Seen::default())
    }

    #[inline(always)]
    fn born(&mut self, sp: Space, addr: Addr) -> Result<(), Cause> {
        if addr.is_null() {
            return Ok(());
        }
        match sp {
            Space::Held => {
                if !self.sets.insert(false, addr.0) {
                    return Err(Cause::StillLive { addr });
                }
            }
            Space::Raw => {
                self.sets.insert(true, addr.0);
            }
            Space::None => {}
        }
        Ok(())
    }

    #[inline(always)]
    fn dies(&mut self, sp: Space, op: &'static str, addr: Addr) -> Result<Seen, Cause> {
        if addr.is_null() {
            return Ok(Seen::default());
        }
        match sp {
            Space::Held if self.sets.remove(false, addr.0) => Ok(Seen { given_back: true }),
            Space::Held => Err(Cause::NeverAllocated { op, addr }),
            Space::Raw => {
                if !self.sets.remove(true, addr.0) {
                    self.raw_unknown += 1;
                }
                Ok(Seen::default())
            }
            Space::None => Ok(Seen::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, line: u64) -> Event {
        Event { kind, line }
    }

    #[test]
    fn sparse_and_dense_pages_hold_the_same_set() {
        let mut set = LiveSet::default();
        let mut model = HashSet::new();
        // 1 MiB apart (sparse pages of one address), then one page filled past DENSE
        let mut addrs: Vec<u64> = (0..300).map(|i| 0x7f00_0000_0010 + (i << 20)).collect();
        addrs.extend((0..(2 * DENSE as u64 + 40)).map(|i| 0x5555_5555_0000 + 32 * i));
        addrs.extend([0x5555_5555_0008, 0x1234_5673]); // an 8-aligned neighbour, an odd one
        for (k, &a) in addrs.iter().enumerate() {
            assert_eq!(set.insert(a), model.insert(a), "insert {a:#x}");
            assert!(!set.insert(a), "a second insert of {a:#x} finds it");
            if k % 3 == 0 {
                assert_eq!(set.remove(a), model.remove(&a), "remove {a:#x}");
                assert!(!set.remove(a));
            }
        }
        assert_eq!(set.pages.len(), 1, "only the full page became bits");
        for &a in &addrs {
            assert_eq!(set.remove(a), model.remove(&a), "final remove {a:#x}");
        }
        assert!(set.sparse.is_empty(), "emptied sparse pages are dropped");
    }

    #[test]
    fn an_arena_mapped_twice_or_unmapped_unmapped_is_refused() {
        let mut l = Liveness::<Bits>::default();
        let (a, b) = (Addr(0x7fff_7750_0000), Addr(0x7fff_7760_0000));
        let map = |addr| {
            ev(
                EventKind::ArenaAlloc {
                    size: 1 << 20,
                    addr,
                },
                1,
            )
        };
        let unmap = |addr| {
            ev(
                EventKind::ArenaFree {
                    addr,
                    size: 1 << 20,
                },
                2,
            )
        };
        l.apply(&map(a)).unwrap();
        assert!(matches!(l.apply(&map(a)), Err(Cause::Arena { addr, .. }) if addr == a));
        assert!(matches!(l.apply(&unmap(b)), Err(Cause::Arena { addr, .. }) if addr == b));
        l.apply(&unmap(a)).unwrap();
        // Unmapped, the same base may be mapped again (obmalloc reuses a freed arena's slot).
        l.apply(&map(a)).unwrap();
    }

    #[test]
    fn a_double_free_an_unknown_free_and_a_live_address_returned_again_are_refused() {
        let mut l = Liveness::<Bits>::default();
        let a = Addr(0x1000);
        let m = |line| {
            ev(
                EventKind::Malloc {
                    domain: Domain::Obj,
                    size: 16,
                    addr: a,
                },
                line,
            )
        };
        let f = |line| {
            ev(
                EventKind::Free {
                    domain: Domain::Mem,
                    addr: a,
                },
                line,
            )
        };
        l.apply(&m(3)).unwrap();
        assert!(matches!(l.apply(&m(4)), Err(Cause::StillLive { .. })));
        assert!(l.apply(&f(5)).unwrap().given_back);
        assert!(matches!(
            l.apply(&f(6)),
            Err(Cause::NeverAllocated { op: "free", .. })
        ));
        // a failed realloc keeps its block; a realloc to NULL of size 0 gives it back
        l.apply(&m(7)).unwrap();
        let r = |size, new| {
            ev(
                EventKind::Realloc {
                    domain: Domain::Libc,
                    old: a,
                    size,
                    new,
                },
                8,
            )
        };
        l.apply(&r(64, Addr::NULL)).unwrap();
        l.apply(&r(0, Addr::NULL)).unwrap();
        assert!(
            l.apply(&r(0, Addr::NULL)).is_err(),
            "given back by realloc(p, 0)"
        );
    }

    #[test]
    fn raw_frees_of_unknown_addresses_are_counted_and_nested_calls_ignored() {
        let mut l = Liveness::<Bits>::default();
        let raw = |kind| ev(kind, 1);
        l.apply(&raw(EventKind::Malloc {
            domain: Domain::Raw,
            size: 40,
            addr: Addr(0x10),
        }))
        .unwrap();
        l.apply(&raw(EventKind::Free {
            domain: Domain::Raw,
            addr: Addr(0x10),
        }))
        .unwrap();
        l.apply(&raw(EventKind::Free {
            domain: Domain::Raw,
            addr: Addr(0x10),
        }))
        .unwrap();
        l.apply(&raw(EventKind::Free {
            domain: Domain::Raw,
            addr: Addr(0x20),
        }))
        .unwrap();
        assert_eq!(l.raw_unknown, 2);
        l.apply(&raw(EventKind::Free {
            domain: Domain::RawNested,
            addr: Addr(0x30),
        }))
        .unwrap();
        assert_eq!(l.raw_unknown, 2);
    }
}

#[cfg(test)]
mod set_tests {
    use super::*;

    #[test]
    fn the_bit_set_holds_exactly_what_was_put_in() {
        let mut s = LiveSet::default();
        let addrs = [
            0x7fff_7750_0030u64,
            0x7fff_7750_0038,
            0x5555_5555_c530,
            0x10_0000,
            0x7fff7,
        ];
        for &a in &addrs {
            assert!(s.insert(a), "{a:#x}");
        }
        for &a in &addrs {
            assert!(!s.insert(a), "{a:#x} twice");
        }
        assert!(!s.remove(0x7fff_7750_0040), "never put in");
        for &a in &addrs {
            assert!(s.remove(a) && !s.remove(a), "{a:#x}");
        }
    }
}
