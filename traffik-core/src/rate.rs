//! [`Rate`]: how many hits per period.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{RateError, RateErrorKind};

/// The largest `count × period_ms` a [`Rate`] may have.
///
/// Every strategy computes in whole units of `1 / count` of a millisecond or
/// `1 / period` of a hit, and the Redis scripts do the same arithmetic in Lua,
/// whose numbers are exact integers only up to 2^53. Capping the product at
/// 2^51 keeps every intermediate value exact in both, with headroom. In practice:
/// up to 26 million per day, 625 million per hour, 37 billion per minute.
pub const MAX_RATE_PRODUCT: u64 = 1 << 51;

const MS_PER_SECOND: u64 = 1_000;
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;

/// A rate: at most `count` hits per `period`.
///
/// A `Rate` always holds a non-zero count and a non-zero period of whole
/// milliseconds, and `count × period_ms` never exceeds [`MAX_RATE_PRODUCT`], so
/// every strategy can compute with it exactly.
///
/// Parse one from a string, or build one with the `const` constructors:
///
/// ```
/// use std::num::NonZeroU64;
/// use std::time::Duration;
/// use traffik_core::Rate;
///
/// let api: Rate = "100/min".parse()?;
/// assert_eq!(api.count(), 100);
/// assert_eq!(api.period(), Duration::from_secs(60));
///
/// let login: Rate = "5 per 2 seconds".parse()?;
/// assert_eq!(login.to_string(), "5/2s");
///
/// const BURSTY: Rate = Rate::per_second(NonZeroU64::new(10).unwrap());
/// assert_eq!(BURSTY, "10/s".parse()?);
/// # Ok::<(), traffik_core::RateError>(())
/// ```
///
/// Accepted forms: `<count>/<period>` or `<count> per <period>`, where
/// `<period>` is an optional whole multiplier followed by a unit: `ms`,
/// `s`/`sec`/`second(s)`, `m`/`min`/`minute(s)`, `h`/`hr`/`hour(s)`,
/// `d`/`day(s)`. Examples: `100/min`, `1000/minute`, `10/500ms`, `5/2s`,
/// `100 per hour`, `2/day`.
///
/// [`Display`](fmt::Display) writes the canonical short form (`100/min`,
/// `10/500ms`, `5/2s`, `7/h`, `2/d`), which parses back to the same rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    count: NonZeroU64,
    period_ms: NonZeroU64,
    /// `count / gcd(count, period_ms)`, computed once.
    reduced_count: NonZeroU64,
    /// `period_ms / gcd(count, period_ms)`, computed once.
    reduced_period_ms: NonZeroU64,
}

const fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Rate {
    /// `count` hits per second.
    ///
    /// # Panics
    ///
    /// In a `const` context, fails to compile when the rate exceeds
    /// [`MAX_RATE_PRODUCT`]; at run time it panics then. Use [`Rate::new`]
    /// for values that come from input.
    pub const fn per_second(count: NonZeroU64) -> Rate {
        Rate::per_period_ms(count, MS_PER_SECOND)
    }

    /// `count` hits per minute. Panics like [`Rate::per_second`].
    pub const fn per_minute(count: NonZeroU64) -> Rate {
        Rate::per_period_ms(count, MS_PER_MINUTE)
    }

    /// `count` hits per hour. Panics like [`Rate::per_second`].
    pub const fn per_hour(count: NonZeroU64) -> Rate {
        Rate::per_period_ms(count, MS_PER_HOUR)
    }

    /// `count` hits per day. Panics like [`Rate::per_second`].
    pub const fn per_day(count: NonZeroU64) -> Rate {
        Rate::per_period_ms(count, MS_PER_DAY)
    }

    const fn per_period_ms(count: NonZeroU64, period_ms: u64) -> Rate {
        match Rate::from_parts(count.get(), period_ms) {
            Ok(rate) => rate,
            Err(_) => panic!("rate too large: count × period in ms exceeds 2^51"),
        }
    }

    /// `count` hits per `period`, checked.
    ///
    /// # Errors
    ///
    /// When `count` is zero, `period` is shorter than a millisecond or not a
    /// whole number of milliseconds, or the rate exceeds [`MAX_RATE_PRODUCT`].
    pub fn new(count: u64, period: Duration) -> Result<Rate, RateError> {
        if period.subsec_nanos() % 1_000_000 != 0 {
            return Err(RateError::new(RateErrorKind::Fraction));
        }
        let period_ms = u64::try_from(period.as_millis())
            .map_err(|_| RateError::new(RateErrorKind::Overflow))?;
        Rate::from_parts(count, period_ms).map_err(RateError::new)
    }

    const fn from_parts(count: u64, period_ms: u64) -> Result<Rate, RateErrorKind> {
        let Some(count) = NonZeroU64::new(count) else {
            return Err(RateErrorKind::ZeroCount);
        };
        let Some(period_ms) = NonZeroU64::new(period_ms) else {
            return Err(RateErrorKind::ZeroPeriod);
        };
        let Some(product) = count.get().checked_mul(period_ms.get()) else {
            return Err(RateErrorKind::TooLarge);
        };
        if product > MAX_RATE_PRODUCT {
            return Err(RateErrorKind::TooLarge);
        }
        let divisor = gcd(count.get(), period_ms.get());
        match (
            NonZeroU64::new(count.get() / divisor),
            NonZeroU64::new(period_ms.get() / divisor),
        ) {
            (Some(reduced_count), Some(reduced_period_ms)) => Ok(Rate {
                count,
                period_ms,
                reduced_count,
                reduced_period_ms,
            }),
            _ => Err(RateErrorKind::ZeroCount),
        }
    }

    /// How many hits the rate allows per period.
    pub const fn count(&self) -> u64 {
        self.count.get()
    }

    /// The period in milliseconds.
    pub const fn period_ms(&self) -> u64 {
        self.period_ms.get()
    }

    /// The count and the period in ms, both divided by their greatest
    /// common divisor: `100/min` is 5 hits per 3,000 ms. The bucket
    /// strategies count in these units, which keeps them exact and small.
    pub const fn reduced(&self) -> (u64, u64) {
        (self.reduced_count.get(), self.reduced_period_ms.get())
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms.get())
    }
}

