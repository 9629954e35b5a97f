//! The six strategy scripts, built once from `scripts/*.lua`.

use redis::Script;
use traffik_core::{Decision, Error, StrategyKind};

use super::error::bad_reply;

macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("scripts/prelude.lua"), include_str!($file))
    };
    ($file:literal, meter) => {
        concat!(
            include_str!("scripts/prelude.lua"),
            include_str!("scripts/meter.lua"),
            include_str!($file)
        )
    };
}

/// The Lua source of a strategy's script, exactly as sent to Redis (its
/// arguments and reply are described at the top of the source), for audits
/// and for benchmarks that run the same script.
pub fn source(kind: StrategyKind) -> Option<&'static str> {
    Some(match kind {
        StrategyKind::FixedWindow => script!("scripts/fixed_window.lua"),
        StrategyKind::SlidingWindowCounter => script!("scripts/sliding_window_counter.lua"),
        StrategyKind::SlidingWindowLog => script!("scripts/sliding_window_log.lua"),
        StrategyKind::TokenBucket => script!("scripts/token_bucket.lua", meter),
        StrategyKind::LeakyBucket => script!("scripts/leaky_bucket.lua", meter),
        StrategyKind::Gcra => script!("scripts/gcra.lua", meter),
        _ => return None,
    })
}

/// One [`Script`] per strategy (each knows its SHA1 for `EVALSHA`).
pub(super) struct Scripts {
    fixed_window: Script,
    sliding_window_counter: Script,
    sliding_window_log: Script,
    token_bucket: Script,
    leaky_bucket: Script,
    gcra: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        let script = |kind| Script::new(source(kind).unwrap_or_default());
        Scripts {
            fixed_window: script(StrategyKind::FixedWindow),
            sliding_window_counter: script(StrategyKind::SlidingWindowCounter),
            sliding_window_log: script(StrategyKind::SlidingWindowLog),
            token_bucket: script(StrategyKind::TokenBucket),
            leaky_bucket: script(StrategyKind::LeakyBucket),
            gcra: script(StrategyKind::Gcra),
        }
    }

    /// The script of a strategy, if traffik has one for it.
    pub(super) fn get(&self, kind: StrategyKind) -> Option<&Script> {
        Some(match kind {
            StrategyKind::FixedWindow => &self.fixed_window,
            StrategyKind::SlidingWindowCounter => &self.sliding_window_counter,
            StrategyKind::SlidingWindowLog => &self.sliding_window_log,
            StrategyKind::TokenBucket => &self.token_bucket,
            StrategyKind::LeakyBucket => &self.leaky_bucket,
            StrategyKind::Gcra => &self.gcra,
            _ => return None,
        })
    }

    pub(super) fn all(&self) -> [&Script; 6] {
        [
            &self.fixed_window,
            &self.sliding_window_counter,
            &self.sliding_window_log,
            &self.token_bucket,
            &self.leaky_bucket,
            &self.gcra,
        ]
    }
}

/// Turns a script's reply `{allowed, reason, limit, remaining, retry, reset}`
/// into a [`Decision`].
pub(super) fn decision(reply: &[i64]) -> Result<Decision, Error> {
    let &[allowed, reason, limit, remaining, retry, reset] = reply else {
        return Err(bad_reply(reply));
    };
    let number = |n: i64| u64::try_from(n).map_err(|_| bad_reply(reply));
    let (limit, remaining, reset) = (number(limit)?, number(remaining)?, number(reset)?);
    match (allowed, reason) {
        (1, 0) => Ok(Decision::allowed(limit, remaining, reset)),
        (0, 1) => Ok(Decision::denied(limit, remaining, number(retry)?, reset)),
        (0, 2) => Ok(Decision::cost_exceeds_capacity(limit, remaining, reset)),
        _ => Err(bad_reply(reply)),
    }
}
