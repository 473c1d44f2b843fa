//! What-if presets as data: a preset name with overrides, `cpython-3.11:pool=64KiB,arena=4MiB`.
//!
//! ```text
//!  key (alias: obmalloc.c's macro)          value                      rule checked
//!  alignment (ALIGNMENT)                     8, 16, 32 … bytes          a power of two, ≤ threshold
//!  threshold (SMALL_REQUEST_THRESHOLD)       bytes                      a multiple of ALIGNMENT, ≤ 512
//!  pool      (POOL_SIZE)                     512 B … (4 KiB, 16 KiB)    a power of two, ≤ arena / 4
//!  arena     (ARENA_SIZE)                    … 1 GiB (256 KiB, 1 MiB)   a power of two
//!  order     (usable_arenas)                 sorted | fifo              sorted: the era's own rule
//!  free      (empty arenas)                  all | keep-one | never     keep-one: bpo-37257 (3.9+)
//! ```
//! Sizes take `B`, `KiB`, `MiB`, `GiB` (or `K`, `M`, `G`, binary). Each override replaces
//! one field of the era's [`PymallocParams`]; the result must pass
//! [`PymallocParams::validate`] (the model's own limits: at most 2^14 alignment granules per
//! pool, arenas of at least four pools). The name itself (`:`, `,`, `=`) is read by
//! `replay::ModelSpec::parse`, the one reader of model names; this module says what each
//! key means and which presets are possible.

use super::preset::{ArenaOrdering, ArenaRelease, PymallocParams};

/// The keys an override may name, with what they set (for `pyalloc presets`).
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "alignment",
        "ALIGNMENT",
        "block alignment and size-class spacing (bytes, power of two)",
    ),
    (
        "threshold",
        "SMALL_REQUEST_THRESHOLD",
        "largest request served from pools (bytes, ≤ 512)",
    ),
    (
        "pool",
        "POOL_SIZE",
        "pool size (power of two, at most a quarter of an arena)",
    ),
    ("arena", "ARENA_SIZE", "arena size (power of two)"),
    (
        "order",
        "usable_arenas",
        "sorted (fullest arena first, the era's rule) | fifo",
    ),
    (
        "free",
        "empty arenas",
        "all (≤ 3.8) | keep-one (3.9+: the last in usable_arenas) | never",
    ),
];

/// Applies overrides, each a `(key, value)` pair already split out of a model name (the
/// name is read by `replay::ModelSpec::parse`, the one reader of model names), to `base`.
///
/// # Errors
/// One sentence naming the key and what is wrong: an unknown key, a value that does not
/// parse, a size that is not a power of two, a pool larger than an arena.
pub fn apply<'a>(
    base: PymallocParams,
    overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<PymallocParams, String> {
    let mut p = base;
    for (key, value) in overrides {
        set(&mut p, key, value)?;
    }
    validate(&p)?;
    Ok(p)
}

/// Sets one key (its name or obmalloc.c's macro) of `p`.
fn set(p: &mut PymallocParams, key: &str, value: &str) -> Result<(), String> {
    let key = canonical(key.trim()).ok_or_else(|| {
        format!(
            "what-if: unknown key {key:?} (known: {})",
            KEYS.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
        )
    })?;
    let value = value.trim();
    match key {
        "alignment" => p.alignment_shift = power_of_two(key, value)?,
        "threshold" => p.small_request_threshold = size(key, value)?,
        "pool" => p.pool_bits = power_of_two(key, value)?,
        "arena" => p.arena_bits = power_of_two(key, value)?,
        "order" => {
            p.ordering = match value {
                "sorted" => base_ordering(p),
                "fifo" => ArenaOrdering::Fifo,
                _ => return Err(format!("what-if order={value}: expected sorted or fifo")),
            }
        }
        _ => {
            p.release = match value {
                "all" => ArenaRelease::Always,
                "keep-one" => ArenaRelease::KeepLastInList,
                "never" => ArenaRelease::Never,
                _ => {
                    return Err(format!(
                        "what-if free={value}: expected all, keep-one or never"
                    ))
                }
            }
        }
    }
    Ok(())
}

