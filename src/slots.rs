//! Slot vectors whose freed indices are handed out again: the block ids of `compare`'s
//! translator, mimalloc's segment slots. A slot's index is its name for as long as it
//! is used, so tables keyed by it stay dense however many come and go.

/// Puts `value` in the slot last freed (`free`'s top) or, when none is free, in a new slot
/// at the end of `slots`; returns its index. Invariant: the indices in `free` are below
/// `slots.len()` and name slots not in use.
#[inline(always)]
pub(crate) fn reuse_or_push<T>(slots: &mut Vec<T>, free: &mut Vec<u32>, value: T) -> u32 {
    match free.pop() {
        Some(i) => {
            slots[i as usize] = value;
            i
        }
        None => {
            slots.push(value);
            (slots.len() - 1) as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_freed_slot_is_taken_first_then_new_ones() {
        let (mut slots, mut free) = (Vec::new(), Vec::new());
        let ids: Vec<u32> = (10..13)
            .map(|v| reuse_or_push(&mut slots, &mut free, v))
            .collect();
        assert_eq!(ids, [0, 1, 2]);
        free.extend([0, 2]);
        assert_eq!(reuse_or_push(&mut slots, &mut free, 20), 2);
        assert_eq!(reuse_or_push(&mut slots, &mut free, 21), 0);
        assert_eq!(reuse_or_push(&mut slots, &mut free, 22), 3);
        assert_eq!(slots, [21, 11, 20, 22]);
    }
}
