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
//!
//! Residency (when [`track_residency`](AddressSpace::track_residency) is on): a page is
//! resident once a model writes into it ([`touch`](AddressSpace::touch): a chunk header,
//! a pool header, the bytes a program writes into its block) and stops being so when it is
//! given back: `munmap`, a `brk` shrink, `madvise(MADV_DONTNEED)`. Anonymous memory that
//! is only mapped, or only read, costs no RSS on Linux, so this is the model's prediction of
//! the heap's share of VmRSS. The touched bits live in a page table keyed by address (one
//! bit per page, in leaves of 2^18 pages), as the kernel's own RSS counter follows its
//! page tables:
//! `resident_pages == Σ set bits`, and every set bit lies in `brk_start..brk` or a live region.
//!
//! Placement follows the kernel's (mm/mmap.c `vm_unmapped_area` top-down, mm/mremap.c):
//! a new region goes in the highest hole below `mmap_top` that fits, among the regions
//! the models made *and* the process's other mappings ([`reserve`](AddressSpace::reserve):
//! the program, its libraries, what was mapped before a recording started, as the
//! recording's `# maps:` header line gives them; they sit in `regions` too, marked in
//! `foreign`, counted in neither mapped nor resident bytes). `mremap` shrinks in place,
//! grows in place when the pages above are free, and otherwise moves to a hole chosen
//! while the old region is still mapped. Which hole an arena lands in decides its
//! alignment to a pool, hence how many pools it has: part of the footprint.
//!
//! Placement keeps the holes between live regions in an index (`gaps`: end -> start, and
//! a multiset of their lengths), so an `mmap` that no hole can take goes below the lowest
//! region in O(log n) instead of walking every region: 10^5 live mappings cost no more
//! per call than ten. Invariant: `gaps == { [lower.end, upper.base) : consecutive regions,
//! non-empty } ∪ { [top.end, mmap_top) : top.end < mmap_top }`.

use crate::addr::Addr;
use crate::error::AllocError;
use bitvec::boxed::BitBox;
use bitvec::order::Lsb0;
use std::collections::{BTreeMap, BTreeSet};

/// Pages per leaf of the residency table (2^18 pages: 1 GiB of 4 KiB pages, a 32 KiB leaf).
const LEAF_BITS: u32 = 18;

/// The pages written and not given back, one bit per page.
#[derive(Debug, Clone, Default)]
struct Residency {
    leaves: Vec<(u64, BitBox<u64, Lsb0>)>, // (page >> LEAF_BITS, a bit per page of that leaf)
    last: usize,                           // the leaf used last (most touches hit it again)
    pages: u64,                            // set bits in all leaves
    last_page: u64, // a page known set (u64::MAX: none): most touches repeat it
}

impl Residency {
    /// The leaf holding page number `key << LEAF_BITS ..`, created on first use.
    #[inline]
    fn leaf(&mut self, key: u64) -> &mut BitBox<u64, Lsb0> {
        if self.leaves.get(self.last).map_or(true, |l| l.0 != key) {
            self.last = match self.leaves.iter().position(|l| l.0 == key) {
                Some(i) => i,
                None => {
                    let bits = bitvec::bitvec![u64, Lsb0; 0; 1 << LEAF_BITS].into_boxed_bitslice();
                    self.leaves.push((key, bits));
                    self.leaves.len() - 1
                }
            };
        }
        &mut self.leaves[self.last].1
    }

    /// Sets the bits of pages `first..=last`.
    ///
    /// Most touches (a block, a chunk header) fall within one 64-page word of the leaf used
    /// last: that word is tested and set directly (`pages += |new bits|`), without bitvec's
    /// range machinery; the rest go through [`set_cold`](Self::set_cold).
    #[inline]
    fn set(&mut self, first: u64, last: u64) {
        if first == last && first == self.last_page {
            return;
        }
        if first >> 6 == last >> 6 {
            if let Some((key, bits)) = self.leaves.get_mut(self.last) {
                if *key == first >> LEAF_BITS {
                    let mask = (1u64 << LEAF_BITS) - 1;
                    let i = (first & mask) as usize;
                    let w = &mut bits.as_raw_mut_slice()[i >> 6];
                    let n = last - first + 1; // 1..=64 pages
                    let want = (u64::MAX >> (64 - n)) << (i & 63);
                    let new = want & !*w;
                    if new != 0 {
                        self.pages += u64::from(new.count_ones());
                        *w |= new;
                    }
                    self.last_page = last;
                    return;
                }
            }
        }
        self.set_cold(first, last);
    }

