//! Why a replay (or a check, or a report built on one) stopped before the end of its trace.
//!
//! One type for every consumer of the driver: [`ReplayError`] is a trace that cannot be
//! read, a model name that names no model, or an [`EventError`] — what went wrong at one
//! event, with its 0-based index and its 1-based line (0 when the trace is not text).

use crate::addr::Addr;
use crate::error::AllocError;
use crate::trace::{EventKind, TraceError};

pub use super::model::ModelError;

/// What went wrong at one event of a trace.
#[derive(Debug, thiserror::Error)]
#[error("event {event} (line {line}): {source}")]
pub struct EventError {
    /// 0-based index of the event among the trace's events.
    pub event: u64,
    /// 1-based line in the trace (0 when not read from a text file).
    pub line: u64,
    /// What happened.
    pub source: Cause,
}

/// What happened at an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Cause {
    /// The model refused the request.
    #[error(transparent)]
    Model(AllocError),
    /// The trace frees (or reallocs) an address it never allocated, or no longer holds.
    #[error(
        "the recording is inconsistent: {op} of {addr}, which the trace never allocated \
         (or already freed: a double free, or a cut or edited trace)"
    )]
    NeverAllocated {
        /// `free` or `realloc`.
        op: &'static str,
        /// The recorded address.
        addr: Addr,
    },
    /// The trace returns an address that is still live: the recording is inconsistent.
    #[error(
        "the recording is inconsistent: {addr} returned again while still live (not freed \
         since it was last returned: a missed free, or interleaved processes)"
    )]
    StillLive {
        /// The recorded address.
        addr: Addr,
    },
    /// The trace maps an arena that is still mapped, or unmaps one that is not.
    #[error(
        "the recording is inconsistent: arena {addr} {what} (a cut, edited or interleaved \
         trace)"
    )]
    Arena {
        /// `mapped again while still mapped` or `unmapped while not mapped`.
        what: &'static str,
        /// The recorded arena base.
        addr: Addr,
    },
    /// The recording shows a request served that the model cannot serve: the real
    /// allocator answered it, the model would return NULL (or cannot follow).
    #[error("the recording shows {call}, but {source}")]
    Unservable {
        /// The call as the recording shows it (`malloc(4611686018427387904) = 0x7ff000000010`).
        call: String,
        /// Why the model cannot serve it.
        source: AllocError,
    },
    /// The model refused to give back a block the recording holds: the model's state
    /// differs from the process's.
    #[error(
        "the model diverged from the recording: it refuses the {op} of {addr}, a block the \
         recording returned and still holds ({source}){}; run `pyalloc \
         check` on the trace to find the first divergence, or try the preset of the \
         recording's release",
        .state.as_deref().map(|s| format!("; the model's state: {s}")).unwrap_or_default()
    )]
    Diverged {
        /// `free` or `realloc`.
        op: &'static str,
        /// The recorded address.
        addr: Addr,
        /// What the model said.
        source: AllocError,
        /// What the model holds at that address, when it can say.
        state: Option<String>,
    },
}

impl Cause {
    /// A model's refusal of a request the recording shows served, said as such (the call,
    /// its size and its recorded address, then why the model refuses); other refusals as
    /// they are.
    #[cold]
    pub fn unservable(kind: &EventKind, e: AllocError) -> Cause {
        use AllocError::{BadAlignment, ModelLimit, OutOfAddressSpace, TooLarge};
        if !matches!(
            e,
            TooLarge { .. } | BadAlignment { .. } | OutOfAddressSpace { .. } | ModelLimit { .. }
        ) {
            return Cause::Model(e);
        }
        let call = match *kind {
            EventKind::Malloc { size, addr, .. } => format!("malloc({size}) = {addr}"),
            EventKind::Calloc {
                nelem,
                elsize,
                addr,
                ..
            } => format!("calloc({nelem}, {elsize}) = {addr}"),
            EventKind::Realloc { old, size, new, .. } => format!("realloc({old}, {size}) = {new}"),
            EventKind::Memalign { align, size, addr } => {
                format!("memalign({align}, {size}) = {addr}")
            }
            EventKind::Valloc { size, addr } => format!("valloc({size}) = {addr}"),
            EventKind::Pvalloc { size, addr } => format!("pvalloc({size}) = {addr}"),
            EventKind::BlockNew { size, addr, .. } => format!("malloc({size}) = {addr}"),
            _ => return Cause::Model(e),
        };
        Cause::Unservable { call, source: e }
    }
}

impl From<AllocError> for Cause {
    fn from(e: AllocError) -> Cause {
        Cause::Model(e)
    }
}

/// Why a replay, check or report could not run to its end (a divergence is not an error:
/// it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// Something went wrong at one event.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The model name names no model (or none for this trace).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A format, model or point of a trace this command cannot use.
    #[error("{0}")]
    Unsupported(String),
}

impl ReplayError {
    /// The event error, if this is one.
    pub fn event(&self) -> Option<&EventError> {
        match self {
            ReplayError::Event(e) => Some(e),
            _ => None,
        }
    }
}
