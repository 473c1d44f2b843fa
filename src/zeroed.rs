//! Growable tables of plain data in zeroed memory: the big tables of the models and the
//! replay (glibc's chunk nodes, `compare`'s block-id tables), written sparsely or densely
//! by index, never shrunk. What is never written is never resident.
//!
//! ```text
//!  Linux:  one anonymous mapping, 1 GiB of address space reserved (MAP_NORESERVE: nothing
//!          committed until written), so the table grows in place, with transparent huge
//!          pages asked for (MADV_HUGEPAGE): a fault per 2 MiB written instead of per
//!          4 KiB, and fewer TLB misses on random reads. Past the reservation, or where it
//!          cannot be made (strict overcommit), it grows by mremap (page tables move, data
//!          does not). For tables that grow to megabytes (a small one costs a 2 MiB page:
//!          `Vec` is the better home for those).
//!  else:   the system allocator's zeroed memory; a grow copies the pages holding data.
//! ```
//! A dropped table's mapping is kept as a spare for the next new one (a few, of bounded
//! written size), zeroed where it was written, as calloc reuses freed memory: models made
//! one after another (property tests, benches, many traces) fault no fresh pages in.
//! Invariant: `ptr[len..cap]` is all zero bytes.

use std::alloc::{handle_alloc_error, Layout};
use std::ptr::NonNull;

/// Plain data whose all-zero bytes are a valid value.
///
/// # Safety
/// An implementor is valid when every byte is zero, and has no drop glue (it is `Copy`).
pub unsafe trait Zeroable: Copy {}

// SAFETY: integers are valid as all-zero bytes and are Copy.
unsafe impl Zeroable for u32 {}
// SAFETY: as above.
unsafe impl Zeroable for u64 {}

/// Bytes of address space reserved for a table at first (Linux).
#[cfg(target_os = "linux")]
const RESERVE: usize = 1 << 30;

/// A growable array of `T` in zeroed memory (see the module).
pub struct ZeroedVec<T: Zeroable> {
    ptr: NonNull<T>, // `cap` elements, zero past `len` (dangling when cap == 0)
    len: usize,      // elements in use
    cap: usize,      // elements the memory holds
}

// SAFETY: the table owns its memory of plain `Copy` data, like a `Vec<T>`.
unsafe impl<T: Zeroable + Send> Send for ZeroedVec<T> {}
// SAFETY: shared access only reads, like `&Vec<T>`.
unsafe impl<T: Zeroable + Sync> Sync for ZeroedVec<T> {}

impl<T: Zeroable> Default for ZeroedVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Zeroable> ZeroedVec<T> {
    /// An empty table that holds no memory yet.
    pub const fn new() -> ZeroedVec<T> {
        ZeroedVec {
            ptr: NonNull::dangling(),
            len: 0,
            cap: 0,
        }
    }

    fn bytes(n: usize) -> usize {
        Layout::array::<T>(n)
            .expect("a table within isize::MAX bytes")
            .size()
    }

    /// Elements the memory holds: on Linux the whole reservation, address space mostly
    /// never written (what a table costs is its written part, `len`).
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Grows to `new_len` elements, the new ones zero; never shrinks.
    #[inline]
    pub fn resize(&mut self, new_len: usize) {
        if new_len > self.cap {
            self.grow(new_len);
        }
        if new_len > self.len {
            self.len = new_len;
        }
    }

    /// Appends `v`.
    #[inline(always)]
    pub fn push(&mut self, v: T) {
        let i = self.len;
        if i == self.cap {
            self.grow(i + 1);
        }
        // SAFETY: i < cap, and every element below cap is initialised.
        unsafe { *self.ptr.as_ptr().add(i) = v };
        self.len = i + 1;
    }

    /// Empties the table: the written part zeroed in place, or the memory given back when
    /// more than 64 MiB was written.
    pub fn clear(&mut self) {
        if Self::bytes(self.len) > 64 << 20 {
            *self = Self::new();
        } else {
            // SAFETY: `ptr` holds `cap ≥ len` elements; all-zero bytes are a valid T.
            unsafe { std::ptr::write_bytes(self.ptr.as_ptr(), 0, self.len) };
            self.len = 0;
        }
    }

    /// Element `i`, with no bounds check in release builds (checked in debug builds).
    ///
    /// # Safety
    /// `i < self.len()`.
    #[inline(always)]
    pub unsafe fn at(&self, i: usize) -> &T {
        debug_assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: the caller's contract: i < len ≤ cap, and every element below cap is
        // initialised (zeroed or written).
        unsafe { &*self.ptr.as_ptr().add(i) }
    }

    /// Element `i`, mutably (as [`at`](Self::at)).
    ///
    /// # Safety
    /// `i < self.len()`.
    #[inline(always)]
    pub unsafe fn at_mut(&mut self, i: usize) -> &mut T {
        debug_assert!(i < self.len, "element {i} of {}", self.len);
        // SAFETY: as in `at`, and `&mut self` is unique.
        unsafe { &mut *self.ptr.as_ptr().add(i) }
    }

