//! Criterion benches of the glibc model: replaying every malloc/calloc/realloc/free call
//! of CPython 3.11's ints.trace.gz (all domains sent to glibc, as under
//! `PYTHONMALLOC=malloc`; nested raw lines are the same calls seen twice and are skipped),
//! pre-decoded so that only the model is timed; and reading a glibc trace file.
//!
//! `cargo bench --bench glibc` reports time per replay and events/s (Throughput): a fresh
//! model (its tables grow and page-fault as the heap does), a model `reset` between
//! replays (tables kept: the per-call cost), and this machine's real glibc on the same
//! events. `PYALLOC_BENCH_INTERLEAVED=1` also prints the three interleaved, best of 15,
//! and the model / real ratios; `PYALLOC_BENCH_PROFILE=fresh|reset|real[:N]` runs two (N)
//! replays of one side after a warm-up and exits (for callgrind or perf). Every side is timed on the trace's calls only: the real
//! glibc's frees of the blocks the trace leaves live happen outside the timing, as the
//! model's `reset` does.

#[path = "../tests/common/mod.rs"]
mod common;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pyalloc::sysmalloc::glibc::{Glibc, GlibcParams};
use pyalloc::trace::glibc::GlibcTraceReader;
use pyalloc::trace::{EventReader, LineReader};
use pyalloc::{Addr, Allocator, Platform};
use std::collections::HashMap;
use std::path::Path;

/// One call, with the allocations it names turned into slot numbers.
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

/// Decodes the m/c/r/f lines of a CPython 3 trace (domains O, M, R) into slot programs.
fn decode(path: &Path) -> (Vec<Op>, usize) {
    let mut r = LineReader::open(path).expect("ints.trace.gz");
    let mut ops = Vec::new();
    let mut slot_of: HashMap<u64, u32> = HashMap::new();
    let mut slots = 0u32;
    let mut new_slot = |addr: u64, slot_of: &mut HashMap<u64, u32>| {
        let s = slots;
        slots += 1;
        if addr != 0 {
            slot_of.insert(addr, s);
        }
        s
    };
    let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
    while let Some(line) = r.next_line().unwrap() {
        let f: Vec<&str> = line.split(' ').collect();
        if line.starts_with('#') || f.len() < 3 || !matches!(f[1], "O" | "M" | "R") {
            continue;
        }
        match f[0] {
            "m" => {
                let slot = new_slot(hex(f[3]), &mut slot_of);
                ops.push(Op::Malloc {
                    size: f[2].parse().unwrap(),
                    slot,
                });
            }
            "c" => {
                let slot = new_slot(hex(f[4]), &mut slot_of);
                ops.push(Op::Calloc {
                    nelem: f[2].parse().unwrap(),
                    elsize: f[3].parse().unwrap(),
                    slot,
                });
            }
            "r" => {
                let old = hex(f[2]);
                let size: usize = f[3].parse().unwrap();
                let old = if old == 0 {
                    u32::MAX
                } else {
                    slot_of.remove(&old).expect("realloc of a known block")
                };
                let slot = new_slot(hex(f[4]), &mut slot_of);
                ops.push(Op::Realloc { old, size, slot });
            }
            "f" => {
                let a = hex(f[2]);
                if a != 0 {
                    let slot = slot_of.remove(&a).expect("free of a known block");
                    ops.push(Op::Free { slot });
                }
            }
            _ => {}
        }
    }
    (ops, slots as usize)
}

/// Replays a slot program through a fresh model; returns the final break (so nothing is
/// optimised away).
fn replay(ops: &[Op], slots: &mut [Addr]) -> Addr {
    let mut g = Glibc::new(
        GlibcParams::v2_36_x86_64(),
        Platform::linux_x86_64().address_space(),
    );
    replay_on(&mut g, ops, slots)
}

fn replay_on(g: &mut Glibc, ops: &[Op], slots: &mut [Addr]) -> Addr {
    for &op in ops {
        match op {
            Op::Malloc { size, slot } => slots[slot as usize] = g.malloc(size).unwrap(),
            Op::Calloc {
                nelem,
                elsize,
                slot,
            } => slots[slot as usize] = g.calloc(nelem, elsize).unwrap(),
            Op::Realloc { old, size, slot } => {
                let o = if old == u32::MAX {
                    Addr::NULL
                } else {
                    slots[old as usize]
                };
                slots[slot as usize] = g.realloc(o, size).unwrap();
            }
            Op::Free { slot } => g.free(slots[slot as usize]).unwrap(),
        }
    }
    g.address_space().brk()
}

extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn calloc(nelem: usize, elsize: usize) -> *mut u8;
    fn realloc(p: *mut u8, size: usize) -> *mut u8;
    fn free(p: *mut u8);
}

/// Replays the same slot program through this process's own C library malloc (glibc on
/// the Linux machines the traces come from): the allocator the model models, timed on
/// the same events under the same load. Only the program's calls are made here; what it
/// leaves live is freed by [`free_leftovers`], outside the timing (the model is not
/// charged for anything similar: a `reset` forgets its heap at no cost to the replay).
fn replay_libc(ops: &[Op], slots: &mut [usize]) -> usize {
    // SAFETY: every pointer passed to free/realloc was returned by malloc/calloc/realloc
    // of this replay and not freed since (the slot program follows the trace's lifetimes).
    unsafe {
        for &op in ops {
            match op {
                Op::Malloc { size, slot } => slots[slot as usize] = malloc(size) as usize,
                Op::Calloc {
                    nelem,
                    elsize,
                    slot,
                } => slots[slot as usize] = calloc(nelem, elsize) as usize,
                Op::Realloc { old, size, slot } => {
                    let o = if old == u32::MAX {
                        std::ptr::null_mut()
                    } else {
                        slots[old as usize] as *mut u8
                    };
                    slots[slot as usize] = realloc(o, size) as usize;
                }
                Op::Free { slot } => free(slots[slot as usize] as *mut u8),
            }
        }
    }
    slots.len()
}

