//! Checking pymalloc against the CPython 3 recordings: every O/M call is replayed through
//! the pinned pymalloc [`Replayer`] (replay/pymalloc.rs) and each address of a request of
//! 1..=SMALL_REQUEST_THRESHOLD bytes is compared.
//!
//! ```text
//!  m O 56 7fff77500030   Replayer::step -> Call { checked, matched, os_events }
//!                        checked (a small request); matched: counted; else the first divergence,
//!                        with the model's explanation (arena, pool, size class, free-list head)
//!  f O 12345678          Replayer::step -> Refused: an error at the event (keep-going: a
//!                        divergence)
//! ```
//! The model is named by `--model` (`cpython-3.11`, `3.11+own` …) or by the header's
//! `interpreter:` line; see [`crate::replay::model`].
//! Invariant: `matched <= checked`, and `matched == checked` iff no divergence.

use super::{CheckOptions, CheckReport};
use crate::addr::Addr;
use crate::platform::Platform;
use crate::pymalloc::PymallocParams;
use crate::replay::{
    drive, Addresses, Cause, EventError, Flow, ModelSpec, Replay, ReplayError, Replayer, Source,
    Step,
};
use crate::trace::pymalloc3::Pymalloc3Reader;
use crate::trace::{Event, EventReader, TraceHeader};

/// Chooses the preset and where addresses come from: `--model` (`cpython-3.11`,
/// `3.11+own` …) or the trace header's `interpreter:` line.
///
/// # Errors
/// A name that is not a model, or not a pymalloc preset.
pub fn model_for(
    opts: &CheckOptions,
    header: &TraceHeader,
) -> Result<(PymallocParams, Addresses), ReplayError> {
    let Some(name) = &opts.model else {
        // The whole line: the release and who built it pick the preset (for_release).
        let line = match header.get("interpreter") {
            Some(line) if line.contains("CPython") => line,
            _ => "3.11",
        };
        let params = PymallocParams::for_release(line).ok_or_else(|| {
            ReplayError::Unsupported(format!(
                "the recording's interpreter line {:?} names no CPython release a pymalloc \
                 preset covers; name a preset with --model (such as cpython-3.11)",
                crate::trace::io::excerpt(line)
            ))
        })?;
        return Ok((params, Addresses::Pinned));
    };
    let spec = ModelSpec::parse(name)?;
    let what = "check a CPython 3 recording";
    spec.recorded(what)?;
    match (spec.pymalloc(), &spec.lower) {
        (Some(p), None) => Ok((p.clone(), spec.addresses)),
        (Some(_), Some(_)) => Err(spec
            .not_here(
                what,
                "its raw calls are the recording's; name the pymalloc preset alone",
            )
            .into()),
        (None, _) => Err(spec
            .not_here(
                what,
                "it is not a pymalloc preset; name one such as cpython-3.11 or cpython-3.11+own",
            )
            .into()),
    }
}

/// The comparison rules of a CPython 3 check, over the pinned [`Replayer`].
pub struct Pymalloc3Check {
    rp: Replayer,        // the engine
    report: CheckReport, // the comparisons so far
    refused_why: String, // the context of the model's last refusal
}

impl Pymalloc3Check {
    /// A check of era `params` with addresses from `mode`.
    pub fn new(params: PymallocParams, mode: Addresses) -> Pymalloc3Check {
        Pymalloc3Check {
            rp: Replayer::new(params, mode, &Platform::linux_x86_64()),
            report: CheckReport::default(),
            refused_why: String::new(),
        }
    }

    /// The replay engine (for the model's state).
    pub fn replayer(&self) -> &Replayer {
        &self.rp
    }

    /// The comparisons so far.
    pub fn report(&self) -> &CheckReport {
        &self.report
    }

    /// The comparisons, ending the check.
    pub fn into_report(self) -> CheckReport {
        self.report
    }
}

impl Replay for Pymalloc3Check {
    #[inline(always)]
    fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
        match self.rp.step(ev) {
            Step::Context => Ok(Flow::Next),
            Step::Call {
                expected,
                got,
                checked: small,
                matched,
                os_events: arena_events,
            } => {
                self.report.arena_events += arena_events as u64;
                if small {
                    self.report.checked += 1;
                }
                if matched {
                    if small {
                        self.report.matched += 1;
                    }
                    return Ok(Flow::Next);
                }
                let why = self.rp.take_why().unwrap_or_default();
                self.report.diverge(index, ev.line, expected.0, got.0, why);
                Ok(Flow::Diverged)
            }
            Step::Refused => {
                let (e, why) = self
                    .rp
                    .take_error()
                    .unwrap_or_else(|| (super::refused("pymalloc"), String::new()));
                self.refused_why = why;
                Err(Cause::Model(e))
            }
        }
    }

    fn keep_going(&mut self, err: EventError) {
        let why = super::refusal_reason(&err, &mut self.refused_why);
        self.report.diverge(err.event, err.line, 0, 0, why);
    }

    fn explain(&mut self, addr: Addr) -> Option<String> {
        Some(self.rp.model_mut().explain(addr))
    }
}

