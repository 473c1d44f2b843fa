//! Reader of the CPython 3 `PyMem_SetAllocator` recordings (`# pymalloc allocation trace`,
//! shared/traces/cpython-3.11.7-linux-x86_64/): one call per line, written when it returns.
//!
//! ```text
//!  m D size addr            malloc            D: O obj, M mem (pymalloc, one state),
//!  c D nelem elsize addr    calloc               R raw at top level, r raw nested in O/M
//!  r D oldaddr size newaddr realloc
//!  f D addr                 free
//!  A size addr / F addr size        arena mapped / unmapped (nested in an O/M call)
//!  V size addr / W addr size        frame data-stack chunk (not an arena)
//!  sizes decimal, addresses lowercase hex without 0x, 0 = NULL; `#` lines are comments
//! ```
//! The same grammar is what `pyalloc generate` writes as text (first line
//! `# pyalloc synthetic workload …`), so this reader reads those files too.
//! Invariant: events + other lines + header lines == lines read.
//!
//! Speed: a background thread decompresses (gzip told by its magic) into whole-line
//! chunks of 256 KiB, at most [`BUFFERS`] of them, recycled through a channel (their
//! memory is written over, not zeroed again); this thread parses bytes in place — no
//! `String`, no `split`, no allocation per line. Invariant: every chunk handed to the
//! parser ends with `\n`, so a line never straddles two chunks.

use super::format::Grammar;
use super::grammar::{letters, parse_fields, Fields, What};
use super::io::{excerpt, MAX_LINE};
use super::{fields, Domain, Event, EventKind, EventReader, KeptText, TraceError, TraceHeader};
use super::{Format, Source};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

const CHUNK: usize = 1 << 18;

/// Bytes asked of the source at least in one read.
const READ: usize = 1 << 16;

/// Chunk buffers at most (one filled, two queued, one parsed): the memory a trace's
/// reading holds, whatever the speed of its consumer.
const BUFFERS: usize = 4;

/// What the decompressing thread sends: a chunk of whole lines, the read error that
/// ended the stream (with the offset of text before it), or a line longer than
/// [`MAX_LINE`] (the next line to parse).
enum Chunk {
    Lines(Vec<u8>),
    Fault(io::Error, u64),
    TooLong,
    /// The stream ended inside a line: the next chunk is the last, a newline added to it.
    Unterminated,
}

/// The streaming parser of one `pymalloc3` trace.
pub struct Pymalloc3Reader {
    path: PathBuf,                  // the file
    gzip: bool,                     // compressed (errors are reported as gzip faults)
    header: TraceHeader,            // the leading `#` lines
    rx: Receiver<Chunk>,            // chunks from the decompressing thread
    recycle: SyncSender<Vec<u8>>,   // emptied chunks sent back for reuse
    worker: Option<JoinHandle<()>>, // the decompressing thread
    buf: Vec<u8>,                   // the chunk being parsed
    pos: usize,                     // parse position in `buf`
    line: u64,                      // lines read so far
    offset: u64,                    // bytes of text before `buf`
    events: u64,                    // events returned so far
    other: u64,                     // `#` and blank lines after the header
    done: bool,                     // end of stream reached
    text: KeptText,                 // the `#` and blank lines (a lossless copy asked)
    promised: Option<u64>,          // the header's `# records: N`
    end_checked: bool,              // the end was reached and held to `promised`
    unterminated: bool,             // the last line had no newline (a cut mid-line)
}

