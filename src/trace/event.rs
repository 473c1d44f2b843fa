//! The one event type every trace reader produces.
//!
//! Events are small and `Copy`, so a pre-decoded trace replays without allocation.
//! Addresses are the ones the real process returned (`Addr::NULL` where none was seen).

use crate::addr::Addr;

/// Which CPython allocator domain a call went through (CPython 3's `PyMem_SetAllocator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// `PYMEM_DOMAIN_OBJ` (`O`): pymalloc.
    Obj,
    /// `PYMEM_DOMAIN_MEM` (`M`): pymalloc, same state as `Obj`.
    Mem,
    /// `PYMEM_DOMAIN_RAW` called at top level (`R`).
    Raw,
    /// A raw call nested inside an O/M call (`r`): a fall-through, arena vector growth, …
    RawNested,
    /// A plain C library call (glibc traces, mtrace, ltrace …).
    Libc,
}

/// Which CPython 2 type free list an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FreeListKind {
    /// `intobject.c`: PyIntBlock.
    Int,
    /// `floatobject.c`: PyFloatBlock.
    Float,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventKind {
    /// `malloc(size) = addr`.
    Malloc {
        domain: Domain,
        size: u64,
        addr: Addr,
    },
    /// `calloc(nelem, elsize) = addr`.
    Calloc {
        domain: Domain,
        nelem: u64,
        elsize: u64,
        addr: Addr,
    },
    /// `realloc(old, size) = new`.
    Realloc {
        domain: Domain,
        old: Addr,
        size: u64,
        new: Addr,
    },
    /// `free(addr)`.
    Free { domain: Domain, addr: Addr },
    /// `memalign(align, size) = addr` (and aligned_alloc, posix_memalign).
    Memalign { align: u64, size: u64, addr: Addr },
    /// `valloc(size) = addr`.
    Valloc { size: u64, addr: Addr },
    /// `pvalloc(size) = addr`.
    Pvalloc { size: u64, addr: Addr },
    /// `mallopt(param, value) = ret`.
    Mallopt { param: i64, value: i64, ret: i64 },
    /// pymalloc mapped an arena of `size` bytes at `addr`.
    ArenaAlloc { size: u64, addr: Addr },
    /// pymalloc unmapped the arena at `addr`.
    ArenaFree { addr: Addr, size: u64 },
    /// A virtual-memory chunk from outside pymalloc (CPython 3.11 frame data stack).
    VirtualAlloc { size: u64, addr: Addr },
    /// Its release.
    VirtualFree { addr: Addr, size: u64 },
    /// A new type free-list block (`B`/`b`) from malloc.
    BlockNew {
        kind: FreeListKind,
        size: u64,
        addr: Addr,
    },
    /// An object popped from a type free list (`I`/`i`); `value` is the int, or the
    /// float's bits.
    ObjPop {
        kind: FreeListKind,
        value: i64,
        addr: Addr,
    },
    /// An object pushed back on a type free list (`D`/`d`).
    ObjPush { kind: FreeListKind, addr: Addr },
    /// ClearFreeList kept the block at `addr`, which holds `live` live objects (`K`/`k`).
    ClearKeep {
        kind: FreeListKind,
        addr: Addr,
        live: u64,
    },
    /// ClearFreeList freed the block at `addr` (`X`/`x`).
    ClearFree { kind: FreeListKind, addr: Addr },
    /// End of ClearFreeList (`L`/`l`).
    ClearDone {
        kind: FreeListKind,
        kept: u64,
        freed: u64,
        live: u64,
        nfree: u64,
        head: Addr,
    },
    /// A phase marker written by the traced program (`# mark …`); `index` counts markers.
    Mark { index: u32 },
}

/// One event and where it was read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The 1-based line of the trace file it was read from (0 when not from a text file).
    pub line: u64,
}

