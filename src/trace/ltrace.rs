//! ltrace output of the malloc family, read as villoc (wapiflapi/villoc) reads it.
//!
//! ```text
//!   malloc(24)                          = 0x55555555a2a0
//!   prog->calloc(4, 8)                  = 0x55555555a2c0     (ltrace -e with a library prefix)
//!   1234 realloc(0x55555555a2a0, 48)    = 0x55555555a2f0     (ltrace -f: a pid first)
//!   [pid 1234] free(0x55555555a2f0)     = <void>
//!   malloc(4096 <unfinished ...>                               (interleaved by another thread:)
//!   <... malloc resumed> )              = 0x55555555b000     (completed later)
//!   free(0x1234 <no return ...>                                (the process died inside the call)
//! ```
//! Arguments are decimal or `0x` hex, NULL is `0`, `nil` or `(nil)`. Lines of other
//! functions, signals (`--- SIG…`), exits (`+++ exited …`) and calls that never
//! returned carry no allocator event: they are counted (villoc drops them silently).
//!
//! Invariant: events + other lines == lines read (an `<unfinished ...>` line is an other
//! line; its `resumed` line is the event).

use super::tool::{ToolFormat, ToolLine, ToolReader};
use super::{fields, Domain, EventKind};
use crate::addr::Addr;
use std::collections::HashMap;

/// The functions this reader turns into events.
const FUNCTIONS: [&str; 4] = ["malloc", "calloc", "realloc", "free"];

/// A streaming reader of ltrace output (no header; other lines: calls of other
/// functions, signals, exits, `<unfinished ...>` halves).
pub type LtraceReader = ToolReader<Ltrace>;

/// The grammar of ltrace output.
#[derive(Debug, Default)]
pub struct Ltrace {
    unfinished: HashMap<u64, (String, String)>, // pid -> (function, arguments so far)
}

/// A number as ltrace prints it: decimal, `0x` hex, or a NULL spelling.
fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    match s {
        "nil" | "(nil)" | "NULL" | "<void>" => Some(0),
        _ => match s.strip_prefix("0x") {
            Some(h) => fields::hex(h),
            None => fields::dec(s),
        },
    }
}

/// Splits off a leading `1234 ` or `[pid 1234] `.
fn strip_pid(text: &str) -> (u64, &str) {
    if let Some(rest) = text.strip_prefix("[pid ") {
        if let Some((pid, tail)) = rest.split_once("] ") {
            if let Ok(p) = pid.parse() {
                return (p, tail);
            }
        }
    }
    if let Some((head, tail)) = text.split_once(' ') {
        if let Ok(p) = head.parse() {
            return (p, tail.trim_start());
        }
    }
    (0, text)
}

/// The function name of `lib->name(` or `name(`, when the line is a call.
fn call_name(call: &str) -> Option<(&str, &str)> {
    let (head, args) = call.split_once('(')?;
    let name = head.rsplit_once("->").map_or(head, |(_, n)| n);
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'@' || b == b'.');
    ok.then_some((name, args))
}

fn event(name: &str, args: &str, ret: &str) -> Result<EventKind, &'static str> {
    let a: Vec<&str> = args.split(',').map(str::trim).collect();
    let arg = |i: usize| -> Result<u64, &'static str> {
        a.get(i)
            .and_then(|s| number(s))
            .ok_or("argument is not a number")
    };
    let want = match name {
        "malloc" | "free" => 1,
        _ => 2,
    };
    if a.len() != want {
        return Err("wrong number of arguments");
    }
    let ret = number(ret).ok_or("return value is not a number")?;
    Ok(match name {
        "malloc" => EventKind::Malloc {
            domain: Domain::Libc,
            size: arg(0)?,
            addr: Addr(ret),
        },
        "calloc" => EventKind::Calloc {
            domain: Domain::Libc,
            nelem: arg(0)?,
            elsize: arg(1)?,
            addr: Addr(ret),
        },
        "realloc" => EventKind::Realloc {
            domain: Domain::Libc,
            old: Addr(arg(0)?),
            size: arg(1)?,
            new: Addr(ret),
        },
        _ => EventKind::Free {
            domain: Domain::Libc,
            addr: Addr(arg(0)?),
        },
    })
}