fn fill_thread(mut inner: Box<dyn Read + Send>, tx: SyncSender<Chunk>, back: Receiver<Vec<u8>>) {
    let mut carry: Vec<u8> = Vec::new(); // the start of a line (no newline in it)
    let mut offset = 0u64;
    let mut made = 0; // chunk buffers made so far (at most BUFFERS)
    loop {
        let mut buf = match back.try_recv() {
            Ok(b) => b,
            Err(_) if made < BUFFERS => {
                made += 1;
                Vec::with_capacity(CHUNK + READ)
            }
            // every buffer is in flight: wait for the parser to give one back
            Err(_) => match back.recv() {
                Ok(b) => b,
                Err(_) => return, // the reader is gone
            },
        };
        // a recycled buffer keeps its length: the bytes it held are written over, not
        // zeroed first
        let mut len = carry.len();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf[..len].copy_from_slice(&carry);
        carry.clear();
        let mut eof = false;
        let mut has_nl = false; // each byte is looked at once: linear in the line length
        loop {
            if len >= CHUNK && has_nl {
                break;
            }
            if !has_nl && len > MAX_LINE + 2 {
                let _ = tx.send(Chunk::TooLong);
                return;
            }
            let want = CHUNK.max(len + READ);
            if buf.len() < want {
                buf.resize(want, 0);
            }
            match inner.read(&mut buf[len..want]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    has_nl = has_nl || buf[len..len + n].contains(&b'\n');
                    len += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Chunk::Fault(e, offset + len as u64));
                    return;
                }
            }
        }
        buf.truncate(len);
        if eof {
            let unterminated = !buf.is_empty() && buf.last() != Some(&b'\n');
            if unterminated {
                buf.push(b'\n');
            }
            if unterminated {
                let _ = tx.send(Chunk::Unterminated); // said first: the last chunk follows
            }
            if !buf.is_empty() {
                let _ = tx.send(Chunk::Lines(buf));
            }
            return;
        }
        let cut = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        carry.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        offset += buf.len() as u64;
        if tx.send(Chunk::Lines(buf)).is_err() {
            return;
        }
    }
}

/// Reads the number (hex when `HEX`) at `*pos`, at least one digit; `None` when
/// malformed.
#[inline(always)]
fn number<const HEX: bool>(b: &[u8], pos: &mut usize) -> Option<u64> {
    match fields::digits::<HEX>(b.get(*pos..)?)? {
        (_, 0) => None,
        (v, n) => {
            *pos += n;
            Some(v)
        }
    }
}

#[inline(always)]
fn sep(b: &[u8], pos: &mut usize) -> Option<()> {
    (b.get(*pos) == Some(&b' ')).then(|| *pos += 1)
}

#[inline(always)]
fn end(b: &[u8], pos: &mut usize) -> Option<()> {
    match b.get(*pos) {
        Some(b'\n') => {
            *pos += 1;
            Some(())
        }
        Some(b'\r') if b.get(*pos + 1) == Some(&b'\n') => {
            *pos += 2;
            Some(())
        }
        _ => None,
    }
}

/// A line's fields after its letter, each behind one space, parsed in place.
struct InPlace<'a> {
    b: &'a [u8], // the chunk
    pos: usize,  // the next byte to read
}

impl Fields for InPlace<'_> {
    type Refusal = ();

    #[inline(always)]
    fn domain(&mut self) -> Result<Domain, ()> {
        sep(self.b, &mut self.pos).ok_or(())?;
        let d = match self.b.get(self.pos) {
            Some(b'O') => Domain::Obj,
            Some(b'M') => Domain::Mem,
            Some(b'R') => Domain::Raw,
            Some(b'r') => Domain::RawNested,
            _ => return Err(()),
        };
        self.pos += 1;
        Ok(d)
    }

    #[inline(always)]
    fn dec(&mut self, _: What) -> Result<u64, ()> {
        sep(self.b, &mut self.pos).ok_or(())?;
        number::<false>(self.b, &mut self.pos).ok_or(())
    }

    #[inline(always)]
    fn signed(&mut self, _: What) -> Result<i64, ()> {
        sep(self.b, &mut self.pos).ok_or(())?;
        let negative = self.b.get(self.pos) == Some(&b'-');
        self.pos += usize::from(negative);
        let v = number::<false>(self.b, &mut self.pos).ok_or(())?;
        if negative {
            0i64.checked_sub_unsigned(v).ok_or(())
        } else {
            i64::try_from(v).map_err(|_| ())
        }
    }

    #[inline(always)]
    fn addr(&mut self, _: What) -> Result<crate::Addr, ()> {
        sep(self.b, &mut self.pos).ok_or(())?;
        number::<true>(self.b, &mut self.pos)
            .map(crate::Addr)
            .ok_or(())
    }

    #[inline(always)]
    fn value(&mut self, _: crate::trace::FreeListKind, what: What) -> Result<i64, ()> {
        self.signed(what) // no P3 line carries a free-list value
    }

    #[inline(always)]
    fn unknown(&mut self) {}
}

