//! The crate's layers, held by reading its own source: every `crate::MODULE` a module's
//! non-test code names must be in the layers below it, and the graph of top-level modules
//! has no cycle.
//!
//! ```text
//!   base: addr, error, alloc, vm, progress, slots, zeroed
//!   models:   sysmalloc -> platform (presets name their malloc's params) -> pymalloc
//!             -> objects -> stack (whole processes) -> interp, scripts (the facades)
//!   pipeline: trace -> replay -> check, compare -> report (which may show the facade)
//!   cli (the binary) may use anything; record (feature) writes traces
//! ```
//! A module's test code (`#[cfg(test)]` and after, and files named `tests.rs`) and
//! comments are not read: tests may reach across layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const BASE: &[&str] = &[
    "addr", "error", "alloc", "vm", "progress", "slots", "zeroed",
];

/// What each top-level module may name besides the base (and itself).
fn allowed(module: &str) -> Option<&'static [&'static str]> {
    const MODELS: &[&str] = &[
        "sysmalloc",
        "platform",
        "pymalloc",
        "mimalloc",
        "objects",
        "stack",
    ];
    Some(match module {
        "addr" | "error" | "alloc" | "vm" | "progress" | "slots" | "zeroed" => &[],
        "sysmalloc" => &[],
        "platform" => &["sysmalloc"],
        "pymalloc" | "mimalloc" => &["sysmalloc", "platform"],
        "objects" => &["sysmalloc", "platform", "pymalloc"],
        "stack" => MODELS,
        "interp" | "scripts" => &[
            "sysmalloc",
            "platform",
            "pymalloc",
            "objects",
            "stack",
            "trace",
            "replay",
            "interp",
        ],
        "trace" => &["platform"],
        "replay" => &[
            "mimalloc",
            "sysmalloc",
            "platform",
            "pymalloc",
            "objects",
            "stack",
            "trace",
        ],
        "check" | "compare" => &[
            "mimalloc",
            "sysmalloc",
            "platform",
            "pymalloc",
            "objects",
            "stack",
            "trace",
            "replay",
        ],
        "report" => &[
            "interp",
            "mimalloc",
            "sysmalloc",
            "platform",
            "pymalloc",
            "objects",
            "stack",
            "trace",
            "replay",
            "check",
            "compare",
        ],
        "record" => &["trace", "platform"],
        _ => return None,
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules each top-level module names in its non-test code.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "cli" || top == "main" || top == "lib" || f.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = g.entry(top.clone()).or_default();
        for line in text.lines() {
            let l = line.trim_start();
            if l.starts_with("#[cfg(test)]") {
                break;
            }
            if l.starts_with("//") {
                continue;
            }
            for (i, _) in l.match_indices("crate::") {
                let name: String = l[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `crate::Addr` and the other root re-exports are the base's
                let name = if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    "addr".to_string()
                } else {
                    name
                };
                if !name.is_empty() && name != top {
                    deps.insert(name);
                }
            }
        }
    }
    g
}

#[test]
fn every_module_names_only_the_layers_below_it() {
    let mut wrong = Vec::new();
    for (module, deps) in graph() {
        let ok = allowed(&module).unwrap_or_else(|| {
            panic!("src/{module}: a new top-level module: give it a layer in tests/layers.rs")
        });
        for d in deps {
            let fine = BASE.contains(&d.as_str()) || ok.contains(&d.as_str());
            if !fine {
                wrong.push(format!("{module} -> {d}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports across layers: {wrong:?}");
}

#[test]
fn the_pipeline_layers_never_name_the_facade_or_the_cli_and_replay_never_names_check() {
    let g = graph();
    for (module, banned) in [
        (
            "trace",
            &["replay", "check", "report", "interp", "scripts", "cli"][..],
        ),
        (
            "replay",
            &["check", "compare", "report", "interp", "scripts", "cli"][..],
        ),
        ("check", &["report", "interp", "scripts", "cli"][..]),
        ("interp", &["check", "report", "cli"][..]),
        ("scripts", &["check", "report", "cli"][..]),
    ] {
        for b in banned {
            assert!(
                !g[module].contains(*b),
                "src/{module} names crate::{b}: {:?}",
                g[module]
            );
        }
    }
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    // depth-first search; a grey node met again closes a cycle
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let at = path.iter().position(|p| p == n).unwrap();
                let mut c = path[at..].to_vec();
                c.push(n.to_string());
                return Some(c);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, &g, &mut state, &mut Vec::new()) {
            panic!("an import cycle: {}", c.join(" -> "));
        }
    }
}