    fn set_cold(&mut self, first: u64, last: u64) {
        let mask = (1u64 << LEAF_BITS) - 1;
        self.last_page = last;
        if first == last {
            let leaf = self.leaf(first >> LEAF_BITS);
            if !leaf.replace((first & mask) as usize, true) {
                self.pages += 1;
            }
            return;
        }
        let mut p = first;
        while p <= last {
            let end = last.min(p | mask);
            let leaf = self.leaf(p >> LEAF_BITS);
            let range = (p & mask) as usize..=(end & mask) as usize;
            let slice = &mut leaf[range];
            let was = slice.count_ones() as u64;
            slice.fill(true);
            self.pages += (end - p + 1) - was;
            p = end + 1;
        }
    }

    /// Clears the bits of pages `first..end` (half-open).
    fn clear(&mut self, first: u64, end: u64) {
        let mask = (1u64 << LEAF_BITS) - 1;
        self.last_page = u64::MAX;
        let mut p = first;
        while p < end {
            let stop = end.min((p | mask) + 1);
            let key = p >> LEAF_BITS;
            if let Some(i) = self.leaves.iter().position(|l| l.0 == key) {
                let slice =
                    &mut self.leaves[i].1[(p & mask) as usize..=((stop - 1) & mask) as usize];
                self.pages -= slice.count_ones() as u64;
                slice.fill(false);
            }
            p = stop;
        }
    }

    /// The set bits among pages `first..end`, as offsets from `first`.
    fn offsets(&self, first: u64, end: u64) -> Vec<u64> {
        let mask = (1u64 << LEAF_BITS) - 1;
        let mut out = Vec::new();
        for (key, bits) in &self.leaves {
            let lo = first.max(key << LEAF_BITS);
            let hi = end.min((key + 1) << LEAF_BITS);
            if lo < hi {
                let slice = &bits[(lo & mask) as usize..=((hi - 1) & mask) as usize];
                out.extend(slice.iter_ones().map(|i| lo + i as u64 - first));
            }
        }
        out
    }
}

/// The address space of one simulated process.
#[derive(Debug, Clone)]
pub struct AddressSpace {
    page_size: u64,               // bytes in a page (4096 on every preset)
    pointer_bytes: u64,           // 4 or 8
    brk_start: Addr,              // first byte of the heap segment
    brk: Addr,                    // current break: the heap is brk_start..brk
    mmap_top: Addr,               // regions are placed below this, top-down
    regions: BTreeMap<u64, u64>,  // base -> length of each live mapping (page multiples)
    gaps: BTreeMap<u64, u64>,     // end -> start of each non-empty hole above a region
    gap_lens: BTreeMap<u64, u32>, // length -> how many holes in `gaps` have it
    foreign: BTreeSet<u64>,       // bases of the regions no model made (reserved)
    mapped_bytes: u64,            // sum of region lengths
    page_shift: u32,              // log2(page_size)
    track: bool,                  // residency tracked (off: touches cost one branch)
    resident: Residency,          // pages written and not given back
    brk_high: Addr,               // the highest break ever (glibc's max_system_mem, main arena)
    syscalls: Syscalls,           // mmap / munmap / brk calls made
}

