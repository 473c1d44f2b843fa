//! pyalloc's compact binary trace: the same events as the text formats, a few bytes each,
//! decoded without parsing text, for fast replay.
//!
//! ```text
//!   "PYALLOCB" · version (1 byte = 1)                                      magic, 9 bytes
//!   varint n · n × (varint len · len bytes of UTF-8)                       the header lines
//!   records:
//!     TAG = kind·8 + sub        one byte < 0xF0; sub = domain (O M R r libc = 0..4) or
//!                               free-list kind (int 0, float 1), 7 when the kind has none
//!     fields                    varints; addresses as zigzag(addr − previous address)
//!                               (one register, any field), signed values zigzag-coded
//!     0xFE varint L             the next event's line is L (otherwise previous line + 1)
//!     0xFF varint N             the end: N events were written; nothing may follow
//! ```
//! A varint is LEB128 (7 bits a byte, low first). Lossless: every [`Event`] field, its
//! line included, and the header lines come back as written:
//! `decode(encode(events)) == events`. A file that stops before the end record, or inside
//! a record, is refused with the byte offset where it stops.

use super::{Domain, Event, EventKind, EventReader, FreeListKind, TraceError, TraceHeader};
use crate::addr::Addr;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The first bytes of every binary trace.
pub const MAGIC: &[u8; 8] = b"PYALLOCB";
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;

const TAG_LINE: u8 = 0xFE;
const TAG_END: u8 = 0xFF;
const NO_SUB: u8 = 7;

/// Decodes one LEB128 varint (at most 10 bytes), each byte from `$next` (an expression
/// of type `Result<u8, Fault>`), in a function returning `Result<_, Fault>`. A macro, not
/// a function taking a closure: the decoder's hot path measured 20% slower through a
/// closure.
macro_rules! leb128 {
    ($next:expr) => {{
        let b: u8 = $next?;
        if b < 0x80 {
            Ok(u64::from(b))
        } else {
            let mut v = u64::from(b & 0x7f);
            let mut shift = 7;
            loop {
                let b: u8 = $next?;
                v |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    break Ok(v);
                }
                shift += 7;
                if shift > 63 {
                    break Err(Fault::Bad("varint longer than 10 bytes"));
                }
            }
        }
    }};
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn domain_code(d: Domain) -> u8 {
    match d {
        Domain::Obj => 0,
        Domain::Mem => 1,
        Domain::Raw => 2,
        Domain::RawNested => 3,
        Domain::Libc => 4,
    }
}

fn code_domain(c: u8) -> Option<Domain> {
    Some(match c {
        0 => Domain::Obj,
        1 => Domain::Mem,
        2 => Domain::Raw,
        3 => Domain::RawNested,
        4 => Domain::Libc,
        _ => return None,
    })
}

fn fl_code(k: FreeListKind) -> u8 {
    match k {
        FreeListKind::Int => 0,
        FreeListKind::Float => 1,
    }
}

fn code_fl(c: u8) -> Option<FreeListKind> {
    match c {
        0 => Some(FreeListKind::Int),
        1 => Some(FreeListKind::Float),
        _ => None,
    }
}

/// The record table, written once for both directions: each kind's code, its sub-code
/// field (`domain` or free-list `kind`, if any) and its fields in stored order with their
/// codec (`v` varint, `z` zigzag varint, `a` address, `idx` mark index). It expands to
/// `BinaryWriter::record` and `decode_kind`, so `decode_kind(record(k)) == k` by
/// construction.
macro_rules! records {
    ($($code:literal => $variant:ident { $([$sub:ident])? $($field:ident: $c:ident),* })*) => {
        impl<W: Write> BinaryWriter<W> {
            /// Appends one event's tag and fields.
            fn record(&mut self, kind: EventKind) {
                match kind {
                    $(EventKind::$variant { $($sub,)? $($field),* } => {
                        self.tag($code, records!(@enc $($sub $sub)?));
                        $(self.$c($field);)*
                    })*
                }
            }
        }

        /// Decodes the fields of a record of kind `code`, sub-code `sub`.
        #[inline(always)]
        fn decode_kind(c: &mut Cur, code: u8, sub: u8) -> Result<EventKind, Fault> {
            Ok(match code {
                $($code => EventKind::$variant {
                    $($sub: records!(@dec $sub sub)?,)?
                    $($field: c.$c()?),*
                },)*
                _ => return Err(Fault::Bad("unknown record tag")),
            })
        }
    };
    (@enc) => { NO_SUB };
    (@enc domain $x:ident) => { domain_code($x) };
    (@enc kind $x:ident) => { fl_code($x) };
    (@dec domain $s:ident) => { code_domain($s).ok_or(Fault::Bad("bad domain code")) };
    (@dec kind $s:ident) => { code_fl($s).ok_or(Fault::Bad("bad free-list code")) };
}