/// Parses one event line starting at `*pos` (which must not be a `#` line): its letter,
/// then the fields the event table gives it ([`grammar`](super::grammar)).
#[inline(always)]
fn parse_line(b: &[u8], pos: &mut usize) -> Option<EventKind> {
    let code = letters(Grammar::P3)[usize::from(*b.get(*pos)?)]; // NOT_A_LETTER: refused
    let mut f = InPlace { b, pos: *pos + 1 };
    let kind = parse_fields(&mut f, code).ok()?;
    *pos = f.pos;
    end(b, pos)?;
    Some(kind)
}

/// True for the first line of a file in this grammar: a CPython 3 recording or a
/// synthetic workload of `pyalloc generate`.
fn is_first_line(text: &str) -> bool {
    text.starts_with("# pymalloc allocation trace")
        || text
            .strip_prefix("# ")
            .is_some_and(|t| t.starts_with(super::SYNTHETIC))
}

impl Pymalloc3Reader {
    /// Opens `path` (plain or gzip, told by the magic bytes; `-` is standard input) and
    /// reads its `#` header.
    ///
    /// # Errors
    /// `TraceError::Io` when the file cannot be opened, `UnknownFormat` when its first
    /// line is not a pymalloc trace header, gzip faults with their offset.
    pub fn open(path: &Path) -> Result<Pymalloc3Reader, TraceError> {
        Self::from_source(Source::open(path)?)
    }

