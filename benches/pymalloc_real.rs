//! The honest speed anchor: the same pre-decoded events of CPython 3.11.7's ints.trace.gz
//! replayed, in one process and alternating, through
//! - the model: the pinned pymalloc replay (`Replayer::run_at`, every event of
//!   the recording: O/M calls, the `A`/`F` arena lines and nested `r` calls they carry), and
//! - the real thing: this machine's CPython 3.11 (embedded through pyo3-ffi, as
//!   `pyalloc record` embeds it, and initialised), its `PyObject_Malloc` / `Calloc` /
//!   `Realloc` / `Free` called for every O/M call, recorded addresses mapped to the real
//!   ones through slot numbers decoded beforehand (so the real side pays no map lookup).
//!
//! ```text
//!   PYALLOC_BENCH_ROUNDS=15 cargo bench --features record --bench pymalloc_real
//! ```
//! prints each side's best round (thread CPU time) in ns per O/M call and the ratio
//! model / real, then times both under criterion. Untimed on both sides: a round's
//! starting state and its teardown (the fresh model built before the clock starts and
//! dropped after it stops; the blocks the trace leaves live in the interpreter freed after
//! each real round, so every round starts from the same interpreter state).
//!
//! What is fair and what is not: both sides run the same pre-decoded events, in the same
//! process, alternating. The model does more: every event (the nested raw, arena and
//! data-stack lines too), each address compared with the recording. The real side does
//! one thing the model does not: it maps each block to the pointer CPython returned
//! through the slot table (the model's addresses are the recorded ones); that harness is
//! timed alone, without CPython, and printed beside, as `model / (real - harness)`.

#[path = "../tests/common/mod.rs"]
mod common;
use common::thread_cpu_time;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pyalloc::pymalloc::PymallocParams;
use pyalloc::replay::{Addresses as Mode, Flow, Replayer, Step};
use pyalloc::trace::open::open;
use pyalloc::trace::packed::PackedEvents;
use pyalloc::trace::{Domain, EventKind};
use pyalloc::Platform;
use std::collections::HashMap;
use std::ffi::c_void;
use std::path::Path;
use std::time::Instant;

const INTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/traces/cpython-3.11.7-linux-x86_64/ints.trace.gz"
);

/// One O/M call, the blocks it names turned into slot numbers (`NONE`: NULL).
#[derive(Clone, Copy)]
enum Op {
    Malloc {
        size: usize,
        slot: u32,
    },
    Calloc {
        nelem: usize,
        elsize: usize,
        slot: u32,
    },
    Realloc {
        old: u32,
        size: usize,
        slot: u32,
    },
    Free {
        slot: u32,
    },
}

const NONE: u32 = u32::MAX;

/// The O/M calls of the events as a slot program, and the number of slots.
fn slot_program(events: &PackedEvents) -> (Vec<Op>, usize) {
    let mut ops = Vec::new();
    let mut slot_of: HashMap<u64, u32> = HashMap::new();
    let mut slots = 0u32;
    let mut new_slot = |addr: u64, slot_of: &mut HashMap<u64, u32>| {
        slots += 1;
        if addr != 0 {
            slot_of.insert(addr, slots - 1);
        }
        slots - 1
    };
    let om = |d: Domain| matches!(d, Domain::Obj | Domain::Mem);
    for e in events {
        match e.kind {
            EventKind::Malloc { domain, size, addr } if om(domain) => {
                let slot = new_slot(addr.0, &mut slot_of);
                ops.push(Op::Malloc {
                    size: size as usize,
                    slot,
                });
            }
            EventKind::Calloc {
                domain,
                nelem,
                elsize,
                addr,
            } if om(domain) => {
                let slot = new_slot(addr.0, &mut slot_of);
                ops.push(Op::Calloc {
                    nelem: nelem as usize,
                    elsize: elsize as usize,
                    slot,
                });
            }
            EventKind::Realloc {
                domain,
                old,
                size,
                new,
            } if om(domain) => {
                let old = match old.0 {
                    0 => NONE,
                    a => slot_of.remove(&a).expect("realloc of a live block"),
                };
                let slot = new_slot(new.0, &mut slot_of);
                ops.push(Op::Realloc {
                    old,
                    size: size as usize,
                    slot,
                });
            }
            EventKind::Free { domain, addr } if om(domain) && addr.0 != 0 => {
                let slot = slot_of.remove(&addr.0).expect("free of a live block");
                ops.push(Op::Free { slot });
            }
            _ => {}
        }
    }
    (ops, slots as usize)
}

