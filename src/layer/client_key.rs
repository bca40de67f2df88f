//! Ready-made client keys for
//! [`sessions_per_client`](super::PaymentRequiredLayerBuilder::sessions_per_client): who is
//! asking, read from the request head.
//!
//! The key is hashed with a per-layer random key before it is counted, so addresses are
//! never kept in clear.

use http::request::Parts;

/// The last value of `name` (for `X-Forwarded-For`, the address your own proxy appended; earlier
/// values are whatever the client wrote). Use it only behind a proxy that sets the header.
///
/// ```
/// use nanosession::layer::client_key;
/// let key = client_key::header("x-forwarded-for");
/// let (parts, ()) = http::Request::get("/").header("x-forwarded-for", "1.2.3.4, 10.0.0.7")
///     .body(()).unwrap().into_parts();
/// assert_eq!(key(&parts).as_deref(), Some("10.0.0.7"));
/// ```
pub fn header(name: &'static str) -> impl Fn(&Parts) -> Option<String> + Send + Sync + Clone + 'static {
    move |parts: &Parts| {
        let value = parts.headers.get_all(name).iter().next_back()?.to_str().ok()?;
        let last = value.rsplit(',').next()?.trim();
        (!last.is_empty()).then(|| last.to_owned())
    }
}

/// The peer's IP address from axum's `ConnectInfo<SocketAddr>` (serve the router with
/// `into_make_service_with_connect_info::<SocketAddr>()`); `None` without it (logged once,
/// since all such requests then share one bound). IPv6 peers are keyed by their /64, the
/// smallest block one host is given.
#[cfg(feature = "axum")]
pub fn peer_ip(parts: &Parts) -> Option<String> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let Some(axum::extract::ConnectInfo(addr)) =
        parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    else {
        WARNED.call_once(|| {
            tracing::warn!("client_key::peer_ip: no ConnectInfo (serve with into_make_service_with_connect_info); all clients share one bound")
        });
        return None;
    };
    Some(match addr.ip().to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        v4 => v4.to_string(),
    })
}
