//! `compare`: one trace replayed through several whole-stack models at once, and the
//! footprint each predicts over time.
//!
//! ```text
//!  trace ──decode once──▶ translate: recorded address → block id, live bytes ──batches──┬─▶ model 1 (thread) ─┐
//!                         (one pass, on the trace's job)                                ├─▶ model 2 (thread) ─┼─▶ ModelRun
//!                                                                                       └─▶ model 3 (thread) ─┘
//!  many traces: one job each on rayon's pool; memory per job: a batch in flight per model,
//!  the live blocks' ids, the samples (at most 2 × MAX_SAMPLES per model)
//! ```
//! Which events reach the models: every top-level call (`O`, `M` through pymalloc where
//! the stack has it; `R`, C library calls, 2.7 int/float blocks to the system allocator),
//! and the data-stack mappings (`V`/`W`). Nested calls (`r`) and pymalloc's own `A`/`F`
//! lines are what a model decides for itself, so they are not replayed.
//!
//! Invariants: `live` is the program's (the same for every model): Σ sizes of live
//! top-level blocks; each model's `peak_x ≥ final_x`; a marker row is taken right after the
//! request that makes it is served (and written).

use crate::addr::Addr;
use crate::error::AllocError;
use crate::progress::Progress;
use crate::stack::{Route, Stack, StackSpec};
use crate::trace::{open::open, Domain, Event, EventKind, TraceError};
use crate::vm::{ProcessLayout, Syscalls};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

/// Samples kept per model for plots (the stride doubles when twice as many are taken).
pub const MAX_SAMPLES: usize = 1000;

/// Steps per batch handed to the models.
const BATCH: usize = 8192;

/// How to compare.
#[derive(Debug, Clone, Default)]
pub struct CompareOptions {
    /// Request sizes that mark phases (`--at-marker`): a row each time a top-level request
    /// of exactly that many bytes is served.
    pub markers: Vec<u64>,
    /// Show progress (the CLI sets it only when stderr is a terminal).
    pub progress: bool,
}

/// The footprint at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Events read before this moment (0-based index of the event just replayed, + 1).
    pub event: u64,
    /// Bytes the program asked for and has not freed.
    pub live: u64,
    /// Address space held from the system.
    pub mapped: u64,
    /// Bytes of pages written and not given back.
    pub resident: u64,
}

/// A row taken at a marker request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MarkerRow {
    /// The request's size.
    pub size: u64,
    /// Its 0-based event number.
    pub event: u64,
    /// Live bytes right after it.
    pub live: u64,
    /// Mapped bytes right after it.
    pub mapped: u64,
    /// Resident bytes right after it.
    pub resident: u64,
}

/// One model's run over one trace.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRun {
    /// The model's name, as given.
    pub model: String,
    /// Largest live bytes.
    pub peak_live: u64,
    /// Largest mapped bytes.
    pub peak_mapped: u64,
    /// Largest resident bytes.
    pub peak_resident: u64,
    /// Live bytes at the end.
    pub final_live: u64,
    /// Mapped bytes at the end.
    pub final_mapped: u64,
    /// Resident bytes at the end.
    pub final_resident: u64,
    /// `resident / live - 1` when live was at its peak (first reached).
    pub fragmentation_at_peak: f64,
    /// `resident / live - 1` at the end (0 when nothing is live).
    #[serde(skip)]
    pub fragmentation_at_end: f64,
    /// System calls made.
    pub syscalls: Syscalls,
    /// Seconds the model spent replaying.
    pub seconds: f64,
    /// A row per marker request.
    pub markers: Vec<MarkerRow>,
    /// Footprint samples over event time (for plots).
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// One trace through every model.
#[derive(Debug, Clone, Serialize)]
pub struct TraceRun {
    /// The trace's path, as given.
    pub trace: String,
    /// Events read.
    pub events: u64,
    /// One run per model, in the order given.
    pub models: Vec<ModelRun>,
}