/// Runs `f`: the frame a profiler's filter names (`PYALLOC_BENCH_PROFILE`).
#[inline(never)]
fn profiled<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The slots a slot program leaves live (allocated and never freed nor reallocated).
fn leftovers(ops: &[Op], nslots: usize) -> Vec<u32> {
    let mut live = vec![false; nslots];
    for &op in ops {
        match op {
            Op::Malloc { slot, .. } | Op::Calloc { slot, .. } => live[slot as usize] = true,
            Op::Free { slot } => live[slot as usize] = false,
            Op::Realloc { old, size, slot } => {
                if old != u32::MAX {
                    live[old as usize] = false;
                }
                // realloc(p, 0) frees p and returns NULL; realloc(NULL, 0) is malloc(0)
                live[slot as usize] = size != 0 || old == u32::MAX;
            }
        }
    }
    (0..nslots as u32).filter(|&k| live[k as usize]).collect()
}

/// Frees what a [`replay_libc`] left live, so that every replay starts from the same heap
/// (untimed: the counterpart of the model's `reset`).
fn free_leftovers(left: &[u32], slots: &[usize]) {
    for &k in left {
        // SAFETY: `left` are the slots the replay allocated and did not free.
        unsafe { free(slots[k as usize] as *mut u8) }
    }
}

fn ints_replay(c: &mut Criterion) {
    let path = &common::trace("cpython-3.11.7-linux-x86_64/ints.trace.gz");
    let (ops, nslots) = decode(path);
    let n = ops.len() as f64;
    let mut slots = vec![Addr::NULL; nslots];
    let mut raw = vec![0usize; nslots];
    let left = leftovers(&ops, nslots);
    let space = || Platform::linux_x86_64().address_space();
    let mut warm = Glibc::new(GlibcParams::v2_36_x86_64(), space());
    if let Ok(side) = std::env::var("PYALLOC_BENCH_PROFILE") {
        // for a profiler: two replays of one side inside `profiled` (callgrind
        // --toggle-collect='*profiled*'), after one untimed replay that grows the tables
        // and warms the real heap, as the timed loops below start warm
        warm.reset(space());
        black_box(replay_on(&mut warm, &ops, &mut slots));
        black_box(replay_libc(&ops, &mut raw));
        free_leftovers(&left, &raw);
        let (side, reps) = side.split_once(':').unwrap_or((&side, "2"));
        for _ in 0..reps
            .parse::<u32>()
            .expect("PYALLOC_BENCH_PROFILE=side:reps")
        {
            match side {
                "fresh" => drop(profiled(|| black_box(replay(&ops, &mut slots)))),
                "reset" => {
                    warm.reset(space());
                    profiled(|| black_box(replay_on(&mut warm, &ops, &mut slots)));
                }
                _ => {
                    profiled(|| black_box(replay_libc(&ops, &mut raw)));
                    free_leftovers(&left, &raw);
                }
            }
        }
        std::process::exit(0);
    }
    if std::env::var_os("PYALLOC_BENCH_INTERLEAVED").is_some() {
        // the machine is shared: alternate the three and keep each one's best run
        let mut best = [f64::MAX; 3];
        for _ in 0..15 {
            let t = std::time::Instant::now();
            black_box(replay(&ops, &mut slots));
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            warm.reset(space());
            let t = std::time::Instant::now();
            black_box(replay_on(&mut warm, &ops, &mut slots));
            best[1] = best[1].min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            black_box(replay_libc(&ops, &mut raw));
            best[2] = best[2].min(t.elapsed().as_secs_f64());
            free_leftovers(&left, &raw);
        }
        eprintln!(
            "{} events; best of 15, ns/event: model fresh {:.1}, model reset {:.1}, real glibc {:.1}; \
             model / real: fresh {:.2}, reset {:.2}",
            ops.len(),
            best[0] * 1e9 / n,
            best[1] * 1e9 / n,
            best[2] * 1e9 / n,
            best[0] / best[2],
            best[1] / best[2]
        );
    }
    let mut g = c.benchmark_group("glibc model");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ops.len() as u64));
    g.bench_function("replay ints.trace.gz, fresh model", |b| {
        b.iter(|| black_box(replay(&ops, &mut slots)))
    });
    g.bench_function("replay ints.trace.gz, model reset (tables kept)", |b| {
        b.iter(|| {
            warm.reset(space());
            black_box(replay_on(&mut warm, &ops, &mut slots))
        })
    });
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        g.bench_function("real glibc on the same events (this machine)", |b| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    let t = std::time::Instant::now();
                    black_box(replay_libc(&ops, &mut raw));
                    spent += t.elapsed();
                    free_leftovers(&left, &raw);
                }
                spent
            })
        });
    }
    g.finish();
}

fn read_glibc_trace(c: &mut Criterion) {
    let path = &common::trace("glibc-2.36-linux-x86_64/synthetic.trace.gz");
    let mut n = 0u64;
    let mut r = GlibcTraceReader::open(path).unwrap();
    while r.next_event().unwrap().is_some() {
        n += 1;
    }
    let mut g = c.benchmark_group("glibc trace reader");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("synthetic.trace.gz (gunzip + parse)", |b| {
        b.iter(|| {
            let mut r = GlibcTraceReader::open(path).unwrap();
            let mut k = 0u64;
            while let Some(e) = r.next_event().unwrap() {
                k += e.line & 1;
            }
            black_box(k)
        })
    });
    g.finish();
}

criterion_group!(benches, ints_replay, read_glibc_trace);
criterion_main!(benches);