/// The one table keyed on event kind, expanded wherever code needs one entry per kind
/// (`$then!` receives the rows): the binary format's encoder and decoder
/// ([`binary`](super::binary)), [`EventKind::code`] and its names (replay's counts),
/// which text grammars have a line for the kind ([`Format::has_line_for`]), and the text
/// lines themselves, read and written ([`grammar`](super::grammar)).
///
/// ```text
///   code  variant { [sub-code field] field: codec, … }  text letter (int, float)  grammars
/// ```
/// codecs: `v` varint, `z` zigzag varint, `n` a free-list object's value (zigzag varint;
/// in text the int, or under the float letter the float), `a` address, `idx` mark index
/// (text: fields in this order, see [`grammar`](super::grammar)); the sub-code is
/// the `domain` (O M R r libc = 0..4) or free-list `kind` (int 0, float 1), [`NO_SUB`]
/// when the kind has none. Grammars: `P3` CPython 3 (`m O …`), `G` glibc (`m SIZE 0x…`),
/// `P27` PYREC, `Mi` CPython 3.13 on mimalloc (P3's calls and data-stack lines, no arenas,
/// beside its OS lines); a domain kind has a line in a grammar only for that grammar's domains
/// ([`Format::domains`]).
///
/// [`Format::has_line_for`]: super::Format::has_line_for
/// [`Format::domains`]: super::Format::domains
macro_rules! event_table {
    ($then:ident) => {
        $then! {
            0 => Malloc { [domain] size: v, addr: a } ("m", "m") [P3 G P27 Mi]
            1 => Calloc { [domain] nelem: v, elsize: v, addr: a } ("c", "c") [P3 G Mi]
            2 => Realloc { [domain] old: a, size: v, new: a } ("r", "r") [P3 G P27 Mi]
            3 => Free { [domain] addr: a } ("f", "f") [P3 G P27 Mi]
            4 => Memalign { align: v, size: v, addr: a } ("a", "a") [G]
            5 => Valloc { size: v, addr: a } ("v", "v") [G]
            6 => Pvalloc { size: v, addr: a } ("p", "p") [G]
            7 => Mallopt { param: z, value: z, ret: z } ("o", "o") [G]
            8 => ArenaAlloc { size: v, addr: a } ("A", "A") [P3 P27]
            9 => ArenaFree { addr: a, size: v } ("F", "F") [P3 P27]
            10 => VirtualAlloc { size: v, addr: a } ("V", "V") [P3 Mi]
            11 => VirtualFree { addr: a, size: v } ("W", "W") [P3 Mi]
            12 => BlockNew { [kind] size: v, addr: a } ("B", "b") [P27]
            13 => ObjPop { [kind] value: n, addr: a } ("I", "i") [P27]
            14 => ObjPush { [kind] addr: a } ("D", "d") [P27]
            15 => ClearKeep { [kind] addr: a, live: v } ("K", "k") [P27]
            16 => ClearFree { [kind] addr: a } ("X", "x") [P27]
            17 => ClearDone { [kind] kept: v, freed: v, live: v, nfree: v, head: a } ("L", "l") [P27]
            18 => Mark { index: idx } ("mark", "mark") [G]
        }
    };
}
pub(crate) use event_table;

/// The sub-code of a kind that has neither a domain nor a free-list kind.
pub const NO_SUB: u8 = 7;

/// Number of event kinds: codes are below `KINDS * 8`.
pub const KINDS: usize = 19;

impl Domain {
    /// An O or M domain call: `PYMEM_DOMAIN_OBJ` or `PYMEM_DOMAIN_MEM`, the domains
    /// pymalloc serves (mimalloc in CPython 3.13; the 2.7 recordings' `m O` too).
    #[inline(always)]
    pub fn is_om(self) -> bool {
        matches!(self, Domain::Obj | Domain::Mem)
    }

    /// The domain's sub-code (O M R r libc = 0..4).
    pub fn code(self) -> u8 {
        match self {
            Domain::Obj => 0,
            Domain::Mem => 1,
            Domain::Raw => 2,
            Domain::RawNested => 3,
            Domain::Libc => 4,
        }
    }

    /// The domain of a sub-code.
    pub fn from_code(c: u8) -> Option<Domain> {
        Some(match c {
            0 => Domain::Obj,
            1 => Domain::Mem,
            2 => Domain::Raw,
            3 => Domain::RawNested,
            4 => Domain::Libc,
            _ => return None,
        })
    }