    /// Reads a trace from an opened source.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_source(s: Source) -> Result<Pymalloc3Reader, TraceError> {
        let (path, gzip) = (s.path().to_path_buf(), s.gzip());
        match super::sniff(s.head(), s.head_is_all()) {
            Ok(Format::Pymalloc3 | Format::Synthetic) | Err(_) => {}
            Ok(found) => {
                return Err(TraceError::WrongFormat {
                    path,
                    found,
                    wanted: "a CPython 3 recording (`# pymalloc allocation trace`)",
                })
            }
        }
        Self::from_reader(&path, s.into_read(), gzip)
    }

    /// Reads a trace from any byte stream (`name` is used in messages).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_reader(
        name: &Path,
        inner: Box<dyn Read + Send>,
        gzip: bool,
    ) -> Result<Pymalloc3Reader, TraceError> {
        let (tx, rx) = sync_channel::<Chunk>(4);
        let (recycle, back) = sync_channel::<Vec<u8>>(8);
        let worker = std::thread::Builder::new()
            .name("pyalloc-inflate".into())
            .spawn(move || fill_thread(inner, tx, back))
            .map_err(|source| TraceError::Io {
                path: name.to_path_buf(),
                source,
            })?;
        let mut r = Pymalloc3Reader {
            path: name.to_path_buf(),
            gzip,
            header: TraceHeader::default(),
            rx,
            recycle,
            worker: Some(worker),
            buf: Vec::new(),
            pos: 0,
            line: 0,
            offset: 0,
            events: 0,
            other: 0,
            done: false,
            text: KeptText::default(),
            promised: None,
            end_checked: false,
            unterminated: false,
        };
        r.read_header()?;
        r.promised = r
            .header
            .get("records")
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok());
        Ok(r)
    }

    /// Reads a trace held in memory (tests).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_text(name: &str, text: &str) -> Result<Pymalloc3Reader, TraceError> {
        let bytes = text.as_bytes().to_vec();
        Self::from_reader(Path::new(name), Box::new(io::Cursor::new(bytes)), false)
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events returned so far.
    pub fn events_read(&self) -> u64 {
        self.events
    }

    /// Bytes of text consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset + self.pos as u64
    }

    fn refill(&mut self) -> Result<bool, TraceError> {
        if self.done {
            return Ok(false);
        }
        let mut got = self.rx.recv();
        if let Ok(Chunk::Unterminated) = got {
            self.unterminated = true;
            got = self.rx.recv();
        }
        match got {
            Ok(Chunk::Lines(chunk)) => {
                self.offset += self.buf.len() as u64;
                let old = std::mem::replace(&mut self.buf, chunk);
                if old.capacity() > 0 {
                    let _ = self.recycle.try_send(old);
                }
                self.pos = 0;
                Ok(true)
            }
            Ok(Chunk::TooLong) => {
                self.done = true;
                Err(TraceError::LineTooLong {
                    path: self.path.clone(),
                    line: self.line + 1,
                })
            }
            Ok(Chunk::Fault(source, offset)) => {
                self.done = true;
                Err(TraceError::read(&self.path, self.gzip, source, offset))
            }
            Ok(Chunk::Unterminated) => {
                self.done = true;
                Ok(false)
            }
            Err(_) => {
                self.done = true;
                Ok(false)
            }
        }
    }

    fn read_header(&mut self) -> Result<(), TraceError> {
        let mut first = true;
        loop {
            if self.pos >= self.buf.len() && !self.refill()? {
                break;
            }
            if self.buf[self.pos] != b'#' {
                break;
            }
            let nl = self.line_end(self.pos);
            let text = String::from_utf8_lossy(&self.buf[self.pos..nl]).into_owned();
            let text = text.trim_end_matches('\r').to_string();
            if first && !is_first_line(&text) {
                return Err(TraceError::UnknownFormat {
                    path: self.path.clone(),
                    first: excerpt(&text),
                });
            }
            first = false;
            self.header
                .lines
                .push(fields::comment(&text).unwrap_or(&text).to_string());
            self.line += 1;
            self.pos = nl + 1;
        }
        if first {
            let end = if self.pos < self.buf.len() {
                self.line_end(self.pos)
            } else {
                self.pos
            };
            let text = String::from_utf8_lossy(&self.buf[self.pos.min(end)..end]);
            return Err(TraceError::UnknownFormat {
                path: self.path.clone(),
                first: excerpt(text.trim_end_matches('\r')),
            });
        }
        Ok(())
    }

    fn line_end(&self, from: usize) -> usize {
        self.buf[from..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(self.buf.len(), |i| from + i)
    }

    /// The end of the stream: a cut file when the header promised more records.
    #[cold]
    fn at_end(&mut self) -> Result<Option<Event>, TraceError> {
        if !self.end_checked {
            self.end_checked = true;
            if let Some(n) = self.promised.filter(|&n| self.events < n) {
                return Err(TraceError::Cut {
                    path: self.path.clone(),
                    expected: Some(n),
                    found: self.events,
                    why: format!(
                        "the header says `# records: {n}` and the file ends after {} lines",
                        self.line
                    ),
                });
            }
            if self.unterminated && self.promised != Some(self.events) {
                return Err(self.cut_mid_line());
            }
        }
        Ok(None)
    }

    /// A recorder writes whole lines: a last line without its newline was cut.
    #[cold]
    fn cut_mid_line(&self) -> TraceError {
        TraceError::cut_mid_line(&self.path, self.offset(), self.line)
    }

    #[cold]
    fn bad_line(&self, start: usize) -> TraceError {
        let nl = self.line_end(start);
        if self.unterminated && nl + 1 == self.buf.len() {
            return self.cut_mid_line();
        }
        let text = String::from_utf8_lossy(&self.buf[start..nl])
            .trim_end_matches('\r')
            .to_string();
        TraceError::Parse {
            path: self.path.clone(),
            line: self.line,
            text: excerpt(&text),
            why: "not a pymalloc trace line (m/c/r/f D …, A/F/V/W …)".into(),
        }
    }
}

