//! Paying with a signed block through the layer (spec §9), against the mock node over real
//! sockets: every refusal before publishing, forks, concurrent submissions, node outages at
//! each step, a lost `process` reply, a slow confirmation, replays, and both settlement timings.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine as _;
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{work, Address, BlockHash, PrivateKey, Raw, StateBlock};
use nanosession::protocol::{PaymentRequired, SettlementResponse};
use nanosession::rpc::{block_json, NanoRpcClient};
use nanosession::store::Stores;
use nanosession::verify::handoff::{AccountState, BlockPublisher, NodeError};
use nanosession::verify::NanoRpcVerifier;
use nanosession::{PaymentRequiredLayer, Settlement, VerifiedPayment};
use serde_json::{json, Value};

const PRICE: Raw = Raw::new(1_000_000_000_000_000_000_000_000); // 10^-6 XNO
const FUNDS: Raw = Raw::ONE_XNO;

/// The real node client, with switches for the faults a test needs and a count of publishes.
struct Node {
    inner: NanoRpcVerifier,
    publishes: AtomicUsize,
    account_down: AtomicBool,
    process_down: AtomicBool,
    /// `process` reaches the node, but its answer is lost.
    lose_process_reply: AtomicBool,
}

#[async_trait]
impl BlockPublisher for Node {
    async fn account_state(&self, account: &Address) -> Result<Option<AccountState>, NodeError> {
        if self.account_down.load(Ordering::SeqCst) {
            return Err(NodeError::Unavailable("account_info: connection refused".into()));
        }
        self.inner.account_state(account).await
    }

    async fn publish(&self, block: &StateBlock) -> Result<(), NodeError> {
        self.publishes.fetch_add(1, Ordering::SeqCst);
        if self.process_down.load(Ordering::SeqCst) {
            return Err(NodeError::Unavailable("process: connection refused".into()));
        }
        let answer = self.inner.publish(block).await;
        if self.lose_process_reply.load(Ordering::SeqCst) {
            return Err(NodeError::Unavailable("process: reply lost".into()));
        }
        answer
    }
}

struct World {
    node: MockNode,
    rpc: Arc<Node>,
    base: String,
    merchant: Address,
    /// How often the wrapped service ran.
    served: Arc<AtomicUsize>,
}

fn verifier(node: &MockNode) -> NanoRpcVerifier {
    let client = NanoRpcClient::builder()
        .endpoint(node.rpc_url())
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    NanoRpcVerifier::builder(client).poll_interval(Duration::from_millis(50)).build()
}

async fn world_with(settlement: Settlement, stores: Stores, confirm_wait: Duration) -> World {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let rpc = Arc::new(Node {
        inner: verifier(&node),
        publishes: AtomicUsize::new(0),
        account_down: AtomicBool::new(false),
        process_down: AtomicBool::new(false),
        lose_process_reply: AtomicBool::new(false),
    });
    let served = Arc::new(AtomicUsize::new(0));
    let base = serve(&node, &rpc, merchant, stores, settlement, confirm_wait, served.clone()).await;
    World { node, rpc, base, merchant, served }
}

