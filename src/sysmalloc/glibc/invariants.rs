//! The model's invariants as equations, checked on demand (property tests call this
//! after every step).
//!
//! ```text
//!  Σ size(c) for c from base to top  + size(top)  == brk - base            (tiling)
//!  binned(c) ⇒ !binned(next(c)) ∧ next(c) ≠ top                           (coalesced)
//!  P(next(c)) == !binned(c),  binned(c) ⇒ prev_size(next(c)) == size(c)     (boundary tags)
//!  counts[t] == |tcache[t]| ≤ tcache_count,  csize2tidx(c) == t for c ∈ tcache[t]
//!  fastbin_index(c) == f for c ∈ fastbin[f];  bin_index(c) == i for c ∈ bin[i]
//!  large bin: sizes non-increasing along fd; nextsize ring = first chunk of each size
//!  |chunks found in lists| == |chunks of that state in the heap walk|
//!  user pointers ≡ 0 (mod MALLOC_ALIGNMENT); mappings pairwise disjoint
//! ```

use super::chunk::{bin, State, NIL};
use super::params::{NBINS, NFASTBINS, UNSORTED};
use super::Glibc;
use crate::addr::first_overlap;

impl Glibc {
    /// Checks every invariant of the heap and the bins; the first broken one is described.
    ///
    /// # Errors
    /// A description of the first equation that does not hold.
    pub fn check_invariants(&self) -> Result<(), String> {
        let h = &self.heap;
        let mut in_walk = [0u64; 9];
        let slot = |s: State| s as usize;
        if self.top != NIL {
            let mut i = h.idx(h.base);
            let mut prev_binned = false;
            let mut prev_size = 0;
            let mut first = true;
            while i != self.top {
                let n = h.n(i);
                let size = h.size(i);
                let at = h.addr(i);
                if size < self.params.min_chunk || size % self.params.malloc_alignment != 0 {
                    return Err(format!("chunk {at:#x}: bad size {size:#x}"));
                }
                if !first && n.prev_inuse() == prev_binned {
                    return Err(format!(
                        "chunk {at:#x}: P bit {} but previous chunk binned {prev_binned}",
                        n.prev_inuse()
                    ));
                }
                if prev_binned && h.prev_size(i) != prev_size {
                    return Err(format!(
                        "chunk {at:#x}: prev_size {:#x} != {prev_size:#x}",
                        h.prev_size(i)
                    ));
                }
                let binned = n.state().is_binned();
                match n.state() {
                    State::InUse | State::Tcache | State::Fast => {}
                    s if s.is_binned() => {}
                    s => return Err(format!("chunk {at:#x}: state {s:?} inside the heap")),
                }
                if binned && prev_binned {
                    return Err(format!("chunk {at:#x}: two neighbouring free chunks"));
                }
                if n.state() == State::InUse
                    && (at + 2 * self.params.size_sz) % self.params.malloc_alignment != 0
                {
                    return Err(format!("chunk {at:#x}: user pointer misaligned"));
                }
                in_walk[slot(n.state())] += 1;
                let next = h.next(i);
                if next > self.top {
                    return Err(format!("chunk {at:#x} of {:#x} runs into top", size));
                }
                prev_binned = binned;
                prev_size = size;
                first = false;
                i = next;
            }
            let t = h.n(self.top);
            if prev_binned {
                return Err("a binned free chunk borders top".into());
            }
            if !first && t.prev_inuse() == prev_binned {
                return Err("top's P bit disagrees with its neighbour".into());
            }
            let tsize = self.top_size();
            let end = h.addr(self.top) + tsize;
            if end != self.vm.brk().0 {
                return Err(format!("top ends at {end:#x}, brk is {}", self.vm.brk()));
            }
            if tsize < self.params.min_chunk {
                return Err(format!("top of {tsize:#x} is below MINSIZE"));
            }
        }
        // tcache
        for t in 0..self.params.tcache_bins as usize {
            let head = self.tcache_entries[t];
            let index = |size| self.params.csize2tidx(size);
            let limit = self.params.tcache_count;
            let k = self.walk_fd("tcache", t, head, State::Tcache, index, limit)?;
            if k != self.tcache_counts[t] as u64 || k > self.params.tcache_count {
                return Err(format!(
                    "tcache[{t}]: counts {} but {k} entries (max {})",
                    self.tcache_counts[t], self.params.tcache_count
                ));
            }
            in_walk[slot(State::Tcache)] = in_walk[slot(State::Tcache)].wrapping_sub(k);
        }
        // fastbins
        for f in 0..NFASTBINS {
            let index = |size| self.params.fastbin_index(size);
            let k = self.walk_fd("fastbin", f, self.fastbins[f], State::Fast, index, u64::MAX)?;
            in_walk[slot(State::Fast)] = in_walk[slot(State::Fast)].wrapping_sub(k);
        }
        // doubly-linked bins
        for b in UNSORTED..NBINS {
            let s = bin(b);
            let mut i = h.fd(s);
            let mut prev = s;
            let mut last_size = u64::MAX;
            let mut heads = 0u64;
            while i != s {
                let n = h.n(i);
                if h.bk(i) != prev {
                    return Err(format!("bin {b}: broken bk at {:#x}", h.addr(i)));
                }
                let (want, ok) = if b == UNSORTED {
                    (State::Unsorted, true)
                } else if self.params.in_smallbin_range(h.size(i)) {
                    (State::Small, self.params.smallbin_index(h.size(i)) == b)
                } else {
                    (State::Large, self.params.largebin_index(h.size(i)) == b)
                };
                if n.state() != want || !ok {
                    return Err(format!(
                        "bin {b} holds {:#x} ({:?}, size {:#x})",
                        h.addr(i),
                        n.state(),
                        h.size(i)
                    ));
                }
                if want == State::Large {
                    if h.size(i) > last_size {
                        return Err(format!("large bin {b} not sorted at {:#x}", h.addr(i)));
                    }
                    let is_head = h.size(i) != last_size;
                    if is_head != (h.fd_nextsize(i) != NIL) {
                        return Err(format!(
                            "large bin {b}: nextsize ring wrong at {:#x}",
                            h.addr(i)
                        ));
                    }
                    heads += is_head as u64;
                    last_size = h.size(i);
                }
                in_walk[slot(want)] = in_walk[slot(want)].wrapping_sub(1);
                prev = i;
                i = h.fd(i);
            }
            if h.bk(s) != prev {
                return Err(format!("bin {b}: sentinel bk broken"));
            }
            if b != UNSORTED && (self.binmap >> b & 1 == 1) != (h.fd(s) != s) {
                return Err(format!("binmap bit {b} disagrees with the bin"));
            }
            if heads > 0 {
                // the ring through the heads, largest to smallest, has `heads` members
                let first = h.fd(s);
                let mut j = first;
                let mut k = 0;
                loop {
                    k += 1;
                    let nx = h.fd_nextsize(j);
                    if nx == NIL || h.bk_nextsize(nx) != j || k > heads {
                        return Err(format!("large bin {b}: nextsize ring broken"));
                    }
                    j = nx;
                    if j == first {
                        break;
                    }
                }
                if k != heads {
                    return Err(format!("large bin {b}: {k} on the ring, {heads} sizes"));
                }
            }
        }
        for s in [
            State::Tcache,
            State::Fast,
            State::Unsorted,
            State::Small,
            State::Large,
        ] {
            if in_walk[slot(s)] != 0 {
                return Err(format!("{s:?}: chunks in the heap and in the lists differ"));
            }
        }
        // mappings
        let mut maps: Vec<_> = self
            .mmaps
            .iter()
            .map(|(&mem, m)| (m.base, m.len, mem))
            .collect();
        maps.sort_unstable();
        if let Some((a, b)) = first_overlap(maps.iter().map(|&(base, len, _)| (base, base + len))) {
            return Err(format!("mappings at {a:#x} and {b:#x} overlap"));
        }
        for &(base, len, mem) in &maps {
            if mem % self.params.malloc_alignment != 0 || mem < base || mem >= base + len {
                return Err(format!("mmapped chunk {mem:#x} outside its mapping"));
            }
        }
        Ok(())
    }

    /// Walks bin `b` of a singly linked family (tcache, fastbins: `fd` links, `NIL` at the
    /// end) from `head`: every chunk on it is `state` and of this bin (`index(size) == b`).
    /// The number of chunks, counted up to one past `limit`.
    ///
    /// # Errors
    /// The first chunk that is not, named with the family `name` (`fastbin[3] holds …`).
    fn walk_fd(
        &self,
        name: &str,
        b: usize,
        head: u32,
        state: State,
        index: impl Fn(u64) -> usize,
        limit: u64,
    ) -> Result<u64, String> {
        let h = &self.heap;
        let (mut i, mut k) = (head, 0u64);
        while i != NIL {
            let n = h.n(i);
            if n.state() != state || index(h.size(i)) != b {
                return Err(format!(
                    "{name}[{b}] holds {:#x} ({:?}, {:#x})",
                    h.addr(i),
                    n.state(),
                    h.size(i)
                ));
            }
            k += 1;
            if k > limit {
                break;
            }
            i = h.fd(i);
        }
        Ok(k)
    }
}
