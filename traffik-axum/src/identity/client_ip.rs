use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderName;
use ipnet::IpNet;
use traffik_core::Answer;

use super::proxy::{IpSource, Trust, client_from};
use super::{Identity, IdentityExtractor, PeerIp};
use crate::RequestHead;
use crate::error::IdentityError;

/// The client's IP address, from the one source the deployment names.
///
/// Nothing is guessed: the deployment says which header its proxy writes
/// ([`IpSource`]) and which proxies are believed (CIDRs, or a hop count).
/// Only that header is read; every other forwarding header is ignored, so a
/// client cannot pick the one that suits it.
///
/// - **Trusting networks** ([`trusting`](ClientIp::trusting)): a request
///   whose TCP peer is not a trusted proxy is its own client, whatever it
///   claims. From a trusted peer, a list header (`X-Forwarded-For`,
///   `Forwarded`) is walked from the right past trusted addresses; the first
///   untrusted one is the client. Entries further left were written by the
///   client and are never read.
/// - **Trusting a hop count** ([`hops`](ClientIp::hops)): the service sits
///   behind exactly that many proxies that each append one entry; the client
///   is that entry from the right. The peer is not checked: only safe when
///   the service cannot be reached except through the proxies.
///
/// When the source is missing, repeated where it must be single, or holds
/// something that is not an address where the walk reads (`unknown`, an
/// obfuscated `_name`, garbage), the request never gets a fresh identity: it
/// is the peer's (the default, [`OnBadSource::Peer`]: every such request
/// shares the proxy's one budget) or it is rejected with `400`
/// ([`OnBadSource::Reject`]).
///
/// ```
/// use traffik_axum::{ClientIp, IpSource, OnBadSource};
///
/// // nginx in 10.0.0.0/8 appends the client to X-Forwarded-For.
/// let behind_nginx = ClientIp::trusting(IpSource::XForwardedFor, ["10.0.0.0/8"])?;
///
/// // Fly.io's proxy sets Fly-Client-IP; the app is only reachable through it.
/// let on_fly = ClientIp::hops(IpSource::FlyClientIp, 1)?.on_bad_source(OnBadSource::Reject);
/// # Ok::<(), traffik_axum::IdentityError>(())
/// ```
///
/// See "Behind a proxy" in `docs/axum.md` for the source to name for common
/// deployments.
#[derive(Clone, Debug)]
pub struct ClientIp {
    source: IpSource,
    header: Option<HeaderName>,
    trust: Trust,
    on_bad: OnBadSource,
    ipv6_prefix: u8,
}

/// What a request from a trusted proxy gets when the named source is
/// missing or unreadable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OnBadSource {
    /// The peer's address: the proxy's, one budget shared by every such
    /// request (the default). Health checks a load balancer sends without
    /// the header keep working.
    #[default]
    Peer,
    /// `400 Bad Request`, with a problem+json body that names the header.
    Reject,
}