/// Parses one line; `unfinished` holds each pid's call interrupted by another thread.
fn parse(
    unfinished: &mut HashMap<u64, (String, String)>,
    text: &str,
) -> Result<ToolLine, &'static str> {
    let (pid, call) = strip_pid(text.trim_end());
    if let Some(rest) = call.strip_prefix("<... ") {
        // `<... NAME resumed> REST) = RET`
        let Some((name, tail)) = rest.split_once(" resumed>") else {
            return Err("malformed `resumed` line");
        };
        if !FUNCTIONS.contains(&name) {
            return Ok(ToolLine::Other);
        }
        let (fname, mut args) = unfinished
            .remove(&pid)
            .ok_or("`resumed` line with no `unfinished` call before it")?;
        if fname != name {
            return Err("`resumed` line of another function than the unfinished one");
        }
        let (more, ret) = tail.rsplit_once(") = ").ok_or("expected `) = RET`")?;
        args.push_str(more.trim());
        return event(name, &args, ret.trim()).map(ToolLine::Event);
    }
    let Some((name, args)) = call_name(call) else {
        return Ok(ToolLine::Other);
    };
    if !FUNCTIONS.contains(&name) {
        return Ok(ToolLine::Other);
    }
    if let Some(args) = args.strip_suffix(" <unfinished ...>") {
        unfinished.insert(pid, (name.to_string(), args.to_string()));
        return Ok(ToolLine::Other);
    }
    if args.ends_with(" <no return ...>") {
        return Ok(ToolLine::Other);
    }
    let (args, ret) = args
        .rsplit_once(") ")
        .ok_or("expected `NAME(ARGS) = RET`")?;
    let ret = ret
        .trim_start()
        .strip_prefix('=')
        .ok_or("expected `= RET` after the call")?;
    event(name, args, ret.trim()).map(ToolLine::Event)
}

impl ToolFormat for Ltrace {
    fn parse(&mut self, text: &str) -> Result<ToolLine, &'static str> {
        parse(&mut self.unfinished, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::fields::testing;
    #[test]
    fn reads_villoc_style_lines() {
        let t = "malloc(24)                = 0x602010\nprog->calloc(4, 8) = 0x602030\n\
                 1234 realloc(0x602010, 48) = 0x602060\n[pid 7] free(0x602060) = <void>\n\
                 puts(\"hi\") = 3\nmalloc(4096 <unfinished ...>\n--- SIGCHLD ---\n\
                 <... malloc resumed> ) = 0x603000\nfree(0) = <void>\n+++ exited (status 0) +++\n";
        let (ev, other) = testing::tool_kinds::<Ltrace>(t).unwrap();
        assert_eq!(other, 4);
        assert_eq!(ev.len(), 6);
        assert_eq!(
            ev[1],
            EventKind::Calloc {
                domain: Domain::Libc,
                nelem: 4,
                elsize: 8,
                addr: Addr(0x602030)
            }
        );
        assert_eq!(
            ev[4],
            EventKind::Malloc {
                domain: Domain::Libc,
                size: 4096,
                addr: Addr(0x603000)
            }
        );
        assert_eq!(
            ev[5],
            EventKind::Free {
                domain: Domain::Libc,
                addr: Addr::NULL
            }
        );
    }

    #[test]
    fn malformed_calls_name_their_line() {
        for (t, line) in [
            ("malloc(24) = 0x10\nmalloc(zz) = 0x20\n", 2),
            ("free(0x10, 3) = <void>\n", 1),
            ("calloc(1, 2) 0x10\n", 1),
            ("x\n<... free resumed> ) = <void>\n", 2),
        ] {
            testing::assert_refused_at(testing::tool_kinds::<Ltrace>(t), t, line);
        }
    }
}
