//! Pre-decoded events, 16 bytes each: what a replay that reads a trace once and runs it
//! many times (benches, `compare`, the pinned pymalloc replay) keeps in memory instead of
//! [`Event`]s (56 bytes).
//!
//! ```text
//!   head  63                              16 15      8 7       0
//!         [ address A, 48 bits            | line Δ   | code    ]
//!   body  63                                                   0
//!         [ the kind's second field: size, value, index …      ]
//! ```
//! `code` is [`EventKind::code`] (`kind · 8 + sub`, below `KINDS · 8`); `line Δ` the event's
//! line minus the previous event's (0..=255); address A the kind's main address (the block
//! returned, freed, pushed …). The body holds, by kind:
//!
//! | kind | body |
//! |---|---|
//! | Malloc, Valloc, Pvalloc, Arena*, Virtual*, BlockNew | `size` |
//! | Calloc | `elsize << 32 \| nelem` (both < 2³²) |
//! | Realloc (A = `new`) | `size << 48 \| old` (size < 2¹⁶) |
//! | Memalign | `align << 48 \| size` (align < 2¹⁶, size < 2⁴⁸) |
//! | ObjPop | `value`; ClearKeep: `live`; Mark: `index` |
//! | Free, ObjPush, ClearFree | 0 |
//!
//! An event that does not fit (an address of 48 bits or more, a field too wide, a line
//! that goes back or jumps by more than 255, a Mallopt or ClearDone) is stored whole in a
//! side table: its record has code [`ESCAPE`] and the table index in its body. So
//! `PackedEvents` → `Event`s gives back exactly the events pushed (lines included), and
//! `bytes() ≤ 16 · len + 56 · |escaped|`.

use super::event::{Domain, Event, EventKind, FreeListKind, KINDS};
use super::{EventReader, TraceError, TraceHeader};
use crate::addr::Addr;

/// The code of a record whose event lives in the side table (above every kind's code).
pub const ESCAPE: u8 = 0xff;

const _: () = assert!(KINDS * 8 <= ESCAPE as usize);

const ADDR_BITS: u32 = 48;
const LOW48: u64 = (1 << ADDR_BITS) - 1;

/// One pre-decoded event, 16 bytes (see the [module](self) for the layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    head: u64, // address A << 16 | line Δ << 8 | code
    body: u64, // the kind's second field (or the side-table index when escaped)
}

impl Packed {
    /// The event's [`EventKind::code`], or [`ESCAPE`] when it is in the side table.
    #[inline(always)]
    pub fn code(&self) -> u8 {
        self.head as u8
    }

    /// The kind's main address (`addr`; `new` for a realloc); meaningless when escaped.
    #[inline(always)]
    pub fn addr(&self) -> Addr {
        Addr(self.head >> 16)
    }

    /// The body: the size of a malloc (and of the kinds listed with it in the
    /// [module](self) table), or the kind's packed second field.
    #[inline(always)]
    pub fn body(&self) -> u64 {
        self.body
    }

    #[inline(always)]
    fn line_delta(&self) -> u64 {
        (self.head >> 8) & 0xff
    }
}

/// The codes of the pymalloc fast path's events (`m O`, `m M`, `f O`, `f M`).
pub mod codes {
    /// `m O`: malloc, `Domain::Obj`.
    pub const MALLOC_OBJ: u8 = 0;
    /// `m M`: malloc, `Domain::Mem`.
    pub const MALLOC_MEM: u8 = 1;
    /// `f O`: free, `Domain::Obj`.
    pub const FREE_OBJ: u8 = 3 * 8;
    /// `f M`: free, `Domain::Mem`.
    pub const FREE_MEM: u8 = 3 * 8 + 1;
}

/// Events packed 16 bytes each, with a side table for those that do not fit, and the
/// header of the trace they came from.
#[derive(Debug, Clone, Default)]
pub struct PackedEvents {
    records: Vec<Packed>, // one per event, in order
    escaped: Vec<Event>,  // events whose record has code ESCAPE, in order
    last_line: u64,       // line of the last event pushed
    header: TraceHeader,  // the trace's `#` lines
}

/// `x` when it fits in `bits` bits.
#[inline]
fn fits(x: u64, bits: u32) -> Option<u64> {
    (x >> bits == 0).then_some(x)
}

impl PackedEvents {
    /// No events.
    pub fn new() -> PackedEvents {
        PackedEvents::default()
    }

    /// Reads every event of `r` (its header kept).
    ///
    /// # Errors
    /// The reader's own error (a malformed line, a truncated file …).
    pub fn read(r: &mut dyn EventReader) -> Result<PackedEvents, TraceError> {
        let mut p = PackedEvents::new();
        let mut buf = vec![
            Event {
                kind: EventKind::Mark { index: 0 },
                line: 0
            };
            4096
        ];
        loop {
            let n = r.next_events(&mut buf)?;
            if n == 0 {
                break;
            }
            p.records.reserve(n);
            for e in &buf[..n] {
                p.push(e);
            }
        }
        p.header = r.header().clone();
        Ok(p)
    }

