//! The axum extractor for `VerifiedPayment` (feature `axum`).

mod common;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use common::fake::FakeLedger;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use nanosession::nano::Raw;
use nanosession::{PaymentRequiredLayer, VerifiedPayment};
use tower::ServiceExt;

#[tokio::test]
async fn handlers_take_verified_payment_directly() {
    let merchant = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap();
    let ledger = FakeLedger::new();
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant)
        .price(Raw::new(10_000_000))
        .public_base_url("https://api.example.com")
        .verifier_shared(ledger.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/paid", get(|payment: VerifiedPayment| async move { payment.block.to_string() }))
        .route_layer(layer)
        .route("/unguarded", get(|_: VerifiedPayment| async { "never" }));

    let res = app.clone().oneshot(Request::get("/paid").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
    let header = |name: &str| res.headers()[name].to_str().unwrap().to_owned();
    let (session, tag): (String, u128) =
        (header("x-payment-session"), header("x-payment-tag").parse().unwrap());
    let block = ledger.pay(merchant, Raw::new(10_000_000 + tag));
    let paid = Request::get("/paid")
        .header("x-payment-session", session)
        .header("x-payment-block", block.to_string())
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(paid).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), block.to_string());

    // A route outside the layer that asks for a payment is a server bug: 500, never a free pass.
    let res = app.oneshot(Request::get("/unguarded").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
