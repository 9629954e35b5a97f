//! Applying a strategy on memcached, by how the strategy keeps its state
//! ([`Storage`]): counters with one arithmetic command, or a blob with a
//! CAS loop. Nothing here names a strategy.

use std::time::Duration;

use traffik_core::strategy::window_end_ms;
use traffik_core::{Decision, Error, ErrorKind, Limit, Storage};

use tokio::time::Instant;

use super::client::{Reply, command};
use super::pool::Pool;

/// Memcached treats a TTL above 30 days as an absolute UNIX time.
const MAX_RELATIVE_TTL_S: u64 = 30 * 24 * 3_600;

/// One decision's settings.
pub(super) struct Apply<'a> {
    pub(super) pool: &'a Pool,
    pub(super) server: usize,
    /// `namespace:name:{identity}:strategy`, escaped.
    pub(super) base: &'a str,
    pub(super) limit: &'a Limit,
    pub(super) now: u64,
    pub(super) cost: u64,
    pub(super) peek: bool,
    pub(super) ttl_margin_s: u64,
    pub(super) cas_retries: u32,
    /// When the decision must be done: every round trip and every backoff
    /// of its CAS loop fit before it.
    pub(super) until: Instant,
}

/// What an admitted hit wrote, to take it back when a later limit of the
/// same request denies.
pub(super) enum Charge {
    /// Nothing was written (a peek, a denial, a cost of 0).
    None,
    /// `cost` was added to this counter.
    Counter { key: String, cost: u64 },
    /// The blob was `before` (missing: `None`) and is now `after`.
    Blob {
        before: Option<Vec<u8>>,
        after: Vec<u8>,
    },
}

