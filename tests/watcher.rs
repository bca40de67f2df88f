//! The confirmation watcher against the mock node (and a forging WebSocket server): matches,
//! duplicates, reconnects with a confirmation during the gap, polling without a WebSocket,
//! forged messages, two instances; and the layer's 0-RPC and hash-less settlement.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::{SinkExt, StreamExt};
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{work, Address, BlockHash, PrivateKey, Raw, StateBlock};
use nanosession::protocol::PaymentRequired;
use nanosession::rpc::{block_json, NanoRpcClient};
use nanosession::store::{SessionStore, Stores};
use nanosession::verify::{Confirmation, Expected, PaymentVerifier, Rejection, VerifiedBlock};
use nanosession::watcher::{ConfirmationWatcher, WatcherStats};
use nanosession::{PaymentRequiredLayer, VerifiedPayment};

const PRICE: Raw = Raw::new(1_000_000_000_000_000_000_000_000);

/// A verifier that never answers: a grant proves the watcher settled it (the 0-RPC path).
struct NoNode;

#[async_trait]
impl PaymentVerifier for NoNode {
    async fn verify(&self, _: &BlockHash, _: &Expected) -> Result<VerifiedBlock, Rejection> {
        Err(Rejection::Unavailable("this test's verifier is never asked".into()))
    }
}

struct Paywall {
    base: String,
    merchant: Address,
}

/// A paywall on `stores` for `merchant`, settling watched payments, whose verifier never answers.
async fn paywall(stores: Stores, merchant: Address) -> Paywall {
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant)
        .price(PRICE)
        .network("nano:dev")
        .public_base_url("http://127.0.0.1")
        .stores(stores)
        .verifier(NoNode)
        .accept_watched_payments(true)
        .build()
        .unwrap()
        .json_body();
    let app = Router::new().route(
        "/paid",
        get(|Extension(p): Extension<VerifiedPayment>| async move {
            format!("{}|{}|{:?}", p.block, p.payer, p.confirmation)
        })
        .route_layer(layer),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Paywall { base, merchant }
}

/// A 402's session id and amount.
async fn challenge(p: &Paywall) -> (String, Raw) {
    let res = reqwest::get(format!("{}/paid", p.base)).await.unwrap();
    assert_eq!(res.status(), 402);
    let required = PaymentRequired::from_header(res.headers().get("payment-required").unwrap()).unwrap();
    let session = required.accepts[0].extra.nano_session.as_ref().unwrap().id.to_string();
    (session, required.accepts[0].amount)
}

/// The retry naming only the session (hash-less).
async fn settle(p: &Paywall, session: &str) -> (u16, String, Option<String>) {
    let res = reqwest::Client::new()
        .get(format!("{}/paid", p.base))
        .header("x-payment-session", session)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (status, res.text().await.unwrap(), retry_after)
}

/// A payer's signed send of `amount` to `to`, published straight into the mock node's ledger
/// (as a phone wallet would, through its own node) and confirmed.
struct Phone {
    key: PrivateKey,
    frontier: BlockHash,
    balance: Raw,
}

impl Phone {
    async fn new(node: &MockNode) -> Phone {
        let key = PrivateKey::from_bytes(rand::random());
        let frontier = node.fund(&key, Raw::ONE_XNO).await;
        Phone { key, frontier, balance: Raw::ONE_XNO }
    }

    fn sign(&self, node: &MockNode, to: &Address, amount: Raw) -> StateBlock {
        let left = self.balance.checked_sub(amount).unwrap();
        let mut block = StateBlock::send(
            self.key.public_key(),
            self.frontier,
            self.key.public_key(),
            left,
            to.public_key(),
        );
        block.sign(&self.key);
        block.work =
            work::generate(&block.work_root(), node.work_thresholds().epoch_2, &AtomicBool::new(false))
                .unwrap();
        block
    }

    fn pay(&mut self, node: &MockNode, to: &Address, amount: Raw) -> BlockHash {
        let block = self.sign(node, to, amount);
        let hash = node.process(&block).unwrap();
        node.confirm(&hash);
        self.frontier = hash;
        self.balance = block.balance;
        hash
    }
}

fn watcher(
    node: &MockNode,
    sessions: Arc<dyn SessionStore>,
    merchant: Address,
    ws: Option<String>,
) -> ConfirmationWatcher {
    let rpc = NanoRpcClient::builder()
        .endpoint(node.rpc_url())
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let builder = ConfirmationWatcher::builder(rpc, sessions)
        .account(merchant)
        .poll_interval(Duration::from_millis(200));
    match ws {
        Some(url) => builder.websocket(url).spawn(),
        None => builder.spawn(),
    }
}