/// Units in the order `Display` prefers them: the largest that divides the
/// period exactly wins.
const DISPLAY_UNITS: [(u64, &str); 5] = [
    (MS_PER_DAY, "d"),
    (MS_PER_HOUR, "h"),
    (MS_PER_MINUTE, "min"),
    (MS_PER_SECOND, "s"),
    (1, "ms"),
];

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = self.period_ms();
        let (unit_ms, unit) = DISPLAY_UNITS
            .iter()
            .copied()
            .find(|(unit_ms, _)| period % unit_ms == 0)
            .unwrap_or((1, "ms"));
        let multiplier = period / unit_ms;
        if multiplier == 1 {
            write!(f, "{}/{unit}", self.count())
        } else {
            write!(f, "{}/{multiplier}{unit}", self.count())
        }
    }
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(input: &str) -> Result<Rate, RateError> {
        parse(input).map_err(RateError::new)
    }
}

fn parse(input: &str) -> Result<Rate, RateErrorKind> {
    let input = input.trim();
    if input.is_empty() {
        return Err(RateErrorKind::Empty);
    }
    let (count, period) = match input.split_once('/') {
        Some(parts) => parts,
        None => split_per(input).ok_or(RateErrorKind::MissingSeparator)?,
    };
    let count = parse_whole(count.trim(), RateErrorKind::InvalidCount)?;
    let period_ms = parse_period(period.trim())?;
    Rate::from_parts(count, period_ms)
}

/// Splits `"5 per 2 seconds"` at the word `per` (any case, surrounded by spaces).
fn split_per(input: &str) -> Option<(&str, &str)> {
    let lower = input.to_ascii_lowercase();
    let at = lower.find(" per ")?;
    Some((&input[..at], &input[at + " per ".len()..]))
}

/// Parses a whole, unsigned decimal number; tells fractions and overflow apart
/// from garbage.
fn parse_whole(text: &str, invalid: RateErrorKind) -> Result<u64, RateErrorKind> {
    if text.is_empty() {
        return Err(invalid);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| RateErrorKind::Overflow);
    }
    let looks_fractional = text
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
        && text.bytes().any(|b| b.is_ascii_digit());
    if looks_fractional {
        Err(RateErrorKind::Fraction)
    } else {
        Err(invalid)
    }
}

fn parse_period(text: &str) -> Result<u64, RateErrorKind> {
    if text.is_empty() {
        return Err(RateErrorKind::MissingUnit);
    }
    let unit_start = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(unit_start);
    let multiplier = if number.is_empty() {
        1
    } else {
        parse_whole(number, RateErrorKind::InvalidPeriod)?
    };
    let unit = unit.trim();
    if unit.is_empty() {
        return Err(RateErrorKind::MissingUnit);
    }
    let unit_ms = unit_ms(&unit.to_ascii_lowercase()).ok_or(RateErrorKind::UnknownUnit)?;
    multiplier
        .checked_mul(unit_ms)
        .ok_or(RateErrorKind::Overflow)
}

fn unit_ms(unit: &str) -> Option<u64> {
    Some(match unit {
        "ms" | "msec" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => MS_PER_SECOND,
        "m" | "min" | "mins" | "minute" | "minutes" => MS_PER_MINUTE,
        "h" | "hr" | "hrs" | "hour" | "hours" => MS_PER_HOUR,
        "d" | "day" | "days" => MS_PER_DAY,
        _ => return None,
    })
}