/// A fresh pinned model (built before the clock starts, as the real interpreter's state
/// exists before its round).
fn fresh_model(params: &PymallocParams, platform: &Platform) -> Replayer {
    Replayer::new(params.clone(), Mode::Pinned, platform)
}

/// The pinned model `rp` (fresh) through every event (`Replayer::run_at`: the calls that
/// matched quietly are counted in its loop, the other steps come back); returns how many
/// calls matched.
fn replay_model(rp: &mut Replayer, events: &PackedEvents) -> u64 {
    let mut matched = 0;
    let quiet = rp.run_at(events, 0..events.len(), |_, step| {
        if let Step::Call { matched: true, .. } = step {
            matched += 1;
        }
        Flow::Next
    });
    quiet.calls + matched
}

/// The slot program through the embedded interpreter's pymalloc; returns the last block.
fn replay_real(ops: &[Op], slots: &mut [usize]) -> usize {
    use pyo3_ffi::{PyObject_Calloc, PyObject_Free, PyObject_Malloc, PyObject_Realloc};
    let p = |s: u32, slots: &[usize]| match s {
        NONE => std::ptr::null_mut(),
        s => slots[s as usize] as *mut c_void,
    };
    // SAFETY: the interpreter is initialised and this thread holds the GIL; every pointer
    // passed to Realloc/Free was returned by this round and not freed since (the slot
    // program follows the recording's lifetimes).
    unsafe {
        for &op in ops {
            match op {
                Op::Malloc { size, slot } => slots[slot as usize] = PyObject_Malloc(size) as usize,
                Op::Calloc {
                    nelem,
                    elsize,
                    slot,
                } => slots[slot as usize] = PyObject_Calloc(nelem, elsize) as usize,
                Op::Realloc { old, size, slot } => {
                    slots[slot as usize] = PyObject_Realloc(p(old, slots), size) as usize
                }
                Op::Free { slot } => PyObject_Free(p(slot, slots)),
            }
        }
    }
    slots.last().copied().unwrap_or(0)
}

/// The real side's harness alone: the same walk of the slot program, its slot writes and
/// reads, with no allocator called (a malloc stores a stand-in pointer). What of the real
/// side's time is not CPython's: the model side has no such map (its addresses are the
/// recorded ones).
fn replay_harness(ops: &[Op], slots: &mut [usize]) -> usize {
    let mut seen = 0usize;
    for &op in ops {
        match op {
            Op::Malloc { size, slot } => slots[slot as usize] = size,
            Op::Calloc { nelem, slot, .. } => slots[slot as usize] = nelem,
            Op::Realloc { old, size, slot } => {
                if old != NONE {
                    seen ^= slots[old as usize];
                }
                slots[slot as usize] = size;
            }
            Op::Free { slot } => seen ^= black_box(slots[slot as usize]),
        }
    }
    seen
}

/// Frees what the real replay left live, so that every round starts from the same
/// interpreter state; untimed (the model starts each round afresh for free); returns how
/// many blocks it freed.
fn free_live(ops: &[Op], slots: &[usize], live: &mut [bool]) -> usize {
    live.fill(false);
    for &op in ops {
        match op {
            Op::Malloc { slot, .. } | Op::Calloc { slot, .. } => live[slot as usize] = true,
            Op::Realloc { old, slot, .. } => {
                if old != NONE {
                    live[old as usize] = false;
                }
                live[slot as usize] = true;
            }
            Op::Free { slot } => live[slot as usize] = false,
        }
    }
    let mut n = 0;
    for (k, &l) in live.iter().enumerate() {
        if l && slots[k] != 0 {
            // SAFETY: a block of this round, still live.
            unsafe { pyo3_ffi::PyObject_Free(slots[k] as *mut c_void) };
            n += 1;
        }
    }
    n
}

