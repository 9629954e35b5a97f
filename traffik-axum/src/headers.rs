//! The quota headers: IETF `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers, structured fields), the legacy
//! `X-RateLimit-*` trio, and `Retry-After`.

use std::fmt::Write as _;

use std::sync::Arc;

use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};
use traffik_core::{Decision, Limit};

use crate::key::TextBuf;

/// Which quota headers responses carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QuotaHeaders {
    /// `RateLimit-Policy` and `RateLimit` on every response (the default).
    Ietf,
    /// The IETF fields and the legacy `X-RateLimit-Limit`, `-Remaining`,
    /// `-Reset` (seconds), from the most constrained throttle.
    IetfAndLegacy,
    /// Quota headers on denials only (`Retry-After` and the IETF fields).
    DenialsOnly,
}

/// One throttle's outcome, as the headers show it.
#[derive(Clone, Debug)]
pub(crate) struct Quota {
    /// The throttle's name.
    pub(crate) policy: Arc<Policy>,
    /// Its `RateLimit-Policy` member, `"name";q=…;w=…`, made once per limit.
    pub(crate) member: HeaderValue,
    pub(crate) capacity: u64,
    pub(crate) decision: Decision,
}

/// A throttle's name, as it is and as a structured-field string (escaped
/// once, not for every response).
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) name: Box<str>,
    label: Box<str>,
}

impl Policy {
    pub(crate) fn new(name: &str) -> Policy {
        let mut label = String::with_capacity(name.len() + 2);
        sf_string(&mut label, name);
        Policy {
            name: name.into(),
            label: label.into(),
        }
    }
}

/// The `RateLimit-Policy` member of a throttle under `limit`.
pub(crate) fn policy_member(policy: &Policy, limit: &Limit) -> HeaderValue {
    let mut member = String::with_capacity(policy.label.len() + 24);
    member.push_str(&policy.label);
    let window = seconds_up(limit.rate().period_ms()).max(1);
    let _ = write!(member, ";q={};w={window}", limit.capacity());
    HeaderValue::try_from(member).unwrap_or_else(|_| HeaderValue::from_static("\"invalid\""))
}

/// Whole seconds, rounded up.
pub(crate) fn seconds_up(ms: u64) -> u64 {
    ms.div_ceil(1_000)
}

/// A structured-field string: quotes and backslashes escaped, anything that
/// is not printable ASCII replaced.
fn sf_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
}

fn insert(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Adds list members to a structured-field list, after those a layer
/// nearer the handler already wrote (one lookup of the field).
fn append(field: Entry<'_, HeaderValue>, members: &str) {
    match field {
        Entry::Occupied(mut field) => {
            let combined = match field.get().to_str() {
                Ok(existing) if !existing.is_empty() => format!("{existing}, {members}"),
                _ => members.to_owned(),
            };
            if let Ok(value) = HeaderValue::try_from(combined) {
                field.insert(value);
            }
        }
        Entry::Vacant(field) => {
            if let Ok(value) = HeaderValue::from_str(members) {
                field.insert(value);
            }
        }
    }
}

/// The seconds `t` reports: until a hit of the same cost passes when denied
/// (until the quota is full when it never will), until the quota is full
/// when allowed.
pub(crate) fn t_seconds(decision: &Decision) -> u64 {
    let ms = if decision.is_allowed() || decision.retry_after_ms() == u64::MAX {
        decision.reset_after_ms()
    } else {
        decision.retry_after_ms()
    };
    seconds_up(ms)
}

/// The field names, made once (`from_static` checks the name on every call).
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Writes the quota fields of `quotas` on a response.
pub(crate) fn write(headers: &mut HeaderMap, quotas: &[Quota], mode: QuotaHeaders) {
    let Some(first) = quotas.first() else {
        return;
    };
    // On the stack: one copy into the field's value, no other allocation.
    let mut state = TextBuf::<128>::new();
    let mut digits = itoa::Buffer::new();
    for quota in quotas {
        if !state.is_empty() {
            state.push_str(", ");
        }
        state.push_str(&quota.policy.label);
        state.push_str(";r=");
        state.push_str(digits.format(quota.decision.remaining()));
        state.push_str(";t=");
        state.push_str(digits.format(t_seconds(&quota.decision)));
    }
    match headers.entry(&RATELIMIT_POLICY) {
        // The common case: the member made once, shared, no copy.
        Entry::Vacant(field) if quotas.len() == 1 => {
            field.insert(first.member.clone());
        }
        field => {
            let members: Vec<&str> = quotas
                .iter()
                .filter_map(|q| q.member.to_str().ok())
                .collect();
            append(field, &members.join(", "));
        }
    }
    append(headers.entry(&RATELIMIT), state.as_str());
    // The legacy fields hold one quota: the layer nearest the handler wins.
    if mode == QuotaHeaders::IetfAndLegacy && !headers.contains_key(&X_RATELIMIT_LIMIT) {
        // The most constrained: a denial, else the fewest remaining.
        let worst = quotas
            .iter()
            .min_by_key(|q| (q.decision.is_allowed(), q.decision.remaining()))
            .unwrap_or(first);
        insert(headers, &X_RATELIMIT_LIMIT, digits.format(worst.capacity));
        let remaining = worst.decision.remaining();
        insert(headers, &X_RATELIMIT_REMAINING, digits.format(remaining));
        let reset = t_seconds(&worst.decision);
        insert(headers, &X_RATELIMIT_RESET, digits.format(reset));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use traffik_core::{Gcra, Limit};

    fn quota(name: &str, rate: &str, decision: Decision) -> Quota {
        let limit = Limit::new(rate.parse().unwrap(), Gcra::new()).unwrap();
        let policy = Arc::new(Policy::new(name));
        Quota {
            member: policy_member(&policy, &limit),
            policy,
            capacity: limit.capacity(),
            decision,
        }
    }

    #[test]
    fn several_throttles_give_several_members() {
        let mut headers = HeaderMap::new();
        let quotas = [
            quota("burst", "10/s", Decision::allowed(10, 9, 100)),
            quota("api", "100/min", Decision::denied(100, 0, 4_001, 60_000)),
        ];
        write(&mut headers, &quotas, QuotaHeaders::IetfAndLegacy);
        assert_eq!(
            headers["ratelimit-policy"],
            r#""burst";q=10;w=1, "api";q=100;w=60"#
        );
        assert_eq!(headers["ratelimit"], r#""burst";r=9;t=1, "api";r=0;t=5"#);
        assert_eq!(headers["x-ratelimit-limit"], "100");
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        assert_eq!(headers["x-ratelimit-reset"], "5");
    }

    #[test]
    fn policy_names_are_escaped() {
        let mut out = String::new();
        sf_string(&mut out, "a\"b\\c\u{e9}");
        assert_eq!(out, r#""a\"b\\c?""#);
    }
}
