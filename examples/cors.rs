//! A paywalled API that browser pages on another origin can call: the CORS set-up for the
//! payment headers.
//!
//! ```sh
//! cargo run --example mock_node &     # RPC on 127.0.0.1:45000
//! cargo run --example cors            # http://127.0.0.1:3000/paid, for pages on http://localhost:5173
//! ```
//!
//! Two rules make it work:
//! - `CorsLayer` sits **outside** the paywall (`Router::layer` wraps the `route_layer`). It
//!   answers every preflight (`OPTIONS`) itself, so neither the paywall nor the handler ever
//!   sees one, and it adds `Access-Control-Allow-Origin` to every answer, 402s included.
//!   Inside the paywall, a preflight would be priced like any request and get a 402, which a
//!   browser treats as a failed preflight.
//! - `.expose_headers(true)` on the paywall lists the payment headers (`X-PAYMENT-*`,
//!   `PAYMENT-REQUIRED`, `PAYMENT-RESPONSE`, `Retry-After`) in `Access-Control-Expose-Headers`,
//!   so the page's script can read the challenge and the receipt; the preflight allows the
//!   proof headers (`X-PAYMENT-SESSION`, `X-PAYMENT-BLOCK`, `PAYMENT-SIGNATURE`) on the retry.
//!
//! Settings: `CORS_ORIGIN` (default `http://localhost:5173`), `NANOSESSION_PAY_TO` (default the
//! dev genesis account), `NANO_RPC_URLS` (default the mock node), `NANOSESSION_LISTEN` (default
//! `127.0.0.1:3000`).

use std::time::Duration;

use axum::http::{header, HeaderValue, Method};
use axum::routing::{get, MethodRouter};
use axum::{Extension, Json, Router};
use nanosession::layer::{ConfigError, JsonBody};
use nanosession::nano::{Address, Raw};
use nanosession::protocol::headers::{PAYMENT_SIGNATURE, X_PAYMENT_BLOCK, X_PAYMENT_SESSION};
use nanosession::rpc::NanoRpcClient;
use nanosession::verify::{NanoRpcVerifier, PaymentVerifier};
use nanosession::{PaymentRequiredLayer, VerifiedPayment};
use tower_http::cors::CorsLayer;

/// The browser origin allowed by default (a local dev server's).
pub const DEFAULT_ORIGIN: &str = "http://localhost:5173";

/// The CORS answer for pages on `origin`: they may send the proof headers, and preflights are
/// cached for ten minutes.
pub fn cors(origin: HeaderValue) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([X_PAYMENT_SESSION, X_PAYMENT_BLOCK, PAYMENT_SIGNATURE, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// The paywall: 10^-6 XNO per request, payment headers exposed to cross-origin scripts.
pub fn paywall(
    pay_to: Address,
    public_base_url: &str,
    verifier: impl PaymentVerifier,
) -> Result<PaymentRequiredLayer<JsonBody>, ConfigError> {
    Ok(PaymentRequiredLayer::builder()
        .pay_to(pay_to)
        .price(Raw::new(1_000_000_000_000_000_000_000_000))
        .network("nano:dev")
        .public_base_url(public_base_url)
        .expose_headers(true)
        .verifier(verifier)
        .build()?
        .json_body())
}

/// `/paid` behind the paywall, `/` free, and CORS around both (outside the paywall).
pub fn app(paywall: PaymentRequiredLayer<JsonBody>, origin: HeaderValue, paid: MethodRouter) -> Router {
    Router::new()
        .route("/paid", paid)
        .route_layer(paywall)
        .route("/", get(|| async { "free\n" }))
        .layer(cors(origin))
}

/// The paid handler.
pub async fn paid(Extension(payment): Extension<VerifiedPayment>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "paid": true, "block": payment.block.to_string() }))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty()).unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let origin = env_or("CORS_ORIGIN", DEFAULT_ORIGIN);
    let origin = HeaderValue::from_str(&origin).map_err(|e| format!("CORS_ORIGIN is invalid: {e}"))?;
    let pay_to: Address = env_or("NANOSESSION_PAY_TO", nanosession::mock_node::GENESIS_ADDRESS)
        .parse()
        .map_err(|e| format!("NANOSESSION_PAY_TO is invalid: {e}"))?;
    let node = NanoRpcClient::new(env_or("NANO_RPC_URLS", "http://127.0.0.1:45000").split(','))
        .map_err(|e| format!("NANO_RPC_URLS is invalid: {e}"))?;
    let listen = env_or("NANOSESSION_LISTEN", "127.0.0.1:3000");
    let paywall = paywall(pay_to, &format!("http://{listen}"), NanoRpcVerifier::builder(node).build())?;
    let app = app(paywall, origin.clone(), get(paid));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("http://{listen}/paid costs 0.000001 XNO; pages on {origin:?} may call it");
    axum::serve(listener, app).await?;
    Ok(())
}