impl EventReader for Pymalloc3Reader {
    #[inline]
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        loop {
            if self.pos >= self.buf.len() && !self.refill()? {
                return self.at_end();
            }
            let start = self.pos;
            self.line += 1;
            match self.buf[start] {
                b'#' | b'\n' => {
                    self.other += 1;
                    let end = self.line_end(start);
                    let buf = &self.buf;
                    self.text.push(self.line, || {
                        String::from_utf8_lossy(&buf[start..end]).into_owned()
                    });
                    self.pos = end + 1;
                    continue;
                }
                _ => {}
            }
            let mut pos = start;
            match parse_line(&self.buf, &mut pos) {
                Some(kind) => {
                    self.pos = pos;
                    self.events += 1;
                    return Ok(Some(Event {
                        kind,
                        line: self.line,
                    }));
                }
                None => {
                    let e = self.bad_line(start);
                    self.pos = self.line_end(start) + 1;
                    return Err(e);
                }
            }
        }
    }

    fn header(&self) -> &TraceHeader {
        &self.header
    }

    fn other_lines(&self) -> u64 {
        self.other
    }

    fn kept_text(&mut self) -> Option<&mut KeptText> {
        Some(&mut self.text)
    }
}

impl Drop for Pymalloc3Reader {
    fn drop(&mut self) {
        // Unblock the worker (it may be waiting to send, or for a buffer back), then wait
        // for it.
        self.done = true;
        let (_tx, rx) = sync_channel::<Chunk>(0);
        drop(std::mem::replace(&mut self.rx, rx));
        let (recycle, _) = sync_channel::<Vec<u8>>(0);
        drop(std::mem::replace(&mut self.recycle, recycle));
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::fields::testing;

    const HEAD: &str =
        "# pymalloc allocation trace recorded from REAL CPython\n# interpreter: CPython 3.11.7\n";

    #[test]
    fn parses_every_line_kind() {
        let text = format!(
            "{HEAD}m O 56 7fff77500030\nc M 1 360 55555555c3c0\nr r 0 768 55555555c530\n\
             f R 0\nA 1048576 7fff77500000\nF 7fff769cf000 1048576\nV 16384 7ffff7fba000\n\
             W 7ffff7fba000 16384\n"
        );
        let mut r = Pymalloc3Reader::from_text("t", &text).unwrap();
        assert_eq!(r.header().get("interpreter"), Some("CPython 3.11.7"));
        let mut kinds = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            kinds.push((e.line, e.kind));
        }
        assert_eq!(kinds.len(), 8);
        assert_eq!(kinds[0].0, 3);
        assert_eq!(
            kinds[0].1,
            EventKind::Malloc {
                domain: Domain::Obj,
                size: 56,
                addr: crate::Addr(0x7fff77500030)
            }
        );
        assert_eq!(
            kinds[2].1,
            EventKind::Realloc {
                domain: Domain::RawNested,
                old: crate::Addr(0),
                size: 768,
                new: crate::Addr(0x55555555c530)
            }
        );
        assert!(matches!(
            kinds[5].1,
            EventKind::ArenaFree { size: 1048576, .. }
        ));
    }

