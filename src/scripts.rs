//! Programs run through the [`Python`] facade: the question's two experiments
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

use crate::alloc::Allocator;
use crate::interp::{Int, PyError, Python, Tuple};

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
/// # Errors
/// Whatever the facade refuses (a value the platform cannot hold, heap exhaustion).
pub fn seed<A: Allocator>(py: &mut Python<A>, rebind: PrevRebind) -> Result<SeedRun, PyError> {
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

/// The interpreter's state where a recorded seed run's script began, replayed from its
/// PYREC trace: everything the interpreter did before `N = id(0)`.
pub struct SeedStart {
    /// The facade holding the replayed free lists (blocks only from the trace).
    pub python: Python<crate::sysmalloc::NoMalloc>,
    /// Where the recorded script rebinds `prev` (read from the trace's header).
    pub rebind: PrevRebind,
    /// The trace line of the first event of the script (`N = id(0)`'s I line).
    pub line: u64,
    /// The check of every free-list event before it.
    pub report: crate::check::CheckReport,
}

/// Replays the PYREC trace of a seed run up to the script's first int, `N = id(0)`: the
/// first I line, after `_PyInt_Init`, whose value is the address of the cached 0.
///
/// # Errors
/// An unreadable trace, a model refusal, a trace without such a line.
pub fn seed_start_from_trace(
    path: &std::path::Path,
) -> Result<SeedStart, crate::check::CheckError> {
    use crate::check::pyrec27::Py27Replay;
    use crate::trace::pyrec27::Pyrec27Reader;
    use crate::trace::{EventKind, EventReader, FreeListKind};
    let mut reader = Pyrec27Reader::open(path)?;
    let mut replay = Py27Replay::new(crate::platform::Platform::linux_x86_64(), false);
    let mut index = 0u64;
    while let Some(ev) = reader.next_event()? {
        if let EventKind::ObjPop {
            kind: FreeListKind::Int,
            value,
            ..
        } = ev.kind
        {
            if replay.small_ints_done() && replay.small_int(0).map(|a| a.0 as i64) == Some(value) {
                let rebind = rebind_of(&reader.header().lines);
                return Ok(SeedStart {
                    report: replay.report.clone(),
                    python: replay.into_python(),
                    rebind,
                    line: ev.line,
                });
            }
        }
        replay.apply(&ev, index)?;
        index += 1;
    }
    Err(crate::check::CheckError::Unsupported(format!(
        "{}: no `N = id(0)` (an I line whose value is id(0)) after _PyInt_Init",
        path.display()
    )))
}

/// Reads where the script quoted in a trace header rebinds `prev`: deeper than the
/// `if diff != prev:` line means inside it.
fn rebind_of(header: &[String]) -> PrevRebind {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;

    #[test]
    fn in_block_rows_step_by_the_object_size_and_blocks_jump() {
        let mut py = Python::v2_7(Platform::macos_x86_64()).unwrap();
        let size = py.ints().layout().object_size as i64;
        let run = seed(&mut py, PrevRebind::InsideIf).unwrap();
        assert_eq!(run.offsets[1].1, size);
        assert_eq!(run.changes[0].diff.value, size);
        let n = py.ints().layout().n_objects as i64;
        // The first jump is between the last int of block 0 and the first of block 1.
        assert_eq!(run.changes[1].i, n - 5);
    }
}
