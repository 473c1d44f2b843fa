//! The small-int caches: where `id(v)` points for -5 <= v <= 256.
//!
//! ```text
//!  CPython 2 (intobject.c, _PyInt_Init): small_ints[v + 5] = the v-th int popped
//!   from the fresh free list, v = -5, -4, …, 256 in order. On 64-bit the first block
//!   holds -5..35 at objects[40..0] (id falls by 24 per step), the next block 36..76, …
//!   so id(v) - id(-5) = stride*((v+5) / 41) - 24*((v+5) % 41), stride = malloc's block spacing.
//!
//!  CPython 3 (longobject.c, 3.11): a static array in libpython's data segment,
//!   _PyRuntime.global_objects.singletons.small_ints[-5..=256], one PyLongObject each:
//!   id(v) = id(-5) + sizeof(PyLongObject) * (v + 5)   (32 bytes on 64-bit, 8-aligned)
//! ```

use super::intobject::{IntFreeList, NSMALLNEGINTS, NSMALLPOSINTS};
use super::Slot;
use crate::addr::Addr;
use crate::alloc::Allocator;
use crate::error::AllocError;
use crate::platform::Platform;

/// Where each cached small int lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallInts {
    addrs: Vec<Addr>,         // id(v) at index v + NSMALLNEGINTS
    slots: Option<Vec<Slot>>, // Py2: the free-list slot of each (None for Py3's static array)
}

impl SmallInts {
    /// `_PyInt_Init`: pops `NSMALLNEGINTS + NSMALLPOSINTS` ints from the free list, -5 first.
    ///
    /// # Errors
    /// Whatever the heap refuses when a block is needed.
    pub fn py2_init<A: Allocator>(ints: &mut IntFreeList<A>) -> Result<SmallInts, AllocError> {
        let n = (NSMALLNEGINTS + NSMALLPOSINTS) as usize;
        let mut addrs = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            let (s, a) = ints.alloc()?;
            addrs.push(a);
            slots.push(s);
        }
        Ok(SmallInts {
            addrs,
            slots: Some(slots),
        })
    }

    /// Py2's cache with addresses taken from elsewhere (a trace's `_PyInt_Init` I lines).
    pub(crate) fn py2_given(addrs: Vec<Addr>, slots: Vec<Slot>) -> SmallInts {
        SmallInts {
            addrs,
            slots: Some(slots),
        }
    }

    /// Py3's static array with `id(-5)` at `first`, one `PyLongObject` per value.
    pub fn py3_static(platform: &Platform, first: Addr) -> SmallInts {
        let stride = py3_long_object_size(platform);
        let n = (NSMALLNEGINTS + NSMALLPOSINTS) as u64;
        SmallInts {
            addrs: (0..n).map(|i| first + i * stride).collect(),
            slots: None,
        }
    }

    /// `id(v)` for a cached `v`, `None` outside -5..=256.
    pub fn get(&self, v: i64) -> Option<Addr> {
        let i = v.checked_add(NSMALLNEGINTS)?;
        usize::try_from(i)
            .ok()
            .and_then(|i| self.addrs.get(i).copied())
    }

    /// The free-list slot holding `v` (Py2 only).
    pub fn slot(&self, v: i64) -> Option<Slot> {
        let i = usize::try_from(v.checked_add(NSMALLNEGINTS)?).ok()?;
        self.slots.as_ref()?.get(i).copied()
    }

    /// Every cached value with its address, -5 first.
    pub fn iter(&self) -> impl Iterator<Item = (i64, Addr)> + '_ {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, &a)| (i as i64 - NSMALLNEGINTS, a))
    }
}

/// `sizeof(PyLongObject)` with one digit in CPython 3: refcount, type, `ob_size`, and a
/// 30-bit digit (`uint32_t`) on 64-bit builds or a 15-bit one (`unsigned short`) on 32-bit,
/// padded to the pointer alignment (32 bytes on x86-64, 16 on i686).
pub fn py3_long_object_size(p: &Platform) -> u64 {
    let digit = if p.pointer_bytes >= 8 { 4 } else { 2 };
    super::align_up(3 * p.pointer_bytes + digit, p.pointer_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysmalloc::Bump;

    #[test]
    fn py2_cache_is_popped_in_order_from_fresh_blocks() {
        let p = Platform::linux_x86_64();
        let mut ints = IntFreeList::new(Bump::new(Addr(0x10000), 16), &p);
        let s = SmallInts::py2_init(&mut ints).unwrap();
        let size = ints.layout().object_size as i64;
        assert_eq!(s.get(-4).unwrap() - s.get(-5).unwrap(), -size);
        assert_eq!(s.get(257), None);
        assert_eq!(s.get(i64::MIN), None);
        assert_eq!(ints.n_live(), (NSMALLNEGINTS + NSMALLPOSINTS) as u64);
    }

    #[test]
    fn py3_array_is_evenly_strided() {
        let p = Platform::linux_x86_64();
        let s = SmallInts::py3_static(&p, Addr(0x1008));
        assert_eq!(s.get(0).unwrap() - s.get(-5).unwrap(), 5 * 32);
        assert!(s.get(256).unwrap().is_aligned(8));
    }
}
