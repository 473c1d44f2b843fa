//! The allocator hooks: wrappers around CPython's own allocators that write one line per
//! call, when the call returns, without allocating.
//!
//! ```text
//!   PyObject_Malloc(24) ─> hook (O) ─ depth 1 ─> pymalloc ─> arena alloc hook  ─> "A 1048576 …"
//!                                                        └─> PyMem_RawMalloc hook ─> "m r 600 …"
//!                          hook returns ─> "m O 24 7ffff7cb2030"             (post-order)
//! ```
//! A per-thread `depth` counts the O/M calls in progress: a raw call made while it is
//! non-zero is nested (`r`), else top level (`R`); an arena-allocator call made while it is
//! non-zero is pymalloc's (`A`/`F`), else CPython's data stack (`V`/`W`, 3.11's
//! `_PyObject_VirtualAlloc`). Lines are formatted in a stack buffer and appended to one
//! static 64 KiB buffer (under a lock), written to the trace's file descriptor with
//! write(2) when full and at the end. Nothing here calls malloc.

use libc::{c_void, size_t};
use pyo3_ffi::{PyMemAllocatorDomain, PyMemAllocatorEx, PyObjectArenaAllocator};
use std::cell::Cell;
use std::sync::Mutex;

thread_local! {
    /// O/M calls in progress on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

const BUF: usize = 1 << 16;

/// The trace's output: a file descriptor and the bytes not yet written to it.
struct Sink {
    fd: i32,         // where lines go (-1: not recording)
    len: usize,      // bytes pending in data
    data: [u8; BUF], // pending bytes
    lines: u64,      // lines written (events)
    failed: bool,    // a write(2) failed: the trace is incomplete
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    fd: -1,
    len: 0,
    data: [0; BUF],
    lines: 0,
    failed: false,
});

