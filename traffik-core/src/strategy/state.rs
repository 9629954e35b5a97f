//! [`State`]: what a strategy keeps per key, and its codec for remote stores.

use std::fmt::Debug;

/// What a strategy remembers per key, and how remote stores keep it.
///
/// `Default` is a key that has never been hit. The codec writes ASCII (decimal
/// numbers separated by spaces), so stored values stay readable with a
/// store's own tools. `decode` accepts exactly what `encode` writes and
/// returns `None` for anything else; it never panics.
pub trait State: Clone + Default + Debug + PartialEq + Send + Sync + 'static {
    /// Appends the state's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The state `bytes` holds, if they hold one.
    fn decode(bytes: &[u8]) -> Option<Self>;

    /// How many `u64` words the state packs into, for in-process stores
    /// that keep it in atomics; 0 for a state of no fixed size (a log).
    const WORDS: usize = 0;

    /// Writes the state into the first [`WORDS`](State::WORDS) words of
    /// `words` (fewer if `words` is shorter).
    fn to_words(&self, words: &mut [u64]) {
        let _ = words;
    }

    /// The state the first [`WORDS`](State::WORDS) words of `words` hold
    /// (missing words read as 0). Every value of the words is a state, so
    /// this never fails.
    fn from_words(words: &[u64]) -> Self {
        let _ = words;
        Self::default()
    }
}

/// `impl State` for a state of `u64` fields: the byte codec writes them as
/// decimal words in field order, the word codec as words in the same order.
macro_rules! words_state {
    ($state:ident { $($field:ident),+ $(,)? }) => {
        impl $crate::strategy::State for $state {
            fn encode(&self, out: &mut Vec<u8>) {
                $crate::strategy::state::encode_words(out, &[$(self.$field),+]);
            }

            fn decode(bytes: &[u8]) -> Option<Self> {
                let [$($field),+] = $crate::strategy::state::decode_words(bytes)?;
                Some($state { $($field),+ })
            }

            const WORDS: usize = [$(stringify!($field)),+].len();

            #[inline]
            fn to_words(&self, words: &mut [u64]) {
                $crate::strategy::state::put_words(words, &[$(self.$field),+]);
            }

            #[inline]
            fn from_words(words: &[u64]) -> Self {
                let [$($field),+] = $crate::strategy::state::take_words(words);
                $state { $($field),+ }
            }
        }
    };
}

pub(crate) use words_state;

/// Copies `values` into the front of `words`, as far as both go.
#[inline]
pub(crate) fn put_words(words: &mut [u64], values: &[u64]) {
    for (word, value) in words.iter_mut().zip(values) {
        *word = *value;
    }
}

/// The first `N` words of `words`, missing ones as 0.
#[inline]
pub(crate) fn take_words<const N: usize>(words: &[u64]) -> [u64; N] {
    let mut out = [0u64; N];
    put_words(&mut out, words);
    out
}

/// Appends `words` as decimal numbers separated by single spaces.
pub(crate) fn encode_words(out: &mut Vec<u8>, words: &[u64]) {
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_decimal(out, *word);
    }
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Parses a decimal `u64` (digits only, no sign, no overflow).
pub(crate) fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Parses exactly `N` decimal numbers separated by single spaces.
pub(crate) fn decode_words<const N: usize>(bytes: &[u8]) -> Option<[u64; N]> {
    let mut words = [0u64; N];
    let mut parts = bytes.split(|&b| b == b' ');
    for word in &mut words {
        *word = parse_decimal(parts.next()?)?;
    }
    parts.next().is_none().then_some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_garbage_is_refused() {
        let mut out = Vec::new();
        encode_words(&mut out, &[0, u64::MAX, 42]);
        assert_eq!(out, b"0 18446744073709551615 42");
        assert_eq!(decode_words::<3>(&out), Some([0, u64::MAX, 42]));
        for bad in [
            &b""[..],
            b"1 2",
            b"1 2 3 4",
            b"1  2 3",
            b"18446744073709551616 1 1",
            b"-1 2 3",
            b"1 2 x",
        ] {
            assert_eq!(decode_words::<3>(bad), None, "{bad:?}");
        }
    }
}
