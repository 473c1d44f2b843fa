//! Platforms as data: pointer width, C `long` width, page size, which system malloc,
//! and where the heap and the mmap area start.
//!
//! Absolute bases are parameters: the models compute relative layout, the bases line a
//! simulation up with a recording (the seed's `id(0) == 4297074752`, say). Adding a
//! platform means adding a preset here, not an `if` in a model.

use crate::addr::Addr;

/// Which system allocator sits under CPython on a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MallocFlavor {
    /// glibc's ptmalloc2 (Linux).
    Glibc,
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
}

impl Platform {
    /// 64-bit macOS, the seed's machine: libmalloc's tiny allocator, with the heap placed
    /// so that the first PyIntBlock lands at 0x1002024f0 (so `id(0) == 4297074752`).
    pub fn macos_x86_64() -> Platform {
        Platform {
            name: "macos-x86_64",
            pointer_bytes: 8,
            long_bytes: 8,
            page_size: 4096,
            malloc: MallocFlavor::MacTiny,
            heap_start: Addr(0x1_0020_24f0),
            mmap_top: Addr(0x7fff_5fc0_0000),
        }
    }

    /// 64-bit Linux with glibc 2.36, as recorded under `setarch -R` (ASLR off).
    pub fn linux_x86_64() -> Platform {
        Platform {
            name: "linux-x86_64",
            pointer_bytes: 8,
            long_bytes: 8,
            page_size: 4096,
            malloc: MallocFlavor::Glibc,
            heap_start: Addr(0x5555_5575_0000),
            mmap_top: Addr(0x7fff_f7ff_f000),
        }
    }

    /// 32-bit Linux (i686) with glibc.
    pub fn linux_i686() -> Platform {
        Platform {
            name: "linux-i686",
            pointer_bytes: 4,
            long_bytes: 4,
            page_size: 4096,
            malloc: MallocFlavor::Glibc,
            heap_start: Addr(0x5655_a000),
            mmap_top: Addr(0xf7fc_0000),
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
