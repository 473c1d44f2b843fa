//! Errors of the allocator models.
//!
//! Every error names what was wrong: the address, the size, the value. The models
//! return them as values; nothing the user gives makes pyalloc panic.

use crate::addr::Addr;
use thiserror::Error;

/// What an allocator model refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AllocError {
    /// `free`/`realloc` of an address that no live allocation starts at.
    #[error("{op} of {addr}: not a live allocation of {model}")]
    NotLive {
        /// The operation (`free`, `realloc`, …).
        op: &'static str,
        /// The address given.
        addr: Addr,
        /// The model that was asked.
        model: &'static str,
    },
    /// `free`/`realloc` of an address that was live once and has been freed since.
    #[error("double free of {addr} in {model}")]
    DoubleFree {
        /// The address freed twice.
        addr: Addr,
        /// The model that was asked.
        model: &'static str,
    },
    /// A request no allocator of the simulated platform could serve (the call returns
    /// NULL, as the real allocator's does).
    #[error(
        "{model} refuses a request of {size} bytes as too large: it serves at most {limit}{} \
         bytes, so the call returns NULL",
        ptrdiff(*.limit)
    )]
    TooLarge {
        /// The size asked for.
        size: u64,
        /// The largest size the model accepts.
        limit: u64,
        /// The model that was asked.
        model: &'static str,
    },
    /// An alignment that is not a power of two, or otherwise refused.
    #[error("bad alignment {align} for {model}")]
    BadAlignment {
        /// The alignment asked for.
        align: u64,
        /// The model that was asked.
        model: &'static str,
    },
    /// A value the simulated platform cannot hold (a C `long` of 32 bits, say).
    #[error("value {value} does not fit in a {bits}-bit C long")]
    ValueOutOfRange {
        /// The value given, as text (it may not fit any Rust integer).
        value: String,
        /// The width of the platform's C `long`.
        bits: u32,
    },
    /// The simulated address space is exhausted.
    #[error("the simulated address space has no room: {what}")]
    OutOfAddressSpace {
        /// What could not be placed.
        what: String,
    },
    /// Something the real allocator would do that the model cannot follow (a glibc brk
    /// heap of more than 4 GiB, say): not an answer of the real allocator.
    #[error("the {model} model cannot follow the allocator this far: {what}")]
    ModelLimit {
        /// What the model cannot hold.
        what: String,
        /// The model.
        model: &'static str,
    },
    /// An inconsistency the real allocator would itself diagnose and abort on
    /// (glibc's `free(): invalid pointer`, say): the message is the allocator's own.
    #[error("{model}: {message}{}", at(*.addr))]
    Corrupt {
        /// The allocator's own diagnosis.
        message: &'static str,
        /// The address involved.
        addr: Addr,
        /// The model that diagnosed it.
        model: &'static str,
    },
}

/// ` (PTRDIFF_MAX)` after a limit that is the platform's `PTRDIFF_MAX`.
fn ptrdiff(limit: u64) -> &'static str {
    if limit == i64::MAX as u64 || limit == i32::MAX as u64 {
        " (PTRDIFF_MAX)"
    } else {
        ""
    }
}

/// ` (ADDR)` after a message, or nothing when the diagnosis names no address.
fn at(addr: Addr) -> String {
    if addr.is_null() {
        String::new()
    } else {
        format!(" ({addr})")
    }
}