/// One paywalled server (an instance) for `merchant` on `node`, publishing through `rpc`.
async fn serve(
    node: &MockNode,
    rpc: &Arc<Node>,
    merchant: Address,
    stores: Stores,
    settlement: Settlement,
    confirm_wait: Duration,
    served: Arc<AtomicUsize>,
) -> String {
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant)
        .price(PRICE)
        .network("nano:dev")
        .public_base_url("http://127.0.0.1")
        .confirm_wait(confirm_wait)
        .stores(stores)
        .verifier(verifier(node))
        .accept_signed_blocks(rpc.clone())
        .work_threshold(node.work_thresholds().epoch_2)
        .settlement(settlement)
        .verifications_per_session(1000)
        .build()
        .unwrap()
        .json_body();
    let (ok, failing) = (served.clone(), served);
    let app = Router::new()
        .route(
            "/paid",
            get(move |Extension(p): Extension<VerifiedPayment>| async move {
                ok.fetch_add(1, Ordering::SeqCst);
                format!("{}|{}", p.block, p.payer)
            }),
        )
        .route(
            "/fails",
            get(move || async move {
                failing.fetch_add(1, Ordering::SeqCst);
                (http::StatusCode::INTERNAL_SERVER_ERROR, "the service failed")
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn world() -> World {
    world_with(Settlement::BeforeService, Stores::memory(), Duration::from_secs(3)).await
}

/// A funded payer whose frontier the test tracks, as a wallet would.
struct Payer {
    key: PrivateKey,
    frontier: BlockHash,
    balance: Raw,
}

/// A 402's session, as the client read it.
struct Challenge {
    required: PaymentRequired,
    amount: Raw,
}

/// One answer: status, body, receipt.
struct Answer {
    status: u16,
    body: Value,
    receipt: Option<SettlementResponse>,
    retry_after: Option<String>,
}

impl Answer {
    fn reason(&self) -> &str {
        self.body["reason"].as_str().unwrap_or("")
    }
}

impl World {
    async fn payer(&self) -> Payer {
        let key = PrivateKey::from_bytes(rand::random());
        let frontier = self.node.fund(&key, FUNDS).await;
        Payer { key, frontier, balance: FUNDS }
    }

    async fn challenge(&self, path: &str) -> Challenge {
        self.challenge_at(&self.base, path).await
    }

    async fn challenge_at(&self, base: &str, path: &str) -> Challenge {
        let res = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(res.status(), 402);
        let required = PaymentRequired::from_header(res.headers().get("payment-required").unwrap()).unwrap();
        assert!(required.accepts[0].extra.accepts_block, "the 402 announces hand-offs");
        let amount = required.accepts[0].amount;
        Challenge { required, amount }
    }

    /// Hands over `block` for `challenge` (echoing the session id when `echo`).
    async fn hand_over(&self, path: &str, challenge: &Challenge, block: &StateBlock, echo: bool) -> Answer {
        self.hand_over_at(&self.base, path, challenge, block, echo).await
    }

    async fn hand_over_at(
        &self,
        base: &str,
        path: &str,
        challenge: &Challenge,
        block: &StateBlock,
        echo: bool,
    ) -> Answer {
        let mut accepted = serde_json::to_value(&challenge.required.accepts[0]).unwrap();
        if !echo {
            accepted["extra"].as_object_mut().unwrap().remove("nanoSession");
        }
        self.send_at(base, path, &challenge.required, accepted, block).await
    }

    async fn send(
        &self,
        path: &str,
        required: &PaymentRequired,
        accepted: Value,
        block: &StateBlock,
    ) -> Answer {
        self.send_at(&self.base, path, required, accepted, block).await
    }

    async fn send_at(
        &self,
        base: &str,
        path: &str,
        required: &PaymentRequired,
        accepted: Value,
        block: &StateBlock,
    ) -> Answer {
        let payment = json!({
            "x402Version": 2,
            "resource": required.resource,
            "accepted": accepted,
            "payload": {"block": block_json(block)},
        });
        let header = base64::engine::general_purpose::STANDARD.encode(payment.to_string());
        let res = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .header("payment-signature", header)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let receipt = res.headers().get("payment-response").and_then(SettlementResponse::from_header);
        let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body, receipt, retry_after }
    }

    fn work(&self, block: &mut StateBlock) {
        let threshold = self.node.work_thresholds().epoch_2;
        block.work = work::generate(&block.work_root(), threshold, &AtomicBool::new(false)).unwrap();
    }
}

impl Payer {
    /// A signed send of `amount` to `to` on the tracked frontier, with dev work; not published.
    fn send(&self, w: &World, to: &Address, amount: Raw) -> StateBlock {
        let left = self.balance.checked_sub(amount).unwrap();
        let mut block = StateBlock::send(
            self.key.public_key(),
            self.frontier,
            self.key.public_key(),
            left,
            to.public_key(),
        );
        block.sign(&self.key);
        w.work(&mut block);
        block
    }

    fn account(&self) -> Address {
        Address::from(self.key.public_key())
    }

    /// The send landed: the next block builds on it.
    fn sent(&mut self, block: &StateBlock) {
        self.frontier = block.hash();
        self.balance = block.balance;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_block_is_published_confirmed_and_granted_once() {
    let w = world().await;
    let mut payer = w.payer().await;
    for echo in [true, false] {
        let c = w.challenge("/paid").await;
        let block = payer.send(&w, &w.merchant, c.amount);
        let hash = block.hash();
        let a = w.hand_over("/paid", &c, &block, echo).await;
        assert_eq!(a.status, 200, "echo {echo}: {:?}", a.body);
        assert_eq!(
            a.body,
            Value::String(format!("{hash}|{}", payer.account())),
            "the service saw the payment"
        );
        let receipt = a.receipt.expect("a receipt");
        assert!(receipt.success);
        assert_eq!(receipt.transaction, hash.to_string());
        assert_eq!(receipt.payer.as_deref(), Some(payer.account().to_string().as_str()));
        assert!(w.node.is_confirmed(&hash), "the server published it and it confirmed");
        payer.sent(&block);
        assert_eq!(w.node.balance(&payer.account()), payer.balance, "paid exactly the session amount");

        // The very same block again: never served twice.
        let again = w.hand_over("/paid", &c, &block, echo).await;
        let want = if echo { (409, "already_granted") } else { (402, "already_spent") };
        assert_eq!((again.status, again.reason()), want, "echo {echo}");
    }
    assert_eq!(w.served.load(Ordering::SeqCst), 2);
    assert_eq!(w.rpc.publishes.load(Ordering::SeqCst), 2, "one process per payment");
}

/// Every §9 refusal before publishing: the right reason, nothing published, the payer's
/// account untouched, and the session still payable afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_before_publishing_publishes_nothing() {
    let w = world().await;
    let mut payer = w.payer().await;
    let c = w.challenge("/paid").await;
    let other_merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let one = Raw::new(1);

    let mut cases: Vec<(&str, StateBlock, &str)> = vec![
        ("wrong link", payer.send(&w, &other_merchant, c.amount), "wrong_destination"),
        (
            "one raw too little",
            payer.send(&w, &w.merchant, c.amount.checked_sub(one).unwrap()),
            "wrong_amount",
        ),
        ("one raw too much", payer.send(&w, &w.merchant, c.amount.checked_add(one).unwrap()), "wrong_amount"),
    ];
    let mut bad_sig = payer.send(&w, &w.merchant, c.amount);
    bad_sig.signature.0[0] ^= 1;
    cases.push(("bad signature", bad_sig, "invalid_block"));
    let mut off_frontier = payer.send(&w, &w.merchant, c.amount);
    off_frontier.previous = BlockHash::from_bytes(rand::random());
    off_frontier.sign(&payer.key);
    w.work(&mut off_frontier);
    cases.push(("previous is not the frontier", off_frontier, "frontier_mismatch"));
    let mut lazy = payer.send(&w, &w.merchant, c.amount);
    lazy.work = (0..u64::MAX)
        .find(|n| work::value(*n, &lazy.work_root()) < w.node.work_thresholds().epoch_2)
        .unwrap();
    cases.push(("too little work", lazy, "insufficient_work"));

    for (what, block, reason) in &cases {
        let a = w.hand_over("/paid", &c, block, true).await;
        assert_eq!((a.status, a.reason()), (402, *reason), "{what}: {:?}", a.body);
        assert!(w.node.block(&block.hash()).is_none(), "{what}: nothing was published");
    }
    // link_as_account naming another key than the signed link.
    let block = payer.send(&w, &w.merchant, c.amount);
    let mut accepted = serde_json::to_value(&c.required.accepts[0]).unwrap();
    accepted["amount"] = json!(c.amount.to_string());
    let mut json = block_json(&block);
    json["link_as_account"] = json!(other_merchant.to_string());
    let payment = json!({"x402Version": 2, "resource": c.required.resource, "accepted": accepted, "payload": {"block": json}});
    let header = base64::engine::general_purpose::STANDARD.encode(payment.to_string());
    let res = reqwest::Client::new()
        .get(format!("{}/paid", w.base))
        .header("payment-signature", header)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 402);
    assert_eq!(
        res.json::<Value>().await.unwrap()["reason"],
        "invalid_block",
        "link_as_account contradicts link"
    );

    // An edited echoed amount: the stored amount decides, so a block for less is wrong_amount.
    let cheap = payer.send(&w, &w.merchant, PRICE);
    let mut edited = serde_json::to_value(&c.required.accepts[0]).unwrap();
    edited["amount"] = json!(PRICE.to_string());
    let a = w.send("/paid", &c.required, edited, &cheap).await;
    assert_eq!((a.status, a.reason()), (402, "wrong_amount"), "{:?}", a.body);
    // Another session's amount presented for this session.
    let c2 = w.challenge("/paid").await;
    let theirs = payer.send(&w, &w.merchant, c2.amount);
    let a = w.hand_over("/paid", &c, &theirs, true).await;
    assert_eq!((a.status, a.reason()), (402, "wrong_amount"));
    assert_eq!(w.rpc.publishes.load(Ordering::SeqCst), 0, "nothing was ever published");
    assert_eq!(w.node.balance(&payer.account()), FUNDS, "the payer's funds are untouched");

    // The session is still payable with a correct block.
    let good = payer.send(&w, &w.merchant, c.amount);
    let a = w.hand_over("/paid", &c, &good, true).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    payer.sent(&good);

    // A block the client published itself and then handed over: already on the ledger.
    let c3 = w.challenge("/paid").await;
    let published = payer.send(&w, &w.merchant, c3.amount);
    w.node.process(&published).unwrap();
    let a = w.hand_over("/paid", &c3, &published, true).await;
    assert_eq!((a.status, a.reason()), (402, "frontier_mismatch"), "an already confirmed block");
}

/// Two sessions paid at once with two blocks on one `previous` (a fork): one grant, and the
/// loser is never published.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fork_on_two_sessions_grants_one_and_never_publishes_the_other() {
    let w = Arc::new(world().await);
    let payer = w.payer().await;
    let (c1, c2) = (w.challenge("/paid").await, w.challenge("/paid").await);
    let (b1, b2) = (payer.send(&w, &w.merchant, c1.amount), payer.send(&w, &w.merchant, c2.amount));
    let (a1, a2) = tokio::join!(w.hand_over("/paid", &c1, &b1, true), w.hand_over("/paid", &c2, &b2, true));
    let granted: Vec<_> = [(&a1, &b1), (&a2, &b2)].into_iter().filter(|(a, _)| a.status == 200).collect();
    assert_eq!(granted.len(), 1, "{:?} / {:?}", a1.body, a2.body);
    let (loser_answer, loser) = if a1.status == 200 { (&a2, &b2) } else { (&a1, &b1) };
    assert!(
        ["payment_in_flight", "frontier_mismatch"].contains(&loser_answer.reason()),
        "{:?}",
        loser_answer.body
    );
    if loser_answer.reason() == "payment_in_flight" {
        assert_eq!(loser_answer.retry_after.as_deref(), Some("2"));
    }
    assert!(w.node.block(&loser.hash()).is_none(), "the losing fork was never published");
    assert_eq!(w.rpc.publishes.load(Ordering::SeqCst), 1);
}

/// Twenty concurrent submissions of one block: one grant, one `process`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_submissions_of_one_block_publish_once_and_grant_once() {
    let w = Arc::new(world().await);
    let payer = w.payer().await;
    let c = Arc::new(w.challenge("/paid").await);
    let block = payer.send(&w, &w.merchant, c.amount);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (w, c, block) = (w.clone(), c.clone(), block.clone());
            tokio::spawn(async move { w.hand_over("/paid", &c, &block, true).await })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    assert_eq!(answers.iter().filter(|a| a.status == 200).count(), 1);
    for a in answers.iter().filter(|a| a.status != 200) {
        assert!(["payment_in_flight", "already_granted"].contains(&a.reason()), "{} {:?}", a.status, a.body);
    }
    assert_eq!(w.rpc.publishes.load(Ordering::SeqCst), 1, "one process");
    assert_eq!(w.served.load(Ordering::SeqCst), 1);
    assert_eq!(w.node.balance(&payer.account()), FUNDS.checked_sub(c.amount).unwrap());
}

