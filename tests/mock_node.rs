//! The mock node against the behaviour of a real node: every kind of invalid block with the
//! node's exact error text, the reply shapes of every action, the WebSocket confirmation topic,
//! the fault switches, and the crate's own verifier accepting its blocks.
//!
//! All blocks are really signed and carry real work at dev thresholds (microseconds each).
#![cfg(feature = "mock-node")]

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use nanosession::mock_node::{
    MockNode, MockNodeConfig, WorkThresholds, GENESIS_ADDRESS, GENESIS_HASH, GENESIS_PRIVATE_KEY,
};
use nanosession::nano::{work, Address, BlockHash, PrivateKey, PublicKey, Raw, Seed, StateBlock};
use nanosession::rpc::{NanoRpcClient, RpcError};
use nanosession::verify::{Confirmation, Expected, NanoRpcVerifier, PaymentVerifier, Rejection};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const XNO: u128 = 1_000_000_000_000_000_000_000_000_000_000;
const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

// ---------------------------------------------------------------------------------------------
// helpers

fn start() -> MockNode {
    MockNode::start(MockNodeConfig::default()).expect("mock node starts")
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn genesis_hash() -> BlockHash {
    GENESIS_HASH.parse().unwrap()
}

fn key(n: u32) -> PrivateKey {
    Seed::from_bytes([0x5e; 32]).derive(n)
}

fn addr(key: &PublicKey) -> String {
    Address::from(*key).to_string()
}

/// A nonce whose work value for `root` lies in `lo..hi`.
fn work_between(root: &[u8; 32], lo: u64, hi: u64) -> u64 {
    (0u64..).find(|n| (lo..hi).contains(&work::value(*n, root))).unwrap()
}

/// An account chain as a wallet tracks it.
#[derive(Clone)]
struct Wallet {
    key: PrivateKey,
    frontier: BlockHash,
    balance: u128,
}

impl Wallet {
    fn new(key: PrivateKey) -> Wallet {
        Wallet { key, frontier: BlockHash::ZERO, balance: 0 }
    }

    fn genesis() -> Wallet {
        let key = PrivateKey::from_hex(GENESIS_PRIVATE_KEY).unwrap();
        Wallet { key, frontier: genesis_hash(), balance: u128::MAX }
    }

    fn public(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The next block: signed by the wallet's key, work at the dev threshold for its kind.
    fn block(&self, balance: u128, link: [u8; 32]) -> StateBlock {
        let mut block = StateBlock {
            account: self.public(),
            previous: self.frontier,
            representative: self.public(),
            balance: Raw::new(balance),
            link,
            signature: Default::default(),
            work: 0,
        };
        block.sign(&self.key);
        let threshold = if balance > self.balance { work::DEV_EPOCH_2_RECEIVE } else { work::DEV_EPOCH_2 };
        block.work = work::generate(&block.work_root(), threshold, &AtomicBool::new(false)).unwrap();
        block
    }

    fn send(&self, to: &PublicKey, amount: u128) -> StateBlock {
        self.block(self.balance - amount, *to.as_bytes())
    }

    fn receive(&self, send: &BlockHash, amount: u128) -> StateBlock {
        self.block(self.balance + amount, *send.as_bytes())
    }

    fn apply(&mut self, block: &StateBlock) {
        self.frontier = block.hash();
        self.balance = block.balance.get();
    }
}

/// `contents` as a node writes a state block.
fn contents(block: &StateBlock) -> Value {
    json!({
        "type": "state",
        "account": addr(&block.account),
        "previous": block.previous.to_string(),
        "representative": addr(&block.representative),
        "balance": block.balance.to_string(),
        "link": hex::encode_upper(block.link),
        "link_as_account": addr(&PublicKey::from_bytes(block.link)),
        "signature": block.signature.to_string(),
        "work": format!("{:016x}", block.work),
    })
}

async fn rpc(node: &MockNode, body: Value) -> Value {
    let reply = reqwest::Client::new().post(node.rpc_url()).json(&body).send().await.unwrap();
    assert_eq!(reply.status(), 200, "errors are HTTP 200 too");
    reply.json().await.unwrap()
}

async fn process(node: &MockNode, block: &StateBlock) -> Value {
    rpc(node, json!({ "action": "process", "json_block": "true", "block": contents(block) })).await
}

/// Publishes through RPC `process`; the reply must be the block's hash.
async fn publish(node: &MockNode, block: &StateBlock, wallet: &mut Wallet) -> BlockHash {
    let reply = process(node, block).await;
    assert_eq!(reply, json!({ "hash": block.hash().to_string() }));
    wallet.apply(block);
    block.hash()
}

/// Publishes through RPC `process`; the reply must be `{"error": text}`.
async fn refused(node: &MockNode, block: &StateBlock, text: &str) {
    assert_eq!(process(node, block).await, json!({ "error": text }));
}

/// The node with `alice` opened with `amount` (a genesis send of `amount`, then her open).
async fn with_alice(amount: u128) -> (MockNode, Wallet, Wallet) {
    let node = start();
    let mut genesis = Wallet::genesis();
    let mut alice = Wallet::new(key(1));
    let send = genesis.send(&alice.public(), amount);
    publish(&node, &send, &mut genesis).await;
    let open = alice.receive(&send.hash(), amount);
    publish(&node, &open, &mut alice).await;
    (node, genesis, alice)
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// process: every rejection, with the node's exact text

#[tokio::test]
async fn bad_signature() {
    let node = start();
    let mut block = Wallet::genesis().send(&key(1).public_key(), 5);
    block.sign(&key(2));
    refused(&node, &block, "Bad signature").await;
    let mut flipped = Wallet::genesis().send(&key(1).public_key(), 5);
    flipped.signature.0[10] ^= 1;
    refused(&node, &flipped, "Bad signature").await;
}

#[tokio::test]
async fn work_below_the_entry_threshold() {
    let node = start();
    let mut send = Wallet::genesis().send(&key(1).public_key(), 5);
    send.work = work_between(&send.work_root(), 0, work::DEV_EPOCH_2_RECEIVE);
    refused(&node, &send, "Block work is less than threshold").await;
    // An open block's root is its account key.
    let mut open = Wallet::new(key(1)).receive(&genesis_hash(), 5);
    open.work = work_between(open.account.as_bytes(), 0, work::DEV_EPOCH_2_RECEIVE);
    refused(&node, &open, "Block work is less than threshold").await;
}

#[tokio::test]
async fn send_work_below_the_send_threshold() {
    let node = start();
    let mut send = Wallet::genesis().send(&key(1).public_key(), 5);
    // Enough for a receive, not for a send.
    send.work = work_between(&send.work_root(), work::DEV_EPOCH_2_RECEIVE, work::DEV_EPOCH_2);
    refused(&node, &send, "Block work is insufficient").await;
}

#[tokio::test]
async fn change_work_below_the_send_threshold() {
    let (node, _, alice) = with_alice(100).await;
    let mut change = alice.block(100, [0; 32]);
    change.representative = key(8).public_key();
    change.sign(&alice.key);
    // Enough for a receive, not for a change (which needs the send threshold).
    change.work = work_between(&change.work_root(), work::DEV_EPOCH_2_RECEIVE, work::DEV_EPOCH_2);
    refused(&node, &change, "Block work is insufficient").await;
    change.work = work::generate(&change.work_root(), work::DEV_EPOCH_2, &AtomicBool::new(false)).unwrap();
    assert_eq!(process(&node, &change).await["hash"], change.hash().to_string());
}

/// `link` of an epoch-v2 block.
fn epoch_v2_link() -> [u8; 32] {
    let mut link = [0u8; 32];
    link[..14].copy_from_slice(b"epoch v2 block");
    link
}

#[tokio::test]
async fn epoch_block_with_an_unknown_previous_is_a_gap() {
    let node = start();
    let mut genesis = Wallet::genesis();
    genesis.frontier = BlockHash::from_bytes([0x42; 32]);
    // The account's balance kept, signed by the epoch signer (the genesis key): still a gap first.
    refused(&node, &genesis.block(u128::MAX, epoch_v2_link()), "Gap previous block").await;
}

#[tokio::test]
async fn epoch_block_on_an_old_block_is_a_fork() {
    let node = start();
    let mut genesis = Wallet::genesis();
    let mut alice = Wallet::new(key(1));
    let send = genesis.send(&alice.public(), 10);
    publish(&node, &send, &mut genesis).await;
    // On the genesis account: `previous` is the old genesis block.
    let mut stale = Wallet::genesis();
    let expect = json!({ "error": "Fork" });
    // Keeping the previous block's balance makes it an epoch block: a fork.
    assert_eq!(process(&node, &stale.block(u128::MAX, epoch_v2_link())).await, expect);
    // Keeping the account's balance instead makes it an ordinary block, a fork too (not the
    // position error of an epoch block).
    stale.balance = genesis.balance;
    assert_eq!(process(&node, &stale.block(genesis.balance, epoch_v2_link())).await, expect);

    // On another account, signed by the epoch signer only: the previous block's balance decides.
    publish(&node, &alice.receive(&send.hash(), 10), &mut alice).await;
    let open = alice.frontier;
    publish(&node, &alice.send(&key(2).public_key(), 4), &mut alice).await;
    let mut epoch = StateBlock { previous: open, balance: Raw::new(10), ..alice.block(10, epoch_v2_link()) };
    epoch.sign(&genesis.key);
    epoch.work = work::generate(&epoch.work_root(), work::DEV_EPOCH_2, &AtomicBool::new(false)).unwrap();
    refused(&node, &epoch, "Fork").await;
}

#[tokio::test]
async fn receive_work_below_a_configured_receive_threshold() {
    // A receive threshold above the entry threshold makes a receive's own check reachable.
    let thresholds = WorkThresholds {
        epoch_1: work::DEV_EPOCH_2_RECEIVE,
        epoch_2: work::DEV_EPOCH_2,
        epoch_2_receive: work::DEV_EPOCH_1,
    };
    let node = MockNode::start(MockNodeConfig { work_thresholds: thresholds, ..Default::default() }).unwrap();
    assert_eq!(node.work_thresholds(), thresholds);
    let mut genesis = Wallet::genesis();
    let send = genesis.send(&key(1).public_key(), 5);
    publish(&node, &send, &mut genesis).await;
    let mut open = Wallet::new(key(1)).receive(&send.hash(), 5);
    open.work = work_between(open.account.as_bytes(), work::DEV_EPOCH_2_RECEIVE, work::DEV_EPOCH_1);
    refused(&node, &open, "Block work is insufficient").await;
    open.work = work::generate(open.account.as_bytes(), work::DEV_EPOCH_1, &AtomicBool::new(false)).unwrap();
    assert_eq!(process(&node, &open).await["hash"], open.hash().to_string());
}

#[tokio::test]
async fn fork() {
    let (node, mut genesis, alice) = with_alice(100).await;
    let before = genesis.clone();
    publish(&node, &before.send(&key(5).public_key(), 1), &mut genesis).await;
    // Another block on the same previous.
    refused(&node, &before.send(&key(6).public_key(), 2), "Fork").await;
    // A second open block for an opened account.
    let mut reopen = Wallet::new(alice.key.clone());
    reopen.frontier = BlockHash::ZERO;
    refused(&node, &reopen.block(0, [0; 32]), "Fork").await;
}

#[tokio::test]
async fn gap_previous() {
    let node = start();
    let mut genesis = Wallet::genesis();
    genesis.frontier = BlockHash::from_bytes([0x42; 32]);
    refused(&node, &genesis.send(&key(1).public_key(), 1), "Gap previous block").await;
    // An unopened account whose first block names a previous.
    let mut stranger = Wallet::new(key(3));
    stranger.frontier = genesis_hash();
    refused(&node, &stranger.block(0, [0; 32]), "Gap previous block").await;
}

#[tokio::test]
async fn old_block_on_republish() {
    let node = start();
    let mut genesis = Wallet::genesis();
    let send = genesis.send(&key(1).public_key(), 1);
    publish(&node, &send, &mut genesis).await;
    refused(&node, &send, "Old block").await;
}

/// A real node answers "Negative spend" only for a legacy send (which states the balance left,
/// and may state more than the account holds). A state block states the balance left too, so
/// "spending more than the balance" means a balance above the current one: the node reads that
/// as a receive whose link (the destination key) names no block.
#[tokio::test]
async fn overspending_state_block_reads_as_a_receive_of_nothing() {
    let (node, _, alice) = with_alice(100).await;
    let overspend = alice.block(u128::MAX - 50, *key(9).public_key().as_bytes());
    refused(&node, &overspend, "Gap source block").await;
}

#[tokio::test]
async fn gap_source() {
    let (node, _, alice) = with_alice(100).await;
    refused(&node, &alice.receive(&BlockHash::from_bytes([0x77; 32]), 5), "Gap source block").await;
    // An open block must receive something.
    refused(&node, &Wallet::new(key(2)).block(0, [0; 32]), "Gap source block").await;
}

#[tokio::test]
async fn unreceivable_twice_received_send() {
    let node = start();
    let mut genesis = Wallet::genesis();
    let mut alice = Wallet::new(key(1));
    let send = genesis.send(&alice.public(), 10);
    publish(&node, &send, &mut genesis).await;
    publish(&node, &alice.receive(&send.hash(), 10), &mut alice).await;
    refused(&node, &alice.receive(&send.hash(), 10), "Unreceivable").await;
}

#[tokio::test]
async fn unreceivable_send_to_someone_else() {
    let (node, mut genesis, alice) = with_alice(100).await;
    let to_bob = genesis.send(&key(2).public_key(), 10);
    publish(&node, &to_bob, &mut genesis).await;
    refused(&node, &alice.receive(&to_bob.hash(), 10), "Unreceivable").await;
    // A block that is not a send at all.
    refused(&node, &alice.receive(&alice.frontier, 10), "Unreceivable").await;
}

#[tokio::test]
async fn balance_and_amount_mismatch() {
    let node = start();
    let mut genesis = Wallet::genesis();
    let send = genesis.send(&key(1).public_key(), 10);
    publish(&node, &send, &mut genesis).await;
    let alice = Wallet::new(key(1));
    refused(&node, &alice.receive(&send.hash(), 11), "Balance and amount delta do not match").await;
    refused(&node, &alice.receive(&send.hash(), 9), "Balance and amount delta do not match").await;
    // No link: a block that neither sends nor receives must keep the balance.
    let (node, _, alice) = with_alice(10).await;
    refused(&node, &alice.block(11, [0; 32]), "Balance and amount delta do not match").await;
}

async fn process_with_subtype(node: &MockNode, block: &StateBlock, subtype: &str) -> Value {
    let body =
        json!({ "action": "process", "json_block": "true", "subtype": subtype, "block": contents(block) });
    rpc(node, body).await
}

#[tokio::test]
async fn subtype_hint_unknown() {
    let node = start();
    let send = Wallet::genesis().send(&key(1).public_key(), 1);
    let reply = process_with_subtype(&node, &send, "transfer").await;
    assert_eq!(reply, json!({ "error": "Invalid block subtype" }));
}

#[tokio::test]
async fn subtype_hint_balance() {
    let (node, genesis, alice) = with_alice(100).await;
    // The docs example's mistake: a receive published as "send".
    let mut g = genesis.clone();
    let send = g.send(&alice.public(), 5);
    publish(&node, &send, &mut g).await;
    let receive = alice.receive(&send.hash(), 5);
    let expect = json!({ "error": "Invalid block balance for given subtype" });
    assert_eq!(process_with_subtype(&node, &receive, "send").await, expect);
    let spend = alice.send(&key(4).public_key(), 5);
    assert_eq!(process_with_subtype(&node, &spend, "receive").await, expect);
    assert_eq!(process_with_subtype(&node, &spend, "change").await, expect);
    assert_eq!(process_with_subtype(&node, &spend, "epoch").await, expect);
    // The right hints pass.
    assert_eq!(process_with_subtype(&node, &receive, "receive").await["hash"], receive.hash().to_string());
}

#[tokio::test]
async fn subtype_hint_previous() {
    let (node, _, alice) = with_alice(100).await;
    let expect = json!({ "error": "Invalid previous block for given subtype" });
    let change = alice.block(100, [0; 32]);
    assert_eq!(process_with_subtype(&node, &change, "open").await, expect);
    // "change" for a first block (balance 0 = the unopened account's balance, so the balance
    // check passes and the previous check answers).
    let first = Wallet::new(key(7)).block(0, [0; 32]);
    assert_eq!(process_with_subtype(&node, &first, "change").await, expect);
    assert_eq!(process_with_subtype(&node, &change, "change").await["hash"], change.hash().to_string());
}

/// A signature "by" the all-zero key: that key is a point of order 4, so any signature whose
/// challenge is a multiple of 4 verifies with `S = r` (why the node checks the burn account
/// after the signature).
fn forge_burn_signature(block: &mut StateBlock) {
    use blake2::Blake2b512;
    use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
    let zero_key = ed25519_dalek::VerifyingKey::from_bytes(&[0; 32]).unwrap();
    for prefix in 0u8..=255 {
        let esk = ExpandedSecretKey { scalar: Default::default(), hash_prefix: [prefix; 32] };
        block.signature.0 = raw_sign::<Blake2b512>(&esk, block.hash().as_bytes(), &zero_key).to_bytes();
        if block.verify_signature() {
            return;
        }
    }
    panic!("no forged signature in 256 tries");
}

#[tokio::test]
async fn opening_the_burn_account() {
    let node = start();
    let mut genesis = Wallet::genesis();
    let burn = Address::BURN;
    let send = genesis.send(burn.public_key(), 10);
    publish(&node, &send, &mut genesis).await;
    let mut open = StateBlock {
        account: *burn.public_key(),
        previous: BlockHash::ZERO,
        representative: *burn.public_key(),
        balance: Raw::new(10),
        link: *send.hash().as_bytes(),
        signature: Default::default(),
        work: 0,
    };
    forge_burn_signature(&mut open);
    assert!(open.verify_signature(), "the forged signature verifies");
    open.work =
        work::generate(&open.work_root(), work::DEV_EPOCH_2_RECEIVE, &AtomicBool::new(false)).unwrap();
    refused(&node, &open, "Block attempts to open the burn account").await;
}

#[tokio::test]
async fn unparseable_blocks() {
    let node = start();
    let good = contents(&Wallet::genesis().send(&key(1).public_key(), 1));
    let invalid = json!({ "error": "Block is invalid" });
    let mut cases = Vec::new();
    for (field, value) in [
        ("type", json!("send")),
        ("balance", json!("-5")),
        ("balance", json!("340282366920938463463374607431768211456")),
        ("account", json!("nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtd1")),
        ("previous", json!("XYZ")),
        ("signature", json!("00")),
        ("work", json!("not hex")),
        // Hex digits only: `u64::from_str_radix` would take a sign.
        ("work", json!("+1")),
        ("work", json!(format!("+{}", &good["work"].as_str().unwrap()[1..]))),
    ] {
        let mut block = good.clone();
        block[field] = value;
        cases.push(json!({ "action": "process", "json_block": "true", "block": block }));
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("link");
    cases.push(json!({ "action": "process", "json_block": "true", "block": missing }));
    // An object without json_block, a string with it, no block at all, a string that is not JSON.
    cases.push(json!({ "action": "process", "block": good }));
    cases.push(json!({ "action": "process", "json_block": "true", "block": good.to_string() }));
    cases.push(json!({ "action": "process", "json_block": "true" }));
    cases.push(json!({ "action": "process", "block": "{not json" }));
    for body in cases {
        assert_eq!(rpc(&node, body.clone()).await, invalid, "{body}");
    }
    // The block as a JSON string (json_block absent) is the node's other accepted form.
    let reply = rpc(&node, json!({ "action": "process", "block": good.to_string() })).await;
    assert!(reply["hash"].is_string(), "{reply}");
}

#[tokio::test]
async fn request_level_errors() {
    let node = start();
    let http = reqwest::Client::new();
    for body in ["{", "[1]", "{\"no_action\": 1}"] {
        let reply: Value = http.post(node.rpc_url()).body(body).send().await.unwrap().json().await.unwrap();
        assert_eq!(reply, json!({ "error": "Unable to parse JSON" }), "{body}");
    }
    assert_eq!(
        rpc(&node, json!({ "action": "launch_rockets" })).await,
        json!({ "error": "Unknown command" })
    );
    let bad_hash = json!({ "error": "Invalid block hash" });
    assert_eq!(rpc(&node, json!({ "action": "block_info", "hash": "ABC" })).await, bad_hash);
    assert_eq!(rpc(&node, json!({ "action": "block_confirm", "hash": "G".repeat(64) })).await, bad_hash);
    assert_eq!(
        rpc(&node, json!({ "action": "block_info" })).await,
        json!({ "error": "Unable to parse JSON" })
    );
    let bad_account = json!({ "error": "Bad account number" });
    let typo = GENESIS_ADDRESS.replace("txtdo", "txtd1");
    for action in ["account_info", "account_history", "receivable", "pending"] {
        let reply = rpc(&node, json!({ "action": action, "account": typo, "count": "1" })).await;
        assert_eq!(reply, bad_account, "{action}");
    }
    let reply = rpc(&node, json!({ "action": "block_info", "hash": ZEROS })).await;
    assert_eq!(reply, json!({ "error": "Block not found" }));
    let reply = rpc(&node, json!({ "action": "block_confirm", "hash": ZEROS })).await;
    assert_eq!(reply, json!({ "error": "Block not found" }));
}

// ---------------------------------------------------------------------------------------------
// positive paths and reply shapes

#[tokio::test]
async fn send_open_receive_change_with_fresh_keys() {
    let node = start();
    let mut genesis = Wallet::genesis();
    let mut alice = Wallet::new(key(10));
    let mut bob = Wallet::new(key(11));
    let balance = |w: &Wallet| node.balance(&Address::from(w.public())).get();

    let s1 = genesis.send(&alice.public(), 50 * XNO);
    publish(&node, &s1, &mut genesis).await;
    assert_eq!(balance(&genesis), u128::MAX - 50 * XNO);
    assert_eq!(balance(&alice), 0, "a send is not a receive");

    publish(&node, &alice.receive(&s1.hash(), 50 * XNO), &mut alice).await;
    assert_eq!(balance(&alice), 50 * XNO);

    let s2 = alice.send(&bob.public(), 20 * XNO);
    publish(&node, &s2, &mut alice).await;
    publish(&node, &bob.receive(&s2.hash(), 20 * XNO), &mut bob).await;
    let s3 = alice.send(&bob.public(), 5 * XNO);
    publish(&node, &s3, &mut alice).await;
    let r3 = bob.receive(&s3.hash(), 5 * XNO);
    publish(&node, &r3, &mut bob).await;
    assert_eq!((balance(&alice), balance(&bob)), (25 * XNO, 25 * XNO));

    // A change: only the representative moves.
    let mut change = bob.block(bob.balance, [0; 32]);
    change.representative = alice.public();
    change.sign(&bob.key);
    publish(&node, &change, &mut bob).await;
    assert_eq!(balance(&bob), 25 * XNO);

    let stored = node.block(&r3.hash()).unwrap();
    assert_eq!(stored, r3);
    assert!(node.is_confirmed(&change.hash()), "default delay zero: confirmed at once");
    let info = rpc(
        &node,
        json!({ "action": "block_info", "json_block": "true", "hash": change.hash().to_string() }),
    )
    .await;
    assert_eq!(
        (info["subtype"].as_str(), info["amount"].as_str(), info["height"].as_str()),
        (Some("change"), Some("0"), Some("3"))
    );
    let info =
        rpc(&node, json!({ "action": "block_info", "json_block": "true", "hash": r3.hash().to_string() }))
            .await;
    assert_eq!(info["subtype"], "receive");
    let reply = rpc(
        &node,
        json!({ "action": "account_info", "account": addr(&bob.public()), "representative": "true" }),
    )
    .await;
    assert_eq!(reply["representative"], addr(&alice.public()));
    assert_eq!(reply["balance"], (25 * XNO).to_string());
}

#[tokio::test]
async fn block_info_has_the_real_shape() {
    let node = start();
    // Long enough that the first look surely comes before the confirmation, even on a busy machine.
    node.faults().set_confirmation_delay(Duration::from_millis(800));
    let mut genesis = Wallet::genesis();
    let send = genesis.send(&key(1).public_key(), 7 * XNO);
    let before = now_secs();
    let hash = publish(&node, &send, &mut genesis).await;
    let query = json!({ "action": "block_info", "json_block": "true", "hash": hash.to_string() });
    let info = rpc(&node, query.clone()).await;
    let expected_keys = [
        "block_account",
        "amount",
        "balance",
        "height",
        "local_timestamp",
        "successor",
        "confirmed",
        "contents",
        "subtype",
    ];
    let keys: Vec<&str> = info.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), expected_keys.len(), "{info}");
    for (k, v) in info.as_object().unwrap() {
        assert!(expected_keys.contains(&k.as_str()), "unexpected {k}");
        assert!(v.is_string() || k == "contents", "{k} must be a string: {v}");
    }
    assert_eq!(info["block_account"], GENESIS_ADDRESS);
    assert_eq!(info["amount"], (7 * XNO).to_string());
    assert_eq!(info["balance"], (u128::MAX - 7 * XNO).to_string());
    assert_eq!(info["height"], "2");
    let stamp: u64 = info["local_timestamp"].as_str().unwrap().parse().unwrap();
    assert!(stamp >= before && stamp <= now_secs(), "{stamp}");
    assert_eq!(info["successor"], ZEROS);
    assert_eq!(info["confirmed"], "false");
    assert_eq!(info["contents"], contents(&send));
    assert_eq!(info["subtype"], "send");

    // Without json_block the contents are a string holding the same JSON.
    let mut as_text = query.clone();
    as_text.as_object_mut().unwrap().remove("json_block");
    let text_info = rpc(&node, as_text).await;
    let text = text_info["contents"].as_str().expect("contents as a string");
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), contents(&send));
    // Lower-case hash input is accepted.
    let lower = rpc(
        &node,
        json!({ "action": "block_info", "json_block": true, "hash": hash.to_string().to_lowercase() }),
    )
    .await;
    assert_eq!(lower["contents"], contents(&send));

    // block_confirm answers at once; confirmation comes with the delay.
    let started = rpc(&node, json!({ "action": "block_confirm", "hash": hash.to_string() })).await;
    assert_eq!(started, json!({ "started": "1" }));
    wait_until("the send is confirmed", async || rpc(&node, query.clone()).await["confirmed"] == "true")
        .await;
    assert!(node.is_confirmed(&hash));

    // The successor appears once the next block arrives.
    let next = genesis.send(&key(2).public_key(), 1);
    publish(&node, &next, &mut genesis).await;
    assert_eq!(rpc(&node, query).await["successor"], next.hash().to_string());

    // The genesis block: a legacy open, no subtype.
    let info =
        rpc(&node, json!({ "action": "block_info", "json_block": "true", "hash": GENESIS_HASH })).await;
    assert_eq!(info["contents"]["type"], "open");
    assert_eq!(info["height"], "1");
    assert_eq!(info["confirmed"], "true");
    assert_eq!(info["successor"], send.hash().to_string());
    assert!(info.get("subtype").is_none());
}

