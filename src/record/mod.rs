//! Recording a real CPython 3 program: every allocator call, from the first one.
//!
//! ```text
//!   pyalloc record -o T -- ARGS…
//!     1. open T
//!     2. Py_PreInitializeFromBytesArgs(python3 ARGS…)    runtime + allocators chosen
//!     3. write the `#` header (interpreter, platform, command, the process's address
//!        space as it stands now: `# maps:` and `# heap:`, the format key)
//!     4. hooks::install()   PyMem_SetAllocator(RAW, MEM, OBJ) + PyObject_SetArenaAllocator
//!     5. Py_BytesMain(python3 ARGS…)                     the program runs, lines go to T
//!     6. flush T, exit with the program's exit code
//! ```
//! `# maps: lo-hi lo-hi …` lists every mapping of /proc/self/maps but the heap, the stack
//! and vsyscall (hex, half-open): where the kernel will not put the arenas and mmapped
//! chunks the program asks for, so a model can place its own around them
//! ([`AddressSpace::reserve_maps`](crate::vm::AddressSpace::reserve_maps)).
//! `# heap: start-break top N` is the brk heap (the `[heap]` start and `sbrk(0)`) and the
//! size of glibc's top chunk (`mallinfo2().keepcost`): what the C library and the
//! embedding allocated before the first recorded call left behind (`vm::ProcessLayout`
//! starts a model's heap at that break).
//! The interpreter is the libpython the `record` feature was built against (pyo3-ffi),
//! started as that python's own executable would be (argv[0] is its path), so `sys.path`,
//! `sys.executable` and the program's stdout/stderr/exit code are those of `python3 ARGS…`.
//! The trace is the format of ../shared/traces/README.md (cpython-3.11.7): post-order
//! lines `m/c/r/f D …`, `A`/`F` arenas, `V`/`W` data-stack chunks.
//! Not seen, as in the shipped recordings: raw calls CPython makes while it swaps in its
//! default raw allocator (pre-initialisation, path configuration, runtime finalisation).
//! A forked child writes its own trace beside the parent's (`hooks`: `t.<pid>.trace`,
//! headed `# forked-from: t.trace at event N`), never into the parent's: see
//! `trace::fork` for how such a trace is read, and docs/traces.md.

mod hooks;

use crate::trace::output::{copy, is_binary_name, is_gzip_name, Create, Temp};
use crate::trace::{create, open, EventWriter, Written};
use std::ffi::{CStr, CString};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The python executable the `record` feature was built against.
pub const PYTHON: &str = env!("PYALLOC_RECORD_PYTHON");

/// The `#` lines describing the trace's format (the shipped recordings' own key).
const FORMAT: &str = "\
# FORMAT: one wrapped call per line, in call order. POST-ORDER: a line is written when the call
#   returns, so calls nested inside pymalloc appear immediately BEFORE the O/M line that caused them.
#   m D size addr            malloc
#   c D nelem elsize addr    calloc (request = nelem*elsize)
#   r D oldaddr size newaddr realloc
#   f D addr                 free
#   A size addr              pymalloc ARENA alloc (mmap), nested inside the O/M call that needed a new arena
#   F addr size              pymalloc ARENA free (munmap), nested inside the O/M free/realloc that emptied it
#   V size addr              _PyObject_VirtualAlloc from OUTSIDE pymalloc (frame data-stack chunk); not an arena
#   W addr size              _PyObject_VirtualFree from outside pymalloc (data-stack chunk); not an arena
#   D (domain): O = PYMEM_DOMAIN_OBJ, M = PYMEM_DOMAIN_MEM, R = PYMEM_DOMAIN_RAW called at top level,
#     r = RAW call nested inside an O/M call.
#   Numbers: sizes decimal; addresses lowercase hex WITHOUT 0x; NULL = 0.
#   NOTE: RAW events made while CPython temporarily swaps in the default RAW allocator
#   (_PyMem_SetDefaultAllocator windows during pre-init/path config/finalization) are not visible.
";

fn glibc_version() -> String {
    #[cfg(target_env = "gnu")]
    {
        extern "C" {
            fn gnu_get_libc_version() -> *const libc::c_char;
        }
        // SAFETY: glibc returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(gnu_get_libc_version()) };
        format!("glibc {}", v.to_string_lossy())
    }
    #[cfg(not(target_env = "gnu"))]
    {
        "libc unknown".to_string()
    }
}