    #[test]
    fn a_bad_line_is_an_error_with_its_number_and_text() {
        let text = format!("{HEAD}m O 56 7fff77500030\nm O fifty 7fff77500030\nf O 10\n");
        let mut r = Pymalloc3Reader::from_text("t", &text).unwrap();
        assert!(r.next_event().unwrap().is_some());
        match r.next_event() {
            Err(TraceError::Parse { line, text, .. }) => {
                assert_eq!(line, 4);
                assert_eq!(text, "m O fifty 7fff77500030");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
        // Reading goes on after the bad line.
        assert!(r.next_event().unwrap().is_some());
    }

    #[test]
    fn trailing_garbage_and_missing_fields_are_refused() {
        for bad in [
            "m O 56 7fff77500030 x",
            "m O 56",
            "f Q 10",
            "z",
            "m O 56 12345678901234567",
        ] {
            let mut r = Pymalloc3Reader::from_text("t", &format!("{HEAD}{bad}\n")).unwrap();
            assert!(r.next_event().is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn crlf_comments_are_read_and_a_last_line_without_newline_is_a_cut() {
        let text = format!("{HEAD}m O 56 7fff77500030\r\n# a note\n\nf O 7fff77500030");
        let mut r = Pymalloc3Reader::from_text("t", &text).unwrap();
        assert!(r.next_event().unwrap().is_some());
        let last = r.next_event().unwrap().unwrap();
        assert_eq!(last.line, 6);
        assert!(matches!(last.kind, EventKind::Free { .. }));
        // a recorder writes whole lines: its address may have been cut short
        match r.next_event() {
            Err(TraceError::Truncated { why, .. }) => assert!(why.contains("line 6"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(r.next_event().unwrap().is_none(), "the end stays the end");
        assert_eq!(r.other_lines(), 2, "the comment and the blank line");
    }

    #[test]
    fn malformed_lines_name_their_number_and_text() {
        for (body, line) in [
            ("m O 24 7ff\nm Q 24 7ff\n", 2),
            ("m O 24\n", 1),
            ("f O zz\n", 1),
            ("A 1048576 7ff 3\n", 1),
            ("m O -1 7ff\n", 1),
            ("m O 1 2 3 4 5 6 7 8 9\n", 1),
        ] {
            let t = format!("{HEAD}{body}");
            let mut r = Pymalloc3Reader::from_text("t", &t).unwrap();
            testing::assert_refused_at(testing::read_all(&mut r), &t, line + 2);
        }
    }

    #[test]
    fn a_synthetic_workload_is_read_in_the_same_grammar() {
        let text = format!(
            "# {} (pyalloc generate): not recorded from CPython\n# generator: t\n\
             m O 32 7ffff7a00010\nr M 7ffff7a00010 600 7ffff7a10000\n",
            crate::trace::SYNTHETIC
        );
        let mut r = Pymalloc3Reader::from_text("t", &text).unwrap();
        assert_eq!(r.header().get("generator"), Some("t"));
        let ev = testing::read_all(&mut r).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].line, 4);
        assert_eq!(
            ev[1].kind,
            EventKind::Realloc {
                domain: Domain::Mem,
                old: crate::Addr(0x7fff_f7a0_0010),
                size: 600,
                new: crate::Addr(0x7fff_f7a1_0000)
            }
        );
    }

    #[test]
    fn lines_are_whole_across_chunk_boundaries() {
        let mut text = String::from(HEAD);
        let n = 3 * CHUNK / 20;
        for i in 0..n {
            text.push_str(&format!(
                "m O {} {:x}\n",
                i % 512 + 1,
                0x7fff_0000_0000u64 + i as u64
            ));
        }
        let mut r = Pymalloc3Reader::from_text("t", &text).unwrap();
        let mut k = 0u64;
        while let Some(e) = r.next_event().unwrap() {
            match e.kind {
                EventKind::Malloc { size, addr, .. } => {
                    assert_eq!(size, k % 512 + 1);
                    assert_eq!(addr.0, 0x7fff_0000_0000 + k);
                }
                other => panic!("{other:?}"),
            }
            k += 1;
        }
        assert_eq!(k, n as u64);
        assert_eq!(r.events_read(), k);
    }

    #[test]
    fn a_file_of_another_format_is_refused() {
        assert!(matches!(
            Pymalloc3Reader::from_text("t", "# glibc malloc-family call trace\n"),
            Err(TraceError::UnknownFormat { .. })
        ));
    }
}
