//! The Python facade: script CPython's int and float allocations as a program makes them.
//!
//! ```text
//!   Py2::new(platform)               CPython 2.7 right after _PyInt_Init        (py2)
//!     .int(v)     PyInt_FromLong: small_ints[v+5] for -5 <= v <= 256, else pop the int free list
//!     .id(&o)     builtin id(): PyLong_FromVoidPtr(o) = PyInt_FromLong(address) when it fits a C long
//!     .sub(&a,&b) int_sub: a new int (or a cached one)
//!     .drop(o)    Py_DECREF: at refcount 0, int_dealloc pushes it on the free list
//!     .tuple(..)  / .drop_tuple(t): tupledealloc drops items last to first
//!     .list(..)   / .drop_list(l):  list_dealloc drops items last to first
//!   Py2::from_state(Py2State)        continue from a state built elsewhere (a replayed recording)
//!
//!   Py3::new(platform)               CPython 3.11: the static small-int array only   (py3)
//!
//!   Py2State<A>: IntFreeList<SharedHeap<A>> + FloatFreeList<SharedHeap<A>> + SmallInts   (objects)
//!   A = MacTiny | Glibc | Bump | TraceHeap                                               (sysmalloc)
//! ```
//!
//! Both facades implement [`Interpreter`] (`int`, `explain`), which is all `pyalloc ints`
//! needs; the rest is each version's own. Handles ([`Int`], [`Float`]) are plain values,
//! and references are counted explicitly as in C: every value a method returns is a new
//! reference the script must `drop`. A wrong drop is an error value naming the address,
//! never a panic.
//!
//! Absolute bases are parameters: [`Py2::at`] takes the address where the first PyIntBlock
//! lands, [`Py2::new`] the platform's ([`Platform::first_int_block`]).
//!
//! ```
//! use pyalloc::interp::Py2;
//! use pyalloc::Platform;
//!
//! let mut py = Py2::new(Platform::macos_x86_64())?;
//! let zero = py.int(0)?;
//! assert_eq!(zero.addr.0, 4297074752); // the seed's id(0)
//! let t = py.int(7777)?; // popped from the free list
//! let a = t.addr;
//! py.drop(t)?; // pushed back on its head...
//! assert_eq!(py.int(8888)?.addr, a); // ...and popped again: LIFO
//! # Ok::<(), pyalloc::interp::PyError>(())
//! ```

mod py2;
mod py3;

pub use py2::Py2;
pub use py3::Py3;

use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::objects::Slot;
use crate::platform::{MallocFlavor, Platform};
use crate::sysmalloc::glibc::Glibc;
use crate::sysmalloc::{Bump, MacTiny};
use crate::vm::AddressSpace;

/// The CPython versions the facades model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// CPython 2.7: small_ints[] + the PyIntBlock free list ([`Py2`]).
    V2_7,
    /// CPython 3.11: the static small-int array; other ints live in pymalloc ([`Py3`]).
    V3_11,
}

impl Version {
    /// Parses `2.7`, `3.11` (also `27`, `311`).
    pub fn parse(s: &str) -> Option<Version> {
        match s {
            "2.7" | "27" | "2" => Some(Version::V2_7),
            "3.11" | "311" => Some(Version::V3_11),
            _ => None,
        }
    }

    /// As the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Version::V2_7 => "2.7",
            Version::V3_11 => "3.11",
        }
    }
}

/// What a facade refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PyError {
    /// A layer below refused (bad free, out of space, a value the platform cannot hold).
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// Something this build does not model (said plainly rather than guessed).
    #[error("not modelled: {0}")]
    NotModelled(String),
    /// A `drop` of an object the script holds no reference to.
    #[error("drop of {addr}: the script holds no reference to this object")]
    NotOwned {
        /// The object's address.
        addr: Addr,
    },
}

/// How an int object exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntKind {
    /// A cached small int (Py2 `small_ints[]`, Py3 static array): never freed.
    Small,
    /// A free-list int in this slot.
    Free(Slot),
    /// A Python `long` (the value did not fit a C long): its address is not modelled.
    Long,
}

/// A reference to an int object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int {
    /// Its value.
    pub value: i64,
    /// Its address, `id()` (NULL for a `long`, whose address is not modelled).
    pub addr: Addr,
    /// Cached, free-list, or long.
    pub kind: IntKind,
}

impl Int {
    /// `repr()` in Python 2: a long carries an `L`.
    pub fn repr(&self) -> String {
        match self.kind {
            IntKind::Long => format!("{}L", self.value),
            _ => self.value.to_string(),
        }
    }
}

/// A reference to a float object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Float {
    /// Its value.
    pub value: f64,
    /// Its address.
    pub addr: Addr,
    slot: Slot,
}

/// A tuple of ints (its own address lives in pymalloc and is not modelled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple(pub Vec<Int>);

/// What every facade answers: the int a value gives and where it lives.
pub trait Interpreter {
    /// The CPython version modelled.
    fn version(&self) -> Version;

    /// The platform.
    fn platform(&self) -> &Platform;

    /// The int object for `v`, as the interpreter makes it: a new reference.
    ///
    /// # Errors
    /// `ValueOutOfRange` when `v` does not fit the platform's C long; `NotModelled` for
    /// an object this build does not place; heap errors.
    fn int(&mut self, v: i64) -> Result<Int, PyError>;

    /// Says where an int lives and why it is there (the `--explain` text).
    fn explain(&mut self, o: &Int) -> String;
}

/// The bits of a C long on `p`.
fn long_bits(p: &Platform) -> u32 {
    (p.long_bytes * 8) as u32
}

/// `v` as a C long of `p`, or the error naming the value and the width.
fn as_long(p: &Platform, v: i128) -> Result<i64, AllocError> {
    let bits = long_bits(p);
    let max = (1i128 << (bits - 1)) - 1;
    if (-max - 1..=max).contains(&v) {
        Ok(v as i64)
    } else {
        Err(AllocError::ValueOutOfRange {
            value: v.to_string(),
            bits,
        })
    }
}

/// The `--explain` text of a long.
const LONG_TEXT: &str = "a long (the value does not fit a C long): lives in pymalloc, not modelled";

/// The platform's system allocator ([`Platform::malloc`]), placed so that its first
/// `malloc(first_size)` returns `first` (when given): the heap before `_PyInt_Init` holds
/// allocations this model does not see, so the simulated heap starts where the first
/// block landed.
///
/// # Errors
/// Whatever the probe allocation refuses.
pub fn system_heap(
    p: &Platform,
    first: Option<Addr>,
    first_size: u64,
) -> Result<Box<dyn Allocator>, AllocError> {
    let space = |start: Addr| AddressSpace::new(p.page_size, p.pointer_bytes, start, p.mmap_top);
    Ok(match &p.malloc {
        MallocFlavor::MacTiny => Box::new(MacTiny::new(space(first.unwrap_or(p.heap_start)))),
        MallocFlavor::Bump => Box::new(Bump::new(first.unwrap_or(p.heap_start), 16)),
        MallocFlavor::Glibc(params) => match first {
            None => Box::new(Glibc::new(params.clone(), p.address_space())),
            Some(first) => {
                // Where does an empty glibc heap put its first block of this size?
                let mut probe = Glibc::new(params.clone(), p.address_space());
                let offset = probe.malloc(first_size as usize)? - p.heap_start;
                let start = Addr(first.0.wrapping_sub(offset as u64));
                Box::new(Glibc::new(params.clone(), space(start)))
            }
        },
    })
}
