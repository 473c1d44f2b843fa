//! Programs run through the [`Py2`] facade: the question's two experiments
//! (StackOverflow 2195964), op for op as CPython 2's bytecode makes and drops objects.
//!
//! ```text
//!  N = id(0)                          id() of the cached 0: a new int, kept in N
//!  for i in range(5):                 range(5) holds cached ints only
//!      print i, N - id(i)             X = id(i); R = N - X (cached: 0, 24, …); X dropped, then R
//!  prev = 0
//!  for i in range(270):               range(270): 257..269 popped in order, held by the list
//!      t = (id(i-1), id(i))           A = i-1; IA = id(A); A dropped; IB = id(i);
//!                                     the old t dropped: its items last to first
//!      diff = t[0] - t[1]             a new int unless cached; the old diff dropped
//!      if diff != prev:
//!          print i-1, i, t, diff      i-1 made again for the print, then dropped
//!          prev = diff                (the recorded seed.py puts this line outside the if)
//! ```
//! Rows up to `241 242` depend only on `_PyInt_Init`'s layout; the rows at and after
//! `256 257` depend on which slots the interpreter's history left on the free list.

use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::interp::{Int, Py2, PyError, Tuple};
use crate::objects::intobject::{NSMALLNEGINTS, NSMALLPOSINTS};
use crate::trace::{Event, EventKind, FreeListKind};

/// Where the second loop rebinds `prev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrevRebind {
    /// Inside the `if`, as the question (and scripts/seed_loop.py) wrote it.
    InsideIf,
    /// After the `if`, every iteration, as the recorded seed.py wrote it.
    EveryIteration,
}

/// One row the second experiment printed: `i-1 i (id(i-1), id(i)) diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    /// `i - 1`.
    pub prev_i: i64,
    /// `i`.
    pub i: i64,
    /// `t = (id(i-1), id(i))`.
    pub t: (Int, Int),
    /// `diff = t[0] - t[1]`.
    pub diff: Int,
}

impl ChangeRow {
    /// The line as Python 2's `print i-1, i, t, diff` writes it (`str` of the ints,
    /// `repr` of the tuple's items: a long carries an `L` there).
    pub fn py2_line(&self) -> String {
        format!(
            "{} {} ({}, {}) {}",
            self.prev_i,
            self.i,
            self.t.0.repr(),
            self.t.1.repr(),
            self.diff.value
        )
    }
}

/// What the two experiments printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedRun {
    /// `i, N - id(i)` for i in 0..5.
    pub offsets: Vec<(i64, i64)>,
    /// The rows of the second loop, in order.
    pub changes: Vec<ChangeRow>,
}

impl SeedRun {
    /// Every line, in Python 2's print format.
    pub fn lines(&self) -> Vec<String> {
        self.offsets
            .iter()
            .map(|(i, d)| format!("{i} {d}"))
            .chain(self.changes.iter().map(ChangeRow::py2_line))
            .collect()
    }
}

/// The value of `i` from which rows depend on the interpreter's history: the first
/// `i` outside the small-int cache.
pub const HISTORY_FROM_I: i64 = 257;

/// Runs the question's two experiments on `py`.
///
/// ```
/// use pyalloc::interp::Py2;
/// use pyalloc::scripts::{seed, PrevRebind};
/// use pyalloc::Platform;
///
/// let mut py = Py2::new(Platform::macos_x86_64())?;
/// let run = seed(&mut py, PrevRebind::InsideIf)?;
/// let size = py.ints().layout().object_size as i64;
/// assert_eq!(run.offsets[1], (1, size)); // N - id(1): one PyIntObject below id(0)
/// for line in run.lines() {
///     println!("{line}"); // as Python 2 printed them
/// }
/// # Ok::<(), pyalloc::interp::PyError>(())
/// ```
///
/// # Errors
/// Whatever the facade refuses (a value the platform cannot hold, heap exhaustion).
pub fn seed<A: Allocator, O>(py: &mut Py2<A, O>, rebind: PrevRebind) -> Result<SeedRun, PyError> {
    // N = id(0)
    let zero = py.int(0)?;
    let n = py.id(&zero)?;
    py.drop(zero)?;
    // for i in range(5): print i, N - id(i)
    let mut offsets = Vec::new();
    let range5 = py.list(0, 5)?;
    for i in &range5 {
        let x = py.id(i)?;
        let r = py.sub(&n, &x)?; // BINARY_SUBTRACT makes the result, then drops its operands
        py.drop(x)?;
        offsets.push((i.value, r.value));
        py.drop(r)?;
    }
    py.drop_list(range5)?;

    // prev = 0; for i in range(270): ...
    let one = py.int(1)?;
    let mut prev = py.int(0)?;
    let range = py.list(0, 270)?;
    let mut t: Option<Tuple> = None;
    let mut diff: Option<Int> = None;
    let mut changes = Vec::new();
    for i in &range {
        let a = py.sub(i, &one)?; // i-1
        let ia = py.id(&a)?; // id(i-1)
        py.drop(a)?; // the call drops its argument
        let ib = py.id(i)?; // id(i)
        let new_t = py.tuple(vec![ia, ib]);
        if let Some(old) = t.replace(new_t) {
            py.drop_tuple(old)?; // STORE_NAME t drops the old tuple
        }
        let (t0, t1) = match &t {
            Some(Tuple(items)) => (items[0], items[1]),
            None => unreachable!("t was just stored"),
        };
        let d = py.sub(&t0, &t1)?; // diff = t[0] - t[1]
        if let Some(old) = diff.replace(d) {
            py.drop(old)?; // STORE_NAME diff
        }
        let changed = d.value != prev.value;
        if changed {
            let p = py.sub(i, &one)?; // print i-1, …
            changes.push(ChangeRow {
                prev_i: p.value,
                i: i.value,
                t: (t0, t1),
                diff: d,
            });
            py.drop(p)?;
        }
        if changed || rebind == PrevRebind::EveryIteration {
            py.incref(&d); // prev = diff
            let old = std::mem::replace(&mut prev, d);
            py.drop(old)?;
        }
    }
    // The module's globals (N, t, diff, prev, i and the range list) stay alive.
    Ok(SeedRun { offsets, changes })
}

