//! A forked child's trace, read as the process saw its heap: the parent's events up to the
//! fork, then the child's own.
//!
//! ```text
//!   parent.trace            e1 e2 … eN │ eN+1 …         (the parent goes on)
//!   parent.<pid>.trace      # forked-from: parent.trace at event N
//!                                       └ c1 c2 …       (the child's calls, from its fork on)
//!   read as:                e1 … eN c1 c2 …
//! ```
//! `pyalloc record` writes one such file per forked child that allocates (a child that
//! only calls exec() leaves none), so no trace ever interleaves two processes. The child
//! starts from the parent's heap as it was at the fork: the first N events of the parent's
//! trace rebuild that state. The parent's trace is found beside the child's, by the name
//! the header gives; a grandchild's names its parent child's trace, and so on up.
//! Events keep their own files' line numbers; event numbers run on through the prefix.

use super::{Event, EventReader, Opened, TraceError, TraceHeader};
use std::path::{Path, PathBuf};

/// Deepest chain of forks followed (parent of a parent …) before giving up.
const MAX_DEPTH: usize = 64;

/// The header key a forked child's trace carries: `NAME at event N`.
pub const FORKED_FROM: &str = "forked-from";

/// The parent's first `prefix` events, then the child's.
pub struct ForkedReader {
    parent: Box<dyn EventReader>, // read until `left` reaches 0
    left: u64,                    // parent events still to give
    child: Box<dyn EventReader>,  // then this
    parent_path: PathBuf,         // for messages
    at: u64,                      // N of the header
}

/// Where a `forked-from` value points: the parent's path (beside `child`) and the event
/// count at the fork.
///
/// # Errors
/// A value that is not `NAME at event N`.
pub fn parse_forked_from(child: &Path, value: &str) -> Result<(PathBuf, u64), TraceError> {
    let bad = || TraceError::Parse {
        path: child.to_path_buf(),
        line: 0,
        why: "a forked child's header must say `# forked-from: NAME at event N`".into(),
        text: value.chars().take(200).collect(),
    };
    let (name, n) = value.rsplit_once(" at event ").ok_or_else(bad)?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    let name = name.trim();
    if name.is_empty() || name.contains('/') {
        return Err(bad());
    }
    let dir = child.parent().unwrap_or(Path::new(""));
    Ok((dir.join(name), n))
}

/// `reader` as the process saw it: itself when its header has no `forked-from` line, else
/// its parent's first events (found beside `path`, itself resolved the same way) then its own.
///
/// # Errors
/// The parent's trace cannot be opened or read, the chain is deeper than 64 forks, or the
/// header's value is malformed.
pub fn resolve(
    reader: Box<dyn EventReader>,
    path: &Path,
) -> Result<Box<dyn EventReader>, TraceError> {
    resolve_at(reader, path, 0)
}

fn resolve_at(
    reader: Box<dyn EventReader>,
    path: &Path,
    depth: usize,
) -> Result<Box<dyn EventReader>, TraceError> {
    let Some(value) = reader.header().get(FORKED_FROM) else {
        return Ok(reader);
    };
    let (parent_path, at) = parse_forked_from(path, value)?;
    if depth >= MAX_DEPTH {
        return Err(TraceError::Parse {
            path: path.to_path_buf(),
            line: 0,
            why: format!("more than {MAX_DEPTH} forks in a chain of forked-from traces"),
            text: value.chars().take(200).collect(),
        });
    }
    let parent = Opened::open(&parent_path)?.into_reader()?;
    let parent = resolve_at(parent, &parent_path, depth + 1)?;
    Ok(Box::new(ForkedReader {
        parent,
        left: at,
        child: reader,
        parent_path,
        at,
    }))
}

impl EventReader for ForkedReader {
    fn next_event(&mut self) -> Result<Option<Event>, TraceError> {
        if self.left > 0 {
            match self.parent.next_event()? {
                Some(e) => {
                    self.left -= 1;
                    return Ok(Some(e));
                }
                None => {
                    return Err(TraceError::Truncated {
                        path: self.parent_path.clone(),
                        offset: 0,
                        why: format!(
                            "the child's trace starts at its event {}, but it ends {} events short of it",
                            self.at, self.left
                        ),
                    })
                }
            }
        }
        self.child.next_event()
    }

    fn header(&self) -> &TraceHeader {
        self.child.header()
    }

    fn other_lines(&self) -> u64 {
        self.parent.other_lines() + self.child.other_lines()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::pymalloc3::Pymalloc3Reader;

    #[test]
    fn forked_from_names_a_file_beside_the_child_and_an_event_count() {
        let (p, n) =
            parse_forked_from(Path::new("/t/x.77.trace"), "x.trace.gz at event 12").unwrap();
        assert_eq!((p, n), (PathBuf::from("/t/x.trace.gz"), 12));
        for bad in [
            "x.trace",
            "x.trace at event",
            "../x at event 3",
            " at event 3",
            "x at event -1",
        ] {
            assert!(parse_forked_from(Path::new("c"), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_child_reads_its_parents_prefix_then_its_own_events() {
        let dir = std::env::temp_dir().join(format!("pyalloc-fork-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let head = "# pymalloc allocation trace recorded from REAL CPython\n";
        std::fs::write(
            dir.join("p.trace"),
            format!("{head}m O 16 10\nm O 16 20\nf O 10\nm O 32 30\n"),
        )
        .unwrap();
        let child = format!("{head}# forked-from: p.trace at event 2\nf O 20\n");
        std::fs::write(dir.join("p.9.trace"), &child).unwrap();
        let path = dir.join("p.9.trace");
        let r = Box::new(Pymalloc3Reader::open(&path).unwrap());
        let mut r = resolve(r, &path).unwrap();
        let mut addrs = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            addrs.push(format!("{:?}", e.kind));
        }
        assert_eq!(addrs.len(), 3, "{addrs:?}");
        assert!(
            addrs[0].contains("0x10") && addrs[1].contains("0x20") && addrs[2].contains("Free"),
            "{addrs:?}"
        );
        // A trace naming itself as its parent: a bounded chain, an error.
        let own = format!("{head}# forked-from: p.9.trace at event 1\nf O 20\n");
        std::fs::write(&path, own).unwrap();
        let r = Box::new(Pymalloc3Reader::open(&path).unwrap());
        let err = resolve(r, &path).err().unwrap().to_string();
        assert!(err.contains("more than 64 forks"), "{err}");
        std::fs::write(&path, &child).unwrap();
        // The parent's trace cut before the fork point: said, not passed.
        std::fs::write(dir.join("p.trace"), format!("{head}m O 16 10\n")).unwrap();
        let r = Box::new(Pymalloc3Reader::open(&path).unwrap());
        let mut r = resolve(r, &path).unwrap();
        r.next_event().unwrap();
        let err = r.next_event().unwrap_err().to_string();
        assert!(err.contains("1 events short"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
