//! Finding an IP identity allocates nothing: the peer, and a client behind
//! proxies read from a forwarding list. Its own test binary, because it
//! counts every allocation of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::ConnectInfo;
use http::Request;
use traffik_axum::{ClientIp, Identity, IdentityExtractor, IpSource, PeerIp, RequestHead};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, counting.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_of(run: impl FnOnce() -> Identity) -> (usize, Identity) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let identity = run();
    (ALLOCATIONS.load(Ordering::Relaxed) - before, identity)
}

#[test]
fn ip_identities_are_found_without_allocating() {
    let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
    let request = Request::get("/")
        .header("x-forwarded-for", "6.6.6.6, 2001:db8:1:2::7, 10.0.0.2")
        .header(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::9]:443\";proto=https, for=10.0.0.3",
        )
        .header("cloudfront-viewer-address", "198.51.100.10:46532")
        .extension(ConnectInfo(peer))
        .body(())
        .unwrap();
    let extractors = [
        ClientIp::trusting(IpSource::XForwardedFor, ["10.0.0.0/8"]).unwrap(),
        ClientIp::trusting(IpSource::Forwarded, ["10.0.0.0/8"]).unwrap(),
        ClientIp::trusting(IpSource::CloudFrontViewerAddress, ["10.0.0.0/8"]).unwrap(),
        ClientIp::hops(IpSource::XForwardedFor, 2).unwrap(),
    ];
    let expected = [
        "net:2001:db8:1:2::/64",
        "net:2001:db8::/64",
        "ip:198.51.100.10",
        "net:2001:db8:1:2::/64",
    ];
    for (extractor, expected) in extractors.iter().zip(expected) {
        let (count, identity) = allocations_of(|| {
            let answer = extractor.identify(RequestHead::from(&request));
            answer.into_ready().ok().unwrap().unwrap()
        });
        assert_eq!(identity.to_string(), expected);
        assert_eq!(count, 0, "{extractor:?} allocated");
    }
    let peer_ip = PeerIp::new();
    let (count, identity) = allocations_of(|| {
        let answer = peer_ip.identify(RequestHead::from(&request));
        answer.into_ready().ok().unwrap().unwrap()
    });
    assert_eq!(identity.to_string(), "ip:10.0.0.1");
    assert_eq!(count, 0, "PeerIp allocated");
}
