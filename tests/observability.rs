//! What a deployment sees: the `metrics` facade's series (rendered by the Prometheus exporter,
//! as `examples/server.rs` serves them) and one `tracing` span per priced request, over a real
//! payment against the mock node. Each test installs its recorder and subscriber for its own
//! thread only (a current-thread runtime), so tests cannot see each other's events.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use common::fake::FailingStore;
use common::logs::Logs;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use nanosession::client::{PayingClient, Wallet, WorkThresholds};
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{Address, PrivateKey, Raw, Seed};
use nanosession::protocol::Offer;
use nanosession::rpc::NanoRpcClient;
use nanosession::store::{MemorySessionStore, MemorySpentSet};
use nanosession::verify::NanoRpcVerifier;
use nanosession::PaymentRequiredLayer;
use tracing_subscriber::fmt::format::FmtSpan;

const PRICE: Raw = Raw::new(1_000_000_000_000_000_000_000_000);

/// Runs `test` on a current-thread runtime with a Prometheus recorder and a span-logging
/// subscriber of its own; returns the rendered metrics and the log.
fn observed<F: std::future::Future<Output = ()>>(
    test: impl FnOnce(PrometheusHandle) -> F,
) -> (String, String) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let inner = handle.clone();
    metrics::with_local_recorder(&recorder, || {
        tracing::subscriber::with_default(subscriber, || rt.block_on(test(inner)));
    });
    (handle.render(), logs.text())
}