#[cfg(feature = "serde")]
mod serde_impl {
    use super::Rate;
    use serde::de::{self, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::fmt;

    impl Serialize for Rate {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    impl<'de> Deserialize<'de> for Rate {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Rate, D::Error> {
            struct RateVisitor;
            impl Visitor<'_> for RateVisitor {
                type Value = Rate;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a rate such as \"100/min\" or \"5 per 2 seconds\"")
                }
                fn visit_str<E: de::Error>(self, value: &str) -> Result<Rate, E> {
                    value.parse().map_err(E::custom)
                }
            }
            deserializer.deserialize_str(RateVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u64, period_ms: u64) -> Rate {
        Rate::from_parts(count, period_ms).unwrap()
    }

    #[test]
    fn parses_every_documented_form() {
        let cases = [
            ("100/min", rate(100, 60_000)),
            ("1000/minute", rate(1000, 60_000)),
            ("10/500ms", rate(10, 500)),
            ("5/2s", rate(5, 2_000)),
            ("5 per 2 seconds", rate(5, 2_000)),
            ("100 per hour", rate(100, 3_600_000)),
            ("2/day", rate(2, 86_400_000)),
            ("3/d", rate(3, 86_400_000)),
            ("7 / 3 hrs", rate(7, 3 * 3_600_000)),
            ("  42/SEC ", rate(42, 1_000)),
            ("1 PER 10 Minutes", rate(1, 600_000)),
            ("9/m", rate(9, 60_000)),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Rate>(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_bad_input_with_the_right_kind() {
        let cases = [
            ("", RateErrorKind::Empty),
            ("   ", RateErrorKind::Empty),
            ("100", RateErrorKind::MissingSeparator),
            ("0/min", RateErrorKind::ZeroCount),
            ("5/0s", RateErrorKind::ZeroPeriod),
            ("1.5/s", RateErrorKind::Fraction),
            ("10/0.5s", RateErrorKind::Fraction),
            ("-1/s", RateErrorKind::InvalidCount),
            ("abc/s", RateErrorKind::InvalidCount),
            ("10/fortnight", RateErrorKind::UnknownUnit),
            ("10/", RateErrorKind::MissingUnit),
            ("10/5", RateErrorKind::MissingUnit),
            ("99999999999999999999/s", RateErrorKind::Overflow),
            ("1/99999999999999999999s", RateErrorKind::Overflow),
            ("1/9999999999999999d", RateErrorKind::Overflow),
            ("1000000000/day", RateErrorKind::TooLarge),
            ("10/x5s", RateErrorKind::UnknownUnit),
        ];
        for (text, kind) in cases {
            let err = text.parse::<Rate>().unwrap_err();
            assert_eq!(err.kind(), kind, "{text}");
        }
    }

    #[test]
    fn error_messages_say_what_was_wrong_and_show_the_forms() {
        let err = "10/fortnight".parse::<Rate>().unwrap_err().to_string();
        assert!(err.starts_with("unknown time unit"), "{err}");
        assert!(err.contains("100/min"), "{err}");
        assert!(err.contains("5 per 2 seconds"), "{err}");
    }

    #[test]
    fn display_picks_the_largest_exact_unit() {
        assert_eq!(rate(100, 60_000).to_string(), "100/min");
        assert_eq!(rate(10, 500).to_string(), "10/500ms");
        assert_eq!(rate(5, 2_000).to_string(), "5/2s");
        assert_eq!(rate(90, 90_000).to_string(), "90/90s");
        assert_eq!(rate(7, 3_600_000).to_string(), "7/h");
        assert_eq!(rate(2, 86_400_000).to_string(), "2/d");
    }

    #[test]
    fn reduced_divides_by_the_gcd() {
        assert_eq!(rate(100, 60_000).reduced(), (1, 600));
        assert_eq!(rate(3, 1_000).reduced(), (3, 1_000));
        assert_eq!(rate(1_000, 500).reduced(), (2, 1));
    }

    #[test]
    fn checked_constructor_matches_parsing() {
        assert_eq!(Rate::new(10, Duration::from_millis(500)), Ok(rate(10, 500)));
        assert_eq!(
            Rate::new(10, Duration::from_micros(1500))
                .unwrap_err()
                .kind(),
            RateErrorKind::Fraction
        );
        assert_eq!(
            Rate::new(0, Duration::from_secs(1)).unwrap_err().kind(),
            RateErrorKind::ZeroCount
        );
        assert_eq!(
            Rate::new(1, Duration::ZERO).unwrap_err().kind(),
            RateErrorKind::ZeroPeriod
        );
    }

    #[test]
    fn const_constructors() {
        const N: NonZeroU64 = NonZeroU64::new(3).unwrap();
        const PER_HOUR: Rate = Rate::per_hour(N);
        assert_eq!(PER_HOUR, rate(3, 3_600_000));
        assert_eq!(Rate::per_minute(N), rate(3, 60_000));
        assert_eq!(Rate::per_day(N), rate(3, 86_400_000));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_reads_and_writes_strings() {
        let parsed: Vec<Rate> = serde_json::from_str(r#"["100/min", "5 per 2 seconds"]"#).unwrap();
        assert_eq!(parsed, vec![rate(100, 60_000), rate(5, 2_000)]);
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            r#"["100/min","5/2s"]"#
        );
        let err = serde_json::from_str::<Rate>(r#""0/min""#).unwrap_err();
        assert!(
            err.to_string().contains("count must be at least 1"),
            "{err}"
        );
    }
}
