//! Reader of the CPython 3.13 mimalloc recordings (`# mimalloc allocation trace …`,
//! shared/traces/cpython-3.13.0-mimalloc-linux-x86_64/): the CPython 3 call lines plus the
//! OS calls the process made through the PLT, in call order, post-order (a call nested
//! in an allocator call comes just before that call's line).
//!
//! ```text
//!  m D size addr / c D nelem elsize addr / r D old size new / f D addr      D: O M R r
//!  V size addr / W addr size                                    CPython's own data stack
//!  S size addr prot flags hint depth caller                     mmap
//!  U addr size ret depth caller                                 munmap
//!  N addr size advice ret depth caller                          madvise
//!  P addr size prot ret depth caller                            mprotect
//!  Q oldaddr oldsize newsize flags newaddr depth caller         mremap
//!  G buflen flags ret pinned depth caller                       getrandom
//!  a trailing ` @tid` marks a call from another thread (refused: one thread is modelled)
//!  sizes decimal, addresses lowercase hex without 0x, flags 0x-hex; `#` lines are comments
//! ```
//! [`MimallocReader::next_line`] gives both kinds ([`MiLine`]); as an [`EventReader`] it
//! gives the allocator events and counts the OS lines as other lines, so `replay` and
//! `compare` read these recordings like any other (and, after `keep_text`, hands them over
//! as text, so `convert` copies a recording losslessly). A replay that needs the OS lines
//! too (the pinned mimalloc check takes its arena base from them) asks for
//! [`MimallocReader::share_os_lines`]: they are queued there, each before the event that
//! follows it, while the events go through the driver's loop as any trace's do.
//! The call and data-stack lines are the event table's grammar `Mi`
//! (`trace::grammar`), read here with this format's own words for a refusal;
//! the OS lines are this reader's own.
//! Invariant: events + OS lines + comment lines + header lines == lines read.

use super::format::Grammar;
use super::grammar::{letters, parse_fields, Fields, What, NOT_A_LETTER};
use super::{
    fields, Domain, Event, EventReader, FreeListKind, KeptText, LineReader, TraceError, TraceHeader,
};
use crate::addr::Addr;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The first header line's start.
pub const FIRST_LINE: &str = "# mimalloc allocation trace";

/// Who made an OS call (from the `caller` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// mimalloc's OS layer (`unix_mmap*`, `unix_madvise`, `_mi_*`, `mi_*`).
    Mimalloc,
    /// CPython's arena allocator (`_PyMem_ArenaAlloc`, `rec:harena_free`): the data stack.
    CpythonArena,
    /// Anything else.
    Other,
}

impl Caller {
    fn of(name: &str) -> Caller {
        if name.starts_with("unix_") || name.starts_with("_mi_") || name.starts_with("mi_") {
            Caller::Mimalloc
        } else if name.starts_with("_PyMem_Arena") || name.starts_with("rec:harena") {
            Caller::CpythonArena
        } else {
            Caller::Other
        }
    }
}

/// One OS call line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsCall {
    /// `S`: mmap(hint, size, …) returned `addr`.
    Mmap {
        /// Bytes.
        size: u64,
        /// The mapping (`-1` on failure is kept as `u64::MAX`).
        addr: Addr,
        /// The hint given (0 = none).
        hint: Addr,
    },
    /// `U`: munmap(addr, size).
    Munmap {
        /// Start.
        addr: Addr,
        /// Bytes.
        size: u64,
    },
    /// `N`: madvise (purges; they never change placement).
    Madvise {
        /// Start.
        addr: Addr,
        /// Bytes.
        size: u64,
    },
    /// `P`: mprotect.
    Mprotect {
        /// Start.
        addr: Addr,
        /// Bytes.
        size: u64,
    },
    /// `Q`: mremap.
    Mremap {
        /// Old start.
        old: Addr,
        /// New start.
        new: Addr,
    },
    /// `G`: getrandom (answered with zero bytes by the recorder when pinned).
    Getrandom {
        /// Bytes asked for.
        len: u64,
    },
}

/// An OS call and its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsLine {
    /// The call.
    pub call: OsCall,
    /// Allocator-hook nesting depth when made (1 = inside the next O/M/R/V line's call).
    pub depth: u32,
    /// Who made it.
    pub caller: Caller,
    /// Its 1-based line.
    pub line: u64,
}

/// One line of a mimalloc recording.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MiLine {
    /// An allocator call (or CPython's data-stack chunk).
    Event(Event),
    /// An OS call.
    Os(OsLine),
}