/// The value of the series `name{labels}` (labels as rendered, sorted by the exporter).
fn value(rendered: &str, series: &str) -> Option<f64> {
    rendered.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn serve(layer: PaymentRequiredLayer<nanosession::layer::JsonBody>) -> String {
    let app = Router::new().route("/paid", get(|| async { "paid" }).route_layer(layer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[test]
fn a_payment_shows_in_metrics_and_one_span_per_request_without_secrets() {
    let secret = "s3cret-rpc-password";
    let mut session_ids = Vec::new();
    let ids = &mut session_ids;
    let (rendered, logs) = observed(|_| async move {
        let node = MockNode::start(MockNodeConfig::default()).unwrap();
        let port = node.rpc_url().trim_end_matches('/').rsplit(':').next().unwrap().to_owned();
        let endpoint = format!("http://user:{secret}@127.0.0.1:{port}/");
        let merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
        let verifier = NanoRpcVerifier::builder(NanoRpcClient::new([endpoint]).unwrap())
            .poll_interval(Duration::from_millis(20))
            .build();
        let layer = PaymentRequiredLayer::builder()
            .pay_to(merchant)
            .price(PRICE)
            .network("nano:dev")
            .public_base_url("http://127.0.0.1")
            .verifier(verifier)
            .build()
            .unwrap()
            .json_body();
        let url = serve(layer).await;

        // A 402, then a payment through the client, then a replay of its block by hand.
        let offer = Offer::from_headers(reqwest::get(&url).await.unwrap().headers()).unwrap();
        ids.push(offer.session.unwrap().to_string());
        let seed = Seed::from_bytes(rand::random());
        node.fund(&seed.derive(0), Raw::ONE_XNO).await;
        let wallet = Wallet::from_seed(&seed, 0).with_limits(Raw::ONE_XNO, Raw::ONE_XNO);
        let client = PayingClient::builder(wallet, NanoRpcClient::new([node.rpc_url()]).unwrap())
            .work_thresholds(WorkThresholds::DEV)
            .network("nano:dev")
            .build();
        let paid = client.get(&url).await.unwrap();
        assert_eq!(paid.response.status(), 200);
        let payment = paid.payment.unwrap();
        ids.push(payment.offer.session.unwrap().to_string());
        let fresh = Offer::from_headers(reqwest::get(&url).await.unwrap().headers()).unwrap();
        ids.push(fresh.session.unwrap().to_string());
        let replay = reqwest::Client::new()
            .get(&url)
            .headers(fresh.proof_headers(&payment.block, false))
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status(), 402);

        // A store that is down: the 402 cannot be issued (a 503), and that is counted.
        let failing =
            FailingStore::new(Arc::new(MemorySessionStore::default()), Arc::new(MemorySpentSet::default()));
        failing.set_down(true);
        let layer = PaymentRequiredLayer::builder()
            .pay_to(merchant)
            .price(PRICE)
            .public_base_url("http://127.0.0.1")
            .session_store_shared(failing.clone())
            .spent_set_shared(failing)
            .verifier(NanoRpcVerifier::builder(NanoRpcClient::new([node.rpc_url()]).unwrap()).build())
            .build()
            .unwrap()
            .json_body();
        let down = serve(layer).await;
        assert_eq!(reqwest::get(&down).await.unwrap().status(), 503);
        // The size gauges are sampled in the background.
        tokio::time::sleep(Duration::from_millis(200)).await;
    });

    let v = |series: &str| value(&rendered, series).unwrap_or_else(|| panic!("no {series} in\n{rendered}"));
    assert_eq!(v("nanosession_challenges_total"), 3.0, "two 402s by hand, one to the client");
    assert_eq!(v("nanosession_grants_total{confirmation=\"node\"}"), 1.0);
    assert_eq!(v("nanosession_refusals_total{reason=\"already_spent\"}"), 1.0);
    assert_eq!(v("nanosession_challenge_failures_total{reason=\"store_unavailable\"}"), 1.0);
    assert_eq!(
        v("nanosession_refusals_total{reason=\"store_unavailable\"}"),
        1.0,
        "a failed 402 is a refusal too"
    );
    assert_eq!(v("nanosession_verify_seconds_count"), 1.0, "the replay is refused before the verifier");
    assert!(v("nanosession_store_seconds_count{backend=\"memory\",op=\"insert\"}") >= 3.0);
    // A grant's claim and take are one store operation (one transaction where the backend can).
    assert!(v("nanosession_store_seconds_count{backend=\"memory\",op=\"claim_and_take\"}") >= 1.0);
    assert_eq!(v("nanosession_store_errors_total{backend=\"custom\",op=\"insert\"}"), 1.0);
    assert!(v("nanosession_pending_sessions{backend=\"memory\"}") >= 1.0, "sampled on the first 402");
    assert!(rendered.contains("nanosession_spent_entries{backend=\"memory\"}"), "{rendered}");
    let rpc = rendered
        .lines()
        .find(|l| l.starts_with("nanosession_rpc_requests_total{") && l.contains("action=\"block_info\""))
        .unwrap_or_else(|| panic!("no block_info RPC series in\n{rendered}"));
    assert!(rpc.contains("endpoint=\"http://127.0.0.1:"), "endpoints are labelled redacted: {rpc}");
    assert!(rendered.contains("nanosession_rpc_seconds_count{action=\"block_info\"}"), "{rendered}");
    assert!(!rendered.contains(secret) && !logs.contains(secret), "an RPC credential leaked");

    // One span per priced request, closed with what happened.
    let closes: Vec<&str> =
        logs.lines().filter(|l| l.contains("nanosession{") && l.contains("close")).collect();
    let granted = closes
        .iter()
        .find(|l| l.contains("kind=\"published\"") && l.contains("status=200"))
        .unwrap_or_else(|| panic!("no granted span in\n{logs}"));
    assert!(granted.contains("verify_us=") && granted.contains("payer=nano_"), "{granted}");
    assert!(closes.iter().any(|l| l.contains("kind=\"challenge\"") && l.contains("status=402")), "{logs}");
    assert!(closes.iter().any(|l| l.contains("reason=\"already_spent\"")), "{logs}");
    assert!(
        closes.iter().any(|l| l.contains("reason=\"store_unavailable\"") && l.contains("status=503")),
        "{logs}"
    );
    for id in &session_ids {
        assert!(!logs.contains(id.as_str()), "a session id reached the log");
    }
}