/// Why a comparison stopped.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The trace could not be read.
    #[error("{path}: {source}")]
    Trace {
        /// The trace.
        path: String,
        /// What went wrong.
        source: TraceError,
    },
    /// A bad model name.
    #[error("{0}")]
    Model(String),
    /// A header line the models read (`# maps:`, `# heap:`) that does not parse.
    #[error("{path}: {message}")]
    Header {
        /// The trace.
        path: String,
        /// Which line and why.
        message: String,
    },
    /// The trace frees or reallocs an address it does not hold.
    #[error("{path}: event {event} (line {line}): {op} of {addr}, which the trace never allocated (or already freed)")]
    NeverAllocated {
        /// The trace.
        path: String,
        /// 0-based event.
        event: u64,
        /// 1-based line (0 for binary traces).
        line: u64,
        /// `free`, `realloc` or `munmap`.
        op: &'static str,
        /// The recorded address.
        addr: Addr,
    },
    /// A model refused a call.
    #[error("{path}: model {model}: event {event} (line {line}): {source}")]
    Refused {
        /// The trace.
        path: String,
        /// The model.
        model: String,
        /// 0-based event.
        event: u64,
        /// 1-based line.
        line: u64,
        /// The model's error.
        source: AllocError,
    },
}

/// A call as every model sees it: recorded addresses replaced by block ids.
#[derive(Debug, Clone, Copy)]
enum Op {
    Malloc {
        route: Route,
        id: u32,
        size: u64,
    },
    Calloc {
        route: Route,
        id: u32,
        nelem: u64,
        elsize: u64,
    },
    Realloc {
        route: Route,
        old: u32,
        id: u32,
        size: u64,
    },
    Free {
        route: Route,
        id: u32,
    },
    Memalign {
        id: u32,
        align: u64,
        size: u64,
    },
    Mallopt {
        param: i64,
        value: i64,
    },
    Map {
        id: u32,
        size: u64,
    },
    Unmap {
        id: u32,
        size: u64,
    },
}

/// An op with where it came from and what the program holds after it.
#[derive(Debug, Clone, Copy)]
struct Step {
    op: Op,
    event: u64,
    line: u64,
    live: u64,    // the program's live bytes after the call
    marker: bool, // a marker request
}

/// No block (a `realloc(NULL, n)`).
const NO_ID: u32 = u32::MAX;

/// A hasher for addresses that keeps neighbours neighbours: the bucket index is the address
/// in 16-byte granules (blocks made one after another land in adjacent buckets, so the
/// table is walked, not jumped through), its low 7 bits repeated on top for the table's
/// tag byte.
#[derive(Default)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        let g = v >> 4;
        self.0 = g ^ (g << 57);
    }
}

type AddrIds = HashMap<u64, u32, std::hash::BuildHasherDefault<AddrHasher>>;

/// Recorded addresses → block ids (reused), and the program's live bytes.
#[derive(Default)]
struct Translator {
    ids: AddrIds,       // recorded address of a live block -> its id
    sizes: Vec<u64>,    // id -> bytes asked for
    free_ids: Vec<u32>, // ids to reuse
    live: u64,
}

impl Translator {
    fn born(&mut self, addr: Addr, size: u64) -> u32 {
        let id = self.free_ids.pop().unwrap_or_else(|| {
            self.sizes.push(0);
            (self.sizes.len() - 1) as u32
        });
        self.sizes[id as usize] = size;
        self.live += size;
        self.ids.insert(addr.0, id);
        id
    }

    fn dies(&mut self, addr: Addr) -> Option<u32> {
        let id = self.ids.remove(&addr.0)?;
        self.live -= self.sizes[id as usize];
        self.free_ids.push(id);
        Some(id)
    }
}

/// One model replaying steps.
struct Runner {
    name: String,
    stack: Stack,
    addrs: Vec<u64>, // block id -> the model's address
    run: ModelRun,
    stride: u64,      // events between samples
    next_sample: u64, // the event at which the next sample is taken
    seconds: f64,
}