/// The streaming reader of one mimalloc recording.
pub struct MimallocReader {
    lines: LineReader,
    header: TraceHeader,
    pending: Option<String>, // the first line after the header, read while reading it
    os_lines: u64,           // OS lines read (other lines, to the EventReader view)
    comments: u64,           // `#` and blank lines after the header
    text: KeptText,          // comments and, as events, OS lines
    shared: Option<OsLines>, // where OS lines go when read as events (share_os_lines)
}

/// The OS lines of a recording read as an [`EventReader`], queued in line order for the
/// replay that consumes its events (possibly on another thread than the reader).
///
/// The reader queues an OS line before it returns the event after it, so when the replay
/// holds the event at line `L`, every OS line before `L` is queued:
/// `take_before(L)` gives exactly the OS lines between the previous event and this one.
#[derive(Debug, Clone, Default)]
pub struct OsLines(Arc<OsQueue>);

#[derive(Debug, Default)]
struct OsQueue {
    front: AtomicU64, // line of the oldest queued OS line; 0 = none (written under `lines`)
    lines: Mutex<VecDeque<OsLine>>, // queued, oldest first
}

impl OsLines {
    fn push(&self, l: OsLine) {
        let mut q = self.0.lines.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() {
            self.0.front.store(l.line, Ordering::Release);
        }
        q.push_back(l);
    }

    /// Hands the queued OS lines read before line `line` to `f`, oldest first; returns how
    /// many. One atomic load when there are none (the common case).
    #[inline]
    pub fn take_before(&self, line: u64, f: impl FnMut(OsLine)) -> u64 {
        let front = self.0.front.load(Ordering::Acquire);
        if front == 0 || front >= line {
            return 0;
        }
        self.take_slow(line, f)
    }

    #[cold]
    fn take_slow(&self, line: u64, mut f: impl FnMut(OsLine)) -> u64 {
        let mut q = self.0.lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        while q.front().is_some_and(|l| l.line < line) {
            if let Some(l) = q.pop_front() {
                f(l);
                n += 1;
            }
        }
        self.0
            .front
            .store(q.front().map_or(0, |l| l.line), Ordering::Release);
        n
    }

    /// Hands every queued OS line to `f` (those after the last event), oldest first;
    /// returns how many.
    pub fn take_all(&self, f: impl FnMut(OsLine)) -> u64 {
        self.take_slow(u64::MAX, f)
    }
}

fn tok<'a>(it: &mut impl Iterator<Item = &'a str>, what: &str) -> Result<&'a str, String> {
    it.next().ok_or_else(|| format!("missing field {what}"))
}

fn dec(s: &str, what: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("{what} {s:?} is not a decimal number"))
}

fn signed(s: &str, what: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .map_err(|_| format!("{what} {s:?} is not a number"))
}

fn hex(s: &str, what: &str) -> Result<Addr, String> {
    if s == "-1" {
        return Ok(Addr(u64::MAX));
    }
    let digits = s.strip_prefix("0x").unwrap_or(s);
    // at most 16 characters, a leading `+` among them (as `u64::from_str_radix` reads)
    let digits = match digits.len() {
        0..=16 => digits.strip_prefix('+').unwrap_or(digits),
        _ => "",
    };
    fields::hex(digits)
        .map(Addr)
        .ok_or_else(|| format!("{what} {s:?} is not a hex address"))
}

fn domain(s: &str) -> Result<Domain, String> {
    Ok(match s {
        "O" => Domain::Obj,
        "M" => Domain::Mem,
        "R" => Domain::Raw,
        "r" => Domain::RawNested,
        _ => return Err(format!("unknown domain {s:?} (O, M, R or r)")),
    })
}

/// A call line's fields after its letter (`kind`), split on single spaces, each refusal
/// naming the field as the recorder's header does (`oldaddr`).
struct Tokens<'a, 'i, I> {
    it: &'i mut I,
    kind: &'a str,
}

impl<'a, I: Iterator<Item = &'a str>> Tokens<'a, '_, I> {
    #[inline(always)]
    fn next(&mut self, what: What) -> Result<(&'a str, &'static str), String> {
        let name = match what.field {
            "old" => "oldaddr",
            "new" => "newaddr",
            field => field,
        };
        Ok((tok(self.it, name)?, name))
    }
}

impl<'a, I: Iterator<Item = &'a str>> Fields for Tokens<'a, '_, I> {
    type Refusal = String;

    #[inline(always)]
    fn domain(&mut self) -> Result<Domain, String> {
        domain(tok(self.it, "domain")?)
    }

    #[inline(always)]
    fn dec(&mut self, what: What) -> Result<u64, String> {
        let (s, name) = self.next(what)?;
        dec(s, name)
    }

