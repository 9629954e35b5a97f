//! The wait queue: waiters by priority (higher first), then arrival.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::Grant;
use crate::Error;

/// Which call a full queue turns away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Shed {
    /// The call that arrives at a full queue is refused
    /// ([`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull)); the calls
    /// waiting keep their places. The default.
    #[default]
    Newest,
    /// The call of lowest priority is dropped, the newest of them first:
    /// an arrival of higher priority takes its place (the dropped call
    /// fails with [`ErrorKind::Shed`](crate::ErrorKind::Shed)); an arrival
    /// of no higher priority is refused as with [`Newest`](Shed::Newest).
    LowestPriority,
}

/// A waiter's place: higher priority first, then earlier arrival.
pub(crate) type Place = (Reverse<i32>, u64);

pub(crate) struct Waiter {
    pub(crate) cost: u64,
    pub(crate) deadline_ms: Option<u64>,
    pub(crate) since: Instant,
    pub(crate) tx: oneshot::Sender<Result<Grant, Error>>,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub(crate) waiters: BTreeMap<Place, Waiter>,
    next_seq: u64,
    /// A dispatcher task is serving the queue.
    pub(crate) running: bool,
    /// A caller is trying the store on its own (the queue was empty).
    pub(crate) probing: bool,
    /// No hit is worth trying before this time (the limit said so).
    pub(crate) next_try_ms: u64,
    /// The upstream asked every caller to hold off until this time.
    pub(crate) paused_until_ms: u64,
}

impl Queue {
    pub(crate) fn place(&mut self, priority: i32) -> Place {
        self.next_seq += 1;
        (Reverse(priority), self.next_seq)
    }

    /// No hit is worth trying before `at_ms` (a later time already known
    /// stands).
    pub(crate) fn try_later(&mut self, at_ms: u64) {
        self.next_try_ms = self.next_try_ms.max(at_ms);
    }

    /// The earliest the limit can be tried again.
    pub(crate) fn open_at(&self) -> u64 {
        self.next_try_ms.max(self.paused_until_ms)
    }

    /// The cost of the waiters served before `place`.
    pub(crate) fn ahead_of(&self, place: &Place) -> u64 {
        self.waiters
            .range(..place)
            .fold(0u64, |sum, (_, w)| sum.saturating_add(w.cost))
    }

    /// The place a full queue gives up for an arrival at `place` under
    /// `shed`, if any.
    pub(crate) fn victim(&self, shed: Shed, place: &Place) -> Option<Place> {
        match shed {
            Shed::Newest => None,
            Shed::LowestPriority => self
                .waiters
                .last_key_value()
                .map(|(last, _)| *last)
                .filter(|last| last.0 > place.0),
        }
    }
}