#[tokio::test]
async fn never_confirm_then_block_confirm_restarts_the_election() {
    let node = start();
    let delay = Duration::from_millis(100);
    node.faults().set_confirmation_delay(delay);
    node.faults().set_never_confirm(true);
    let mut genesis = Wallet::genesis();
    let hash = publish(&node, &genesis.send(&key(1).public_key(), 1), &mut genesis).await;
    let query = json!({ "action": "block_info", "json_block": "true", "hash": hash.to_string() });
    assert_eq!(
        rpc(&node, json!({ "action": "block_confirm", "hash": hash.to_string() })).await["started"],
        "1"
    );
    tokio::time::sleep(3 * delay).await;
    assert_eq!(rpc(&node, query.clone()).await["confirmed"], "false");

    // Neither the publication nor the block_confirm above left an election behind that would
    // end once the fault is off: waiting well past the delay confirms nothing.
    node.faults().set_never_confirm(false);
    tokio::time::sleep(3 * delay).await;
    assert_eq!(rpc(&node, query.clone()).await["confirmed"], "false", "nothing confirms by itself later");
    rpc(&node, json!({ "action": "block_confirm", "hash": hash.to_string() })).await;
    wait_until("block_confirm's election ends", async || {
        rpc(&node, query.clone()).await["confirmed"] == "true"
    })
    .await;
    node.faults().set_confirmation_delay(Duration::ZERO);

    // Forcing works even while the fault is on.
    node.faults().set_never_confirm(true);
    let second = publish(&node, &genesis.send(&key(1).public_key(), 1), &mut genesis).await;
    assert!(!node.is_confirmed(&second));
    assert!(node.confirm(&second));
    assert!(node.is_confirmed(&second));
    assert!(!node.confirm(&BlockHash::from_bytes([3; 32])));
}

