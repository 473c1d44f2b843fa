//! Model names, read in one place: every command that takes a model (`check --model`,
//! `replay --model`, `stats --model`, `compare --models`) parses it here, so each accepts
//! the same grammar and refuses a name with the same sentence.
//!
//! ```text
//!   cpython-3.11:pool=64KiB,arena=4MiB+own/glibc-2.36
//!   └─ base ───┘└──── overrides ─────┘└sfx┘└ lower ─┘
//!   base      a pymalloc preset (`cpython-3.11`, `3.11`, `cpython-2.7.18` …: any version
//!             of an era names that era's preset), `glibc-2.36` (`glibc`,
//!             `glibc-2.36-x86_64`), `mimalloc-2.1.2`, `bump`, `null`     (table: BASES)
//!   :k=v,…    what-if overrides of a pymalloc preset's parameters, keys named after
//!             obmalloc.c's macros                      (pymalloc::whatif::KEYS says what each sets);
//!             mimalloc's one: `purge=due|never`, when a scheduled purge happens for want of
//!             its 10 ms wall clock                      (mimalloc::Purge)
//!   +suffix   where a replay of a recording takes addresses from:
//!             `+pinned` (the recording's, the default) or `+own` (the model's own)
//!   /lower    the allocator beneath: a whole process on one address space
//!             (`cpython-3.11/glibc-2.36`)                       (shapes: ModelSpec::stack)
//! ```
//! Adding a model kind: a [`ModelKind`] variant and a row of [`BASES`] (then every
//! command parses it); to run it as a whole process (`compare`), an arm of
//! [`ModelSpec::stack`] and a [`Stack`] variant. Anything not in these tables is an error
//! naming what is known — never silently ignored.

use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::platform::Platform;
use crate::pymalloc::whatif;
use crate::pymalloc::{Pymalloc, PymallocParams};
use crate::stack::Stack;
use crate::sysmalloc::glibc::{Glibc, GlibcParams};
use crate::sysmalloc::{Bump, Null};
use crate::trace::TraceHeader;
use crate::vm::AddressSpace;

/// Which allocator a model name asks for.
#[derive(Debug, Clone)]
pub enum ModelKind {
    /// CPython's pymalloc of one era.
    Pymalloc(PymallocParams),
    /// glibc's ptmalloc2.
    Glibc(GlibcParams),
    /// A bump allocator that never reuses (the baseline).
    Bump,
    /// Fresh addresses, nothing kept (measures a replay's own cost).
    Null,
    /// mimalloc 2.1.2, as CPython 3.13 vendors it (one thread's heap).
    Mimalloc,
}

/// Where a replay of a recording takes the addresses the model does not compute
/// (arena bases, fall-through answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Addresses {
    /// From the recording (`A` lines, nested `r` lines): the default.
    #[default]
    Pinned,
    /// From the model's own address space and a bump allocator (`+own`).
    Own,
}

/// A parsed `--model` value.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// The name as given.
    pub name: String,
    /// The allocator.
    pub kind: ModelKind,
    /// Where a replay of a recording takes addresses from.
    pub addresses: Addresses,
    /// The allocator beneath (`a/b`), when one is named.
    pub lower: Option<Box<ModelSpec>>,
    /// True when what-if overrides changed the base's parameters (`cpython-3.11:pool=64KiB`):
    /// a model of no released CPython, so no recording can hold it.
    pub whatif: bool,
    /// mimalloc's purge policy when its what-if says one (`mimalloc-2.1.2:purge=never`);
    /// `None`: the model's own default (see [`crate::mimalloc::Purge`]).
    pub mimalloc_purge: Option<crate::mimalloc::Purge>,
}

/// A model name that names no model, or none for this use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The base name is not a model.
    #[error("no model {name:?} (known: {})", known())]
    Unknown {
        /// The name given.
        name: String,
    },
    /// A `+suffix` that is not one.
    #[error("model {name:?}: no suffix +{suffix} (known: +pinned, +own)")]
    Suffix {
        /// The name given.
        name: String,
        /// The suffix, without its `+`.
        suffix: String,
    },
    /// A what-if override that is not one, or whose value does not parse.
    #[error("model {name:?}: {why}")]
    Override {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// A real model, but not one this command can use here.
    #[error("model {name:?} cannot {what}: {why}")]
    NotHere {
        /// The name given.
        name: String,
        /// What was asked (`check a CPython 3 recording` …).
        what: String,
        /// Why not, and what to use instead.
        why: String,
    },
}