/// Starts the embedded interpreter (this thread then holds the GIL).
fn initialise() {
    // SAFETY: called once, before any other Python C API call of this process.
    unsafe {
        if pyo3_ffi::Py_IsInitialized() == 0 {
            pyo3_ffi::Py_InitializeEx(0);
        }
    }
}

fn anchor(c: &mut Criterion) {
    initialise();
    let packed = PackedEvents::read(open(Path::new(INTS)).unwrap().as_mut()).unwrap();
    let (ops, nslots) = slot_program(&packed);
    let platform = Platform::linux_x86_64();
    let params = PymallocParams::for_release("3.11.7").unwrap();
    let calls = ops.len() as f64;
    let mut slots = vec![0usize; nslots];
    let mut live = vec![false; nslots];

    // the model must be exact on these events before its speed means anything
    let matched = replay_model(&mut fresh_model(&params, &platform), &packed);
    assert!(
        matched as usize >= ops.len(),
        "{matched} of {} calls matched",
        ops.len()
    );

    let rounds: usize = std::env::var("PYALLOC_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    // Each side's best round by the thread's CPU clock (the machine is shared: wall time
    // would count the rounds spent descheduled). Untimed on both sides: building the state
    // a round starts from (a fresh model; the interpreter with this round's blocks freed)
    // and tearing it down.
    let (mut model, mut real, mut harness) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let mut rp = fresh_model(&params, &platform);
        let t = thread_cpu_time();
        black_box(replay_model(&mut rp, &packed));
        model = model.min((thread_cpu_time() - t).as_secs_f64());
        drop(rp);
        let t = thread_cpu_time();
        black_box(replay_real(&ops, &mut slots));
        real = real.min((thread_cpu_time() - t).as_secs_f64());
        free_live(&ops, &slots, &mut live);
        let t = thread_cpu_time();
        black_box(replay_harness(&ops, &mut slots));
        harness = harness.min((thread_cpu_time() - t).as_secs_f64());
    }
    eprintln!(
        "ints.trace.gz: {} events, {} O/M calls; best of {rounds} alternating rounds \
         (thread CPU time): model (pinned pymalloc, every event) {:.2} ms = {:.1} ns/call, \
         real CPython {} pymalloc {:.2} ms = {:.1} ns/call (of which the slot-program \
         harness alone {:.2} ms); model / real = {:.2} (model / (real - harness) = {:.2})",
        packed.len(),
        ops.len(),
        model * 1e3,
        model * 1e9 / calls,
        pyalloc_python_version(),
        real * 1e3,
        real * 1e9 / calls,
        harness * 1e3,
        model / real,
        model / (real - harness)
    );

    let mut g = c.benchmark_group("pymalloc: model against real CPython");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ops.len() as u64));
    g.bench_function("model: pinned replay of ints.trace.gz", |b| {
        b.iter_batched(
            || fresh_model(&params, &platform),
            |mut rp| {
                let matched = replay_model(&mut rp, &packed);
                // Returned, so the model is dropped outside the measurement.
                (rp, black_box(matched))
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function(
        "real: PyObject_Malloc/Realloc/Free on the same calls",
        |b| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    black_box(replay_real(&ops, &mut slots));
                    spent += t.elapsed();
                    free_live(&ops, &slots, &mut live);
                }
                spent
            })
        },
    );
    g.finish();
}

fn pyalloc_python_version() -> String {
    // SAFETY: Py_GetVersion returns a static NUL-terminated string.
    let v = unsafe { std::ffi::CStr::from_ptr(pyo3_ffi::Py_GetVersion()) };
    v.to_string_lossy()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

criterion_group!(benches, anchor);
criterion_main!(benches);
