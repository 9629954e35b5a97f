//! Who is asking: [`Identity`] and the [`IdentityExtractor`]s that find it.
//!
//! | extractor | identity |
//! |---|---|
//! | [`PeerIp`] | the TCP peer's address, from axum's `ConnectInfo` |
//! | [`ClientIp`] | the client behind proxies, from the one source the deployment names ([`IpSource`]) |
//! | [`HeaderKey`] | a header such as an API key, with a fallback |
//! | [`FnIdentity`] | any closure |
//!
//! IPv6 addresses are grouped by prefix (default /64, one customer's
//! network), so a client cannot rotate through its subnet for fresh budgets.
//! Any extractor may return [`Identity::Exempt`] to bypass throttling with
//! zero backend calls.
//!
//! Each kind of identity writes its keys under its own tag (`ip:`, `net:`,
//! `h:`, `k:`), and text identities carry their length, so an address, a
//! header value, a closure's key and a route can never make the same key.

mod cache;
mod client_ip;
mod func;
mod header;
mod peer_ip;
mod proxy;

pub(crate) use cache::{cached, keep};
pub use client_ip::{ClientIp, OnBadSource};
pub use func::FnIdentity;
pub use header::{HeaderKey, NoFallback};
pub use peer_ip::PeerIp;
pub use proxy::IpSource;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::HeaderName;
use http::request::Parts;
use traffik_core::Answer;

use crate::RequestHead;
use crate::error::IdentityError;
use crate::key::{Ipv4Text, KeyBuf};
use cache::IdentityCache;

/// Who a request is from, as far as throttling is concerned.
///
/// Its key (what [`write_key`](Identity::write_key) writes, the identity
/// part of backend keys) is tagged by kind:
///
/// | identity | key |
/// |---|---|
/// | `Ip(203.0.113.7)` | `ip:203.0.113.7` |
/// | `Ip(2001:db8::1)` (no grouping) | `ip:2001:db8::1` |
/// | `Ipv6Prefix(2001:db8:1:2::, 64)` | `net:2001:db8:1:2::/64` |
/// | `Header(x-api-key, "abc")` | `h:x-api-key:3:abc` |
/// | `Key("user-42")` | `k:7:user-42` |
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Identity {
    /// An IP address (IPv6 already grouped by prefix when configured).
    Ip(IpAddr),
    /// An IPv6 network: the address masked to `prefix` bits.
    Ipv6Prefix(Ipv6Addr, u8),
    /// The value of a request header (an API key, a tenant id), with the
    /// header's name: the same value in two headers is two identities.
    Header(HeaderName, Arc<str>),
    /// Any other key: a user id, a tenant, …
    Key(Arc<str>),
    /// Not throttled at all: no backend is asked.
    Exempt,
}

impl Identity {
    /// An identity from any string.
    pub fn key(key: impl Into<Arc<str>>) -> Identity {
        Identity::Key(key.into())
    }

    /// An IP address, with IPv6 grouped to `ipv6_prefix` bits (128: no
    /// grouping). An IPv4-mapped IPv6 address is the IPv4 address it is.
    pub fn ip(ip: IpAddr, ipv6_prefix: u8) -> Identity {
        let IpAddr::V6(v6) = ip else {
            return Identity::Ip(ip);
        };
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Identity::Ip(IpAddr::V4(v4));
        }
        if ipv6_prefix >= 128 {
            return Identity::Ip(ip);
        }
        let mask = u128::MAX
            .checked_shl(128 - u32::from(ipv6_prefix))
            .unwrap_or(0);
        Identity::Ipv6Prefix(Ipv6Addr::from(u128::from(v6) & mask), ipv6_prefix)
    }

    /// Whether throttling is bypassed.
    pub fn is_exempt(&self) -> bool {
        matches!(self, Identity::Exempt)
    }

    /// The text of a header or key identity.
    pub fn text(&self) -> Option<&str> {
        match self {
            Identity::Header(_, text) | Identity::Key(text) => Some(text),
            _ => None,
        }
    }

    /// Writes the identity into a key buffer: an IPv4 address without the
    /// formatting machinery, the common case.
    #[inline]
    pub(crate) fn push_key(&self, key: &mut KeyBuf) {
        match self {
            Identity::Ip(IpAddr::V4(v4)) => key.push_ipv4(*v4),
            other => {
                let _ = other.write_key(key);
            }
        }
    }

    /// Writes the identity as it appears in backend keys, tagged by kind
    /// (see the table on [`Identity`]).
    pub fn write_key(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Identity::Ip(IpAddr::V4(v4)) => out.write_str(Ipv4Text::new(*v4).as_str()),
            Identity::Ip(ip) => write!(out, "ip:{ip}"),
            Identity::Ipv6Prefix(network, prefix) => write!(out, "net:{network}/{prefix}"),
            Identity::Header(name, value) => write!(out, "h:{name}:{}:{value}", value.len()),
            Identity::Key(key) => write!(out, "k:{}:{key}", key.len()),
            Identity::Exempt => out.write_str("exempt"),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_key(f)
    }
}