/// The base names that are not pymalloc presets, with what they build.
pub const BASES: &[(&str, fn() -> ModelKind)] = &[
    ("bump", || ModelKind::Bump),
    ("mimalloc", || ModelKind::Mimalloc),
    ("mimalloc-2.1.2", || ModelKind::Mimalloc),
    ("null", || ModelKind::Null),
    ("glibc", || ModelKind::Glibc(GlibcParams::v2_36_x86_64())),
    ("glibc-2.36", || {
        ModelKind::Glibc(GlibcParams::v2_36_x86_64())
    }),
    ("glibc-2.36-x86_64", || {
        ModelKind::Glibc(GlibcParams::v2_36_x86_64())
    }),
];

/// The whole processes [`ModelSpec::stack`] builds, for the sentence that refuses others.
const STACKS: &str = "the whole processes modelled are a pymalloc preset alone (cpython-3.11), \
     a pymalloc preset over glibc (cpython-3.11/glibc-2.36), glibc alone (glibc-2.36) and \
     mimalloc over glibc (mimalloc-2.1.2, mimalloc-2.1.2/glibc-2.36)";

/// The names the errors list.
fn known() -> String {
    let presets: Vec<String> = PymallocParams::presets()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    format!(
        "{}; pymalloc presets {} (any version of an era: cpython-3.11, 3.11, 2.7.18 …); \
         suffixes +pinned, +own; stacks a/b",
        BASES.iter().map(|b| b.0).collect::<Vec<_>>().join(", "),
        presets.join(", ")
    )
}

impl ModelSpec {
    /// Parses a `--model` value (see the module doc for the grammar).
    ///
    /// # Errors
    /// An unknown base, suffix or override key, each naming what is known.
    pub fn parse(name: &str) -> Result<ModelSpec, ModelError> {
        let (top, lower) = match name.split_once('/') {
            Some((t, l)) => (t, Some(Box::new(ModelSpec::parse(l)?))),
            None => (name, None),
        };
        let mut parts = top.split('+');
        let head = parts.next().unwrap_or("");
        let mut addresses = Addresses::Pinned;
        for suffix in parts {
            addresses = match suffix {
                "pinned" => Addresses::Pinned,
                "own" => Addresses::Own,
                _ => {
                    return Err(ModelError::Suffix {
                        name: name.into(),
                        suffix: suffix.into(),
                    })
                }
            };
        }
        let (base, overrides) = match head.split_once(':') {
            Some((b, o)) => (b, Some(o)),
            None => (head, None),
        };
        let mut kind = base_kind(base).ok_or_else(|| ModelError::Unknown { name: name.into() })?;
        let over = |why: String| ModelError::Override {
            name: name.into(),
            why,
        };
        let mut pairs = Vec::new();
        for item in overrides.into_iter().flat_map(|o| o.split(',')) {
            let kv = item
                .split_once('=')
                .ok_or_else(|| over(format!("what-if {item:?}: expected key=value")))?;
            pairs.push(kv);
        }
        let whatif = overrides.is_some();
        let mut mimalloc_purge = None;
        if whatif && matches!(kind, ModelKind::Mimalloc) {
            // mimalloc's one what-if: when a purge is due, for want of its wall clock
            for (k, v) in pairs {
                mimalloc_purge = Some(match (k, v) {
                    ("purge", "due") => crate::mimalloc::Purge::Due,
                    ("purge", "never") => crate::mimalloc::Purge::Never,
                    _ => {
                        return Err(over(format!(
                            "what-if {k}={v}: mimalloc takes purge=due (a freed span is purged \
                             at the next page allocation, as if its 10 ms delay were over) or \
                             purge=never"
                        )))
                    }
                });
            }
        } else if whatif {
            let ModelKind::Pymalloc(params) = &mut kind else {
                return Err(over(format!(
                    "what-if overrides change a pymalloc preset's parameters; {base} takes none"
                )));
            };
            *params = whatif::apply(params.clone(), pairs).map_err(over)?;
        }
        Ok(ModelSpec {
            name: name.into(),
            kind,
            addresses,
            lower,
            whatif,
            mimalloc_purge,
        })
    }

