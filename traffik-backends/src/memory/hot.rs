//! The keys denied most often, kept approximately with the Space-Saving
//! algorithm (Metwally, Agrawal and El Abbadi, 2005): a fixed number of
//! counters per stripe; a key not counted takes over the smallest counter
//! and inherits its count, so a key's count is never under its true count
//! and overstates it by at most the count it inherited (`error`).

use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use parking_lot::Mutex;
use traffik_core::Key;

/// Stripes, so that threads denying different keys rarely meet.
const STRIPES: usize = 16;

/// The most counters kept: each denial scans its stripe's, so more would
/// cost every denial more than it tells.
pub(super) const MAX_CAPACITY: usize = 4_096;

/// The longest key text kept (longer ones are cut, on a character
/// boundary): an attacker's long identity costs no more memory.
const MAX_KEY_TEXT: usize = 128;

/// One of the keys denied most often.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HotKey {
    /// The key as the store names it: `namespace:throttle:identity`, cut to
    /// 128 bytes.
    pub key: String,
    /// How many of its hits were denied (an upper bound; see `error`).
    pub denials: u64,
    /// How much `denials` may overstate: what it inherited from the key it
    /// replaced in the table.
    pub error: u64,
}

struct Slot {
    hash: u64,
    key: String,
    count: u64,
    error: u64,
}

/// The hot-key table of one backend.
pub(super) struct HotKeys {
    per_stripe: usize,
    stripes: Box<[Mutex<Vec<Slot>>]>,
    hasher: FixedState,
}

impl HotKeys {
    /// Room for about `capacity` keys (at least one per stripe, at most
    /// [`MAX_CAPACITY`]).
    pub(super) fn new(capacity: usize) -> HotKeys {
        let per_stripe = capacity.min(MAX_CAPACITY).div_ceil(STRIPES).max(1);
        HotKeys {
            per_stripe,
            stripes: (0..STRIPES)
                .map(|_| Mutex::new(Vec::with_capacity(per_stripe)))
                .collect(),
            hasher: FixedState::default(),
        }
    }

    /// Counts a denial of `key`.
    #[cold]
    #[inline(never)]
    pub(super) fn denied(&self, key: &Key<'_>) {
        let prefix = key.scope().prefix();
        let identity = key.identity();
        let hash = self.hasher.hash_one((prefix, identity));
        let stripe = &self.stripes[(hash as usize) % STRIPES];
        let mut slots = stripe.lock();
        let same = |slot: &Slot| {
            slot.hash == hash
                && slot.key.len() > prefix.len()
                && slot.key.starts_with(prefix)
                && identity.starts_with(&slot.key[prefix.len() + 1..])
        };
        if let Some(slot) = slots.iter_mut().find(|slot| same(slot)) {
            slot.count = slot.count.saturating_add(1);
            return;
        }
        let text = cut(prefix, identity);
        if slots.len() < self.per_stripe {
            slots.push(Slot {
                hash,
                key: text,
                count: 1,
                error: 0,
            });
            return;
        }
        if let Some(least) = slots.iter_mut().min_by_key(|slot| slot.count) {
            *least = Slot {
                hash,
                key: text,
                count: least.count.saturating_add(1),
                error: least.count,
            };
        }
    }

    /// The `n` keys denied most often, most first.
    pub(super) fn hottest(&self, n: usize) -> Vec<HotKey> {
        let mut all: Vec<HotKey> = self
            .stripes
            .iter()
            .flat_map(|stripe| {
                stripe
                    .lock()
                    .iter()
                    .map(|slot| HotKey {
                        key: slot.key.clone(),
                        denials: slot.count,
                        error: slot.error,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        all.sort_by(|a, b| b.denials.cmp(&a.denials).then_with(|| a.key.cmp(&b.key)));
        all.truncate(n);
        all
    }

    /// Forgets every count.
    pub(super) fn clear(&self) {
        for stripe in self.stripes.iter() {
            stripe.lock().clear();
        }
    }
}

/// `prefix:identity`, cut to [`MAX_KEY_TEXT`] bytes.
fn cut(prefix: &str, identity: &str) -> String {
    let mut text = String::with_capacity((prefix.len() + 1 + identity.len()).min(MAX_KEY_TEXT));
    text.push_str(prefix);
    text.push(':');
    text.push_str(identity);
    let mut end = text.len().min(MAX_KEY_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

#[cfg(test)]
mod tests {
    use traffik_core::Scope;

    use super::*;

    #[test]
    fn the_most_denied_keys_come_first_and_counts_never_undercount() {
        let scope = Scope::new("app", "api").unwrap();
        // Space-Saving finds every key denied more than total / capacity
        // times: here more than 1,075 / 256.
        let hot = HotKeys::new(256);
        for (identity, times) in [("alice", 50), ("bob", 20), ("carol", 5)] {
            for _ in 0..times {
                hot.denied(&Key::new(&scope, identity));
            }
        }
        // A crowd of one-off keys churns the small counters.
        for n in 0..1_000 {
            hot.denied(&Key::new(&scope, &format!("x{n}")));
        }
        let top = hot.hottest(2);
        assert_eq!(top.len(), 2);
        assert!(top[0].key.ends_with("alice"), "{top:?}");
        assert!(top[0].denials >= 50 && top[0].denials - top[0].error <= 50);
        assert!(top[1].key.ends_with("bob"), "{top:?}");
        assert!(top[1].denials >= 20 && top[1].denials - top[1].error <= 20);
        hot.clear();
        assert!(hot.hottest(10).is_empty());
    }

    #[test]
    fn long_identities_are_cut_and_still_counted_as_one() {
        let scope = Scope::new("app", "api").unwrap();
        let hot = HotKeys::new(16);
        let long = "é".repeat(500);
        for _ in 0..3 {
            hot.denied(&Key::new(&scope, &long));
        }
        let top = hot.hottest(5);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].denials, 3);
        assert!(top[0].key.len() <= MAX_KEY_TEXT);
    }
}
