//! gRPC has no 402: a gRPC client reads `grpc-status` from the trailers, or from the headers of
//! a *trailers-only* response (HTTP 200, no body). This module knows how to recognise a gRPC
//! request and how to write such a response; the layer decides what goes in it.
//!
//! The challenge rides in ASCII metadata under the same names as the HTTP headers
//! (`x-payment-*`, `payment-required`), and the paid retry carries the proof the same way
//! (`x-payment-session` + `x-payment-block`, or `payment-signature`). A tonic client reads them
//! from `Status::metadata()`; a tonic handler finds [`VerifiedPayment`](crate::VerifiedPayment)
//! in `request.extensions()`.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue};

/// `grpc-status`.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// True for `content-type: application/grpc` exactly, its `+proto`/`+json` variants and
/// parameters (`;…`); not for any other type that merely starts the same way.
///
/// ```
/// # use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
/// let is = |ct: &'static str| nanosession::grpc::is_grpc(&HeaderMap::from_iter([(CONTENT_TYPE, HeaderValue::from_static(ct))]));
/// assert!(is("application/grpc") && is("application/grpc+proto") && is("application/grpc;charset=utf-8"));
/// assert!(!is("application/grpcfoo") && !is("application/grpc-web-text"));
/// ```
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// Turns `headers` into those of a trailers-only gRPC response with `code` and `message`.
pub(crate) fn trailers_only(headers: &mut HeaderMap, code: i32, message: &str) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(code));
    headers.insert(GRPC_MESSAGE, percent_encode(message));
}

/// gRPC's `grpc-message` encoding: printable ASCII except `%` as is, every other byte `%XX`.
fn percent_encode(message: &str) -> HeaderValue {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::try_from(out).expect("percent-encoded text is visible ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_grpc_and_encodes_messages() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        assert!(is_grpc(&h));
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert!(!is_grpc(&h));
        assert_eq!(percent_encode("100% sûr"), "100%25 s%C3%BBr");
    }
}
