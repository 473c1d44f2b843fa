//! The text grammars, generated from the one event table ([`event_table!`](super::event)):
//! which letter starts a kind's line, which fields follow and in which order. Every text
//! reader's line parser ([`parse_fields`] behind the letter tables of [`letters`]) and the
//! text writer ([`write_line`]) are expansions of the same rows, so they cannot disagree.
//!
//! ```text
//!   a row       0 => Malloc { [domain] size: v, addr: a } ("m", "m") [P3 G P27 Mi]
//!   its lines   P3   m O 24 7ffff7cb2030       D: O M R r (CPython 3, `generate`); bare hex
//!               P27  m O 24 7ffff7cb2030       D: O only (PYREC)
//!               Mi   m O 24 7ffff7cb2030       as P3, without arenas (CPython 3.13 on mimalloc)
//!               G    m 24 0x5555556742a0       no D (Domain::Libc, the glibc grammar); 0x hex
//!   fields      in the row's order, one space before each:
//!               v decimal · z signed decimal · a address · n an int (`%ld`) or, under the
//!               float letter, a float (`%.17g`, the event keeps its bits) · idx a mark's index
//!   letter      (int, float): a free-list row's letter says which list (`B` int, `b` float);
//!               a letter longer than one byte is the word of a `#` line (`# mark 3`)
//! ```
//! A call's domain is a token of its own in P3, P27 and Mi and absent in G; a kind without a
//! domain is written 0x-hex when G is the only grammar with its line, bare hex otherwise.
//! Each reader (CPython 3, glibc, PYREC, mimalloc) keeps its tokenizer and its words for a
//! refusal (a [`Fields`]); only what a line holds is defined here. Invariant, for every
//! grammar `g` and event `e` it has a line for: `parse_fields(letters(g)[first byte of write_line(e)], rest) == e`.

use super::event::{event_table, NO_SUB};
use super::format::Grammar;
use super::writer::g17;
use super::{Domain, EventKind, FreeListKind};
use crate::addr::Addr;

/// Which field a reader is asked for: the kind's and the field's names as the event table
/// spells them (`ClearKeep`, `live`), for the words of a refusal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct What {
    pub kind: &'static str,  // the EventKind variant
    pub field: &'static str, // the field
}

/// One line's fields as a reader tokenizes them, its letter already read: each method
/// reads the next field or says why it cannot.
pub(crate) trait Fields {
    /// Why a line was refused.
    type Refusal;
    /// A call's domain: its own token (`O`, `M` …), or the grammar's one domain.
    fn domain(&mut self) -> Result<Domain, Self::Refusal>;
    /// A decimal number (codec `v`).
    fn dec(&mut self, what: What) -> Result<u64, Self::Refusal>;
    /// A signed decimal number (codec `z`).
    fn signed(&mut self, what: What) -> Result<i64, Self::Refusal>;
    /// An address (codec `a`).
    fn addr(&mut self, what: What) -> Result<Addr, Self::Refusal>;
    /// A free-list object's value (codec `n`): the int, or the float's bits.
    fn value(&mut self, kind: FreeListKind, what: What) -> Result<i64, Self::Refusal>;
    /// The refusal of a letter that starts no line of the grammar.
    fn unknown(&mut self) -> Self::Refusal;
}

/// A byte that is no grammar's letter, in [`letters`].
pub(crate) const NOT_A_LETTER: u8 = 0xFF;

/// One row of the event table as the text grammars see it.
struct Row {
    int: &'static str,   // the letter (of the int free list, for a free-list kind)
    float: &'static str, // the float free list's letter (the same for other kinds)
    grammars: &'static [Grammar], // the grammars with a line for the kind
}

impl Row {
    /// The line's letter for sub-code `sub`, as bytes.
    fn letter(&self, sub: u8) -> &'static [u8] {
        if sub == FreeListKind::Float.code() && self.float != self.int {
            self.float.as_bytes()
        } else {
            self.int.as_bytes()
        }
    }

    /// True when G is the only grammar with the line: its addresses are written `0x…`.
    const fn glibc_only(&self) -> bool {
        self.grammars.len() == 1 && self.grammars[0] as u8 == Grammar::G as u8
    }
}

const fn has(grammars: &[Grammar], g: Grammar) -> bool {
    let mut i = 0;
    while i < grammars.len() {
        if grammars[i] as u8 == g as u8 {
            return true;
        }
        i += 1;
    }
    false
}

