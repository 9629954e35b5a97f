//! [`ConfigIdentity`]: the identity a rules file names, with its exemptions.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;

use http::{HeaderName, HeaderValue};
use ipnet::IpNet;
use traffik_core::Answer;

use crate::identity::{ClientIp, HeaderKey, Identity, IdentityExtractor, PeerIp};
use crate::{IdentityError, RequestHead};

/// Where a rules file's identity comes from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    Peer(PeerIp),
    Client(ClientIp),
    /// A header, such as an API key; the peer's address without it.
    Header(HeaderKey<PeerIp>),
}

/// The identity a rules file names: a source, and the clients exempt
/// from every rule (by network, or by a header's exact value).
#[derive(Clone)]
pub struct ConfigIdentity {
    pub(crate) source: Source,
    pub(crate) exempt_networks: Vec<IpNet>,
    pub(crate) exempt_headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for ConfigIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Exempting header values are secrets: not shown.
        f.debug_struct("ConfigIdentity")
            .field("source", &self.source)
            .field("exempt_networks", &self.exempt_networks)
            .field(
                "exempt_headers",
                &self
                    .exempt_headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Equal bytes, compared in time that depends on the lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl ConfigIdentity {
    fn exempt_by_header(&self, request: RequestHead<'_>) -> bool {
        self.exempt_headers.iter().any(|(name, secret)| {
            request
                .headers()
                .get_all(name)
                .iter()
                .any(|value| same_secret(value.as_bytes(), secret.as_bytes()))
        })
    }

    fn exempt_by_network(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.exempt_networks.iter().any(|net| net.contains(&ip))
    }

    fn resolve(&self, request: RequestHead<'_>) -> Result<Identity, IdentityError> {
        let not_ready = || IdentityError::new("the identity source did not answer at once");
        let identity = match &self.source {
            Source::Peer(peer) => peer
                .identify(request)
                .into_ready()
                .map_err(|_| not_ready())?,
            Source::Client(client) => client
                .identify(request)
                .into_ready()
                .map_err(|_| not_ready())?,
            Source::Header(header) => header
                .identify(request)
                .into_ready()
                .map_err(|_| not_ready())?,
        }?;
        if self.exempt_networks.is_empty() {
            return Ok(identity);
        }
        // The address the identity is, or for a header the peer's.
        let exempt = match &identity {
            Identity::Ip(ip) => self.exempt_by_network(*ip),
            Identity::Ipv6Prefix(..) => address_of_prefix(request, &self.source)
                .is_some_and(|ip| self.exempt_by_network(ip)),
            _ => PeerIp::peer(request).is_some_and(|peer| self.exempt_by_network(peer.ip())),
        };
        Ok(if exempt { Identity::Exempt } else { identity })
    }
}

/// For an identity grouped by IPv6 prefix: the full address it came from.
fn address_of_prefix(request: RequestHead<'_>, source: &Source) -> Option<IpAddr> {
    let full = match source {
        Source::Peer(_) | Source::Header(_) => PeerIp::new().ipv6_prefix(128).resolve(request),
        Source::Client(client) => match client
            .clone()
            .ipv6_prefix(128)
            .identify(request)
            .into_ready()
        {
            Ok(result) => result,
            Err(_) => return None,
        },
    };
    match full {
        Ok(Identity::Ip(ip)) => Some(ip),
        _ => None,
    }
}

impl IdentityExtractor for ConfigIdentity {
    /// The peer's address is one lookup, cheaper to find again than to
    /// keep; a header or a proxy's is kept for the handler
    /// ([`RequestIdentity`](crate::RequestIdentity)).
    fn caches(&self) -> bool {
        !matches!(self.source, Source::Peer(_))
    }

    fn identify(
        &self,
        request: RequestHead<'_>,
    ) -> Answer<impl Future<Output = Result<Identity, IdentityError>> + Send> {
        if self.exempt_by_header(request) {
            return Answer::now(Ok(Identity::Exempt));
        }
        Answer::now(self.resolve(request))
    }
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3creT"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"", b"x"));
    }
}