impl Runner {
    fn new(name: &str, stack: Stack) -> Runner {
        Runner {
            name: name.to_string(),
            stack,
            addrs: Vec::new(),
            run: ModelRun {
                model: name.to_string(),
                peak_live: 0,
                peak_mapped: 0,
                peak_resident: 0,
                final_live: 0,
                final_mapped: 0,
                final_resident: 0,
                fragmentation_at_peak: 0.0,
                fragmentation_at_end: 0.0,
                syscalls: Syscalls::default(),
                seconds: 0.0,
                markers: Vec::new(),
                samples: Vec::new(),
            },
            stride: 256,
            next_sample: 0,
            seconds: 0.0,
        }
    }

    #[inline]
    fn set(&mut self, id: u32, a: Addr) {
        let i = id as usize;
        if i >= self.addrs.len() {
            self.addrs.resize(i + 1, 0);
        }
        self.addrs[i] = a.0;
    }

    #[inline]
    fn get(&self, id: u32) -> Addr {
        Addr(self.addrs[id as usize])
    }

    fn apply(&mut self, op: Op) -> Result<(), AllocError> {
        match op {
            Op::Malloc { route, id, size } => {
                let a = self.stack.malloc(route, size)?;
                self.set(id, a);
            }
            Op::Calloc {
                route,
                id,
                nelem,
                elsize,
            } => {
                let a = self.stack.calloc(route, nelem, elsize)?;
                self.set(id, a);
            }
            Op::Realloc {
                route,
                old,
                id,
                size,
            } => {
                let from = if old == NO_ID {
                    Addr::NULL
                } else {
                    self.get(old)
                };
                let a = self.stack.realloc(route, from, size)?;
                self.set(id, a);
            }
            Op::Free { route, id } => self.stack.free(route, self.get(id))?,
            Op::Memalign { id, align, size } => {
                let a = self.stack.memalign(align, size)?;
                self.set(id, a);
            }
            Op::Mallopt { param, value } => self.stack.mallopt(param, value),
            Op::Map { id, size } => {
                let a = self.stack.map(size)?;
                self.set(id, a);
            }
            Op::Unmap { id, size } => self.stack.unmap(self.get(id), size)?,
        }
        Ok(())
    }

    fn steps(&mut self, steps: &[Step]) -> Result<(), (u64, u64, AllocError)> {
        let t = Instant::now();
        for s in steps {
            self.apply(s.op).map_err(|e| (s.event, s.line, e))?;
            let mapped = self.stack.mapped();
            let resident = self.stack.resident();
            let r = &mut self.run;
            if s.live > r.peak_live {
                r.peak_live = s.live;
                r.fragmentation_at_peak = resident as f64 / s.live as f64 - 1.0;
            }
            r.peak_mapped = r.peak_mapped.max(mapped);
            r.peak_resident = r.peak_resident.max(resident);
            if s.marker {
                let size = match s.op {
                    Op::Malloc { size, .. }
                    | Op::Realloc { size, .. }
                    | Op::Memalign { size, .. } => size,
                    Op::Calloc { nelem, elsize, .. } => nelem * elsize,
                    _ => 0,
                };
                r.markers.push(MarkerRow {
                    size,
                    event: s.event,
                    live: s.live,
                    mapped,
                    resident,
                });
            }
            r.final_live = s.live;
            r.final_mapped = mapped;
            r.final_resident = resident;
            if s.event >= self.next_sample {
                self.sample(Sample {
                    event: s.event + 1,
                    live: s.live,
                    mapped,
                    resident,
                });
            }
        }
        self.seconds += t.elapsed().as_secs_f64();
        Ok(())
    }

    /// Keeps a sample; past twice the limit, every other one goes and the stride doubles.
    fn sample(&mut self, s: Sample) {
        let v = &mut self.run.samples;
        v.push(s);
        if v.len() >= 2 * MAX_SAMPLES {
            let kept: Vec<Sample> = v.iter().step_by(2).copied().collect();
            *v = kept;
            self.stride *= 2;
        }
        self.next_sample = s.event - 1 + self.stride;
    }

