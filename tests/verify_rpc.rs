//! NanoRpcClient and NanoRpcVerifier against a canned node built from real reply shapes.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use nanosession::nano::{Address, BlockHash, PrivateKey, PublicKey, Raw, StateBlock};
use nanosession::rpc::{NanoRpcClient, RpcError};
use nanosession::verify::{
    Confirmation, Expected, NanoRpcVerifier, PaymentVerifier, Rejection, VerifiedBlock,
};
use serde_json::{json, Value};

const PRICE: Raw = Raw::new(1_500_000_000_000_000_000_000_000_000_000);
const BEFORE: Raw = Raw::new(10_000_000_000_000_000_000_000_000_000_000);
const CONFIRM_WAIT: Duration = Duration::from_millis(300);

fn merchant() -> PrivateKey {
    PrivateKey::from_bytes([1; 32])
}
fn payer() -> PrivateKey {
    PrivateKey::from_bytes([2; 32])
}
/// The payer's block before the payment, leaving `BEFORE`: the verifier reads it to derive
/// the amount.
fn previous_block() -> StateBlock {
    signed_send(&payer(), BlockHash::from_bytes([9; 32]), BEFORE, &merchant().public_key())
}
fn previous_hash() -> BlockHash {
    previous_block().hash()
}
/// A hash no canned node knows.
fn unknown_hash() -> BlockHash {
    BlockHash::from_bytes([7; 32])
}

/// A signed send of `PRICE` to the merchant.
fn payment() -> StateBlock {
    let balance = Raw::new(BEFORE.get() - PRICE.get());
    signed_send(&payer(), previous_hash(), balance, &merchant().public_key())
}

fn expected() -> Expected {
    Expected {
        pay_to: Address::from(merchant().public_key()),
        amount: PRICE,
        not_before: now_secs() - 60,
        confirm_wait: CONFIRM_WAIT,
    }
}

/// A fast client: short timeout and backoff so failure paths finish quickly.
fn client(urls: &[String]) -> NanoRpcClient {
    NanoRpcClient::builder()
        .endpoints(urls.iter().cloned())
        .timeout(Duration::from_millis(300))
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .build()
        .unwrap()
}

fn verifier(urls: &[String]) -> NanoRpcVerifier {
    NanoRpcVerifier::builder(client(urls)).poll_interval(Duration::from_millis(20)).build()
}

/// A node that knows the payment block with `reply`, and the payer's previous block.
async fn node_with(block: &StateBlock, reply: Value) -> CannedNode {
    let node = CannedNode::start().await;
    node.insert_block_info(block.hash(), reply);
    node.insert_block_info(
        previous_hash(),
        block_info_reply(&previous_block(), None, now_secs() - 600, true),
    );
    node
}

async fn verify_reply(reply: Value) -> Result<VerifiedBlock, Rejection> {
    let block = payment();
    let node = node_with(&block, reply).await;
    verifier(&[node.url()]).verify(&block.hash(), &expected()).await
}

fn good_reply(block: &StateBlock) -> Value {
    block_info_reply(block, Some(PRICE), now_secs(), true)
}

#[tokio::test]
async fn accepts_a_confirmed_send_and_sends_json_block() {
    let block = payment();
    let node = node_with(&block, good_reply(&block)).await;
    let got = verifier(&[node.url()]).verify(&block.hash(), &expected()).await.unwrap();
    assert_eq!(got.hash, block.hash());
    assert_eq!(got.payer, Address::from(payer().public_key()));
    assert_eq!(got.amount, PRICE);
    assert!(got.first_seen >= expected().not_before);
    assert_eq!(got.confirmation, Confirmation::AlreadyConfirmed);
    let req = &node.requests()[0].body;
    assert_eq!(req["action"], "block_info");
    assert_eq!(req["json_block"], "true");
    assert_eq!(req["hash"], block.hash().to_string());
}

#[tokio::test]
async fn real_mainnet_block() {
    let hash: BlockHash = MAINNET_SEND_HASH.parse().unwrap();
    let node = CannedNode::start().await;
    node.insert_block_info(hash, mainnet_send_reply());
    // The fixtures do not hold its previous block, so the amount is taken from the reply.
    let v = NanoRpcVerifier::builder(client(&[node.url()])).check_amount(false).build();
    let mut exp = Expected {
        pay_to: MAINNET_SEND_DESTINATION.parse().unwrap(),
        amount: Raw::new(MAINNET_SEND_AMOUNT),
        not_before: 0,
        confirm_wait: CONFIRM_WAIT,
    };
    // Verbatim, local_timestamp is "0" (an old block): too old whatever not_before says.
    assert_eq!(v.verify(&hash, &exp).await, Err(Rejection::TooOld));

    // With a first-seen time, its real hash and signature pass the integrity check; the
    // merchant given in xrb_ form still matches (key bytes are compared, not strings).
    let mut reply = mainnet_send_reply();
    reply["local_timestamp"] = json!("1551532723");
    node.insert_block_info(hash, reply);
    exp.pay_to = MAINNET_SEND_DESTINATION.replace("nano_", "xrb_").parse().unwrap();
    let got = v.verify(&hash, &exp).await.unwrap();
    assert_eq!(got.payer, MAINNET_SEND_ACCOUNT.parse().unwrap());
    assert_eq!(got.first_seen, 1551532723);

    exp.pay_to = Address::from(merchant().public_key());
    assert_eq!(v.verify(&hash, &exp).await, Err(Rejection::WrongDestination));
    exp.pay_to = MAINNET_SEND_DESTINATION.parse().unwrap();
    exp.amount = Raw::new(MAINNET_SEND_AMOUNT - 1);
    assert_eq!(v.verify(&hash, &exp).await, Err(Rejection::WrongAmount));
}

