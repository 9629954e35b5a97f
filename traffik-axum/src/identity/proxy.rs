//! The proxy walk: reading the one client-address header a deployment
//! names, from the right, without allocating.

use std::net::{IpAddr, Ipv4Addr};

use http::header::{FORWARDED, HeaderName};
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

/// Where the client's address comes from: the one source the deployment's
/// proxy writes. Every other forwarding header is ignored.
///
/// | source | header | form |
/// |---|---|---|
/// | [`Peer`](IpSource::Peer) | none: the TCP peer | |
/// | [`XForwardedFor`](IpSource::XForwardedFor) | `X-Forwarded-For` | a list, each proxy appends |
/// | [`Forwarded`](IpSource::Forwarded) | `Forwarded` (RFC 7239) | a list of `for=` elements |
/// | [`XRealIp`](IpSource::XRealIp) | `X-Real-IP` | one address |
/// | [`CfConnectingIp`](IpSource::CfConnectingIp) | `CF-Connecting-IP` (Cloudflare) | one address |
/// | [`TrueClientIp`](IpSource::TrueClientIp) | `True-Client-IP` (Cloudflare Enterprise, Akamai) | one address |
/// | [`FlyClientIp`](IpSource::FlyClientIp) | `Fly-Client-IP` (Fly.io) | one address |
/// | [`CloudFrontViewerAddress`](IpSource::CloudFrontViewerAddress) | `CloudFront-Viewer-Address` | one `address:port` |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpSource {
    /// The TCP peer's address (no proxy in front).
    Peer,
    /// `X-Forwarded-For`, read from the right.
    XForwardedFor,
    /// `Forwarded`'s `for=` parameters, read from the right.
    Forwarded,
    /// `X-Real-IP`, as nginx's `proxy_set_header X-Real-IP $remote_addr` sets it.
    XRealIp,
    /// `CF-Connecting-IP`, set by Cloudflare.
    CfConnectingIp,
    /// `True-Client-IP`, set by Cloudflare Enterprise and Akamai.
    TrueClientIp,
    /// `Fly-Client-IP`, set by Fly.io's proxy.
    FlyClientIp,
    /// `CloudFront-Viewer-Address` (`address:port`), forwarded by CloudFront
    /// when the origin request policy includes it.
    CloudFrontViewerAddress,
}

impl IpSource {
    /// The header this source reads; `None` for the peer.
    pub fn header(self) -> Option<HeaderName> {
        Some(match self {
            IpSource::Peer => return None,
            IpSource::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            IpSource::Forwarded => FORWARDED,
            IpSource::XRealIp => HeaderName::from_static("x-real-ip"),
            IpSource::CfConnectingIp => HeaderName::from_static("cf-connecting-ip"),
            IpSource::TrueClientIp => HeaderName::from_static("true-client-ip"),
            IpSource::FlyClientIp => HeaderName::from_static("fly-client-ip"),
            IpSource::CloudFrontViewerAddress => {
                HeaderName::from_static("cloudfront-viewer-address")
            }
        })
    }

    /// Whether each proxy appends an entry (a list read from the right).
    fn is_list(self) -> bool {
        matches!(self, IpSource::XForwardedFor | IpSource::Forwarded)
    }
}

/// Which proxies are believed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Proxies whose addresses are in these networks.
    Networks(Vec<IpNet>),
    /// This many proxies in front of the service, each appending one entry;
    /// the peer is not checked.
    Hops(u8),
}