/// The node down at `account_info`: 503, nothing published, the claim released, and the same
/// block pays once the node is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_at_account_info_is_a_503_and_the_block_pays_later() {
    let w = world().await;
    let payer = w.payer().await;
    let c = w.challenge("/paid").await;
    let block = payer.send(&w, &w.merchant, c.amount);
    w.rpc.account_down.store(true, Ordering::SeqCst);
    let a = w.hand_over("/paid", &c, &block, true).await;
    assert_eq!((a.status, a.reason()), (503, "verifier_unavailable"));
    assert_eq!(a.retry_after.as_deref(), Some("5"));
    assert_eq!(w.rpc.publishes.load(Ordering::SeqCst), 0);
    w.rpc.account_down.store(false, Ordering::SeqCst);
    let a = w.hand_over("/paid", &c, &block, true).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
}

/// `process` unreachable, then its reply lost after the node took the block: 503 both times
/// with the claim kept, and the retry of the same block settles (the ledger already has it),
/// debiting the payer once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_lost_process_keeps_the_claim_and_the_retry_settles() {
    let w = world().await;
    let payer = w.payer().await;
    let c = w.challenge("/paid").await;
    let block = payer.send(&w, &w.merchant, c.amount);
    w.rpc.process_down.store(true, Ordering::SeqCst);
    let a = w.hand_over("/paid", &c, &block, true).await;
    assert_eq!((a.status, a.reason()), (503, "verifier_unavailable"));
    assert!(a.retry_after.is_some());
    assert!(w.node.block(&block.hash()).is_none());
    w.rpc.process_down.store(false, Ordering::SeqCst);
    w.rpc.lose_process_reply.store(true, Ordering::SeqCst);
    let a = w.hand_over("/paid", &c, &block, true).await;
    assert_eq!((a.status, a.reason()), (503, "verifier_unavailable"));
    assert!(w.node.block(&block.hash()).is_some(), "the block landed although the reply was lost");
    // Meanwhile the claim holds: another block on the same frontier for another session waits.
    let c2 = w.challenge("/paid").await;
    let fork = payer.send(&w, &w.merchant, c2.amount);
    let f = w.hand_over("/paid", &c2, &fork, true).await;
    assert!(["payment_in_flight", "frontier_mismatch"].contains(&f.reason()), "{:?}", f.body);
    w.rpc.lose_process_reply.store(false, Ordering::SeqCst);
    let a = w.hand_over("/paid", &c, &block, true).await;
    assert_eq!(a.status, 200, "the resumed block settles: {:?}", a.body);
    assert_eq!(w.node.balance(&payer.account()), FUNDS.checked_sub(c.amount).unwrap(), "debited once");
    assert!(w.node.block(&fork.hash()).is_none());
}