#[tokio::test]
async fn unknown_block_is_not_found() {
    let node = CannedNode::start().await;
    let got = verifier(&[node.url()]).verify(&payment().hash(), &expected()).await;
    assert_eq!(got, Err(Rejection::NotFound));
}

#[tokio::test]
async fn wrong_block_type() {
    let block = payment();
    let mut receive = good_reply(&block);
    receive["subtype"] = json!("receive");
    assert_eq!(verify_reply(receive).await, Err(Rejection::WrongBlockType));

    // A legacy send: other type, no subtype.
    let mut legacy = good_reply(&block);
    legacy["contents"]["type"] = json!("send");
    legacy.as_object_mut().unwrap().remove("subtype");
    assert_eq!(verify_reply(legacy).await, Err(Rejection::WrongBlockType));

    // The subtype says send but the block is not a state block: the type check alone refuses.
    let mut not_state = good_reply(&block);
    not_state["contents"]["type"] = json!("send");
    assert_eq!(verify_reply(not_state).await, Err(Rejection::WrongBlockType));
}

#[tokio::test]
async fn wrong_destination() {
    let other = PrivateKey::from_bytes([3; 32]).public_key();
    let block = signed_send(&payer(), previous_hash(), Raw::new(BEFORE.get() - PRICE.get()), &other);
    let node = node_with(&block, good_reply(&block)).await;
    let got = verifier(&[node.url()]).verify(&block.hash(), &expected()).await;
    assert_eq!(got, Err(Rejection::WrongDestination));

    // `link_as_account` is cosmetic: naming the merchant there changes nothing.
    let mut dressed = good_reply(&block);
    dressed["contents"]["link_as_account"] = json!(Address::from(merchant().public_key()).to_string());
    let node = node_with(&block, dressed).await;
    let got = verifier(&[node.url()]).verify(&block.hash(), &expected()).await;
    assert_eq!(got, Err(Rejection::WrongDestination));
}

#[tokio::test]
async fn wrong_amount_is_exact_to_the_raw() {
    // A send moving one raw less than the price, reported consistently by the node.
    let short = Raw::new(PRICE.get() - 1);
    let block = signed_send(
        &payer(),
        previous_hash(),
        Raw::new(BEFORE.get() - short.get()),
        &merchant().public_key(),
    );
    for amount in [Some(short), None] {
        let node = node_with(&block, block_info_reply(&block, amount, now_secs(), true)).await;
        let got = verifier(&[node.url()]).verify(&block.hash(), &expected()).await;
        assert_eq!(got, Err(Rejection::WrongAmount), "{amount:?}");
    }
}

#[tokio::test]
async fn too_old() {
    let block = payment();
    let early = block_info_reply(&block, Some(PRICE), expected().not_before - 1, true);
    assert_eq!(verify_reply(early).await, Err(Rejection::TooOld));
    let zero = block_info_reply(&block, Some(PRICE), 0, true);
    assert_eq!(verify_reply(zero).await, Err(Rejection::TooOld));
    // Exactly at the boundary is in time.
    // One clock reading for both sides: two could straddle a second.
    let at = now_secs() - 60;
    let node = node_with(&block, block_info_reply(&block, Some(PRICE), at, true)).await;
    let exp = Expected { not_before: at, ..expected() };
    assert!(verifier(&[node.url()]).verify(&block.hash(), &exp).await.is_ok());
}

/// A wait shorter than the poll interval still polls once, at the deadline, so a node that
/// confirms at once is not reported as unconfirmed.
#[tokio::test]
async fn short_wait_still_sees_a_fast_confirmation() {
    let block = payment();
    let node = node_with(&block, block_info_reply(&block, Some(PRICE), now_secs(), false)).await;
    node.confirm_on_block_confirm(block.hash());
    let slow_polls =
        NanoRpcVerifier::builder(client(&[node.url()])).poll_interval(Duration::from_secs(5)).build();
    let exp = Expected { confirm_wait: Duration::from_millis(150), ..expected() };
    let start = Instant::now();
    let got = slow_polls.verify(&block.hash(), &exp).await.unwrap();
    assert!(matches!(got.confirmation, Confirmation::ConfirmedAfterWait(_)));
    assert!(start.elapsed() < Duration::from_secs(2), "bounded by the wait, not the interval");
}

/// A node that stops answering while we wait for confirmation is an outage (503), not an
/// unconfirmed block (402).
#[tokio::test]
async fn node_lost_while_waiting_is_unavailable() {
    let block = payment();
    let node = node_with(&block, block_info_reply(&block, Some(PRICE), now_secs(), false)).await;
    let v = verifier(&[node.url()]);
    let verifying = tokio::spawn({
        let hash = block.hash();
        async move { v.verify(&hash, &expected()).await }
    });
    // Cut the node once the block and its previous block were served, before the first poll.
    while node.count_action("block_info") < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    node.set_fault(Fault::Status(500));
    let got = verifying.await.unwrap();
    assert!(matches!(got, Err(Rejection::Unavailable(_))), "{got:?}");
}

/// A proxy's own error (not a node answer about the ledger) fails over to the next endpoint.
#[tokio::test]
async fn fails_over_on_a_proxy_error_answer() {
    let block = payment();
    let good = node_with(&block, good_reply(&block)).await;
    let limited = CannedNode::start().await;
    limited.set_reply("block_info", json!({"error": "Rate limit exceeded"}));
    verifier(&[limited.url(), good.url()]).verify(&block.hash(), &expected()).await.unwrap();
    assert_eq!(good.count_action("block_info"), 2, "the block and its previous block");
}

