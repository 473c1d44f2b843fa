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
//! static 64 KiB buffer (under a spin lock), written to the trace's file descriptor with
//! write(2) when full and at the end. Nothing here calls malloc.
//!
//! ```text
//!   fork():  before_fork      take the lock, flush            (no half line in either process)
//!            parent           release; its trace goes on
//!            child            release; fd = -1; pending: at its first line open
//!                             <stem><pid>.trace, header "forked-from: <parent> at event N",
//!                             then write each line at once (os._exit runs no flush)
//! ```
//! Invariant: a line is written to exactly one process's trace, and
//! events(child's trace as read) == N + lines the child wrote.

use libc::{c_void, size_t};
use pyo3_ffi::{PyMemAllocatorDomain, PyMemAllocatorEx, PyObjectArenaAllocator};
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// O/M calls in progress on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

const BUF: usize = 1 << 16;
/// Longest path a forked child's trace may have (its name is prepared before recording).
const PATH_MAX: usize = 4096;
/// Longest header copied into a forked child's trace.
const HEADER_MAX: usize = 64 << 10;

/// The trace's output: a file descriptor and the bytes not yet written to it.
struct Sink {
    fd: i32,         // where lines go (-1: not recording)
    len: usize,      // bytes pending in data
    data: [u8; BUF], // pending bytes
    lines: u64,      // lines written (events)
    failed: bool,    // a write(2) failed: the trace is incomplete
    pid: i32,        // the process whose trace `fd` is (0 before start)
    child: Child,    // where a forked child's own trace goes
}

/// What a forked child needs to start its own trace, prepared before recording starts,
/// so that the fork handlers neither allocate nor format paths.
struct Child {
    stem: [u8; PATH_MAX], // "<dir>/<name>." : the child's path is stem + pid + ".trace"
    stem_len: usize,      // bytes of stem used (0: children are not recorded)
    parent: [u8; PATH_MAX], // the parent's trace as the child's header names it
    parent_len: usize,    // bytes of parent used
    header: [u8; HEADER_MAX], // the parent's header lines after its first line
    header_len: usize,    // bytes of header used
    pending: bool,        // forked, the child's file not opened yet (opened at its first line)
    forked_at: u64,       // the parent's event count when this child was forked
    write_through: bool,  // a child writes each line at once: os._exit skips any flush
}

/// The one sink, behind a spin lock that the fork handlers can hold across `fork()`
/// (a std `Mutex` guard cannot be carried from the prepare handler to the others).
struct Locked {
    busy: AtomicBool,
    sink: UnsafeCell<Sink>,
}

// SAFETY: `sink` is only reached through `lock()`, which `busy` makes exclusive.
unsafe impl Sync for Locked {}

static SINK: Locked = Locked {
    busy: AtomicBool::new(false),
    sink: UnsafeCell::new(Sink {
        fd: -1,
        len: 0,
        data: [0; BUF],
        lines: 0,
        failed: false,
        pid: 0,
        child: Child {
            stem: [0; PATH_MAX],
            stem_len: 0,
            parent: [0; PATH_MAX],
            parent_len: 0,
            header: [0; HEADER_MAX],
            header_len: 0,
            pending: false,
            forked_at: 0,
            write_through: false,
        },
    }),
};

/// Exclusive access to the sink until the guard is dropped.
struct Guard;

impl Guard {
    fn sink(&mut self) -> &mut Sink {
        // SAFETY: a Guard exists only while `busy` is held by this thread.
        unsafe { &mut *SINK.sink.get() }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        SINK.busy.store(false, Ordering::Release);
    }
}

