//! [`Counting`]: rules that count only some responses.

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;

use axum::response::Response;
use http::StatusCode;

type ResponseFn = Arc<dyn Fn(&Response) -> bool + Send + Sync>;

/// When a response-counted rule charges, and what that costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Settle {
    /// Charge when the request arrives (a denial is answered at once, as
    /// for any rule); give the cost back when the response turns out not
    /// to count. Exact under concurrency: a burst of concurrent requests
    /// cannot pass more than the limit, because each holds its charge
    /// while in flight. The price: in-flight requests briefly hold budget,
    /// so a request can be denied by others that will be refunded a
    /// moment later. A request whose response never comes (the client went
    /// away and the handler was dropped) keeps its charge; one that a later
    /// rule refuses never reached the handler and gets it back. The
    /// default.
    #[default]
    Reserve,
    /// Check that the limit has room when the request arrives (a peek,
    /// nothing charged), and charge when a counted response goes out. Never
    /// holds budget for uncounted responses, but is **not exact**: `N`
    /// concurrent requests can all pass the check before any of them is
    /// charged, so up to `N − 1` more than the limit get through.
    CheckThenCharge,
}

/// Which responses a rule counts: the request is checked against the
/// limit as usual, and [`Settle`] says when it is charged.
///
/// ```
/// use http::StatusCode;
/// use traffik_axum::Counting;
///
/// // Count failed logins only.
/// let failures = Counting::statuses([StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN]);
/// // Count server errors, charging only when one happens.
/// let errors = Counting::status_range(500..=599).check_then_charge();
/// ```
#[derive(Clone)]
pub struct Counting {
    statuses: Vec<RangeInclusive<u16>>,
    predicate: Option<ResponseFn>,
    settle: Settle,
}

impl fmt::Debug for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counting")
            .field("statuses", &self.statuses)
            .field("predicate", &self.predicate.is_some())
            .field("settle", &self.settle)
            .finish()
    }
}

impl Counting {
    /// Counts responses with one of these statuses.
    pub fn statuses(statuses: impl IntoIterator<Item = StatusCode>) -> Counting {
        Counting {
            statuses: statuses
                .into_iter()
                .map(|status| status.as_u16()..=status.as_u16())
                .collect(),
            predicate: None,
            settle: Settle::default(),
        }
    }

    /// Counts responses whose status is in `range` (`400..=499`: every
    /// client error).
    pub fn status_range(range: RangeInclusive<u16>) -> Counting {
        Counting {
            statuses: vec![range],
            predicate: None,
            settle: Settle::default(),
        }
    }

    /// Counts the responses for which `predicate` is true.
    pub fn responses(predicate: impl Fn(&Response) -> bool + Send + Sync + 'static) -> Counting {
        Counting {
            statuses: Vec::new(),
            predicate: Some(Arc::new(predicate)),
            settle: Settle::default(),
        }
    }

    /// Also counts responses with a status in `range`.
    pub fn or_status_range(mut self, range: RangeInclusive<u16>) -> Counting {
        self.statuses.push(range);
        self
    }

    /// Checks first and charges after the response
    /// ([`Settle::CheckThenCharge`]) instead of reserving.
    pub fn check_then_charge(mut self) -> Counting {
        self.settle = Settle::CheckThenCharge;
        self
    }

    /// When the rule charges.
    pub fn settle(&self) -> Settle {
        self.settle
    }

    /// Whether `response` counts.
    pub fn counts(&self, response: &Response) -> bool {
        let status = response.status().as_u16();
        self.statuses.iter().any(|range| range.contains(&status))
            || self
                .predicate
                .as_ref()
                .is_some_and(|predicate| predicate(response))
    }
}
