//! [`Feedback`]: what an upstream's response says about its limit.
//!
//! | field | forms read | gives |
//! |---|---|---|
//! | `Retry-After` | seconds; HTTP-date (IMF-fixdate, RFC 850, asctime) | [`retry_after`](Feedback::retry_after) |
//! | `RateLimit` (IETF draft, structured fields) | `"name";r=…;t=…` members; the older `limit=…, remaining=…, reset=…` | [`remaining`](Feedback::remaining), [`reset`](Feedback::reset) |
//! | `RateLimit-Policy` | `"name";q=…;w=…` members; the older `100;w=60` | [`limit`](Feedback::limit), [`window`](Feedback::window) |
//! | `X-RateLimit-Limit`, `-Remaining`, `-Reset` (and `RateLimit-Limit`, `-Remaining`, `-Reset`) | integers; a reset that is a UNIX time in seconds | the same |
//!
//! With several policies in one field, the most restrictive wins: the
//! least remaining, and of those with none left, the longest reset.
//! Headers come from the upstream, so nothing here trusts them: a value
//! that does not parse is ignored, numbers saturate, and at most 16 members
//! of a field are read.

use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};

/// The most members of one field that are read.
const MAX_MEMBERS: usize = 16;
/// The most bytes of one field that are read.
const MAX_FIELD: usize = 1024;
/// A reset of at least this many seconds is a UNIX time, not a delay (the
/// legacy `X-RateLimit-Reset` is either, by upstream).
const EPOCH_SECONDS: u64 = 1_000_000_000;

/// What one response says about the upstream's limit. Every field is
/// `None` when the response does not say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Feedback {
    /// `Retry-After`: how long to wait before the next request.
    pub retry_after: Option<Duration>,
    /// Requests (quota units) left in the current window.
    pub remaining: Option<u64>,
    /// When the quota is full again.
    pub reset: Option<Duration>,
    /// The quota per window.
    pub limit: Option<u64>,
    /// The window of the quota.
    pub window: Option<Duration>,
}

