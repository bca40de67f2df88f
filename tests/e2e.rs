//! End to end with no fakes between the pieces: `PayingClient` -> axum server with
//! `PaymentRequiredLayer` -> `NanoRpcVerifier` -> `MockNode`, all over loopback sockets.

mod common;

use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use nanosession::client::{ClientError, PayingClient, SpendError, Wallet, WorkThresholds};
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{Address, BlockHash, PrivateKey, Raw, Seed};
use nanosession::protocol::Offer;
use nanosession::rpc::NanoRpcClient;
use nanosession::verify::NanoRpcVerifier;
use nanosession::{PaymentRequiredLayer, VerifiedPayment};

const PRICE: Raw = Raw::new(1_000_000_000_000_000_000_000_000); // 10^-6 XNO
const FUNDS: Raw = Raw::ONE_XNO;

struct World {
    node: MockNode,
    url: String,
    merchant: Address,
}

/// A mock node and a paywall server verifying against it through `rpc_urls` (the node's own
/// URL unless a test puts other endpoints in front).
async fn world_with(
    config: MockNodeConfig,
    rpc_urls: impl FnOnce(&MockNode) -> Vec<String>,
    confirm_wait: Duration,
) -> World {
    let node = MockNode::start(config).unwrap();
    let merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let verifier = NanoRpcVerifier::builder(
        NanoRpcClient::builder()
            .endpoints(rpc_urls(&node))
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap(),
    )
    .poll_interval(Duration::from_millis(50))
    .build();
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant)
        .price(PRICE)
        .network("nano:dev")
        .public_base_url("http://127.0.0.1")
        .confirm_wait(confirm_wait)
        .verifier(verifier)
        .build()
        .unwrap()
        .json_body();
    let app = Router::new().route(
        "/paid",
        get(|Extension(p): Extension<VerifiedPayment>| async move { format!("{}|{}", p.block, p.payer) })
            .route_layer(layer),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    World { node, url, merchant }
}

async fn world() -> World {
    world_with(MockNodeConfig::default(), |n| vec![n.rpc_url()], Duration::from_secs(3)).await
}

impl World {
    /// A funded customer and a client paying from it.
    async fn customer(&self, x402: bool) -> (PayingClient, Address) {
        let seed = Seed::from_bytes(rand::random());
        self.node.fund(&seed.derive(0), FUNDS).await;
        let wallet =
            Wallet::from_seed(&seed, 0).with_limits(PRICE.checked_add(Raw::new(10_000_000)).unwrap(), FUNDS);
        let account = wallet.account();
        let builder = PayingClient::builder(wallet, NanoRpcClient::new([self.node.rpc_url()]).unwrap())
            .work_thresholds(WorkThresholds::DEV)
            .network("nano:dev")
            .retries(10, Duration::from_secs(1));
        let client = if x402 { builder.build() } else { builder.rev5_headers().build() };
        (client, account)
    }

    async fn challenge(&self) -> Offer {
        let res = reqwest::get(&self.url).await.unwrap();
        assert_eq!(res.status(), 402);
        Offer::from_headers(res.headers()).unwrap()
    }

