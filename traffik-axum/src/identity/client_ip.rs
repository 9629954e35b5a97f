use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;
use traffik_core::Answer;

use super::{Identity, IdentityExtractor, PeerIp};
use crate::RequestHead;
use crate::error::IdentityError;

/// The client's IP address behind trusted reverse proxies.
///
/// Starts from the TCP peer (axum's `ConnectInfo`). If the peer is not a
/// trusted proxy, the peer *is* the client: headers are ignored, so a client
/// cannot claim another address. If it is, the proxy headers are walked **from
/// the right** (the entries the nearest proxies appended) past every trusted
/// address; the first untrusted address is the client. Entries further left
/// were written by the client and are never believed.
///
/// The first of these headers that is present is used: RFC 7239
/// `Forwarded` (`for=`), then `X-Forwarded-For`, then `X-Real-IP`. An entry
/// that is not an address (`unknown`, an obfuscated `_name`) stops the walk
/// at the last trusted hop.
///
/// ```
/// use traffik_axum::ClientIp;
///
/// // Behind a load balancer in 10.0.0.0/8 and a sidecar on loopback.
/// let client = ClientIp::trusting(["10.0.0.0/8", "127.0.0.1/32", "::1/128"])?;
/// # Ok::<(), traffik_axum::IdentityError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientIp {
    trusted: Vec<IpNet>,
    ipv6_prefix: u8,
}

impl ClientIp {
    /// Trusts the proxies in `networks`.
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> ClientIp {
        ClientIp {
            trusted: networks.into_iter().collect(),
            ipv6_prefix: 64,
        }
    }

    /// Trusts the proxies in `networks`, written as CIDRs (`10.0.0.0/8`) or
    /// single addresses.
    ///
    /// # Errors
    ///
    /// When a network is neither.
    pub fn trusting<'a>(
        networks: impl IntoIterator<Item = &'a str>,
    ) -> Result<ClientIp, IdentityError> {
        let parsed = networks
            .into_iter()
            .map(|text| {
                IpNet::from_str(text)
                    .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
                    .map_err(|_| {
                        IdentityError::new(format!("{text:?} is not a network such as 10.0.0.0/8"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClientIp::new(parsed))
    }

    /// Groups IPv6 addresses by `prefix` bits (default 64; 128: no grouping).
    pub fn ipv6_prefix(mut self, prefix: u8) -> ClientIp {
        self.ipv6_prefix = prefix.min(128);
        self
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address, given the peer and the request's headers.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<Hop> = if headers.contains_key(http::header::FORWARDED) {
            forwarded_hops(headers)
        } else if headers.contains_key("x-forwarded-for") {
            list_hops(headers, "x-forwarded-for")
        } else if headers.contains_key("x-real-ip") {
            list_hops(headers, "x-real-ip")
        } else {
            return peer;
        };
        let mut last_trusted = peer;
        for hop in hops.iter().rev() {
            match hop {
                Hop::Ip(ip) if self.trusts(*ip) => last_trusted = *ip,
                Hop::Ip(ip) => return *ip,
                Hop::Opaque => return last_trusted,
            }
        }
        last_trusted
    }
}

impl ClientIp {
    fn resolve(&self, request: RequestHead<'_>) -> Result<Identity, IdentityError> {
        let peer = PeerIp::peer(request).ok_or_else(IdentityError::missing_connect_info)?;
        Ok(Identity::ip(
            self.client(peer.ip(), request.headers()),
            self.ipv6_prefix,
        ))
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

/// One entry of a forwarding chain.
enum Hop {
    Ip(IpAddr),
    /// `unknown`, an obfuscated identifier, or garbage.
    Opaque,
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(text: &str) -> Hop {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Hop::Ip(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        if let Some((ip, _port)) = rest.split_once(']') {
            return ip.parse().map_or(Hop::Opaque, Hop::Ip);
        }
    }
    if let Some((ip, port)) = text.rsplit_once(':') {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(ip) = ip.parse::<std::net::Ipv4Addr>() {
                return Hop::Ip(IpAddr::V4(ip));
            }
        }
    }
    Hop::Opaque
}

/// Every comma-separated entry of every instance of a header, in order.
fn list_hops(headers: &HeaderMap, name: &str) -> Vec<Hop> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("garbage").split(','))
        .map(parse_hop)
        .collect()
}

/// The `for=` of every element of every `Forwarded` header (RFC 7239), in
/// order; an element without `for=` is opaque.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("for=garbage").split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .map_or(Hop::Opaque, |(_, value)| parse_hop(value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let client = ClientIp::trusting(["10.0.0.0/8"]).unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(
            client.client(ip("203.0.113.9"), &spoofed),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn walks_x_forwarded_for_from_the_right_past_trusted_proxies() {
        let client = ClientIp::trusting(["10.0.0.0/8"]).unwrap();
        // The client wrote "6.6.6.6" itself; 203.0.113.9 is what our proxies saw.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(client.client(ip("10.0.0.1"), &chain), ip("203.0.113.9"));
        // Several header lines are one list, in order.
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7, 10.9.9.9"),
        ]);
        assert_eq!(client.client(ip("10.0.0.1"), &split), ip("198.51.100.7"));
        // All trusted: the leftmost.
        let internal = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.2")]);
        assert_eq!(client.client(ip("10.0.0.1"), &internal), ip("10.1.1.1"));
    }

    #[test]
    fn reads_rfc_7239_forwarded_first() {
        let client = ClientIp::trusting(["10.0.0.0/8", "2001:db8:ffff::/48"]).unwrap();
        let forwarded = headers(&[
            (
                "forwarded",
                r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.3;by=10.0.0.1"#,
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(
            client.client(ip("10.0.0.1"), &forwarded),
            ip("2001:db8:cafe::17")
        );
        // An opaque hop stops at the last trusted one.
        let hidden = headers(&[("forwarded", "for=_hidden, for=10.0.0.3")]);
        assert_eq!(client.client(ip("10.0.0.1"), &hidden), ip("10.0.0.3"));
        let v4_port = headers(&[("forwarded", "For=\"192.0.2.60:8080\"")]);
        assert_eq!(client.client(ip("10.0.0.1"), &v4_port), ip("192.0.2.60"));
    }

    #[test]
    fn x_real_ip_from_a_trusted_proxy() {
        let client = ClientIp::trusting(["127.0.0.1"]).unwrap();
        let real = headers(&[("x-real-ip", "198.51.100.1")]);
        assert_eq!(client.client(ip("127.0.0.1"), &real), ip("198.51.100.1"));
        assert_eq!(
            client.client(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn bad_networks_are_rejected() {
        let err = ClientIp::trusting(["10.0.0.0/33"]).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/33"), "{err}");
    }
}