    /// The whole process this name is, residency tracked (`pyalloc compare`): one arm per
    /// shape.
    ///
    /// # Errors
    /// A name that is no whole process modelled (`glibc-2.36/cpython-3.11`, `bump`, three
    /// layers …), saying which are.
    pub fn stack(&self) -> Result<Stack, ModelError> {
        let lower = self.lower.as_deref();
        let no = || self.not_here("run as a whole process", STACKS);
        if lower.is_some_and(|l| l.lower.is_some()) {
            return Err(no());
        }
        match (&self.kind, lower.map(|l| &l.kind)) {
            (ModelKind::Pymalloc(p), None) => Ok(Stack::new_pymalloc(p.clone())),
            (ModelKind::Pymalloc(p), Some(ModelKind::Glibc(g))) => {
                Ok(Stack::new_pymalloc_glibc(p.clone(), g.clone()))
            }
            (ModelKind::Glibc(g), None) => Ok(Stack::new_glibc(g.clone())),
            // CPython 3.13 under PYTHONMALLOC=mimalloc: RAW stays libc's
            (ModelKind::Mimalloc, None) => {
                Ok(self.purged(Stack::new_mimalloc_glibc(GlibcParams::v2_36_x86_64())))
            }
            (ModelKind::Mimalloc, Some(ModelKind::Glibc(g))) => {
                Ok(self.purged(Stack::new_mimalloc_glibc(g.clone())))
            }
            _ => Err(no()),
        }
    }

    /// `stack` with this name's mimalloc purge policy applied, when it names one.
    fn purged(&self, mut stack: Stack) -> Stack {
        if let (Some(p), Stack::MimallocGlibc(m, _)) = (self.mimalloc_purge, &mut stack) {
            m.set_purge_policy(p);
        }
        stack
    }

    /// Refuses a what-if model where a recording is to hold the model (`check`, `stats`):
    /// a what-if is no released CPython.
    ///
    /// # Errors
    /// When the name has overrides.
    pub fn recorded(&self, what: &str) -> Result<&ModelSpec, ModelError> {
        if self.whatif {
            return Err(self.not_here(
                what,
                "a what-if model is no released CPython, so no recording holds it; \
                 compare it instead (pyalloc compare --models ...)",
            ));
        }
        Ok(self)
    }

    /// The pymalloc preset, when the model is pymalloc.
    pub fn pymalloc(&self) -> Option<&PymallocParams> {
        match &self.kind {
            ModelKind::Pymalloc(p) => Some(p),
            _ => None,
        }
    }

    /// An error saying this model cannot `what`, `why` not.
    pub fn not_here(&self, what: &str, why: &str) -> ModelError {
        ModelError::NotHere {
            name: self.name.clone(),
            what: what.into(),
            why: why.into(),
        }
    }

    /// As [`build`](Self::build), placed as the recording's process was when its header
    /// says where (a glibc recording's `brk_at_first_call` and memory map: the heap starts
    /// at the recorded brk, as `pyalloc check` starts it, so brk-heap addresses can be the
    /// recording's own).
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn build_for(
        &self,
        platform: &Platform,
        header: &TraceHeader,
    ) -> Result<Box<dyn Allocator>, ModelError> {
        match (&self.kind, recorded_heap(header), &self.lower) {
            (ModelKind::Glibc(params), Some(vm), None) => {
                Ok(Box::new(Glibc::new(params.clone(), vm)))
            }
            _ => self.build(platform),
        }
    }

    /// A fresh general model on `platform`: pymalloc over a bump allocator for
    /// fall-through requests with arenas from the platform's address space, glibc on the
    /// platform's address space, a bump allocator from the heap start, or the null model.
    ///
    /// A stack (`a/b`) is the whole process of [`stack`](Self::stack) with every call
    /// entering at its top layer.
    ///
    /// # Errors
    /// A stack that is no whole process modelled (the sentence of [`stack`](Self::stack)).
    pub fn build(&self, platform: &Platform) -> Result<Box<dyn Allocator>, ModelError> {
        if self.lower.is_some() {
            return Ok(self.stack()?.into_allocator());
        }
        Ok(match &self.kind {
            ModelKind::Pymalloc(params) => Box::new(Pymalloc::new(
                params.clone(),
                Bump::new(platform.heap_start, 16),
                platform.address_space(),
            )),
            ModelKind::Glibc(params) => {
                Box::new(Glibc::new(params.clone(), platform.address_space()))
            }
            ModelKind::Bump => Box::new(Bump::new(platform.heap_start, 16)),
            ModelKind::Null => Box::new(Null::default()),
            ModelKind::Mimalloc => Box::new(self.own_mimalloc()),
        })
    }