/// The rules every overridden preset must keep.
fn validate(p: &PymallocParams) -> Result<(), String> {
    if p.pool_bits > p.arena_bits {
        return Err(format!(
            "what-if: a pool ({}) larger than an arena ({})",
            human(p.pool_size()),
            human(p.arena_size())
        ));
    }
    if p.alignment() > p.small_request_threshold || p.small_request_threshold % p.alignment() != 0 {
        return Err(format!(
            "what-if: threshold {} is not a multiple of alignment {} (at least one class)",
            p.small_request_threshold,
            p.alignment()
        ));
    }
    p.validate().map_err(|e| {
        format!(
            "what-if: {e} (pool {} / arena {}: arenas of at least 4 pools, at most 2^14 \
             alignment granules a pool, threshold ≤ 512, arenas ≤ 1 GiB)",
            human(p.pool_size()),
            human(p.arena_size())
        )
    })
}

/// The sorting rule of the era (`order=sorted` undoes an earlier `order=fifo`).
fn base_ordering(p: &PymallocParams) -> ArenaOrdering {
    match PymallocParams::by_name(p.name).map(|b| b.ordering) {
        Some(ArenaOrdering::Fifo) | None => ArenaOrdering::Nfp2lasta,
        Some(o) => o,
    }
}

fn canonical(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .find(|k| k.0.eq_ignore_ascii_case(key) || k.1 == key)
        .map(|k| k.0)
}

/// A size: digits and an optional binary unit.
fn size(key: &str, value: &str) -> Result<u64, String> {
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &value[digits.len()..];
    if digits.is_empty() {
        return Err(format!("what-if {key}={value}: not a size"));
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => {
            return Err(format!(
                "what-if {key}={value}: unknown unit {unit:?} (B, KiB, MiB, GiB)"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("what-if {key}={value}: not a size"))
}

/// log2 of a size that must be a power of two.
fn power_of_two(key: &str, value: &str) -> Result<u32, String> {
    let n = size(key, value)?;
    if !n.is_power_of_two() {
        return Err(format!(
            "what-if {key}={value}: {n} bytes is not a power of two"
        ));
    }
    Ok(n.trailing_zeros())
}

/// `16384` → `16 KiB`.
fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `k=v,k=v` split as a model name's overrides are.
    fn pairs(s: &str) -> impl Iterator<Item = (&str, &str)> {
        s.split(',').map(|kv| kv.split_once('=').unwrap())
    }

    #[test]
    fn overrides_set_the_fields_named_after_obmalloc() {
        let p = apply(
            PymallocParams::v3_11(),
            pairs("pool=64KiB,arena=4MiB,order=fifo,free=never"),
        )
        .unwrap();
        assert_eq!((p.pool_size(), p.arena_size()), (64 << 10, 4 << 20));
        assert_eq!(
            (p.ordering, p.release),
            (ArenaOrdering::Fifo, ArenaRelease::Never)
        );
        let q = apply(
            PymallocParams::v3_11(),
            pairs("ALIGNMENT=8,SMALL_REQUEST_THRESHOLD=256"),
        )
        .unwrap();
        assert_eq!((q.alignment(), q.size_classes()), (8, 32));
        let r = apply(p, pairs("order=sorted,free=keep-one")).unwrap();
        assert_eq!(r.ordering, PymallocParams::v3_11().ordering);
    }

    #[test]
    fn bad_overrides_say_which_rule_they_break() {
        let e = |o| apply(PymallocParams::v3_11(), pairs(o)).unwrap_err();
        assert!(
            e("pool=2MiB").contains("larger than an arena"),
            "{}",
            e("pool=2MiB")
        );
        assert!(e("arena=3MiB").contains("not a power of two"));
        assert!(e("colour=blue").contains("unknown key \"colour\""));
        assert!(e("pool=lots").contains("not a size"));
        assert!(e("order=random").contains("sorted or fifo"));
        assert!(e("threshold=100").contains("multiple of alignment"));
        assert!(e("pool=512KiB").contains("at least 4 pools"));
    }
}
