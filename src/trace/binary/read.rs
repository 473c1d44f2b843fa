//! The binary format's decoder: a byte stream in, events out, refusing a cut or corrupt
//! file with the byte offset (see the format in [`binary`](super)).

use super::super::format::Format;
use super::super::{Event, EventKind, EventReader, KeptText, Source, TraceError, TraceHeader};
use super::{decode, Cur, Fault, MAGIC, VERSION};
use crate::trace::io::MAX_LINE;

/// The most header lines a binary trace may have (the recordings have under 100).
const MAX_HEADER_LINES: u64 = 1 << 16;
/// The most bytes of header text a binary trace may have.
const MAX_HEADER_BYTES: usize = 16 << 20;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

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
    last_addr: u64,         // the address register
    line: u64,              // the line of the last event
    events: u64,            // events returned
    done: bool,             // the end record has been read
    text: KeptText,         // text records (a lossless copy asked)
    origin: Option<Format>, // the recorded format its header names (None: any event)
    admitted: [u8; 256],    // by event code: 0 not seen yet, 1 the origin has it, 2 it has not
}

impl BinaryReader {
    /// Opens a binary trace, plain or gzip-compressed (`-` is standard input).
    ///
    /// # Errors
    /// The file cannot be opened, is not a binary trace, or its header is cut short.
    pub fn open(path: &Path) -> Result<BinaryReader, TraceError> {
        Self::from_source(Source::open(path)?)
    }

    /// Reads a binary trace from an opened source.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_source(s: Source) -> Result<BinaryReader, TraceError> {
        let (path, gzip) = (s.path().to_path_buf(), s.gzip());
        Self::from_reader(&path, s.into_read(), gzip)
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
            text: KeptText::default(),
            origin: None,
            admitted: [0; 256],
        };
        r.read_header().map_err(|f| r.fault(f, 0, "the header"))?;
        r.origin = Format::of_header(&r.header).filter(|f| !f.domains().is_empty());
        Ok(r)
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn fault(&self, f: Fault, start: u64, what: &str) -> TraceError {
        match f {
            Fault::Text(_) => TraceError::Parse {
                path: self.path.clone(),
                line: self.events + 1,
                text: format!("record at byte {start}"),
                why: "text record where none may be".into(),
            },
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
            Fault::Io(source) => TraceError::read(&self.path, self.gzip, source, self.offset()),
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
        // The count is a claim: it bounds the loop, never an allocation.
        let n = self.varint()?;
        if n > MAX_HEADER_LINES {
            return Err(Fault::Bad("header of more than 65536 lines"));
        }
        let mut bytes = 0usize;
        for _ in 0..n {
            let len = self.varint()? as usize;
            if len > self.buf.len() {
                return Err(Fault::Bad("header line longer than 256 KiB"));
            }
            bytes += len;
            if bytes > MAX_HEADER_BYTES {
                return Err(Fault::Bad("header longer than 16 MiB"));
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
                Err(Fault::Text(line)) => {
                    let at = c.pos;
                    self.text_record(line, at)?;
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

    /// Reads a text record whose length starts `at` bytes past `pos` (its tag, and a line
    /// tag before it, already read), growing the buffer when the text is longer than it.
    #[cold]
    fn text_record(&mut self, line: u64, at: usize) -> Result<(), Fault> {
        loop {
            let mut c = Cur {
                buf: &self.buf[self.pos..self.len],
                pos: at,
                last: 0,
            };
            let (got, want) = match c.v() {
                Ok(n) if n > MAX_LINE as u64 => {
                    return Err(Fault::Bad("text line longer than 1 MiB"))
                }
                Ok(n) => {
                    let (from, to) = (c.pos, c.pos + n as usize);
                    if to <= c.buf.len() {
                        (Some((from, to)), to)
                    } else {
                        if self.buf.len() < to + 16 {
                            self.buf.resize(to + 16, 0);
                        }
                        (None, to)
                    }
                }
                Err(Fault::Eof) => (None, at + 10),
                Err(f) => return Err(f),
            };
            match got {
                Some((from, to)) => {
                    let bytes = &self.buf[self.pos + from..self.pos + to];
                    let text = std::str::from_utf8(bytes)
                        .map_err(|_| Fault::Bad("text line is not UTF-8"))?;
                    self.text.push(line, || text.to_string());
                    self.pos += to;
                    self.line = line;
                    return Ok(());
                }
                None if self.eof => {
                    self.pos = self.len;
                    return Err(Fault::Eof);
                }
                None => {
                    // fill moves the unread bytes to the front: `at` and `want` still count
                    // from `pos`; it stops at the end of the input, reported on the next turn
                    self.fill(want)?;
                }
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

impl BinaryReader {
    /// Refuses an event the recorded format its header names has no line for (a free in
    /// the C library's domain inside a CPython 3 recording, say): a text trace of that
    /// format could not hold it, so the bytes are corrupt.
    #[inline]
    fn admit(&mut self, e: &Event, start: u64) -> Result<(), TraceError> {
        let code = e.kind.code() as usize;
        if self.admitted[code] == 0 {
            let ok = self.origin.map_or(true, |f| f.has_line_for(&e.kind));
            self.admitted[code] = if ok { 1 } else { 2 };
        }
        if self.admitted[code] == 1 {
            return Ok(());
        }
        let name = EventKind::code_name(code as u8).unwrap_or_else(|| format!("code {code}"));
        let origin = self.origin.map_or("this", |f| f.name());
        Err(TraceError::Parse {
            path: self.path.clone(),
            line: self.events,
            text: format!("record at byte {start}"),
            why: format!(
                "a `{name}` event, which a {origin} recording cannot hold: the file is corrupt"
            ),
        })
    }
}

impl EventReader for BinaryReader {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        if self.done {
            return Ok(None);
        }
        let start = self.offset();
        let e = self.record().map_err(|f| self.record_fault(f, start))?;
        if let Some(e) = &e {
            self.admit(e, start)?;
        }
        Ok(e)
    }

    fn next_events(&mut self, out: &mut [Event]) -> Result<usize, TraceError> {
        let mut n = 0;
        while n < out.len() && !self.done {
            let start = self.offset();
            match self.record() {
                Ok(Some(e)) => {
                    self.admit(&e, start)?;
                    out[n] = e;
                }
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

    fn kept_text(&mut self) -> Option<&mut KeptText> {
        Some(&mut self.text)
    }
}