impl ClientIp {
    /// The client from `source`, believing proxies in `networks`, written
    /// as CIDRs (`10.0.0.0/8`) or single addresses.
    ///
    /// # Errors
    ///
    /// When a network is neither (the message quotes at most its first 64
    /// bytes), or when there is none and `source` is a header.
    pub fn trusting<'a>(
        source: IpSource,
        networks: impl IntoIterator<Item = &'a str>,
    ) -> Result<ClientIp, IdentityError> {
        let parsed = networks
            .into_iter()
            .map(|text| {
                IpNet::from_str(text)
                    .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
                    .map_err(|_| {
                        IdentityError::new(format!(
                            "{:?} is not a network such as 10.0.0.0/8 or an address",
                            crate::key::prefix(text, 64)
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() && source != IpSource::Peer {
            return Err(IdentityError::new(
                "no trusted proxy: the header would never be read; name the proxies' networks, \
                 or use PeerIp when there is no proxy",
            ));
        }
        Ok(ClientIp::trusting_networks(source, parsed))
    }

    /// The client from `source`, believing proxies in `networks`.
    pub fn trusting_networks(
        source: IpSource,
        networks: impl IntoIterator<Item = IpNet>,
    ) -> ClientIp {
        ClientIp::with(source, Trust::Networks(networks.into_iter().collect()))
    }

    /// The client from `source` behind exactly `hops` proxies: for a list
    /// header, the `hops`-th entry from the right; for a single-value
    /// header, its value. The peer is not checked.
    ///
    /// # Errors
    ///
    /// When `hops` is 0 (there is no proxy: use [`IpSource::Peer`]).
    pub fn hops(source: IpSource, hops: u8) -> Result<ClientIp, IdentityError> {
        if hops == 0 {
            return Err(IdentityError::new(
                "a hop count of 0 means no proxy: use PeerIp or IpSource::Peer",
            ));
        }
        Ok(ClientIp::with(source, Trust::Hops(hops)))
    }

    fn with(source: IpSource, trust: Trust) -> ClientIp {
        ClientIp {
            source,
            header: source.header(),
            trust,
            on_bad: OnBadSource::default(),
            ipv6_prefix: 64,
        }
    }

    /// What a request whose source is missing or unreadable gets (default:
    /// [`OnBadSource::Peer`]).
    pub fn on_bad_source(mut self, choice: OnBadSource) -> ClientIp {
        self.on_bad = choice;
        self
    }

    /// The prefix IPv6 addresses are grouped by.
    #[cfg(feature = "config")]
    pub(crate) const fn prefix(&self) -> u8 {
        self.ipv6_prefix
    }

    /// Groups IPv6 addresses by `prefix` bits (default 64; 128: no grouping).
    pub fn ipv6_prefix(mut self, prefix: u8) -> ClientIp {
        self.ipv6_prefix = prefix.min(128);
        self
    }

    /// The source this extractor reads.
    pub fn source(&self) -> IpSource {
        self.source
    }

    /// The client address of a request from `peer`; `Err` when the source
    /// is unreadable and such requests are rejected.
    fn client(&self, peer: IpAddr, request: RequestHead<'_>) -> Result<IpAddr, IdentityError> {
        let Some(header) = &self.header else {
            return Ok(peer);
        };
        if !self.trust.trusts(peer) {
            return Ok(peer);
        }
        match client_from(self.source, header, &self.trust, request.headers()) {
            Some(client) => Ok(client),
            None => match self.on_bad {
                OnBadSource::Peer => Ok(peer),
                OnBadSource::Reject => Err(IdentityError::bad_request(format!(
                    "the {header} header is missing or does not end with a client address"
                ))),
            },
        }
    }

    fn resolve(&self, request: RequestHead<'_>) -> Result<Identity, IdentityError> {
        let peer = PeerIp::peer(request).ok_or_else(IdentityError::missing_connect_info)?;
        let client = self.client(peer.ip(), request)?;
        Ok(Identity::ip(client, self.ipv6_prefix))
    }
}

impl IdentityExtractor for ClientIp {
    fn identify(
        &self,
        request: RequestHead<'_>,
    ) -> Answer<impl Future<Output = Result<Identity, IdentityError>> + Send> {
        Answer::now(self.resolve(request))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::extract::ConnectInfo;
    use http::Request;

    use super::*;

    fn identify(
        client: &ClientIp,
        peer: &str,
        pairs: &[(&str, &str)],
    ) -> Result<Identity, IdentityError> {
        let mut request = Request::get("/");
        for (name, value) in pairs {
            request = request.header(*name, *value);
        }
        let peer: SocketAddr = format!("{peer}:4000").parse().unwrap();
        let request = request.extension(ConnectInfo(peer)).body(()).unwrap();
        client.resolve(RequestHead::from(&request))
    }

    fn ip(text: &str) -> Identity {
        Identity::ip(text.parse().unwrap(), 64)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let client = ClientIp::trusting(IpSource::XForwardedFor, ["10.0.0.0/8"]).unwrap();
        let spoofed = [("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")];
        assert_eq!(
            identify(&client, "203.0.113.9", &spoofed),
            Ok(ip("203.0.113.9"))
        );
    }

    #[test]
    fn only_the_named_header_is_read() {
        let client = ClientIp::trusting(IpSource::XForwardedFor, ["127.0.0.1"]).unwrap();
        let both = [
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "198.51.100.4"),
        ];
        assert_eq!(
            identify(&client, "127.0.0.1", &both),
            Ok(ip("198.51.100.4"))
        );
        let client = ClientIp::trusting(IpSource::XRealIp, ["127.0.0.1"]).unwrap();
        let both = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "198.51.100.4"),
        ];
        assert_eq!(
            identify(&client, "127.0.0.1", &both),
            Ok(ip("198.51.100.4"))
        );
    }

    #[test]
    fn a_bad_source_is_the_peer_or_a_rejection_never_another_header() {
        let peer = ClientIp::trusting(IpSource::XForwardedFor, ["127.0.0.1"]).unwrap();
        let reject = peer.clone().on_bad_source(OnBadSource::Reject);
        let cases: [&[(&str, &str)]; 3] = [
            &[("forwarded", "for=6.6.6.6")],
            &[("x-forwarded-for", "unknown"), ("x-real-ip", "6.6.6.6")],
            &[("x-forwarded-for", "6.6.6.6, _hidden")],
        ];
        for pairs in cases {
            assert_eq!(identify(&peer, "127.0.0.1", pairs), Ok(ip("127.0.0.1")));
            let error = identify(&reject, "127.0.0.1", pairs).unwrap_err();
            assert_eq!(error.kind(), crate::IdentityErrorKind::BadRequest);
            assert!(error.to_string().contains("x-forwarded-for"), "{error}");
            assert!(!error.to_string().contains("6.6.6.6"), "{error}");
        }
    }

    #[test]
    fn mapped_and_grouped_addresses() {
        let client = ClientIp::trusting(IpSource::XRealIp, ["127.0.0.1"]).unwrap();
        let mapped = [("x-real-ip", "::ffff:203.0.113.5")];
        assert_eq!(
            identify(&client, "127.0.0.1", &mapped),
            Ok(ip("203.0.113.5"))
        );
        let a = identify(&client, "127.0.0.1", &[("x-real-ip", "2001:db8:1:2::1")]);
        let b = identify(
            &client,
            "127.0.0.1",
            &[("x-real-ip", "2001:db8:1:2:ffff::9")],
        );
        assert_eq!(a, b);
        // A mapped peer is trusted as the IPv4 address it is.
        let via_mapped = identify(
            &client,
            "[::ffff:127.0.0.1]",
            &[("x-real-ip", "198.51.100.1")],
        );
        assert_eq!(via_mapped, Ok(ip("198.51.100.1")));
    }

    #[test]
    fn bad_configuration_is_an_error_at_construction() {
        let err = ClientIp::trusting(IpSource::XForwardedFor, ["10.0.0.0/33"]).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
        let long = "x".repeat(10_000);
        let err = ClientIp::trusting(IpSource::XForwardedFor, [long.as_str()]).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
        assert!(ClientIp::hops(IpSource::XForwardedFor, 0).is_err());
        let none: [&str; 0] = [];
        assert!(ClientIp::trusting(IpSource::XRealIp, none).is_err());
        assert!(ClientIp::trusting(IpSource::Peer, none).is_ok());
    }
}