/// Waits until `done` holds for the watcher's stats (at most 10 s).
async fn until(w: &ConfirmationWatcher, done: impl Fn(&WatcherStats) -> bool) -> WatcherStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = w.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "the watcher did not get there: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn merchant() -> Address {
    Address::from(PrivateKey::from_bytes(rand::random()).public_key())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_send_is_matched_and_settles_without_a_block_hash_or_a_node_call() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let stores = Stores::memory();
    let p = paywall(stores.clone(), merchant()).await;
    let w = watcher(&node, stores.sessions.clone(), p.merchant, Some(node.ws_url()));
    until(&w, |s| s.connections == 1).await;
    let (session, amount) = challenge(&p).await;
    let (status, _, retry_after) = settle(&p, &session).await;
    assert_eq!((status, retry_after.as_deref()), (402, Some("2")), "nothing paid yet: block_not_found");

    let mut phone = Phone::new(&node).await;
    let hash = phone.pay(&node, &p.merchant, amount);
    until(&w, |s| s.matched == 1).await;
    let (status, body, _) = settle(&p, &session).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("{hash}|{}|{:?}", Address::from(phone.key.public_key()), Confirmation::Watched));
    let (status, _, _) = settle(&p, &session).await;
    assert_eq!(status, 402, "the session is consumed: a fresh challenge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_watched_block_settles_without_the_node() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let stores = Stores::memory();
    let p = paywall(stores.clone(), merchant()).await;
    let w = watcher(&node, stores.sessions.clone(), p.merchant, None);
    let (session, amount) = challenge(&p).await;
    let hash = Phone::new(&node).await.pay(&node, &p.merchant, amount);
    until(&w, |s| s.matched == 1).await;
    let res = reqwest::Client::new()
        .get(format!("{}/paid", p.base))
        .header("x-payment-session", &session)
        .header("x-payment-block", hash.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "granted although the verifier never answers");
    assert!(res.text().await.unwrap().ends_with("|Watched"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_notifications_match_once() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    node.faults().set_duplicate_notifications(true);
    let stores = Stores::memory();
    let p = paywall(stores.clone(), merchant()).await;
    let w = watcher(&node, stores.sessions.clone(), p.merchant, Some(node.ws_url()));
    until(&w, |s| s.connections == 1).await;
    let mut phone = Phone::new(&node).await;
    for _ in 0..3 {
        let (session, amount) = challenge(&p).await;
        phone.pay(&node, &p.merchant, amount);
        let before = w.stats().matched;
        until(&w, |s| s.matched == before + 1).await;
        assert_eq!(settle(&p, &session).await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.stats().matched, 3, "each payment matched exactly once");
}

/// The node goes away (WebSocket and RPC cut), a payment confirms during the gap, the node
/// comes back: the watcher reconnects and its catch-up finds the payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_during_a_disconnect_is_caught_up() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let stores = Stores::memory();
    let p = paywall(stores.clone(), merchant()).await;
    let w = watcher(&node, stores.sessions.clone(), p.merchant, Some(node.ws_url()));
    until(&w, |s| s.connections == 1).await;
    let mut phone = Phone::new(&node).await;
    let (session, amount) = challenge(&p).await;
    node.faults().set_refuse_connections(true);
    phone.pay(&node, &p.merchant, amount);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.stats().matched, 0, "nothing can be seen while the node is away");
    node.faults().set_refuse_connections(false);
    let stats = until(&w, |s| s.matched == 1).await;
    assert!(stats.connections >= 2, "reconnected: {stats:?}");
    assert_eq!(settle(&p, &session).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_websocket_the_watcher_polls() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    node.faults().set_drop_notifications(true); // even a WebSocket would see nothing
    let stores = Stores::memory();
    let p = paywall(stores.clone(), merchant()).await;
    let w = watcher(&node, stores.sessions.clone(), p.merchant, None);
    let (session, amount) = challenge(&p).await;
    Phone::new(&node).await.pay(&node, &p.merchant, amount);
    let stats = until(&w, |s| s.matched == 1).await;
    assert_eq!(stats.connections, 0);
    assert!(stats.polls >= 1);
    assert_eq!(settle(&p, &session).await.0, 200);
}

/// A configured WebSocket that is down for good: the watcher keeps polling at its poll
/// interval through its growing reconnect back-off, so a payment is matched within a few polls
/// even seconds into the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_websocket_is_down_the_watcher_polls_at_its_interval() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let stores = Stores::memory();
    let p = paywall(stores.clone(), merchant()).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let w = watcher(&node, stores.sessions.clone(), p.merchant, Some(format!("ws://{dead}")));
    // Long enough for the reconnect back-off to pass several seconds.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (session, amount) = challenge(&p).await;
    Phone::new(&node).await.pay(&node, &p.merchant, amount);
    let deadline = Instant::now() + Duration::from_secs(2);
    while w.stats().matched == 0 {
        assert!(Instant::now() < deadline, "not matched within 2 s of polling: {:?}", w.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.stats().connections, 0);
    assert_eq!(settle(&p, &session).await.0, 200);
}

/// A WebSocket that lies: a notification whose signature does not verify, one whose contents
/// do not hash to the announced hash, and one that claims the session's amount for a real send
/// of 1 raw. None is matched; the real ledger (RPC) decides the amount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_websocket_messages_are_refused() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let stores = Stores::memory();
    let p = paywall(stores.clone(), merchant()).await;
    let (session, amount) = challenge(&p).await;
    let mut phone = Phone::new(&node).await;

    let mut bad_signature = phone.sign(&node, &p.merchant, amount);
    bad_signature.signature.0[3] ^= 1;
    let mut wrong_hash = block_json(&phone.sign(&node, &p.merchant, amount));
    wrong_hash["balance"] = serde_json::json!("1");
    let dust = phone.pay(&node, &p.merchant, Raw::new(1)); // real, confirmed, 1 raw
    let dust_block = node.block(&dust).unwrap();
    let notes = vec![
        note(&bad_signature.hash(), block_json(&bad_signature), amount),
        note(&phone.sign(&node, &p.merchant, amount).hash(), wrong_hash, amount),
        note(&dust, block_json(&dust_block), amount),
    ];
    let liar = forging_websocket(notes).await;
    let w = watcher(&node, stores.sessions.clone(), p.merchant, Some(liar));
    until(&w, |s| s.refused >= 2).await;
    // The dust note (and its catch-up poll) are checked against the ledger: 1 raw, no session.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = w.stats();
    assert_eq!((stats.matched, stats.refused), (0, 2), "{stats:?}");
    assert_eq!(settle(&p, &session).await.0, 402, "nothing paid the session");
}

fn note(hash: &BlockHash, block: serde_json::Value, amount: Raw) -> String {
    serde_json::json!({
        "topic": "confirmation", "time": "1",
        "message": {"account": block["account"], "amount": amount.to_string(), "hash": hash.to_string(),
                    "confirmation_type": "active_quorum", "block": block,
                    "sideband": {"height": "2", "local_timestamp": nanosession::session::unix_now().to_string()}},
    })
    .to_string()
}

/// A WebSocket server that acknowledges the subscription, then sends `notes`.
async fn forging_websocket(notes: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let notes = notes.clone();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                let _subscribe = ws.next().await;
                let ack = r#"{"ack": "subscribe", "time": "1"}"#;
                ws.send(tokio_tungstenite::tungstenite::Message::text(ack)).await.unwrap();
                for n in notes {
                    let _ = ws.send(tokio_tungstenite::tungstenite::Message::text(n)).await;
                }
                while ws.next().await.is_some() {}
            });
        }
    });
    url
}