    /// The letter the CPython 3 recordings write (`O M R r`); none for C library calls.
    pub fn letter(self) -> Option<char> {
        ["O", "M", "R", "r"]
            .get(self.code() as usize)
            .and_then(|s| s.chars().next())
    }
}

impl FreeListKind {
    /// The free-list sub-code (int 0, float 1).
    pub fn code(self) -> u8 {
        match self {
            FreeListKind::Int => 0,
            FreeListKind::Float => 1,
        }
    }

    /// The free-list kind of a sub-code.
    pub fn from_code(c: u8) -> Option<FreeListKind> {
        match c {
            0 => Some(FreeListKind::Int),
            1 => Some(FreeListKind::Float),
            _ => None,
        }
    }
}

macro_rules! kind_codes {
    ($($code:literal => $variant:ident { $([$sub:ident])? $($field:ident: $c:ident),* }
       ($int:literal, $float:literal) [$($g:ident)*])*) => {
        impl EventKind {
            /// The kind's code: `kind · 8 + sub`, `sub` the domain or free-list code
            /// ([`NO_SUB`] when the kind has neither); below `KINDS · 8`. The binary
            /// format's record tag, and the index of replay's counts.
            #[inline]
            pub fn code(&self) -> u8 {
                match *self {
                    $(EventKind::$variant { $($sub,)? .. } => {
                        $code * 8 + kind_codes!(@sub $($sub)?)
                    })*
                }
            }

            /// The domain of a malloc-family call; `None` for other kinds.
            pub fn domain(&self) -> Option<Domain> {
                match *self {
                    EventKind::Malloc { domain, .. }
                    | EventKind::Calloc { domain, .. }
                    | EventKind::Realloc { domain, .. }
                    | EventKind::Free { domain, .. } => Some(domain),
                    _ => None,
                }
            }

            /// The name of a code, as the recordings spell the line (`m O`, `m` for a C
            /// library malloc, `B`, `i`, `mark`); `None` for a code no kind has.
            pub fn code_name(code: u8) -> Option<String> {
                let (kind, sub) = (code / 8, code % 8);
                match kind {
                    $($code => kind_codes!(@name sub, $int, $float $(, $sub)?),)*
                    _ => None,
                }
            }

            /// The text grammars whose lines can carry a kind of code `code / 8`.
            pub(crate) fn grammars(code: u8) -> &'static [super::format::Grammar] {
                use super::format::Grammar::*;
                match code / 8 {
                    $($code => &[$($g),*],)*
                    _ => &[],
                }
            }
        }
    };
    (@sub) => { NO_SUB };
    (@sub $x:ident) => { $x.code() };
    (@name $s:ident, $int:literal, $float:literal) => {
        ($s == NO_SUB).then(|| $int.to_string())
    };
    (@name $s:ident, $int:literal, $float:literal, domain) => {
        match Domain::from_code($s) {
            Some(Domain::Libc) => Some($int.to_string()),
            Some(d) => d.letter().map(|l| format!("{} {l}", $int)),
            None => None,
        }
    };
    (@name $s:ident, $int:literal, $float:literal, kind) => {
        match FreeListKind::from_code($s) {
            Some(FreeListKind::Int) => Some($int.to_string()),
            Some(FreeListKind::Float) => Some($float.to_string()),
            None => None,
        }
    };
}

event_table!(kind_codes);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_distinct_name() {
        let names: Vec<String> = (0..(KINDS * 8) as u8)
            .filter_map(EventKind::code_name)
            .collect();
        let distinct: std::collections::HashSet<&String> = names.iter().collect();
        // 4 calls × 5 domains, 8 kinds without sub-code, 6 free-list kinds × 2, the mark
        assert_eq!(
            (names.len(), distinct.len()),
            (4 * 5 + 8 + 6 * 2 + 1, names.len())
        );
        let e = EventKind::ObjPop {
            kind: FreeListKind::Float,
            value: 0,
            addr: Addr::NULL,
        };
        assert_eq!(EventKind::code_name(e.code()).as_deref(), Some("i"));
    }
}