    /// mimalloc in its own address space, with this name's purge policy when it names one
    /// (`mimalloc-2.1.2:purge=never`): what `replay` and the teaching commands run a CPython
    /// 3 recording's O/M calls through.
    pub fn own_mimalloc(&self) -> crate::mimalloc::Mimalloc<crate::mimalloc::OwnOs> {
        let mut m = crate::mimalloc::Mimalloc::default();
        if let Some(p) = self.mimalloc_purge {
            m.set_purge_policy(p);
        }
        m
    }
}

/// Where a glibc recording's process had its heap at its first call: the header's
/// `brk_at_first_call`, and the lowest mapping above it (`maps_at_first_call`) below which
/// mappings grow down; `None` without `brk_at_first_call`.
pub fn recorded_bounds(h: &TraceHeader) -> Option<(Addr, Addr)> {
    let brk = h.get("brk_at_first_call").and_then(Addr::parse_hex)?;
    let ceiling = h
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("maps_at_first_call "))
        .filter_map(|l| Addr::parse_hex(l.split('-').next()?))
        .filter(|&a| a >= brk)
        .min()
        .unwrap_or(Addr(brk.0.saturating_add(1 << 40)));
    Some((brk, ceiling))
}

/// The address space of a glibc recording's process at its first call (see
/// [`recorded_bounds`]).
pub fn recorded_heap(h: &TraceHeader) -> Option<AddressSpace> {
    let (brk, ceiling) = recorded_bounds(h)?;
    Some(AddressSpace::new(RECORDED_PAGE, 8, brk, ceiling))
}

/// The page size of the recorded glibc processes (x86-64 Linux).
pub const RECORDED_PAGE: u64 = 4096;