#[tokio::test]
async fn blocks_info_fails_whole_or_lists_not_found() {
    let (node, mut genesis, mut alice) = with_alice(10).await;
    let send = genesis.send(&alice.public(), 3);
    publish(&node, &send, &mut genesis).await;
    let known = send.hash().to_string().to_lowercase();
    let unknown = "AB".repeat(32);
    let body = json!({ "action": "blocks_info", "json_block": "true", "hashes": [known, unknown] });
    assert_eq!(rpc(&node, body).await, json!({ "error": "Block not found" }));

    let body = json!({
        "action": "blocks_info", "json_block": "true", "include_not_found": "true",
        "hashes": [known, unknown], "receivable": "true", "source": "true", "receive_hash": "true",
    });
    let reply = rpc(&node, body).await;
    assert_eq!(reply["blocks_not_found"], json!([unknown]));
    let entry = &reply["blocks"][&known];
    assert_eq!(entry["contents"], contents(&send), "keyed by the hash exactly as sent");
    assert_eq!((&entry["receivable"], &entry["pending"]), (&json!("1"), &json!("1")), "both keys");
    assert_eq!(entry["receive_hash"], ZEROS);
    assert_eq!(entry["source_account"], "0");

    // Once received: the receiving block's hash, and nothing receivable any more.
    let open = alice.frontier.to_string();
    let receive = alice.receive(&send.hash(), 3);
    publish(&node, &receive, &mut alice).await;
    let body = json!({
        "action": "blocks_info", "hashes": [known], "pending": "true", "receive_hash": "true",
    });
    let entry = &rpc(&node, body).await["blocks"][&known];
    assert_eq!(entry["receive_hash"], receive.hash().to_string());
    // `pending` is the deprecated alias of `receivable`: it also adds both keys.
    assert_eq!((&entry["receivable"], &entry["pending"]), (&json!("0"), &json!("0")), "{entry}");
    // An explicit `receivable` wins over `pending`.
    let body =
        json!({ "action": "blocks_info", "hashes": [known], "pending": "true", "receivable": "false" });
    let entry = &rpc(&node, body).await["blocks"][&known];
    assert!(entry.get("receivable").is_none() && entry.get("pending").is_none(), "{entry}");

    let reply = rpc(
        &node,
        json!({ "action": "blocks_info", "hashes": [open], "source": "true", "include_not_found": true }),
    )
    .await;
    assert_eq!(reply["blocks"][&open]["source_account"], GENESIS_ADDRESS);
    assert_eq!(reply["blocks_not_found"], "", "empty list written as \"\"");
    assert!(reply["blocks"][&open]["contents"].is_string());

    let bad = rpc(&node, json!({ "action": "blocks_info", "hashes": ["XYZ"] })).await;
    assert_eq!(bad, json!({ "error": "Bad hash number" }));
}