fn write_all(fd: i32, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

impl Sink {
    fn flush(&mut self) {
        if self.fd >= 0 && self.len > 0 && !write_all(self.fd, &self.data[..self.len]) {
            self.failed = true;
        }
        self.len = 0;
    }
}

/// A line being formatted on the stack.
struct Line {
    buf: [u8; 96], // longest line: "c O " + 3 × 20 digits + spaces + newline
    len: usize,    // bytes used
}

impl Line {
    fn new() -> Line {
        Line {
            buf: [0; 96],
            len: 0,
        }
    }
    fn ch(&mut self, c: u8) -> &mut Line {
        self.buf[self.len] = c;
        self.len += 1;
        self
    }
    fn dec(&mut self, mut v: u64) -> &mut Line {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for &b in &tmp[i..] {
            self.ch(b);
        }
        self
    }
    fn hex(&mut self, v: u64) -> &mut Line {
        let mut tmp = [0u8; 16];
        let mut i = tmp.len();
        let mut v = v;
        loop {
            i -= 1;
            tmp[i] = b"0123456789abcdef"[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        for &b in &tmp[i..] {
            self.ch(b);
        }
        self
    }
    fn sp(&mut self) -> &mut Line {
        self.ch(b' ')
    }
    fn emit(&mut self) {
        self.ch(b'\n');
        let mut s = match SINK.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if s.fd < 0 {
            return;
        }
        if s.len + self.len > BUF {
            s.flush();
        }
        let at = s.len;
        s.data[at..at + self.len].copy_from_slice(&self.buf[..self.len]);
        s.len += self.len;
        s.lines += 1;
    }
}

/// One wrapped domain: its letter and the allocator it forwards to.
pub(crate) struct Wrapped {
    letter: u8,             // b'O', b'M' or b'R'
    orig: PyMemAllocatorEx, // CPython's allocator for the domain
}

/// The three domains' wrappers and the arena allocator's (filled in by [`install`]).
static mut WRAPPED: [Wrapped; 3] = [
    Wrapped {
        letter: b'R',
        orig: EMPTY,
    },
    Wrapped {
        letter: b'M',
        orig: EMPTY,
    },
    Wrapped {
        letter: b'O',
        orig: EMPTY,
    },
];
static mut ARENA: PyObjectArenaAllocator = PyObjectArenaAllocator {
    ctx: std::ptr::null_mut(),
    alloc: None,
    free: None,
};
const EMPTY: PyMemAllocatorEx = PyMemAllocatorEx {
    ctx: std::ptr::null_mut(),
    malloc: None,
    calloc: None,
    realloc: None,
    free: None,
};

/// Enters a call: returns the domain letter to write (`r` for a nested raw call).
fn enter(w: &Wrapped) -> u8 {
    if w.letter == b'R' {
        if DEPTH.with(Cell::get) > 0 {
            b'r'
        } else {
            b'R'
        }
    } else {
        DEPTH.with(|d| d.set(d.get() + 1));
        w.letter
    }
}

fn leave(w: &Wrapped) {
    if w.letter != b'R' {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

fn wrapped<'a>(ctx: *mut c_void) -> &'a Wrapped {
    // SAFETY: ctx is the address of one of WRAPPED's entries, set by install() before
    // CPython could call the hook, and never changed afterwards.
    unsafe { &*(ctx as *const Wrapped) }
}

extern "C" fn hook_malloc(ctx: *mut c_void, size: size_t) -> *mut c_void {
    let w = wrapped(ctx);
    let d = enter(w);
    let f = w.orig.malloc.expect("CPython's malloc");
    let p = f(w.orig.ctx, size);
    leave(w);
    Line::new()
        .ch(b'm')
        .sp()
        .ch(d)
        .sp()
        .dec(size as u64)
        .sp()
        .hex(p as u64)
        .emit();
    p
}

extern "C" fn hook_calloc(ctx: *mut c_void, nelem: size_t, elsize: size_t) -> *mut c_void {
    let w = wrapped(ctx);
    let d = enter(w);
    let f = w.orig.calloc.expect("CPython's calloc");
    let p = f(w.orig.ctx, nelem, elsize);
    leave(w);
    Line::new()
        .ch(b'c')
        .sp()
        .ch(d)
        .sp()
        .dec(nelem as u64)
        .sp()
        .dec(elsize as u64)
        .sp()
        .hex(p as u64)
        .emit();
    p
}

extern "C" fn hook_realloc(ctx: *mut c_void, old: *mut c_void, size: size_t) -> *mut c_void {
    let w = wrapped(ctx);
    let d = enter(w);
    let f = w.orig.realloc.expect("CPython's realloc");
    let p = f(w.orig.ctx, old, size);
    leave(w);
    Line::new()
        .ch(b'r')
        .sp()
        .ch(d)
        .sp()
        .hex(old as u64)
        .sp()
        .dec(size as u64)
        .sp()
        .hex(p as u64)
        .emit();
    p
}

extern "C" fn hook_free(ctx: *mut c_void, p: *mut c_void) {
    let w = wrapped(ctx);
    let d = enter(w);
    let f = w.orig.free.expect("CPython's free");
    f(w.orig.ctx, p);
    leave(w);
    Line::new().ch(b'f').sp().ch(d).sp().hex(p as u64).emit();
}

extern "C" fn hook_arena_alloc(_ctx: *mut c_void, size: size_t) -> *mut c_void {
    // SAFETY: ARENA is written once by install() before CPython runs.
    let a = unsafe { &*std::ptr::addr_of!(ARENA) };
    let f = a.alloc.expect("CPython's arena alloc");
    let p = f(a.ctx, size);
    let tag = if DEPTH.with(Cell::get) > 0 {
        b'A'
    } else {
        b'V'
    };
    Line::new()
        .ch(tag)
        .sp()
        .dec(size as u64)
        .sp()
        .hex(p as u64)
        .emit();
    p
}

extern "C" fn hook_arena_free(_ctx: *mut c_void, p: *mut c_void, size: size_t) {
    // SAFETY: as in hook_arena_alloc.
    let a = unsafe { &*std::ptr::addr_of!(ARENA) };
    let f = a.free.expect("CPython's arena free");
    f(a.ctx, p, size);
    let tag = if DEPTH.with(Cell::get) > 0 {
        b'F'
    } else {
        b'W'
    };
    Line::new()
        .ch(tag)
        .sp()
        .hex(p as u64)
        .sp()
        .dec(size as u64)
        .emit();
}

/// Starts writing lines to `fd` (after the header has been written there).
pub(crate) fn start(fd: i32) {
    let mut s = SINK.lock().unwrap_or_else(|p| p.into_inner());
    s.fd = fd;
}

/// Writes what is pending and stops recording; returns (lines written, all writes succeeded).
pub(crate) fn stop() -> (u64, bool) {
    let mut s = SINK.lock().unwrap_or_else(|p| p.into_inner());
    s.flush();
    s.fd = -1;
    (s.lines, !s.failed)
}

/// Wraps the RAW, MEM and OBJ allocators and the arena allocator CPython has now.
///
/// # Safety
/// Call once, after `Py_PreInitialize` and before the interpreter starts, on the main thread.
pub(crate) unsafe fn install() {
    let domains = [
        PyMemAllocatorDomain::PYMEM_DOMAIN_RAW,
        PyMemAllocatorDomain::PYMEM_DOMAIN_MEM,
        PyMemAllocatorDomain::PYMEM_DOMAIN_OBJ,
    ];
    let table = std::ptr::addr_of_mut!(WRAPPED);
    for (i, dom) in domains.into_iter().enumerate() {
        let w = &mut (*table)[i];
        pyo3_ffi::PyMem_GetAllocator(dom, &mut w.orig);
        let mut hook = PyMemAllocatorEx {
            ctx: (w as *mut Wrapped).cast(),
            malloc: Some(hook_malloc),
            calloc: Some(hook_calloc),
            realloc: Some(hook_realloc),
            free: Some(hook_free),
        };
        pyo3_ffi::PyMem_SetAllocator(dom, &mut hook);
    }
    let arena = std::ptr::addr_of_mut!(ARENA);
    pyo3_ffi::PyObject_GetArenaAllocator(arena);
    let mut hook = PyObjectArenaAllocator {
        ctx: std::ptr::null_mut(),
        alloc: Some(hook_arena_alloc),
        free: Some(hook_arena_free),
    };
    pyo3_ffi::PyObject_SetArenaAllocator(&mut hook);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_formatted_as_the_recordings_write_them() {
        let mut l = Line::new();
        l.ch(b'c')
            .sp()
            .ch(b'O')
            .sp()
            .dec(0)
            .sp()
            .dec(u64::MAX)
            .sp()
            .hex(0x7fff_f7cb_2030)
            .sp()
            .hex(0);
        assert_eq!(
            std::str::from_utf8(&l.buf[..l.len]).unwrap(),
            "c O 0 18446744073709551615 7ffff7cb2030 0"
        );
    }
}