    #[inline(always)]
    fn signed(&mut self, what: What) -> Result<i64, String> {
        let (s, name) = self.next(what)?;
        signed(s, name)
    }

    #[inline(always)]
    fn addr(&mut self, what: What) -> Result<Addr, String> {
        let (s, name) = self.next(what)?;
        hex(s, name)
    }

    #[inline(always)]
    fn value(&mut self, _: FreeListKind, what: What) -> Result<i64, String> {
        self.signed(what) // no mimalloc line carries a free-list value
    }

    #[inline(always)]
    fn unknown(&mut self) -> String {
        format!("unknown line kind {:?}", self.kind)
    }
}

/// Parses one line (without its line number).
///
/// # Errors
/// What is wrong with it, in words.
pub fn parse_line(text: &str, line: u64) -> Result<MiLine, String> {
    if let Some(at) = text.find('@').filter(|&i| text[..i].ends_with(' ')) {
        let at = at - 1;
        return Err(format!(
            "a call from thread {} (only one-thread recordings are modelled)",
            &text[at + 2..]
        ));
    }
    let mut it = text.split(' ');
    let kind = tok(&mut it, "kind")?;
    let ev = |kind| Ok(MiLine::Event(Event { kind, line }));
    let code = match kind.as_bytes() {
        &[b] => letters(Grammar::Mi)[usize::from(b)],
        _ => NOT_A_LETTER,
    };
    let out = match kind {
        _ if code != NOT_A_LETTER => ev(parse_fields(&mut Tokens { it: &mut it, kind }, code)?),
        "S" | "U" | "N" | "P" | "Q" | "G" => {
            let call = match kind {
                "S" => {
                    let size = dec(tok(&mut it, "size")?, "size")?;
                    let addr = hex(tok(&mut it, "addr")?, "addr")?;
                    dec(tok(&mut it, "prot")?, "prot")?;
                    hex(tok(&mut it, "flags")?, "flags")?;
                    let hint = hex(tok(&mut it, "hint")?, "hint")?;
                    OsCall::Mmap { size, addr, hint }
                }
                "U" => {
                    let addr = hex(tok(&mut it, "addr")?, "addr")?;
                    let size = dec(tok(&mut it, "size")?, "size")?;
                    signed(tok(&mut it, "ret")?, "ret")?;
                    OsCall::Munmap { addr, size }
                }
                "N" | "P" => {
                    let addr = hex(tok(&mut it, "addr")?, "addr")?;
                    let size = dec(tok(&mut it, "size")?, "size")?;
                    dec(tok(&mut it, "advice/prot")?, "advice/prot")?;
                    signed(tok(&mut it, "ret")?, "ret")?;
                    if kind == "N" {
                        OsCall::Madvise { addr, size }
                    } else {
                        OsCall::Mprotect { addr, size }
                    }
                }
                "Q" => {
                    let old = hex(tok(&mut it, "oldaddr")?, "oldaddr")?;
                    dec(tok(&mut it, "oldsize")?, "oldsize")?;
                    dec(tok(&mut it, "newsize")?, "newsize")?;
                    hex(tok(&mut it, "flags")?, "flags")?;
                    let new = hex(tok(&mut it, "newaddr")?, "newaddr")?;
                    OsCall::Mremap { old, new }
                }
                _ => {
                    let len = dec(tok(&mut it, "buflen")?, "buflen")?;
                    dec(tok(&mut it, "flags")?, "flags")?;
                    signed(tok(&mut it, "ret")?, "ret")?;
                    dec(tok(&mut it, "pinned")?, "pinned")?;
                    OsCall::Getrandom { len }
                }
            };
            let depth = dec(tok(&mut it, "depth")?, "depth")? as u32;
            let caller = Caller::of(tok(&mut it, "caller")?);
            Ok(MiLine::Os(OsLine {
                call,
                depth,
                caller,
                line,
            }))
        }
        other => Err(format!("unknown line kind {other:?}")),
    };
    if let Some(extra) = it.next() {
        return Err(format!("unexpected field {extra:?} at the end"));
    }
    out
}

impl MimallocReader {
    /// Opens a recording (plain or gzip), reading its header.
    ///
    /// # Errors
    /// The file cannot be read, or its first line is not a mimalloc recording's.
    pub fn open(path: &Path) -> Result<MimallocReader, TraceError> {
        MimallocReader::new(LineReader::open(path)?)
    }