    /// Appends one event.
    pub fn push(&mut self, e: &Event) {
        let delta = e.line.checked_sub(self.last_line).and_then(|d| fits(d, 8));
        let packed = delta.and_then(|d| {
            let (a, body) = Self::fields(&e.kind)?;
            let a = fits(a.0, ADDR_BITS)?;
            Some(Packed {
                head: a << 16 | d << 8 | u64::from(e.kind.code()),
                body,
            })
        });
        let record = packed.unwrap_or_else(|| {
            self.escaped.push(*e);
            Packed {
                head: u64::from(ESCAPE),
                body: (self.escaped.len() - 1) as u64,
            }
        });
        self.records.push(record);
        self.last_line = e.line;
    }

    /// Address A and body of a kind that packs, `None` for one that escapes.
    #[inline]
    fn fields(k: &EventKind) -> Option<(Addr, u64)> {
        use EventKind::*;
        Some(match *k {
            Malloc { size, addr, .. }
            | Valloc { size, addr }
            | Pvalloc { size, addr }
            | ArenaAlloc { size, addr }
            | ArenaFree { addr, size }
            | VirtualAlloc { size, addr }
            | VirtualFree { addr, size }
            | BlockNew { size, addr, .. } => (addr, size),
            Calloc {
                nelem,
                elsize,
                addr,
                ..
            } => (addr, fits(elsize, 32)? << 32 | fits(nelem, 32)?),
            Realloc { old, size, new, .. } => (
                new,
                fits(size, 64 - ADDR_BITS)? << ADDR_BITS | fits(old.0, ADDR_BITS)?,
            ),
            Memalign { align, size, addr } => (
                addr,
                fits(align, 64 - ADDR_BITS)? << ADDR_BITS | fits(size, ADDR_BITS)?,
            ),
            Free { addr, .. } | ObjPush { addr, .. } | ClearFree { addr, .. } => (addr, 0),
            ObjPop { value, addr, .. } => (addr, value as u64),
            ClearKeep { addr, live, .. } => (addr, live),
            Mark { index } => (Addr::NULL, u64::from(index)),
            Mallopt { .. } | ClearDone { .. } => return None,
        })
    }

    /// The kind of a record that is not escaped.
    #[inline]
    pub fn kind_of(p: &Packed) -> Option<EventKind> {
        let (kind, sub, addr, b) = (p.code() / 8, p.code() % 8, p.addr(), p.body);
        let domain = || Domain::from_code(sub);
        let list = || FreeListKind::from_code(sub);
        use EventKind::*;
        Some(match kind {
            0 => Malloc {
                domain: domain()?,
                size: b,
                addr,
            },
            1 => Calloc {
                domain: domain()?,
                nelem: b & 0xffff_ffff,
                elsize: b >> 32,
                addr,
            },
            2 => Realloc {
                domain: domain()?,
                old: Addr(b & LOW48),
                size: b >> ADDR_BITS,
                new: addr,
            },
            3 => Free {
                domain: domain()?,
                addr,
            },
            4 => Memalign {
                align: b >> ADDR_BITS,
                size: b & LOW48,
                addr,
            },
            5 => Valloc { size: b, addr },
            6 => Pvalloc { size: b, addr },
            8 => ArenaAlloc { size: b, addr },
            9 => ArenaFree { addr, size: b },
            10 => VirtualAlloc { size: b, addr },
            11 => VirtualFree { addr, size: b },
            12 => BlockNew {
                kind: list()?,
                size: b,
                addr,
            },
            13 => ObjPop {
                kind: list()?,
                value: b as i64,
                addr,
            },
            14 => ObjPush {
                kind: list()?,
                addr,
            },
            15 => ClearKeep {
                kind: list()?,
                addr,
                live: b,
            },
            16 => ClearFree {
                kind: list()?,
                addr,
            },
            18 => Mark { index: b as u32 },
            _ => return None,
        })
    }

    /// The kind of a record of these events, escaped or not (`None` for a record that is
    /// not one of theirs).
    #[inline]
    pub fn kind(&self, p: &Packed) -> Option<EventKind> {
        match p.code() {
            ESCAPE => self.escaped(p).map(|e| e.kind),
            _ => PackedEvents::kind_of(p),
        }
    }