/// For each byte, the code (`kind · 8 + sub`) of the line it starts in grammar `g`, or
/// [`NOT_A_LETTER`]: a free-list kind's sub-code is its list's (the int or the float
/// letter), a call's domain is read from the line ([`Fields::domain`]).
const fn letter_table(g: Grammar) -> [u8; 256] {
    let mut t = [NOT_A_LETTER; 256];
    let mut k = 0;
    while k < ROWS.len() {
        let row = &ROWS[k];
        if has(row.grammars, g) && row.int.len() == 1 {
            let (int, float) = (row.int.as_bytes()[0], row.float.as_bytes()[0]);
            t[int as usize] = (k * 8) as u8; // sub 0: the int list, or no sub-code to tell
            if float != int {
                t[float as usize] = (k * 8) as u8 + 1; // the float list
            }
        }
        k += 1;
    }
    t
}

static P3_LETTERS: [u8; 256] = letter_table(Grammar::P3);
static G_LETTERS: [u8; 256] = letter_table(Grammar::G);
static P27_LETTERS: [u8; 256] = letter_table(Grammar::P27);
static MI_LETTERS: [u8; 256] = letter_table(Grammar::Mi);

/// The letter table of grammar `g`: byte → the code of the line it starts
/// ([`parse_fields`]'s `code`), [`NOT_A_LETTER`] for the others.
#[inline(always)]
pub(crate) fn letters(g: Grammar) -> &'static [u8; 256] {
    match g {
        Grammar::P3 => &P3_LETTERS,
        Grammar::G => &G_LETTERS,
        Grammar::P27 => &P27_LETTERS,
        Grammar::Mi => &MI_LETTERS,
    }
}

/// The free list of a line's sub-code (its letter's: [`letters`]).
#[inline(always)]
fn list(sub: u8) -> FreeListKind {
    FreeListKind::from_code(sub).unwrap_or(FreeListKind::Float)
}

