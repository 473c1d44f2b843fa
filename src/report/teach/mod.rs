//! Teaching: every block's place and story, from the models' own state.
//!
//! ```text
//!  walk     a CPython 3 recording replayed event by event through pymalloc; for each block
//!           the event that last allocated or freed it and the rule that chose it
//!  explain  one address: owner chain (arena -> pool -> block; PyIntBlock -> slot), size
//!           class, live or free (position in its free list), last event, rule
//!  map      the heap as a picture: arenas as rows of pools (SVG / HTML), PyIntBlocks,
//!           glibc's brk heap as a strip of chunks with their bins (`glibc`)
//!  mimalloc a mimalloc walk (CPython 3.13 recordings, or a CPython 3 recording's O/M
//!           calls in mimalloc's own address space): explain arena -> segment -> span ->
//!           page -> block, map segments as lines of 64 KiB slices with their pages
//!  view     one self-contained HTML page stepping through a whole trace
//! ```

pub mod explain;
pub mod glibc;
pub mod map;
pub mod mimalloc;
pub mod miview;
pub mod view;
pub mod walk;

pub use explain::{explain_in_walk, explain_int, Explanation};
pub use map::HeapPicture;
pub use walk::{At, Residency, Rule, Walk};

pub use super::write_atomic;
