//! Simulated addresses.
//!
//! An [`Addr`] is a `u64` newtype: the address a simulated allocator hands out, the
//! number a real CPython would show through `id()`. Ranges of addresses are half-open
//! (`base..acme`) everywhere in pyalloc.

use std::fmt;
use std::ops::{Add, Sub};

/// The first two neighbours of `sorted` (half-open spans `start..end`, sorted by start)
/// that share a byte: their starts. What the invariant checkers ask of live blocks and
/// mappings: for consecutive spans, `end(i) <= start(i + 1)`.
pub(crate) fn first_overlap(sorted: impl IntoIterator<Item = (u64, u64)>) -> Option<(u64, u64)> {
    let mut spans = sorted.into_iter();
    let (mut start, mut end) = spans.next()?;
    for (s, e) in spans {
        if end > s {
            return Some((start, s));
        }
        (start, end) = (s, e);
    }
    None
}

/// An address in the simulated process (`NULL` is `Addr(0)`).
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr(pub u64);

impl Addr {
    /// `addrs` for a message: `0x…, 0x…`, or `none`.
    pub fn list(addrs: &[Addr]) -> String {
        if addrs.is_empty() {
            return "none".to_string();
        }
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The null pointer.
    pub const NULL: Addr = Addr(0);

    /// True for the null pointer.
    pub fn is_null(self) -> bool {
        self.0 == 0
    }

    /// Rounds up to a multiple of `align` (a power of two).
    pub fn align_up(self, align: u64) -> Addr {
        debug_assert!(align.is_power_of_two());
        Addr((self.0 + align - 1) & !(align - 1))
    }

    /// Rounds down to a multiple of `align` (a power of two).
    pub fn align_down(self, align: u64) -> Addr {
        debug_assert!(align.is_power_of_two());
        Addr(self.0 & !(align - 1))
    }

    /// True when the address is a multiple of `align` (a power of two).
    pub fn is_aligned(self, align: u64) -> bool {
        self.0 & (align - 1) == 0
    }

    /// Parses `0x…` or bare hexadecimal (the recorded traces write both).
    pub fn parse_hex(s: &str) -> Option<Addr> {
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        if digits.is_empty() || digits.len() > 16 {
            return None;
        }
        u64::from_str_radix(digits, 16).ok().map(Addr)
    }
}

impl Add<u64> for Addr {
    type Output = Addr;
    fn add(self, rhs: u64) -> Addr {
        Addr(self.0.wrapping_add(rhs))
    }
}

impl Sub<u64> for Addr {
    type Output = Addr;
    fn sub(self, rhs: u64) -> Addr {
        Addr(self.0.wrapping_sub(rhs))
    }
}

impl Sub<Addr> for Addr {
    type Output = i64;
    /// The signed distance `self - rhs` in bytes (what the question's `diff` prints).
    fn sub(self, rhs: Addr) -> i64 {
        self.0.wrapping_sub(rhs.0) as i64
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Addr({:#x})", self.0)
    }
}

impl fmt::LowerHex for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_hex_spellings() {
        assert_eq!(Addr::parse_hex("0x10"), Some(Addr(16)));
        assert_eq!(
            Addr::parse_hex("7ffff7cb2030"),
            Some(Addr(0x7fff_f7cb_2030))
        );
        assert_eq!(Addr::parse_hex(""), None);
        assert_eq!(Addr::parse_hex("0x"), None);
        assert_eq!(Addr::parse_hex("xyz"), None);
        assert_eq!(Addr::parse_hex("11112222333344445"), None);
    }

    #[test]
    fn alignment_rounds_to_powers_of_two() {
        assert_eq!(Addr(17).align_up(16), Addr(32));
        assert_eq!(Addr(32).align_up(16), Addr(32));
        assert_eq!(Addr(31).align_down(16), Addr(16));
        assert!(Addr(48).is_aligned(16));
        assert!(!Addr(40).is_aligned(16));
        assert_eq!(Addr(8) - Addr(32), -24);
    }
}
