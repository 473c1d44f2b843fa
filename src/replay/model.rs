//! Model names, read in one place: every command that takes `--model` parses it here.
//!
//! ```text
//!   cpython-3.11:pool=64KiB+own/glibc-2.36
//!   └─ base ───┘└override─┘└sfx┘└ lower ─┘
//!   base      a pymalloc preset (`cpython-3.11`, `3.11`, `cpython-2.7.18` …: any version
//!             of an era names that era's preset), `glibc-2.36` (`glibc`,
//!             `glibc-2.36-x86_64`), `bump`, `null`
//!   :k=v,…    what-if overrides of the base's parameters        (table: OVERRIDES)
//!   +suffix   where a replay of a recording takes addresses from:
//!             `+pinned` (the recording's, the default) or `+own` (the model's own)
//!   /lower    the allocator beneath (a stack on one address space)
//! ```
//! Extension points: a new base is a row of [`BASES`]; a new what-if key a row of
//! [`OVERRIDES`]; a stack is [`ModelSpec::lower`] (parsed, refused by [`ModelSpec::build`]
//! until a stack is modelled). Anything not in these tables is an error naming what is
//! known — never silently ignored.

use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::platform::Platform;
use crate::pymalloc::{Pymalloc, PymallocParams};
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

/// The what-if keys (`name:key=value`), with how each changes the model. None yet: a row
/// here is all a new override needs.
#[allow(clippy::type_complexity)]
pub const OVERRIDES: &[(&str, fn(&mut ModelKind, &str) -> Result<(), String>)] = &[];

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
        for kv in overrides.into_iter().flat_map(|o| o.split(',')) {
            let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
            let apply =
                OVERRIDES
                    .iter()
                    .find(|o| o.0 == key)
                    .ok_or_else(|| ModelError::Override {
                        name: name.into(),
                        why: format!(
                            "no what-if override {key:?} (known: {})",
                            if OVERRIDES.is_empty() {
                                "none yet".to_string()
                            } else {
                                OVERRIDES.iter().map(|o| o.0).collect::<Vec<_>>().join(", ")
                            }
                        ),
                    })?;
            (apply.1)(&mut kind, value).map_err(|why| ModelError::Override {
                name: name.into(),
                why,
            })?;
        }
        Ok(ModelSpec {
            name: name.into(),
            kind,
            addresses,
            lower,
        })
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
    /// # Errors
    /// A stack (`a/b`): parsed, not modelled yet.
    pub fn build(&self, platform: &Platform) -> Result<Box<dyn Allocator>, ModelError> {
        if self.lower.is_some() {
            return Err(self.not_here(
                "be built",
                "stacked models (a/b on one address space) are not modelled yet; name one model",
            ));
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
            ModelKind::Mimalloc => Box::new(crate::mimalloc::Mimalloc::default()),
        })
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
        assert!(matches!(
            ModelSpec::parse("cpython-3.11:pool=64KiB"),
            Err(ModelError::Override { .. })
        ));
        let e = ModelSpec::parse("cpython-3.11+x").unwrap_err().to_string();
        assert!(e.contains("+own"), "{e}");
    }

    #[test]
    fn a_stack_parses_its_lower_model_and_is_not_built_yet() {
        let s = ModelSpec::parse("cpython-3.11/glibc-2.36").unwrap();
        assert!(matches!(
            s.lower.as_deref().map(|l| &l.kind),
            Some(ModelKind::Glibc(_))
        ));
        assert!(s.build(&Platform::linux_x86_64()).is_err());
        assert!(ModelSpec::parse("cpython-3.11/nonsense").is_err());
        for name in ["bump", "null", "glibc-2.36", "cpython-3.11"] {
            let m = ModelSpec::parse(name).unwrap();
            assert!(m.build(&Platform::linux_x86_64()).is_ok(), "{name}");
        }
    }
}
