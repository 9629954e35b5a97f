//! Storage that grows by whole segments and never moves or frees what it
//! holds while it lives, so a reader may keep a reference to an element
//! while a writer adds segments, with no lock and no reference count.
//!
//! Segment 0 holds `2^BASE_BITS` elements and segment `k ≥ 1` holds
//! `2^(BASE_BITS + k − 1)`, so the first `n` segments hold
//! `2^(BASE_BITS + n − 1)` elements: a power of two, as an index wants.
//!
//! Elements are kept in [`Block`]s of whole 128-byte-aligned line pairs, so
//! no cache line, nor the pair an adjacent-line prefetcher fetches, is ever
//! shared by two segments, whatever the heap puts side by side: a segment
//! one thread writes never slows a segment another thread reads.

use std::sync::OnceLock;

/// Elements grouped into a block whose size is a multiple of 128 bytes and
/// which is aligned to 128 (`#[repr(align(128))]`).
pub(super) trait Block {
    /// What the block holds.
    type Item;
    /// Elements per block: a power of two no larger than segment 0.
    const LEN: usize;
    /// A block of new elements.
    fn make() -> Self;
    /// The block's elements.
    fn items(&self) -> &[Self::Item];
}

/// log2 of segment 0's length (tiny under loom, so that models reach a
/// new segment within a few operations).
#[cfg(not(loom))]
const BASE_BITS: u32 = 5;
#[cfg(loom)]
const BASE_BITS: u32 = 1;

/// How many segments there can be.
const SEGMENTS: usize = 26;

/// The most elements a [`Segmented`] can hold.
pub(super) const MAX_LEN: usize = 1 << (BASE_BITS as usize + SEGMENTS - 1);

/// Elements in segments that are made once and never move.
pub(super) struct Segmented<B> {
    segments: [OnceLock<Box<[B]>>; SEGMENTS],
}

/// The segment of element `i`, and its place in it.
#[inline(always)]
fn locate(i: usize) -> (usize, usize) {
    let high = i >> BASE_BITS;
    if high == 0 {
        (0, i)
    } else {
        let k = (usize::BITS - high.leading_zeros()) as usize;
        (k, i - (1 << (BASE_BITS as usize + k - 1)))
    }
}

/// Where the `n`-th element made should go: the same segment, at the
/// bit-reversal of its place in it. Elements made one after the other then
/// sit half a segment apart, so keys that arrive together (and are hit
/// together, by different threads) do not share cache lines. It maps each
/// segment onto itself, one to one, so the first `n` elements made fill
/// exactly the places `scatter(0..n)` of the segments `0..n` needs.
#[inline]
pub(super) fn scatter(n: usize) -> usize {
    let (k, at) = locate(n);
    let bits = segment_len(k).trailing_zeros();
    let start = n - at;
    start + (at.reverse_bits() >> (usize::BITS - bits))
}

/// How many elements segment `k` holds.
fn segment_len(k: usize) -> usize {
    if k == 0 {
        1 << BASE_BITS
    } else {
        1 << (BASE_BITS as usize + k - 1)
    }
}

impl<B: Block> Segmented<B> {
    /// No segment yet.
    pub(super) fn new() -> Segmented<B> {
        Segmented {
            segments: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Element `i`, if its segment has been made.
    #[inline(always)]
    pub(super) fn get(&self, i: usize) -> Option<&B::Item> {
        const { assert!(B::LEN.is_power_of_two() && B::LEN <= 1 << BASE_BITS) };
        let (k, at) = locate(i);
        let block = self.segments.get(k)?.get()?.get(at / B::LEN)?;
        block.items().get(at % B::LEN)
    }

    /// How many elements the segments made so far hold.
    #[cfg(test)]
    pub(super) fn allocated(&self) -> usize {
        let made = self
            .segments
            .iter()
            .take_while(|s| s.get().is_some())
            .count();
        (0..made).map(segment_len).sum()
    }

    /// Makes the segments that elements `0..len` need. Returns false if
    /// `len` is over [`MAX_LEN`].
    pub(super) fn reserve(&self, len: usize) -> bool {
        if len == 0 {
            return true;
        }
        if len > MAX_LEN {
            return false;
        }
        let (last, _) = locate(len - 1);
        for (k, segment) in self.segments.iter().enumerate().take(last + 1) {
            segment.get_or_init(|| (0..segment_len(k) / B::LEN).map(|_| B::make()).collect());
        }
        true
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[repr(align(128))]
    struct Sevens([u32; 32]);

    impl Block for Sevens {
        type Item = u32;
        const LEN: usize = 32;
        fn make() -> Sevens {
            Sevens([7; 32])
        }
        fn items(&self) -> &[u32] {
            &self.0
        }
    }

    #[test]
    fn elements_are_found_in_order_and_never_move() {
        let storage: Segmented<Sevens> = Segmented::new();
        assert!(storage.get(0).is_none());
        assert!(storage.reserve(100));
        assert_eq!(storage.allocated(), 128);
        let first: *const u32 = storage.get(3).unwrap();
        assert_eq!(storage.get(99), Some(&7));
        assert!(storage.reserve(5_000));
        assert_eq!(storage.allocated(), 8_192);
        assert!(
            std::ptr::eq(first, storage.get(3).unwrap()),
            "element moved"
        );
        assert!(storage.get(8_191).is_some());
        assert!(storage.get(8_192).is_none());
        assert!(!storage.reserve(MAX_LEN + 1));
        // Every segment starts on a 128-byte boundary.
        for i in [0, 32, 64, 128, 256, 4_096] {
            let at = storage.get(i).unwrap() as *const u32 as usize;
            assert_eq!(at % 128, 0, "segment of {i}");
        }
    }

    #[test]
    fn scattering_maps_each_segment_onto_itself() {
        let mut seen = std::collections::HashSet::new();
        for n in 0..4_096 {
            let at = scatter(n);
            assert_eq!(locate(at).0, locate(n).0, "{n} left its segment");
            assert!(seen.insert(at), "{n} shares {at}");
        }
        // Consecutive elements are far apart in a large segment.
        let (a, b) = (scatter(1_024), scatter(1_025));
        assert!(a.abs_diff(b) >= 256, "{a} and {b}");
    }

    #[test]
    fn every_index_has_one_place() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            let (k, at) = locate(i);
            assert!(at < segment_len(k), "{i} -> {k}:{at}");
            assert!(seen.insert((k, at)), "{i} shares a place");
        }
        assert_eq!(locate(MAX_LEN - 1).0, SEGMENTS - 1);
    }
}