/// The `# maps:` and `# heap:` lines: the address space as it stands when recording starts.
fn address_space_lines() -> String {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return String::new();
    };
    let mut ranges = Vec::new();
    let mut heap_start = None;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let range = f.next().unwrap_or("");
        let name = f.nth(4).unwrap_or("");
        match name {
            "[heap]" => heap_start = range.split('-').next().map(str::to_string),
            "[stack]" | "[vsyscall]" => {}
            _ => ranges.push(range.to_string()),
        }
    }
    let mut out = format!("# maps: {}\n", ranges.join(" "));
    #[cfg(target_env = "gnu")]
    {
        extern "C" {
            fn sbrk(increment: libc::intptr_t) -> *mut libc::c_void;
        }
        // SAFETY: sbrk(0) only reads the break; mallinfo2 only reads malloc's counters.
        let (brk, top) = unsafe { (sbrk(0) as u64, libc::mallinfo2().keepcost) };
        let start = heap_start.unwrap_or_else(|| format!("{brk:x}"));
        out.push_str(&format!("# heap: {start}-{brk:x} top {top}\n"));
    }
    out
}

fn header(args: &[String]) -> String {
    // SAFETY: Py_GetVersion returns a static string and may be called before initialisation.
    let version = unsafe { CStr::from_ptr(pyo3_ffi::Py_GetVersion()) }
        .to_string_lossy()
        .into_owned();
    let mut h = String::new();
    h.push_str("# pymalloc allocation trace recorded from REAL CPython\n");
    h.push_str(&format!("# interpreter: CPython {version}\n"));
    h.push_str(&format!(
        "# platform: {} {}, {}; {PYTHON} (libpython linked through pyo3-ffi)\n",
        std::env::consts::OS,
        std::env::consts::ARCH,
        glibc_version()
    ));
    h.push_str(
        "# recorder: pyalloc record: PyMem_SetAllocator(OBJ,MEM,RAW) + PyObject_SetArenaAllocator wrappers\n\
         #           installed after Py_PreInitialize and BEFORE Py_BytesMain; no allocation in hooks\n",
    );
    let cmd: Vec<String> = args.iter().map(|a| quote(a)).collect();
    h.push_str(&format!(
        "# command: pyalloc record -- {}   [same as: python3 {}]\n",
        cmd.join(" "),
        cmd.join(" ")
    ));
    h.push_str(&address_space_lines());
    h.push_str(FORMAT);
    h
}

/// Where forked children's traces go: `(stem, parent)`, a child's path being stem + pid +
/// `.trace` in `out`'s folder (`small.trace.gz` → `small.<pid>.trace`), and `parent` the
/// name its header gives for the trace it forked from.
fn child_names(out: &Path) -> (Vec<u8>, Vec<u8>) {
    use std::os::unix::ffi::OsStrExt;
    let name = out.file_name().map_or(&b"trace"[..], |n| n.as_bytes());
    let mut stem = name;
    for ext in [&b".gz"[..], b".bin", b".pyab", b".trace", b".txt"] {
        stem = stem.strip_suffix(ext).unwrap_or(stem);
    }
    let mut path = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => {
            let mut p = d.as_os_str().as_bytes().to_vec();
            p.push(b'/');
            p
        }
        _ => Vec::new(),
    };
    path.extend_from_slice(stem);
    path.push(b'.');
    (path, name.to_vec())
}

fn quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''").replace('\n', "\\n"))
    }
}