    /// Room for at least `need` (> cap) elements.
    #[cold]
    fn grow(&mut self, need: usize) {
        if self.cap == 0 {
            let (ptr, bytes) =
                spare::take(Self::bytes(need)).unwrap_or_else(|| mem::zeroed(Self::bytes(need)));
            self.ptr = ptr.cast();
            self.cap = bytes / std::mem::size_of::<T>().max(1);
            self.ask_huge();
            return;
        }
        let want = need.max(2 * self.cap);
        let (old, new) = (Self::bytes(self.cap), Self::bytes(want));
        // SAFETY: `ptr` is our memory of `old` bytes, zero past `len`.
        let (ptr, bytes) = unsafe { mem::grow(self.ptr.cast(), old, new, Self::bytes(self.len)) };
        self.ptr = ptr.cast();
        self.cap = bytes / std::mem::size_of::<T>().max(1);
        self.ask_huge();
    }

    /// Asks for huge pages over the whole mapping (Linux; a spare has them already, the
    /// advice again is harmless).
    fn ask_huge(&mut self) {
        #[cfg(target_os = "linux")]
        // SAFETY: our own mapping of `bytes(cap)` bytes; the advice changes no contents.
        unsafe {
            libc::madvise(
                self.ptr.as_ptr().cast(),
                Self::bytes(self.cap),
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

impl<T: Zeroable> std::ops::Deref for ZeroedVec<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `cap ≥ len` initialised elements.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> std::ops::DerefMut for ZeroedVec<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> Clone for ZeroedVec<T> {
    /// A copy that writes only the pages of this one holding a non-zero byte (untouched
    /// pages stay untouched in the copy too).
    fn clone(&self) -> ZeroedVec<T> {
        let mut c = ZeroedVec::new();
        if self.len == 0 {
            return c;
        }
        c.resize(self.len);
        // SAFETY: both hold at least `bytes(len)` initialised bytes; they do not overlap.
        unsafe {
            mem::copy_written(
                self.ptr.as_ptr().cast(),
                c.ptr.as_ptr().cast(),
                Self::bytes(self.len),
            )
        };
        c
    }
}

impl<T: Zeroable> Drop for ZeroedVec<T> {
    fn drop(&mut self) {
        if self.cap > 0 {
            let (bytes, written) = (Self::bytes(self.cap), Self::bytes(self.len));
            // SAFETY: our memory of `bytes` bytes, not used after.
            unsafe { spare::give_or_release(self.ptr.cast(), bytes, written) };
        }
    }
}

impl<T: Zeroable> std::fmt::Debug for ZeroedVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ZeroedVec({} of {})", self.len, self.cap)
    }
}

/// The memory itself: reserve, grow, release, copy.
mod mem {
    use super::*;

    /// Zeroed memory for at least `bytes` (> 0): its address and size.
    #[cfg(target_os = "linux")]
    pub(super) fn zeroed(bytes: usize) -> (NonNull<u8>, usize) {
        let page = 4096;
        let exact = bytes.next_multiple_of(page);
        for (size, flags) in [(exact.max(RESERVE), libc::MAP_NORESERVE), (exact, 0)] {
            // SAFETY: a fresh anonymous mapping; no existing memory is touched.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                if let Some(p) = NonNull::new(p.cast()) {
                    return (p, size);
                }
            }
        }
        handle_alloc_error(Layout::from_size_align(exact, page).expect("a page-aligned size"))
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn zeroed(bytes: usize) -> (NonNull<u8>, usize) {
        let layout = layout(bytes);
        // SAFETY: a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        (
            NonNull::new(p).unwrap_or_else(|| handle_alloc_error(layout)),
            layout.size(),
        )
    }

    #[cfg(not(target_os = "linux"))]
    fn layout(bytes: usize) -> Layout {
        Layout::from_size_align(bytes.next_multiple_of(4096), 4096).expect("a table's layout")
    }

    /// Moves `old` bytes at `p` (zero past `written`) to room for `new` (> old) bytes,
    /// the new ones zero: its address and size.
    ///
    /// # Safety
    /// `p` is memory of `old` bytes from [`zeroed`] or a grow, not used after.
    #[cfg(target_os = "linux")]
    pub(super) unsafe fn grow(
        p: NonNull<u8>,
        old: usize,
        new: usize,
        _written: usize,
    ) -> (NonNull<u8>, usize) {
        let new = new.next_multiple_of(4096);
        // SAFETY: the caller's contract: our mapping of `old` bytes; mremap moves it (and
        // its page tables) whole, the new tail is zero-filled anonymous memory.
        let q = unsafe { libc::mremap(p.as_ptr().cast(), old, new, libc::MREMAP_MAYMOVE) };
        if q == libc::MAP_FAILED {
            handle_alloc_error(Layout::from_size_align(new, 4096).expect("a page-aligned size"));
        }
        (
            NonNull::new(q.cast()).expect("mremap does not return NULL"),
            new,
        )
    }