fn lock() -> Guard {
    let mut spins = 0u32;
    while SINK
        .busy
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        spins += 1;
        if spins < 64 {
            std::hint::spin_loop();
        } else {
            // sched_yield(2): no allocation.
            std::thread::yield_now();
        }
    }
    Guard
}

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

    /// In a forked child, at its first line: opens `<stem><pid>.trace` and writes its
    /// header (the parent's, with where the fork happened). Nothing here allocates.
    fn open_child(&mut self) {
        self.child.pending = false;
        // SAFETY: getpid/getppid cannot fail.
        let (pid, ppid) = unsafe { (libc::getpid(), libc::getppid()) };
        let mut path = [0u8; PATH_MAX + 32];
        let c = &self.child;
        let mut n = c.stem_len;
        path[..n].copy_from_slice(&c.stem[..n]);
        let mut l = Line::new();
        l.dec(pid as u64);
        for &b in l.buf[..l.len].iter().chain(b".trace") {
            path[n] = b;
            n += 1;
        }
        path[n] = 0;
        // SAFETY: path is NUL-terminated.
        let fd = unsafe {
            libc::open(
                path.as_ptr().cast(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                0o644,
            )
        };
        if fd < 0 {
            self.failed = true;
            self.fd = -1;
            return;
        }
        self.fd = fd;
        self.pid = pid;
        let c = &mut self.child;
        // A grandchild's trace starts from this child's, which sits in the same folder.
        let dir = c.stem[..c.stem_len]
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(0, |i| i + 1);
        let parent = c.parent;
        let parent_len = c.parent_len;
        c.parent_len = n - dir;
        c.parent[..c.parent_len].copy_from_slice(&path[dir..n]);
        let c = &self.child;
        let ok = write_all(
            fd,
            b"# pymalloc allocation trace recorded from REAL CPython\n",
        ) && write_all(fd, b"# forked-from: ")
            && write_all(fd, &parent[..parent_len])
            && write_all(fd, b" at event ")
            && {
                let mut l = Line::new();
                l.dec(c.forked_at).ch(b'\n');
                write_all(fd, &l.buf[..l.len])
            }
            && {
                let mut l = Line::new();
                for &b in b"# pid: " {
                    l.ch(b);
                }
                l.dec(pid as u64);
                for &b in b", forked from pid " {
                    l.ch(b);
                }
                l.dec(ppid as u64).ch(b'\n');
                write_all(fd, &l.buf[..l.len])
            }
            && write_all(fd, &c.header[..c.header_len]);
        if !ok {
            self.failed = true;
        }
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
    /// A call line's head: `op domain `.
    fn call(op: u8, domain: u8) -> Line {
        let mut l = Line::new();
        l.ch(op).sp().ch(domain).sp();
        l
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
        let mut g = lock();
        let s = g.sink();
        if s.child.pending {
            s.open_child();
        }
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
        if s.child.write_through {
            s.flush();
        }
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

/// Leaves a call [`enter`] entered.
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

/// A hooked call in the domain of `ctx`: `call` runs CPython's own allocator, inside the
/// nesting count ([`enter`], [`leave`]); returns the domain letter to write and its result.
fn around<R>(ctx: *mut c_void, call: impl FnOnce(&PyMemAllocatorEx) -> R) -> (u8, R) {
    let w = wrapped(ctx);
    let d = enter(w);
    let r = call(&w.orig);
    leave(w);
    (d, r)
}

extern "C" fn hook_malloc(ctx: *mut c_void, size: size_t) -> *mut c_void {
    let (d, p) = around(ctx, |o| o.malloc.expect("CPython's malloc")(o.ctx, size));
    Line::call(b'm', d)
        .dec(size as u64)
        .sp()
        .hex(p as u64)
        .emit();
    p
}

extern "C" fn hook_calloc(ctx: *mut c_void, nelem: size_t, elsize: size_t) -> *mut c_void {
    let (d, p) = around(ctx, |o| {
        o.calloc.expect("CPython's calloc")(o.ctx, nelem, elsize)
    });
    Line::call(b'c', d)
        .dec(nelem as u64)
        .sp()
        .dec(elsize as u64)
        .sp()
        .hex(p as u64)
        .emit();
    p
}

extern "C" fn hook_realloc(ctx: *mut c_void, old: *mut c_void, size: size_t) -> *mut c_void {
    let (d, p) = around(ctx, |o| {
        o.realloc.expect("CPython's realloc")(o.ctx, old, size)
    });
    Line::call(b'r', d)
        .hex(old as u64)
        .sp()
        .dec(size as u64)
        .sp()
        .hex(p as u64)
        .emit();
    p
}

extern "C" fn hook_free(ctx: *mut c_void, p: *mut c_void) {
    let (d, ()) = around(ctx, |o| o.free.expect("CPython's free")(o.ctx, p));
    Line::call(b'f', d).hex(p as u64).emit();
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
///
/// `child_stem` and `parent_name` prepare forked children's traces: a child's lines go to
/// `child_stem` + its pid + `.trace`, whose header says it starts from the parent's trace
/// `parent_name` at the event count where the fork happened, then repeats `header`'s
/// lines after the first. Too long a stem or header: children are not recorded (their
/// calls are dropped, never written into the parent's trace).
pub(crate) fn start(fd: i32, child_stem: &[u8], parent_name: &[u8], header: &[u8]) {
    let mut g = lock();
    let s = g.sink();
    s.fd = fd;
    // SAFETY: getpid cannot fail.
    s.pid = unsafe { libc::getpid() };
    let c = &mut s.child;
    let after_first = header
        .iter()
        .position(|&b| b == b'\n')
        .map_or(&header[..0], |i| &header[i + 1..]);
    if child_stem.len() < PATH_MAX
        && parent_name.len() < PATH_MAX
        && after_first.len() <= HEADER_MAX
    {
        c.stem[..child_stem.len()].copy_from_slice(child_stem);
        c.stem_len = child_stem.len();
        c.parent[..parent_name.len()].copy_from_slice(parent_name);
        c.parent_len = parent_name.len();
        c.header[..after_first.len()].copy_from_slice(after_first);
        c.header_len = after_first.len();
    }
    drop(g);
    // SAFETY: the handlers neither allocate nor take locks other than the sink's.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_parent),
            Some(after_fork_child),
        );
    }
}

/// `fork()` is about to run: hold the sink (no thread is mid-line) with nothing pending,
/// so neither process inherits half a line or writes the other's bytes.
extern "C" fn before_fork() {
    let mut g = lock();
    g.sink().flush();
    std::mem::forget(g);
}

/// In the parent: release the sink; its trace goes on as before.
extern "C" fn after_fork_parent() {
    SINK.busy.store(false, Ordering::Release);
}

/// In the child: stop writing into the parent's trace; the child's own trace is opened at
/// its first line (a child that only calls exec() leaves no file).
extern "C" fn after_fork_child() {
    // SAFETY: the forking thread holds `busy` (before_fork) and is the child's only thread.
    let s = unsafe { &mut *SINK.sink.get() };
    let recording = s.fd >= 0 || s.child.pending;
    s.fd = -1;
    s.len = 0;
    if recording && s.child.stem_len > 0 {
        // The events a reader of this process's trace has seen: a child's trace is read
        // after its parent's prefix, so a grandchild counts both.
        s.child.forked_at += s.lines;
        s.child.pending = true;
        s.child.write_through = true;
        s.lines = 0;
    } else {
        s.child.pending = false;
    }
    SINK.busy.store(false, Ordering::Release);
}

/// Writes what is pending and stops recording; returns (lines written, all writes
/// succeeded, this is the process that started recording: false in a forked child that
/// returned from the interpreter's main).
pub(crate) fn stop() -> (u64, bool, bool) {
    let mut g = lock();
    let s = g.sink();
    s.flush();
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let original = !s.child.write_through;
    if !original && s.fd >= 0 {
        // SAFETY: the child's own trace file, opened by open_child.
        unsafe { libc::close(s.fd) };
    }
    s.fd = -1;
    s.child.pending = false;
    (s.lines, !s.failed, original && s.pid == me)
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