/// Finds where a recorded seed run's script began in its PYREC trace: the first I line
/// after `_PyInt_Init` whose value is the address of the cached 0 (`N = id(0)`).
///
/// Returns a predicate over the trace's events, in order, true at that event: a
/// recording's replay (the 2.7 checker's `state_until`) stops there and hands the
/// state before it to [`Py2::from_state`].
pub fn at_seed_start() -> impl FnMut(&Event) -> bool {
    let n_small = (NSMALLNEGINTS + NSMALLPOSINTS) as usize;
    let (mut pops, mut zero) = (0usize, None::<Addr>);
    move |ev| match ev.kind {
        EventKind::ObjPop {
            kind: FreeListKind::Int,
            value,
            addr,
        } => {
            if pops < n_small {
                // _PyInt_Init pops -5, -4, …: the cached 0 is its pop number NSMALLNEGINTS.
                if pops == NSMALLNEGINTS as usize {
                    zero = Some(addr);
                }
                pops += 1;
                false
            } else {
                zero.is_some_and(|z| z.0 as i64 == value)
            }
        }
        _ => false,
    }
}

/// What ints_churn.py recorded: the return of `gc.collect()` and four arrays of ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChurnRun {
    /// `n = gc.collect()`.
    pub gc_collect: i64,
    /// ids of the 5000 ints of `a`.
    pub p1: Vec<Addr>,
    /// ids of `a` after `del a[::2]` and 3000 appends.
    pub p2: Vec<Addr>,
    /// ids of the 1000 ints of `c`, made after `gc.collect()`.
    pub p3: Vec<Addr>,
    /// ids of -5..256.
    pub p4: Vec<Addr>,
}

/// `id(o)` as a recording script takes it: the id() result is a temporary, dropped at once.
fn record_id<A: Allocator, O>(py: &mut Py2<A, O>, o: &Int) -> Result<Addr, PyError> {
    let i = py.id(o)?;
    py.drop(i)?;
    Ok(o.addr)
}

/// A name binding at module level: storing a new value drops the old one.
fn store<A: Allocator, O>(
    py: &mut Py2<A, O>,
    name: &mut Option<Int>,
    v: Int,
) -> Result<(), PyError> {
    match name.replace(v) {
        Some(old) => py.drop(old),
        None => Ok(()),
    }
}

/// `for k in xrange(lo, hi): list.append(int(str(k)))`: the loop variable `k` is a new int
/// each time (the old one dropped when it is rebound), and `int(str(k))` another.
fn append_ints<A: Allocator, O>(
    py: &mut Py2<A, O>,
    k: &mut Option<Int>,
    list: &mut Vec<Int>,
    lo: i64,
    hi: i64,
) -> Result<(), PyError> {
    for v in lo..hi {
        let kv = py.int(v)?;
        store(py, k, kv)?;
        list.push(py.int(v)?);
    }
    Ok(())
}

/// `for o in list: P.append(id(o))`: `o` takes a new reference to each item, dropping its old one.
fn ids_of<A: Allocator, O>(
    py: &mut Py2<A, O>,
    o: &mut Option<Int>,
    list: &[Int],
) -> Result<Vec<Addr>, PyError> {
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        py.incref(item);
        store(py, o, *item)?;
        out.push(record_id(py, item)?);
    }
    Ok(out)
}