    fn finish(mut self, events: u64) -> ModelRun {
        let last = Sample {
            event: events,
            live: self.run.final_live,
            mapped: self.run.final_mapped,
            resident: self.run.final_resident,
        };
        if self.run.samples.last() != Some(&last) {
            self.run.samples.push(last);
        }
        let r = &mut self.run;
        r.fragmentation_at_end = if r.final_live > 0 {
            r.final_resident as f64 / r.final_live as f64 - 1.0
        } else {
            0.0
        };
        r.syscalls = self.stack.syscalls();
        r.seconds = self.seconds;
        self.run
    }
}

/// Parses every model name first (so a bad one stops before any work).
///
/// # Errors
/// The first bad name's message.
pub fn parse_models(names: &[String]) -> Result<Vec<(String, StackSpec)>, String> {
    names
        .iter()
        .map(|n| StackSpec::parse(n).map(|s| (n.clone(), s)))
        .collect()
}

/// Replays every trace through every model: one job per trace on rayon's pool, the
/// models of a trace on threads of their own.
///
/// # Errors
/// The first trace that fails, with its path.
pub fn compare(
    paths: &[String],
    models: &[(String, StackSpec)],
    opts: &CompareOptions,
) -> Result<Vec<TraceRun>, CompareError> {
    use rayon::prelude::*;
    paths
        .par_iter()
        .map(|p| compare_trace(p, models, opts))
        .collect()
}