    /// Presents `block` for `offer`'s session by hand (what an attacker would do).
    async fn present(&self, offer: &Offer, block: &nanosession::nano::BlockHash) -> (u16, String) {
        let res = reqwest::Client::new()
            .get(&self.url)
            .headers(offer.proof_headers(block, false))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        (status, body["reason"].as_str().unwrap_or("").to_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pays_and_is_served_in_both_header_forms() {
    let w = world().await;
    for x402 in [true, false] {
        let (client, account) = w.customer(x402).await;
        let paid = client.get(&w.url).await.unwrap();
        assert_eq!(paid.response.status(), 200, "x402 form: {x402}");
        let payment = paid.payment.expect("a payment was made");
        let body = paid.response.text().await.unwrap();
        assert_eq!(body, format!("{}|{}", payment.block, account), "the handler saw the payment");
        assert_eq!(
            w.node.balance(&account),
            FUNDS.checked_sub(payment.offer.amount).unwrap(),
            "paid exactly once"
        );
        assert!(w.node.is_confirmed(&payment.block));
        let block = w.node.block(&payment.block).unwrap();
        assert_eq!(block.link, *w.merchant.public_key().as_bytes(), "the send credits the merchant");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_block_is_refused() {
    let w = world().await;
    let (client, _) = w.customer(true).await;
    let payment = client.get(&w.url).await.unwrap().payment.unwrap();
    let fresh = w.challenge().await;
    assert_eq!(w.present(&fresh, &payment.block).await, (402, "already_spent".into()));
    assert_eq!(
        w.present(&payment.offer, &payment.block).await,
        (409, "already_granted".into()),
        "the session was consumed by this very block: granted, never again"
    );
}

/// An observer sees the victim's block on the ledger and presents it with a session of its own:
/// the amount carries the victim's tag, so it does not pay the thief's session; the victim is
/// then served as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_theft_fails_and_the_victim_is_still_served() {
    let w = world().await;
    let (victim, _) = w.customer(true).await;
    let offer = w.challenge().await;
    let block = victim.pay(&offer).await.unwrap(); // published, not yet presented

    let thief = w.challenge().await;
    assert_ne!(thief.amount, offer.amount);
    assert_eq!(w.present(&thief, &block).await, (402, "wrong_amount".into()));
    assert_eq!(w.present(&offer, &block).await, (200, String::new()), "the victim's own retry succeeds");
}

/// The node confirms after the server's wait: the server answers `block_not_confirmed` with
/// Retry-After, the client retries with the same proof, and pays only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfirmed_then_confirmed_without_paying_twice() {
    let config = MockNodeConfig { confirmation_delay: Duration::from_millis(1500), ..Default::default() };
    let w = world_with(config, |n| vec![n.rpc_url()], Duration::from_millis(200)).await;
    let (client, account) = {
        let seed = Seed::from_bytes(rand::random());
        // Funding blocks confirm late too; they need not be confirmed to be spent from.
        w.node.fund(&seed.derive(0), FUNDS).await;
        let wallet =
            Wallet::from_seed(&seed, 0).with_limits(PRICE.checked_add(Raw::new(10_000_000)).unwrap(), FUNDS);
        let account = wallet.account();
        let client = PayingClient::builder(wallet, NanoRpcClient::new([w.node.rpc_url()]).unwrap())
            .work_thresholds(WorkThresholds::DEV)
            .network("nano:dev")
            .confirm_timeout(Duration::from_millis(100)) // do not wait: let the server say so
            .retries(10, Duration::from_secs(2))
            .build();
        (client, account)
    };
    let paid = client.get(&w.url).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let payment = paid.payment.unwrap();
    assert!(payment.attempts > 1, "the first retry met block_not_confirmed");
    assert_eq!(
        w.node.balance(&account),
        FUNDS.checked_sub(payment.offer.amount).unwrap(),
        "one payment only"
    );
}

/// The verifier's first endpoint refuses connections; the second is the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_fails_over_to_a_live_node() {
    let dead = common::refused_url();
    let w =
        world_with(MockNodeConfig::default(), move |n| vec![dead, n.rpc_url()], Duration::from_secs(3)).await;
    let (client, _) = w.customer(false).await;
    assert_eq!(client.get(&w.url).await.unwrap().response.status(), 200);
}

/// With the node answering HTTP 500, the server answers 503 and nothing is consumed; once the
/// node is back the same payment goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_outage_is_503_then_recovers() {
    let w = world().await;
    let (client, _) = w.customer(false).await;
    let offer = w.challenge().await;
    let block = client.pay(&offer).await.unwrap();
    w.node.faults().set_http_500(true);
    assert_eq!(w.present(&offer, &block).await, (503, "verifier_unavailable".into()));
    w.node.faults().set_http_500(false);
    assert_eq!(w.present(&offer, &block).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_before_anything_is_published() {
    let w = world().await;
    let seed = Seed::from_bytes(rand::random());
    w.node.fund(&seed.derive(0), FUNDS).await;
    let stingy = Wallet::from_seed(&seed, 0).with_limits(Raw::new(1), FUNDS);
    let account = stingy.account();
    let client = PayingClient::builder(stingy, NanoRpcClient::new([w.node.rpc_url()]).unwrap())
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .build();
    let error = client.get(&w.url).await.unwrap_err();
    assert!(matches!(error, ClientError::Spend(SpendError::OverLimit { .. })), "{error}");
    assert_eq!(w.node.balance(&account), FUNDS, "nothing was paid");

    let seed = Seed::from_bytes(rand::random());
    w.node.fund(&seed.derive(0), FUNDS).await;
    let broke = Wallet::from_seed(&seed, 0).with_limits(FUNDS, Raw::new(5));
    let client = PayingClient::builder(broke, NanoRpcClient::new([w.node.rpc_url()]).unwrap())
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .build();
    let error = client.get(&w.url).await.unwrap_err();
    assert!(matches!(error, ClientError::Spend(SpendError::OverBudget { .. })), "{error}");
}

/// Asked twice for the same challenge, the client pays once; its Debug output never shows the
/// wallet's seed or key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_challenge_is_paid_once_and_secrets_stay_hidden() {
    let w = world().await;
    let seed_bytes: [u8; 32] = rand::random();
    let seed = Seed::from_bytes(seed_bytes);
    w.node.fund(&seed.derive(0), FUNDS).await;
    let wallet = Wallet::from_seed(&seed, 0).with_limits(FUNDS, FUNDS);
    let account = wallet.account();
    let client = PayingClient::builder(wallet, NanoRpcClient::new([w.node.rpc_url()]).unwrap())
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .build();
    let offer = w.challenge().await;
    let first = client.pay(&offer).await.unwrap();
    let second = client.pay(&offer).await.unwrap();
    assert_eq!(first, second, "the same block for the same session");
    assert_eq!(w.node.balance(&account), FUNDS.checked_sub(offer.amount).unwrap(), "one send only");
    assert_eq!(client.wallet().remaining_budget(), FUNDS.checked_sub(offer.amount).unwrap());

    let printed = format!("{client:?} {:?}", client.wallet()).to_lowercase();
    assert!(printed.contains(&account.to_string()), "the account is shown: {printed}");
    assert!(!printed.contains(&hex::encode(seed_bytes)), "the seed leaked: {printed}");
    assert!(!printed.contains(&hex::encode(&seed_bytes[..8])), "part of the seed leaked: {printed}");
}

/// A 402 without a usable challenge is a clear error, and nothing is paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_challenge_is_an_error_not_a_payment() {
    let w = world().await;
    let app = Router::new().route("/bogus", get(|| async { (http::StatusCode::PAYMENT_REQUIRED, "pay me") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bogus", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (client, account) = w.customer(true).await;
    let error = client.get(&url).await.unwrap_err();
    assert!(matches!(error, ClientError::Challenge(_)), "{error}");
    assert_eq!(w.node.balance(&account), FUNDS);
}

/// A lost `process` reply keeps the money counted as spent; paying the same session again
/// re-sends the very same block, so the account pays once. (A canned node, to fail `process`
/// alone.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_publish_is_resent_not_paid_twice() {
    let node = common::CannedNode::start().await;
    let seed = Seed::from_bytes(rand::random());
    let wallet = Wallet::from_seed(&seed, 0).with_limits(FUNDS, FUNDS);
    // The account's head: a block really signed by the wallet's key (the client checks it).
    let head = common::signed_send(
        &seed.derive(0),
        BlockHash::from_bytes([0xAB; 32]),
        FUNDS,
        &PrivateKey::from_bytes([9; 32]).public_key(),
    );
    node.insert_block_info(head.hash(), common::block_info_reply(&head, None, common::now_secs(), true));
    node.set_reply(
        "account_info",
        serde_json::json!({"frontier": head.hash().to_string(), "balance": FUNDS.to_string(), "representative": wallet.account().to_string()}),
    );
    node.set_reply("work_generate", serde_json::json!({"error": "RPC control is disabled"}));
    node.set_reply("process", serde_json::json!({"error": "Internal server error in RPC"}));
    let rpc = NanoRpcClient::builder().endpoint(node.url()).max_attempts(1).build().unwrap();
    let client = PayingClient::builder(wallet, rpc)
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .confirm_timeout(Duration::ZERO)
        .build();
    let merchant = Address::from(PrivateKey::from_bytes([5; 32]).public_key());
    let offer = Offer {
        session: Some(nanosession::session::SessionId::generate()),
        accepts_block: false,
        pay_to: merchant,
        amount: PRICE,
        price: PRICE,
        tag: 0,
        required: None,
        expires_at: None,
        network: None,
    };

    assert!(matches!(client.pay(&offer).await, Err(ClientError::Node(_))));
    let spent = FUNDS.checked_sub(PRICE).unwrap();
    assert_eq!(client.wallet().remaining_budget(), spent, "an unanswered publish still counts");

    let published = node.requests().into_iter().filter(|r| r.body["action"] == "process").collect::<Vec<_>>();
    let first = published[0].body["block"].clone();
    let contents: nanosession::rpc::BlockContents = serde_json::from_value(first.clone()).unwrap();
    let hash = contents.to_state_block().unwrap().hash();
    node.set_reply("process", serde_json::json!({"hash": hash.to_string()}));
    assert_eq!(client.pay(&offer).await.unwrap(), hash);
    let published = node.requests().into_iter().filter(|r| r.body["action"] == "process").collect::<Vec<_>>();
    assert_eq!(published.len(), 2);
    assert_eq!(published[1].body["block"], first, "the very same signed block, not a second payment");
    assert_eq!(client.wallet().remaining_budget(), spent, "counted once");
    assert_eq!(node.count_action("account_info"), 1, "no new send was built");
}

/// A definite refusal by the node (here: work below the node's threshold) gives the money back
/// to the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_is_refunded() {
    let config = MockNodeConfig {
        work_thresholds: nanosession::mock_node::WorkThresholds::DEV,
        enable_control: false,
        ..Default::default()
    };
    let w = world_with(config, |n| vec![n.rpc_url()], Duration::from_secs(3)).await;
    let seed = Seed::from_bytes(rand::random());
    w.node.fund(&seed.derive(0), FUNDS).await;
    let wallet = Wallet::from_seed(&seed, 0).with_limits(FUNDS, FUNDS);
    // Work far below every threshold: the node refuses the block outright.
    let weak = WorkThresholds { send: 0, receive: 0 };
    let client = PayingClient::builder(wallet, NanoRpcClient::new([w.node.rpc_url()]).unwrap())
        .work_thresholds(weak)
        .network("nano:dev")
        .build();
    let offer = w.challenge().await;
    let error = client.pay(&offer).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Node(nanosession::rpc::RpcError::Node(m)) if m.contains("work")),
        "{error}"
    );
    assert_eq!(client.wallet().remaining_budget(), FUNDS, "refunded");
}