#[tokio::test]
async fn receivable_shapes() {
    let node = start();
    let carol = key(20).public_key();
    let query = |extra: Value| {
        let mut body = json!({ "action": "receivable", "account": addr(&carol) });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    assert_eq!(rpc(&node, query(json!({}))).await, json!({ "blocks": "" }));

    let mut genesis = Wallet::genesis();
    let small = genesis.send(&carol, 2 * XNO);
    publish(&node, &small, &mut genesis).await;
    let large = genesis.send(&carol, 9 * XNO);
    publish(&node, &large, &mut genesis).await;
    let (s, l) = (small.hash().to_string(), large.hash().to_string());

    let mut sorted = vec![s.clone(), l.clone()];
    sorted.sort();
    assert_eq!(rpc(&node, query(json!({}))).await, json!({ "blocks": sorted }));
    assert_eq!(rpc(&node, query(json!({ "count": "1" }))).await["blocks"].as_array().unwrap().len(), 1);
    let reply = rpc(&node, query(json!({ "threshold": (5 * XNO).to_string() }))).await;
    assert_eq!(reply, json!({ "blocks": { l.clone(): (9 * XNO).to_string() } }));
    let reply = rpc(&node, query(json!({ "source": "true" }))).await;
    assert_eq!(reply["blocks"][&s], json!({ "amount": (2 * XNO).to_string(), "source": GENESIS_ADDRESS }));
    let reply = rpc(&node, query(json!({ "threshold": "1", "sorting": "true" }))).await;
    let order: Vec<&String> = reply["blocks"].as_object().unwrap().keys().collect();
    assert_eq!(order, vec![&l, &s], "sorted by amount, largest first");
    let pending = rpc(&node, json!({ "action": "pending", "account": addr(&carol), "count": 10 })).await;
    assert_eq!(pending, json!({ "blocks": sorted }));

    // Unconfirmed sends are listed only when asked for.
    node.faults().set_never_confirm(true);
    let unconfirmed = genesis.send(&carol, XNO);
    publish(&node, &unconfirmed, &mut genesis).await;
    assert_eq!(rpc(&node, query(json!({}))).await["blocks"].as_array().unwrap().len(), 2);
    let all = rpc(&node, query(json!({ "include_only_confirmed": "false" }))).await;
    assert_eq!(all["blocks"].as_array().unwrap().len(), 3);
    assert_eq!(rpc(&node, query(json!({ "count": "0" }))).await, json!({ "error": "Invalid count" }));
}

#[tokio::test]
async fn account_info_and_history() {
    let (node, mut genesis, mut alice) = with_alice(10 * XNO).await;
    let open = alice.frontier;
    // The open is confirmed; nothing after it is, so confirmed and current values differ.
    node.faults().set_never_confirm(true);
    let send = alice.send(&key(2).public_key(), 4 * XNO);
    publish(&node, &send, &mut alice).await;
    let incoming = genesis.send(&alice.public(), XNO);
    publish(&node, &incoming, &mut genesis).await;

    let info = rpc(&node, json!({ "action": "account_info", "account": addr(&alice.public()) })).await;
    assert_eq!(info["frontier"], send.hash().to_string());
    assert_eq!(info["open_block"], open.to_string());
    assert_eq!(info["representative_block"], send.hash().to_string());
    assert_eq!(info["balance"], (6 * XNO).to_string());
    assert_eq!(info["block_count"], "2");
    assert_eq!(info["account_version"], "2");
    assert_eq!(info["confirmation_height"], "1", "only the open is confirmed");
    assert_eq!(info["confirmation_height_frontier"], open.to_string());
    assert!(info["modified_timestamp"].as_str().unwrap().parse::<u64>().unwrap() >= now_secs() - 5);
    assert!(info.as_object().unwrap().values().all(Value::is_string), "{info}");
    let flags = json!({
        "action": "account_info", "account": addr(&alice.public()),
        "receivable": "true", "weight": "true", "include_confirmed": "true",
    });
    let info = rpc(&node, flags).await;
    assert_eq!(info["receivable"], XNO.to_string());
    assert_eq!(info["pending"], XNO.to_string());
    assert_eq!(info["confirmed_receivable"], "0", "the incoming send is not confirmed");
    assert_eq!(info["weight"], (6 * XNO).to_string(), "alice represents herself");
    assert_eq!(info["balance"], (6 * XNO).to_string());
    assert_eq!(info["confirmed_balance"], (10 * XNO).to_string(), "the balance before the send");
    assert_eq!((info["block_count"].as_str(), info["confirmed_height"].as_str()), (Some("2"), Some("1")));
    assert_eq!(info["confirmed_frontier"], open.to_string());
    let nobody =
        rpc(&node, json!({ "action": "account_info", "account": addr(&key(99).public_key()) })).await;
    assert_eq!(nobody, json!({ "error": "Account not found" }));

    let history =
        rpc(&node, json!({ "action": "account_history", "account": addr(&alice.public()), "count": "10" }))
            .await;
    assert_eq!(history["account"], addr(&alice.public()));
    assert!(history.get("previous").is_none(), "whole history fits");
    let entries = history["history"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0],
        json!({
            "type": "send", "account": addr(&key(2).public_key()), "amount": (4 * XNO).to_string(),
            "local_timestamp": entries[0]["local_timestamp"], "height": "2",
            "hash": send.hash().to_string(), "confirmed": "false",
        })
    );
    assert_eq!(entries[1]["confirmed"], "true");
    assert_eq!(entries[1]["type"], "receive", "an open counts as a receive");
    assert_eq!(entries[1]["account"], GENESIS_ADDRESS);
    let page =
        rpc(&node, json!({ "action": "account_history", "account": addr(&alice.public()), "count": 1 }))
            .await;
    assert_eq!(page["history"].as_array().unwrap().len(), 1);
    assert_eq!(page["previous"], open.to_string(), "next page's head");
    let raw = rpc(
        &node,
        json!({ "action": "account_history", "account": addr(&alice.public()), "count": "1", "raw": "true" }),
    )
    .await;
    assert_eq!(raw["history"][0]["type"], "state");
    assert_eq!(raw["history"][0]["subtype"], "send");
    assert_eq!(raw["history"][0]["work"], format!("{:016x}", send.work));
    let empty = rpc(
        &node,
        json!({ "action": "account_history", "account": addr(&key(99).public_key()), "count": "5" }),
    )
    .await;
    assert_eq!(empty, json!({ "account": addr(&key(99).public_key()), "history": "" }));
    let no_count = rpc(&node, json!({ "action": "account_history", "account": addr(&alice.public()) })).await;
    assert_eq!(no_count, json!({ "error": "Unable to parse JSON" }));
}