    /// Reads a recording held in memory (`name` is used in messages).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn from_text(name: &str, text: &str) -> Result<MimallocReader, TraceError> {
        MimallocReader::new(LineReader::from_text(name, text))
    }

    /// Reads a recording from opened lines (its header first).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn new(lines: LineReader) -> Result<MimallocReader, TraceError> {
        let mut lines = lines.whole_lines();
        let mut header = TraceHeader::default();
        let mut pending = None;
        let path = lines.path().to_path_buf();
        while let Some(text) = lines.next_line()? {
            if header.lines.is_empty() && !text.starts_with(FIRST_LINE) {
                return Err(TraceError::UnknownFormat {
                    path,
                    first: text.to_string(),
                });
            }
            if !text.starts_with('#') {
                pending = Some(text.to_string());
                break;
            }
            header
                .lines
                .push(fields::comment(text).unwrap_or(text).to_string());
        }
        if header.lines.is_empty() {
            return Err(TraceError::UnknownFormat {
                path: lines.path().to_path_buf(),
                first: String::new(),
            });
        }
        Ok(MimallocReader {
            lines,
            header,
            pending,
            os_lines: 0,
            comments: 0,
            text: KeptText::default(),
            shared: None,
        })
    }

    /// From now on, as an [`EventReader`], queues every OS line it reads on the returned
    /// [`OsLines`] (instead of only counting it).
    pub fn share_os_lines(&mut self) -> OsLines {
        self.shared.get_or_insert_with(OsLines::default).clone()
    }

    /// The request sizes after which the recorder called `_PyObject_DebugMallocStats`
    /// (`RECORDER_STATS_SIZES=…` in the header's environment), empty when none.
    pub fn stats_sizes(&self) -> Vec<u64> {
        stats_sizes(&self.header)
    }

    /// The next line, allocator call or OS call; `None` at the end.
    ///
    /// # Errors
    /// A malformed line (with its number and text), a truncated or corrupt file.
    pub fn next_line(&mut self) -> Result<Option<MiLine>, TraceError> {
        loop {
            // the line is parsed where the reader holds it: no copy unless it is kept
            // (a lossless copy asked) or refused
            let pending = self.pending.take();
            let text: &str = match &pending {
                Some(t) => t,
                None => match self.lines.next_line()? {
                    Some(t) => t,
                    None => return Ok(None),
                },
            };
            let parsed = (!(text.is_empty() || text.starts_with('#'))).then(|| parse_line(text, 0));
            let owned = match &parsed {
                Some(Ok(MiLine::Event(_))) => None,
                _ => Some(text.to_string()),
            };
            let line = self.lines.line_number();
            let owned = || owned.unwrap_or_default();
            let Some(parsed) = parsed else {
                self.comments += 1;
                self.text.push(line, owned);
                continue;
            };
            return match parsed {
                Ok(l) => {
                    let l = with_line(l, line);
                    if matches!(l, MiLine::Os(_)) {
                        self.os_lines += 1;
                        self.text.push(line, owned);
                    }
                    Ok(Some(l))
                }
                Err(why) => Err(TraceError::Parse {
                    path: self.lines.path().to_path_buf(),
                    line,
                    text: owned(),
                    why,
                }),
            };
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.lines.path()
    }
}

/// `l` with its line number set.
fn with_line(l: MiLine, line: u64) -> MiLine {
    match l {
        MiLine::Event(mut e) => {
            e.line = line;
            MiLine::Event(e)
        }
        MiLine::Os(mut o) => {
            o.line = line;
            MiLine::Os(o)
        }
    }
}

/// True when the file at `path` opens with a mimalloc recording's first line.
pub fn is_mimalloc_trace(path: &Path) -> bool {
    LineReader::open(path)
        .ok()
        .and_then(|mut l| {
            l.next_line()
                .ok()
                .flatten()
                .map(|t| t.starts_with(FIRST_LINE))
        })
        .unwrap_or(false)
}

