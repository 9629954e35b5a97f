//! Backend keys built per request: a stack buffer, and IPv4 text without the
//! formatting machinery.
//!
//! A key is built on every request, so its cost is the layer's cost. The
//! buffer holds bytes that are UTF-8 by construction (whole `&str`s and the
//! ASCII of IPv4 addresses), which is what lets `TextBuf::as_str` skip a
//! second UTF-8 check of what was checked already.

#![allow(unsafe_code)]

use std::fmt;
use std::net::Ipv4Addr;

/// A key: most fit on the stack.
pub(crate) type KeyBuf = TextBuf<64>;

/// Text under construction: on the stack up to `N` bytes, then a `String`.
///
/// Invariant: `bytes[..len]` is UTF-8. Every way in writes whole `&str`s or
/// ASCII.
pub(crate) enum TextBuf<const N: usize> {
    Stack { bytes: [u8; N], len: usize },
    Heap(String),
}

impl<const N: usize> TextBuf<N> {
    pub(crate) fn new() -> TextBuf<N> {
        TextBuf::Stack {
            bytes: [0; N],
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match self {
            TextBuf::Stack { bytes, len } => {
                let used = bytes.get(..*len).unwrap_or_default();
                debug_assert!(std::str::from_utf8(used).is_ok());
                // SAFETY: the invariant of `TextBuf`: the used bytes are
                // whole `&str`s and ASCII, so they are UTF-8.
                unsafe { std::str::from_utf8_unchecked(used) }
            }
            TextBuf::Heap(text) => text,
        }
    }

    /// Appends `text`.
    #[inline]
    pub(crate) fn push_str(&mut self, text: &str) {
        self.push_utf8(text.as_bytes());
    }

    /// Appends an IPv4 address in dotted decimal.
    #[inline]
    pub(crate) fn push_ipv4(&mut self, ip: Ipv4Addr) {
        let text = Ipv4Text::new(ip);
        self.push_utf8(text.bytes());
    }

    /// Appends a part of the key's scope, `|tag:text`. The identity before
    /// it is self-delimiting (its kind tag, and the length of a text), so
    /// no identity can pass for an identity with a suffix.
    pub(crate) fn push_suffix(&mut self, tag: &str, text: &str) {
        self.push_utf8(b"|");
        self.push_str(tag);
        self.push_utf8(b":");
        self.push_str(text);
    }

    /// Appends bytes that are UTF-8 on their own (a whole `&str`, ASCII).
    #[inline]
    fn push_utf8(&mut self, text: &[u8]) {
        debug_assert!(std::str::from_utf8(text).is_ok());
        match self {
            TextBuf::Stack { bytes, len } => {
                let end = *len + text.len();
                if let Some(slot) = bytes.get_mut(*len..end) {
                    slot.copy_from_slice(text);
                    *len = end;
                    return;
                }
                // Both halves are UTF-8 on their own (the invariant and this
                // function's contract): checked here, on the rare path.
                let mut heap = String::with_capacity(end + 16);
                let used = bytes.get(..*len).unwrap_or_default();
                heap.push_str(std::str::from_utf8(used).unwrap_or_default());
                heap.push_str(std::str::from_utf8(text).unwrap_or_default());
                *self = TextBuf::Heap(heap);
            }
            TextBuf::Heap(heap) => heap.push_str(std::str::from_utf8(text).unwrap_or_default()),
        }
    }
}

impl<const N: usize> fmt::Write for TextBuf<N> {
    #[inline]
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push_str(text);
        Ok(())
    }
}

/// At most `max` bytes of `text`, cut at a character boundary: what an
/// error message may quote of an input.
pub(crate) fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// The text of every octet followed by a dot, packed little-endian into four
/// bytes ("255." fills them), and how many of the bytes are used.
const OCTETS: [(u32, u8); 256] = {
    const fn digit(d: usize) -> u32 {
        b'0' as u32 + d as u32
    }
    let mut table = [(0u32, 0u8); 256];
    let mut octet = 0;
    while octet < 256 {
        table[octet] = if octet >= 100 {
            let text = digit(octet / 100)
                | digit(octet / 10 % 10) << 8
                | digit(octet % 10) << 16
                | (b'.' as u32) << 24;
            (text, 4)
        } else if octet >= 10 {
            (
                digit(octet / 10) | digit(octet % 10) << 8 | (b'.' as u32) << 16,
                3,
            )
        } else {
            (digit(octet) | (b'.' as u32) << 8, 2)
        };
        octet += 1;
    }
    table
};

/// An IPv4 identity's key, `ip:` and the address in dotted decimal: four
/// table lookups and four stores.
pub(crate) struct Ipv4Text {
    /// ASCII; `text[..len]` is the key.
    text: [u8; 20],
    len: usize,
}

impl Ipv4Text {
    #[inline]
    pub(crate) fn new(ip: Ipv4Addr) -> Ipv4Text {
        let mut text = [0u8; 20];
        text[..3].copy_from_slice(b"ip:");
        let mut len = 3;
        for octet in ip.octets() {
            let (packed, used) = OCTETS[usize::from(octet)];
            // At most 15 before the last octet: the store always fits.
            if let Some(slot) = text.get_mut(len..len + 4) {
                slot.copy_from_slice(&packed.to_le_bytes());
            }
            len += usize::from(used);
        }
        // Without the last dot.
        Ipv4Text { text, len: len - 1 }
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        self.text.get(..self.len).unwrap_or_default()
    }

    pub(crate) fn as_str(&self) -> &str {
        let text = self.bytes();
        debug_assert!(text.is_ascii());
        // SAFETY: only `ip:` and the ASCII digits and dots of `OCTETS` are
        // stored.
        unsafe { std::str::from_utf8_unchecked(text) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_keys_read_as_std_writes_them() {
        // Every octet value in every position, beside a 1-, 2- and 3-digit
        // neighbour.
        for octet in 0..=255u8 {
            for position in 0..4 {
                for other in [7, 42, 255] {
                    let mut octets = [other; 4];
                    octets[position] = octet;
                    let ip = Ipv4Addr::from(octets);
                    assert_eq!(Ipv4Text::new(ip).as_str(), format!("ip:{ip}"));
                    let mut key = KeyBuf::new();
                    key.push_ipv4(ip);
                    key.push_suffix("r", "/r");
                    assert_eq!(key.as_str(), format!("ip:{ip}|r:/r"));
                }
            }
        }
    }

    #[test]
    fn key_buffers_spill_past_64_bytes() {
        let mut key = KeyBuf::new();
        key.push_str("é".repeat(30).as_str());
        key.push_suffix("r", "route/with/a/long/path");
        assert_eq!(key.as_str().len(), 60 + 3 + 22);
        assert!(key.as_str().ends_with("|r:route/with/a/long/path"));
        assert!(key.as_str().starts_with("éé"));
        key.push_suffix("c", "more");
        assert!(key.as_str().ends_with("|r:route/with/a/long/path|c:more"));
    }

    #[test]
    fn prefixes_cut_at_character_boundaries() {
        assert_eq!(prefix("abc", 64), "abc");
        assert_eq!(prefix("ééé", 3), "é");
        assert_eq!(prefix(&"x".repeat(10_000), 64).len(), 64);
    }

    #[test]
    fn a_key_of_exactly_64_bytes_stays_on_the_stack() {
        let mut key = KeyBuf::new();
        key.push_str(&"a".repeat(63));
        key.push_str("b");
        assert!(matches!(key, TextBuf::Stack { len: 64, .. }));
        assert_eq!(key.as_str(), format!("{}b", "a".repeat(63)));
    }
}
