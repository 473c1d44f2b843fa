//! The page directory under the address-indexed tables of the replay: which slot of a
//! table holds the 64 KiB page of address space `a / 2^16`, with the last pages used
//! remembered in a direct-mapped cache.
//!
//! ```text
//!   a ──a >> 16──> page ──page mod N──> cache[c] = (page + 1, i)?  hit: i
//!                                        miss: pages[page] (a hash probe), then cache[c] = (page + 1, i)
//! ```
//! Blocks cluster in arenas and heaps, so the pages are few and the page of the last
//! address is usually one of the last few: a lookup is a shift, a mask and a compare.
//! Serves [`LiveSet`](super::live) (the recording's live blocks, a bit per granule) and
//! `compare`'s recorded address → block id table (a `u32` per granule).
//! Invariant: `cache[c] == (p + 1, i) ⇒ pages[p] == i` (an index once given is never
//! changed or taken back; `page + 1` so that the zeroed cache holds no page).

use super::live::AddrMap;

/// Page number → index into a table's pages, with an `N`-entry cache (`N` a power of two).
pub(crate) struct PageIndex<const N: usize> {
    pages: AddrMap<u32>,    // page number -> index
    cache: [(u64, u32); N], // recent pages (page number + 1, index), by page number mod N
}

impl<const N: usize> Default for PageIndex<N> {
    fn default() -> Self {
        PageIndex {
            pages: AddrMap::default(),
            cache: [(0, 0); N],
        }
    }
}

impl<const N: usize> PageIndex<N> {
    /// The index of `page`, if it has one.
    #[inline(always)]
    pub(crate) fn get(&mut self, page: u64) -> Option<u32> {
        let c = (page as usize) & (N - 1);
        if self.cache[c].0 == page + 1 {
            return Some(self.cache[c].1);
        }
        let i = *self.pages.get(&page)?;
        self.cache[c] = (page + 1, i);
        Some(i)
    }

    /// The index of `page`, given `fresh` if it had none (the caller then adds that page).
    #[inline(always)]
    pub(crate) fn get_or_insert(&mut self, page: u64, fresh: u32) -> u32 {
        let c = (page as usize) & (N - 1);
        if self.cache[c].0 == page + 1 {
            return self.cache[c].1;
        }
        let i = *self.pages.entry(page).or_insert(fresh);
        self.cache[c] = (page + 1, i);
        i
    }

    /// How many pages have an index.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }

    /// Gives `page`, which has no index yet, the index `i`.
    #[inline]
    pub(crate) fn insert(&mut self, page: u64, i: u32) {
        let old = self.pages.insert(page, i);
        debug_assert!(old.is_none(), "page {page:#x} indexed twice");
    }
}

#[cfg(test)]
mod tests {
    use super::PageIndex;

    #[test]
    fn pages_sharing_a_cache_entry_keep_their_own_index() {
        let mut p = PageIndex::<4>::default();
        // pages 1 and 5 share cache entry 1; page 0 is a page like any other
        assert_eq!(p.get(1), None);
        assert_eq!(p.get_or_insert(1, 0), 0);
        assert_eq!(p.get_or_insert(5, 1), 1);
        assert_eq!(p.get_or_insert(0, 2), 2);
        assert_eq!(p.get_or_insert(1, 3), 0, "an index once given stays");
        assert_eq!(p.get(5), Some(1));
        assert_eq!(p.get(1), Some(0));
        assert_eq!(p.get(0), Some(2));
        assert_eq!(p.get(9), None);
        p.insert(9, 7);
        assert_eq!(p.get(9), Some(7));
        assert_eq!(p.len(), 4);
        assert_eq!(p.get(5), Some(1));
    }
}