/// `RECORDER_STATS_SIZES` from a header.
pub fn stats_sizes(header: &TraceHeader) -> Vec<u64> {
    header
        .lines
        .iter()
        .find_map(|l| l.split("RECORDER_STATS_SIZES=").nth(1))
        .map(|rest| {
            rest.split(|c: char| !(c.is_ascii_digit() || c == ','))
                .next()
                .unwrap_or("")
                .split(',')
                .filter_map(|s| s.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl EventReader for MimallocReader {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        loop {
            match self.next_line()? {
                None => return Ok(None),
                Some(MiLine::Event(e)) => return Ok(Some(e)),
                Some(MiLine::Os(o)) => {
                    if let Some(q) = &self.shared {
                        q.push(o);
                    }
                }
            }
        }
    }

    fn header(&self) -> &TraceHeader {
        &self.header
    }

    fn other_lines(&self) -> u64 {
        self.os_lines + self.comments
    }

    fn kept_text(&mut self) -> Option<&mut KeptText> {
        Some(&mut self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::EventKind;

    const TEXT: &str = "# mimalloc allocation trace recorded from REAL CPython\n\
        # environment: env -i X=1\n\
        #              RECORDER_OUT=<x> RECORDER_STATS_SIZES=777778,888889; cwd <x>\n\
        G 32 1 32 3 0 _mi_prim_random_buf\n\
        S 1073741824 31540000000 3 0x4022 31540000000 1 unix_mmap\n\
        S 4096 7ffff7fb8000 3 0x4022 0 1 unix_mmap\n\
        m O 64 315400100c0\n\
        c M 5 8 31540020018\n\
        r M 0 777778 31540cc0000\n\
        f O 315400100c0\n\
        N 31540300000 65536 4 0 1 _mi_os_purge_ex\n\
        S 16384 7ffff7e7a000 3 0x22 0 1 _PyMem_ArenaAlloc\n\
        V 16384 7ffff7e7a000\n\
        U 7ffff7e7a000 16384 0 1 rec:harena_free\n\
        W 7ffff7e7a000 16384\n";

    #[test]
    fn every_line_kind_is_read_with_its_line_number() {
        let mut r = MimallocReader::from_text("t", TEXT).unwrap();
        assert_eq!(r.stats_sizes(), vec![777778, 888889]);
        let mut all = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            all.push(l);
        }
        assert_eq!(all.len(), 12);
        match all[1] {
            MiLine::Os(OsLine {
                call: OsCall::Mmap { size, addr, hint },
                depth: 1,
                caller: Caller::Mimalloc,
                line: 5,
            }) => {
                assert_eq!(size, 1 << 30);
                assert_eq!(addr, Addr(0x315_4000_0000));
                assert_eq!(hint, addr);
            }
            ref other => panic!("{other:?}"),
        }
        assert!(matches!(
            all[4],
            MiLine::Event(Event {
                kind: EventKind::Calloc {
                    nelem: 5,
                    elsize: 8,
                    ..
                },
                line: 8
            })
        ));
        assert!(matches!(
            all[8],
            MiLine::Os(OsLine {
                caller: Caller::CpythonArena,
                ..
            })
        ));
    }

    #[test]
    fn as_an_event_reader_os_lines_are_other_lines() {
        let mut r = MimallocReader::from_text("t", TEXT).unwrap();
        let mut n = 0;
        while r.next_event().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 6);
        assert_eq!(r.other_lines(), 6);
    }

    #[test]
    fn shared_os_lines_come_before_the_event_they_precede() {
        let mut r = MimallocReader::from_text("t", TEXT).unwrap();
        let os = r.share_os_lines();
        let mut before = Vec::new(); // (event line, OS lines taken before it)
        while let Some(e) = r.next_event().unwrap() {
            let mut lines = Vec::new();
            os.take_before(e.line, |o| lines.push(o.line));
            before.push((e.line, lines));
        }
        assert_eq!(
            before[0],
            (7, vec![4, 5, 6]),
            "G and both S lines before m O"
        );
        assert_eq!(before[1], (8, vec![]));
        assert_eq!(before[4], (13, vec![11, 12]), "N and S before V");
        assert_eq!(before[5], (15, vec![14]), "U before W");
        assert_eq!(os.take_all(|_| {}), 0);
        // an OS line after the last event waits for take_all
        let mut r = MimallocReader::from_text("t", &format!("{TEXT}G 32 1 32 3 0 x\n")).unwrap();
        let os = r.share_os_lines();
        while r.next_event().unwrap().is_some() {}
        os.take_before(15, |_| {});
        let mut rest = Vec::new();
        assert_eq!(os.take_all(|o| rest.push(o.line)), 1);
        assert_eq!(rest, vec![16]);
    }

    #[test]
    fn bad_lines_name_their_number_and_why() {
        let text = "# mimalloc allocation trace x\nm O 12 zz\n";
        let mut r = MimallocReader::from_text("t", text).unwrap();
        let e = r.next_line().unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("addr"), "{e}");
        let text = "# mimalloc allocation trace x\nm O 12 10 @2\n";
        let e = MimallocReader::from_text("t", text)
            .unwrap()
            .next_line()
            .unwrap_err()
            .to_string();
        assert!(e.contains("thread 2"), "{e}");
        assert!(MimallocReader::from_text("t", "# pymalloc allocation trace\n").is_err());
    }
}