/// Replays one trace through every model.
///
/// # Errors
/// See [`CompareError`].
pub fn compare_trace(
    path: &str,
    models: &[(String, StackSpec)],
    opts: &CompareOptions,
) -> Result<TraceRun, CompareError> {
    let terr = |source| CompareError::Trace {
        path: path.to_string(),
        source,
    };
    let mut reader = open(Path::new(path)).map_err(terr)?;
    // a recording that says where the process's other mappings and its heap's top were:
    // each model's process takes that shape (vm::ProcessLayout)
    let header = reader.header();
    let layout = ProcessLayout::from_header(header.get("maps"), header.get("heap")).and_then(|l| {
        models
            .iter()
            .map(|(n, s)| s.build_in(&l).map(|st| Runner::new(n, st)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("`# maps:` line: {e}"))
    });
    let runners = layout.map_err(|message| CompareError::Header {
        path: path.to_string(),
        message,
    })?;
    let mut tr = Translator::default();
    tr.ids.reserve(1 << 16);
    let bar = Progress::new(opts.progress, "comparing");
    let mut events = 0u64;
    std::thread::scope(|scope| {
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        for mut r in runners {
            let (tx, rx) = sync_channel::<Arc<Vec<Step>>>(4);
            txs.push(tx);
            handles.push(
                scope.spawn(move || -> Result<Runner, (Runner, u64, u64, AllocError)> {
                    let rx: Receiver<Arc<Vec<Step>>> = rx;
                    for batch in rx {
                        if let Err((ev, line, e)) = r.steps(&batch) {
                            return Err((r, ev, line, e));
                        }
                    }
                    Ok(r)
                }),
            );
        }
        let mut buf = vec![
            Event {
                kind: EventKind::Mark { index: 0 },
                line: 0
            };
            4096
        ];
        let mut steps = Vec::with_capacity(BATCH);
        let mut read_err = None;
        'read: loop {
            let n = match reader.next_events(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    read_err = Some(terr(e));
                    break;
                }
            };
            for e in &buf[..n] {
                match translate(&mut tr, e, events, &opts.markers) {
                    Ok(Some(s)) => steps.push(s),
                    Ok(None) => {}
                    Err((op, addr)) => {
                        read_err = Some(CompareError::NeverAllocated {
                            path: path.to_string(),
                            event: events,
                            line: e.line,
                            op,
                            addr,
                        });
                        break 'read;
                    }
                }
                events += 1;
            }
            if steps.len() >= BATCH {
                let b = Arc::new(std::mem::replace(&mut steps, Vec::with_capacity(BATCH)));
                if txs.iter().any(|tx| tx.send(b.clone()).is_err()) {
                    break; // a model stopped: its error is reported below
                }
            }
            bar.set(events);
        }
        if !steps.is_empty() {
            let b = Arc::new(steps);
            for tx in &txs {
                let _ = tx.send(b.clone());
            }
        }
        drop(txs);
        bar.finish();
        let mut runs = Vec::new();
        let mut first_err = read_err;
        for h in handles {
            match h.join().expect("a model thread panicked") {
                Ok(r) => runs.push(r.finish(events)),
                Err((r, event, line, source)) => {
                    if first_err.is_none() {
                        first_err = Some(CompareError::Refused {
                            path: path.to_string(),
                            model: r.name.clone(),
                            event,
                            line,
                            source,
                        });
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(TraceRun {
                trace: path.to_string(),
                events,
                models: runs,
            }),
        }
    })
}

/// The step an event makes, if any; `Err` names a free of an address not live.
fn translate(
    tr: &mut Translator,
    e: &Event,
    event: u64,
    markers: &[u64],
) -> Result<Option<Step>, (&'static str, Addr)> {
    let route = |d: Domain| match d {
        Domain::Obj | Domain::Mem => Some(Route::Object),
        Domain::Raw | Domain::Libc => Some(Route::System),
        Domain::RawNested => None,
    };
    let mut request = 0u64;
    let op = match e.kind {
        EventKind::Malloc { domain, size, addr } => {
            let Some(route) = route(domain) else {
                return Ok(None);
            };
            if addr.is_null() {
                return Ok(None);
            }
            request = size;
            Op::Malloc {
                route,
                id: tr.born(addr, size),
                size,
            }
        }
        EventKind::BlockNew { size, addr, .. } => {
            request = size;
            Op::Malloc {
                route: Route::System,
                id: tr.born(addr, size),
                size,
            }
        }
        EventKind::Calloc {
            domain,
            nelem,
            elsize,
            addr,
        } => {
            let Some(route) = route(domain) else {
                return Ok(None);
            };
            if addr.is_null() {
                return Ok(None);
            }
            request = nelem.saturating_mul(elsize);
            Op::Calloc {
                route,
                id: tr.born(addr, request),
                nelem,
                elsize,
            }
        }
        EventKind::Memalign { align, size, addr } => {
            request = size;
            Op::Memalign {
                id: tr.born(addr, size),
                align,
                size,
            }
        }
        EventKind::Valloc { size, addr } | EventKind::Pvalloc { size, addr } => {
            request = size;
            Op::Memalign {
                id: tr.born(addr, size),
                align: 4096,
                size,
            }
        }
        EventKind::Free { domain, addr } => {
            let Some(route) = route(domain) else {
                return Ok(None);
            };
            if addr.is_null() {
                return Ok(None);
            }
            Op::Free {
                route,
                id: tr.dies(addr).ok_or(("free", addr))?,
            }
        }
        EventKind::ClearFree { addr, .. } => Op::Free {
            route: Route::System,
            id: tr.dies(addr).ok_or(("free", addr))?,
        },
        EventKind::Realloc {
            domain,
            old,
            size,
            new,
        } => {
            let Some(route) = route(domain) else {
                return Ok(None);
            };
            if new.is_null() && (size > 0 || old.is_null()) {
                return Ok(None); // failed, or realloc(NULL, 0) = NULL: nothing changed
            }
            let old_id = if old.is_null() {
                NO_ID
            } else {
                tr.dies(old).ok_or(("realloc", old))?
            };
            if new.is_null() {
                // realloc(p, 0) that freed p
                Op::Free { route, id: old_id }
            } else {
                request = size;
                Op::Realloc {
                    route,
                    old: old_id,
                    id: tr.born(new, size),
                    size,
                }
            }
        }
        EventKind::Mallopt { param, value, .. } => Op::Mallopt { param, value },
        EventKind::VirtualAlloc { size, addr } => {
            if addr.is_null() {
                return Ok(None);
            }
            // a mapping, not a request: its bytes do not count as live
            let id = tr.born(addr, 0);
            Op::Map { id, size }
        }
        EventKind::VirtualFree { addr, size } => Op::Unmap {
            id: tr.dies(addr).ok_or(("munmap", addr))?,
            size,
        },
        _ => return Ok(None),
    };
    Ok(Some(Step {
        op,
        event,
        line: e.line,
        live: tr.live,
        marker: request > 0 && markers.contains(&request),
    }))
}