/// The allocator a base name (no suffix, no override) names.
fn base_kind(base: &str) -> Option<ModelKind> {
    if let Some(b) = BASES.iter().find(|b| b.0 == base) {
        return Some((b.1)());
    }
    if !(base.starts_with("cpython-") || base.starts_with(|c: char| c.is_ascii_digit())) {
        return None;
    }
    PymallocParams::by_name(base).map(ModelKind::Pymalloc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimalloc_takes_a_purge_policy_as_its_what_if() {
        use crate::mimalloc::Purge;
        let s = ModelSpec::parse("mimalloc-2.1.2:purge=never").unwrap();
        assert!(s.whatif && s.mimalloc_purge == Some(Purge::Never));
        let Ok(Stack::MimallocGlibc(m, _)) = s.stack() else {
            panic!("not a mimalloc stack")
        };
        assert_eq!(m.purge_policy(), Purge::Never);
        // replay and the teaching commands take the same policy from the name
        assert_eq!(s.own_mimalloc().purge_policy(), Purge::Never);
        let due = ModelSpec::parse("mimalloc-2.1.2:purge=due").unwrap();
        assert_eq!(due.own_mimalloc().purge_policy(), Purge::Due);
        let Ok(Stack::MimallocGlibc(m, _)) = ModelSpec::parse("mimalloc-2.1.2").unwrap().stack()
        else {
            panic!("not a mimalloc stack")
        };
        assert_eq!(m.purge_policy(), Purge::Due);
        for bad in [
            "mimalloc-2.1.2:purge=sometimes",
            "mimalloc-2.1.2:pool=64KiB",
        ] {
            let e = ModelSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("purge=due"), "{bad}: {e}");
        }
    }

    #[test]
    fn mimalloc_is_a_whole_process_with_raw_on_glibc() {
        for name in ["mimalloc-2.1.2", "mimalloc", "mimalloc-2.1.2/glibc-2.36"] {
            let spec = ModelSpec::parse(name).unwrap();
            match spec.stack() {
                Ok(Stack::MimallocGlibc(..)) => {}
                other => panic!("{name}: {other:?}"),
            }
        }
        let e = ModelSpec::parse("mimalloc-2.1.2/cpython-3.11")
            .unwrap()
            .stack()
            .unwrap_err()
            .to_string();
        assert!(e.contains("mimalloc over glibc"), "{e}");
    }

    #[test]
    fn every_name_in_use_today_parses() {
        for name in [
            "bump",
            "null",
            "glibc",
            "glibc-2.36",
            "glibc-2.36-x86_64",
            "cpython-3.11",
            "3.11",
            "cpython-2.7.18",
            "cpython-3.11+own",
            "cpython-3.11+pinned",
        ] {
            let m = ModelSpec::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.name, name);
        }
        let own = ModelSpec::parse("cpython-3.11+own").unwrap();
        assert_eq!(own.addresses, Addresses::Own);
        assert_eq!(own.pymalloc().unwrap().name, PymallocParams::v3_11().name);
        assert_eq!(
            ModelSpec::parse("3.8.18").unwrap().pymalloc().unwrap().name,
            PymallocParams::v3_8().name
        );
    }

    #[test]
    fn unknown_names_suffixes_and_overrides_are_errors() {
        assert!(matches!(
            ModelSpec::parse("cpython-3.11+nonsense"),
            Err(ModelError::Suffix { suffix, .. }) if suffix == "nonsense"
        ));
        assert!(matches!(
            ModelSpec::parse("jemalloc"),
            Err(ModelError::Unknown { .. })
        ));
        assert!(matches!(
            ModelSpec::parse("cpython-4.0"),
            Err(ModelError::Unknown { .. })
        ));
        for (name, says) in [
            ("cpython-3.11:pool=2MiB", "larger than an arena"),
            ("cpython-3.11:arena=3MiB", "not a power of two"),
            ("cpython-3.11:colour=blue", "unknown key \"colour\""),
            ("cpython-3.11:pool", "expected key=value"),
            ("glibc-2.36:pool=64KiB", "glibc-2.36 takes none"),
            (
                "cpython-3.11:pool=64KiB/glibc-2.36:arena=4MiB",
                "takes none",
            ),
        ] {
            match ModelSpec::parse(name) {
                Err(e @ ModelError::Override { .. }) => {
                    assert!(e.to_string().contains(says), "{name}: {e}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let e = ModelSpec::parse("cpython-3.11+x").unwrap_err().to_string();
        assert!(e.contains("+own"), "{e}");
    }

    #[test]
    fn overrides_change_the_preset_and_mark_a_what_if() {
        let m = ModelSpec::parse("cpython-3.11:pool=64KiB,arena=4MiB+own").unwrap();
        let p = m.pymalloc().unwrap();
        assert_eq!((p.pool_size(), p.arena_size()), (64 << 10, 4 << 20));
        assert_eq!(p.arena_size() / p.pool_size(), 64);
        assert!(m.whatif && m.addresses == Addresses::Own);
        assert!(m.recorded("check").is_err());
        assert!(!ModelSpec::parse("cpython-3.11").unwrap().whatif);
        let s = ModelSpec::parse("cpython-3.11:free=never/glibc-2.36").unwrap();
        assert!(s.whatif && s.lower.is_some());
    }

    #[test]
    fn stacks_are_whole_processes_and_other_shapes_say_which_are() {
        let s = ModelSpec::parse("cpython-3.11/glibc-2.36").unwrap();
        assert!(matches!(
            s.lower.as_deref().map(|l| &l.kind),
            Some(ModelKind::Glibc(_))
        ));
        assert!(matches!(s.stack(), Ok(Stack::PymallocGlibc(_))));
        assert!(matches!(
            ModelSpec::parse("glibc-2.36").unwrap().stack(),
            Ok(Stack::Glibc(_))
        ));
        assert!(matches!(
            ModelSpec::parse("3.11").unwrap().stack(),
            Ok(Stack::Pymalloc(_))
        ));
        let linux = Platform::linux_x86_64();
        let mut m = s.build(&linux).unwrap();
        let a = m.malloc(24).unwrap();
        m.free(a).unwrap();
        assert!(ModelSpec::parse("cpython-3.11/nonsense").is_err());
        for name in [
            "glibc-2.36/cpython-3.11",
            "cpython-3.11/glibc-2.36/glibc-2.36",
            "bump",
            "cpython-3.11/bump",
        ] {
            let m = ModelSpec::parse(name).unwrap();
            let e = m.stack().unwrap_err().to_string();
            assert!(e.contains("whole processes modelled"), "{name}: {e}");
            if m.lower.is_some() {
                let built = m.build(&linux).map(|_| ()).unwrap_err();
                assert_eq!(built.to_string(), e, "{name}");
            }
        }
        for name in ["bump", "null", "glibc-2.36", "cpython-3.11"] {
            let m = ModelSpec::parse(name).unwrap();
            assert!(m.build(&linux).is_ok(), "{name}");
        }
    }
}