#[tokio::test]
async fn integrity_failures_are_invalid_block_and_pass_when_unchecked() {
    let block = payment();
    // Contents of another block (same amount, another representative) under the requested hash.
    let mut other = block.clone();
    other.representative = merchant().public_key();
    other.sign(&payer());
    let mismatch = good_reply(&other);
    // Right block, signature with one bit flipped.
    let mut forged = block.clone();
    forged.signature.0[5] ^= 0x10;
    let bad_sig = good_reply(&forged);

    for (reply, what) in [(mismatch, "hash"), (bad_sig, "signature")] {
        let node = node_with(&block, reply).await;
        let strict = verifier(&[node.url()]);
        match strict.verify(&block.hash(), &expected()).await {
            Err(Rejection::InvalidBlock(why)) => assert!(why.contains(what), "{why}"),
            other => panic!("{what}: {other:?}"),
        }
        let lax = NanoRpcVerifier::builder(client(&[node.url()])).check_block_integrity(false).build();
        assert!(lax.verify(&block.hash(), &expected()).await.is_ok(), "{what}");
    }

    // Unparseable contents fields never panic; they are the endpoint's fault, not a verdict.
    let mut garbled = good_reply(&block);
    garbled["contents"]["signature"] = json!("not hex");
    assert!(matches!(verify_reply(garbled).await, Err(Rejection::Unavailable(_))));
    let mut bad_link = good_reply(&block);
    bad_link["contents"]["link"] = json!("12");
    assert!(matches!(verify_reply(bad_link).await, Err(Rejection::Unavailable(_))));
}

#[tokio::test]
async fn confirmed_after_block_confirm() {
    let block = payment();
    let node = node_with(&block, block_info_reply(&block, Some(PRICE), now_secs(), false)).await;
    node.confirm_on_block_confirm(block.hash());
    let got = verifier(&[node.url()]).verify(&block.hash(), &expected()).await.unwrap();
    assert!(matches!(got.confirmation, Confirmation::ConfirmedAfterWait(d) if d < CONFIRM_WAIT));
    assert_eq!(node.count_action("block_confirm"), 1);
    assert!(node.count_action("block_info") >= 2);
}

