//! Interoperability: a client sharing no code with this crate pays the layer by hand-off
//! (spec §9). `tests/interop/handoff.mjs` builds, signs and works the block with the
//! independent `nanocurrency` library and encodes the headers with the stock x402 SDK codecs
//! (`@x402/core/http`); this test runs it with Node against the layer and the mock node.
//!
//! `./scripts/test` installs its npm packages (`npm ci`) and sets `NSTEST_INTEROP=1`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{Address, BlockHash, PrivateKey, Raw};
use nanosession::rpc::NanoRpcClient;
use nanosession::verify::NanoRpcVerifier;
use nanosession::{PaymentRequiredLayer, VerifiedPayment};
use serde_json::Value;

const PRICE: Raw = Raw::new(1_000_000_000_000_000_000_000_000); // 10^-6 XNO

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_x402_client_pays_by_handoff() {
    if std::env::var("NSTEST_INTEROP").is_err() {
        eprintln!(
            "NSTEST_INTEROP is not set: skipping (./scripts/test installs the npm packages and runs it)"
        );
        return;
    }
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let verifier = Arc::new(
        NanoRpcVerifier::builder(NanoRpcClient::new([node.rpc_url()]).unwrap())
            .poll_interval(Duration::from_millis(50))
            .build(),
    );
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant)
        .price(PRICE)
        .network("nano:dev")
        .public_base_url("http://127.0.0.1")
        .verifier_shared(verifier.clone())
        .accept_signed_blocks(verifier)
        .work_threshold(node.work_thresholds().epoch_2)
        .build()
        .unwrap()
        .json_body();
    let app = Router::new().route(
        "/paid",
        get(|Extension(p): Extension<VerifiedPayment>| async move { format!("paid by {}", p.payer) })
            .route_layer(layer),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let secret: [u8; 32] = rand::random();
    let key = PrivateKey::from_bytes(secret);
    let account = Address::from(key.public_key());
    node.fund(&key, Raw::ONE_XNO).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    let mut spent = Raw::ZERO;
    // The session echoed, then found by amount with legacy `xrb_` addresses.
    for flags in [&[][..], &["--no-session-echo", "--xrb"][..]] {
        let (url, rpc, secret) = (url.clone(), node.rpc_url(), hex::encode(secret));
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let output = tokio::task::spawn_blocking(move || {
            Command::new("node")
                .current_dir(dir)
                .arg("handoff.mjs")
                .args([&url, &rpc, &secret])
                .args(&flags)
                .output()
        })
        .await
        .unwrap()
        .expect("node runs (./scripts/test installs it)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "handoff.mjs failed: {stderr}");
        let line: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
        assert_eq!(line["firstStatus"], 402);
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["body"], format!("paid by {account}"));
        let receipt = &line["paymentResponse"];
        assert_eq!(receipt["success"], true, "{line}");
        let hash: BlockHash = line["hash"].as_str().unwrap().parse().unwrap();
        assert_eq!(receipt["transaction"].as_str().unwrap().to_uppercase(), hash.to_string());
        assert!(node.is_confirmed(&hash), "the layer published the client's block");
        let block = node.block(&hash).unwrap();
        assert_eq!(&block.link, merchant.public_key().as_bytes());
        spent = Raw::ONE_XNO.checked_sub(block.balance).unwrap();
    }
    assert_eq!(node.balance(&account), Raw::ONE_XNO.checked_sub(spent).unwrap());
}
