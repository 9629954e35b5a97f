//! What the examples' tests share: the demo served on a free loopback port.

use std::net::SocketAddr;

/// Serves `app` (with `ConnectInfo`, as the demo is served) on a free
/// loopback port until the test ends; its address.
pub(crate) fn serve(app: axum::Router) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    address
}