/// A confirmation slower than the confirm wait: 402 block_not_confirmed + Retry-After with the
/// claim kept; the retry of the same block is granted without paying twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_confirmation_is_retried_to_a_grant() {
    let w = world_with(Settlement::BeforeService, Stores::memory(), Duration::from_millis(300)).await;
    let payer = w.payer().await;
    let c = w.challenge("/paid").await;
    let block = payer.send(&w, &w.merchant, c.amount);
    w.node.faults().set_confirmation_delay(Duration::from_millis(1500));
    let a = w.hand_over("/paid", &c, &block, true).await;
    assert_eq!((a.status, a.reason()), (402, "block_not_confirmed"), "{:?}", a.body);
    assert_eq!(a.retry_after.as_deref(), Some("2"));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let a = w.hand_over("/paid", &c, &block, true).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(w.node.balance(&payer.account()), FUNDS.checked_sub(c.amount).unwrap());
    assert_eq!(w.served.load(Ordering::SeqCst), 1);
}

/// Settlement after the service: a failing service costs nothing (its response passes, the
/// block is never published, the session stays payable); a succeeding one is granted; and a
/// publish that fails withholds the response until the retry settles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_after_success_charges_only_for_successful_responses() {
    let w = world_with(Settlement::AfterSuccess, Stores::memory(), Duration::from_secs(3)).await;
    let mut payer = w.payer().await;
    let c = w.challenge("/fails").await;
    let block = payer.send(&w, &w.merchant, c.amount);
    let a = w.hand_over("/fails", &c, &block, true).await;
    assert_eq!(a.status, 500, "the service's own failure");
    assert_eq!(a.body, Value::String("the service failed".into()));
    assert!(a.receipt.is_none(), "no receipt for an unpaid response");
    assert!(w.node.block(&block.hash()).is_none(), "nothing published for a failed request");
    assert_eq!(w.node.balance(&payer.account()), FUNDS);

    let c = w.challenge("/paid").await;
    let block = payer.send(&w, &w.merchant, c.amount);
    w.rpc.process_down.store(true, Ordering::SeqCst);
    let a = w.hand_over("/paid", &c, &block, true).await;
    assert_eq!((a.status, a.reason()), (503, "verifier_unavailable"), "the response is withheld");
    assert_eq!(w.served.load(Ordering::SeqCst), 2, "the service ran (the failing one and this one)");
    w.rpc.process_down.store(false, Ordering::SeqCst);
    let a = w.hand_over("/paid", &c, &block, true).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body, Value::String(format!("{}|{}", block.hash(), payer.account())));
    assert!(a.receipt.unwrap().success);
    payer.sent(&block);
    assert_eq!(w.node.balance(&payer.account()), payer.balance, "paid once");
}