#[tokio::test]
async fn version_block_count_and_telemetry() {
    let node = start();
    assert_eq!(Address::from(node.genesis_key().public_key()).to_string(), GENESIS_ADDRESS);
    let version = rpc(&node, json!({ "action": "version" })).await;
    assert_eq!(version["network"], "dev");
    assert_eq!(version["network_identifier"], GENESIS_HASH);
    assert!(version.as_object().unwrap().values().all(Value::is_string));
    let count = rpc(&node, json!({ "action": "block_count" })).await;
    assert_eq!(count, json!({ "count": "1", "unchecked": "0", "cemented": "1" }));
    node.fund(&key(1), Raw::new(5)).await;
    let count = rpc(&node, json!({ "action": "block_count" })).await;
    assert_eq!((count["count"].as_str(), count["cemented"].as_str()), (Some("3"), Some("3")));
    let telemetry = rpc(&node, json!({ "action": "telemetry" })).await;
    assert_eq!(telemetry["genesis_block"], GENESIS_HASH);
    assert_eq!(telemetry["block_count"], "3");
    assert_eq!(telemetry["account_count"], "2");
}

#[tokio::test]
async fn work_generate_produces_valid_work() {
    let node = start();
    let root = "718CC2121C3E641059BC1C2CFC45666C99E8AE922F7A807B7D07B62C995D79E2";
    let reply = rpc(&node, json!({ "action": "work_generate", "hash": root.to_lowercase() })).await;
    let nonce = u64::from_str_radix(reply["work"].as_str().unwrap(), 16).unwrap();
    let value = work::value(nonce, &hex::decode(root).unwrap().try_into().unwrap());
    assert!(value >= work::DEV_EPOCH_2);
    assert_eq!(reply["difficulty"], format!("{value:016x}"));
    assert_eq!(reply["hash"], root);
    // A dev node's multiplier is relative to its own base, the dev send threshold.
    assert_eq!(reply["multiplier"], multiplier_text(value, work::DEV_EPOCH_2), "{reply}");
    let harder =
        rpc(&node, json!({ "action": "work_generate", "hash": root, "difficulty": "fff0000000000000" }))
            .await;
    assert!(harder["difficulty"].as_str().unwrap() >= "fff0000000000000");
    let too_hard =
        rpc(&node, json!({ "action": "work_generate", "hash": root, "difficulty": "ffffffffffffffff" }))
            .await;
    assert_eq!(too_hard, json!({ "error": "Difficulty above config maximum or below publish threshold" }));
    // Hex digits only: `+` (which `u64::from_str_radix` takes) is refused, not read as 0fff….
    for bad in ["+fff000000000000", "0xfff0000000000000", "fff000000000000g", " fff000000000000"] {
        let reply = rpc(&node, json!({ "action": "work_generate", "hash": root, "difficulty": bad })).await;
        assert_eq!(reply, json!({ "error": "Bad difficulty" }), "{bad:?}");
    }

    let locked = MockNode::start(MockNodeConfig { enable_control: false, ..Default::default() }).unwrap();
    let reply = rpc(&locked, json!({ "action": "work_generate", "hash": root })).await;
    assert_eq!(reply, json!({ "error": "RPC control is disabled" }));
}