/// System calls an address space has served (`mmap` includes fixed mappings and the new
/// half of an `mremap` that moved; `brk` counts every `sbrk` that moved the break).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Syscalls {
    /// `mmap` calls.
    pub mmap: u64,
    /// `munmap` calls.
    pub munmap: u64,
    /// `brk` calls.
    pub brk: u64,
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
            gaps: BTreeMap::new(),
            gap_lens: BTreeMap::new(),
            foreign: BTreeSet::new(),
            mapped_bytes: 0,
            page_shift: page_size.trailing_zeros(),
            track: false,
            resident: Residency {
                last_page: u64::MAX,
                ..Residency::default()
            },
            brk_high: brk_start,
            syscalls: Syscalls::default(),
        }
    }

    /// Starts tracking which pages are resident (off by default: the address checks do
    /// not need it). Pages written before this call are not known.
    pub fn track_residency(&mut self) {
        self.track = true;
    }

    /// True when residency is tracked.
    #[inline(always)]
    pub fn tracking(&self) -> bool {
        self.track
    }

    /// Something wrote `len` bytes at `addr`: their pages become resident.
    #[inline]
    pub fn touch(&mut self, addr: u64, len: u64) {
        if self.track && len > 0 {
            let first = addr >> self.page_shift;
            let last = (addr + len - 1) >> self.page_shift;
            self.resident.set(first, last);
        }
    }

    /// `madvise(addr, len, MADV_DONTNEED)`: the whole pages of `addr..addr + len` are
    /// given back (they read as zeros and cost nothing until written again).
    pub fn madvise_dontneed(&mut self, addr: u64, len: u64) {
        let first = (addr + self.page_size - 1) >> self.page_shift;
        let end = (addr + len) >> self.page_shift;
        self.resident.clear(first, end.max(first));
    }

    /// Bytes of resident pages.
    #[inline]
    pub fn resident_bytes(&self) -> u64 {
        self.resident.pages << self.page_shift
    }

    /// The offsets (from `base`) of the resident pages of `base..base + len`.
    pub fn resident_offsets(&self, base: u64, len: u64) -> Vec<u64> {
        let first = base >> self.page_shift;
        let end = (base + len + self.page_size - 1) >> self.page_shift;
        self.resident
            .offsets(first, end)
            .into_iter()
            .map(|o| o << self.page_shift)
            .collect()
    }

    /// Live mappings the models made as `(base, length)`, lowest first.
    pub fn regions(&self) -> impl Iterator<Item = (Addr, u64)> + '_ {
        self.regions
            .iter()
            .filter(|(b, _)| !self.foreign.contains(b))
            .map(|(&b, &l)| (Addr(b), l))
    }

    /// The highest break the heap ever had.
    pub fn brk_high(&self) -> Addr {
        self.brk_high
    }

    /// The system calls served so far.
    pub fn syscalls(&self) -> Syscalls {
        self.syscalls
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

    /// The highest address the break can reach: the lowest mapping above it (or `mmap_top`).
    pub fn brk_ceiling(&self) -> Addr {
        Addr(
            self.regions
                .range(self.brk.0..)
                .next()
                .map(|(&b, _)| b)
                .unwrap_or(self.mmap_top.0),
        )
    }

    /// `sbrk(increment)`: moves the break, returns the old one.
    ///
    /// # Errors
    /// Refuses to move below `brk_start` or into the lowest mapping.
    pub fn sbrk(&mut self, increment: i64) -> Result<Addr, AllocError> {
        let old = self.brk;
        let new = old.0 as i128 + increment as i128;
        let ceiling = self.brk_ceiling().0;
        if new < self.brk_start.0 as i128 || new > ceiling as i128 {
            return Err(AllocError::OutOfAddressSpace {
                what: format!("sbrk({increment}) from break {old}"),
            });
        }
        self.brk = Addr(new as u64);
        if increment != 0 {
            self.syscalls.brk += 1;
        }
        if self.brk > self.brk_high {
            self.brk_high = self.brk;
        }
        if increment < 0 && self.track {
            // the kernel unmaps the whole pages above the new break
            let first = (self.brk.0 + self.page_size - 1) >> self.page_shift;
            let end = (old.0 + self.page_size - 1) >> self.page_shift;
            self.resident.clear(first, end);
        }
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
        let base = self.place(len)?;
        self.insert_region(base, len);
        self.mapped_bytes += len;
        self.syscalls.mmap += 1;
        Ok(Addr(base))
    }

    /// The base of the highest hole of `len` bytes (a page multiple) below `mmap_top` and
    /// above the break, else below the lowest region.
    fn place(&self, len: u64) -> Result<u64, AllocError> {
        // The highest hole that fits (between a region and the one above it, or above the
        // top region up to mmap_top), else below the lowest region.
        let fits = self.gap_lens.keys().next_back().is_some_and(|&l| l >= len);
        let hole = fits
            .then(|| {
                self.gaps
                    .iter()
                    .rev()
                    .find(|(&end, &start)| end - start >= len)
                    .map(|(&end, _)| end)
            })
            .flatten();
        let hole_end = hole.unwrap_or_else(|| {
            self.regions
                .keys()
                .next()
                .copied()
                .unwrap_or(self.mmap_top.0)
        });
        hole_end
            .checked_sub(len)
            .filter(|&b| b >= self.brk.0)
            .ok_or_else(|| AllocError::OutOfAddressSpace {
                what: format!("mmap of {len} bytes"),
            })
    }

    /// The hole between the region `lower` (base, length) and the region starting at
    /// `upper` (or `mmap_top` when none is above), when it is not empty.
    fn gap_between(&self, lower: Option<(u64, u64)>, upper: Option<u64>) -> Option<(u64, u64)> {
        let (b, l) = lower?;
        let end = upper.unwrap_or(self.mmap_top.0);
        (b + l < end).then_some((b + l, end))
    }

    fn add_gap(&mut self, g: Option<(u64, u64)>) {
        if let Some((start, end)) = g {
            self.gaps.insert(end, start);
            *self.gap_lens.entry(end - start).or_insert(0) += 1;
        }
    }

    fn remove_gap(&mut self, g: Option<(u64, u64)>) {
        if let Some((start, end)) = g {
            self.gaps.remove(&end);
            if let Some(n) = self.gap_lens.get_mut(&(end - start)) {
                *n -= 1;
                if *n == 0 {
                    self.gap_lens.remove(&(end - start));
                }
            }
        }
    }

    /// The live regions just below and just above `base` (not counting one at `base`).
    fn neighbours(&self, base: u64) -> (Option<(u64, u64)>, Option<u64>) {
        let below = self
            .regions
            .range(..base)
            .next_back()
            .map(|(&b, &l)| (b, l));
        let above = self.regions.range(base + 1..).next().map(|(&b, _)| b);
        (below, above)
    }

    /// Adds the region `base..base + len` (free of overlaps) and mends the hole index.
    fn insert_region(&mut self, base: u64, len: u64) {
        let (below, above) = self.neighbours(base);
        self.remove_gap(self.gap_between(below, above));
        self.add_gap(self.gap_between(below, Some(base)));
        self.add_gap(self.gap_between(Some((base, len)), above));
        self.regions.insert(base, len);
    }

    /// Removes the live region at `base` and mends the hole index.
    fn remove_region(&mut self, base: u64) {
        let Some(len) = self.regions.remove(&base) else {
            return;
        };
        let (below, above) = self.neighbours(base);
        self.remove_gap(self.gap_between(below, Some(base)));
        self.remove_gap(self.gap_between(Some((base, len)), above));
        self.add_gap(self.gap_between(below, above));
    }

    /// A mapping the process holds that no model made (the program, a library, a thread's
    /// stack, what was mapped before recording started): new regions are placed around it,
    /// and it counts in neither mapped nor resident bytes.
    ///
    /// # Errors
    /// Refuses a range that overlaps a region a model made.
    pub fn reserve(&mut self, base: Addr, len: u64) -> Result<(), AllocError> {
        let len = (len + self.page_size - 1) & !(self.page_size - 1);
        if len == 0 || self.overlaps(base.0, len) {
            return Err(AllocError::OutOfAddressSpace {
                what: format!("reserved mapping of {len} bytes at {base}"),
            });
        }
        let base = base.0 & !(self.page_size - 1);
        self.insert_region(base, len);
        self.foreign.insert(base);
        Ok(())
    }

    /// Puts this (fresh) address space in the shape of `layout`: an empty heap at the
    /// recorded break, and the process's other mappings reserved.
    ///
    /// # Errors
    /// The heap has already been grown, or a mapping overlaps a region already made.
    pub fn apply_layout(&mut self, layout: &ProcessLayout) -> Result<(), AllocError> {
        if let Some(brk) = layout.heap_break {
            if self.brk != self.brk_start || self.syscalls.brk > 0 {
                return Err(AllocError::OutOfAddressSpace {
                    what: format!("moving the heap to {brk}: it has grown already"),
                });
            }
            self.brk_start = brk;
            self.brk = brk;
            self.brk_high = brk;
        }
        self.reserve_maps(&layout.maps)
    }

    /// Reserves every mapping of a recording's `# maps:` line ([`parse_maps`]) and takes
    /// the top of the highest as where top-down placement starts (the kernel's
    /// `mmap_base`: the dynamic loader, mapped first, sits right under it).
    ///
    /// # Errors
    /// A range overlapping a region a model already made.
    pub fn reserve_maps(&mut self, maps: &[(Addr, u64)]) -> Result<(), AllocError> {
        if let Some(top) = maps.iter().map(|&(b, l)| b.0 + l).max() {
            if self.regions.is_empty() {
                self.mmap_top = Addr(top).align_up(self.page_size);
            }
        }
        for &(base, len) in maps {
            self.reserve(base, len)?;
        }
        Ok(())
    }

    /// `mremap(base, old_len, new_len, MREMAP_MAYMOVE)` of a region made by
    /// [`mmap`](Self::mmap): shrinks in place; grows in place when nothing is mapped in
    /// the pages above; else moves to the highest hole that fits, chosen while the old
    /// region still stands, the pages moving with their contents (residency kept). A move
    /// counts as one `mmap` and one `munmap`, a resize in place as neither.
    ///
    /// # Errors
    /// `NotLive` when no region starts at `base` with that length; out of address space.
    pub fn mremap(&mut self, base: Addr, old_len: u64, new_len: u64) -> Result<Addr, AllocError> {
        let round = |l: u64| (l + self.page_size - 1) & !(self.page_size - 1);
        let (old_len, new_len) = (round(old_len), round(new_len));
        if self.regions.get(&base.0) != Some(&old_len)
            || new_len == 0
            || self.foreign.contains(&base.0)
        {
            return Err(AllocError::NotLive {
                op: "mremap",
                addr: base,
                model: "vm",
            });
        }
        if new_len <= old_len {
            self.remove_region(base.0);
            self.insert_region(base.0, new_len);
            self.mapped_bytes -= old_len - new_len;
            if self.track {
                let first = (base.0 + new_len) >> self.page_shift;
                self.resident
                    .clear(first, first + ((old_len - new_len) >> self.page_shift));
            }
            return Ok(base);
        }
        let (old_end, new_end) = (base.0 + old_len, base.0 + new_len);
        let free_above = new_end <= self.mmap_top.0 && !self.overlaps(old_end, new_end - old_end);
        if free_above {
            self.remove_region(base.0);
            self.insert_region(base.0, new_len);
            self.mapped_bytes += new_len - old_len;
            return Ok(base);
        }
        let to = self.place(new_len)?;
        let kept = if self.track {
            self.resident_offsets(base.0, old_len)
        } else {
            Vec::new()
        };
        self.munmap(base, old_len)?;
        self.insert_region(to, new_len);
        self.mapped_bytes += new_len;
        self.syscalls.mmap += 1;
        for off in kept {
            self.touch(to + off, 1);
        }
        Ok(Addr(to))
    }

    /// Records a mapping whose address was observed (taken from a trace) rather than chosen.
    ///
    /// # Errors
    /// Refuses a region that is not page-aligned or overlaps a live one.
    pub fn map_fixed(&mut self, base: Addr, len: u64) -> Result<(), AllocError> {
        let len = len.saturating_add(self.page_size - 1) & !(self.page_size - 1);
        // a process's mappings end below the top of user space: 2^47 on x86-64 (4-level
        // page tables), 2^32 for a 32-bit process
        let user_top = if self.pointer_bytes == 8 {
            1u64 << 47
        } else {
            1 << 32
        };
        if base.0.checked_add(len).map_or(true, |end| end > user_top) {
            return Err(AllocError::OutOfAddressSpace {
                what: format!(
                    "a mapping of {len} bytes at {base} would end past the top of user \
                     space ({user_top:#x})"
                ),
            });
        }
        if !base.is_aligned(self.page_size) || self.overlaps(base.0, len) {
            return Err(AllocError::OutOfAddressSpace {
                what: format!("fixed mapping of {len} bytes at {base}"),
            });
        }
        self.insert_region(base.0, len);
        self.mapped_bytes += len;
        self.syscalls.mmap += 1;
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
            Some(&l) if l == len && !self.foreign.contains(&base.0) => {
                self.remove_region(base.0);
                self.mapped_bytes -= len;
                self.syscalls.munmap += 1;
                if self.track {
                    let first = base.0 >> self.page_shift;
                    self.resident.clear(first, first + (len >> self.page_shift));
                }
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

/// The process a recording was made in, as its header describes it when recording started
/// (`# maps:` and `# heap:` lines, written by `pyalloc record`): what a model must place its
/// own mappings and heap around to put them where the kernel and glibc did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessLayout {
    /// Mappings no model makes (program, libraries, loader, earlier mappings), `(base, len)`.
    pub maps: Vec<(Addr, u64)>,
    /// The break when recording started (`sbrk(0)`, from `# heap: start-break top N`),
    /// when the recording says: the model's heap starts there, empty. (Taking glibc's
    /// leftover top chunk, N bytes below it, as the model's first top was tried: it put
    /// the N = 300,000 survivors run ~550 KiB off its recording, against ~4 KiB for an
    /// empty heap at the break, so the top's size is recorded but not used.)
    pub heap_break: Option<Addr>,
}

impl ProcessLayout {
    /// The layout from the values of the `maps` and `heap` header lines (either absent).
    ///
    /// # Errors
    /// A line that does not read as `pyalloc record` writes it, naming the line.
    pub fn from_header(maps: Option<&str>, heap: Option<&str>) -> Result<Self, String> {
        let maps = maps.map(parse_maps).transpose()?.unwrap_or_default();
        let heap_break = heap
            .map(|h| {
                let bad = || {
                    format!("`# heap:` line {h:?} is not `start-break top N` (hex, hex, decimal)")
                };
                let mut f = h.split_whitespace();
                let (lo, brk) = f.next().and_then(|r| r.split_once('-')).ok_or_else(bad)?;
                let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
                let brk = u64::from_str_radix(brk, 16).map_err(|_| bad())?;
                let top: u64 = match (f.next(), f.next()) {
                    (Some("top"), Some(n)) => n.parse().map_err(|_| bad())?,
                    _ => return Err(bad()),
                };
                // the top chunk lies in the heap: start ≤ break - top
                brk.checked_sub(top).filter(|&t| t >= lo).ok_or_else(bad)?;
                Ok(Addr(brk))
            })
            .transpose()?;
        Ok(ProcessLayout { maps, heap_break })
    }
}

/// The ranges of a `# maps:` header line (`lo-hi lo-hi …`, hex without `0x`, half-open),
/// as `(base, length)`.
///
/// # Errors
/// The first range that is not two hex numbers `lo < hi` joined by `-`.
pub fn parse_maps(line: &str) -> Result<Vec<(Addr, u64)>, String> {
    line.split_whitespace()
        .map(|r| {
            let bad = || format!("`# maps:` range {r:?} is not lo-hi in hex with lo < hi");
            let (lo, hi) = r.split_once('-').ok_or_else(bad)?;
            let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
            let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
            if lo >= hi {
                return Err(bad());
            }
            Ok((Addr(lo), hi - lo))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

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
    fn pages_are_resident_once_written_until_given_back() {
        let mut vm = space();
        vm.track_residency();
        let a = vm.mmap(10 * 4096).unwrap();
        assert_eq!(vm.resident_bytes(), 0, "mapping costs nothing");
        vm.touch(a.0 + 4000, 200); // straddles pages 0 and 1
        vm.touch(a.0 + 4096, 8); // page 1 again
        assert_eq!(vm.resident_bytes(), 2 * 4096);
        assert_eq!(vm.resident_offsets(a.0, 10 * 4096), vec![0, 4096]);
        vm.madvise_dontneed(a.0 + 100, 2 * 4096); // only page 1 lies wholly inside
        assert_eq!(vm.resident_offsets(a.0, 10 * 4096), vec![0]);
        let heap = vm.sbrk(0x3000).unwrap();
        vm.touch(heap.0, 0x3000);
        assert_eq!(vm.resident_bytes(), 4 * 4096);
        vm.sbrk(-0x1800).unwrap(); // the break mid-page: that page stays
        assert_eq!(vm.resident_bytes(), 3 * 4096);
        vm.munmap(a, 10 * 4096).unwrap();
        assert_eq!(vm.resident_bytes(), 2 * 4096);
        let s = vm.syscalls();
        assert_eq!((s.mmap, s.munmap, s.brk), (1, 1, 2));
    }

    #[test]
    fn touches_across_leaves_count_each_page_once() {
        let mut vm = space();
        vm.track_residency();
        let leaf = 4096u64 << LEAF_BITS;
        let at = 3 * leaf - 4096;
        vm.touch(at, 3 * 4096); // last page of one leaf, two of the next
        vm.touch(at, 3 * 4096);
        assert_eq!(vm.resident_bytes(), 3 * 4096);
        assert_eq!(vm.resident_offsets(at, 3 * 4096), vec![0, 4096, 8192]);
    }

    /// Touches of every length at every offset (within one word, across words, across
    /// leaves), interleaved with give-backs: the resident count is the number of distinct
    /// pages touched and not given back, page by page.
    #[test]
    fn resident_pages_are_the_distinct_pages_touched() {
        let mut vm = space();
        vm.track_residency();
        let leaf = 4096u64 << LEAF_BITS;
        let base = 5 * leaf - 300 * 4096;
        let mut want = std::collections::BTreeSet::new();
        let mut rng = StdRng::seed_from_u64(12345);
        for k in 0..20_000u64 {
            let x: u64 = rng.gen();
            let page = (x >> 33) % 600;
            let len = match k % 5 {
                0 => 1 + (x >> 20) % (70 * 4096),
                1 => 1 + (x >> 20) % 8192,
                _ => 1 + (x >> 20) % 64,
            };
            let at = base + page * 4096 + (x >> 45) % 4096;
            vm.touch(at, len);
            for p in (at >> 12)..=((at + len - 1) >> 12) {
                want.insert(p);
            }
            if k % 997 == 0 {
                let (from, n) = (base + ((x >> 13) % 600) * 4096, 4096 * (1 + (x >> 7) % 90));
                vm.madvise_dontneed(from, n);
                want.retain(|&p| p < from >> 12 || p >= (from + n) >> 12);
            }
            assert_eq!(vm.resident_bytes(), want.len() as u64 * 4096, "step {k}");
        }
    }

    /// The placement rule walked region by region, as Linux states it: the highest hole
    /// below `mmap_top` (between a region and the one above it) that fits, else below the
    /// lowest region.
    fn placed_by_walk(vm: &AddressSpace, len: u64) -> Option<u64> {
        let mut hole_end = vm.mmap_top.0;
        for (base, rlen) in vm.regions().collect::<Vec<_>>().into_iter().rev() {
            let end = base.0 + rlen;
            if hole_end >= end && hole_end - end >= len {
                break;
            }
            hole_end = base.0;
        }
        hole_end.checked_sub(len).filter(|&b| b >= vm.brk().0)
    }

    #[test]
    fn the_hole_index_places_every_mapping_where_the_walk_does() {
        let mut rng = StdRng::seed_from_u64(13);
        let mut vm = space();
        let mut live: Vec<(Addr, u64)> = Vec::new();
        for step in 0..4000 {
            if !live.is_empty() && rng.gen_bool(0.45) {
                let (a, l) = live.swap_remove(rng.gen_range(0..live.len()));
                vm.munmap(a, l).unwrap();
            } else if step % 97 == 0 {
                // a fixed mapping (a recorded address), above mmap_top now and then
                let at = 0x7fff_0000_0000u64 - 4096 * rng.gen_range(0..4000u64) + 4096 * 50;
                if vm.map_fixed(Addr(at), 4096).is_ok() {
                    live.push((Addr(at), 4096));
                }
            } else {
                let len = 4096 * rng.gen_range(1..40u64);
                let want = placed_by_walk(&vm, len);
                let got = vm.mmap(len).ok().map(|a| a.0);
                assert_eq!(got, want, "step {step}: mmap of {len:#x}");
                if let Some(a) = got {
                    live.push((Addr(a), len));
                }
            }
        }
        assert!(
            live.len() > 100,
            "the run kept regions live: {}",
            live.len()
        );
    }

    #[test]
    fn mremap_grows_in_place_when_the_pages_above_are_free_else_moves_below_the_old() {
        let mut vm = space();
        vm.track_residency();
        let top = 0x7fff_0000_0000u64;
        let a = vm.mmap(4 * 4096).unwrap(); // top - 4 pages
        let b = vm.mmap(2 * 4096).unwrap(); // right below a
        vm.touch(b.0, 2 * 4096);
        // b cannot grow in place (a is above it): it moves to the highest hole that fits
        // while b still stands, i.e. below b, and its pages go with it
        let c = vm.mremap(b, 2 * 4096, 3 * 4096).unwrap();
        assert_eq!(c.0, b.0 - 3 * 4096);
        assert_eq!(vm.resident_offsets(c.0, 3 * 4096), vec![0, 4096]);
        assert_eq!(vm.resident_bytes(), 2 * 4096);
        // now the pages above c (b's old place) are free: c grows in place into them
        assert_eq!(vm.mremap(c, 3 * 4096, 5 * 4096).unwrap(), c);
        assert_eq!(c.0 + 5 * 4096, a.0);
        // shrinking is in place and gives the pages above the new end back
        vm.touch(c.0 + 4 * 4096, 1);
        assert_eq!(vm.mremap(c, 5 * 4096, 4096).unwrap(), c);
        assert_eq!(vm.resident_offsets(c.0, 5 * 4096), vec![0]);
        assert_eq!(vm.mapped_bytes(), 5 * 4096);
        assert_eq!(a.0 + 4 * 4096, top);
        let s = vm.syscalls();
        assert_eq!((s.mmap, s.munmap), (3, 1), "only the move maps and unmaps");
        assert!(vm.mremap(Addr(0x1234_5000), 4096, 8192).is_err());
    }

    #[test]
    fn mappings_go_around_the_process_own_and_the_top_is_its_highest() {
        let mut vm = space();
        let layout = ProcessLayout::from_header(
            Some("7ffe00000000-7ffe00010000 7ffe00011000-7ffe00020000"),
            Some("10000000-10021000 top 4096"),
        )
        .unwrap();
        vm.apply_layout(&layout).unwrap();
        // placement starts under the highest reserved end; a one-page hole is taken by a
        // page, a larger request goes below everything
        assert_eq!(vm.mmap(4096).unwrap(), Addr(0x7ffe_0001_0000));
        assert_eq!(vm.mmap(8192).unwrap(), Addr(0x7ffe_0000_0000 - 8192));
        assert_eq!(
            vm.mapped_bytes(),
            3 * 4096,
            "reserved mappings are not counted"
        );
        assert_eq!(vm.regions().count(), 2);
        // the heap starts empty at the recorded break
        assert_eq!(
            (vm.brk_start(), vm.brk()),
            (Addr(0x1002_1000), Addr(0x1002_1000))
        );
        assert!(
            vm.munmap(Addr(0x7ffe_0001_1000), 0xf000).is_err(),
            "not the model's"
        );
        assert!(
            vm.reserve(Addr(0x7ffe_0001_0000), 4096).is_err(),
            "overlaps"
        );
        for bad in ["10-5", "zz-10", "10", "10-20-30"] {
            let e = ProcessLayout::from_header(Some(bad), None).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        let e = ProcessLayout::from_header(None, Some("1000-2000 top x")).unwrap_err();
        assert!(e.contains("# heap:"), "{e}");
        assert!(ProcessLayout::from_header(None, Some("1000-2000 top 8192")).is_err());
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