impl Feedback {
    /// Reads the fields of `headers`; `now_ms` (milliseconds since the
    /// UNIX epoch) turns an HTTP-date or a UNIX time into a wait.
    pub fn parse(headers: &HeaderMap, now_ms: u64) -> Feedback {
        // One pass over the headers (a response has few) instead of a
        // lookup per field: most responses carry none of these.
        let (mut retry, mut quota, mut policy) = (None, None, None);
        let mut legacy: [[Option<&HeaderValue>; 3]; 2] = [[None; 3]; 2];
        for (name, value) in headers {
            let slot = match name.as_str() {
                "retry-after" => &mut retry,
                "ratelimit" => &mut quota,
                "ratelimit-policy" => &mut policy,
                "x-ratelimit-limit" => &mut legacy[0][0],
                "x-ratelimit-remaining" => &mut legacy[0][1],
                "x-ratelimit-reset" => &mut legacy[0][2],
                "ratelimit-limit" => &mut legacy[1][0],
                "ratelimit-remaining" => &mut legacy[1][1],
                "ratelimit-reset" => &mut legacy[1][2],
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        let mut feedback = Feedback {
            retry_after: retry.and_then(|v| retry_after(v.as_bytes(), now_ms)),
            ..Feedback::default()
        };
        if let Some(value) = quota {
            feedback.quota(value.as_bytes());
        }
        if let Some(value) = policy {
            feedback.policy(value.as_bytes());
        }
        for [limit, remaining, reset] in legacy {
            let number = |v: Option<&HeaderValue>| v.and_then(|v| integer(v.as_bytes()));
            if feedback.remaining.is_none() {
                feedback.remaining = number(remaining);
                feedback.reset = number(reset).map(|s| reset_delay(s, now_ms));
            }
            if feedback.limit.is_none() {
                feedback.limit = number(limit);
            }
        }
        feedback
    }

    /// How long the upstream asks every caller to hold off, if it does:
    /// `Retry-After`, or else the reset of a quota with nothing remaining.
    pub fn hold_off(&self) -> Option<Duration> {
        self.retry_after.or(match self.remaining {
            Some(0) => self.reset.filter(|r| !r.is_zero()),
            _ => None,
        })
    }

    /// `RateLimit`: the most restrictive of its members.
    fn quota(&mut self, field: &[u8]) {
        let mut loose_remaining = None;
        let mut loose_reset = None;
        for member in members(field) {
            let (mut remaining, mut reset) = (None, None);
            for (key, value) in params(member) {
                match key {
                    "r" => remaining = integer(value),
                    "t" => reset = integer(value),
                    "remaining" => loose_remaining = integer(value),
                    "reset" => loose_reset = integer(value),
                    _ => {}
                }
            }
            if let Some(r) = remaining {
                self.tighten(r, reset.map(Duration::from_secs));
            }
        }
        if let Some(r) = loose_remaining {
            self.tighten(r, loose_reset.map(Duration::from_secs));
        }
    }

    fn tighten(&mut self, remaining: u64, reset: Option<Duration>) {
        match self.remaining {
            Some(known) if known < remaining => {}
            Some(known) if known == remaining => {
                self.reset = self.reset.max(reset);
            }
            _ => {
                self.remaining = Some(remaining);
                self.reset = reset;
            }
        }
    }

    /// `RateLimit-Policy`: the smallest quota of its members.
    fn policy(&mut self, field: &[u8]) {
        for member in members(field) {
            let mut limit = None;
            let mut window = None;
            for (index, (key, value)) in params(member).enumerate() {
                match key {
                    "q" | "limit" => limit = integer(value),
                    "w" => window = integer(value).map(Duration::from_secs),
                    // The older form: the quota is the member's bare item.
                    "" if index == 0 => limit = integer(value),
                    _ => {}
                }
            }
            if let Some(q) = limit {
                if self.limit.is_none_or(|known| q < known) {
                    self.limit = Some(q);
                    self.window = window;
                }
            }
        }
    }
}

/// The members of a list field (at most [`MAX_MEMBERS`] of its first
/// [`MAX_FIELD`] bytes), as text; a field that is not text has none.
fn members(field: &[u8]) -> impl Iterator<Item = &str> {
    let field = &field[..field.len().min(MAX_FIELD)];
    std::str::from_utf8(field)
        .unwrap_or("")
        .split(',')
        .take(MAX_MEMBERS)
}

/// A member's item and parameters as `(key, value)`: the bare item comes
/// with key `""`, a parameter without a value with value `"?1"`.
fn params(member: &str) -> impl Iterator<Item = (&str, &str)> {
    member.split(';').take(MAX_MEMBERS).map(|part| {
        let part = part.trim();
        match part.split_once('=') {
            Some((key, value)) => (key.trim(), value.trim().trim_matches('"')),
            None => ("", part.trim_matches('"')),
        }
    })
}

/// A non-negative integer of at most 19 digits.
fn integer(text: impl AsRef<[u8]>) -> Option<u64> {
    let text = text.as_ref().trim_ascii();
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// `Retry-After`: delay seconds, or an HTTP-date (a date in the past is no
/// wait).
fn retry_after(value: &[u8], now_ms: u64) -> Option<Duration> {
    if let Some(seconds) = integer(value) {
        return Some(Duration::from_secs(seconds));
    }
    let text = std::str::from_utf8(value.get(..value.len().min(64))?).ok()?;
    let at = httpdate::parse_http_date(text.trim()).ok()?;
    let at_ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Some(Duration::from_millis(at_ms.saturating_sub(now_ms)))
}

/// A legacy reset: seconds from now, or a UNIX time in seconds.
fn reset_delay(seconds: u64, now_ms: u64) -> Duration {
    if seconds >= EPOCH_SECONDS {
        let now = now_ms / 1000;
        Duration::from_secs(seconds.saturating_sub(now))
    } else {
        Duration::from_secs(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn retry_after_in_seconds_and_as_an_http_date() {
        let seconds = Feedback::parse(&headers(&[("retry-after", "7")]), NOW);
        assert_eq!(seconds.retry_after, Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(NOW + 90_000));
        let dated = Feedback::parse(&headers(&[("retry-after", &date)]), NOW);
        assert_eq!(dated.retry_after, Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1));
        let past = Feedback::parse(&headers(&[("retry-after", &past)]), NOW);
        assert_eq!(past.retry_after, Some(Duration::ZERO));
        let junk = Feedback::parse(&headers(&[("retry-after", "soon")]), NOW);
        assert_eq!(junk.retry_after, None);
    }

    #[test]
    fn the_ietf_fields_as_traffik_axum_writes_them() {
        let feedback = Feedback::parse(
            &headers(&[
                ("ratelimit-policy", r#""burst";q=10;w=1, "api";q=100;w=60"#),
                ("ratelimit", r#""burst";r=9;t=1, "api";r=0;t=5"#),
            ]),
            NOW,
        );
        assert_eq!(feedback.remaining, Some(0));
        assert_eq!(feedback.reset, Some(Duration::from_secs(5)));
        assert_eq!(feedback.limit, Some(10));
        assert_eq!(feedback.window, Some(Duration::from_secs(1)));
        assert_eq!(feedback.hold_off(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn the_older_draft_and_the_legacy_trio() {
        let older = Feedback::parse(
            &headers(&[
                ("ratelimit", "limit=100, remaining=3, reset=20"),
                ("ratelimit-policy", "100;w=60"),
            ]),
            NOW,
        );
        assert_eq!(older.remaining, Some(3));
        assert_eq!(older.reset, Some(Duration::from_secs(20)));
        assert_eq!(
            (older.limit, older.window),
            (Some(100), Some(Duration::from_secs(60)))
        );
        assert_eq!(older.hold_off(), None);

        let legacy = Feedback::parse(
            &headers(&[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "0"),
                // GitHub's form: a UNIX time.
                ("x-ratelimit-reset", &(NOW / 1000 + 42).to_string()),
            ]),
            NOW,
        );
        assert_eq!(legacy.limit, Some(5000));
        assert_eq!(legacy.hold_off(), Some(Duration::from_secs(42)));
    }

    #[test]
    fn retry_after_comes_before_the_quota() {
        let feedback = Feedback::parse(
            &headers(&[("retry-after", "2"), ("ratelimit", r#""a";r=0;t=9"#)]),
            NOW,
        );
        assert_eq!(feedback.hold_off(), Some(Duration::from_secs(2)));
    }

    proptest! {
        // Any bytes an upstream sends parse without panic, and a wait is
        // never read out of numbers that overflow.
        #[test]
        fn any_header_bytes_parse(
            value in proptest::collection::vec(any::<u8>(), 0..200),
            now in any::<u64>(),
        ) {
            let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            let mut map = HeaderMap::new();
            for name in ["retry-after", "ratelimit", "ratelimit-policy", "x-ratelimit-reset", "x-ratelimit-remaining"] {
                map.insert(name, value.clone());
            }
            let _ = Feedback::parse(&map, now).hold_off();
        }

        #[test]
        fn delay_seconds_round_trip(seconds in 0u64..10_000_000_000_000_000_000) {
            let map = headers(&[("retry-after", &seconds.to_string())]);
            prop_assert_eq!(Feedback::parse(&map, NOW).retry_after, Some(Duration::from_secs(seconds)));
        }
    }
}