/// Replays an opened CPython 3 trace through its model and compares every address.
///
/// # Errors
/// See [`ReplayError`].
pub fn check(mut reader: Pymalloc3Reader, opts: &CheckOptions) -> Result<CheckReport, ReplayError> {
    let name = reader.path().display().to_string();
    check_events(&mut reader, opts, &name)
}

/// [`check`] of an already opened event stream (a binary trace of a CPython 3 recording).
///
/// # Errors
/// See [`ReplayError`].
pub fn check_reader(
    mut reader: Box<dyn EventReader>,
    opts: &CheckOptions,
) -> Result<CheckReport, ReplayError> {
    check_events(&mut *reader, opts, "replaying")
}

fn check_events(
    reader: &mut dyn EventReader,
    opts: &CheckOptions,
    label: &str,
) -> Result<CheckReport, ReplayError> {
    let mut src = Source::new(reader)?;
    let (params, mode) = model_for(opts, src.header())?;
    let mut c = Pymalloc3Check::new(params, mode);
    let d = drive(&mut src, &mut c, &opts.drive(label))?;
    c.report.events = d.events;
    c.report.raw_unknown = d.raw_unknown;
    Ok(c.report)
}

/// Which point of a trace `pyalloc stats` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsAt {
    /// Right after the event with this 0-based index.
    Event(u64),
    /// Right after the first top-level O/M request of exactly this many bytes.
    Marker(u64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::Allocator;
    use crate::error::AllocError;
    use crate::replay::{model_by_name, ModelError};

    const HEAD: &str = "# pymalloc allocation trace recorded from REAL CPython\n# interpreter: CPython 3.11.7 (main)\n";

    fn run(body: &str, keep_going: bool) -> Result<CheckReport, ReplayError> {
        let r = Pymalloc3Reader::from_text("t", &format!("{HEAD}{body}")).unwrap();
        let opts = CheckOptions {
            keep_going,
            ..CheckOptions::default()
        };
        check_reader(Box::new(r), &opts)
    }

    const START: &str = "r r 0 768 55555555c530\nA 1048576 7fff77500000\n\
                         c r 1 262144 7ffff769d010\nc r 1 131072 7ffff767c010\n";

    #[test]
    fn a_consistent_trace_matches() {
        let r = run(
            &format!("{START}m O 56 7fff77500030\nm O 56 7fff77500070\nf O 7fff77500030\nm M 60 7fff77500030\nm r 600 555555560000\nm O 600 555555560000\nf r 555555560000\nf O 555555560000\n"),
            false,
        )
        .unwrap();
        assert_eq!((r.checked, r.matched), (3, 3));
        assert!(r.ok());
        assert_eq!(r.arena_events, 1);
    }

    #[test]
    fn a_wrong_address_is_a_divergence_naming_pool_and_free_list() {
        let r = run(
            &format!("{START}m O 56 7fff77500030\nm O 56 7fff775000b0\nm O 56 7fff775000f0\n"),
            true,
        )
        .unwrap();
        let d = r.first_divergence.clone().unwrap();
        assert_eq!(d.event, 5);
        assert_eq!(d.expected, "0x7fff775000b0");
        assert_eq!(d.got, "0x7fff77500070");
        assert!(
            d.why.contains("pool 0x7fff77500000") && d.why.contains("free-list head"),
            "{}",
            d.why
        );
        assert_eq!((r.checked, r.matched), (3, 1));
        assert_eq!(r.divergences, 1, "keep-going counts the next one too");
    }

    #[test]
    fn a_missing_arena_line_is_a_divergence_not_a_panic() {
        let r = run("m O 56 7fff77500030\n", false).unwrap();
        assert!(!r.ok());
        assert!(r.first_divergence.unwrap().why.contains("raw call"));
    }

    #[test]
    fn double_free_and_unknown_free_are_errors_with_the_event() {
        // the model's own diagnosis where it has one (the driver's check of the
        // recording's consistency stands behind it for models that keep nothing)
        let refused = |body: &str| match run(body, false) {
            Err(ReplayError::Event(EventError {
                event,
                source: Cause::Model(source),
                ..
            })) => (event, source),
            other => panic!("expected a model error, got {other:?}"),
        };
        let (event, e) = refused(&format!(
            "{START}m O 56 7fff77500030\nm O 56 7fff77500070\nf O 7fff77500030\nf O 7fff77500030\n"
        ));
        assert_eq!(event, 7);
        assert!(matches!(e, AllocError::DoubleFree { .. }), "{e}");
        // a block the recording never returned: the recording's inconsistency
        for body in [
            format!("{START}m O 56 7fff77500030\nf O 7fff77580030\n"),
            format!("{START}m O 56 7fff77500030\nf O 12345678\n"),
        ] {
            match run(&body, false) {
                Err(ReplayError::Event(EventError {
                    event: 5,
                    source: Cause::NeverAllocated { .. },
                    ..
                })) => {}
                other => panic!("{other:?}"),
            }
        }
        let (_, e) = refused(&format!(
            "{START}m O 56 7fff77500030\nf O 7fff77500030\nr O 7fff77500030 40 7fff77500030\n"
        ));
        assert!(matches!(e, AllocError::DoubleFree { .. }), "{e}");
        // a live address returned again is the recording's fault too, even where the
        // model would place a block there (a fall-through answered from the recording)
        match run(
            &format!("{START}m O 56 7fff77500030\nm r 600 555555560000\nm O 600 555555560000\nm r 600 555555560000\nm O 600 555555560000\n"),
            false,
        ) {
            Err(ReplayError::Event(EventError {
                event: 8,
                source: Cause::StillLive { .. },
                ..
            })) => {}
            other => panic!("{other:?}"),
        }
        let r = run(&format!("{START}m O 56 7fff77500030\nf O 7fff77500030\nf O 7fff77500030\nm O 56 7fff77500030\n"), true)
            .unwrap();
        assert_eq!(r.events, 8, "keep-going reads on past an error");
        assert!(!r.ok());
        assert!(
            !r.first_divergence.unwrap().why.ends_with("; "),
            "a sentence, no trailing separator"
        );
    }

    #[test]
    fn a_model_that_refuses_a_block_the_recording_holds_has_diverged() {
        // the recording frees a block the model never had: the model took the
        // fall-through answer for a small request (as an older era would) -- here forced
        // by freeing through the model first
        let mut c = Pymalloc3Check::new(PymallocParams::v3_11(), Addresses::Pinned);
        let text = format!("{HEAD}{START}m O 56 7fff77500030\nf O 7fff77500030\n");
        let mut r = Pymalloc3Reader::from_text("t", &text).unwrap();
        let mut src = Source::new(&mut r).unwrap();
        // the model frees the block behind the recording's back
        let opts = CheckOptions::default();
        let mut events = 0;
        struct Meddle<'a>(&'a mut Pymalloc3Check, &'a mut u64);
        impl Replay for Meddle<'_> {
            fn step(&mut self, index: u64, ev: &Event) -> Result<Flow, Cause> {
                *self.1 += 1;
                if index == 5 {
                    let _ = self.0.rp.model_mut().free(Addr(0x7fff_7750_0030));
                }
                self.0.step(index, ev)
            }
            fn explain(&mut self, addr: Addr) -> Option<String> {
                Some(self.0.rp.model_mut().explain(addr))
            }
        }
        let e = drive(&mut src, &mut Meddle(&mut c, &mut events), &opts.drive("t")).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(
                e,
                ReplayError::Event(EventError {
                    event: 5,
                    source: Cause::Diverged { .. },
                    ..
                })
            ),
            "{msg}"
        );
        assert!(
            msg.contains("the model diverged") && msg.contains("pool 0x7fff77500000"),
            "{msg}"
        );
    }

    #[test]
    fn the_model_is_named_by_the_header_or_refused_by_name() {
        let r = Pymalloc3Reader::from_text("t", HEAD).unwrap();
        let (p, mode) = model_for(&CheckOptions::default(), r.header()).unwrap();
        assert_eq!(
            (p.name, mode),
            (PymallocParams::v3_11().name, Addresses::Pinned)
        );
        for (name, bad) in [
            ("cpython-3.11+own", false),
            ("cpython-3.11+nonsense", true),
            ("glibc-2.36", true),
            ("cpython-3.11/glibc-2.36", true),
        ] {
            let opts = CheckOptions {
                model: Some(name.into()),
                ..CheckOptions::default()
            };
            assert_eq!(model_for(&opts, r.header()).is_err(), bad, "{name}");
        }
        assert!(matches!(
            model_by_name("cpython-3.11+nonsense"),
            Err(ModelError::Suffix { .. })
        ));
    }
}