    /// # Safety
    /// As on Linux.
    #[cfg(not(target_os = "linux"))]
    pub(super) unsafe fn grow(
        p: NonNull<u8>,
        old: usize,
        new: usize,
        written: usize,
    ) -> (NonNull<u8>, usize) {
        let (q, size) = zeroed(new);
        // SAFETY: both hold `written ≤ old` bytes; distinct allocations.
        unsafe {
            copy_written(p.as_ptr(), q.as_ptr(), written);
            release(p, old);
        }
        (q, size)
    }

    /// Gives back `bytes` at `p`.
    ///
    /// # Safety
    /// `p` is memory of `bytes` bytes from [`zeroed`] or a grow, not used after.
    pub(super) unsafe fn release(p: NonNull<u8>, bytes: usize) {
        #[cfg(target_os = "linux")]
        // SAFETY: the caller's contract.
        unsafe {
            libc::munmap(p.as_ptr().cast(), bytes);
        }
        #[cfg(not(target_os = "linux"))]
        // SAFETY: the caller's contract: allocated with `layout(bytes)`.
        unsafe {
            std::alloc::dealloc(p.as_ptr(), layout(bytes))
        };
    }

    /// Copies the 4 KiB pages of `src[..n]` holding a non-zero byte to `dst` (zeroed).
    ///
    /// # Safety
    /// Both hold `n` initialised bytes and do not overlap.
    pub(super) unsafe fn copy_written(src: *const u8, dst: *mut u8, n: usize) {
        let mut at = 0;
        while at < n {
            let len = (n - at).min(4096);
            // SAFETY: at + len ≤ n: within both.
            let page = unsafe { std::slice::from_raw_parts(src.add(at), len) };
            if page.iter().any(|&b| b != 0) {
                // SAFETY: as above.
                unsafe { std::ptr::copy_nonoverlapping(src.add(at), dst.add(at), len) };
            }
            at += len;
        }
    }
}

/// Mappings of dropped tables kept for the next new one.
mod spare {
    use super::*;
    use std::sync::Mutex;

    /// (address, bytes mapped, bytes that may be non-zero).
    static SPARE: Mutex<Vec<(usize, usize, usize)>> = Mutex::new(Vec::new());

    /// At most this many spares, with at most this many bytes written each.
    const MAX: (usize, usize) = (4, 64 << 20);

    /// A spare of at least `bytes`, its written part zeroed: its address and size (of
    /// those that fit, the one with the least to zero).
    pub(super) fn take(bytes: usize) -> Option<(NonNull<u8>, usize)> {
        let mut v = SPARE.lock().ok()?;
        let k = (0..v.len())
            .filter(|&k| v[k].1 >= bytes)
            .min_by_key(|&k| v[k].2)?;
        let (p, size, written) = v.swap_remove(k);
        drop(v);
        // SAFETY: the spare holds `size ≥ written` bytes and is owned by no table (its
        // last owner gave it up); zeroing what it wrote restores "all zero".
        unsafe { std::ptr::write_bytes(p as *mut u8, 0, written) };
        Some((NonNull::new(p as *mut u8)?, size))
    }

    /// Keeps `p` as a spare when there is room and little was written; releases it else.
    ///
    /// # Safety
    /// `p` is memory of `bytes` bytes from `mem::zeroed` or a grow, not used after.
    pub(super) unsafe fn give_or_release(p: NonNull<u8>, bytes: usize, written: usize) {
        if written <= MAX.1 {
            if let Ok(mut v) = SPARE.lock() {
                if v.len() < MAX.0 {
                    v.push((p.as_ptr() as usize, bytes, written));
                    return;
                }
            }
        }
        // SAFETY: the caller's contract.
        unsafe { mem::release(p, bytes) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever is grown, pushed, cleared, cloned or reused from a spare reads as a plain
    /// vector of the same operations would.
    #[test]
    fn a_zeroed_vec_reads_as_a_vec_of_the_same_operations() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..6 {
            let mut z = ZeroedVec::<u64>::new();
            let mut v: Vec<u64> = Vec::new();
            for _ in 0..1500 {
                match rng.gen_range(0..10) {
                    0 => {
                        // a big jump: past the huge-page threshold now and then
                        let n = v.len()
                            + rng.gen_range(0..(if round % 2 == 0 { 400_000 } else { 5000 }));
                        z.resize(n);
                        v.resize(n, 0);
                    }
                    1 if rng.gen_ratio(1, 20) => {
                        z.clear();
                        v.clear();
                    }
                    2 if !v.is_empty() && rng.gen_ratio(1, 10) => {
                        let c = z.clone();
                        assert_eq!(&c[..], &v[..], "a clone");
                    }
                    3..=5 if !v.is_empty() => {
                        let i = rng.gen_range(0..v.len());
                        let x = rng.gen::<u64>() | 1;
                        // SAFETY: i < v.len() == z.len()
                        *unsafe { z.at_mut(i) } = x;
                        v[i] = x;
                    }
                    _ => {
                        let x = rng.gen::<u64>();
                        z.push(x);
                        v.push(x);
                    }
                }
                assert_eq!(z.len(), v.len());
            }
            assert_eq!(&z[..], &v[..], "round {round}");
            assert!(z.capacity() >= z.len());
            // dropped here: its memory may serve the next round as a spare, zeroed
        }
    }
}