#[tokio::test]
async fn never_confirmed_gives_up_after_confirm_wait() {
    let block = payment();
    let node = node_with(&block, block_info_reply(&block, Some(PRICE), now_secs(), false)).await;
    let start = Instant::now();
    let got = verifier(&[node.url()]).verify(&block.hash(), &expected()).await;
    let took = start.elapsed();
    assert_eq!(got, Err(Rejection::NotConfirmed));
    assert!(took >= CONFIRM_WAIT && took < CONFIRM_WAIT * 3, "{took:?}");
    assert_eq!(node.count_action("block_confirm"), 1);

    // No wait at all: refused at once, yet the node is still asked to confirm, so a retry
    // can succeed.
    let mut exp = expected();
    exp.confirm_wait = Duration::ZERO;
    let start = Instant::now();
    let got = verifier(&[node.url()]).verify(&block.hash(), &exp).await;
    assert_eq!(got, Err(Rejection::NotConfirmed));
    assert!(start.elapsed() < Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(node.count_action("block_confirm"), 2);
}

/// A chain of two blocks: `prev` leaving `prev_balance`, then a send of `PRICE` on top of it
/// (its `previous` is `prev`'s real hash), served with `amount` absent.
async fn chain(prev_balance: Raw) -> (CannedNode, StateBlock, StateBlock) {
    let prev = signed_send(&payer(), BlockHash::from_bytes([8; 32]), prev_balance, &merchant().public_key());
    let after = Raw::new(BEFORE.get() - PRICE.get());
    let block = signed_send(&payer(), prev.hash(), after, &merchant().public_key());
    let node = node_with(&block, block_info_reply(&block, None, now_secs(), true)).await;
    (node, prev, block)
}

#[tokio::test]
async fn amount_absent_uses_the_previous_block() {
    let (node, prev, block) = chain(BEFORE).await;
    let v = verifier(&[node.url()]);

    // Previous block unknown (pruned): the amount cannot be established; not final.
    let got = v.verify(&block.hash(), &expected()).await;
    assert!(matches!(got, Err(Rejection::Unavailable(_))), "{got:?}");

    // The real previous block: its balance minus this one's is the amount.
    node.insert_block_info(prev.hash(), block_info_reply(&prev, Some(Raw::new(7)), now_secs(), true));
    let got = v.verify(&block.hash(), &expected()).await.unwrap();
    assert_eq!(got.amount, PRICE);
    assert!(node.requests().iter().any(|r| r.body["hash"] == prev.hash().to_string()));

    // A lying node serves other contents for the previous hash: refused, never trusted.
    let mut forged = prev.clone();
    forged.balance = Raw::new(BEFORE.get() + 1);
    node.insert_block_info(prev.hash(), block_info_reply(&forged, None, now_secs(), true));
    assert!(matches!(v.verify(&block.hash(), &expected()).await, Err(Rejection::InvalidBlock(_))));

    // A legacy previous block (hex balance, other hashing): the amount is not guessed.
    let mut legacy = block_info_reply(&prev, None, now_secs(), true);
    legacy["contents"]["type"] = json!("send");
    node.insert_block_info(prev.hash(), legacy);
    assert!(matches!(v.verify(&block.hash(), &expected()).await, Err(Rejection::Unavailable(_))));

    // One raw more before the send: it moved one raw too much.
    let (node, prev, block) = chain(Raw::new(BEFORE.get() + 1)).await;
    node.insert_block_info(prev.hash(), block_info_reply(&prev, None, now_secs(), true));
    assert_eq!(verifier(&[node.url()]).verify(&block.hash(), &expected()).await, Err(Rejection::WrongAmount));
}

#[tokio::test]
async fn contents_as_a_json_string() {
    let block = payment();
    let node = node_with(&block, good_reply(&block)).await;
    node.set_contents_as_string(true);
    verifier(&[node.url()]).verify(&block.hash(), &expected()).await.unwrap();
    // And the canned node really sent a string.
    let info = client(&[node.url()]).block_info(&block.hash()).await.unwrap().unwrap();
    assert_eq!(info.contents.block_type.as_deref(), Some("state"));
}

#[tokio::test]
async fn numeric_and_boolean_scalars() {
    let block = payment();
    let mut reply = good_reply(&block);
    reply["local_timestamp"] = json!(now_secs());
    reply["height"] = json!(2);
    reply["confirmed"] = json!(true);
    // Small enough to be an exact JSON integer: use a block moving 1,000,000 raw.
    let balance = Raw::new(BEFORE.get() - 1_000_000);
    let small = signed_send(&payer(), previous_hash(), balance, &merchant().public_key());
    let mut small_reply = reply.clone();
    small_reply["contents"] = contents_json(&small);
    small_reply["amount"] = json!(1_000_000u64);
    let node = node_with(&small, small_reply).await;
    let mut exp = expected();
    exp.amount = Raw::new(1_000_000);
    let got = verifier(&[node.url()]).verify(&small.hash(), &exp).await.unwrap();
    assert_eq!(got.confirmation, Confirmation::AlreadyConfirmed);

    // A float amount is refused, never rounded: the reply is unusable, not a verdict.
    let mut float = reply;
    float["amount"] = json!(1.5e30);
    let got = verify_reply(float).await;
    assert!(matches!(got, Err(Rejection::Unavailable(_))), "{got:?}");
}

async fn failover_case(first: &str, fault: Option<Fault>) {
    let block = payment();
    let good = node_with(&block, good_reply(&block)).await;
    let bad = node_with(&block, good_reply(&block)).await;
    let first_url = match fault {
        Some(f) => {
            bad.set_fault(f);
            bad.url()
        }
        None => refused_url(),
    };
    let v = verifier(&[first_url, good.url()]);
    let start = Instant::now();
    let got = v.verify(&block.hash(), &expected()).await;
    assert!(got.is_ok(), "{first}: {got:?}");
    assert!(start.elapsed() < Duration::from_secs(2), "{first}");
    // The block's call failed over once; the previous block's call failed over again.
    assert_eq!(v.client().failures(), 2, "{first}");
    assert_eq!(good.request_count(), 2, "{first}");
}

#[tokio::test]
async fn fails_over_on_refused_connection() {
    failover_case("refused", None).await;
}

#[tokio::test]
async fn fails_over_on_http_500() {
    failover_case("500", Some(Fault::Status(500))).await;
}

#[tokio::test]
async fn fails_over_on_timeout() {
    failover_case("slow", Some(Fault::Delay(Duration::from_secs(5)))).await;
}

#[tokio::test]
async fn fails_over_on_unparseable_body() {
    failover_case("garbage", Some(Fault::Body("<html>502 Bad Gateway</html>".into()))).await;
    failover_case("wrong shape", Some(Fault::Body(r#"{"contents": 42}"#.into()))).await;
}

#[tokio::test]
async fn fails_over_on_node_internal_error() {
    let block = payment();
    let good = node_with(&block, good_reply(&block)).await;
    let sick = CannedNode::start().await;
    sick.set_reply("block_info", json!({"error": "Internal server error in RPC"}));
    let v = verifier(&[sick.url(), good.url()]);
    v.verify(&block.hash(), &expected()).await.unwrap();
    assert_eq!(sick.request_count(), 2, "once per call: the block and its previous block");
}

#[tokio::test]
async fn block_not_found_is_definite_no_failover() {
    let block = payment();
    let first = CannedNode::start().await; // does not know the block
    let second = node_with(&block, good_reply(&block)).await;
    let v = verifier(&[first.url(), second.url()]);
    assert_eq!(v.verify(&block.hash(), &expected()).await, Err(Rejection::NotFound));
    assert_eq!(first.request_count(), 1);
    assert_eq!(second.request_count(), 0);
    assert_eq!(v.client().failures(), 0);
}

#[tokio::test]
async fn all_endpoints_down_is_unavailable() {
    let dead = CannedNode::start().await;
    dead.set_fault(Fault::Status(503));
    let v = verifier(&[refused_url(), dead.url()]);
    let start = Instant::now();
    match v.verify(&payment().hash(), &expected()).await {
        Err(Rejection::Unavailable(why)) => assert!(why.contains("attempt"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    // Default budget: two attempts per endpoint.
    assert_eq!(v.client().failures(), 4);
    assert_eq!(dead.request_count(), 2);
}

use common::logs::Logs;

/// A global subscriber: a thread-scoped one misses events whose callsite interest another
/// test thread cached first.
fn global_logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        logs
    })
}

#[tokio::test]
async fn credentials_never_leak() {
    let logs = global_logs();

    let secret_url =
        |url: &str| url.replace("http://", "http://user:secret@") + "apikey-in-path?key=topsecret";
    let refused = secret_url(&refused_url());
    let slow = CannedNode::start().await;
    slow.set_fault(Fault::Delay(Duration::from_secs(5)));
    let c = client(&[refused, secret_url(&slow.url())]);
    let err = c.block_info(&payment().hash()).await.unwrap_err();
    let text = format!("{err} {err:?} {c:?}");
    let logged = logs.text();
    assert!(logged.contains("Nano RPC endpoint failed"), "{logged}");
    for leak in ["secret", "user", "key=", "apikey-in-path"] {
        assert!(!text.contains(leak), "{leak} in {text}");
        assert!(!logged.contains(leak), "{leak} in {logged}");
    }
    assert!(text.contains(&slow.url()), "{text}");

    // The credentials are still used: basic auth and the query reach the node.
    let block = payment();
    let node = node_with(&block, good_reply(&block)).await;
    let c = client(&[secret_url(&node.url())]);
    c.block_info(&block.hash()).await.unwrap().unwrap();
    let req = &node.requests()[0];
    assert_eq!(req.authorization.as_deref(), Some("Basic dXNlcjpzZWNyZXQ=")); // user:secret
    assert_eq!(req.query.as_deref(), Some("key=topsecret"));
}

#[tokio::test]
async fn cooling_endpoint_is_skipped() {
    let block = payment();
    let dead = CannedNode::start().await;
    dead.set_fault(Fault::Status(500));
    let good = node_with(&block, good_reply(&block)).await;
    let c = NanoRpcClient::builder()
        .endpoint(dead.url())
        .endpoint(good.url())
        .timeout(Duration::from_millis(300))
        .failure_threshold(2)
        .cooldown(Duration::from_millis(400))
        .build()
        .unwrap();
    for _ in 0..5 {
        c.block_info(&block.hash()).await.unwrap().unwrap();
    }
    // Two failures put it in cool-down; the next three calls went straight to the good node.
    assert_eq!(dead.request_count(), 2);
    assert_eq!(good.request_count(), 5);
    tokio::time::sleep(Duration::from_millis(450)).await;
    c.block_info(&block.hash()).await.unwrap().unwrap();
    assert_eq!(dead.request_count(), 3, "tried again after the cool-down");
    assert_eq!(c.failures(), 3);

    // When every endpoint is cooling they are still tried.
    let only = NanoRpcClient::builder()
        .endpoint(dead.url())
        .failure_threshold(1)
        .max_attempts(3)
        .backoff(Duration::from_millis(1), Duration::from_millis(1))
        .build()
        .unwrap();
    assert!(matches!(only.block_info(&block.hash()).await, Err(RpcError::Unavailable(_))));
    assert_eq!(dead.request_count(), 6);
}

#[tokio::test]
async fn client_typed_helpers_and_node_errors() {
    let block = payment();
    let node = node_with(&block, good_reply(&block)).await;
    let c = client(&[node.url()]);
    let info = c.block_info(&block.hash()).await.unwrap().unwrap();
    assert_eq!(info.amount, Some(PRICE));
    assert!(info.confirmed);
    assert_eq!(info.contents.to_state_block().unwrap(), block);
    assert!(c.block_confirm(&block.hash()).await.unwrap());
    assert_eq!(c.block_info(&unknown_hash()).await, Ok(None));
    let err = c.block_confirm(&unknown_hash()).await.unwrap_err();
    assert!(err.is_block_not_found(), "{err:?}");
    assert_eq!(c.failures(), 0);
    // "Unknown command" is that endpoint's limitation, not an answer about the ledger: it
    // fails over (here to the same lone endpoint) and ends as unavailable.
    let err = c.call::<Value>(&json!({"action": "no_such_action"})).await.unwrap_err();
    assert!(matches!(&err, RpcError::Unavailable(m) if m.contains("Unknown command")), "{err:?}");
    assert!(c.failures() > 0);
}

// ---- F2: the node's amount is checked against the blocks; quorum; transport ------------------

/// Review E2, through the layer: a signed but never-published 1-raw send, served by a lying
/// node with `amount` = the session's amount and `confirmed`, is refused (`invalid_block`),
/// while the old code granted it.
#[tokio::test]
async fn e2_lying_amount_over_a_dust_send_is_refused_by_the_layer() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use nanosession::protocol::headers::{
        X_PAYMENT_AMOUNT, X_PAYMENT_BLOCK, X_PAYMENT_SESSION, X_PAYMENT_TAG,
    };
    use tower::ServiceExt;

    let merchant = Address::from(merchant().public_key());
    let node = CannedNode::start().await;
    let layer = nanosession::PaymentRequiredLayer::builder()
        .pay_to(merchant)
        .price(Raw::new(50_000_000))
        .public_base_url("https://api.example")
        .verifier(NanoRpcVerifier::new(client(&[node.url()])))
        .build()
        .unwrap()
        .json_body();
    let app =
        axum::Router::new().route("/paid", axum::routing::get(|| async { "the paid content" })).layer(layer);

    let r = app.clone().oneshot(Request::get("/paid").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
    let h = r.headers();
    let id = h[X_PAYMENT_SESSION].to_str().unwrap().to_owned();
    let price: u128 = h[X_PAYMENT_AMOUNT].to_str().unwrap().parse().unwrap();
    let tag: u128 = h[X_PAYMENT_TAG].to_str().unwrap().parse().unwrap();
    let session_amount = Raw::new(price + tag);

    let prev = signed_send(&payer(), BlockHash::from_bytes([8; 32]), Raw::new(1000), merchant.public_key());
    let send = signed_send(&payer(), prev.hash(), Raw::new(999), merchant.public_key()); // moves 1 raw
    node.insert_block_info(prev.hash(), block_info_reply(&prev, None, now_secs(), true));
    node.insert_block_info(send.hash(), block_info_reply(&send, Some(session_amount), now_secs(), true));
    let req = Request::get("/paid")
        .header(X_PAYMENT_SESSION, id.as_str())
        .header(X_PAYMENT_BLOCK, send.hash().to_string())
        .body(Body::empty())
        .unwrap();
    let r = app.oneshot(req).await.unwrap();
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{body}");
    assert!(body.contains("invalid_block"), "{body}");
}

/// The consistency check on its own: a node `amount` that disagrees with the balances is
/// `invalid_block`; with the check off the node's word is taken (the old behaviour).
#[tokio::test]
async fn node_amount_disagreeing_with_the_balances_is_invalid_block() {
    let block = payment();
    let lying = block_info_reply(&block, Some(Raw::new(PRICE.get() + 1)), now_secs(), true);
    let node = node_with(&block, lying).await;
    let exp = Expected { amount: Raw::new(PRICE.get() + 1), ..expected() };
    match verifier(&[node.url()]).verify(&block.hash(), &exp).await {
        Err(Rejection::InvalidBlock(why)) => assert!(why.contains("amount"), "{why}"),
        other => panic!("{other:?}"),
    }
    let trusting = NanoRpcVerifier::builder(client(&[node.url()])).check_amount(false).build();
    assert!(trusting.verify(&block.hash(), &exp).await.is_ok());
    assert_eq!(node.count_action("block_info"), 3, "the check costs one block_info");

    // A node that cannot serve the previous block (pruned) makes the check unavailable, not
    // a grant on the node's word.
    let node = CannedNode::start().await;
    node.insert_block_info(block.hash(), good_reply(&block));
    let got = verifier(&[node.url()]).verify(&block.hash(), &expected()).await;
    assert!(matches!(got, Err(Rejection::Unavailable(_))), "{got:?}");
}

fn quorum_verifier(urls: &[String], k: usize) -> NanoRpcVerifier {
    NanoRpcVerifier::builder(client(urls)).quorum(k).unwrap().poll_interval(Duration::from_millis(20)).build()
}

/// A block the attacker signed but never published, with a fabricated previous block that
/// makes the lie consistent: `(node serving it, the payment's hash)`.
async fn liar_with_unpublished_chain() -> (CannedNode, StateBlock) {
    let fake_prev = signed_send(&payer(), BlockHash::from_bytes([6; 32]), BEFORE, &merchant().public_key());
    let send = signed_send(
        &payer(),
        fake_prev.hash(),
        Raw::new(BEFORE.get() - PRICE.get()),
        &merchant().public_key(),
    );
    let liar = CannedNode::start().await;
    liar.insert_block_info(fake_prev.hash(), block_info_reply(&fake_prev, None, now_secs(), true));
    liar.insert_block_info(send.hash(), block_info_reply(&send, Some(PRICE), now_secs(), true));
    (liar, send)
}

#[tokio::test]
async fn quorum_of_two_refuses_when_one_node_lies() {
    // (a) A consistent lie about a block that does not exist: a lone node grants (the residual
    // risk of trusting one node); with a quorum the honest node's "not found" prevents it.
    let (liar, send) = liar_with_unpublished_chain().await;
    let honest = CannedNode::start().await;
    assert!(verifier(&[liar.url()]).verify(&send.hash(), &expected()).await.is_ok());
    for urls in [[liar.url(), honest.url()], [honest.url(), liar.url()]] {
        let got = quorum_verifier(&urls, 2).verify(&send.hash(), &expected()).await;
        assert_eq!(got, Err(Rejection::NotFound));
    }

    // (b) The review's lie: a real 1-raw send, the liar claiming the session's amount. With
    // the consistency check off, only the quorum stops it: the honest node says 1 raw.
    let prev =
        signed_send(&payer(), BlockHash::from_bytes([8; 32]), Raw::new(1000), &merchant().public_key());
    let dust = signed_send(&payer(), prev.hash(), Raw::new(999), &merchant().public_key());
    let liar = CannedNode::start().await;
    liar.insert_block_info(dust.hash(), block_info_reply(&dust, Some(PRICE), now_secs(), true));
    let honest = CannedNode::start().await;
    honest.insert_block_info(dust.hash(), block_info_reply(&dust, Some(Raw::new(1)), now_secs(), true));
    honest.insert_block_info(prev.hash(), block_info_reply(&prev, None, now_secs(), true));
    for check_amount in [false, true] {
        let v = NanoRpcVerifier::builder(client(&[liar.url(), honest.url()]))
            .quorum(2)
            .unwrap()
            .check_amount(check_amount)
            .build();
        let got = v.verify(&dust.hash(), &expected()).await;
        assert_eq!(got, Err(Rejection::WrongAmount), "check_amount {check_amount}");
    }

    // (c) The liar says confirmed, the honest node says not (and never confirms it).
    let block = payment();
    let liar = node_with(&block, good_reply(&block)).await;
    let honest = node_with(&block, block_info_reply(&block, Some(PRICE), now_secs(), false)).await;
    let got = quorum_verifier(&[liar.url(), honest.url()], 2).verify(&block.hash(), &expected()).await;
    assert_eq!(got, Err(Rejection::NotConfirmed));

    // (d) F11: a re-bootstrapped (or lying) node stamps an old block fresh; the other node's
    // first sighting is older than the session: too old.
    let fresh = node_with(&block, good_reply(&block)).await;
    let old = node_with(&block, block_info_reply(&block, Some(PRICE), expected().not_before - 1, true)).await;
    let got = quorum_verifier(&[fresh.url(), old.url()], 2).verify(&block.hash(), &expected()).await;
    assert_eq!(got, Err(Rejection::TooOld));
}

#[tokio::test]
async fn quorum_of_two_grants_when_both_agree_and_reports_the_earliest_sighting() {
    let block = payment();
    let now = now_secs();
    let a = node_with(&block, block_info_reply(&block, Some(PRICE), now - 5, true)).await;
    let b = node_with(&block, block_info_reply(&block, Some(PRICE), now - 20, false)).await;
    b.confirm_on_block_confirm(block.hash());
    let v = quorum_verifier(&[a.url(), b.url()], 2);
    let got = v.verify(&block.hash(), &expected()).await.unwrap();
    assert_eq!(got.amount, PRICE);
    assert_eq!(got.payer, Address::from(payer().public_key()));
    assert_eq!(got.first_seen, now - 20, "the minimum first-seen time of the endpoints");
    assert!(matches!(got.confirmation, Confirmation::ConfirmedAfterWait(_)));
    // Each endpoint was asked on its own, block and previous block.
    assert!(a.count_action("block_info") >= 2 && b.count_action("block_info") >= 2);
    assert_eq!(b.count_action("block_confirm"), 1);
}

#[tokio::test]
async fn quorum_with_too_few_answers_is_unavailable() {
    let block = payment();
    let up = node_with(&block, good_reply(&block)).await;
    let broken = node_with(&block, good_reply(&block)).await;
    broken.set_fault(Fault::Status(500));
    for down in [refused_url(), broken.url()] {
        let got = quorum_verifier(&[up.url(), down.clone()], 2).verify(&block.hash(), &expected()).await;
        match got {
            Err(Rejection::Unavailable(why)) => assert!(why.contains("1 of 2"), "{why}"),
            other => panic!("{down}: {other:?}"),
        }
        // Quorum 1 over the same endpoints fails over and grants.
        assert!(quorum_verifier(&[down, up.url()], 1).verify(&block.hash(), &expected()).await.is_ok());
    }
    // Two of three with one down: still a grant.
    let other = node_with(&block, good_reply(&block)).await;
    let v = quorum_verifier(&[refused_url(), up.url(), other.url()], 2);
    assert!(v.verify(&block.hash(), &expected()).await.is_ok());
}

#[tokio::test]
async fn quorum_is_validated_at_build() {
    let c = client(&["http://127.0.0.1:1/".to_owned(), "http://127.0.0.1:2/".to_owned()]);
    for bad in [0, 3] {
        let err = NanoRpcVerifier::builder(c.clone()).quorum(bad).unwrap_err();
        assert_eq!(
            err,
            nanosession::verify::VerifierConfigError::QuorumOutOfRange { quorum: bad, endpoints: 2 }
        );
    }
    assert!(NanoRpcVerifier::builder(c.clone()).quorum(1).is_ok());
    assert!(NanoRpcVerifier::builder(c).quorum(2).is_ok());
}

#[test]
fn plain_http_to_a_remote_node_is_refused_at_build() {
    use nanosession::rpc::RpcConfigError;
    let err = NanoRpcClient::new(["http://user:hunter22@rpc.example:7076/?key=topsecret"]).unwrap_err();
    assert_eq!(err, RpcConfigError::InsecureHttp { index: 0 });
    assert!(!err.to_string().contains("hunter22") && !err.to_string().contains("topsecret"), "{err}");
    assert!(NanoRpcClient::new(["https://rpc.example/", "http://127.0.0.1:7076/", "http://[::1]/"]).is_ok());
    assert!(NanoRpcClient::builder()
        .endpoint("http://rpc.example/")
        .allow_insecure_http(true)
        .build()
        .is_ok());
}

// ---- F16: incomplete replies are outages, not verdicts --------------------------------------

/// Mangled versions of a good reply that say nothing definite about the block.
fn incomplete_replies(block: &StateBlock) -> Vec<(&'static str, Value)> {
    let good = good_reply(block);
    let mut cases = vec![("empty object", json!({}))];
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("contents");
    cases.push(("no contents", v));
    let mut v = good.clone();
    v["contents"].as_object_mut().unwrap().remove("type");
    cases.push(("contents without type", v));
    let mut v = good.clone();
    v.as_object_mut().unwrap().remove("subtype");
    cases.push(("state block without subtype", v));
    let mut v = good.clone();
    v["subtype"] = json!("unknown");
    cases.push(("subtype unknown (pruned node)", v));
    let mut v = good.clone();
    v["contents"]["signature"] = json!("not hex");
    cases.push(("unreadable contents", v));
    let mut v = good.clone();
    v["contents"].as_object_mut().unwrap().remove("balance");
    cases.push(("contents without balance", v));
    let mut v = good;
    v.as_object_mut().unwrap().remove("local_timestamp");
    cases.push(("no local_timestamp", v));
    cases
}

#[tokio::test]
async fn incomplete_replies_fail_over_and_end_unavailable() {
    let block = payment();
    let good = node_with(&block, good_reply(&block)).await;
    for (what, reply) in incomplete_replies(&block) {
        // Alone: unavailable (503), never wrong_block_type or invalid_block.
        let mangling = node_with(&block, reply).await;
        let got = verifier(&[mangling.url()]).verify(&block.hash(), &expected()).await;
        assert!(
            matches!(got, Err(Rejection::Unavailable(ref why)) if why.contains("incomplete")),
            "{what}: {got:?}"
        );
        // Before a good endpoint: the next endpoint is asked and decides.
        let v = verifier(&[mangling.url(), good.url()]);
        assert!(v.verify(&block.hash(), &expected()).await.is_ok(), "{what}");
        assert!(v.client().failures() >= 1, "{what}: counted as an endpoint failure");
        // With a quorum, such an endpoint is a missing answer.
        let got = quorum_verifier(&[mangling.url(), good.url()], 2).verify(&block.hash(), &expected()).await;
        assert!(matches!(got, Err(Rejection::Unavailable(_))), "{what}: {got:?}");
    }
}

#[tokio::test]
async fn only_a_definite_other_type_or_subtype_is_wrong_block_type() {
    let block = payment();
    for subtype in ["receive", "epoch", "change"] {
        let mut reply = good_reply(&block);
        reply["subtype"] = json!(subtype);
        assert_eq!(verify_reply(reply).await, Err(Rejection::WrongBlockType), "{subtype}");
    }
    // Legacy blocks have no subtype: the type alone is definite.
    for legacy in ["send", "receive", "open", "change"] {
        let mut reply = good_reply(&block);
        reply["contents"]["type"] = json!(legacy);
        reply.as_object_mut().unwrap().remove("subtype");
        assert_eq!(verify_reply(reply).await, Err(Rejection::WrongBlockType), "{legacy}");
    }
}

// ---- F13: one verification is bounded ------------------------------------------------------

#[tokio::test]
async fn a_node_slow_on_every_attempt_is_cut_at_the_time_limit() {
    let block = payment();
    // Each answer takes 250 ms, inside the 300 ms per-request timeout, and the block stays
    // unconfirmed: without a bound this verification would poll for the whole 5 s wait.
    let node = node_with(&block, block_info_reply(&block, Some(PRICE), now_secs(), false)).await;
    node.set_fault(Fault::Delay(Duration::from_millis(250)));
    let limit = Duration::from_millis(900);
    let v = NanoRpcVerifier::builder(client(&[node.url()]))
        .poll_interval(Duration::from_millis(20))
        .time_limit(limit)
        .build();
    let exp = Expected { confirm_wait: Duration::from_secs(5), ..expected() };
    let start = Instant::now();
    let got = v.verify(&block.hash(), &exp).await;
    let took = start.elapsed();
    match got {
        Err(Rejection::Unavailable(why)) => assert!(why.contains("within 900 ms"), "{why}"),
        other => panic!("{other:?}"),
    }
    // Generous margin for a loaded machine; without the bound this takes over 5 s.
    assert!(took >= limit && took < limit + Duration::from_millis(700), "{took:?}");

    // Every attempt timing out: many attempts would take 10 × 300 ms per call.
    let stalled = node_with(&block, good_reply(&block)).await;
    stalled.set_fault(Fault::Delay(Duration::from_secs(5)));
    let patient = NanoRpcClient::builder()
        .endpoint(stalled.url())
        .timeout(Duration::from_millis(300))
        .max_attempts(10)
        .backoff(Duration::from_millis(5), Duration::from_millis(5))
        .build()
        .unwrap();
    let v = NanoRpcVerifier::builder(patient).time_limit(limit).build();
    let start = Instant::now();
    assert!(matches!(v.verify(&block.hash(), &expected()).await, Err(Rejection::Unavailable(_))));
    assert!(start.elapsed() < limit + Duration::from_millis(700), "{:?}", start.elapsed());
}

#[tokio::test]
async fn max_duration_is_the_client_budget_capped_by_the_time_limit() {
    // 2 attempts of 300 ms and one 5 ms pause per call; two calls; the wait; 1 s poll grace.
    let c = client(&["http://127.0.0.1:1/".to_owned()]);
    assert_eq!(c.max_call_duration(), Duration::from_millis(605));
    let v = NanoRpcVerifier::new(c.clone());
    let wait = Duration::from_millis(300);
    assert_eq!(v.max_duration(wait), Some(Duration::from_millis(2 * 605 + 300 + 1000)));
    let capped = NanoRpcVerifier::builder(c).time_limit(Duration::from_secs(1)).build();
    assert_eq!(capped.max_duration(wait), Some(Duration::from_secs(1)));

    // Defaults: one endpoint fits the 3 s default wait in about 24 s; eight attempts over four
    // endpoints would not, so the 40 s default limit applies. Both stay below 50 s.
    let one = NanoRpcVerifier::new(NanoRpcClient::new(["http://127.0.0.1:7076/"]).unwrap());
    assert_eq!(one.max_duration(Duration::from_secs(3)), Some(Duration::from_millis(24_100)));
    let four: Vec<String> = (1..=4).map(|i| format!("http://127.0.0.{i}:7076/")).collect();
    let four = NanoRpcVerifier::new(NanoRpcClient::new(four).unwrap());
    assert_eq!(four.max_duration(Duration::from_secs(3)), Some(Duration::from_secs(40)));
    // The default trait method knows nothing.
    assert_eq!(common::fake::FakeLedger::new().max_duration(Duration::from_secs(3)), None);
}

/// Every node reply is a JSON object: an array that serde would read into a reply struct by
/// position (here `["<hash>"]` for `process`'s `{"hash": …}`) is an unusable reply, not an
/// answer, and the call fails over to the next endpoint.
#[tokio::test]
async fn a_reply_that_is_not_a_json_object_is_refused_and_fails_over() {
    let (hostile, honest) = (CannedNode::start().await, CannedNode::start().await);
    let hash = "A".repeat(64);
    hostile.set_reply("process", json!([hash]));
    hostile.set_reply("account_info", json!([["1"], "2"]));
    honest.set_reply("process", json!({ "hash": "B".repeat(64) }));
    let client = NanoRpcClient::builder().endpoints([hostile.url(), honest.url()]).build().unwrap();
    let key = PrivateKey::from_bytes([3; 32]);
    let mut block = StateBlock::send(
        key.public_key(),
        BlockHash::from_bytes([1; 32]),
        key.public_key(),
        Raw::new(1),
        &PublicKey::from_bytes([2; 32]),
    );
    block.sign(&key);
    let published = client.process(&block, "send").await.unwrap();
    assert_eq!(published.to_string(), "B".repeat(64), "the array was not taken for an answer");
    assert_eq!(hostile.count_action("process"), 1);
    let only_hostile = NanoRpcClient::builder().endpoints([hostile.url()]).build().unwrap();
    match only_hostile.process(&block, "send").await {
        Err(RpcError::Unavailable(why)) => assert!(why.contains("not a JSON object"), "{why}"),
        other => panic!("{other:?}"),
    }
}
