//! [`ThrottledSocket`]: every received message of an axum WebSocket is a hit.

use std::fmt;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use traffik_core::{Backend, Clock, Decision, Throttle};

use crate::identity::Identity;
use crate::rule::ErasedThrottle;

/// One hit; borrows only what is `Sync`, so `recv`'s future stays `Send`.
async fn hit(throttle: &dyn ErasedThrottle, key: &str) -> Result<Decision, axum::Error> {
    // The key is the identity alone: all of it names the client.
    throttle
        .hit(key, key.len(), None, 1)
        .await
        .map_err(axum::Error::new)
}

/// What happens to a message over the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverLimit {
    /// Drop the message; if `notice` is set, send it to the client as a text
    /// frame (`{retry_after}` in it is replaced by the wait in seconds).
    Drop {
        /// The text frame to send back, if any.
        notice: Option<String>,
    },
    /// Close the connection with 1008 (policy violation) and this reason.
    Close {
        /// The close frame's reason.
        reason: String,
    },
    /// Hold the message until the limit allows it (backpressure: the
    /// client's further messages wait in the socket meanwhile). A message
    /// whose cost can never pass closes the connection with 1008.
    Wait,
}

/// A WebSocket whose received text and binary messages each count as a hit
/// of one throttle, for one identity found once per connection. Ping, pong
/// and close frames are not counted.
///
/// ```no_run
/// use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
/// use axum::response::Response;
/// use traffik_axum::{OverLimit, RequestIdentity, ThrottledSocket};
/// use traffik_backends::memory::MemoryBackend;
/// use traffik_core::Throttle;
///
/// async fn chat(
///     upgrade: WebSocketUpgrade,
///     RequestIdentity(identity): RequestIdentity,
///     throttle: Throttle<MemoryBackend>,
/// ) -> Response {
///     upgrade.on_upgrade(move |socket: WebSocket| async move {
///         let notice = OverLimit::Drop { notice: Some("slow down".into()) };
///         let mut socket = ThrottledSocket::new(socket, throttle, &identity, notice);
///         while let Some(Ok(message)) = socket.recv().await {
///             if socket.send(message).await.is_err() {
///                 break;
///             }
///         }
///     })
/// }
/// ```
pub struct ThrottledSocket {
    socket: WebSocket,
    throttle: Arc<dyn ErasedThrottle>,
    /// `None` for an exempt client: never throttled, no backend asked.
    key: Option<String>,
    over_limit: OverLimit,
}

impl fmt::Debug for ThrottledSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottledSocket")
            .field("throttle", &self.throttle.name())
            .field("key", &self.key)
            .field("over_limit", &self.over_limit)
            .finish_non_exhaustive()
    }
}

impl ThrottledSocket {
    /// Throttles `socket`'s messages with `throttle`, keyed by `identity`.
    /// An [`Identity::Exempt`] client is never throttled: its messages pass
    /// with no backend call.
    pub fn new<B: Backend, C: Clock>(
        socket: WebSocket,
        throttle: Throttle<B, C>,
        identity: &Identity,
        over_limit: OverLimit,
    ) -> ThrottledSocket {
        ThrottledSocket {
            socket,
            throttle: Arc::new(throttle),
            key: (!identity.is_exempt()).then(|| identity.to_string()),
            over_limit,
        }
    }

    async fn close(&mut self, reason: &str) {
        let frame = CloseFrame {
            code: close_code::POLICY,
            reason: reason.into(),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }

    /// The next message the limit admits; `None` once the connection is
    /// closed (by the client, or by [`OverLimit::Close`]).
    ///
    /// # Errors
    ///
    /// The socket's errors, and a throttle whose backend failed under
    /// [`FailurePolicy::Error`](traffik_core::FailurePolicy::Error).
    pub async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        loop {
            let message = match self.socket.recv().await? {
                Ok(message) => message,
                Err(error) => return Some(Err(error)),
            };
            let Some(key) = &self.key else {
                return Some(Ok(message));
            };
            if !matches!(message, Message::Text(_) | Message::Binary(_)) {
                return Some(Ok(message));
            }
            loop {
                let decision = match hit(&*self.throttle, key).await {
                    Ok(decision) => decision,
                    Err(error) => return Some(Err(error)),
                };
                if decision.is_allowed() {
                    return Some(Ok(message));
                }
                let never = decision.retry_after_ms() == u64::MAX;
                match &self.over_limit {
                    OverLimit::Drop { notice } => {
                        if let Some(notice) = notice {
                            let seconds = decision.retry_after_ms().div_ceil(1_000).max(1);
                            let text = notice.replace("{retry_after}", &seconds.to_string());
                            if let Err(error) = self.socket.send(Message::Text(text.into())).await {
                                return Some(Err(error));
                            }
                        }
                        break;
                    }
                    OverLimit::Close { reason } => {
                        let reason = reason.clone();
                        self.close(&reason).await;
                        return None;
                    }
                    OverLimit::Wait if never => {
                        self.close("message exceeds the rate limit").await;
                        return None;
                    }
                    OverLimit::Wait => tokio::time::sleep(decision.retry_after()).await,
                }
            }
        }
    }

    /// Sends a message (sending is not throttled).
    ///
    /// # Errors
    ///
    /// The socket's.
    pub async fn send(&mut self, message: Message) -> Result<(), axum::Error> {
        self.socket.send(message).await
    }

    /// The socket, to use it unthrottled.
    pub fn into_inner(self) -> WebSocket {
        self.socket
    }
}