/// Two instances on one Redis, two watchers: a payment challenged on one instance is matched
/// once and settles on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_the_match() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("REDIS_URL is not set: skipping (./scripts/test sets it)");
        return;
    };
    let prefix = format!("nstest_{}_", &nanosession::session::SessionId::generate().to_string()[..12]);
    let options = nanosession::store::RedisOptions { prefix, ..Default::default() };
    let open = || async {
        Stores::shared(
            nanosession::store::RedisStore::connect_with(&url, options.clone()).await.unwrap(),
            true,
        )
    };
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let pay_to = merchant();
    let (a, b) = (open().await, open().await);
    let (pa, pb) = (paywall(a.clone(), pay_to).await, paywall(b.clone(), pay_to).await);
    let w1 = watcher(&node, a.sessions.clone(), pay_to, Some(node.ws_url()));
    let w2 = watcher(&node, b.sessions.clone(), pay_to, None);
    let (session, amount) = challenge(&pa).await;
    Phone::new(&node).await.pay(&node, &pay_to, amount);
    let deadline = Instant::now() + Duration::from_secs(10);
    while w1.stats().matched + w2.stats().matched == 0 {
        assert!(Instant::now() < deadline, "no watcher matched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(w1.stats().matched + w2.stats().matched, 1, "recorded once across watchers");
    assert_eq!(settle(&pb, &session).await.0, 200, "the other instance settles it");
    assert_eq!(settle(&pa, &session).await.0, 402, "and only once");
}
