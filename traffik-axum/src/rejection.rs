//! [`Rejected`]: the response to a denied request.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use traffik_core::Reason;

use crate::headers::{Quota, QuotaHeaders, seconds_up, write};

/// The problem type of draft-ietf-httpapi-ratelimit-headers.
pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// A request denied by a throttle. Its [`IntoResponse`] is the default
/// rejection: `429 Too Many Requests` (or the status configured for backend
/// failures), `Retry-After` in whole seconds rounded up (never 0), the
/// `RateLimit-Policy` and `RateLimit` fields, and an
/// `application/problem+json` body with the quota-exceeded type and
/// `violated-policies`.
///
/// Replace it with [`Rejection::Custom`](crate::Rejection::Custom): your
/// function gets this value and returns any response.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub(crate) status: StatusCode,
    pub(crate) quotas: Vec<Quota>,
}

impl Rejected {
    /// The quota that denied, the one to wait longest for when several did
    /// (a group's throttles are decided together).
    fn denial(&self) -> &Quota {
        let mut denials = self.quotas.iter().filter(|q| !q.decision.is_allowed());
        let first = denials.next();
        let longest = denials.fold(first, |longest, quota| match longest {
            Some(l) if l.decision.retry_after_ms() >= quota.decision.retry_after_ms() => Some(l),
            _ => Some(quota),
        });
        // A rejection always holds a denial; the last quota otherwise.
        longest
            .or(self.quotas.last())
            .unwrap_or_else(|| unreachable!("a rejection without quotas"))
    }

    /// The names of every throttle that denied.
    pub fn violated_policies(&self) -> impl Iterator<Item = &str> {
        self.quotas
            .iter()
            .filter(|q| !q.decision.is_allowed())
            .map(|q| &*q.policy.name)
    }

    /// The status the default response uses.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The name of the throttle that denied the request.
    pub fn violated_policy(&self) -> &str {
        &self.denial().policy.name
    }

    /// The denying throttle's decision.
    pub fn decision(&self) -> &traffik_core::Decision {
        &self.denial().decision
    }

    /// How long until the request would pass; `None` when it never will
    /// (its cost exceeds what the throttle can ever admit).
    pub fn retry_after(&self) -> Option<Duration> {
        let decision = self.decision();
        (decision.retry_after_ms() != u64::MAX).then(|| decision.retry_after())
    }

    fn detail(&self) -> String {
        let decision = self.decision();
        match (decision.reason(), self.retry_after()) {
            (Reason::CostExceedsCapacity, _) => format!(
                "the request costs more than the policy {:?} can ever admit ({})",
                self.violated_policy(),
                decision.limit()
            ),
            (Reason::BackendFailure, _) => {
                "the rate limiter is unavailable; retry later".to_owned()
            }
            (Reason::Blocked, Some(wait)) => format!(
                "blocked after repeatedly exceeding the policy {:?}; retry in {} s",
                self.violated_policy(),
                seconds_up(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)).max(1)
            ),
            (Reason::Contended, Some(wait)) => format!(
                "too many concurrent requests for the policy {:?} to decide; retry in {} s",
                self.violated_policy(),
                seconds_up(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)).max(1)
            ),
            (_, Some(wait)) => format!(
                "quota of policy {:?} exceeded; retry in {} s",
                self.violated_policy(),
                seconds_up(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)).max(1)
            ),
            (_, None) => format!("quota of policy {:?} exceeded", self.violated_policy()),
        }
    }

    /// The status and headers every rejection carries, with `body`.
    fn respond(self, content_type: &'static str, body: String) -> Response {
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(wait) = self.retry_after() {
            let seconds = seconds_up(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        write(headers, &self.quotas, QuotaHeaders::Ietf);
        response
    }

    /// The default response, with an `application/problem+json` body.
    pub fn problem_json(self) -> Response {
        let body = serde_json::json!({
            "type": QUOTA_EXCEEDED,
            "title": "Request cannot be satisfied as assigned quota has been exceeded",
            "status": self.status.as_u16(),
            "detail": self.detail(),
            "violated-policies": self.violated_policies().collect::<Vec<_>>(),
        });
        self.respond("application/problem+json", body.to_string())
    }

    /// The same status and headers with a one-line `text/plain` body.
    pub fn plain_text(self) -> Response {
        let body = format!("{}\n", self.detail());
        self.respond("text/plain; charset=utf-8", body)
    }
}

/// An `application/problem+json` response with `detail`, for requests the
/// layer answers without a throttle's decision.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

impl IntoResponse for Rejected {
    fn into_response(self) -> Response {
        self.problem_json()
    }
}