/// Without `accept_signed_blocks`, a hand-off is a 400 naming what to send instead, and the
/// 402 does not announce hand-offs.
#[tokio::test]
async fn a_server_without_handoff_refuses_payload_block_with_a_reason() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant)
        .price(PRICE)
        .public_base_url("http://127.0.0.1")
        .verifier(verifier(&node))
        .build()
        .unwrap()
        .json_body();
    let app = Router::new().route("/paid", get(|| async { "paid" })).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/paid", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let res = reqwest::get(&url).await.unwrap();
    let required = PaymentRequired::from_header(res.headers().get("payment-required").unwrap()).unwrap();
    assert!(!required.accepts[0].extra.accepts_block);
    let key = PrivateKey::from_bytes(rand::random());
    let mut block = StateBlock::send(
        key.public_key(),
        BlockHash::from_bytes([1; 32]),
        key.public_key(),
        Raw::new(1),
        merchant.public_key(),
    );
    block.sign(&key);
    let payment = json!({"x402Version": 2, "resource": required.resource, "accepted": required.accepts[0], "payload": {"block": block_json(&block)}});
    let header = base64::engine::general_purpose::STANDARD.encode(payment.to_string());
    let res = reqwest::Client::new().get(&url).header("payment-signature", header).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["reason"], "malformed_payment");
    assert!(body["detail"].as_str().unwrap().contains("does not accept payload.block"), "{body}");
}

