//! Allocators that answer from a recording: the addresses they hand out are the ones the
//! real process got, so a model stacked on them is held to the rest of the recording.
//!
//! ```text
//!   Pymalloc<PinnedRaw, PinnedArenas>     CPython 3 and 2.7 replays
//!            │            └── arenas: the trace's `A size addr` lines
//!            └── fall-through, `arenas` vector, radix nodes: the nested `r` lines
//!                (CPython 3) or the call's own line (2.7), see [`PinnedRaw`]
//!   FreeList<SharedHeap<TraceHeap>>       CPython 2.7's int and float blocks (`B`/`b`)
//! ```
//! Their queues are private: a replay driver queues what the recording shows for the
//! call being replayed (`expect`, `push`, `queue`) and reads back what the model did.

mod arenas;
mod heap;
mod raw;

pub use arenas::PinnedArenas;
pub use heap::TraceHeap;
pub use raw::{PinnedRaw, RawCall};