/// A server taking signed blocks (spec §9) at `/paid`, with work checked at `threshold`.
async fn handoff_world(threshold: u64) -> World {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let verifier = std::sync::Arc::new(
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
        .work_threshold(threshold)
        .build()
        .unwrap()
        .json_body();
    let app = Router::new().route(
        "/paid",
        get(|Extension(p): Extension<VerifiedPayment>| async move { format!("{}|{}", p.block, p.payer) })
            .route_layer(layer),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    World { node, url, merchant }
}

/// `PayingClient` pays by hand-off when the 402 offers it: it signs, the server publishes.
/// Two payments in a row build on the frontier the first left; a hand-off the server refuses
/// before publishing refunds the budget and leaves the account as it was, so the next payment
/// builds on the same frontier without a gap or a fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pays_by_handoff_and_keeps_the_frontier_right() {
    let w = handoff_world(WorkThresholds::DEV.send).await;
    let (client, account) = w.customer(true).await;
    let mut spent = Raw::ZERO;
    for _ in 0..2 {
        let paid = client.get(&w.url).await.unwrap();
        assert_eq!(paid.response.status(), 200);
        let payment = paid.payment.expect("paid");
        assert!(w.node.is_confirmed(&payment.block), "the server published and it confirmed");
        assert_eq!(paid.response.text().await.unwrap(), format!("{}|{}", payment.block, account));
        spent = spent.checked_add(payment.offer.amount).unwrap();
        assert_eq!(w.node.balance(&account), FUNDS.checked_sub(spent).unwrap());
    }

    // A server demanding more work than the client did refuses before publishing.
    let strict = handoff_world(nanosession::nano::work::LIVE_SEND).await;
    let seed = Seed::from_bytes(rand::random());
    strict.node.fund(&seed.derive(0), FUNDS).await;
    let wallet =
        Wallet::from_seed(&seed, 0).with_limits(PRICE.checked_add(Raw::new(10_000_000)).unwrap(), FUNDS);
    let account = wallet.account();
    let client = PayingClient::builder(wallet, NanoRpcClient::new([strict.node.rpc_url()]).unwrap())
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .build();
    match client.get(&strict.url).await {
        Err(ClientError::Refused { status: 402, reason }) => assert_eq!(reason, "insufficient_work"),
        other => panic!("expected a refusal, got {:?}", other.map(|p| p.response.status())),
    }
    assert_eq!(client.wallet().remaining_budget(), FUNDS, "the budget is refunded");
    assert_eq!(strict.node.balance(&account), FUNDS, "nothing was published");
}

/// A plain x402 `exact` seller (no `extra.nanoSession`) that takes the block and publishes it:
/// the client pays `accepts[0].amount` by hand-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pays_a_plain_exact_offer_by_handoff() {
    use base64::Engine as _;
    let node = std::sync::Arc::new(MockNode::start(MockNodeConfig::default()).unwrap());
    let merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let amount = Raw::new(1_234_567);
    let b64 = base64::engine::general_purpose::STANDARD;
    let required = serde_json::json!({
        "x402Version": 2, "error": "payment required",
        "resource": {"url": "http://127.0.0.1/paid", "description": "", "mimeType": "text/plain"},
        "accepts": [{"scheme": "exact", "network": "nano:dev", "asset": "XNO", "amount": amount.to_string(),
                     "payTo": merchant.to_string(), "maxTimeoutSeconds": 120, "extra": {}}],
    });
    let seller_node = node.clone();
    let app = Router::new().route(
        "/paid",
        get(move |headers: axum::http::HeaderMap| {
            let (node, required) = (seller_node.clone(), required.clone());
            async move {
                let Some(signature) = headers.get("payment-signature") else {
                    let value = base64::engine::general_purpose::STANDARD.encode(required.to_string());
                    return (
                        axum::http::StatusCode::PAYMENT_REQUIRED,
                        [("payment-required", value)],
                        String::new(),
                    );
                };
                let payment: serde_json::Value =
                    serde_json::from_slice(&b64.decode(signature.as_bytes()).unwrap()).unwrap();
                let block =
                    nanosession::protocol::HandoffBlock::from_value(&payment["payload"]["block"]).unwrap();
                let hash = node.process(&block.block).unwrap();
                node.confirm(&hash);
                let receipt = nanosession::protocol::SettlementResponse::success(
                    hash.to_string(),
                    "nano:dev".into(),
                    String::new(),
                );
                let value = receipt.to_header().to_str().unwrap().to_owned();
                (axum::http::StatusCode::OK, [("payment-response", value)], "paid".to_owned())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let seed = Seed::from_bytes(rand::random());
    node.fund(&seed.derive(0), FUNDS).await;
    let wallet = Wallet::from_seed(&seed, 0).with_limits(amount, FUNDS);
    let account = wallet.account();
    let client = PayingClient::builder(wallet, NanoRpcClient::new([node.rpc_url()]).unwrap())
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .build();
    let paid = client.get(&url).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let payment = paid.payment.expect("paid");
    assert_eq!(payment.offer.session, None, "a plain offer has no session");
    assert_eq!(node.balance(&account), FUNDS.checked_sub(amount).unwrap(), "paid exactly accepts[0].amount");
    assert_eq!(node.block(&payment.block).map(|b| b.link), Some(*merchant.public_key().as_bytes()));
}