/// Appends `v` in decimal (`-` for a negative).
fn put_dec(line: &mut Vec<u8>, v: impl itoa::Integer) {
    line.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends `v` in lowercase hex, `0x` first when `zero_x`.
fn put_hex(line: &mut Vec<u8>, v: u64, zero_x: bool) {
    if zero_x {
        line.extend_from_slice(b"0x");
    }
    let digits = (64 - (v | 1).leading_zeros()).div_ceil(4);
    for i in (0..digits).rev() {
        line.push(b"0123456789abcdef"[((v >> (4 * i)) & 0xf) as usize]);
    }
}

macro_rules! text_lines {
    ($($code:literal => $variant:ident { $([$sub:ident])? $($field:ident: $c:ident),* }
       ($int:literal, $float:literal) [$($g:ident)*])*) => {
        /// The table's rows, by kind.
        const ROWS: [Row; super::event::KINDS] = [$(Row {
            int: $int,
            float: $float,
            grammars: &[$(Grammar::$g),*],
        }),*];

        /// Reads the fields of a line of code `code` (from [`letters`]), in the table's
        /// order, through the reader's tokenizer `f`.
        ///
        /// # Errors
        /// What `f` refuses; [`Fields::unknown`] for a code no line has.
        #[inline(always)]
        pub(crate) fn parse_fields<F: Fields>(f: &mut F, code: u8) -> Result<EventKind, F::Refusal> {
            let sub = code & 7;
            Ok(match code >> 3 {
                $($code => EventKind::$variant {
                    $($sub: text_lines!(@sub f $sub sub),)?
                    $($field: text_lines!(@read f $c sub
                        What { kind: stringify!($variant), field: stringify!($field) })),*
                },)*
                _ => return Err(f.unknown()),
            })
        }

        /// Appends the line of `event` (its newline included) in the grammar that has it:
        /// the domain's letter after the kind's for a CPython call, none (and `0x`
        /// addresses) for a C library call.
        pub(crate) fn write_line(line: &mut Vec<u8>, event: &EventKind) {
            match *event {
                $(EventKind::$variant { $($sub,)? $($field),* } => {
                    let row = &ROWS[$code];
                    let letter = row.letter(text_lines!(@code $($sub $sub)?));
                    if letter.len() > 1 {
                        line.extend_from_slice(b"# ");
                    }
                    line.extend_from_slice(letter);
                    let zero_x = text_lines!(@domain line row $($sub $sub)?);
                    let list = text_lines!(@list $($sub $sub)?);
                    $(text_lines!(@put line $c $field zero_x list);)*
                    let _ = (zero_x, list);
                })*
            }
            line.push(b'\n');
        }
    };
    (@sub $f:ident domain $s:ident) => { $f.domain()? };
    (@sub $f:ident kind $s:ident) => { list($s) };
    (@read $f:ident v $s:ident $w:expr) => { $f.dec($w)? };
    (@read $f:ident z $s:ident $w:expr) => { $f.signed($w)? };
    (@read $f:ident a $s:ident $w:expr) => { $f.addr($w)? };
    (@read $f:ident n $s:ident $w:expr) => { $f.value(list($s), $w)? };
    (@read $f:ident idx $s:ident $w:expr) => {
        u32::try_from($f.dec($w)?).map_err(|_| $f.unknown())?
    };
    (@code) => { NO_SUB };
    (@code domain $d:ident) => { NO_SUB };
    (@code kind $k:ident) => { $k.code() };
    (@domain $l:ident $row:ident) => { $row.glibc_only() };
    (@domain $l:ident $row:ident kind $k:ident) => { $row.glibc_only() };
    (@domain $l:ident $row:ident domain $d:ident) => {{
        if let Some(letter) = $d.letter() {
            $l.extend_from_slice(&[b' ', letter as u8]);
        }
        $d == Domain::Libc
    }};
    (@list) => { None::<FreeListKind> };
    (@list domain $d:ident) => { None::<FreeListKind> };
    (@list kind $k:ident) => { Some($k) };
    (@put $l:ident v $x:ident $zx:ident $list:ident) => {{ $l.push(b' '); put_dec($l, $x) }};
    (@put $l:ident z $x:ident $zx:ident $list:ident) => {{ $l.push(b' '); put_dec($l, $x) }};
    (@put $l:ident idx $x:ident $zx:ident $list:ident) => {{ $l.push(b' '); put_dec($l, $x) }};
    (@put $l:ident a $x:ident $zx:ident $list:ident) => {{ $l.push(b' '); put_hex($l, $x.0, $zx) }};
    (@put $l:ident n $x:ident $zx:ident $list:ident) => {{
        $l.push(b' ');
        match $list {
            Some(FreeListKind::Float) => {
                $l.extend_from_slice(g17(f64::from_bits($x as u64)).as_bytes())
            }
            _ => put_dec($l, $x),
        }
    }};
}

event_table!(text_lines);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_letter_starts_one_line_per_grammar() {
        for g in [Grammar::P3, Grammar::G, Grammar::P27, Grammar::Mi] {
            // every one-byte letter of a row in `g`, int and float: none written over
            let mut want: Vec<(u8, u8)> = Vec::new();
            for (k, row) in ROWS.iter().enumerate() {
                if has(row.grammars, g) && row.int.len() == 1 {
                    want.push((row.int.as_bytes()[0], (k * 8) as u8));
                    if row.float != row.int {
                        want.push((row.float.as_bytes()[0], (k * 8 + 1) as u8));
                    }
                }
            }
            let got: Vec<(u8, u8)> = (0..=255u8)
                .filter(|&b| letters(g)[usize::from(b)] != NOT_A_LETTER)
                .map(|b| (b, letters(g)[usize::from(b)]))
                .collect();
            want.sort_unstable();
            assert_eq!(got, want, "{g:?}");
        }
        // the CPython 3 grammar: the calls and the arena and data-stack lines
        let p3: String = (0..=255u8)
            .filter(|&b| letters(Grammar::P3)[usize::from(b)] != NOT_A_LETTER)
            .map(char::from)
            .collect();
        assert_eq!(p3, "AFVWcfmr");
    }

    #[test]
    fn hex_is_written_with_no_leading_zeros() {
        for (v, bare) in [
            (0u64, "0"),
            (0xf, "f"),
            (0x10, "10"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            let mut line = Vec::new();
            put_hex(&mut line, v, false);
            assert_eq!(line, bare.as_bytes());
            line.clear();
            put_hex(&mut line, v, true);
            assert_eq!(String::from_utf8(line).unwrap(), format!("{v:#x}"));
        }
    }
}
