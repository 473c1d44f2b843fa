//! Criterion benches of the glibc model: replaying every malloc/calloc/realloc/free call
//! of CPython 3.11's ints.trace.gz (all domains sent to glibc, as under
//! `PYTHONMALLOC=malloc`; nested raw lines are the same calls seen twice and are skipped),
//! pre-decoded so that only the model is timed; and reading a glibc trace file.
//!
//! `cargo bench --bench glibc` reports time per replay and events/s (Throughput).

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
    if std::env::var_os("PYALLOC_BENCH_VERBOSE").is_some() {
        eprintln!(
            "model tables: {} bytes, brk {}",
            g.model_bytes(),
            g.address_space().brk()
        );
    }
    g.address_space().brk()
}

fn ints_replay(c: &mut Criterion) {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/traces/cpython-3.11.7-linux-x86_64/ints.trace.gz"
    ));
    let (ops, nslots) = decode(path);
    let mut slots = vec![Addr::NULL; nslots];
    eprintln!(
        "{} ops, heap {:#x}",
        ops.len(),
        replay(&ops, &mut slots).0 - Platform::linux_x86_64().heap_start.0
    );
    let mut g = c.benchmark_group("glibc model");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ops.len() as u64));
    g.bench_function("replay ints.trace.gz (all domains to glibc)", |b| {
        b.iter(|| black_box(replay(&ops, &mut slots)))
    });
    g.finish();
}

fn read_glibc_trace(c: &mut Criterion) {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/traces/glibc-2.36-linux-x86_64/synthetic.trace.gz"
    ));
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
