//! The CORS set-up of `examples/cors.rs` (included below, so the example is what is tested):
//! `CorsLayer` outside the paywall answers preflights itself, so neither the paywall's verifier
//! nor the handler ever sees one, and 402s and paid answers carry the CORS headers a page needs
//! to read the challenge and the receipt.

#[path = "../examples/cors.rs"]
#[allow(dead_code)]
mod example;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use axum::routing::any;
use axum::Router;
use nanosession::nano::{Address, BlockHash, PublicKey};
use nanosession::verify::{Confirmation, Expected, PaymentVerifier, Rejection, VerifiedBlock};
use tower::ServiceExt;

const ORIGIN: &str = "https://app.example.test";
const MERCHANT: &str = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo";
const BLOCK: &str = "A170D51B94E00371ACE76E35AC81DC9405D5D04D4CEBC399AEACE07AE05DD293";

/// Grants any block for the exact amount, and counts its calls.
#[derive(Default)]
struct CountingVerifier(Arc<AtomicUsize>);

#[async_trait]
impl PaymentVerifier for CountingVerifier {
    async fn verify(&self, hash: &BlockHash, expected: &Expected) -> Result<VerifiedBlock, Rejection> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(VerifiedBlock {
            hash: *hash,
            payer: Address::from(PublicKey::from_bytes([5; 32])),
            amount: expected.amount,
            first_seen: expected.not_before + 1,
            confirmation: Confirmation::AlreadyConfirmed,
        })
    }
}

/// The example's app over a method-agnostic handler (the worst case: any request that reached
/// it would be served) that counts its calls; the verifier's and the handler's counters.
fn app() -> (Router, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let verified = Arc::new(AtomicUsize::new(0));
    let handled = Arc::new(AtomicUsize::new(0));
    let paywall = example::paywall(
        MERCHANT.parse().unwrap(),
        "https://api.example.test",
        CountingVerifier(verified.clone()),
    )
    .unwrap();
    let counter = handled.clone();
    let paid = any(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "the paid content" }
    });
    (example::app(paywall, HeaderValue::from_static(ORIGIN), paid), verified, handled)
}

async fn send(app: &Router, req: Request<Body>) -> Response<Body> {
    app.clone().oneshot(req).await.unwrap()
}

fn header<'a>(res: &'a Response<Body>, name: &str) -> &'a str {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The comma-separated, case-insensitive entries of header `name`.
fn list(res: &Response<Body>, name: &str) -> Vec<String> {
    res.headers()
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn preflight(headers: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/paid")
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", headers)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_preflight_is_answered_by_cors_and_reaches_neither_verifier_nor_handler() {
    let (app, verified, handled) = app();
    let res = send(&app, preflight("x-payment-session, x-payment-block")).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), ORIGIN);
    let allowed = list(&res, "access-control-allow-headers");
    for name in ["x-payment-session", "x-payment-block", "payment-signature"] {
        assert!(allowed.contains(&name.to_owned()), "{name} not in {allowed:?}");
    }
    assert!(list(&res, "access-control-allow-methods").contains(&"get".to_owned()));
    assert!(res.headers().get("x-payment-session").is_none(), "no challenge: the paywall never saw it");
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    assert_eq!(verified.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_options_request_with_a_body_and_proof_headers_still_stops_at_cors() {
    // The F1 request: OPTIONS with the two CORS headers, a payload, and made-up proof headers.
    let (app, verified, handled) = app();
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/paid")
        .header("origin", "https://attacker.example")
        .header("access-control-request-method", "POST")
        .header("content-type", "application/grpc")
        .header("x-payment-session", "00112233445566778899aabbccddeeff")
        .header("x-payment-block", BLOCK)
        .body(Body::from(vec![0u8, 0, 0, 0, 4, 0x0a, 0x02, b'h', b'i']))
        .unwrap();
    let res = send(&app, req).await;
    let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
    assert!(!String::from_utf8_lossy(&body).contains("the paid content"));
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    assert_eq!(verified.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_cross_origin_get_gets_a_402_a_page_can_read_and_its_paid_retry_a_readable_receipt() {
    let (app, verified, handled) = app();
    let get = |headers: &[(&str, &str)]| {
        let mut req = Request::builder().uri("/paid").header("origin", ORIGIN);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.body(Body::empty()).unwrap()
    };
    let challenge = send(&app, get(&[])).await;
    assert_eq!(challenge.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(header(&challenge, "access-control-allow-origin"), ORIGIN);
    let exposed = list(&challenge, "access-control-expose-headers");
    for name in [
        "x-payment-address",
        "x-payment-amount",
        "x-payment-tag",
        "x-payment-tag-modulus",
        "x-payment-session",
        "x-payment-expires",
        "payment-required",
        "payment-response",
    ] {
        assert!(exposed.contains(&name.to_owned()), "{name} not exposed: {exposed:?}");
    }
    assert_eq!(handled.load(Ordering::SeqCst), 0);

    let session = header(&challenge, "x-payment-session").to_owned();
    let paid = send(&app, get(&[("x-payment-session", &session), ("x-payment-block", BLOCK)])).await;
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(header(&paid, "access-control-allow-origin"), ORIGIN);
    assert!(list(&paid, "access-control-expose-headers").contains(&"payment-response".to_owned()));
    assert!(paid.headers().contains_key("payment-response"));
    assert_eq!((handled.load(Ordering::SeqCst), verified.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test]
async fn another_origin_is_not_named_as_allowed() {
    let (app, _, _) = app();
    let req = Request::builder()
        .uri("/paid")
        .header("origin", "https://other.example")
        .body(Body::empty())
        .unwrap();
    let res = send(&app, req).await;
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED, "CORS does not refuse; the browser does");
    // Only the configured origin is named, so the browser withholds the answer from the page.
    assert_eq!(header(&res, "access-control-allow-origin"), ORIGIN);
}
