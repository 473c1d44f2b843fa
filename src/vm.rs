//! The simulated address space: the brk heap segment and mmap regions.
//!
//! ```text
//!   low                                                                 high
//!   | program | brk heap: brk_start .. brk ->      <- mmap regions | stack |
//!                                                  ^ mmap_top: the next region ends here
//! ```
//!
//! Linux places anonymous mappings top-down: each new region ends where the lowest one
//! (or `mmap_top`) begins, page-aligned, reusing the highest hole that fits. The heap
//! grows upward from `brk_start` by `sbrk`. Absolute bases are parameters of the
//! [`Platform`](crate::platform::Platform); what the models compute is relative layout.

use crate::addr::Addr;
use crate::error::AllocError;
use std::collections::BTreeMap;

/// The address space of one simulated process.
#[derive(Debug, Clone)]
pub struct AddressSpace {
    page_size: u64,              // bytes in a page (4096 on every preset)
    pointer_bytes: u64,          // 4 or 8
    brk_start: Addr,             // first byte of the heap segment
    brk: Addr,                   // current break: the heap is brk_start..brk
    mmap_top: Addr,              // regions are placed below this, top-down
    regions: BTreeMap<u64, u64>, // base -> length of each live mapping (page multiples)
    mapped_bytes: u64,           // sum of region lengths
}

impl AddressSpace {
    /// A fresh address space: an empty heap at `brk_start`, no mappings below `mmap_top`.
    pub fn new(page_size: u64, pointer_bytes: u64, brk_start: Addr, mmap_top: Addr) -> Self {
        assert!(page_size.is_power_of_two());
        AddressSpace {
            page_size,
            pointer_bytes,
            brk_start,
            brk: brk_start,
            mmap_top: mmap_top.align_down(page_size),
            regions: BTreeMap::new(),
            mapped_bytes: 0,
        }
    }

    /// Bytes in a page.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Bytes in a pointer (4 or 8).
    pub fn pointer_bytes(&self) -> u64 {
        self.pointer_bytes
    }

    /// Where the heap segment starts.
    pub fn brk_start(&self) -> Addr {
        self.brk_start
    }

    /// The current break (one past the heap's last byte).
    pub fn brk(&self) -> Addr {
        self.brk
    }

    /// `sbrk(increment)`: moves the break, returns the old one.
    ///
    /// # Errors
    /// Refuses to move below `brk_start` or into the lowest mapping.
    pub fn sbrk(&mut self, increment: i64) -> Result<Addr, AllocError> {
        let old = self.brk;
        let new = old.0 as i128 + increment as i128;
        let ceiling = self
            .regions
            .keys()
            .next()
            .copied()
            .unwrap_or(self.mmap_top.0);
        if new < self.brk_start.0 as i128 || new > ceiling as i128 {
            return Err(AllocError::OutOfAddressSpace {
                what: format!("sbrk({increment}) from break {old}"),
            });
        }
        self.brk = Addr(new as u64);
        Ok(old)
    }

    /// `mmap(NULL, len)`: a fresh page-aligned region, placed top-down in the highest
    /// hole below `mmap_top` that fits.
    ///
    /// # Errors
    /// Out of address space when no hole above the break fits.
    pub fn mmap(&mut self, len: u64) -> Result<Addr, AllocError> {
        let len = len
            .checked_add(self.page_size - 1)
            .map(|l| l & !(self.page_size - 1))
            .filter(|&l| l > 0)
            .ok_or_else(|| AllocError::OutOfAddressSpace {
                what: format!("mmap of {len} bytes"),
            })?;
        // Walk holes from the top down: between each region and the one above it.
        let mut hole_end = self.mmap_top.0;
        for (&base, &rlen) in self.regions.iter().rev() {
            let end = base + rlen;
            if hole_end >= end && hole_end - end >= len {
                break;
            }
            hole_end = base;
        }
        let base = hole_end
            .checked_sub(len)
            .filter(|&b| b >= self.brk.0)
            .ok_or_else(|| AllocError::OutOfAddressSpace {
                what: format!("mmap of {len} bytes"),
            })?;
        self.regions.insert(base, len);
        self.mapped_bytes += len;
        Ok(Addr(base))
    }

    /// Records a mapping whose address was observed (taken from a trace) rather than chosen.
    ///
    /// # Errors
    /// Refuses a region that is not page-aligned or overlaps a live one.
    pub fn map_fixed(&mut self, base: Addr, len: u64) -> Result<(), AllocError> {
        let len = (len + self.page_size - 1) & !(self.page_size - 1);
        if !base.is_aligned(self.page_size) || self.overlaps(base.0, len) {
            return Err(AllocError::OutOfAddressSpace {
                what: format!("fixed mapping of {len} bytes at {base}"),
            });
        }
        self.regions.insert(base.0, len);
        self.mapped_bytes += len;
        Ok(())
    }

    fn overlaps(&self, base: u64, len: u64) -> bool {
        let below = self.regions.range(..base + len).next_back();
        matches!(below, Some((&b, &l)) if b + l > base)
    }

    /// `munmap(base, len)` of a whole region made by [`mmap`](Self::mmap) or
    /// [`map_fixed`](Self::map_fixed).
    ///
    /// # Errors
    /// `NotLive` when no region starts at `base` with that length.
    pub fn munmap(&mut self, base: Addr, len: u64) -> Result<(), AllocError> {
        let len = (len + self.page_size - 1) & !(self.page_size - 1);
        match self.regions.get(&base.0) {
            Some(&l) if l == len => {
                self.regions.remove(&base.0);
                self.mapped_bytes -= len;
                Ok(())
            }
            _ => Err(AllocError::NotLive {
                op: "munmap",
                addr: base,
                model: "vm",
            }),
        }
    }

    /// Bytes in live mappings.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    /// Bytes in the heap segment.
    pub fn heap_bytes(&self) -> u64 {
        self.brk.0 - self.brk_start.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> AddressSpace {
        AddressSpace::new(4096, 8, Addr(0x1000_0000), Addr(0x7fff_0000_0000))
    }

    #[test]
    fn mmap_places_regions_top_down_and_reuses_the_highest_hole() {
        let mut vm = space();
        let a = vm.mmap(1 << 20).unwrap();
        let b = vm.mmap(100).unwrap();
        assert_eq!(a.0 + (1 << 20), 0x7fff_0000_0000);
        assert_eq!(b.0 + 4096, a.0);
        vm.munmap(a, 1 << 20).unwrap();
        let c = vm.mmap(4096).unwrap();
        assert_eq!(c.0 + 4096, 0x7fff_0000_0000, "highest hole first");
        assert_eq!(vm.mapped_bytes(), 8192);
    }

    #[test]
    fn sbrk_grows_and_refuses_to_shrink_below_start() {
        let mut vm = space();
        assert_eq!(vm.sbrk(0x21000).unwrap(), Addr(0x1000_0000));
        assert_eq!(vm.brk(), Addr(0x1002_1000));
        assert!(vm.sbrk(-0x22000).is_err());
        assert_eq!(vm.heap_bytes(), 0x21000);
    }

    #[test]
    fn munmap_of_unknown_region_is_an_error() {
        let mut vm = space();
        assert!(matches!(
            vm.munmap(Addr(0x5000), 4096),
            Err(AllocError::NotLive { .. })
        ));
        assert!(vm.map_fixed(Addr(0x7000_0000_0001), 4096).is_err());
    }
}