/// The multiplier the node would write for `value`: (2^64 − base) / (2^64 − value) (reference
/// §5.1), fixed point with 15 decimals.
fn multiplier_text(value: u64, base: u64) -> String {
    let gap = |x: u64| ((1u128 << 64) - u128::from(x)) as f64;
    format!("{:.15}", gap(base) / gap(value))
}

#[test]
fn multiplier_text_matches_the_reference_example() {
    // Reference §6.6: work_generate's answer for value fffffff93c41ec94 on the live network.
    assert_eq!(multiplier_text(0xffff_fff9_3c41_ec94, 0xffff_fff8_0000_0000), "1.182623871097636");
}

#[tokio::test]
async fn work_generate_multiplier_is_relative_to_the_live_base_under_live_thresholds() {
    // The live send threshold as the base, with low entry and receive thresholds so a
    // difficulty far below the base (and quick to reach) is allowed.
    let thresholds = WorkThresholds {
        epoch_1: work::DEV_EPOCH_1,
        epoch_2: work::LIVE_SEND,
        epoch_2_receive: work::DEV_EPOCH_2_RECEIVE,
    };
    let node = MockNode::start(MockNodeConfig { work_thresholds: thresholds, ..Default::default() }).unwrap();
    let root = "718CC2121C3E641059BC1C2CFC45666C99E8AE922F7A807B7D07B62C995D79E2";
    let reply =
        rpc(&node, json!({ "action": "work_generate", "hash": root, "difficulty": "ff00000000000000" }))
            .await;
    let nonce = u64::from_str_radix(reply["work"].as_str().unwrap(), 16).unwrap();
    let value = work::value(nonce, &hex::decode(root).unwrap().try_into().unwrap());
    assert!(value >= 0xff00_0000_0000_0000);
    assert_eq!(reply["multiplier"], multiplier_text(value, 0xffff_fff8_0000_0000), "{reply}");
    let multiplier = reply["multiplier"].as_str().unwrap();
    assert_eq!(multiplier.split_once('.').unwrap().1.len(), 15, "{multiplier}");
}

#[tokio::test]
async fn fund_gives_a_balance_through_real_blocks() {
    let node = start();
    let wallet = key(30);
    let account = Address::from(wallet.public_key());
    let open = node.fund(&wallet, Raw::new(3 * XNO)).await;
    let again = node.fund(&wallet, Raw::new(XNO)).await;
    assert_eq!(node.balance(&account), Raw::new(4 * XNO));
    let open_block = node.block(&open).unwrap();
    assert!(open_block.previous.is_zero() && open_block.verify_signature());
    assert_eq!(node.block(&again).unwrap().previous, open);
    assert!(node.is_confirmed(&again));
    assert_eq!(node.balance(&GENESIS_ADDRESS.parse().unwrap()), Raw::new(u128::MAX - 4 * XNO));
}

#[tokio::test]
#[should_panic(expected = "MockNode::fund: the amount is zero")]
async fn fund_refuses_a_zero_amount() {
    start().fund(&key(31), Raw::ZERO).await;
}

