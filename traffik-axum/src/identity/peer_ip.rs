use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use traffik_core::Answer;

use super::{Identity, IdentityExtractor};
use crate::RequestHead;
use crate::error::IdentityError;

/// The TCP peer's IP address, from axum's `ConnectInfo<SocketAddr>`.
///
/// Serve the router with
/// `into_make_service_with_connect_info::<SocketAddr>()`; without it every
/// request fails with a 500 that says so. Behind a proxy every client has
/// the proxy's address: use [`ClientIp`](super::ClientIp) there.
#[derive(Clone, Copy, Debug)]
pub struct PeerIp {
    ipv6_prefix: u8,
}

impl Default for PeerIp {
    fn default() -> PeerIp {
        PeerIp::new()
    }
}

impl PeerIp {
    /// The prefix IPv6 addresses are grouped by.
    #[cfg(feature = "config")]
    pub(crate) const fn prefix(&self) -> u8 {
        self.ipv6_prefix
    }

    /// The peer's address, IPv6 grouped by /64.
    pub const fn new() -> PeerIp {
        PeerIp { ipv6_prefix: 64 }
    }

    /// Groups IPv6 addresses by `prefix` bits instead (128: no grouping).
    pub const fn ipv6_prefix(mut self, prefix: u8) -> PeerIp {
        self.ipv6_prefix = if prefix > 128 { 128 } else { prefix };
        self
    }

    pub(crate) fn peer(request: RequestHead<'_>) -> Option<SocketAddr> {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0)
    }

    pub(crate) fn resolve(&self, request: RequestHead<'_>) -> Result<Identity, IdentityError> {
        let peer = PeerIp::peer(request).ok_or_else(IdentityError::missing_connect_info)?;
        Ok(Identity::ip(peer.ip(), self.ipv6_prefix))
    }
}

impl IdentityExtractor for PeerIp {
    fn identify(
        &self,
        request: RequestHead<'_>,
    ) -> Answer<impl Future<Output = Result<Identity, IdentityError>> + Send> {
        Answer::now(self.resolve(request))
    }

    /// One extension lookup: cheaper than keeping it.
    const CACHE: bool = false;
}
