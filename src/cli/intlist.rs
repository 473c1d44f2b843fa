//! `pyalloc intlist [--platform P] OP...`: drive CPython 2's int free list by hand, one
//! operation per argument, printing what happened as the PYREC traces spell it:
//! `int:V` (PyInt_FromLong: `I V ADDR`, after `B SIZE ADDR` when a block was needed),
//! `free:ADDR` (int_dealloc of the object at hex ADDR: `D ADDR`), `clear`
//! (PyInt_ClearFreeList: `K`/`X` lines and `L`). A bad free stops with one line naming
//! the address.

use pyalloc::interp::{IntKind, Py2};
use pyalloc::objects::ClearEvent;
use pyalloc::Addr;
use std::process::ExitCode;

/// Arguments of `pyalloc intlist`.
#[derive(clap::Args)]
pub struct IntlistArgs {
    /// Platform preset.
    #[arg(long, default_value = "linux-x86_64")]
    pub platform: String,
    /// Operations: int:V, free:ADDR, clear.
    #[arg(allow_hyphen_values = true, required = true)]
    pub ops: Vec<String>,
}

/// Runs the operations.
pub fn run(args: IntlistArgs) -> Result<ExitCode, String> {
    let platform = super::platform(&args.platform)?;
    let mut py = Py2::new(platform).map_err(|e| e.to_string())?;
    for op in &args.ops {
        match op.split_once(':') {
            Some(("int", v)) => {
                let v: i64 = v.parse().map_err(|_| format!("{op}: not an integer"))?;
                let blocks = py.ints().n_blocks();
                let o = py.int(v).map_err(|e| format!("{op}: {e}"))?;
                if py.ints().n_blocks() != blocks {
                    let b = py.ints().block_list().next().unwrap_or(Addr::NULL);
                    println!("B {} {:x}", py.ints().layout().block_size, b.0);
                }
                match o.kind {
                    IntKind::Small => println!("I {v} {:x} (small_ints[{}])", o.addr.0, v + 5),
                    _ => println!("I {v} {:x}", o.addr.0),
                }
            }
            Some(("free", a)) => {
                let addr = Addr::parse_hex(a).ok_or_else(|| format!("{op}: not a hex address"))?;
                py.ints_mut().free(addr).map_err(|e| format!("{op}: {e}"))?;
                println!("D {:x}", addr.0);
            }
            None if op == "clear" => {
                let r = py.clear_int_free_list().map_err(|e| format!("{op}: {e}"))?;
                for e in &r.events {
                    match e {
                        ClearEvent::Keep { base, live } => println!("K {:x} {live}", base.0),
                        ClearEvent::Free { base } => println!("X {:x}", base.0),
                    }
                }
                println!(
                    "L {} {} {} {} {:x}",
                    r.kept, r.freed, r.live, r.nfree, r.head.0
                );
            }
            _ => return Err(format!("{op}: expected int:V, free:ADDR or clear")),
        }
    }
    Ok(ExitCode::SUCCESS)
}
