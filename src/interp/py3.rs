//! The CPython 3.11 facade: ints from the static small-int array (Objects/longobject.c,
//! `_PyRuntime.global_objects.singletons.small_ints`); every other int is a
//! `PyLongObject` from pymalloc, which this facade says it does not place.
//!
//! ```text
//!   id(v) = id(-5) + sizeof(PyLongObject) * (v + 5)     -5 <= v <= 256
//! ```

use super::{as_long, Int, IntKind, Interpreter, PyError, Version, LONG_TEXT};
use crate::addr::Addr;
use crate::objects::small_ints::py3_long_object_size;
use crate::objects::SmallInts;
use crate::platform::Platform;

/// CPython 3.11's ints on a platform.
pub struct Py3 {
    platform: Platform,    // widths
    small_ints: SmallInts, // the static array
}

impl Py3 {
    /// CPython 3.11 on `platform`, `id(-5)` at [`Platform::py3_small_ints`].
    ///
    /// ```
    /// use pyalloc::interp::{Interpreter, Py3};
    /// use pyalloc::objects::small_ints::py3_long_object_size;
    /// use pyalloc::Platform;
    ///
    /// let p = Platform::linux_x86_64();
    /// let mut py = Py3::new(p.clone());
    /// let (a, b) = (py.int(0)?, py.int(1)?);
    /// // one PyLongObject further in the static array
    /// assert_eq!((b.addr - a.addr) as u64, py3_long_object_size(&p));
    /// assert!(py.int(257).is_err()); // a PyLongObject from pymalloc: not placed here
    /// # Ok::<(), pyalloc::interp::PyError>(())
    /// ```
    pub fn new(platform: Platform) -> Py3 {
        let first = platform.py3_small_ints;
        Py3::at(platform, first)
    }

    /// CPython 3.11 with `id(-5)` at `first`.
    pub fn at(platform: Platform, first: Addr) -> Py3 {
        Py3 {
            small_ints: SmallInts::py3_static(&platform, first),
            platform,
        }
    }

    /// The small-int array.
    pub fn small_ints(&self) -> &SmallInts {
        &self.small_ints
    }
}

impl Interpreter for Py3 {
    fn version(&self) -> Version {
        Version::V3_11
    }

    fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The cached int for -5..=256.
    ///
    /// # Errors
    /// `ValueOutOfRange` when `v` does not fit a C long; `NotModelled` outside the cache.
    fn int(&mut self, v: i64) -> Result<Int, PyError> {
        as_long(&self.platform, v as i128)?;
        match self.small_ints.get(v) {
            Some(addr) => Ok(Int {
                value: v,
                addr,
                kind: IntKind::Small,
            }),
            None => Err(PyError::NotModelled(format!(
                "{v}: CPython {} ints outside -5..256 are PyLongObjects of {} bytes from pymalloc",
                Version::V3_11.name(),
                py3_long_object_size(&self.platform)
            ))),
        }
    }

    fn explain(&mut self, o: &Int) -> String {
        match o.kind {
            IntKind::Long => LONG_TEXT.into(),
            _ => format!(
                "small_ints[{}] of the static array in libpython's data segment, {} bytes per PyLongObject",
                o.value + 5,
                py3_long_object_size(&self.platform)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_ints_are_one_object_size_apart_and_others_are_not_modelled() {
        let p = Platform::linux_x86_64();
        let mut py = Py3::new(p.clone());
        let a = py.int(-5).unwrap();
        assert_eq!(a.addr, p.py3_small_ints);
        let b = py.int(256).unwrap();
        assert_eq!(b.addr - a.addr, 261 * py3_long_object_size(&p) as i64);
        assert!(matches!(py.int(257), Err(PyError::NotModelled(_))));
        let mut py32 = Py3::new(Platform::linux_i686());
        assert!(matches!(py32.int(1 << 40), Err(PyError::Alloc(_))));
    }
}
