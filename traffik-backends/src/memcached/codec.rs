//! The stateful strategies' states as the bytes stored in memcached.

use traffik_core::strategy::{
    GcraState, LeakyBucketState, SlidingWindowLogState, TokenBucketState,
};

/// A state that round-trips through text.
pub(super) trait Codec: Sized {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Option<Self>;
}

fn pair(bytes: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (a, b) = text.split_once(' ')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Codec for TokenBucketState {
    fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.taken, self.updated_ms).into_bytes()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (taken, updated_ms) = pair(bytes)?;
        Some(TokenBucketState { taken, updated_ms })
    }
}

impl Codec for LeakyBucketState {
    fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.level, self.leaked_ms).into_bytes()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (level, leaked_ms) = pair(bytes)?;
        Some(LeakyBucketState { level, leaked_ms })
    }
}

impl Codec for GcraState {
    fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.tat_ms, self.tat_frac).into_bytes()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (tat_ms, tat_frac) = pair(bytes)?;
        Some(GcraState { tat_ms, tat_frac })
    }
}

/// `at:cost at:cost …`, oldest first; the total is their sum.
impl Codec for SlidingWindowLogState {
    fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.entries.len() * 18);
        for (at, cost) in &self.entries {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&format!("{at}:{cost}"));
        }
        out.into_bytes()
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut state = SlidingWindowLogState::default();
        for entry in text.split(' ').filter(|e| !e.is_empty()) {
            let (at, cost) = entry.split_once(':')?;
            let cost: u64 = cost.parse().ok()?;
            state.entries.push_back((at.parse().ok()?, cost));
            state.total = state.total.checked_add(cost)?;
        }
        Some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        let gcra = GcraState {
            tat_ms: 1_700_000_000_123,
            tat_frac: 7,
        };
        assert_eq!(GcraState::decode(&gcra.encode()), Some(gcra));
        let mut log = SlidingWindowLogState::default();
        log.entries.extend([(10, 2), (15, 1)]);
        log.total = 3;
        assert_eq!(SlidingWindowLogState::decode(&log.encode()), Some(log));
        assert_eq!(
            SlidingWindowLogState::decode(b""),
            Some(SlidingWindowLogState::default())
        );
        assert_eq!(TokenBucketState::decode(b"12 x"), None);
    }
}