/// The recorded ints_churn.py (quoted in its trace's header), op for op:
///
/// ```text
///  a = []; for k in xrange(1000, 6000): a.append(int(str(k)))     P1 = ids of a
///  del a[::2]                                                       (a[0], a[2], … dropped in order)
///  for k in xrange(6000, 9000): a.append(int(str(k)))             P2 = ids of a
///  del a                                                            (last to first; `o` keeps the last)
///  n = gc.collect()                                                 PyInt_ClearFreeList, PyFloat_ClearFreeList
///  c = []; for k in xrange(9000, 10000): c.append(int(str(k)))    P3 = ids of c
///  P4 = ids of -5..256
/// ```
///
/// # Errors
/// Whatever the facade refuses.
pub fn ints_churn<A: Allocator, O>(py: &mut Py2<A, O>) -> Result<ChurnRun, PyError> {
    let (mut k, mut o) = (None, None);
    let mut a = Vec::new();
    append_ints(py, &mut k, &mut a, 1000, 6000)?;
    let p1 = ids_of(py, &mut o, &a)?;
    let (even, odd): (Vec<_>, Vec<_>) = a.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, x) in even {
        py.drop(x)?;
    }
    let mut a: Vec<Int> = odd.into_iter().map(|(_, x)| x).collect();
    append_ints(py, &mut k, &mut a, 6000, 9000)?;
    let p2 = ids_of(py, &mut o, &a)?;
    py.drop_list(a)?;
    py.gc_collect()?;
    let n = py.int(0)?; // collected + uncollectable: nothing was unreachable
    let mut c = Vec::new();
    append_ints(py, &mut k, &mut c, 9000, 10000)?;
    let p3 = ids_of(py, &mut o, &c)?;
    let small = py.list(-5, 257)?;
    let mut p4 = Vec::new();
    for v in &small {
        p4.push(record_id(py, v)?);
    }
    Ok(ChurnRun {
        gc_collect: n.value,
        p1,
        p2,
        p3,
        p4,
    })
}

/// Reads where the script quoted in a trace header rebinds `prev`: deeper than the
/// `if diff != prev:` line means inside it.
pub fn rebind_of(header: &[String]) -> PrevRebind {
    let indent = |needle: &str| {
        header.iter().find_map(|l| {
            let body = l.split_once('|')?.1;
            body.contains(needle)
                .then(|| body.len() - body.trim_start().len())
        })
    };
    match (indent("if diff != prev"), indent("prev = diff")) {
        (Some(i), Some(p)) if p <= i => PrevRebind::EveryIteration,
        _ => PrevRebind::InsideIf,
    }
}

/// `SCOPE_OFF` of symtable.h (2.7): a symbol's scope is stored above its flags, so every
/// flags word `update_symbols` writes is at least `1 << 11` and never a cached int.
const SCOPE_OFF: u32 = 11;

/// What compiling one top-level statement does to the int free list, as the interactive
/// interpreter (`python -i`, `Py_single_input`) compiles each statement just before it runs it:
///
/// ```text
///  ast.c parsenumber      one int per numeric literal outside -5..256, in source order;
///                         the code's co_consts and the AST arena hold them through the run
///  symtable.c ste_new     one int per block, its ste_id = PyLong_FromVoidPtr(AST node):
///                         the module's, then each nested block's as the visit enters it
///  update_symbols         one int per name of each block, flags | scope << SCOPE_OFF,
///                         nested blocks before their parent (analyze_block recurses first)
///  PySymtable_Free        block by block from the module's: its ste_id, then its names'
///                         ints in the order they were made
/// ```
/// `blocks[0]` is the number of distinct names of the module block, `blocks[1..]` those
/// of nested blocks (a `def`'s body). Returns the literals, for [`repl_release`] after the run.
///
/// # Errors
/// Whatever the facade refuses.
pub fn repl_compile<A: Allocator, O>(
    py: &mut Py2<A, O>,
    literals: &[i64],
    blocks: &[usize],
) -> Result<Vec<Int>, PyError> {
    let kept = literals
        .iter()
        .map(|&v| py.int(v))
        .collect::<Result<Vec<_>, _>>()?;
    // The ste_id values are AST node addresses: any non-cached value stands for them.
    let ids = blocks
        .iter()
        .map(|_| py.int(1 << SCOPE_OFF))
        .collect::<Result<Vec<_>, _>>()?;
    let mut flags: Vec<Vec<Int>> = vec![Vec::new(); blocks.len()];
    for b in (1..blocks.len()).chain(std::iter::once(0)) {
        for _ in 0..blocks[b] {
            flags[b].push(py.int((1 << SCOPE_OFF) | 2)?);
        }
    }
    for (id, names) in ids.into_iter().zip(flags) {
        py.drop(id)?;
        for f in names {
            py.drop(f)?;
        }
    }
    Ok(kept)
}

/// After the statement ran: the code object's `co_consts` and then the AST arena let go of
/// the literals, last to first.
///
/// # Errors
/// As [`Py2::drop`].
pub fn repl_release<A: Allocator, O>(
    py: &mut Py2<A, O>,
    literals: Vec<Int>,
) -> Result<(), PyError> {
    py.drop_list(literals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    #[test]
    fn in_block_rows_step_by_the_object_size_and_blocks_jump() {
        let mut py = Py2::new(Platform::macos_x86_64()).unwrap();
        let size = py.ints().layout().object_size as i64;
        let run = seed(&mut py, PrevRebind::InsideIf).unwrap();
        assert_eq!(run.offsets[1].1, size);
        assert_eq!(run.changes[0].diff.value, size);
        let n = py.ints().layout().n_objects as i64;
        // The first jump is between the last int of block 0 and the first of block 1.
        assert_eq!(run.changes[1].i, n - 5);
    }
}
