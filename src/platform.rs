//! Platforms as data: pointer width, C `long` width, page size, which system malloc
//! with which build constants, where the heap and the mmap area start, and where a
//! recorded interpreter put its first objects.
//!
//! ```text
//!  Platform { pointer_bytes, long_bytes, page_size,
//!             malloc: Glibc(GlibcParams) | MacTiny | Bump,
//!             heap_start, mmap_top,                       the address space (vm)
//!             first_int_block, py3_small_ints }            where a recording's objects lie
//! ```
//!
//! Absolute bases are parameters: the models compute relative layout, the bases line a
//! simulation up with a recording (the seed's `id(0) == 4297074752`, say). Adding a
//! platform means adding a preset here, not an `if` in a model: nothing in the crate
//! matches a platform's name or branches on its pointer width to pick a preset.

use crate::addr::Addr;
use crate::sysmalloc::glibc::GlibcParams;

/// Which system allocator sits under CPython on a platform, with its build's constants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MallocFlavor {
    /// glibc's ptmalloc2 (Linux), built with these constants.
    Glibc(GlibcParams),
    /// macOS libmalloc's tiny (magazine) allocator.
    MacTiny,
    /// A bump allocator: the baseline.
    Bump,
}

/// A simulated platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Preset name as the CLI spells it (`macos-x86_64`, `linux-x86_64`, `linux-i686`).
    pub name: &'static str,
    /// Bytes in a pointer (`sizeof(void *)`).
    pub pointer_bytes: u64,
    /// Bytes in a C `long` (the value of a CPython 2 int).
    pub long_bytes: u64,
    /// Bytes in a page.
    pub page_size: u64,
    /// The system malloc.
    pub malloc: MallocFlavor,
    /// Where the system malloc's heap starts: the brk start for glibc, the next free
    /// tiny block for macOS (see each preset).
    pub heap_start: Addr,
    /// mmap regions are placed top-down below this address.
    pub mmap_top: Addr,
    /// Where CPython 2.7's first `PyIntBlock` lands by default, as a recording showed it
    /// (the heap before `_PyInt_Init` holds allocations the models do not see); `None`:
    /// where the platform's malloc puts its first block of that size on an empty heap.
    pub first_int_block: Option<Addr>,
    /// `id(-5)` in CPython 3.11: the first element of the static small-int array in
    /// libpython's data segment (`_PyRuntime.global_objects.singletons.small_ints`).
    pub py3_small_ints: Addr,
}

impl MallocFlavor {
    /// The flavour's name as `pyalloc platforms` prints it.
    pub fn name(&self) -> &'static str {
        match self {
            MallocFlavor::Glibc(_) => "Glibc",
            MallocFlavor::MacTiny => "MacTiny",
            MallocFlavor::Bump => "Bump",
        }
    }
}

impl Platform {
    /// 64-bit macOS, the seed's machine: libmalloc's tiny allocator, with the heap placed
    /// so that the first PyIntBlock lands at 0x1002024f0 (so `id(0) == 4297074752`).
    /// There is no macOS 3.11 recording: `py3_small_ints` is a nominal address in
    /// libpython's data segment.
    pub fn macos_x86_64() -> Platform {
        Platform {
            name: "macos-x86_64",
            pointer_bytes: 8,
            long_bytes: 8,
            page_size: 4096,
            malloc: MallocFlavor::MacTiny,
            heap_start: Addr(0x1_0020_24f0),
            mmap_top: Addr(0x7fff_5fc0_0000),
            first_int_block: Some(Addr(0x1_0020_24f0)),
            py3_small_ints: Addr(0x1_0030_0008),
        }
    }

    /// 64-bit Linux with glibc 2.36, as recorded under `setarch -R` (ASLR off).
    ///
    /// - `first_int_block` 0x5555557672a0: the pristine 2.7.18 (small_ints.txt:
    ///   `id(-5) == 0x555555767668 == base + 8 + 24*40`);
    /// - `py3_small_ints`: the 3.11.7 seed_py3 recording's `id(0) == 0x7ffff7f4e888`, less
    ///   five 32-byte `PyLongObject`s.
    pub fn linux_x86_64() -> Platform {
        Platform {
            name: "linux-x86_64",
            pointer_bytes: 8,
            long_bytes: 8,
            page_size: 4096,
            malloc: MallocFlavor::Glibc(GlibcParams::v2_36_x86_64()),
            heap_start: Addr(0x5555_5575_0000),
            mmap_top: Addr(0x7fff_f7ff_f000),
            first_int_block: Some(Addr(0x5555_5576_72a0)),
            py3_small_ints: Addr(0x7fff_f7f4_e888 - 5 * 32),
        }
    }

    /// 32-bit Linux (i686) with glibc. No recording: the first PyIntBlock lands where the
    /// glibc model puts it, and `py3_small_ints` is nominal.
    pub fn linux_i686() -> Platform {
        Platform {
            name: "linux-i686",
            pointer_bytes: 4,
            long_bytes: 4,
            page_size: 4096,
            malloc: MallocFlavor::Glibc(GlibcParams::v2_36_i386()),
            heap_start: Addr(0x5655_a000),
            mmap_top: Addr(0xf7fc_0000),
            first_int_block: None,
            py3_small_ints: Addr(0xf7c0_0008),
        }
    }

    /// Every preset, in the order the CLI lists them.
    pub fn presets() -> Vec<Platform> {
        vec![
            Self::macos_x86_64(),
            Self::linux_x86_64(),
            Self::linux_i686(),
        ]
    }

    /// The preset of that name (`macos-x86_64`, `linux-x86_64`, `linux-i686`; `_` and `-` alike).
    ///
    /// ```
    /// use pyalloc::Platform;
    ///
    /// let p = Platform::by_name("linux_i686").unwrap();
    /// assert_eq!((p.pointer_bytes, p.long_bytes), (4, 4));
    /// assert!(Platform::by_name("beos").is_none());
    /// ```
    pub fn by_name(name: &str) -> Option<Platform> {
        let norm = |s: &str| s.replace('_', "-");
        Self::presets()
            .into_iter()
            .find(|p| norm(p.name) == norm(name))
    }

    /// A fresh address space laid out as this platform's.
    pub fn address_space(&self) -> crate::vm::AddressSpace {
        crate::vm::AddressSpace::new(
            self.page_size,
            self.pointer_bytes,
            self.heap_start,
            self.mmap_top,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_found_by_either_spelling() {
        assert_eq!(Platform::by_name("linux_x86_64").unwrap().pointer_bytes, 8);
        assert_eq!(Platform::by_name("linux-i686").unwrap().long_bytes, 4);
        assert!(Platform::by_name("beos").is_none());
    }
}
