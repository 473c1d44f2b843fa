//! The line-token handling the text readers share: one line in, its fields out, and a
//! malformed line turned into a [`TraceError::Parse`] naming its number and text.
//!
//! ```text
//!   LineReader ──next_line──▶ "m 24 0x5555556742a0" ──parse──▶ T          (the reader's own)
//!                                   │ Err(why)
//!                                   ▼
//!                   TraceError::Parse { path, line, text, why }
//!   field(&mut rest)  "m" "24" "0x5555556742a0"     space-separated tokens, in place
//!   dec / signed      decimal u64 / i64             hex / hex0x   bare or `0x` hex, ≤ 16 digits
//!   comment           "# brk 0x1" -> "brk 0x1"      a `#` line's body (header, marks, trailer)
//! ```
//! No allocation per line on the good path. Used by the glibc, mtrace, ltrace, heaptrack
//! and PYREC readers; the CPython 3 reader ([`pymalloc3`](super::pymalloc3)) parses bytes
//! in place for speed and shares [`comment`] and [`digits`], the one reader of a run of
//! decimal or hex digits that every number above goes through.

use super::{LineReader, TraceError};
use crate::addr::Addr;

/// Reads one line and parses it: `(line number, parsed)`, `None` at the end of the
/// stream. A parse failure becomes the line's [`TraceError::Parse`] (number, text, why).
///
/// # Errors
/// The stream's read faults, or the parser's reason with the line's number and text.
#[inline]
pub(crate) fn next_line_with<T, E: Into<String>>(
    lines: &mut LineReader,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<(u64, T)>, TraceError> {
    let Some(text) = lines.next_line()? else {
        return Ok(None);
    };
    match parse(text) {
        Ok(t) => Ok(Some((lines.line_number(), t))),
        Err(why) => {
            let text = text.to_string();
            Err(lines.parse_error(&text, why))
        }
    }
}

/// The body of a `#` line: without its `#` and one space after it; `None` when the line
/// is not a comment.
#[inline]
pub(crate) fn comment(text: &str) -> Option<&str> {
    let body = text.strip_prefix('#')?;
    Some(body.strip_prefix(' ').unwrap_or(body))
}

/// One line of a format whose comments are `#` lines.
pub(crate) enum Line<T> {
    Comment(String), // a `#` line's body (see [`comment`])
    Blank,           // an empty or all-space line
    Item(T),         // any other line, as the format's parser read it
}

/// Tells a `#` line and a blank line from the others, which `parse` reads.
///
/// # Errors
/// What `parse` refuses.
#[inline]
pub(crate) fn commented<T, E>(
    text: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Line<T>, E> {
    if let Some(body) = comment(text) {
        return Ok(Line::Comment(body.to_string()));
    }
    if text.trim().is_empty() {
        return Ok(Line::Blank);
    }
    parse(text).map(Line::Item)
}

/// Splits off the next space-separated field (runs of spaces count as one separator).
#[inline]
pub(crate) fn field<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let s = rest.trim_start_matches(' ');
    if s.is_empty() {
        return None;
    }
    let end = s.find(' ').unwrap_or(s.len());
    *rest = &s[end..];
    Some(&s[..end])
}

/// Hex digit values (0xff = not a hex digit); only lowercase digits are written, both read.
pub(crate) static HEX: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// The run of decimal digits (hex digits when `HEX`) at the start of `b`: `(value, how
/// many digits)`, the count 0 when `b` starts with none; `None` when the value does not fit
/// a `u64` (hex: a 17th digit). Every reader's numbers, whole tokens or in place, are read
/// here.
#[inline(always)]
pub(crate) fn digits<const HEX: bool>(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut n = 0;
    while let Some(&c) = b.get(n) {
        if HEX {
            let d = self::HEX[usize::from(c)];
            if d == 0xff {
                break;
            }
            if n == 16 {
                return None;
            }
            v = (v << 4) | u64::from(d);
        } else {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(d))?;
        }
        n += 1;
    }
    Some((v, n))
}

/// A whole token of digits (hex when `HEX`), at least one.
#[inline(always)]
fn whole<const HEX: bool>(s: &str) -> Option<u64> {
    match digits::<HEX>(s.as_bytes())? {
        (v, n) if n > 0 && n == s.len() => Some(v),
        _ => None,
    }
}

/// A decimal `u64`: digits only (at most 20), no sign, no overflow.
#[inline(always)]
pub(crate) fn dec(s: &str) -> Option<u64> {
    if s.len() > 20 {
        return None;
    }
    whole::<false>(s)
}

