//! Latency of the paid retry over loopback sockets against the mock node, two ways: verified by
//! the node (`NanoRpcVerifier`: `block_info` of the block and of its previous block) and settled
//! from the confirmation watcher's match (no node round trip, the 0-RPC path).
//!
//! ```sh
//! cargo run --release --example watched_latency
//! ```

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{work, Address, BlockHash, PrivateKey, Raw, StateBlock};
use nanosession::protocol::PaymentRequired;
use nanosession::rpc::NanoRpcClient;
use nanosession::store::Stores;
use nanosession::verify::NanoRpcVerifier;
use nanosession::watcher::ConfirmationWatcher;
use nanosession::PaymentRequiredLayer;

const PRICE: Raw = Raw::new(1_000_000_000_000_000_000_000_000);
const N: usize = 300;

async fn serve(node: &MockNode, merchant: Address, stores: Stores) -> String {
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant)
        .price(PRICE)
        .network("nano:dev")
        .public_base_url("http://127.0.0.1")
        .stores(stores)
        .verifier(NanoRpcVerifier::new(NanoRpcClient::new([node.rpc_url()]).unwrap()))
        .verifications_per_session(1000)
        .build()
        .unwrap();
    let app = Router::new().route("/paid", get(|| async { "ok" })).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Pays `n` challenges of `url` from `key`; returns the latency of each paid retry.
async fn run(
    node: &MockNode,
    url: &str,
    key: &PrivateKey,
    frontier: &mut (BlockHash, Raw),
    wait_match: impl Fn() -> u64,
) -> Vec<Duration> {
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(N);
    for _ in 0..N {
        let res = http.get(url).send().await.unwrap();
        let required = PaymentRequired::from_header(res.headers().get("payment-required").unwrap()).unwrap();
        let session = required.accepts[0].extra.nano_session.as_ref().unwrap().id.to_string();
        let amount = required.accepts[0].amount;
        let merchant = required.accepts[0].pay_to;
        let left = frontier.1.checked_sub(amount).unwrap();
        let mut block =
            StateBlock::send(key.public_key(), frontier.0, key.public_key(), left, merchant.public_key());
        block.sign(key);
        block.work =
            work::generate(&block.work_root(), node.work_thresholds().epoch_2, &AtomicBool::new(false))
                .unwrap();
        let before = wait_match();
        let hash = node.process(&block).unwrap();
        node.confirm(&hash);
        *frontier = (hash, left);
        // The watched run waits for the match first (it happens while the client is away).
        while wait_match() == before && before != u64::MAX {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let started = Instant::now();
        let paid = http
            .get(url)
            .header("x-payment-session", session)
            .header("x-payment-block", hash.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(paid.status(), 200);
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

fn report(name: &str, l: &[Duration]) {
    let at = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)];
    println!(
        "{name:<28} p50 {:>8.2?}  p90 {:>8.2?}  p99 {:>8.2?}  (n = {})",
        at(0.5),
        at(0.9),
        at(0.99),
        l.len()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let key = PrivateKey::from_bytes(rand::random());
    let open = node.fund(&key, Raw::ONE_XNO).await;
    let mut frontier = (open, Raw::ONE_XNO);

    let merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let url = serve(&node, merchant, Stores::memory()).await;
    let rpc = run(&node, &url, &key, &mut frontier, || u64::MAX).await;

    let merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let stores = Stores::memory();
    let url = serve(&node, merchant, stores.clone()).await;
    let watcher =
        ConfirmationWatcher::builder(NanoRpcClient::new([node.rpc_url()]).unwrap(), stores.sessions)
            .account(merchant)
            .websocket(node.ws_url())
            .spawn();
    while watcher.stats().connections == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let watched = run(&node, &url, &key, &mut frontier, || watcher.stats().matched).await;

    println!("paid retry over loopback, memory store, mock node on loopback:");
    report("verified by the node (RPC)", &rpc);
    report("watched (0-RPC)", &watched);
}
