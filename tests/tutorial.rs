//! docs/tutorial.md cannot drift from the tool: every ```console block in it is run and its
//! output compared, trycmd-style.
//!
//! ```text
//!  ```console
//!  $ pyalloc explain --int 36          <- a command (run from the crate's root)
//!  0x100202c98 (int free list ...)     <- what it must print (stdout, then stderr)
//!  ...                                 <- a line of three dots: any lines
//!  ```
//! ```
//! An output file named by `--svg`, `--html` or `-o` is written under
//! target/tutorial/; one under `docs/` must equal the committed picture byte for byte.
//! `PYALLOC_BLESS=1 cargo test --test tutorial` rewrites the outputs and the pictures from
//! what the tool prints now (then read the diff before committing it).

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// One `$ pyalloc …` line and the lines after it.
struct Cmd {
    line: usize,           // 0-based line of the `$` in the file
    args: Vec<String>,     // the words after `pyalloc`
    expected: Vec<String>, // the output lines shown
}

fn commands(md: &str) -> Vec<Cmd> {
    let mut out = Vec::new();
    let mut in_console = false;
    for (i, l) in md.lines().enumerate() {
        if !in_console {
            in_console = l.trim_end() == "```console";
            continue;
        }
        if l.trim_end() == "```" {
            in_console = false;
        } else if let Some(c) = l.strip_prefix("$ ") {
            let words: Vec<String> = c.split_whitespace().map(String::from).collect();
            assert_eq!(
                words.first().map(String::as_str),
                Some("pyalloc"),
                "docs/tutorial.md:{}: console blocks run pyalloc only",
                i + 1
            );
            out.push(Cmd {
                line: i,
                args: words[1..].to_vec(),
                expected: Vec::new(),
            });
        } else {
            out.last_mut()
                .unwrap_or_else(|| panic!("docs/tutorial.md:{}: output before a command", i + 1))
                .expected
                .push(l.to_string());
        }
    }
    assert!(
        !in_console,
        "docs/tutorial.md: a console block is not closed"
    );
    out
}

/// True when `actual` matches `expected`, where a `...` line stands for any lines.
fn matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => (0..=actual.len()).any(|k| matches(rest, &actual[k..])),
        Some((e, rest)) => actual.first() == Some(&e.as_str()) && matches(rest, &actual[1..]),
    }
}

/// Runs one command; output files go under target/tutorial/. Returns what it printed
/// (with the redirected paths written back as the tutorial spells them) and the files.
fn run(cmd: &Cmd) -> (String, Vec<(String, PathBuf)>) {
    let scratch = Path::new(ROOT).join("target/tutorial");
    let mut args = cmd.args.clone();
    let mut files = Vec::new();
    for k in 1..args.len() {
        if matches!(args[k - 1].as_str(), "--svg" | "--html" | "-o" | "--output") {
            let shown = args[k].clone();
            let real = scratch.join(&shown);
            std::fs::create_dir_all(real.parent().unwrap()).unwrap();
            args[k] = real.to_string_lossy().into_owned();
            files.push((shown, real));
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pyalloc"))
        .args(&args)
        .current_dir(ROOT)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    for (shown, real) in &files {
        text = text.replace(&*real.to_string_lossy(), shown);
    }
    assert!(
        out.status.success(),
        "docs/tutorial.md:{}: `pyalloc {}` failed:\n{text}",
        cmd.line + 1,
        cmd.args.join(" ")
    );
    (text, files)
}

#[test]
fn every_console_block_of_the_tutorial_prints_what_it_shows() {
    let path = Path::new(ROOT).join("docs/tutorial.md");
    let md = std::fs::read_to_string(&path).unwrap();
    let bless = std::env::var_os("PYALLOC_BLESS").is_some();
    let cmds = commands(&md);
    assert!(
        cmds.len() >= 8,
        "the tutorial runs the tool ({} commands)",
        cmds.len()
    );
    let mut lines: Vec<String> = md.lines().map(String::from).collect();
    let mut failures = Vec::new();
    // Walk backwards so that blessing can splice outputs without moving earlier lines.
    for cmd in cmds.iter().rev() {
        let (text, files) = run(cmd);
        let actual: Vec<&str> = text.lines().collect();
        if !matches(&cmd.expected, &actual) {
            if bless {
                let at = cmd.line + 1;
                lines.splice(
                    at..at + cmd.expected.len(),
                    actual.iter().map(|s| s.to_string()),
                );
            } else {
                failures.push(format!(
                    "docs/tutorial.md:{}: `pyalloc {}`\n--- shown\n{}\n--- printed\n{}",
                    cmd.line + 1,
                    cmd.args.join(" "),
                    cmd.expected.join("\n"),
                    text
                ));
            }
        }
        for (shown, real) in files {
            if !shown.starts_with("docs/") {
                continue;
            }
            let committed = Path::new(ROOT).join(&shown);
            let made = std::fs::read(&real).unwrap();
            if bless {
                std::fs::write(&committed, &made).unwrap();
            } else if std::fs::read(&committed).ok().as_deref() != Some(&made[..]) {
                failures.push(format!(
                    "{shown} differs from what `pyalloc {}` draws now ({})",
                    cmd.args.join(" "),
                    real.display()
                ));
            }
        }
    }
    if bless {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn dots_match_any_lines_and_nothing_else_is_loose() {
    let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches(&e(&["a", "...", "d"]), &["a", "b", "c", "d"]));
    assert!(matches(&e(&["a", "...", "d"]), &["a", "d"]));
    assert!(!matches(&e(&["a", "...", "d"]), &["a", "b", "c"]));
    assert!(!matches(&e(&["a", "b"]), &["a", "b", "c"]));
    assert!(!matches(&e(&["a", "c"]), &["a", "b"]));
}