impl Apply<'_> {
    /// One round trip to the key's server, within the decision's deadline.
    async fn exchange(&self, commands: &[u8], replies: usize) -> Result<Vec<Reply>, Error> {
        self.pool
            .exchange_until(self.server, commands, replies, self.until)
            .await
    }

    /// After the `attempt`-th lost race: waits a random time up to
    /// `100 µs · 2^attempt` (capped at 25 ms), full jitter, so racing writers
    /// spread out instead of colliding again. `false` when that wait would
    /// not end before the decision's deadline: the loop gives up.
    async fn back_off(&self, attempt: u32) -> bool {
        let ceiling_us = (100u64 << attempt.min(8)).min(25_000);
        let wait = Duration::from_micros(jitter() % ceiling_us.saturating_add(1));
        let Some(at) = Instant::now().checked_add(wait) else {
            return false;
        };
        if at >= self.until {
            return false;
        }
        tokio::time::sleep_until(at).await;
        true
    }

    pub(super) async fn run(&self) -> Result<Decision, Error> {
        Ok(self.run_charged().await?.0)
    }

    /// The decision, and what it wrote.
    pub(super) async fn run_charged(&self) -> Result<(Decision, Charge), Error> {
        match self.limit.strategy().storage() {
            Storage::Counters { windows } => self.counters(usize::from(windows.max(1))).await,
            Storage::Blob => self.blob().await,
        }
    }

    /// Takes back what an admitted hit wrote: a counter is decremented (exact,
    /// whatever else happened since); a blob is put back as it was when it
    /// still holds what the hit wrote. If another hit changed it since, the
    /// charge stays: the limit is over-charged by one hit, never
    /// under-charged. Returns whether the charge was taken back.
    pub(super) async fn refund(&self, charge: Charge) -> Result<bool, Error> {
        let mut commands = Vec::with_capacity(128);
        match charge {
            Charge::None => Ok(true),
            Charge::Counter { key, cost } => {
                command::decr(&mut commands, &key, cost);
                self.exchange(&commands, 1).await?;
                Ok(true)
            }
            Charge::Blob { before, after } => {
                command::get(&mut commands, self.base, true);
                let replies = self.exchange(&commands, 1).await?;
                let cas = match &replies[0] {
                    Reply::Value {
                        data,
                        cas: Some(cas),
                    } if *data == after => *cas,
                    _ => return Ok(false),
                };
                commands.clear();
                match &before {
                    Some(before) => {
                        // Keep the TTL the key had before the hit would
                        // have been enough: the hit's own is an upper bound.
                        let ttl = self.ttl(self.limit.rate().period_ms().saturating_mul(2));
                        command::set(&mut commands, self.base, before, ttl, Some(cas));
                    }
                    None => command::delete(&mut commands, self.base, Some(cas)),
                }
                let replies = self.exchange(&commands, 1).await?;
                Ok(matches!(replies[0], Reply::Done))
            }
        }
    }

    /// Gives back `self.cost` that a hit admitted at `charged` took
    /// ([`Backend::refund`](traffik_core::Backend::refund)). Counters: the
    /// counter of the charge's window is decremented while the strategy
    /// still counts that window (memcached stops a decrement at 0). A blob:
    /// the strategy's refund in a CAS loop, like a hit.
    pub(super) async fn give_back(&self, charged: u64) -> Result<(), Error> {
        let period = self.limit.rate().period_ms();
        match self.limit.strategy().storage() {
            Storage::Counters { windows } => {
                let end = window_end_ms(charged, period);
                // The last window that still counts the charge ends here.
                let counted_until =
                    end.saturating_add(u64::from(windows.max(1) - 1).saturating_mul(period));
                if counted_until <= self.now && counted_until != u64::MAX {
                    return Ok(());
                }
                let mut commands = Vec::with_capacity(128);
                command::decr(&mut commands, &format!("{}:{end}", self.base), self.cost);
                self.exchange(&commands, 1).await?;
                Ok(())
            }
            Storage::Blob => self.give_back_blob(charged).await,
        }
    }

    async fn give_back_blob(&self, charged: u64) -> Result<(), Error> {
        let strategy = self.limit.strategy();
        let rate = self.limit.rate();
        let mut commands = Vec::with_capacity(256);
        let mut encoded = Vec::with_capacity(64);
        for attempt in 0..=self.cas_retries {
            if attempt > 0 && !self.back_off(attempt).await {
                break;
            }
            commands.clear();
            command::get(&mut commands, self.base, true);
            let replies = self.exchange(&commands, 1).await?;
            let (stored, cas) = match &replies[0] {
                Reply::Value { data, cas } => (data.as_slice(), *cas),
                Reply::Missing => return Ok(()),
                other => return Err(unexpected(other, "mg")),
            };
            let changed = strategy
                .refund_encoded(
                    rate,
                    Some(stored),
                    self.now,
                    charged,
                    self.cost,
                    &mut encoded,
                )
                .map_err(|error| Error::new(ErrorKind::Protocol, "memcached").with_source(error))?;
            if !changed {
                return Ok(());
            }
            let (ttl, _) = strategy
                .hit_encoded(rate, Some(&encoded), self.now, 0, true, &mut Vec::new())
                .map_err(|error| Error::new(ErrorKind::Protocol, "memcached").with_source(error))?;
            commands.clear();
            let ttl = self.ttl(ttl.reset_after_ms());
            command::set(&mut commands, self.base, &encoded, ttl, cas);
            let replies = self.exchange(&commands, 1).await?;
            match replies[0] {
                Reply::Done => return Ok(()),
                Reply::Conflict => continue,
                Reply::Missing => return Ok(()),
                ref other => return Err(unexpected(other, "ms")),
            }
        }
        Err(self.contended("a refund"))
    }

    /// The error of a CAS loop whose every try lost the race, or whose
    /// deadline came first.
    fn contended(&self, what: &str) -> Error {
        let shown: String = self.base.chars().take(64).collect();
        Error::new(
            ErrorKind::Contention,
            format!(
                "{} writers kept racing on {shown}; {what} gave up (at most {} tries within its \
                 deadline)",
                self.limit.strategy().kind(),
                self.cas_retries.saturating_add(1)
            ),
        )
    }

    /// Seconds to keep an item whose state is as good as new after `ms`,
    /// as memcached wants them (absolute past 30 days), on the caller's clock.
    fn ttl(&self, ms: u64) -> u64 {
        let seconds = ms.div_ceil(1_000).saturating_add(self.ttl_margin_s).max(1);
        if seconds > MAX_RELATIVE_TTL_S {
            (self.now / 1_000).saturating_add(seconds)
        } else {
            seconds
        }
    }

    /// Counters: the windows' counters read in one round trip (`mg` each),
    /// the newest incremented by the cost in the same write (`ma`, which
    /// makes it with its TTL when new). The strategy decides on the counts
    /// as they were before the hit; a denied hit takes its cost back. A cost
    /// above the capacity, or a peek, only reads: no counter can wrap.
    async fn counters(&self, windows: usize) -> Result<(Decision, Charge), Error> {
        let rate = self.limit.rate();
        let period = rate.period_ms();
        let end = window_end_ms(self.now, period);
        let key = |i: usize| {
            let back = (windows - 1 - i) as u64;
            format!(
                "{}:{}",
                self.base,
                end.saturating_sub(back.saturating_mul(period))
            )
        };
        let counting = !self.peek && self.cost > 0 && self.cost <= self.limit.capacity();
        let mut commands = Vec::with_capacity(64 * windows);
        for i in 0..windows - 1 {
            command::get(&mut commands, &key(i), false);
        }
        let newest = key(windows - 1);
        if counting {
            // The newest counter counts until the last window it is part of ends.
            let ttl = end
                .saturating_add(((windows - 1) as u64).saturating_mul(period))
                .saturating_sub(self.now);
            command::incr(&mut commands, &newest, self.cost, self.ttl(ttl));
        } else {
            command::get(&mut commands, &newest, false);
        }
        let replies = self.exchange(&commands, windows).await?;
        let mut counts = replies
            .iter()
            .map(counter)
            .collect::<Result<Vec<u64>, _>>()?;
        if counting {
            if let Some(last) = counts.last_mut() {
                *last = last.saturating_sub(self.cost);
            }
        }
        let decision = self
            .limit
            .strategy()
            .decide_on_counters(rate, self.now, &counts, self.cost, !counting);
        if counting && !decision.is_allowed() {
            let mut take_back = Vec::with_capacity(64);
            command::decr(&mut take_back, &newest, self.cost);
            self.exchange(&take_back, 1).await?;
        }
        let charge = if counting && decision.is_allowed() {
            Charge::Counter {
                key: newest,
                cost: self.cost,
            }
        } else {
            Charge::None
        };
        Ok((decision, charge))
    }

    /// A blob: `mg` with its CAS token, the strategy on the decoded state,
    /// and `ms` with the token (or in add mode when there was none). Another
    /// writer in between makes the store fail, and the loop starts over from
    /// the new state: no update is ever lost. Denials write nothing.
    async fn blob(&self) -> Result<(Decision, Charge), Error> {
        let strategy = self.limit.strategy();
        let mut commands = Vec::with_capacity(256);
        let mut encoded = Vec::with_capacity(64);
        for attempt in 0..=self.cas_retries {
            if attempt > 0 && !self.back_off(attempt).await {
                break;
            }
            commands.clear();
            command::get(&mut commands, self.base, true);
            let replies = self.exchange(&commands, 1).await?;
            let (stored, cas) = match &replies[0] {
                Reply::Value { data, cas } => (Some(data.as_slice()), *cas),
                Reply::Missing => (None, None),
                other => return Err(unexpected(other, "mg")),
            };
            let (decision, changed) = strategy
                .hit_encoded(
                    self.limit.rate(),
                    stored,
                    self.now,
                    self.cost,
                    self.peek,
                    &mut encoded,
                )
                .map_err(|error| Error::new(ErrorKind::Protocol, "memcached").with_source(error))?;
            if !changed {
                return Ok((decision, Charge::None));
            }
            commands.clear();
            let ttl = self.ttl(decision.reset_after_ms());
            command::set(&mut commands, self.base, &encoded, ttl, cas);
            let replies = self.exchange(&commands, 1).await?;
            match replies[0] {
                Reply::Done => {
                    let charge = Charge::Blob {
                        before: stored.map(<[u8]>::to_vec),
                        after: encoded.clone(),
                    };
                    return Ok((decision, charge));
                }
                Reply::Conflict | Reply::Missing => continue,
                ref other => return Err(unexpected(other, "ms")),
            }
        }
        Err(self.contended("a hit"))
    }
}

fn unexpected(reply: &Reply, to: &str) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("unexpected reply {reply:?} to {to}"),
    )
}

/// A counter's value (0 when missing).
fn counter(reply: &Reply) -> Result<u64, Error> {
    match reply {
        Reply::Value { data, .. } => std::str::from_utf8(data)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Protocol,
                    "a traffik counter in memcached is not a number",
                )
            }),
        Reply::Missing => Ok(0),
        other => Err(unexpected(other, "a counter read")),
    }
}

/// A random number: a fresh `RandomState`'s keys are drawn per call (from a
/// per-thread random seed, advanced each time), enough to jitter backoffs.
fn jitter() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}