#[tokio::test]
async fn dropping_the_node_cancels_a_fund_work_search() {
    // At the live send threshold a search takes about a minute.
    let node =
        MockNode::start(MockNodeConfig { work_thresholds: WorkThresholds::LIVE, ..Default::default() })
            .unwrap();
    let gave_up = tokio::time::timeout(Duration::from_millis(200), node.fund(&key(32), Raw::new(1))).await;
    assert!(gave_up.is_err(), "no live work in 200 ms");
    // The search still runs on the node's blocking pool; shutdown waits up to 2 s for it
    // unless the node's cancel flag stops it.
    let started = Instant::now();
    drop(node);
    assert!(started.elapsed() < Duration::from_secs(1), "dropped in {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------------
// the crate's verifier agrees with the mock's formats

fn verifier(node: &MockNode) -> NanoRpcVerifier {
    let client = NanoRpcClient::new([node.rpc_url()]).unwrap();
    NanoRpcVerifier::builder(client).poll_interval(Duration::from_millis(20)).build()
}

#[tokio::test]
async fn nano_rpc_verifier_accepts_a_mock_payment() {
    let node = start();
    let payer_key = key(40);
    let merchant = key(41).public_key();
    let open = node.fund(&payer_key, Raw::new(10 * XNO)).await;
    let mut payer = Wallet { key: payer_key, frontier: open, balance: 10 * XNO };

    let price = 1_500_000 * 10u128.pow(24);
    let send = payer.send(&merchant, price);
    let hash = publish(&node, &send, &mut payer).await;
    let expected = Expected {
        pay_to: Address::from(merchant),
        amount: Raw::new(price),
        not_before: now_secs() - 60,
        confirm_wait: Duration::from_secs(2),
    };
    let verified = verifier(&node).verify(&hash, &expected).await.unwrap();
    assert_eq!(verified.payer, Address::from(payer.public()));
    assert_eq!(verified.amount, Raw::new(price));
    assert_eq!(verified.confirmation, Confirmation::AlreadyConfirmed);

    // Delayed confirmation: the verifier waits it out through block_confirm and polling.
    node.faults().set_confirmation_delay(Duration::from_millis(600));
    let slow = publish(&node, &payer.send(&merchant, price), &mut payer).await;
    let verified = verifier(&node).verify(&slow, &expected).await.unwrap();
    assert!(matches!(verified.confirmation, Confirmation::ConfirmedAfterWait(_)), "{verified:?}");

    // Never confirmed: refused as not confirmed; other mismatches as the verifier names them.
    node.faults().set_never_confirm(true);
    let stuck = publish(&node, &payer.send(&merchant, price), &mut payer).await;
    let short = Expected { confirm_wait: Duration::from_millis(150), ..expected.clone() };
    assert_eq!(verifier(&node).verify(&stuck, &short).await, Err(Rejection::NotConfirmed));
    node.faults().set_never_confirm(false);
    node.confirm(&stuck);
    let wrong = Expected { amount: Raw::new(price + 1), ..expected.clone() };
    assert_eq!(verifier(&node).verify(&stuck, &wrong).await, Err(Rejection::WrongAmount));
    let receive_hash = node.fund(&key(43), Raw::new(1)).await;
    assert_eq!(verifier(&node).verify(&receive_hash, &expected).await, Err(Rejection::WrongBlockType));
    assert_eq!(
        verifier(&node).verify(&BlockHash::from_bytes([1; 32]), &expected).await,
        Err(Rejection::NotFound)
    );
}

// ---------------------------------------------------------------------------------------------
// WebSocket

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(node: &MockNode) -> Socket {
    tokio_tungstenite::connect_async(node.ws_url()).await.expect("WebSocket connects").0
}

async fn send_json(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

/// The next JSON text message, or `None` if nothing arrives within `wait`.
async fn next_json(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
        }
    }
}

async fn expect_json(socket: &mut Socket) -> Value {
    next_json(socket, Duration::from_secs(3)).await.expect("a message within 3 s")
}

/// Subscribes to confirmations (optionally for `accounts`), waiting for the ack.
async fn subscribe(socket: &mut Socket, accounts: Option<Vec<String>>) {
    let mut request = json!({ "action": "subscribe", "topic": "confirmation", "ack": true, "id": "sub-1" });
    if let Some(accounts) = accounts {
        request["options"] = json!({ "accounts": accounts });
    }
    send_json(socket, request).await;
    let ack = expect_json(socket).await;
    assert_eq!(ack["ack"], "subscribe");
    assert_eq!(ack["id"], "sub-1");
    let time: u128 = ack["time"].as_str().unwrap().parse().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    assert!(time <= now && time + 5_000 > now, "time in milliseconds");
}

#[tokio::test]
async fn websocket_notification_shape_and_ping() {
    let node = start();
    let mut socket = connect(&node).await;
    send_json(&mut socket, json!({ "action": "ping" })).await;
    let pong = expect_json(&mut socket).await;
    assert_eq!(pong["ack"], "pong");
    assert!(pong["time"].is_string());

    subscribe(&mut socket, None).await;
    let mut genesis = Wallet::genesis();
    let send = genesis.send(&key(1).public_key(), 3 * XNO);
    publish(&node, &send, &mut genesis).await;
    let text = match tokio::time::timeout(Duration::from_secs(3), socket.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        other => panic!("expected a notification, got {other:?}"),
    };
    let at = |key: &str| text.find(&format!("\"{key}\"")).unwrap();
    assert!(at("topic") < at("time") && at("time") < at("message"), "the node's order: {text}");
    let note: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(note["topic"], "confirmation");
    let message = &note["message"];
    assert_eq!(message["account"], GENESIS_ADDRESS);
    assert_eq!(message["amount"], (3 * XNO).to_string());
    assert_eq!(message["hash"], send.hash().to_string());
    assert_eq!(message["confirmation_type"], "active_quorum");
    let mut block = contents(&send);
    block["subtype"] = json!("send");
    assert_eq!(message["block"], block);

    // block_confirm on a confirmed block re-sends it.
    rpc(&node, json!({ "action": "block_confirm", "hash": send.hash().to_string() })).await;
    let again = expect_json(&mut socket).await;
    assert_eq!(again["message"]["hash"], send.hash().to_string());
    assert_eq!(again["message"]["confirmation_type"], "active_confirmation_height");

    send_json(&mut socket, json!({ "action": "unsubscribe", "topic": "confirmation", "ack": true })).await;
    assert_eq!(expect_json(&mut socket).await["ack"], "unsubscribe");
    publish(&node, &genesis.send(&key(1).public_key(), 1), &mut genesis).await;
    assert_eq!(next_json(&mut socket, Duration::from_millis(200)).await, None, "unsubscribed");
}

#[tokio::test]
async fn websocket_dependencies_cemented_during_their_own_election() {
    let node = start();
    // Elections that outlast the test: only forced confirmations happen.
    node.faults().set_confirmation_delay(Duration::from_secs(60));
    let mut socket = connect(&node).await;
    subscribe(&mut socket, None).await;
    let mut genesis = Wallet::genesis();
    let running = genesis.send(&key(1).public_key(), 1);
    publish(&node, &running, &mut genesis).await;
    let top = genesis.send(&key(1).public_key(), 1);
    publish(&node, &top, &mut genesis).await;
    assert!(node.confirm(&top.hash()));
    let first = expect_json(&mut socket).await;
    assert_eq!(first["message"]["hash"], running.hash().to_string());
    assert_eq!(
        first["message"]["confirmation_type"], "active_confirmation_height",
        "its election was running"
    );
    let second = expect_json(&mut socket).await;
    assert_eq!(second["message"]["hash"], top.hash().to_string());
    assert_eq!(second["message"]["confirmation_type"], "active_quorum");

    // Without an election of its own (blocks never confirm, so none starts): inactive.
    node.faults().set_never_confirm(true);
    let quiet = genesis.send(&key(1).public_key(), 1);
    publish(&node, &quiet, &mut genesis).await;
    let top = genesis.send(&key(1).public_key(), 1);
    publish(&node, &top, &mut genesis).await;
    assert!(node.confirm(&top.hash()));
    let first = expect_json(&mut socket).await;
    assert_eq!(first["message"]["hash"], quiet.hash().to_string());
    assert_eq!(first["message"]["confirmation_type"], "inactive");
    assert_eq!(expect_json(&mut socket).await["message"]["confirmation_type"], "active_quorum");
}

#[tokio::test]
async fn websocket_account_filter() {
    let node = start();
    let merchant = key(50);
    let payer_key = key(51);
    let open = node.fund(&payer_key, Raw::new(10 * XNO)).await;
    let mut payer = Wallet { key: payer_key, frontier: open, balance: 10 * XNO };

    let mut socket = connect(&node).await;
    // Either prefix works in the filter.
    subscribe(&mut socket, Some(vec![addr(&merchant.public_key()).replace("nano_", "xrb_")])).await;

    let mut genesis = Wallet {
        key: node.genesis_key(),
        frontier: rpc(&node, json!({ "action": "account_info", "account": GENESIS_ADDRESS })).await
            ["frontier"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        balance: node.balance(&GENESIS_ADDRESS.parse().unwrap()).get(),
    };
    let unrelated = genesis.send(&key(52).public_key(), XNO);
    publish(&node, &unrelated, &mut genesis).await;
    let payment = payer.send(&merchant.public_key(), 2 * XNO);
    publish(&node, &payment, &mut payer).await;
    let mut merchant_wallet = Wallet::new(merchant.clone());
    let receive = merchant_wallet.receive(&payment.hash(), 2 * XNO);
    publish(&node, &receive, &mut merchant_wallet).await;

    // Notifications arrive in confirmation order: the unrelated send would have come first.
    let first = expect_json(&mut socket).await;
    assert_eq!(first["message"]["hash"], payment.hash().to_string(), "the send to the merchant");
    assert_eq!(first["message"]["block"]["link_as_account"], addr(&merchant.public_key()));
    let second = expect_json(&mut socket).await;
    assert_eq!(second["message"]["hash"], receive.hash().to_string(), "the merchant's own block");
    assert_eq!(second["message"]["block"]["subtype"], "receive");
    assert_eq!(next_json(&mut socket, Duration::from_millis(200)).await, None);

    // update: add the unrelated account, and it is delivered.
    let update = json!({
        "action": "update", "topic": "confirmation", "ack": true,
        "options": { "accounts_add": [addr(&key(52).public_key())] },
    });
    send_json(&mut socket, update).await;
    assert_eq!(expect_json(&mut socket).await["ack"], "update");
    let another = genesis.send(&key(52).public_key(), XNO);
    publish(&node, &another, &mut genesis).await;
    assert_eq!(expect_json(&mut socket).await["message"]["hash"], another.hash().to_string());
}

#[tokio::test]
async fn websocket_duplicate_and_drop_faults() {
    let node = start();
    let mut socket = connect(&node).await;
    subscribe(&mut socket, None).await;
    let mut genesis = Wallet::genesis();

    node.faults().set_duplicate_notifications(true);
    let twice = genesis.send(&key(1).public_key(), 1);
    publish(&node, &twice, &mut genesis).await;
    for _ in 0..2 {
        assert_eq!(expect_json(&mut socket).await["message"]["hash"], twice.hash().to_string());
    }
    node.faults().set_duplicate_notifications(false);

    node.faults().set_drop_notifications(true);
    let lost = genesis.send(&key(1).public_key(), 1);
    publish(&node, &lost, &mut genesis).await;
    assert!(node.is_confirmed(&lost.hash()), "dropped notification, confirmed block");
    node.faults().set_drop_notifications(false);
    let kept = genesis.send(&key(1).public_key(), 1);
    publish(&node, &kept, &mut genesis).await;
    assert_eq!(expect_json(&mut socket).await["message"]["hash"], kept.hash().to_string());
    assert_eq!(next_json(&mut socket, Duration::from_millis(100)).await, None);
}

// ---------------------------------------------------------------------------------------------
// transport faults

fn fast_client(node: &MockNode, timeout: Duration) -> NanoRpcClient {
    NanoRpcClient::builder().endpoint(node.rpc_url()).timeout(timeout).max_attempts(1).build().unwrap()
}

#[tokio::test]
async fn http_500_fault() {
    let node = start();
    node.faults().set_http_500(true);
    let reply = reqwest::Client::new()
        .post(node.rpc_url())
        .json(&json!({ "action": "version" }))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 500);
    let client = fast_client(&node, Duration::from_secs(2));
    assert!(matches!(client.block_info(&genesis_hash()).await, Err(RpcError::Unavailable(_))));
    node.faults().set_http_500(false);
    assert!(client.block_info(&genesis_hash()).await.unwrap().unwrap().confirmed);
}

/// Status of one RPC `version` request.
async fn version_status(http: &reqwest::Client, node: &MockNode) -> u16 {
    let reply = http.post(node.rpc_url()).json(&json!({ "action": "version" })).send().await.unwrap();
    reply.status().as_u16()
}

#[tokio::test]
async fn fail_rate_fault_fails_that_share_of_requests_and_does_nothing_for_them() {
    let node = start();
    let http = reqwest::Client::new();
    node.faults().set_fail_rate(1.0);
    assert_eq!(node.faults().fail_rate(), 1.0);
    // A failed request is not carried out: the send never reaches the ledger.
    let send = Wallet::genesis().send(&key(1).public_key(), 1);
    let body = json!({ "action": "process", "json_block": "true", "block": contents(&send) });
    let reply = http.post(node.rpc_url()).json(&body).send().await.unwrap();
    assert_eq!(reply.status(), 500);
    assert_eq!(reply.json::<Value>().await.unwrap(), json!({ "error": "Internal server error in RPC" }));
    assert!(node.block(&send.hash()).is_none());

    node.faults().set_fail_rate(0.5);
    let mut failed = 0;
    for _ in 0..200 {
        match version_status(&http, &node).await {
            500 => failed += 1,
            200 => {}
            other => panic!("status {other}"),
        }
    }
    // Binomial(200, 0.5): outside 60..=140 has probability below 1e-8.
    assert!((60..=140).contains(&failed), "{failed} of 200 failed at rate 0.5");

    node.faults().set_fail_rate(f64::NAN);
    assert_eq!(node.faults().fail_rate(), 0.0, "NaN means never");
    for _ in 0..20 {
        assert_eq!(version_status(&http, &node).await, 200);
    }
}

#[tokio::test]
async fn refused_connections_then_restored_on_the_same_port() {
    let node = start();
    let client = fast_client(&node, Duration::from_secs(2));
    assert!(client.block_info(&genesis_hash()).await.unwrap().is_some(), "keep-alive connection in the pool");
    let mut socket = connect(&node).await;

    node.faults().set_refuse_connections(true);
    assert!(std::net::TcpStream::connect(node.rpc_addr()).is_err(), "RPC port closed");
    assert!(std::net::TcpStream::connect(node.ws_addr()).is_err(), "WebSocket port closed");
    assert!(matches!(client.block_info(&genesis_hash()).await, Err(RpcError::Unavailable(_))));
    // Open connections are cut too.
    let cut =
        tokio::time::timeout(Duration::from_secs(2), socket.next()).await.expect("socket closes promptly");
    assert!(!matches!(cut, Some(Ok(Message::Text(_)))), "{cut:?}");

    node.faults().set_refuse_connections(false);
    assert!(client.block_info(&genesis_hash()).await.unwrap().is_some());
    let mut socket = connect(&node).await;
    send_json(&mut socket, json!({ "action": "ping" })).await;
    assert_eq!(expect_json(&mut socket).await["ack"], "pong");
}

#[tokio::test]
async fn refused_connections_a_failed_reopen_can_be_retried() {
    let node = start();
    node.faults().set_refuse_connections(true);
    // Another socket takes the RPC port while it is closed: reopening fails (after its 5 s
    // of retries), and the fault stays on.
    let squatter = std::net::TcpListener::bind(node.rpc_addr()).expect("the closed port is free");
    node.faults().set_refuse_connections(false);
    assert!(node.faults().refuse_connections(), "the reopen failed, so connections are still refused");
    drop(squatter);
    node.faults().set_refuse_connections(false);
    assert!(!node.faults().refuse_connections());
    let client = fast_client(&node, Duration::from_secs(2));
    assert!(client.block_info(&genesis_hash()).await.unwrap().is_some(), "listening again");
}

#[tokio::test]
async fn slow_replies_exceed_a_client_timeout() {
    let node = start();
    node.faults().set_reply_delay(Duration::from_millis(800));
    let client = fast_client(&node, Duration::from_millis(100));
    let started = Instant::now();
    assert!(matches!(client.block_info(&genesis_hash()).await, Err(RpcError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_millis(750), "gave up before the answer");
    // The action happened even though its answer was late.
    let genesis = Wallet::genesis();
    let send = genesis.send(&key(1).public_key(), 1);
    let body = json!({ "action": "process", "json_block": "true", "block": contents(&send) });
    assert!(client.call::<Value>(&body).await.is_err());
    assert!(node.block(&send.hash()).is_some());
    let patient = fast_client(&node, Duration::from_secs(2));
    let started = Instant::now();
    assert!(patient.block_info(&send.hash()).await.unwrap().is_some());
    assert!(started.elapsed() >= Duration::from_millis(800));
}