impl Trust {
    pub(crate) fn trusts(&self, ip: IpAddr) -> bool {
        match self {
            Trust::Networks(networks) => {
                let ip = canonical(ip);
                networks.iter().any(|net| net.contains(&ip))
            }
            Trust::Hops(_) => true,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What the named source says, for a request from a trusted peer: the
/// client's address, or `None` when the header is missing, repeated where
/// it must be single, or holds something that is not an address at the
/// place the walk reads (`unknown`, an obfuscated `_name`, garbage).
pub(crate) fn client_from(
    source: IpSource,
    header: &HeaderName,
    trust: &Trust,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    if source.is_list() {
        let forwarded = source == IpSource::Forwarded;
        // Every instance of the header is one list, in order; walk it from
        // the right, through the entries the nearest proxies appended.
        let mut entries = headers
            .get_all(header)
            .iter()
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|&byte| byte == b','))
            .map(|entry| {
                if forwarded {
                    forwarded_for(entry)
                } else {
                    Some(entry)
                }
            })
            .map(|entry| entry.and_then(parse_address));
        match trust {
            Trust::Hops(hops) => entries.nth(usize::from(*hops).checked_sub(1)?)?,
            Trust::Networks(_) => {
                let mut leftmost = None;
                for entry in entries {
                    let ip = entry?;
                    if !trust.trusts(ip) {
                        return Some(ip);
                    }
                    leftmost = Some(ip);
                }
                // Every entry is a trusted proxy: the leftmost is the client.
                leftmost
            }
        }
    } else {
        let mut values = headers.get_all(header).iter();
        let value = values.next()?;
        // A single-value header seen twice: one of them was not written by
        // the proxy.
        if values.next().is_some() {
            return None;
        }
        single(source, value)
    }
}

fn single(source: IpSource, value: &HeaderValue) -> Option<IpAddr> {
    let text = std::str::from_utf8(value.as_bytes()).ok()?.trim();
    if source == IpSource::CloudFrontViewerAddress {
        // `198.51.100.10:46532`, `2001:db8::1:46532`: the port is last.
        let (ip, port) = text.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        return ip.parse().ok();
    }
    text.parse().ok()
}

/// The `for=` value of one `Forwarded` element (`for=…;proto=…;by=…`).
fn forwarded_for(element: &[u8]) -> Option<&[u8]> {
    element.split(|&byte| byte == b';').find_map(|pair| {
        let at = pair.iter().position(|&byte| byte == b'=')?;
        let (name, value) = pair.split_at(at);
        let name = name.trim_ascii();
        name.eq_ignore_ascii_case(b"for").then(|| &value[1..])
    })
}

/// One list entry: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `"[2001:db8::1]:443"`.
/// Anything else (`unknown`, `_hidden`, non-ASCII, empty) is `None`.
fn parse_address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !after.is_empty() {
            let port = after.strip_prefix(':')?;
            port.parse::<u16>().ok()?;
        }
        return ip.parse().ok();
    }
    let (ip, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn networks(cidrs: &[&str]) -> Trust {
        Trust::Networks(cidrs.iter().map(|c| c.parse().unwrap()).collect())
    }

    fn read(source: IpSource, trust: &Trust, pairs: &[(&'static str, &[u8])]) -> Option<IpAddr> {
        let header = source.header().unwrap();
        client_from(source, &header, trust, &headers(pairs))
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right_past_trusted_proxies() {
        let trust = networks(&["10.0.0.0/8"]);
        let xff = IpSource::XForwardedFor;
        // The client wrote "6.6.6.6" itself; 203.0.113.9 is what our proxies saw.
        let chain: &[u8] = b"6.6.6.6, 203.0.113.9, 10.0.0.2";
        assert_eq!(
            read(xff, &trust, &[("x-forwarded-for", chain)]),
            Some(ip("203.0.113.9"))
        );
        // Several header lines are one list, in order.
        let split = [
            ("x-forwarded-for", b"6.6.6.6".as_slice()),
            ("x-forwarded-for", b"198.51.100.7, 10.9.9.9".as_slice()),
        ];
        assert_eq!(read(xff, &trust, &split), Some(ip("198.51.100.7")));
        // All trusted: the leftmost.
        let internal: &[u8] = b"10.1.1.1, 10.0.0.2";
        assert_eq!(
            read(xff, &trust, &[("x-forwarded-for", internal)]),
            Some(ip("10.1.1.1"))
        );
        // Garbage left of what the proxy appended is never read.
        let garbage: &[u8] = b"\xff\xfe, unknown, 203.0.113.9";
        assert_eq!(
            read(xff, &trust, &[("x-forwarded-for", garbage)]),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn a_hop_count_takes_that_entry_from_the_right() {
        let xff = IpSource::XForwardedFor;
        let chain: &[u8] = b"6.6.6.6, 203.0.113.9, 10.0.0.2";
        let pairs = [("x-forwarded-for", chain)];
        assert_eq!(read(xff, &Trust::Hops(1), &pairs), Some(ip("10.0.0.2")));
        assert_eq!(read(xff, &Trust::Hops(2), &pairs), Some(ip("203.0.113.9")));
        assert_eq!(read(xff, &Trust::Hops(4), &pairs), None);
        assert_eq!(read(xff, &Trust::Hops(0), &pairs), None);
    }

    #[test]
    fn forwarded_for_parameters() {
        let trust = networks(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let fwd = IpSource::Forwarded;
        let value: &[u8] =
            br#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.3;by=10.0.0.1"#;
        assert_eq!(
            read(fwd, &trust, &[("forwarded", value)]),
            Some(ip("2001:db8:cafe::17"))
        );
        let v4_port: &[u8] = b"For=\"192.0.2.60:8080\"";
        assert_eq!(
            read(fwd, &trust, &[("forwarded", v4_port)]),
            Some(ip("192.0.2.60"))
        );
        // Another forwarding header is never read.
        let other = [("x-forwarded-for", b"9.9.9.9".as_slice())];
        assert_eq!(read(fwd, &trust, &other), None);
    }

    #[test]
    fn unreadable_entries_where_the_walk_reads_are_none() {
        let trust = networks(&["10.0.0.0/8"]);
        for bad in [
            b"".as_slice(),
            b" ",
            b",",
            b"unknown",
            b"_hidden",
            b"6.6.6.6, unknown",
            b"6.6.6.6, _hidden, 10.0.0.2",
            b"1.2.3.4.5",
            b"256.1.1.1",
            b"1.2.3.4:99999",
            b"1.2.3.4:",
            b"[2001:db8::1",
            b"[2001:db8::1]x",
            b"fe80::1%eth0",
            b"6.6.6.6, \xff",
            b"203.0.113.9 10.0.0.2",
        ] {
            let pairs = [("x-forwarded-for", bad)];
            assert_eq!(
                read(IpSource::XForwardedFor, &trust, &pairs),
                None,
                "{bad:?}"
            );
            let pairs = [("forwarded", bad)];
            assert_eq!(read(IpSource::Forwarded, &trust, &pairs), None, "{bad:?}");
            let pairs = [("x-real-ip", bad)];
            assert_eq!(read(IpSource::XRealIp, &trust, &pairs), None, "{bad:?}");
        }
        for bad in [
            b"for=".as_slice(),
            b"by=10.0.0.1",
            b"for=\"_x\"",
            b"for=unknown",
        ] {
            let pairs = [("forwarded", bad)];
            assert_eq!(read(IpSource::Forwarded, &trust, &pairs), None, "{bad:?}");
        }
        assert_eq!(read(IpSource::XForwardedFor, &trust, &[]), None);
    }

    #[test]
    fn single_value_sources() {
        let trust = networks(&["127.0.0.1/32"]);
        let one = [("x-real-ip", b"198.51.100.1".as_slice())];
        assert_eq!(
            read(IpSource::XRealIp, &trust, &one),
            Some(ip("198.51.100.1"))
        );
        // Twice: one was not written by the proxy.
        let twice = [
            ("x-real-ip", b"198.51.100.1".as_slice()),
            ("x-real-ip", b"198.51.100.2".as_slice()),
        ];
        assert_eq!(read(IpSource::XRealIp, &trust, &twice), None);
        // A list where one address is expected.
        let list = [("cf-connecting-ip", b"198.51.100.1, 6.6.6.6".as_slice())];
        assert_eq!(read(IpSource::CfConnectingIp, &trust, &list), None);
        let cf = [("cf-connecting-ip", b"2001:db8::7".as_slice())];
        assert_eq!(
            read(IpSource::CfConnectingIp, &trust, &cf),
            Some(ip("2001:db8::7"))
        );
        let viewer = [("cloudfront-viewer-address", b"2001:db8::7:46532".as_slice())];
        assert_eq!(
            read(IpSource::CloudFrontViewerAddress, &trust, &viewer),
            Some(ip("2001:db8::7"))
        );
        let viewer = [(
            "cloudfront-viewer-address",
            b"198.51.100.10:46532".as_slice(),
        )];
        assert_eq!(
            read(IpSource::CloudFrontViewerAddress, &trust, &viewer),
            Some(ip("198.51.100.10"))
        );
        let no_port = [("cloudfront-viewer-address", b"198.51.100.10".as_slice())];
        assert_eq!(
            read(IpSource::CloudFrontViewerAddress, &trust, &no_port),
            None
        );
    }
}