/// Runs `python3 ARGS…` with the hooks installed, writing the trace to `out`; returns the
/// program's exit code and what was written. The program's stdout and stderr are this
/// process's.
///
/// The hooks write plain text to a temporary file beside `out`; when the program has
/// returned, it is renamed into place (plain text), or re-encoded into `out` by
/// [`trace::create`](crate::trace::create) (`*.gz`: gzip, `*.bin`/`*.pyab`: binary). A
/// program that ends the process itself (`os._exit`) leaves no trace at `out`.
///
/// # Errors
/// The trace file cannot be created or written, an argument holds a NUL byte, or the
/// interpreter's pre-initialisation fails.
pub fn record(out: &Path, args: &[String]) -> Result<(i32, Written), String> {
    let (temp, mut file) = Temp::create(out).map_err(|e| e.to_string())?;
    let mut argv_c: Vec<CString> = Vec::with_capacity(args.len() + 1);
    argv_c.push(CString::new(PYTHON).map_err(|e| e.to_string())?);
    for a in args {
        argv_c.push(
            CString::new(a.as_str()).map_err(|_| format!("argument {a:?} holds a NUL byte"))?,
        );
    }
    let mut argv: Vec<*mut libc::c_char> = argv_c.iter().map(|c| c.as_ptr() as *mut _).collect();
    argv.push(std::ptr::null_mut());
    let argc = argv_c.len();
    // SAFETY: a zeroed PyPreConfig is what PyPreConfig_InitPythonConfig expects to fill in;
    // argv outlives the interpreter (it is leaked below with argv_c).
    let code = unsafe {
        let mut pre: pyo3_ffi::PyPreConfig = std::mem::zeroed();
        pyo3_ffi::PyPreConfig_InitPythonConfig(&mut pre);
        let status =
            pyo3_ffi::Py_PreInitializeFromBytesArgs(&pre, argc as isize, argv.as_mut_ptr());
        if pyo3_ffi::PyStatus_Exception(status) != 0 {
            let msg = if status.err_msg.is_null() {
                "unknown error".into()
            } else {
                CStr::from_ptr(status.err_msg)
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(format!("Python pre-initialisation failed: {msg}"));
        }
        // the header after pre-initialisation: its address-space lines are the process's
        // as the first recorded call will find it
        let header = header(args);
        file.write_all(header.as_bytes())
            .map_err(|e| format!("{}: {e}", out.display()))?;
        let (stem, parent) = child_names(out);
        hooks::start(file.as_raw_fd(), &stem, &parent, header.as_bytes());
        *FINISH.lock().unwrap_or_else(|p| p.into_inner()) = Some(Finish {
            temp,
            out: out.to_path_buf(),
            file,
        });
        // `sys.exit()` ends the process through CPython's Py_Exit -> exit(): the trace is
        // then finished by this handler instead of below.
        libc::atexit(finish_at_exit);
        hooks::install();
        pyo3_ffi::Py_BytesMain(argc as i32, argv.as_mut_ptr())
    };
    std::mem::forget(argv_c);
    std::mem::forget(argv);
    match finish() {
        Some(w) => Ok((code, w?)),
        None => {
            // A forked child returned from the interpreter's main: its own trace is
            // closed; the parent's trace and output are the parent's to finish.
            let _ = std::io::stdout().flush();
            // SAFETY: ends this (child) process without running the parent's exit path.
            unsafe { libc::_exit(code) }
        }
    }
}

/// What is left to do once the program has run, set before the interpreter starts.
struct Finish {
    temp: Temp,          // the hooks' plain text
    out: PathBuf,        // where the trace goes
    file: std::fs::File, // the temporary file's descriptor, which the hooks write to
}

static FINISH: std::sync::Mutex<Option<Finish>> = std::sync::Mutex::new(None);

/// Stops the hooks and, in the process that started recording, puts the trace in place
/// (once: `None` after the first call, and in a forked child).
fn finish() -> Option<Result<Written, String>> {
    let (lines, ok, original) = hooks::stop();
    if !original {
        return None;
    }
    let f = FINISH.lock().unwrap_or_else(|p| p.into_inner()).take()?;
    drop(f.file);
    if !ok {
        return Some(Err(format!(
            "{}: writing the trace failed after {lines} lines",
            f.out.display()
        )));
    }
    Some(place(f.temp, &f.out, lines))
}

/// The program ended the process with exit() (`sys.exit` does, through `Py_Exit`):
/// finish the trace and say what was written, as `pyalloc record` does after a return.
extern "C" fn finish_at_exit() {
    match finish() {
        Some(Ok(w)) => eprintln!("pyalloc record: {w}"),
        Some(Err(e)) => eprintln!("pyalloc record: {e}"),
        None => {}
    }
}

/// Puts the plain text the hooks wrote (`temp`, `events` event lines) at `out` in the
/// form its name asks for.
fn place(temp: Temp, out: &Path, events: u64) -> Result<Written, String> {
    let err = |e: crate::trace::TraceError| e.to_string();
    let (binary, gzip) = (is_binary_name(out), is_gzip_name(out));
    if !binary && !gzip {
        let bytes = temp.persist().map_err(err)?;
        let path = out.to_path_buf();
        return Ok(Written {
            path,
            events,
            bytes,
            binary,
            gzip,
        });
    }
    let mut reader = open(temp.tmp_path()).map_err(err)?;
    reader.keep_text();
    let first = reader.next_event().map_err(err)?;
    let header = reader.header().clone();
    let mut w: Box<dyn EventWriter> =
        Box::new(create(out, &header, &Create::default()).map_err(err)?);
    copy(first, reader.as_mut(), w.as_mut()).map_err(err)?;
    w.finish().map_err(err)
}