/// Fork protection across instances: two servers sharing one Redis or PostgreSQL store, two
/// sessions (one issued by each) paid at once with two blocks on one `previous`, each to its own
/// instance. One grant; the loser is never published.
async fn fork_across_two_instances(a: Stores, b: Stores) {
    let w = world_with(Settlement::BeforeService, a, Duration::from_secs(3)).await;
    let other = serve(
        &w.node,
        &w.rpc,
        w.merchant,
        b,
        Settlement::BeforeService,
        Duration::from_secs(3),
        w.served.clone(),
    )
    .await;
    let payer = w.payer().await;
    let c1 = w.challenge("/paid").await;
    let c2 = w.challenge_at(&other, "/paid").await;
    let (b1, b2) = (payer.send(&w, &w.merchant, c1.amount), payer.send(&w, &w.merchant, c2.amount));
    let (a1, a2) = tokio::join!(
        w.hand_over_at(&w.base, "/paid", &c1, &b1, true),
        w.hand_over_at(&other, "/paid", &c2, &b2, true)
    );
    assert_eq!([&a1, &a2].iter().filter(|a| a.status == 200).count(), 1, "{:?} / {:?}", a1.body, a2.body);
    let (winner, loser) = if a1.status == 200 { (&b1, &b2) } else { (&b2, &b1) };
    assert!(w.node.is_confirmed(&winner.hash()));
    assert!(w.node.block(&loser.hash()).is_none(), "the losing fork was never published");
    assert_eq!(w.rpc.publishes.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fork_across_two_instances_on_redis_grants_one() {
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
    fork_across_two_instances(open().await, open().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fork_across_two_instances_on_postgres_grants_one() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("DATABASE_URL is not set: skipping (./scripts/test sets it)");
        return;
    };
    let table_prefix = format!("nstest_{}_", &nanosession::session::SessionId::generate().to_string()[..12]);
    let options = nanosession::store::PostgresOptions { table_prefix, ..Default::default() };
    let open = || async {
        Stores::shared(
            nanosession::store::PostgresStore::connect_with(&url, options.clone()).await.unwrap(),
            true,
        )
    };
    fork_across_two_instances(open().await, open().await).await;
}
