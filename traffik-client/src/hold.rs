//! [`Hold`]: "hold off until" in a traffik store, for every process that
//! shares it, checked in the same atomic call as a limit's hit.
//!
//! A hold is one GCRA key. Setting it for `d` is one hit of "1 per `d`,
//! burst 1": its arrival time becomes now + `d`. Checking it is a hit of
//! cost 1 under "1 000 000 per ms, burst 1 000": admitted while the
//! arrival time is at most a microsecond ahead, so a check moves it by a
//! nanosecond, and only a thousand checks within one millisecond could
//! hold each other off. Checked beside the limit's key in one
//! [`Backend::hit_all`] (all or nothing), a hold costs no round trip of
//! its own: a held call is refused before the limit is charged.
//!
//! A check's denial says only "held" (its wait is capped by its small
//! burst); how long is one peek under the same rate with a burst of 2⁵⁰
//! units (13 days) and a cost that passes only when nothing is held.

use std::time::Duration;

use traffik_backends::AnyBackend;
use traffik_core::{Backend, ConfigError, Error, Gcra, Hit, Key, Limit, Rate, Scope};

/// A hold in a store, under one scope.
#[derive(Debug)]
pub(crate) struct Hold {
    scope: Scope,
    check: Limit,
    read: Limit,
}

/// The read limit's burst, in units of a millionth of a millisecond.
const READ_BURST: u64 = 1 << 50;
/// The check's tolerance: what a read allows ahead.
const TOLERANCE: u64 = 1_000;

impl Hold {
    /// The hold of `name`'s keys in `namespace`. With `fallback`, its check
    /// has a fallback limiter too (the whole check, in memory), so that a
    /// limit with a fallback still has one when both are decided together
    /// (a combined decision falls back only when each of its limits can).
    pub(crate) fn new(namespace: &str, name: &str, fallback: bool) -> Result<Hold, ConfigError> {
        let rate = Rate::new(1_000_000, Duration::from_millis(1))
            .map_err(|e| ConfigError::new(e.to_string()))?;
        let burst =
            |units: u64| Gcra::with_burst(units.try_into().unwrap_or(std::num::NonZeroU64::MIN));
        Ok(Hold {
            scope: Scope::new(namespace, &format!("{name}.hold"))?,
            check: {
                let check = Limit::new(rate, burst(TOLERANCE))?;
                if fallback {
                    check.with_fallback(std::num::NonZeroU32::MIN)
                } else {
                    check
                }
            },
            read: Limit::new(rate, burst(READ_BURST))?,
        })
    }

    fn key<'a>(&'a self, identity: &'a str) -> Key<'a> {
        // Tagged by the identity, as the limit's key is: one slot in a
        // Redis Cluster, so one script decides both.
        Key::with_tag(&self.scope, identity, identity.len())
    }

    /// The check of `identity`'s hold, to decide beside a limit's hit.
    pub(crate) fn check<'a>(&'a self, identity: &'a str) -> Hit<'a> {
        Hit {
            key: self.key(identity),
            limit: &self.check,
            cost: 1,
        }
    }

    /// Holds `identity` off for `hold` from `now_ms` (replacing a hold in
    /// place).
    pub(crate) async fn set(
        &self,
        backend: &AnyBackend,
        identity: &str,
        now_ms: u64,
        hold: Duration,
    ) -> Result<(), Error> {
        let step = Limit::block(hold.max(Duration::from_millis(1)))
            .map_err(|e| Error::new(traffik_core::ErrorKind::Config, e.to_string()))?;
        backend
            .reset(self.key(identity), &self.check, now_ms)
            .await?;
        backend
            .hit(self.key(identity), &step, now_ms, 1)
            .await
            .map(|_| ())
    }

    /// How long `identity` is held off, `None` when it is not.
    pub(crate) async fn left(
        &self,
        backend: &AnyBackend,
        identity: &str,
        now_ms: u64,
    ) -> Result<Option<Duration>, Error> {
        let decision = backend
            .peek(
                self.key(identity),
                &self.read,
                now_ms,
                READ_BURST - TOLERANCE,
            )
            .await?;
        Ok((!decision.is_allowed()).then(|| Duration::from_millis(decision.retry_after_ms())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use traffik_backends::memory::MemoryBackend;

    #[tokio::test]
    async fn a_hold_refuses_the_limit_beside_it_until_it_ends() {
        let backend = AnyBackend::Memory(MemoryBackend::new());
        let hold = Hold::new("ns", "up", false).unwrap();
        let limit = Limit::new("1000000/s".parse().unwrap(), Gcra::new()).unwrap();
        let scope = Scope::new("ns", "up").unwrap();
        let main = || Hit {
            key: Key::new(&scope, "calls"),
            limit: &limit,
            cost: 1,
        };
        let now = 1_000_000;
        for at in 0..500 {
            let both = backend
                .hit_all(vec![main(), hold.check("calls")], now + at / 100)
                .await
                .unwrap();
            assert!(
                both.iter().all(|d| d.is_allowed()),
                "checks never hold each other off"
            );
        }
        hold.set(&backend, "calls", now + 10, Duration::from_secs(2))
            .await
            .unwrap();
        let both = backend
            .hit_all(vec![main(), hold.check("calls")], now + 20)
            .await
            .unwrap();
        assert!(!both[1].is_allowed(), "held");
        assert!(both[0].is_allowed(), "the limit would have passed");
        let after = backend
            .hit_all(vec![main(), hold.check("calls")], now + 20)
            .await
            .unwrap();
        assert_eq!(
            after[0].remaining(),
            both[0].remaining(),
            "a held call charged nothing"
        );
        assert_eq!(
            hold.left(&backend, "calls", now + 1_010).await.unwrap(),
            Some(Duration::from_millis(1_000))
        );
        assert_eq!(
            hold.left(&backend, "calls", now + 2_011).await.unwrap(),
            None
        );
    }
}