records! {
    0 => Malloc { [domain] size: v, addr: a }
    1 => Calloc { [domain] nelem: v, elsize: v, addr: a }
    2 => Realloc { [domain] old: a, size: v, new: a }
    3 => Free { [domain] addr: a }
    4 => Memalign { align: v, size: v, addr: a }
    5 => Valloc { size: v, addr: a }
    6 => Pvalloc { size: v, addr: a }
    7 => Mallopt { param: z, value: z, ret: z }
    8 => ArenaAlloc { size: v, addr: a }
    9 => ArenaFree { addr: a, size: v }
    10 => VirtualAlloc { size: v, addr: a }
    11 => VirtualFree { addr: a, size: v }
    12 => BlockNew { [kind] size: v, addr: a }
    13 => ObjPop { [kind] value: z, addr: a }
    14 => ObjPush { [kind] addr: a }
    15 => ClearKeep { [kind] addr: a, live: v }
    16 => ClearFree { [kind] addr: a }
    17 => ClearDone { [kind] kept: v, freed: v, live: v, nfree: v, head: a }
    18 => Mark { index: idx }
}

/// Writes events in the binary format.
pub struct BinaryWriter<W: Write> {
    out: W,
    buf: Vec<u8>,   // encoded bytes not yet written (flushed at 64 KiB)
    last_addr: u64, // the address register: the last address encoded
    line: u64,      // the line of the last event
    events: u64,    // events written
}