    /// The line event `i` was read from (the deltas summed from the last escaped event
    /// before it: for error messages, not for every event); `None` past the end.
    pub fn line_of(&self, i: usize) -> Option<u64> {
        let upto = self.records.get(..=i)?;
        let mut line = 0;
        for p in upto.iter().rev() {
            match self.escaped(p) {
                Some(e) => return Some(e.line + line),
                None => line += p.line_delta(),
            }
        }
        Some(line)
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when there are no events.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The packed records, one per event (escaped ones have code [`ESCAPE`]: see
    /// [`escaped`](Self::escaped)).
    pub fn records(&self) -> &[Packed] {
        &self.records
    }

    /// The event an [`ESCAPE`] record stands for.
    #[inline(never)]
    pub fn escaped(&self, p: &Packed) -> Option<&Event> {
        (p.code() == ESCAPE)
            .then(|| self.escaped.get(p.body as usize))
            .flatten()
    }

    /// The number of events kept whole in the side table.
    pub fn escaped_len(&self) -> usize {
        self.escaped.len()
    }

    /// The header of the trace the events came from.
    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Sets the header (events pushed one by one have none).
    pub fn set_header(&mut self, header: TraceHeader) {
        self.header = header;
    }

    /// Heap bytes held: `16 · records + 56 · escaped` (capacity, not length).
    pub fn bytes(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<Packed>()
            + self.escaped.capacity() * std::mem::size_of::<Event>()
    }

    /// The events, as pushed (lines included).
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            events: self,
            next: 0,
            line: 0,
        }
    }

    /// An [`EventReader`] over the events (with their header), for code written against
    /// readers.
    pub fn reader(&self) -> Iter<'_> {
        self.iter()
    }
}

/// The events of a [`PackedEvents`], in order; also an [`EventReader`].
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    events: &'a PackedEvents,
    next: usize, // index of the next record
    line: u64,   // line of the previous event
}

impl Iter<'_> {
    /// The event of record `p`, following the previous event (whose line is `self.line`).
    #[inline]
    fn decode(&mut self, p: &Packed) -> Event {
        let e = match PackedEvents::kind_of(p) {
            Some(kind) => Event {
                kind,
                line: self.line + p.line_delta(),
            },
            // an escape (every other record was packed from a valid event)
            None => *self
                .events
                .escaped(p)
                .expect("an escape record indexes the side table"),
        };
        self.line = e.line;
        e
    }
}

impl Iterator for Iter<'_> {
    type Item = Event;

    #[inline]
    fn next(&mut self) -> Option<Event> {
        let p = *self.events.records.get(self.next)?;
        self.next += 1;
        Some(self.decode(&p))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.events.records.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl EventReader for Iter<'_> {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        Ok(self.next())
    }

    fn header(&self) -> &TraceHeader {
        &self.events.header
    }

    fn next_events(&mut self, out: &mut [Event]) -> Result<usize, TraceError> {
        let mut n = 0;
        for slot in out.iter_mut() {
            match self.next() {
                Some(e) => *slot = e,
                None => break,
            }
            n += 1;
        }
        Ok(n)
    }
}

impl<'a> IntoIterator for &'a PackedEvents {
    type Item = Event;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<Event> for PackedEvents {
    fn from_iter<I: IntoIterator<Item = Event>>(events: I) -> PackedEvents {
        let mut p = PackedEvents::new();
        for e in events {
            p.push(&e);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_16_bytes_and_an_event_more_than_twice_that() {
        assert_eq!(std::mem::size_of::<Packed>(), 16);
        assert!(std::mem::size_of::<Event>() > 2 * std::mem::size_of::<Packed>());
    }

    fn ev(kind: EventKind, line: u64) -> Event {
        Event { kind, line }
    }

    #[test]
    fn fields_that_do_not_fit_escape_and_come_back_whole() {
        let big = Addr(1 << 48);
        let events = vec![
            ev(
                EventKind::Malloc {
                    domain: Domain::Obj,
                    size: u64::MAX,
                    addr: Addr(0x7fff_ffff_fff0),
                },
                3,
            ),
            ev(
                EventKind::Free {
                    domain: Domain::Raw,
                    addr: big,
                },
                4,
            ),
            ev(
                EventKind::Realloc {
                    domain: Domain::Mem,
                    old: Addr(0x10),
                    size: 1 << 16,
                    new: Addr(0x20),
                },
                2,
            ),
            ev(
                EventKind::Realloc {
                    domain: Domain::Mem,
                    old: Addr(0x10),
                    size: (1 << 16) - 1,
                    new: Addr(0x20),
                },
                2 + 255,
            ),
            ev(
                EventKind::Calloc {
                    domain: Domain::Libc,
                    nelem: 1 << 32,
                    elsize: 1,
                    addr: Addr(0x30),
                },
                2 + 255 + 256,
            ),
            ev(
                EventKind::Mallopt {
                    param: -1,
                    value: i64::MIN,
                    ret: 1,
                },
                0,
            ),
            ev(
                EventKind::ObjPop {
                    kind: FreeListKind::Float,
                    value: i64::MIN,
                    addr: Addr(0x40),
                },
                1,
            ),
        ];
        let p: PackedEvents = events.iter().copied().collect();
        assert_eq!(p.iter().collect::<Vec<_>>(), events);
        // the wide free, the line going back, the line jumping by 256 (with the wide
        // calloc), the mallopt: escaped; the rest packed
        assert_eq!(p.escaped_len(), 4);
        assert_eq!(p.records()[0].addr(), Addr(0x7fff_ffff_fff0));
        assert_eq!(p.records()[0].body(), u64::MAX);
    }
}