/// A decimal `i64`, `-` for negatives (`i64::MIN` included).
#[inline]
pub(crate) fn signed(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(d) => dec(d).and_then(|v| 0i64.checked_sub_unsigned(v)),
        None => dec(s).and_then(|v| i64::try_from(v).ok()),
    }
}

/// Bare hex (no `0x`), 1 to 16 digits of either case.
#[inline(always)]
pub(crate) fn hex(s: &str) -> Option<u64> {
    whole::<true>(s)
}

/// `0x` hex, 1 to 16 digits after the `0x`.
#[inline]
pub(crate) fn hex0x(s: &str) -> Option<Addr> {
    hex(s.strip_prefix("0x")?).map(Addr)
}

/// Helpers for the readers' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::super::{Event, EventKind, EventReader, TraceError};

    /// Every event of a reader, up to its end or first error.
    pub(crate) fn read_all(r: &mut dyn EventReader) -> Result<Vec<Event>, TraceError> {
        let mut v = Vec::new();
        while let Some(e) = r.next_event()? {
            v.push(e);
        }
        Ok(v)
    }

    /// The kinds of every event and the count of other lines.
    pub(crate) fn kinds_and_other(
        r: &mut dyn EventReader,
    ) -> Result<(Vec<EventKind>, u64), TraceError> {
        let ev = read_all(r)?;
        Ok((ev.into_iter().map(|e| e.kind).collect(), r.other_lines()))
    }

    /// The kinds of every event of `text` read as another tool's format `F`, and the
    /// count of other lines.
    pub(crate) fn tool_kinds<F: super::super::tool::ToolFormat>(
        text: &str,
    ) -> Result<(Vec<EventKind>, u64), TraceError> {
        let lines = super::super::LineReader::from_text("tool", text);
        kinds_and_other(&mut super::super::tool::ToolReader::<F>::new(lines))
    }

    /// Asserts that reading `input` failed on line `line` (1-based) with that line's text.
    pub(crate) fn assert_refused_at<T: std::fmt::Debug>(
        got: Result<T, TraceError>,
        input: &str,
        line: u64,
    ) {
        match got {
            Err(TraceError::Parse { line: l, text, .. }) => {
                assert_eq!(l, line, "{input:?}");
                assert_eq!(
                    text,
                    input.lines().nth(line as usize - 1).unwrap(),
                    "{input:?}"
                );
            }
            other => panic!("{input:?}: expected a parse error, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_whole_or_refused() {
        assert_eq!(dec("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "18446744073709551616", "+1", "1 ", "0x1", "-1"] {
            assert_eq!(dec(bad), None, "{bad:?}");
        }
        assert_eq!(signed("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(signed("9223372036854775807"), Some(i64::MAX));
        assert_eq!(signed("9223372036854775808"), None);
        assert_eq!(signed("-9223372036854775809"), None);
        assert_eq!(hex("FFFFffffFFFFffff"), Some(u64::MAX));
        for bad in ["", "10000000000000000", "+1", "g", "0x1"] {
            assert_eq!(hex(bad), None, "{bad:?}");
        }
        assert_eq!(hex0x("0x5555556742a0"), Some(Addr(0x5555_5567_42a0)));
        assert_eq!(hex0x("5555556742a0"), None);
        assert_eq!(hex0x("0x"), None);
    }

    #[test]
    fn fields_split_on_runs_of_spaces() {
        let mut rest = "m  24 0x10 ";
        let got: Vec<&str> = std::iter::from_fn(|| field(&mut rest)).collect();
        assert_eq!(got, ["m", "24", "0x10"]);
        assert_eq!(comment("# mark P0"), Some("mark P0"));
        assert_eq!(comment("#x"), Some("x"));
        assert_eq!(comment("m 1 0x1"), None);
    }

    #[test]
    fn a_refused_line_carries_its_number_and_text() {
        let mut lines = LineReader::from_text("t", "m 1\nm x\n");
        let ok = next_line_with(&mut lines, |t| dec(&t[2..]).ok_or("not a number")).unwrap();
        assert_eq!(ok, Some((1, 1)));
        let err = next_line_with(&mut lines, |t| dec(&t[2..]).ok_or("not a number"));
        testing::assert_refused_at(err, "m 1\nm x\n", 2);
        assert!(next_line_with(&mut lines, |_| Ok::<_, &str>(()))
            .unwrap()
            .is_none());
    }
}