impl<W: Write> BinaryWriter<W> {
    /// Starts a binary trace on `out`: magic, version, header.
    ///
    /// # Errors
    /// The output's write errors.
    pub fn new(mut out: W, header: &TraceHeader) -> io::Result<BinaryWriter<W>> {
        let mut w = BinaryWriter {
            out: {
                out.write_all(MAGIC)?;
                out.write_all(&[VERSION])?;
                out
            },
            buf: Vec::with_capacity(1 << 16),
            last_addr: 0,
            line: 0,
            events: 0,
        };
        w.varint(header.lines.len() as u64);
        for l in &header.lines {
            w.varint(l.len() as u64);
            w.buf.extend_from_slice(l.as_bytes());
        }
        Ok(w)
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn addr(&mut self, a: Addr) {
        let d = a.0.wrapping_sub(self.last_addr) as i64;
        self.last_addr = a.0;
        self.varint(zigzag(d));
    }

    fn tag(&mut self, kind: u8, sub: u8) {
        self.buf.push(kind * 8 + sub);
    }

    // The field codecs of the record table (see `records!`): v varint, z zigzag varint,
    // a address, idx mark index.
    fn v(&mut self, x: u64) {
        self.varint(x);
    }

    fn z(&mut self, x: i64) {
        self.varint(zigzag(x));
    }

    fn a(&mut self, x: Addr) {
        self.addr(x);
    }

    fn idx(&mut self, x: u32) {
        self.varint(u64::from(x));
    }

    /// Appends one event.
    ///
    /// # Errors
    /// The output's write errors.
    pub fn write_event(&mut self, e: &Event) -> io::Result<()> {
        if e.line != self.line.wrapping_add(1) {
            self.buf.push(TAG_LINE);
            self.varint(e.line);
        }
        self.line = e.line;
        self.record(e.kind);
        self.events += 1;
        if self.buf.len() >= 1 << 16 {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes the end record and flushes; returns the output.
    ///
    /// # Errors
    /// The output's write errors.
    pub fn finish(mut self) -> io::Result<W> {
        self.buf.push(TAG_END);
        self.varint(self.events);
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads a binary trace as a stream of events.
pub struct BinaryReader {
    path: PathBuf,
    inner: Box<dyn Read + Send>,
    gzip: bool,   // the bytes come through a gzip decoder
    buf: Vec<u8>, // bytes read and not yet consumed are buf[pos..len]
    pos: usize,   // next byte to decode
    len: usize,   // end of the valid bytes in buf
    base: u64,    // file offset of buf[0]
    eof: bool,    // the input has no more bytes
    header: TraceHeader,
    last_addr: u64, // the address register
    line: u64,      // the line of the last event
    events: u64,    // events returned
    done: bool,     // the end record has been read
}

/// Why a record could not be decoded (turned into a [`TraceError`] with the offset).
enum Fault {
    Eof,
    Bad(&'static str),
    Io(io::Error),
}

impl BinaryReader {
    /// Opens a binary trace, plain or gzip-compressed.
    ///
    /// # Errors
    /// The file cannot be opened, is not a binary trace, or its header is cut short.
    pub fn open(path: &Path) -> Result<BinaryReader, TraceError> {
        let io_err = |source| TraceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let mut two = [0u8; 2];
        let n = file.read(&mut two).map_err(io_err)?;
        let gzip = n == 2 && two == [0x1f, 0x8b];
        let head = io::Cursor::new(two[..n].to_vec()).chain(file);
        let inner: Box<dyn Read + Send> = if gzip {
            Box::new(MultiGzDecoder::new(head))
        } else {
            Box::new(head)
        };
        Self::from_reader(path, inner, gzip)
    }

    /// Reads a binary trace held in memory.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<BinaryReader, TraceError> {
        Self::from_reader(Path::new(name), Box::new(io::Cursor::new(bytes)), false)
    }

    /// Reads a binary trace from any byte stream; `gzip` says how faults are reported.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_reader(
        path: &Path,
        inner: Box<dyn Read + Send>,
        gzip: bool,
    ) -> Result<BinaryReader, TraceError> {
        let mut r = BinaryReader {
            path: path.to_path_buf(),
            inner,
            gzip,
            buf: vec![0; 1 << 18],
            pos: 0,
            len: 0,
            base: 0,
            eof: false,
            header: TraceHeader::default(),
            last_addr: 0,
            line: 0,
            events: 0,
            done: false,
        };
        r.read_header().map_err(|f| r.fault(f, 0, "the header"))?;
        Ok(r)
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn fault(&self, f: Fault, start: u64, what: &str) -> TraceError {
        match f {
            Fault::Eof => TraceError::Truncated {
                path: self.path.clone(),
                offset: self.offset(),
                why: format!("the file ends inside {what} that starts at byte {start}"),
            },
            Fault::Bad(why) => TraceError::Parse {
                path: self.path.clone(),
                line: self.events + 1,
                text: format!("record at byte {start}"),
                why: why.to_string(),
            },
            Fault::Io(source) if self.gzip => TraceError::Gzip {
                path: self.path.clone(),
                offset: self.offset(),
                source,
            },
            Fault::Io(source) => TraceError::Io {
                path: self.path.clone(),
                source,
            },
        }
    }

    /// Makes at least `need` bytes available at `pos`, unless the input ends first.
    #[cold]
    fn fill(&mut self, need: usize) -> Result<bool, Fault> {
        if self.len - self.pos >= need {
            return Ok(true);
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.base += self.pos as u64;
        self.len -= self.pos;
        self.pos = 0;
        while self.len < need && !self.eof {
            let n = match self.inner.read(&mut self.buf[self.len..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(Fault::Io(e)),
                Err(e) => return Err(Fault::Io(e)),
            };
            if n == 0 {
                self.eof = true;
            }
            self.len += n;
        }
        Ok(self.len - self.pos >= need)
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, Fault> {
        if self.pos == self.len && !self.fill(1)? {
            return Err(Fault::Eof);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Fault> {
        // Fast path: one-byte varints (most sizes, nearby addresses), then any varint
        // wholly in the buffer; the rest (at a refill, or malformed) goes the slow way.
        if self.pos < self.len {
            let b = self.buf[self.pos];
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
            if self.len - self.pos >= 10 {
                let mut v = u64::from(b & 0x7f);
                let mut shift = 7;
                let mut i = self.pos + 1;
                while shift < 70 {
                    let b = self.buf[i];
                    i += 1;
                    v |= u64::from(b & 0x7f) << shift;
                    if b < 0x80 {
                        self.pos = i;
                        return Ok(v);
                    }
                    shift += 7;
                }
            }
        }
        self.varint_slow()
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, Fault> {
        leb128!(self.byte())
    }

    fn read_header(&mut self) -> Result<(), Fault> {
        if !self.fill(MAGIC.len() + 1)? {
            return Err(if self.len == 0 {
                Fault::Eof
            } else {
                Fault::Bad("not a pyalloc binary trace")
            });
        }
        if &self.buf[..MAGIC.len()] != MAGIC {
            return Err(Fault::Bad("not a pyalloc binary trace (bad magic)"));
        }
        if self.buf[MAGIC.len()] != VERSION {
            return Err(Fault::Bad("unsupported binary trace version"));
        }
        self.pos = MAGIC.len() + 1;
        let n = self.varint()?;
        for _ in 0..n {
            let len = self.varint()? as usize;
            if len > self.buf.len() {
                return Err(Fault::Bad("header line longer than 256 KiB"));
            }
            if !self.fill(len)? {
                return Err(Fault::Eof);
            }
            let text = std::str::from_utf8(&self.buf[self.pos..self.pos + len])
                .map_err(|_| Fault::Bad("header line is not UTF-8"))?
                .to_string();
            self.pos += len;
            self.header.lines.push(text);
        }
        Ok(())
    }

    /// Decodes the next record: refills the buffer and starts over when the record runs
    /// past the bytes at hand (a record is at most 72 bytes), so the decoding itself reads a
    /// plain slice.
    #[inline(always)]
    fn record(&mut self) -> Result<Option<Event>, Fault> {
        loop {
            let mut c = Cur {
                buf: &self.buf[self.pos..self.len],
                pos: 0,
                last: self.last_addr,
            };
            match decode(&mut c, self.line) {
                Ok(Some(e)) => {
                    self.pos += c.pos;
                    self.last_addr = c.last;
                    self.line = e.line;
                    self.events += 1;
                    return Ok(Some(e));
                }
                Ok(None) => {
                    self.pos += c.pos;
                    let mut c = Cur {
                        buf: &self.buf[self.pos..self.len],
                        pos: 0,
                        last: 0,
                    };
                    match c.v() {
                        Ok(n) => {
                            self.pos += c.pos;
                            if n != self.events {
                                return Err(Fault::Bad(
                                    "end record's event count differs from the events read",
                                ));
                            }
                            if self.fill(1)? {
                                return Err(Fault::Bad("bytes after the end record"));
                            }
                            self.done = true;
                            return Ok(None);
                        }
                        Err(Fault::Eof) if !self.eof => {
                            // back to the end tag, refill, decode again
                            self.pos -= 1;
                            self.refill()?;
                        }
                        Err(Fault::Eof) => {
                            self.pos = self.len;
                            return Err(Fault::Eof);
                        }
                        Err(f) => return Err(f),
                    }
                }
                Err(Fault::Eof) if !self.eof => self.refill()?,
                Err(Fault::Eof) => {
                    // the data ends inside this record: report the end of the data
                    self.pos = self.len;
                    return Err(Fault::Eof);
                }
                Err(f) => return Err(f),
            }
        }
    }

    #[cold]
    fn refill(&mut self) -> Result<(), Fault> {
        let need = (self.len - self.pos + 128).min(self.buf.len());
        self.fill(need)?;
        Ok(())
    }
}

/// A cursor over bytes at hand; running out is `Fault::Eof` (the caller refills).
struct Cur<'a> {
    buf: &'a [u8], // the bytes at hand
    pos: usize,    // next byte to decode
    last: u64,     // the address register
}

impl Cur<'_> {
    #[inline(always)]
    fn byte(&mut self) -> Result<u8, Fault> {
        let b = *self.buf.get(self.pos).ok_or(Fault::Eof)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline(always)]
    fn v(&mut self) -> Result<u64, Fault> {
        leb128!(self.byte())
    }

    #[inline(always)]
    fn a(&mut self) -> Result<Addr, Fault> {
        let d = unzigzag(self.v()?);
        self.last = self.last.wrapping_add(d as u64);
        Ok(Addr(self.last))
    }

    #[inline(always)]
    fn z(&mut self) -> Result<i64, Fault> {
        Ok(unzigzag(self.v()?))
    }

    #[inline(always)]
    fn idx(&mut self) -> Result<u32, Fault> {
        u32::try_from(self.v()?).map_err(|_| Fault::Bad("mark index too large"))
    }
}

/// Decodes one record after the event on line `prev_line`: `Ok(None)` at the end tag
/// (whose count is left to read).
#[inline(always)]
fn decode(c: &mut Cur, prev_line: u64) -> Result<Option<Event>, Fault> {
    let mut tag = c.byte()?;
    let mut line = prev_line.wrapping_add(1);
    if tag == TAG_LINE {
        line = c.v()?;
        tag = c.byte()?;
    }
    if tag == TAG_END {
        return Ok(None);
    }
    let k = decode_kind(c, tag / 8, tag % 8)?;
    Ok(Some(Event { kind: k, line }))
}

impl BinaryReader {
    #[cold]
    fn record_fault(&self, f: Fault, start: u64) -> TraceError {
        match f {
            Fault::Eof if self.offset() == start => TraceError::Truncated {
                path: self.path.clone(),
                offset: start,
                why: format!("no end record after {} events", self.events),
            },
            f => self.fault(f, start, "a record"),
        }
    }
}

impl EventReader for BinaryReader {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        if self.done {
            return Ok(None);
        }
        let start = self.offset();
        self.record().map_err(|f| self.record_fault(f, start))
    }

    fn next_events(&mut self, out: &mut [Event]) -> Result<usize, TraceError> {
        let mut n = 0;
        while n < out.len() && !self.done {
            let start = self.offset();
            match self.record() {
                Ok(Some(e)) => out[n] = e,
                Ok(None) => break,
                Err(f) => return Err(self.record_fault(f, start)),
            }
            n += 1;
        }
        Ok(n)
    }

    fn header(&self) -> &TraceHeader {
        &self.header
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (TraceHeader, Vec<Event>) {
        let h = TraceHeader {
            lines: vec!["pymalloc allocation trace".into(), "α: ünïcode".into()],
        };
        let a = Addr(0x7fff_f7cb_2030);
        let kinds = [
            EventKind::ArenaAlloc {
                size: 1 << 20,
                addr: Addr(0x7fff_f7a0_0000),
            },
            EventKind::Malloc {
                domain: Domain::Obj,
                size: 24,
                addr: a,
            },
            EventKind::Realloc {
                domain: Domain::RawNested,
                old: Addr::NULL,
                size: 600,
                new: Addr(0x5555_5555_a330),
            },
            EventKind::Free {
                domain: Domain::Libc,
                addr: Addr(u64::MAX),
            },
            EventKind::Mallopt {
                param: -8,
                value: i64::MIN,
                ret: 1,
            },
            EventKind::ObjPop {
                kind: FreeListKind::Float,
                value: f64::MAX.to_bits() as i64,
                addr: a,
            },
            EventKind::ClearDone {
                kind: FreeListKind::Int,
                kept: 12,
                freed: 133,
                live: 434,
                nfree: 58,
                head: a,
            },
            EventKind::Mark { index: u32::MAX },
        ];
        let lines = [40, 41, 42, 100, 0, 1, 7, 8];
        let ev = kinds
            .iter()
            .zip(lines)
            .map(|(&kind, line)| Event { kind, line })
            .collect();
        (h, ev)
    }

    fn encode(h: &TraceHeader, ev: &[Event]) -> Vec<u8> {
        let mut w = BinaryWriter::new(Vec::new(), h).unwrap();
        for e in ev {
            w.write_event(e).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_every_field_and_the_header() {
        let (h, ev) = sample();
        let bytes = encode(&h, &ev);
        let mut r = BinaryReader::from_bytes("t.bin", bytes).unwrap();
        let mut back = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            back.push(e);
        }
        assert_eq!(back, ev);
        assert_eq!(r.header(), &h);
        assert!(r.next_event().unwrap().is_none());
    }

    /// A stream that gives one byte a read, so every record straddles a refill.
    struct Trickle(Vec<u8>, usize);

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.1 == self.0.len() || out.is_empty() {
                return Ok(0);
            }
            out[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }

    #[test]
    fn records_straddling_refills_decode_the_same() {
        let (h, ev) = sample();
        let bytes = encode(&h, &ev);
        let mut r =
            BinaryReader::from_reader(Path::new("t"), Box::new(Trickle(bytes, 0)), false).unwrap();
        let mut back = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            back.push(e);
        }
        assert_eq!(back, ev);
    }

    #[test]
    fn every_truncation_is_reported_with_its_byte_offset() {
        let (h, ev) = sample();
        let bytes = encode(&h, &ev);
        for cut in 0..bytes.len() {
            let got = BinaryReader::from_bytes("t.bin", bytes[..cut].to_vec()).and_then(|mut r| {
                while r.next_event()?.is_some() {}
                Ok(())
            });
            match got {
                Err(TraceError::Truncated { offset, .. }) => {
                    assert!(offset <= cut as u64, "cut {cut}: offset {offset}")
                }
                Err(TraceError::Parse { .. }) if cut > 0 && cut <= MAGIC.len() => {}
                other => panic!("cut at {cut} of {}: {other:?}", bytes.len()),
            }
        }
    }

    #[test]
    fn garbage_after_the_end_and_bad_tags_are_refused() {
        let (h, ev) = sample();
        let mut bytes = encode(&h, &ev);
        bytes.push(0);
        let mut r = BinaryReader::from_bytes("t.bin", bytes).unwrap();
        let err = loop {
            match r.next_event() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("trailing bytes accepted"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, TraceError::Parse { .. }), "{err:?}");
        let mut bytes = encode(&h, &[]);
        let end = bytes.len() - 2;
        bytes.insert(end, 0xEF);
        let mut r = BinaryReader::from_bytes("t.bin", bytes).unwrap();
        assert!(matches!(r.next_event(), Err(TraceError::Parse { .. })));
    }

    #[test]
    fn bad_fields_are_refused_naming_the_record_and_why() {
        let empty = encode(&TraceHeader::default(), &[]);
        let at = empty.len() - 2; // before the end record (0xFF, count 0)
        let cases: [(Vec<u8>, &str); 5] = [
            (vec![5, 1, 1], "bad domain code"),
            (vec![12 * 8 + 2, 1, 1], "bad free-list code"),
            (
                vec![
                    0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1,
                ],
                "varint longer than 10 bytes",
            ),
            (vec![19 * 8], "unknown record tag"),
            (
                vec![18 * 8 + 7, 0x80, 0x80, 0x80, 0x80, 0x10],
                "mark index too large",
            ),
        ];
        for (record, want) in cases {
            let mut bytes = empty[..at].to_vec();
            bytes.extend(&record);
            bytes.extend(&empty[at..]);
            for batched in [false, true] {
                let mut r = BinaryReader::from_bytes("t.bin", bytes.clone()).unwrap();
                let got = if batched {
                    let mut out = [Event {
                        kind: EventKind::Mark { index: 0 },
                        line: 0,
                    }; 4];
                    r.next_events(&mut out).map(|n| n as u64)
                } else {
                    r.next_event().map(|e| u64::from(e.is_some()))
                };
                match got {
                    Err(TraceError::Parse {
                        line, text, why, ..
                    }) => {
                        assert_eq!((line, why.as_str()), (1, want), "{record:x?}");
                        assert_eq!(text, format!("record at byte {at}"));
                    }
                    other => panic!("{record:x?} (batched {batched}): {other:?}"),
                }
            }
        }
    }
}