/// Finds the [`Identity`] of a request. Implement it for your own (it may be
/// async: look an API key up in a database, say).
///
/// ```
/// use traffik_axum::{Identity, IdentityError, IdentityExtractor, RequestHead};
/// use traffik_core::Answer;
///
/// /// The tenant, looked up asynchronously.
/// struct Tenant;
///
/// impl IdentityExtractor for Tenant {
///     fn identify(
///         &self,
///         request: RequestHead<'_>,
///     ) -> Answer<impl Future<Output = Result<Identity, IdentityError>> + Send> {
///         let host = request.uri().host().unwrap_or("").to_owned();
///         Answer::pending(async move { Ok(Identity::key(host)) })
///     }
/// }
/// ```
pub trait IdentityExtractor: Send + Sync + 'static {
    /// The identity of the request whose head is `request`: ready at once
    /// ([`Answer::now`]) when it is known without waiting, as for every
    /// built-in extractor, so the middleware decides without boxing a
    /// future; pending otherwise. A pending answer must do nothing until it
    /// is polled: the middleware may drop it and ask again.
    ///
    /// The answer's error is for a request that carries no usable identity
    /// when there is no fallback; the middleware answers 500 with the
    /// error's message (a configuration mistake, not the client's).
    fn identify(
        &self,
        request: RequestHead<'_>,
    ) -> Answer<impl Future<Output = Result<Identity, IdentityError>> + Send>;

    /// Whether the identity is worth keeping in the request's extensions
    /// for the next layer and the handler ([`RequestIdentity`]). `false` for
    /// extractors that cost less to run again than to store (the peer IP is
    /// one lookup). Default: `true`.
    const CACHE: bool = true;

    /// Whether this extractor's identities are kept
    /// ([`CACHE`](IdentityExtractor::CACHE) unless an extractor can tell
    /// better per instance).
    #[doc(hidden)]
    fn caches(&self) -> bool {
        Self::CACHE
    }

    /// Which cache entry of a request this extractor's identity goes in:
    /// its address. An `Arc` of an extractor answers with the shared
    /// allocation, so layers built with clones of one `Arc` identify a
    /// request once.
    #[doc(hidden)]
    fn cache_id(&self) -> usize {
        (self as *const Self).cast::<()>() as usize
    }
}

impl<I: IdentityExtractor> IdentityExtractor for Arc<I> {
    fn identify(
        &self,
        request: RequestHead<'_>,
    ) -> Answer<impl Future<Output = Result<Identity, IdentityError>> + Send> {
        (**self).identify(request)
    }

    const CACHE: bool = I::CACHE;

    fn caches(&self) -> bool {
        (**self).caches()
    }

    fn cache_id(&self) -> usize {
        Arc::as_ptr(self).cast::<()>() as usize
    }
}

/// The identity a [`ThrottleLayer`](crate::ThrottleLayer) found for this
/// request, as an axum extractor: a WebSocket handler throttles the
/// connection's messages with it, without identifying the client again.
///
/// When no layer kept an identity (none ran, or its extractor is
/// [`PeerIp`], which is not worth keeping), it is the peer IP as [`PeerIp`]
/// gives it; without `ConnectInfo` either, the extractor rejects with 500.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestIdentity(pub Identity);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestIdentity {
    type Rejection = (http::StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<RequestIdentity, Self::Rejection> {
        let cached = parts.extensions.get::<IdentityCache>();
        if let Some(identity) = cached.and_then(IdentityCache::latest) {
            return Ok(RequestIdentity(identity.clone()));
        }
        PeerIp::new()
            .resolve(RequestHead::from(&*parts))
            .map(RequestIdentity)
            .map_err(|_| {
                (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "no identity: put a ThrottleLayer on this route, or serve with ConnectInfo\n",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_grouped_by_prefix_and_mapped_v4_is_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(Identity::ip(a, 64), Identity::ip(b, 64));
        assert_eq!(Identity::ip(a, 64).to_string(), "net:2001:db8:1:2::/64");
        assert_ne!(Identity::ip(a, 128), Identity::ip(b, 128));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(Identity::ip(mapped, 64).to_string(), "ip:10.1.2.3");
        for text in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "1.20.199.255"] {
            let identity = Identity::ip(text.parse().unwrap(), 64);
            assert_eq!(identity.to_string(), format!("ip:{text}"));
            let mut key = KeyBuf::new();
            identity.push_key(&mut key);
            assert_eq!(key.as_str(), format!("ip:{text}"));
        }
    }

    #[test]
    fn kinds_never_share_a_key() {
        let api_key = HeaderName::from_static("x-api-key");
        let user = HeaderName::from_static("x-user");
        let identities = [
            Identity::ip("203.0.113.50".parse().unwrap(), 64),
            Identity::Header(api_key.clone(), "203.0.113.50".into()),
            Identity::Header(api_key.clone(), "ip:203.0.113.50".into()),
            Identity::Header(user, "203.0.113.50".into()),
            Identity::key("203.0.113.50"),
            Identity::key("ip:203.0.113.50"),
            Identity::key("h:x-api-key:12:203.0.113.50"),
            Identity::ip("2001:db8::1".parse().unwrap(), 128),
            Identity::ip("2001:db8::1".parse().unwrap(), 64),
            Identity::key("net:2001:db8::/64"),
        ];
        let keys: std::collections::HashSet<String> =
            identities.iter().map(ToString::to_string).collect();
        assert_eq!(keys.len(), identities.len(), "{keys:?}");
        // A text identity's length ends it: "a" with a suffix is not "a:b".
        assert_ne!(
            format!("{}|r:/x", Identity::key("a")),
            Identity::key("a|r:/x").to_string()
        );
    }
}
