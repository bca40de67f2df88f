//! Integration tests of the Tower layer against an axum `Router`, driven with `oneshot`, checked
//! row by row against the protocol contract (`/work/shared/spec/protocol.md`, sections 3-6).
//!
//! The verifier is [`FakeLedger`] (an honest in-memory ledger with knobs), the stores are the
//! memory backends (kept by the test so it can look inside), or [`FailingStore`] over them.

mod common;

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Extension;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use common::fake::{payer, FailingStore, FakeLedger, StoreOp};
use nanosession::layer::{ConfigError, Metrics, PaymentRequiredLayerBuilder};
use nanosession::nano::{Address, BlockHash, PublicKey, Raw};
use nanosession::protocol::headers::{
    EXPOSE_LIST, PAYMENT_REQUIRED, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X_PAYMENT_ADDRESS, X_PAYMENT_AMOUNT,
    X_PAYMENT_BLOCK, X_PAYMENT_EXPIRES, X_PAYMENT_SESSION, X_PAYMENT_TAG, X_PAYMENT_TAG_MODULUS,
};
use nanosession::protocol::{
    PaymentPayload, PaymentRequired, ProofPayload, SettlementResponse, MAX_SIGNATURE_HEADER_LEN, X402_VERSION,
};
use nanosession::session::{unix_now, Session, SessionId};
use nanosession::store::{MemorySessionStore, MemorySpentSet, SessionStore, SpentSet};
use nanosession::verify::{Confirmation, Rejection};
use nanosession::{PaymentRequiredLayer, VerifiedPayment};
use serde_json::{json, Value};
use tower::{Layer, Service, ServiceExt};

/// 10^-6 XNO: a multiple of the default tag modulus (and of 4 and 16).
const PRICE: u128 = 1_000_000_000_000_000_000_000_000;
const MODULUS: u64 = 10_000_000;
const BASE: &str = "https://api.example.test";
const NETWORK: &str = "nano:testnet";
const TTL: u64 = 300;

const STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Every header of a fresh challenge (both forms).
const CHALLENGE_HEADERS: [HeaderName; 7] = [
    X_PAYMENT_ADDRESS,
    X_PAYMENT_AMOUNT,
    X_PAYMENT_TAG,
    X_PAYMENT_TAG_MODULUS,
    X_PAYMENT_SESSION,
    X_PAYMENT_EXPIRES,
    PAYMENT_REQUIRED,
];

fn merchant() -> Address {
    "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap()
}

fn stranger() -> Address {
    Address::from(PublicKey::from_bytes([0x09; 32]))
}

fn price() -> Raw {
    Raw::new(PRICE)
}

// ---------------------------------------------------------------------------------------------
// The application behind the layer.

async fn paid_handler(Extension(p): Extension<VerifiedPayment>) -> Json<Value> {
    Json(json!({
        "block": p.block.to_string(),
        "payer": p.payer.to_string(),
        "amount": p.amount.to_string(),
        "price": p.price.to_string(),
        "tag": p.tag,
        "session": p.session.to_hex(),
        "confirmation": format!("{:?}", p.confirmation),
        "debug": format!("{p:?}"),
    }))
}

async fn free_handler() -> &'static str {
    "free"
}

async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

fn routes() -> Router {
    Router::new()
        .route("/paid", get(paid_handler).options(preflight))
        .route("/a", get(paid_handler))
        .route("/b", get(paid_handler))
        .route("/free", get(free_handler))
}

// ---------------------------------------------------------------------------------------------
// Harness.

/// A layer over [`routes`] with its stores and verifier kept for inspection.
struct Harness {
    app: Router,
    ledger: Arc<FakeLedger>,
    sessions: Arc<MemorySessionStore>,
    spent: Arc<MemorySpentSet>,
    metrics: Arc<Metrics>,
}

/// The required configuration, with the test network and the ledger as verifier.
fn base_builder(ledger: &Arc<FakeLedger>) -> PaymentRequiredLayerBuilder {
    PaymentRequiredLayer::builder()
        .pay_to(merchant())
        .price(price())
        .public_base_url(BASE)
        .network(NETWORK)
        .verifier_shared(ledger.clone())
}

impl Harness {
    fn new() -> Self {
        Self::with(|b| b)
    }

    fn with(configure: impl FnOnce(PaymentRequiredLayerBuilder) -> PaymentRequiredLayerBuilder) -> Self {
        Self::with_sessions(MemorySessionStore::default(), configure)
    }

    fn with_sessions(
        sessions: MemorySessionStore,
        configure: impl FnOnce(PaymentRequiredLayerBuilder) -> PaymentRequiredLayerBuilder,
    ) -> Self {
        Self::with_ledger(sessions, |b, _| configure(b))
    }

    /// Like [`with_sessions`](Self::with_sessions), with the ledger at hand (to wrap it).
    fn with_ledger(
        sessions: MemorySessionStore,
        configure: impl FnOnce(PaymentRequiredLayerBuilder, &Arc<FakeLedger>) -> PaymentRequiredLayerBuilder,
    ) -> Self {
        let ledger = FakeLedger::new();
        let sessions = Arc::new(sessions);
        let spent = Arc::new(MemorySpentSet::default());
        let builder =
            base_builder(&ledger).session_store_shared(sessions.clone()).spent_set_shared(spent.clone());
        let layer = configure(builder, &ledger).build().expect("valid configuration").json_body();
        let metrics = layer.metrics();
        Harness { app: routes().layer(layer), ledger, sessions, spent, metrics }
    }

    /// The layer over a [`FailingStore`] (both roles) wrapping this harness's memory stores.
    fn failing() -> (Self, Arc<FailingStore>) {
        Self::failing_with(|b| b)
    }

    fn failing_with(
        configure: impl FnOnce(PaymentRequiredLayerBuilder) -> PaymentRequiredLayerBuilder,
    ) -> (Self, Arc<FailingStore>) {
        let ledger = FakeLedger::new();
        let sessions = Arc::new(MemorySessionStore::default());
        let spent = Arc::new(MemorySpentSet::default());
        let store = FailingStore::new(sessions.clone(), spent.clone());
        let builder =
            base_builder(&ledger).session_store_shared(store.clone()).spent_set_shared(store.clone());
        let layer = configure(builder).build().unwrap().json_body();
        let metrics = layer.metrics();
        (Harness { app: routes().layer(layer), ledger, sessions, spent, metrics }, store)
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        Reply::read(self.app.clone().oneshot(req).await.unwrap()).await
    }

    /// GET `path` without proof: must be a well-formed 402 challenge.
    async fn challenge(&self, path: &str) -> Issued {
        let reply = self.send(get_req(path)).await;
        reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
        reply.issued()
    }

    /// A confirmed send of exactly the session's amount to the merchant.
    fn pay(&self, issued: &Issued) -> BlockHash {
        self.ledger.pay(merchant(), issued.amount)
    }

    async fn stored(&self, id: &SessionId) -> Option<Session> {
        self.sessions.get(id).await.unwrap()
    }

    async fn is_spent(&self, block: &BlockHash) -> bool {
        self.spent.owner(block).await.unwrap().is_some()
    }

    async fn spent_len(&self) -> u64 {
        self.spent.size().await.unwrap().unwrap()
    }

    fn refusals(&self, code: &str) -> u64 {
        self.metrics.snapshot().refusals.iter().find(|(c, _)| *c == code).map(|x| x.1).unwrap()
    }
}

/// A fresh session as the client sees it.
#[derive(Clone, Debug)]
struct Issued {
    id: SessionId,
    id_text: String,
    tag: u64,
    amount: Raw,
    required: PaymentRequired,
}

/// A response, read whole.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    async fn read(response: Response<Body>) -> Reply {
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Reply { status: parts.status, headers: parts.headers, body }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    fn has_challenge(&self) -> bool {
        CHALLENGE_HEADERS.iter().any(|h| self.headers.contains_key(h))
    }

    fn receipt(&self) -> Option<SettlementResponse> {
        self.headers
            .get(PAYMENT_RESPONSE)
            .map(|v| SettlementResponse::from_header(v).expect("PAYMENT-RESPONSE decodes"))
    }

    fn retry_after(&self) -> Option<u64> {
        self.headers.get(http::header::RETRY_AFTER).map(|v| v.to_str().unwrap().parse().unwrap())
    }

    /// Status, JSON `reason`, a non-empty human `error`, and `Cache-Control: no-store`.
    fn assert_refusal(&self, status: StatusCode, reason: &str) {
        assert_eq!(
            self.status,
            status,
            "status for {reason}; body {:?}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        assert_eq!(body["reason"], reason, "body: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "body: {body}");
        assert_eq!(self.header(&http::header::CACHE_CONTROL), Some("no-store"));
        assert_eq!(
            self.header(&http::header::CONTENT_TYPE),
            Some("application/json"),
            "refusal bodies are JSON"
        );
    }

    /// A 402 after a proof: failed `PAYMENT-RESPONSE` with the reason.
    fn assert_failure_receipt(&self, reason: &str) {
        let receipt = self.receipt().expect("a 402 after a proof carries PAYMENT-RESPONSE");
        assert!(!receipt.success);
        assert_eq!(receipt.error_reason.as_deref(), Some(reason));
        assert_eq!(receipt.transaction, "");
        assert_eq!(receipt.network, NETWORK);
        assert_eq!(receipt.payer, None);
    }

    /// A refusal that is final for this proof: no new session, no `Retry-After`.
    fn assert_final_402(&self, reason: &str) {
        self.assert_refusal(StatusCode::PAYMENT_REQUIRED, reason);
        assert!(!self.has_challenge(), "{reason} must not carry a fresh challenge: {:?}", self.headers);
        assert_eq!(self.retry_after(), None, "{reason} has no Retry-After");
        self.assert_failure_receipt(reason);
    }

    /// The fresh challenge in this response, checked for internal consistency.
    fn issued(&self) -> Issued {
        let h = |name: &HeaderName| {
            self.header(name).unwrap_or_else(|| panic!("challenge header {name} missing: {:?}", self.headers))
        };
        let required = PaymentRequired::from_header(self.headers.get(PAYMENT_REQUIRED).unwrap())
            .expect("PAYMENT-REQUIRED is standard base64 JSON");
        assert_eq!(required.x402_version, X402_VERSION);
        assert_eq!(required.accepts.len(), 1);
        let accepts = &required.accepts[0];
        let extra = accepts.extra.nano_session.as_ref().unwrap();

        let id_text = h(&X_PAYMENT_SESSION).to_owned();
        assert_eq!(id_text.len(), 32);
        assert!(id_text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')), "{id_text}");
        let id: SessionId = id_text.parse().unwrap();
        assert_eq!(extra.id, id);

        let modulus: u64 = h(&X_PAYMENT_TAG_MODULUS).parse().unwrap();
        let tag: u64 = h(&X_PAYMENT_TAG).parse().unwrap();
        assert!(tag < modulus, "tag {tag} >= modulus {modulus}");
        assert_eq!(extra.tag, tag);
        assert_eq!(extra.tag_amount_raw, Raw::new(tag as u128));

        let base_price: Raw = h(&X_PAYMENT_AMOUNT).parse().unwrap();
        assert_eq!(extra.resource_amount_raw, base_price, "X-PAYMENT-AMOUNT is the price without the tag");
        assert_eq!(accepts.amount.get(), base_price.get() + tag as u128, "x402 amount is price + tag");
        assert_eq!(accepts.amount.get() % modulus as u128, tag as u128);

        assert_eq!(h(&X_PAYMENT_ADDRESS), merchant().to_string());
        assert_eq!(accepts.pay_to, merchant());
        assert_eq!(accepts.scheme, "exact");
        assert_eq!(accepts.asset, "XNO");

        let expires = h(&X_PAYMENT_EXPIRES);
        assert!(expires.ends_with('Z'), "{expires}");
        assert_eq!(extra.expires_at, expires);
        let expires_unix = humantime::parse_rfc3339(expires)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let left = expires_unix.saturating_sub(unix_now());
        assert!(left <= accepts.max_timeout_seconds && left + 5 >= accepts.max_timeout_seconds);
        assert_eq!(self.header(&http::header::CACHE_CONTROL), Some("no-store"));

        // The JSON body is the same PaymentRequired, plus the reason.
        let body = self.json();
        assert_eq!(body["accepts"], serde_json::to_value(&required.accepts).unwrap());
        assert_eq!(body["resource"], serde_json::to_value(&required.resource).unwrap());
        assert_eq!(body["x402Version"], X402_VERSION);

        Issued { id, id_text, tag, amount: accepts.amount, required }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests.

fn get_req(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn with_headers(path: &str, headers: &[(HeaderName, HeaderValue)]) -> Request<Body> {
    let mut req = get_req(path);
    for (name, value) in headers {
        req.headers_mut().append(name.clone(), value.clone());
    }
    req
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap()
}

/// Rev 5 proof headers.
fn rev5_headers(id: &str, block: &str) -> Vec<(HeaderName, HeaderValue)> {
    vec![(X_PAYMENT_SESSION, hv(id)), (X_PAYMENT_BLOCK, hv(block))]
}

fn rev5(path: &str, issued: &Issued, block: &BlockHash) -> Request<Body> {
    with_headers(path, &rev5_headers(&issued.id_text, &block.to_string()))
}

/// The x402 `PaymentPayload` a stock client builds from the challenge, as JSON.
fn payload_json(issued: &Issued, block: &BlockHash) -> Value {
    let payload = PaymentPayload {
        x402_version: X402_VERSION,
        resource: issued.required.resource.clone(),
        accepted: issued.required.accepts[0].clone(),
        payload: ProofPayload { proof: *block },
    };
    serde_json::to_value(payload).unwrap()
}

fn encode(value: &Value) -> String {
    STD.encode(serde_json::to_vec(value).unwrap())
}

fn x402(path: &str, value: &Value) -> Request<Body> {
    with_headers(path, &[(PAYMENT_SIGNATURE, hv(&encode(value)))])
}

/// Asserts a grant: 200, the handler's view of the payment, and a successful receipt.
fn assert_granted(reply: &Reply, issued: &Issued, block: &BlockHash) {
    assert_eq!(reply.status, StatusCode::OK, "body: {}", String::from_utf8_lossy(&reply.body));
    let body = reply.json();
    assert_eq!(body["block"], block.to_string());
    assert_eq!(body["payer"], payer().to_string());
    assert_eq!(body["amount"], issued.amount.to_string());
    assert_eq!(body["price"], PRICE.to_string());
    assert_eq!(body["tag"], issued.tag);
    assert_eq!(
        body["session"],
        issued.id_text.parse::<SessionId>().unwrap().key().to_hex(),
        "the service learns the session by its key, never the id"
    );
    assert_eq!(body["confirmation"], format!("{:?}", Confirmation::AlreadyConfirmed));
    let receipt = reply.receipt().expect("paid response carries PAYMENT-RESPONSE");
    assert!(receipt.success);
    assert_eq!(receipt.transaction, block.to_string());
    assert_eq!(receipt.transaction, receipt.transaction.to_uppercase());
    assert_eq!(receipt.network, NETWORK);
    assert_eq!(receipt.payer, Some(payer().to_string()));
    assert_eq!(receipt.error_reason, None);
    assert!(!reply.has_challenge());
}

// ---------------------------------------------------------------------------------------------
// The challenge.

#[tokio::test]
async fn challenge_without_proof_carries_both_forms_and_stores_the_session() {
    let h = Harness::new();
    // The resource URL comes from the configured base, never from Host.
    let mut req = get_req("/paid");
    req.headers_mut().insert(http::header::HOST, hv("evil.example"));
    let reply = h.send(req).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
    assert!(reply.receipt().is_none(), "no proof was presented: no PAYMENT-RESPONSE");
    assert_eq!(reply.retry_after(), None);
    let issued = reply.issued();

    assert_eq!(reply.header(&X_PAYMENT_AMOUNT), Some(PRICE.to_string().as_str()));
    assert_eq!(reply.header(&X_PAYMENT_TAG_MODULUS), Some(MODULUS.to_string().as_str()));
    assert_eq!(issued.amount.get(), PRICE + issued.tag as u128);
    let required = &issued.required;
    assert_eq!(required.resource.url, format!("{BASE}/paid"));
    assert_eq!(required.accepts[0].network, NETWORK);
    assert_eq!(required.accepts[0].max_timeout_seconds, TTL);
    assert_eq!(required.accepts[0].extra.nano_session.as_ref().unwrap().resource_amount_raw, price());

    let stored = h.stored(&issued.id).await.expect("the session is stored before the 402 leaves");
    assert_eq!(stored.amount, issued.amount);
    assert_eq!(stored.tag, issued.tag);
    assert_eq!(stored.price, price());
    assert_eq!(stored.pay_to, merchant());
    assert_eq!(stored.expires_at - stored.created_at, TTL);
    assert!(stored.created_at.abs_diff(unix_now()) <= 2);

    // Every 402 is a new session with its own id.
    let second = h.challenge("/paid").await;
    assert_ne!(second.id, issued.id);
    assert_eq!(h.metrics.snapshot().challenges, 2);
    assert_eq!(h.ledger.calls(), 0);
}

// ---------------------------------------------------------------------------------------------
// Paying.

#[tokio::test]
async fn rev5_payment_is_granted_and_consumes_session_and_block() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let reply = h.send(rev5("/paid", &issued, &block)).await;
    assert_granted(&reply, &issued, &block);
    assert!(h.stored(&issued.id).await.is_none(), "the session is consumed");
    assert!(h.is_spent(&block).await);
    assert_eq!(h.metrics.snapshot().grants, 1);

    // The verifier was asked exactly what the stored session requires.
    let asked = h.ledger.asked();
    assert_eq!(asked.len(), 1);
    let (hash, expected) = &asked[0];
    assert_eq!(hash, &block);
    assert_eq!(expected.pay_to, merchant());
    assert_eq!(expected.amount, issued.amount);
    assert_eq!(expected.confirm_wait, Duration::from_secs(3));
}

#[tokio::test]
async fn lower_case_block_hash_is_accepted_and_normalised() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let lower = block.to_string().to_lowercase();
    assert_ne!(lower, block.to_string());
    let reply = h.send(with_headers("/paid", &rev5_headers(&issued.id_text, &lower))).await;
    assert_granted(&reply, &issued, &block);
    assert_eq!(reply.receipt().unwrap().transaction, lower.to_uppercase());

    // One block, one spent-set key: the upper-case form is now a replay.
    let next = h.challenge("/paid").await;
    let replay = h.send(rev5("/paid", &next, &block)).await;
    replay.assert_final_402("already_spent");
    assert_eq!(h.spent_len().await, 1);
}

#[tokio::test]
async fn x402_signature_payment_is_granted() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let reply = h.send(x402("/paid", &payload_json(&issued, &block))).await;
    assert_granted(&reply, &issued, &block);
    assert!(h.stored(&issued.id).await.is_none());
    assert!(h.is_spent(&block).await);
}

#[tokio::test]
async fn x402_block_hash_alias_and_lower_case_are_accepted() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let mut value = payload_json(&issued, &block);
    value["payload"] = json!({ "blockHash": block.to_string().to_lowercase() });
    let reply = h.send(x402("/paid", &value)).await;
    assert_granted(&reply, &issued, &block);
}

#[tokio::test]
async fn x402_proof_and_block_hash_agreeing_are_accepted() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let mut value = payload_json(&issued, &block);
    value["payload"] = json!({ "proof": block.to_string(), "blockHash": block.to_string().to_lowercase() });
    let reply = h.send(x402("/paid", &value)).await;
    assert_granted(&reply, &issued, &block);
}

#[tokio::test]
async fn both_forms_agreeing_are_accepted() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let mut headers = rev5_headers(&issued.id_text, &block.to_string().to_lowercase());
    headers.push((PAYMENT_SIGNATURE, hv(&encode(&payload_json(&issued, &block)))));
    let reply = h.send(with_headers("/paid", &headers)).await;
    assert_granted(&reply, &issued, &block);
}

#[tokio::test]
async fn both_forms_disagreeing_are_malformed() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let other = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let other_block = h.pay(&other);

    // Different block.
    let mut headers = rev5_headers(&issued.id_text, &block.to_string());
    headers.push((PAYMENT_SIGNATURE, hv(&encode(&payload_json(&issued, &other_block)))));
    let reply = h.send(with_headers("/paid", &headers)).await;
    reply.assert_refusal(StatusCode::BAD_REQUEST, "malformed_payment");

    // Different session.
    let mut headers = rev5_headers(&issued.id_text, &block.to_string());
    headers.push((PAYMENT_SIGNATURE, hv(&encode(&payload_json(&other, &block)))));
    let reply = h.send(with_headers("/paid", &headers)).await;
    reply.assert_refusal(StatusCode::BAD_REQUEST, "malformed_payment");
    assert!(!reply.has_challenge());

    assert_eq!(h.ledger.calls(), 0);
    assert!(h.stored(&issued.id).await.is_some());
    assert!(h.stored(&other.id).await.is_some());
    assert_eq!(h.spent_len().await, 0);
}

#[tokio::test]
async fn edited_echoed_requirement_is_never_trusted() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;

    // The client lowers the amount it echoes and pays only that.
    let cheap = h.ledger.pay(merchant(), price());
    let mut value = payload_json(&issued, &cheap);
    value["accepted"]["amount"] = json!(PRICE.to_string());
    value["accepted"]["extra"]["nanoSession"]["tag"] = json!(0);
    value["accepted"]["extra"]["nanoSession"]["tagAmountRaw"] = json!("0");
    let reply = h.send(x402("/paid", &value)).await;
    reply.assert_final_402("wrong_amount");
    assert_eq!(h.ledger.asked().last().unwrap().1.amount, issued.amount, "the stored amount is checked");

    // The client redirects payTo to another account and pays there.
    let elsewhere = h.ledger.pay(stranger(), issued.amount);
    let mut value = payload_json(&issued, &elsewhere);
    value["accepted"]["payTo"] = json!(stranger().to_string());
    let reply = h.send(x402("/paid", &value)).await;
    reply.assert_final_402("wrong_destination");
    assert_eq!(h.ledger.asked().last().unwrap().1.pay_to, merchant());

    assert!(h.stored(&issued.id).await.is_some());
    assert_eq!(h.spent_len().await, 0);

    // Edited informational fields do not get in the way of an honest payment either.
    let block = h.pay(&issued);
    let mut value = payload_json(&issued, &block);
    value["accepted"]["amount"] = json!("1");
    value["accepted"]["network"] = json!("nano:elsewhere");
    value["resource"]["url"] = json!("https://evil.example/free");
    let reply = h.send(x402("/paid", &value)).await;
    assert_granted(&reply, &issued, &block);
}

// ---------------------------------------------------------------------------------------------
// malformed_payment.

/// A valid payload for `issued`/`block` whose base64 is exactly `len` characters long.
fn signature_of_len(issued: &Issued, block: &BlockHash, len: usize) -> String {
    let mut value = payload_json(issued, block);
    value["resource"]["description"] = json!("");
    let bare = serde_json::to_vec(&value).unwrap().len();
    // The longest JSON whose padded base64 is `len` characters.
    value["resource"]["description"] = json!("x".repeat(len / 4 * 3 - bare));
    let encoded = encode(&value);
    assert_eq!(encoded.len(), len);
    encoded
}

#[tokio::test]
async fn malformed_proofs_are_400_and_cost_nothing() {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE};

    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let other = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let id = issued.id_text.clone();
    let hash = block.to_string();
    let valid = payload_json(&issued, &block);

    // base64url of a valid payload, made to contain a character outside the standard alphabet.
    let url_safe = {
        let mut value = valid.clone();
        let mut pad = String::new();
        loop {
            value["resource"]["description"] = json!(pad);
            let bytes = serde_json::to_vec(&value).unwrap();
            let encoded = URL_SAFE.encode(&bytes);
            if encoded.contains(['-', '_']) {
                break encoded;
            }
            pad.push('~');
        }
    };
    // Unpadded standard base64 of a valid payload whose length needs padding.
    let unpadded = {
        let mut value = valid.clone();
        let mut pad = String::new();
        loop {
            value["resource"]["description"] = json!(pad);
            let bytes = serde_json::to_vec(&value).unwrap();
            if bytes.len() % 3 != 0 {
                break STANDARD_NO_PAD.encode(&bytes);
            }
            pad.push('x');
        }
    };
    let sig = |value: &Value| vec![(PAYMENT_SIGNATURE, hv(&encode(value)))];
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut value = valid.clone();
        f(&mut value);
        sig(&value)
    };
    let mut bad_hex = hash.clone();
    bad_hex.replace_range(10..11, "g");
    let non_ascii = HeaderValue::from_bytes(&[0xC3, 0xA9]).unwrap();

    let cases: Vec<(&str, Vec<(HeaderName, HeaderValue)>)> = vec![
        ("block: bad hex", rev5_headers(&id, &bad_hex)),
        ("block: 63 digits", rev5_headers(&id, &hash[..63])),
        ("block: 65 digits", rev5_headers(&id, &format!("{hash}0"))),
        ("block: 0x prefix", rev5_headers(&id, &format!("0x{}", &hash[..62]))),
        ("block: empty", rev5_headers(&id, "")),
        ("session: bad hex", rev5_headers(&format!("{}z", &id[..31]), &hash)),
        ("session: 31 digits", rev5_headers(&id[..31], &hash)),
        ("session without block", vec![(X_PAYMENT_SESSION, hv(&id))]),
        ("block without session", vec![(X_PAYMENT_BLOCK, hv(&hash))]),
        ("block header repeated", {
            let mut h = rev5_headers(&id, &hash);
            h.push((X_PAYMENT_BLOCK, hv(&hash)));
            h
        }),
        ("session header repeated", {
            let mut h = rev5_headers(&id, &hash);
            h.push((X_PAYMENT_SESSION, hv(&id)));
            h
        }),
        ("signature repeated", {
            let mut h = sig(&valid);
            h.extend(sig(&valid));
            h
        }),
        ("block not ASCII", vec![(X_PAYMENT_SESSION, hv(&id)), (X_PAYMENT_BLOCK, non_ascii)]),
        ("signature: not base64", vec![(PAYMENT_SIGNATURE, hv("this is not base64!"))]),
        ("signature: base64url", vec![(PAYMENT_SIGNATURE, hv(&url_safe))]),
        ("signature: unpadded base64", vec![(PAYMENT_SIGNATURE, hv(&unpadded))]),
        ("signature: bad JSON", vec![(PAYMENT_SIGNATURE, hv(&STD.encode(b"{\"x402Version\":2,")))]),
        ("signature: JSON array", vec![(PAYMENT_SIGNATURE, hv(&STD.encode(b"[]")))]),
        (
            "signature: no nanoSession.id",
            edit(&|v| {
                v["accepted"]["extra"]["nanoSession"].as_object_mut().unwrap().remove("id");
            }),
        ),
        (
            "signature: nanoSession.id not hex",
            edit(&|v| v["accepted"]["extra"]["nanoSession"]["id"] = json!("zz")),
        ),
        (
            "signature: no accepted",
            edit(&|v| {
                v.as_object_mut().unwrap().remove("accepted");
            }),
        ),
        ("signature: x402Version 1", edit(&|v| v["x402Version"] = json!(1))),
        ("signature: x402Version 3", edit(&|v| v["x402Version"] = json!(3))),
        (
            "signature: no x402Version",
            edit(&|v| {
                v.as_object_mut().unwrap().remove("x402Version");
            }),
        ),
        ("signature: no proof", edit(&|v| v["payload"] = json!({}))),
        ("signature: proof not hex", edit(&|v| v["payload"] = json!({ "proof": bad_hex }))),
        ("signature: blockHash short", edit(&|v| v["payload"] = json!({ "blockHash": &hash[..60] }))),
        (
            "signature: proof and blockHash disagree",
            edit(&|v| v["payload"] = json!({ "proof": hash, "blockHash": "0".repeat(64) })),
        ),
        (
            "signature over 8 KiB",
            vec![(PAYMENT_SIGNATURE, hv(&signature_of_len(&issued, &block, MAX_SIGNATURE_HEADER_LEN + 4)))],
        ),
        ("rev5 and x402 name different sessions", {
            let mut h = rev5_headers(&other.id_text, &hash);
            h.extend(sig(&valid));
            h
        }),
    ];

    for (name, headers) in &cases {
        let reply = h.send(with_headers("/paid", headers)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}: {}", String::from_utf8_lossy(&reply.body));
        reply.assert_refusal(StatusCode::BAD_REQUEST, "malformed_payment");
        assert!(reply.json()["detail"].as_str().is_some_and(|d| !d.is_empty()), "{name}: detail");
        assert!(!reply.has_challenge(), "{name}: no fresh challenge on a 400");
        assert!(reply.receipt().is_none(), "{name}: PAYMENT-RESPONSE only on 402/200");
        assert_eq!(reply.retry_after(), None, "{name}");
        assert_eq!(h.ledger.calls(), 0, "{name}: the verifier must not be called");
    }
    assert_eq!(h.refusals("malformed_payment"), cases.len() as u64);
    assert_eq!(h.metrics.snapshot().challenges, 2, "no session was issued for a malformed proof");
    assert!(h.stored(&issued.id).await.is_some(), "the session is kept");
    assert_eq!(h.spent_len().await, 0);

    // Control: the same payment at exactly the size limit is accepted, so the size is what failed.
    let at_limit = signature_of_len(&issued, &block, MAX_SIGNATURE_HEADER_LEN);
    let reply = h.send(with_headers("/paid", &[(PAYMENT_SIGNATURE, hv(&at_limit))])).await;
    assert_granted(&reply, &issued, &block);
}

// ---------------------------------------------------------------------------------------------
// Session refusals.

#[tokio::test]
async fn unknown_session_gets_a_fresh_challenge() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let invented = SessionId::generate().to_string();
    let reply = h.send(with_headers("/paid", &rev5_headers(&invented, &block.to_string()))).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "unknown_session");
    reply.assert_failure_receipt("unknown_session");
    let fresh = reply.issued();
    assert_ne!(fresh.id, issued.id);
    assert_ne!(fresh.id_text, invented);
    assert!(h.stored(&fresh.id).await.is_some(), "the fresh challenge's session is stored");
    assert!(h.stored(&issued.id).await.is_some());
    assert_eq!(h.ledger.calls(), 0);
    assert!(!h.is_spent(&block).await);

    // The real session is still payable with that block.
    assert_granted(&h.send(rev5("/paid", &issued, &block)).await, &issued, &block);
}

/// The session is refused and rechallenged, but kept (amount reserved) until it is pruned after
/// the grace, so a retry of it still being verified cannot lose it (review F14; a deviation from
/// the spec's "deleted", recorded in docs/protocol.md).
#[tokio::test]
async fn expired_session_is_refused_kept_for_the_grace_and_rechallenged() {
    let h = Harness::new();
    let now = unix_now();
    let tag = 4_271_593;
    let expired = Session {
        id: SessionId::generate(),
        pay_to: merchant(),
        price: price(),
        tag,
        amount: Raw::new(PRICE + tag as u128),
        created_at: now - TTL - 100,
        expires_at: now - 100,
    };
    h.sessions.insert(&expired, now).await.unwrap();
    let block = h.ledger.pay_at(merchant(), expired.amount, now - TTL - 90);

    let reply =
        h.send(with_headers("/paid", &rev5_headers(&expired.id.to_string(), &block.to_string()))).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "session_expired");
    reply.assert_failure_receipt("session_expired");
    let fresh = reply.issued();
    assert_ne!(fresh.id, expired.id);
    assert!(h.stored(&expired.id).await.is_some(), "the expired session is kept until pruned");
    assert!(h.stored(&fresh.id).await.is_some());
    assert_eq!(h.ledger.calls(), 0);
    assert!(!h.is_spent(&block).await);
}

// ---------------------------------------------------------------------------------------------
// Verifier refusals.

#[tokio::test]
async fn block_not_found_asks_to_retry_and_the_retry_succeeds() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;

    // A hash the node has never seen.
    let unknown = BlockHash::from_bytes(rand::random());
    let reply = h.send(rev5("/paid", &issued, &unknown)).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "block_not_found");
    assert!(reply.retry_after().is_some_and(|s| s > 0), "Retry-After");
    assert!(!reply.has_challenge());
    reply.assert_failure_receipt("block_not_found");
    assert!(h.stored(&issued.id).await.is_some());
    assert!(!h.is_spent(&unknown).await);

    // The node has not seen it yet; then it has.
    let block = h.pay(&issued);
    h.ledger.reject(block, Rejection::NotFound);
    let reply = h.send(rev5("/paid", &issued, &block)).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "block_not_found");
    assert!(h.stored(&issued.id).await.is_some());
    assert!(!h.is_spent(&block).await);
    h.ledger.clear_override(block);
    assert_granted(&h.send(rev5("/paid", &issued, &block)).await, &issued, &block);
}

#[tokio::test]
async fn block_not_confirmed_asks_to_retry_and_the_retry_succeeds() {
    let h = Harness::with(|b| b.confirm_wait(Duration::from_millis(250)));
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    h.ledger.reject(block, Rejection::NotConfirmed);
    let reply = h.send(rev5("/paid", &issued, &block)).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "block_not_confirmed");
    assert!(reply.retry_after().is_some_and(|s| s > 0), "Retry-After");
    assert!(!reply.has_challenge());
    reply.assert_failure_receipt("block_not_confirmed");
    assert!(h.stored(&issued.id).await.is_some());
    assert!(!h.is_spent(&block).await);
    assert_eq!(
        h.ledger.asked()[0].1.confirm_wait,
        Duration::from_millis(250),
        "configured wait is passed on"
    );

    h.ledger.clear_override(block);
    assert_granted(&h.send(rev5("/paid", &issued, &block)).await, &issued, &block);
}

#[tokio::test]
async fn final_verifier_refusals_keep_the_session() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let now = unix_now();
    let forced = |rejection: Rejection| {
        let block = h.pay(&issued);
        h.ledger.reject(block, rejection);
        block
    };
    let cases: Vec<(&str, BlockHash)> = vec![
        ("wrong_block_type", forced(Rejection::WrongBlockType)),
        ("invalid_block", forced(Rejection::InvalidBlock("bad signature"))),
        // Honest checks of the fake ledger against the stored session.
        ("wrong_destination", h.ledger.pay(stranger(), issued.amount)),
        ("wrong_amount", h.ledger.pay(merchant(), Raw::new(issued.amount.get() + 1))),
        ("wrong_amount", h.ledger.pay(merchant(), price())),
        ("block_too_old", h.ledger.pay_at(merchant(), issued.amount, now - 3600)),
        // And the same reasons forced.
        ("wrong_destination", forced(Rejection::WrongDestination)),
        ("wrong_amount", forced(Rejection::WrongAmount)),
        ("block_too_old", forced(Rejection::TooOld)),
    ];
    for (i, (reason, block)) in cases.iter().enumerate() {
        let reply = h.send(rev5("/paid", &issued, block)).await;
        reply.assert_final_402(reason);
        assert_eq!(h.ledger.calls(), i + 1, "{reason}: verified once");
        assert!(h.stored(&issued.id).await.is_some(), "{reason}: session kept");
        assert!(!h.is_spent(block).await, "{reason}: nothing spent");
    }
    assert_eq!(h.metrics.snapshot().grants, 0);
    assert_eq!(h.metrics.snapshot().challenges, 1);

    // The session is still good for a correct payment.
    let block = h.pay(&issued);
    assert_granted(&h.send(rev5("/paid", &issued, &block)).await, &issued, &block);
}

#[tokio::test]
async fn first_seen_check_uses_creation_time_minus_skew() {
    let h = Harness::with(|b| b.timestamp_skew(Duration::from_secs(20)));
    let issued = h.challenge("/paid").await;
    let created_at = h.stored(&issued.id).await.unwrap().created_at;

    let early = h.ledger.pay_at(merchant(), issued.amount, created_at - 21);
    h.send(rev5("/paid", &issued, &early)).await.assert_final_402("block_too_old");
    assert_eq!(h.ledger.asked()[0].1.not_before, created_at - 20);

    let just_in_time = h.ledger.pay_at(merchant(), issued.amount, created_at - 20);
    assert_granted(&h.send(rev5("/paid", &issued, &just_in_time)).await, &issued, &just_in_time);
}

#[tokio::test]
async fn verifier_answering_for_another_block_or_amount_is_invalid_block() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;

    let block = h.pay(&issued);
    let elsewhere = BlockHash::from_bytes(rand::random());
    h.ledger.answer_for(block, elsewhere, issued.amount);
    h.send(rev5("/paid", &issued, &block)).await.assert_final_402("invalid_block");

    let block = h.pay(&issued);
    h.ledger.answer_for(block, block, price());
    h.send(rev5("/paid", &issued, &block)).await.assert_final_402("invalid_block");

    assert!(h.stored(&issued.id).await.is_some());
    assert_eq!(h.spent_len().await, 0);
    assert_eq!(h.metrics.snapshot().grants, 0);
}

#[tokio::test]
async fn replayed_block_is_already_spent_on_a_new_session() {
    let h = Harness::new();
    let first = h.challenge("/paid").await;
    let block = h.pay(&first);
    assert_granted(&h.send(rev5("/paid", &first, &block)).await, &first, &block);
    let calls = h.ledger.calls();

    let second = h.challenge("/paid").await;
    let reply = h.send(rev5("/paid", &second, &block)).await;
    reply.assert_final_402("already_spent");
    assert_eq!(h.ledger.calls(), calls, "a replay is refused before the node is asked");
    assert!(h.stored(&second.id).await.is_some(), "the new session is kept");
    assert_eq!(h.metrics.snapshot().replays, 1);
    assert_eq!(h.spent_len().await, 1);

    // And in the x402 form.
    let reply = h.send(x402("/paid", &payload_json(&second, &block))).await;
    reply.assert_final_402("already_spent");

    // The same consumed session and block again: granted before, never a second time, and
    // never a fresh challenge to pay again.
    let reply = h.send(rev5("/paid", &first, &block)).await;
    reply.assert_refusal(StatusCode::CONFLICT, "already_granted");
    assert!(!reply.has_challenge());
    assert_eq!(h.metrics.snapshot().grants, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_payments_for_one_session_give_session_used_and_release_the_loser() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let (b1, b2) = (h.pay(&issued), h.pay(&issued));

    h.ledger.hold_until(2);
    let tasks: Vec<_> = [b1, b2]
        .into_iter()
        .map(|block| {
            let app = h.app.clone();
            let req = rev5("/paid", &issued, &block);
            tokio::spawn(async move { Reply::read(app.oneshot(req).await.unwrap()).await })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    h.ledger.release_hold();
    assert_eq!(h.ledger.calls(), 2, "both requests reached the verifier");

    let (winner, loser) = match (replies[0].status, replies[1].status) {
        (StatusCode::OK, _) => ((&replies[0], b1), (&replies[1], b2)),
        (_, StatusCode::OK) => ((&replies[1], b2), (&replies[0], b1)),
        _ => panic!("exactly one must win: {replies:?}"),
    };
    assert_granted(winner.0, &issued, &winner.1);
    loser.0.assert_refusal(StatusCode::PAYMENT_REQUIRED, "session_used");
    loser.0.assert_failure_receipt("session_used");
    let fresh = loser.0.issued();
    assert_ne!(fresh.id, issued.id);
    assert!(h.stored(&fresh.id).await.is_some());

    assert!(h.stored(&issued.id).await.is_none());
    assert!(h.is_spent(&winner.1).await);
    assert!(!h.is_spent(&loser.1).await, "the loser's block was released, not burned");
    assert_eq!(h.spent_len().await, 1);
    assert_eq!(h.metrics.snapshot().grants, 1);
    assert_eq!(h.refusals("session_used"), 1);
}

// ---------------------------------------------------------------------------------------------
// Infrastructure failures.

#[tokio::test]
async fn verifier_unavailable_is_503_and_consumes_nothing() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);

    h.ledger.set_down(true);
    let reply = h.send(rev5("/paid", &issued, &block)).await;
    reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "verifier_unavailable");
    assert!(reply.retry_after().is_some_and(|s| s > 0), "Retry-After");
    assert!(!reply.has_challenge());
    assert!(h.stored(&issued.id).await.is_some());
    assert_eq!(h.spent_len().await, 0);
    assert_eq!(h.metrics.snapshot().grants, 0);

    // One block's lookup failing is the same.
    h.ledger.set_down(false);
    h.ledger.reject(block, Rejection::Unavailable("timeout".into()));
    let reply = h.send(rev5("/paid", &issued, &block)).await;
    reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "verifier_unavailable");
    assert!(h.stored(&issued.id).await.is_some());

    h.ledger.clear_override(block);
    assert_granted(&h.send(rev5("/paid", &issued, &block)).await, &issued, &block);
}

#[tokio::test]
async fn store_unavailable_on_the_challenge_path() {
    let (h, store) = Harness::failing();
    store.set_down(true);
    let reply = h.send(get_req("/paid")).await;
    reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(reply.retry_after().is_some_and(|s| s > 0), "Retry-After");
    assert!(!reply.has_challenge(), "no session could be stored, so none is offered");
    assert!(reply.receipt().is_none());
    assert!(store.errors() > 0);
    assert_eq!(h.metrics.snapshot().challenges, 0);

    store.set_down(false);
    let issued = h.challenge("/paid").await;
    assert!(h.stored(&issued.id).await.is_some());
}

#[tokio::test]
async fn store_unavailable_on_the_paid_path_then_recovery() {
    let (h, store) = Harness::failing();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);

    store.set_down(true);
    let reply = h.send(rev5("/paid", &issued, &block)).await;
    reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(reply.retry_after().is_some_and(|s| s > 0), "Retry-After");
    assert!(!reply.has_challenge());
    assert!(reply.receipt().is_none());
    assert_eq!(h.metrics.snapshot().grants, 0, "infrastructure failure is never a grant");
    assert!(h.stored(&issued.id).await.is_some());
    assert_eq!(h.spent_len().await, 0);

    // The same session and payment succeed once the store is back.
    store.set_down(false);
    assert_granted(&h.send(rev5("/paid", &issued, &block)).await, &issued, &block);
    assert!(h.stored(&issued.id).await.is_none());
    assert!(h.is_spent(&block).await);
}

#[tokio::test]
async fn store_failing_at_each_step_of_settlement_consumes_nothing() {
    let (h, store) = Harness::failing();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);

    // Take failing after the claim: the claim stays with this session only, so the same
    // session can finish it and no other session can use the block.
    for op in [StoreOp::Get, StoreOp::Owner, StoreOp::Claim, StoreOp::Take] {
        store.fail_only(&[op]);
        let reply = h.send(rev5("/paid", &issued, &block)).await;
        reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
        assert!(reply.retry_after().is_some(), "{op:?}");
        assert!(!reply.has_challenge(), "{op:?}");
        assert!(h.stored(&issued.id).await.is_some(), "{op:?}: session kept");
        let owner = h.spent.owner(&block).await.unwrap();
        assert!(
            owner.is_none() || owner == Some(issued.id.key()),
            "{op:?}: block claimed by no other session"
        );
        assert_eq!(h.metrics.snapshot().grants, 0, "{op:?}");
    }
    store.fail_only(&[]);
    assert_granted(&h.send(rev5("/paid", &issued, &block)).await, &issued, &block);
}

/// Spec §5: store unreachable -> 503 "and nothing is consumed". Here the store goes away between
/// the block claim and the session take (so the release fails too); once it is back, the same
/// session and payment must still be good.
#[tokio::test]
async fn store_outage_between_claim_and_take_does_not_burn_the_payment() {
    let (h, store) = Harness::failing();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);

    store.fail_only(&[StoreOp::Take, StoreOp::Release]);
    let reply = h.send(rev5("/paid", &issued, &block)).await;
    reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(h.stored(&issued.id).await.is_some(), "the session was not consumed");

    store.fail_only(&[]);
    let reply = h.send(rev5("/paid", &issued, &block)).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the client paid for a session that is still pending, but its block stayed claimed: {}",
        String::from_utf8_lossy(&reply.body)
    );
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_simultaneous_retries_are_granted_exactly_once() {
    const N: usize = 64;
    let h = Harness::with(|b| b.verifications_per_session(N as u32));
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);

    // Hold every verification until all N arrived, so all N race for the claim.
    h.ledger.hold_until(N);
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let app = h.app.clone();
            // Mix both forms and both cases: still one block, one session.
            let req = match i % 3 {
                0 => rev5("/paid", &issued, &block),
                1 => with_headers("/paid", &rev5_headers(&issued.id_text, &block.to_string().to_lowercase())),
                _ => x402("/paid", &payload_json(&issued, &block)),
            };
            tokio::spawn(async move { Reply::read(app.oneshot(req).await.unwrap()).await })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    h.ledger.release_hold();

    let granted: Vec<_> = replies.iter().filter(|r| r.status == StatusCode::OK).collect();
    assert_eq!(granted.len(), 1, "exactly one grant");
    assert_granted(granted[0], &issued, &block);
    for reply in replies.iter().filter(|r| r.status != StatusCode::OK) {
        let reason = reply.json()["reason"].as_str().unwrap().to_owned();
        match reason.as_str() {
            // The same pair re-entered the claim and found the session granted: never pay again.
            "already_granted" => {
                reply.assert_refusal(StatusCode::CONFLICT, "already_granted");
                let receipt = reply.receipt().unwrap();
                assert!(receipt.success && receipt.transaction == block.to_string());
                assert!(!reply.has_challenge());
            }
            // The first claimer, whose take lost to a re-entered retry of the same pair.
            "session_used" => reply.assert_failure_receipt(&reason),
            other => panic!("unexpected refusal {other}"),
        }
    }
    assert!(h.refusals("session_used") <= 1);
    assert_eq!(h.ledger.calls(), N, "all raced past the pre-checks");
    assert_eq!(h.spent_len().await, 1, "the block is in the spent set exactly once");
    assert!(h.is_spent(&block).await);
    assert!(h.stored(&issued.id).await.is_none());
    let metrics = h.metrics.snapshot();
    assert_eq!(metrics.grants, 1);
    assert_eq!(metrics.verifications, N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_sessions_are_all_granted() {
    const N: usize = 64;
    let h = Harness::new();
    let challenges: Vec<_> = (0..N)
        .map(|_| {
            let app = h.app.clone();
            tokio::spawn(async move { Reply::read(app.oneshot(get_req("/paid")).await.unwrap()).await })
        })
        .collect();
    let mut sessions = Vec::new();
    for task in challenges {
        let reply = task.await.unwrap();
        reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
        let issued = reply.issued();
        let block = h.pay(&issued);
        sessions.push((issued, block));
    }
    let amounts: HashSet<_> = sessions.iter().map(|(s, _)| s.amount).collect();
    assert_eq!(amounts.len(), N, "pending amounts are unique");

    let payments: Vec<_> = sessions
        .iter()
        .map(|(issued, block)| {
            let app = h.app.clone();
            let req = rev5("/paid", issued, block);
            tokio::spawn(async move { Reply::read(app.oneshot(req).await.unwrap()).await })
        })
        .collect();
    for ((issued, block), task) in sessions.iter().zip(payments) {
        assert_granted(&task.await.unwrap(), issued, block);
    }
    assert_eq!(h.metrics.snapshot().grants, N as u64);
    assert_eq!(h.spent_len().await, N as u64);
    for (issued, _) in &sessions {
        assert!(h.stored(&issued.id).await.is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// Capacity: the tag space and the session store.

#[tokio::test]
async fn pending_amounts_are_unique_until_the_tag_space_is_full() {
    let h = Harness::with_sessions(MemorySessionStore::with_capacity(4), |b| b.tag_modulus(4));
    let mut issued = Vec::new();
    for _ in 0..4 {
        let reply = h.send(get_req("/paid")).await;
        reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
        issued.push(reply.issued());
    }
    let amounts: HashSet<_> = issued.iter().map(|s| s.amount).collect();
    assert_eq!(amounts.len(), 4, "four pending sessions, four distinct amounts");
    assert!(amounts.iter().all(|a| (PRICE..PRICE + 4).contains(&a.get())));

    let reply = h.send(get_req("/paid")).await;
    reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(reply.retry_after().is_some());
    assert!(!reply.has_challenge());

    // Paying one frees its amount.
    let block = h.pay(&issued[2]);
    assert_granted(&h.send(rev5("/paid", &issued[2], &block)).await, &issued[2], &block);
    let again = h.challenge("/paid").await;
    assert_eq!(again.amount, issued[2].amount, "the only free amount");
}

/// A session that has just expired keeps its amount for the grace period, so a paid retry
/// still being verified when it expires cannot have its amount reissued under it.
#[tokio::test]
async fn a_just_expired_session_keeps_its_amount_for_the_grace() {
    let h = Harness::with_sessions(MemorySessionStore::with_capacity(2), |b| b.tag_modulus(2));
    let now = unix_now();
    let recent = Session {
        id: SessionId::generate(),
        pay_to: merchant(),
        price: price(),
        tag: 0,
        amount: price(),
        created_at: now - 310,
        expires_at: now - 10, // expired, but within nanosession::store::SESSION_GRACE_SECS
    };
    assert_eq!(h.sessions.insert(&recent, now).await.unwrap(), nanosession::store::Insert::Inserted);
    let other = h.challenge("/paid").await;
    assert_eq!(other.amount.get(), PRICE + 1, "tag 0 is still held by the just-expired session");
    let reply = h.send(get_req("/paid")).await;
    reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");

    // Past the grace, the amount is free again.
    let mut old = recent.clone();
    old.id = SessionId::generate();
    old.tag = 1;
    old.amount = Raw::new(PRICE + 1);
    h.sessions.take(&other.id).await.unwrap();
    old.expires_at = now - nanosession::store::SESSION_GRACE_SECS - 5;
    assert_eq!(h.sessions.insert(&old, now - 400).await.unwrap(), nanosession::store::Insert::Inserted);
    let again = h.challenge("/paid").await;
    assert_eq!(again.amount.get(), PRICE + 1, "an amount past its grace is reissued");
}

/// With one free tag left the layer must still find it: a store that is not full and a tag
/// space that is not full are no reason for a 503.
#[tokio::test]
async fn the_last_free_tag_is_always_found() {
    const M: u64 = 16;
    let h = Harness::with_sessions(MemorySessionStore::with_capacity(M as usize), |b| b.tag_modulus(M));
    let now = unix_now();
    let mut spurious = 0;
    for round in 0..30 {
        let free = round % M;
        let mut fillers = Vec::new();
        for tag in (0..M).filter(|t| *t != free) {
            let session = Session {
                id: SessionId::generate(),
                pay_to: merchant(),
                price: price(),
                tag,
                amount: Raw::new(PRICE + tag as u128),
                created_at: now,
                expires_at: now + TTL,
            };
            h.sessions.insert(&session, now).await.unwrap();
            fillers.push(session.id);
        }
        let reply = h.send(get_req("/paid")).await;
        if reply.status == StatusCode::PAYMENT_REQUIRED {
            let issued = reply.issued();
            assert_eq!(issued.tag, free);
            fillers.push(issued.id);
        } else {
            reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
            spurious += 1;
        }
        for id in fillers {
            h.sessions.take(&id).await.unwrap();
        }
    }
    assert_eq!(spurious, 0, "{spurious} of 30 challenges got 503 while one tag of {M} was free");
}

#[tokio::test]
async fn full_session_store_answers_503() {
    let h = Harness::with_sessions(MemorySessionStore::with_capacity(2), |b| b);
    let first = h.challenge("/paid").await;
    let _second = h.challenge("/paid").await;
    let reply = h.send(get_req("/paid")).await;
    reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(reply.retry_after().is_some());
    assert!(!reply.has_challenge());
    assert_eq!(h.metrics.snapshot().challenges, 2);

    // Paying one makes room.
    let block = h.pay(&first);
    assert_granted(&h.send(rev5("/paid", &first, &block)).await, &first, &block);
    h.challenge("/paid").await;
}

// ---------------------------------------------------------------------------------------------
// Pricing.

fn routed_price(parts: &http::request::Parts) -> Option<Raw> {
    match parts.uri.path() {
        "/a" | "/paid" => Some(Raw::new(PRICE)),
        "/b" => Some(Raw::new(2 * PRICE)),
        _ => None,
    }
}

#[tokio::test]
async fn price_fn_prices_routes_and_lets_free_ones_through_untouched() {
    let h = Harness::with(|b| b.price_fn(routed_price));

    let free = h.send(get_req("/free")).await;
    assert_eq!(free.status, StatusCode::OK);
    assert_eq!(&free.body[..], b"free");
    assert!(!free.has_challenge());
    assert!(free.receipt().is_none());
    assert!(!free.headers.contains_key(http::header::CACHE_CONTROL));
    // Proof headers on a free route are not even looked at.
    let junk = h.send(with_headers("/free", &rev5_headers("junk", "junk"))).await;
    assert_eq!(junk.status, StatusCode::OK);
    assert_eq!(h.metrics.snapshot().challenges, 0);

    let on_a = h.challenge("/a").await;
    assert_eq!(on_a.required.accepts[0].extra.nano_session.as_ref().unwrap().resource_amount_raw, price());
    assert_eq!(on_a.required.resource.url, format!("{BASE}/a"));
    let on_b = h.challenge("/b").await;
    assert_eq!(
        on_b.required.accepts[0].extra.nano_session.as_ref().unwrap().resource_amount_raw,
        Raw::new(2 * PRICE)
    );
    assert_eq!(on_b.required.resource.url, format!("{BASE}/b"));

    // A session issued on /a, paid, presented on /b: it does not exist there.
    let block = h.pay(&on_a);
    let reply = h.send(rev5("/b", &on_a, &block)).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "unknown_session");
    reply.assert_failure_receipt("unknown_session");
    let fresh = reply.issued();
    assert_eq!(fresh.required.resource.url, format!("{BASE}/b"));
    assert_eq!(fresh.amount.get() - fresh.tag as u128, 2 * PRICE);
    assert_eq!(h.ledger.calls(), 0);
    assert!(h.stored(&on_a.id).await.is_some());
    assert!(!h.is_spent(&block).await);

    let reply = h.send(rev5("/a", &on_a, &block)).await;
    assert_granted(&reply, &on_a, &block);
}

#[tokio::test]
async fn price_fn_returning_an_invalid_price_is_500() {
    let h = Harness::with(|b| {
        b.price_fn(|parts| match parts.uri.path() {
            "/a" => Some(Raw::new(PRICE + 1)),
            "/b" => Some(Raw::ZERO),
            _ => None,
        })
    });
    for path in ["/a", "/b"] {
        let reply = h.send(get_req(path)).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert!(!reply.has_challenge());
        assert!(reply.receipt().is_none());
        assert_eq!(reply.json()["reason"], "internal_error");
    }
    assert_eq!(h.metrics.snapshot().challenges, 0);
    assert_eq!(h.send(get_req("/free")).await.status, StatusCode::OK);
}

/// Review F1: anyone can send the two "preflight" headers. A preflight on a priced route is
/// priced like any request (a CORS layer outside the paywall answers real ones, see
/// `tests/cors.rs`), and never reaches the handler.
#[tokio::test]
async fn cors_preflight_on_a_priced_route_is_priced_not_passed_inward() {
    let h = Harness::new();
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/paid")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .body(Body::empty())
        .unwrap();
    let reply = h.send(req).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
    assert!(reply.has_challenge());
    assert_eq!(h.ledger.calls(), 0);
}

/// An OPTIONS request that is not a CORS preflight is priced: a handler that ignores the method
/// would otherwise serve the paid resource for free.
#[tokio::test]
async fn plain_options_is_priced() {
    let h = Harness::new();
    let req = Request::builder().method(Method::OPTIONS).uri("/paid").body(Body::empty()).unwrap();
    let reply = h.send(req).await;
    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED);
    assert!(reply.has_challenge());
}

// ---------------------------------------------------------------------------------------------
// Configuration.

fn complete() -> PaymentRequiredLayerBuilder {
    PaymentRequiredLayer::builder()
        .pay_to(merchant())
        .price(price())
        .public_base_url(BASE)
        .verifier(FakeLedger::default())
}

#[test]
fn build_refuses_invalid_configurations() {
    let err = |b: PaymentRequiredLayerBuilder| b.build().map(|_| ()).unwrap_err();
    let builder = PaymentRequiredLayer::builder;

    assert_eq!(
        err(builder().price(price()).public_base_url(BASE).verifier(FakeLedger::default())),
        ConfigError::MissingPayTo
    );
    assert_eq!(err(complete().pay_to(Address::BURN)), ConfigError::BurnPayTo);
    assert_eq!(
        err(builder().pay_to(merchant()).public_base_url(BASE).verifier(FakeLedger::default())),
        ConfigError::MissingPrice
    );
    assert_eq!(
        err(builder().pay_to(merchant()).price(price()).public_base_url(BASE)),
        ConfigError::MissingVerifier
    );
    assert_eq!(
        err(builder().pay_to(merchant()).price(price()).verifier(FakeLedger::default())),
        ConfigError::InvalidPublicUrl
    );
    for url in ["/api", "api.example.com", "ftp://api.example.com", "", "https://"] {
        assert_eq!(err(complete().public_base_url(url)), ConfigError::InvalidPublicUrl, "{url:?}");
    }

    assert_eq!(
        err(complete().price(Raw::new(PRICE + 1))),
        ConfigError::PriceNotMultiple { price: Raw::new(PRICE + 1), modulus: MODULUS }
    );
    assert!(matches!(err(complete().tag_modulus(3)), ConfigError::PriceNotMultiple { modulus: 3, .. }));
    assert!(matches!(
        err(complete().price(Raw::new(5_000_000)).tag_modulus(MODULUS)),
        ConfigError::PriceNotMultiple { .. }
    ));
    assert_eq!(err(complete().price(Raw::ZERO)), ConfigError::PriceOutOfRange);
    let top = u128::MAX - u128::MAX % MODULUS as u128;
    assert_eq!(err(complete().price(Raw::new(top))), ConfigError::PriceOutOfRange);
    assert_eq!(err(complete().tag_modulus(0)), ConfigError::ZeroTagModulus);
    assert_eq!(err(complete().session_ttl(Duration::ZERO)), ConfigError::ZeroSessionTtl);

    let ttl = Duration::from_secs(300);
    let skew = Duration::from_secs(30);
    for retention in [Duration::from_secs(1), ttl, ttl + skew] {
        assert_eq!(
            err(complete().session_ttl(ttl).timestamp_skew(skew).spent_retention(retention)),
            ConfigError::RetentionTooShort { retention, needed: ttl + skew }
        );
    }
    assert!(complete().session_ttl(ttl).timestamp_skew(skew).spent_retention(ttl + skew * 2).build().is_ok());
}

#[tokio::test]
async fn build_accepts_the_defaults() {
    let layer = complete().build().expect("required fields only");
    let app = routes().layer(layer.json_body());
    let reply = Reply::read(app.oneshot(get_req("/paid")).await.unwrap()).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
    let issued = reply.issued();
    assert_eq!(reply.header(&X_PAYMENT_TAG_MODULUS), Some("10000000"));
    let accepts = &issued.required.accepts[0];
    assert_eq!(accepts.network, "nano:mainnet");
    assert_eq!(accepts.max_timeout_seconds, 300);
    assert_eq!(issued.required.resource.mime_type, "application/json");
    assert!(complete().price_fn(|_| None).build().is_ok(), "a price_fn replaces the static price");

    // A base URL with a path and a trailing slash: base + request path, one slash.
    let layer = complete().public_base_url("https://api.example.test/v1/").build().unwrap().json_body();
    let reply = Reply::read(routes().layer(layer).oneshot(get_req("/paid")).await.unwrap()).await;
    assert_eq!(reply.issued().required.resource.url, "https://api.example.test/v1/paid");
}

// ---------------------------------------------------------------------------------------------
// Tower hygiene.

/// A service that knows whether *this instance* was polled ready: clones start not ready.
struct ReadinessProbe {
    ready: bool,
    calls: Arc<Mutex<Vec<(bool, bool)>>>,
}

impl Clone for ReadinessProbe {
    fn clone(&self) -> Self {
        ReadinessProbe { ready: false, calls: self.calls.clone() }
    }
}

impl Service<Request<Body>> for ReadinessProbe {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let was_ready = std::mem::replace(&mut self.ready, false);
        let paid = req.extensions().get::<VerifiedPayment>().is_some();
        self.calls.lock().unwrap().push((was_ready, paid));
        ready(Ok(Response::new(Body::from("inner"))))
    }
}

#[tokio::test]
async fn paid_path_only_calls_an_inner_service_that_is_ready() {
    let ledger = FakeLedger::new();
    let sessions = Arc::new(MemorySessionStore::default());
    let layer = base_builder(&ledger)
        .price_fn(routed_price)
        .session_store_shared(sessions.clone())
        .build()
        .unwrap()
        .json_body();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut svc = layer.layer(ReadinessProbe { ready: false, calls: calls.clone() });

    // The challenge does not reach the inner service.
    let reply = Reply::read(svc.ready().await.unwrap().call(get_req("/paid")).await.unwrap()).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
    assert!(calls.lock().unwrap().is_empty());

    // Two paid calls on the same service, each after poll_ready.
    let first = reply.issued();
    let block = ledger.pay(merchant(), first.amount);
    let ok = Reply::read(svc.ready().await.unwrap().call(rev5("/paid", &first, &block)).await.unwrap()).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.receipt().unwrap().success);

    let reply = Reply::read(svc.ready().await.unwrap().call(get_req("/paid")).await.unwrap()).await;
    let second = reply.issued();
    let block = ledger.pay(merchant(), second.amount);
    let ok =
        Reply::read(svc.ready().await.unwrap().call(rev5("/paid", &second, &block)).await.unwrap()).await;
    assert_eq!(ok.status, StatusCode::OK);

    // A fresh clone driven by oneshot, and a free request.
    let reply = Reply::read(svc.clone().oneshot(get_req("/paid")).await.unwrap()).await;
    let third = reply.issued();
    let block = ledger.pay(merchant(), third.amount);
    let ok = Reply::read(svc.clone().oneshot(rev5("/paid", &third, &block)).await.unwrap()).await;
    assert_eq!(ok.status, StatusCode::OK);
    let free = Reply::read(svc.ready().await.unwrap().call(get_req("/free")).await.unwrap()).await;
    assert_eq!(free.status, StatusCode::OK);

    assert_eq!(
        *calls.lock().unwrap(),
        vec![(true, true), (true, true), (true, true), (true, false)],
        "(was the called instance polled ready, did it get a VerifiedPayment)"
    );
}

// ---------------------------------------------------------------------------------------------
// Response shapes.

#[tokio::test]
async fn expose_headers_on_402_and_on_the_paid_response() {
    let h = Harness::with(|b| b.expose_headers(true));
    let reply = h.send(get_req("/paid")).await;
    reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
    let exposed = reply.header(&http::header::ACCESS_CONTROL_EXPOSE_HEADERS).expect("exposed on 402");
    assert_eq!(exposed, EXPOSE_LIST);
    let listed: HashSet<_> = exposed.split(',').map(|s| s.trim().to_ascii_lowercase()).collect();
    for name in CHALLENGE_HEADERS.iter().chain([&PAYMENT_RESPONSE]) {
        assert!(listed.contains(name.as_str()), "{name} not exposed");
    }

    let issued = reply.issued();
    let block = h.pay(&issued);
    let paid = h.send(rev5("/paid", &issued, &block)).await;
    assert_granted(&paid, &issued, &block);
    assert_eq!(paid.header(&http::header::ACCESS_CONTROL_EXPOSE_HEADERS), Some(EXPOSE_LIST));

    // Off by default.
    let plain = Harness::new();
    let reply = plain.send(get_req("/paid")).await;
    assert!(!reply.headers.contains_key(http::header::ACCESS_CONTROL_EXPOSE_HEADERS));
}

#[tokio::test]
async fn empty_body_layer_carries_everything_in_headers() {
    let ledger = FakeLedger::new();
    let layer = base_builder(&ledger).build().unwrap(); // EmptyBody: no .json_body()
    let app = routes().layer(layer);

    let reply = Reply::read(app.clone().oneshot(get_req("/paid")).await.unwrap()).await;
    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED);
    assert!(reply.body.is_empty(), "empty body");
    for name in &CHALLENGE_HEADERS {
        assert!(reply.headers.contains_key(name), "{name} missing");
    }
    assert_eq!(reply.header(&http::header::CACHE_CONTROL), Some("no-store"));
    let required = PaymentRequired::from_header(reply.headers.get(PAYMENT_REQUIRED).unwrap()).unwrap();
    let id = reply.header(&X_PAYMENT_SESSION).unwrap().to_owned();
    assert_eq!(required.accepts[0].extra.nano_session.as_ref().unwrap().id.to_string(), id);

    // A refusal after a proof: reason only in PAYMENT-RESPONSE.
    let wrong = ledger.pay(merchant(), price());
    let reply = Reply::read(
        app.clone().oneshot(with_headers("/paid", &rev5_headers(&id, &wrong.to_string()))).await.unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED);
    assert!(reply.body.is_empty());
    assert_eq!(reply.receipt().unwrap().error_reason.as_deref(), Some("wrong_amount"));

    // And the paid path is unchanged.
    let block = ledger.pay(merchant(), required.accepts[0].amount);
    let reply = Reply::read(
        app.oneshot(with_headers("/paid", &rev5_headers(&id, &block.to_string()))).await.unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.receipt().unwrap().transaction, block.to_string());
}

// ---------------------------------------------------------------------------------------------
// Secrets.

#[tokio::test]
async fn logs_never_contain_the_session_id() {
    let buffer = common::logs::Logs::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    // With a single registered dispatcher, tracing computes the interest of a callsite first
    // hit on another test's thread from *that* thread's (empty) default and caches "never".
    // A second live dispatcher makes every registration consult all of them, this one included.
    let _second = tracing::Dispatch::new(tracing_subscriber::registry());
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let unknown = BlockHash::from_bytes(rand::random());
    let not_found = h.send(rev5("/paid", &issued, &unknown)).await;
    not_found.assert_refusal(StatusCode::PAYMENT_REQUIRED, "block_not_found");
    let paid = h.send(rev5("/paid", &issued, &block)).await;
    assert_granted(&paid, &issued, &block);
    let second = h.challenge("/paid").await;
    h.send(rev5("/paid", &second, &block)).await.assert_final_402("already_spent");
    let granted = h.send(rev5("/paid", &issued, &block)).await;
    granted.assert_refusal(StatusCode::CONFLICT, "already_granted");
    let fresh = h.send(rev5("/paid", &issued, &unknown)).await; // unknown_session now
    fresh.assert_refusal(StatusCode::PAYMENT_REQUIRED, "unknown_session");
    let third = fresh.issued();

    let logs = buffer.text();
    assert!(logs.contains(&block.to_string()), "the block hash is logged:\n{logs}");
    assert!(logs.contains("already_spent"), "the replay is logged:\n{logs}");
    assert!(logs.contains(&issued.id.fingerprint()), "a fingerprint identifies the session:\n{logs}");
    for id in [&issued.id_text, &second.id_text, &third.id_text] {
        assert!(!logs.contains(id.as_str()), "session id {id} in logs:\n{logs}");
        assert!(!logs.to_lowercase().contains(id.as_str()), "session id {id} in logs (any case)");
    }

    // The handler's Debug of the payment names the session by (a prefix of) its key only.
    let debug = paid.json()["debug"].as_str().unwrap().to_owned();
    assert!(!debug.contains(&issued.id_text), "{debug}");
    assert!(!debug.to_lowercase().contains(&issued.id_text), "{debug}");
    assert!(debug.contains(&format!("{:?}", issued.id.key())), "{debug}");
    assert!(debug.contains(&block.to_string()), "{debug}");
}

#[test]
fn verified_payment_debug_hides_the_session_id() {
    // The payment carries only the session's key: the id is nowhere in it to leak.
    let session = SessionId::generate();
    let payment = VerifiedPayment {
        block: BlockHash::from_bytes([0xAB; 32]),
        payer: payer(),
        amount: Raw::new(PRICE + 5),
        price: price(),
        tag: 5,
        session: session.key(),
        confirmation: Confirmation::AlreadyConfirmed,
    };
    let debug = format!("{payment:?}");
    let pretty = format!("{payment:#?}");
    for text in [&debug, &pretty] {
        assert!(!text.contains(&session.to_string()), "{text}");
        assert!(!text.contains(&session.to_string()[..16]), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Fixes of the adversarial review of 57fee3c (shared/reviews/security-57fee3c.md). Each test
// fails on 57fee3c.

/// A handler that counts its calls and serves "the paid content" whatever the method.
fn counting_handler(calls: &Arc<std::sync::atomic::AtomicUsize>) -> impl Fn() -> Ready<&'static str> + Clone {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ready("the paid content")
    }
}

fn preflight_req(path: &str, body: &'static str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(path)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .body(Body::from(body))
        .unwrap()
}

/// F1 on every kind of axum route that ignores the method: `any()`, `route_service`, `fallback`.
#[tokio::test]
async fn f1_options_with_preflight_headers_never_reaches_a_method_agnostic_handler() {
    let ledger = FakeLedger::new();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let layer = base_builder(&ledger).build().unwrap().json_body();
    let handler = counting_handler(&calls);
    let apps = [
        Router::new().route("/paid", axum::routing::any(handler.clone())).layer(layer.clone()),
        Router::new()
            .route_service(
                "/paid",
                tower::service_fn(move |_: Request<Body>| {
                    let h = handler.clone();
                    async move { Ok::<_, Infallible>(Response::new(Body::from(h().await))) }
                }),
            )
            .layer(layer.clone()),
        Router::new().fallback(counting_handler(&calls)).layer(layer.clone()),
    ];
    for app in apps {
        for body in ["", "a body"] {
            let reply = Reply::read(app.clone().oneshot(preflight_req("/paid", body)).await.unwrap()).await;
            reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
        }
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0, "the handler was never called");
    assert_eq!(ledger.calls(), 0, "the verifier was never called");
}

/// F3: a layer inside a nested router, keyed by the public path, prices it (`OriginalUri`).
#[tokio::test]
async fn f3_price_table_under_a_nested_router_uses_the_public_path() {
    let ledger = FakeLedger::new();
    for key in ["/api/paid", "/paid"] {
        let layer = base_builder(&ledger)
            .price_table([(key, price())])
            .unlisted_paths(nanosession::layer::Unlisted::Free)
            .build()
            .unwrap()
            .json_body();
        let inner =
            Router::new().route("/paid", get(paid_handler)).route("/free", get(free_handler)).layer(layer);
        let app = Router::new().nest("/api", inner);
        let reply = Reply::read(app.clone().oneshot(get_req("/api/paid")).await.unwrap()).await;
        reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
        assert_eq!(
            reply.issued().required.resource.url,
            format!("{BASE}/api/paid"),
            "the resource URL is the public one"
        );
        let free = Reply::read(app.oneshot(get_req("/api/free")).await.unwrap()).await;
        assert_eq!(free.status, StatusCode::OK, "table keyed {key}");
    }
}

/// F3: every spelling of a priced path is priced, even in front of a service that serves any
/// spelling (like `ServeDir`); with `Deny`, unlisted paths never reach it.
#[tokio::test]
async fn f3_every_spelling_of_a_priced_path_is_priced_and_deny_blocks_the_rest() {
    let ledger = FakeLedger::new();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lenient = {
        let calls = calls.clone();
        tower::service_fn(move |_: Request<Body>| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ready(Ok::<_, Infallible>(Response::new(Body::from("file"))))
        })
    };
    let layer = base_builder(&ledger)
        .price_table([("/files/report.pdf", price()), ("/files/é(1).pdf", price())])
        .unlisted_paths(nanosession::layer::Unlisted::Free)
        .build()
        .unwrap()
        .json_body();
    let svc = layer.layer(lenient);
    for path in [
        "/files/report.pdf",
        "/files/%72eport.pdf",
        "/files//report.pdf",
        "/files/./report.pdf",
        "/files/x/../report.pdf",
        "//files/report.pdf/",
        "/files/report.pdf?download=1",
        "/files%2Freport.pdf",
        "/files%2freport.pdf",
        "/files/%C3%A9%281%29.pdf",
        "/files/%c3%a9(1).pdf",
    ] {
        let reply = Reply::read(svc.clone().oneshot(get_req(path)).await.unwrap()).await;
        reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    let free = Reply::read(svc.clone().oneshot(get_req("/files/other.pdf")).await.unwrap()).await;
    assert_eq!(free.status, StatusCode::OK, "Free lets unlisted paths through");

    let deny = base_builder(&ledger)
        .price_table([("/files/report.pdf", price())])
        .unlisted_paths(nanosession::layer::Unlisted::Deny)
        .build()
        .unwrap()
        .json_body()
        .layer(tower::service_fn(|_: Request<Body>| {
            ready(Ok::<_, Infallible>(Response::new(Body::from("file"))))
        }));
    let unlisted = Reply::read(deny.oneshot(get_req("/files/other.pdf")).await.unwrap()).await;
    assert_eq!(unlisted.status, StatusCode::NOT_FOUND);
    assert_eq!(unlisted.json()["reason"], "not_found");

    let err = base_builder(&ledger).price_table([("/a", price())]).build().map(|_| ()).unwrap_err();
    assert_eq!(err, ConfigError::MissingUnlistedPolicy, "the policy for unlisted paths is explicit");
}

/// F4 (the review's E3): the take fails after the claim, the outage outlasts the session; the
/// paid session still settles once the store is back.
#[tokio::test]
async fn f4_outage_between_claim_and_take_outlasting_the_session_does_not_burn_the_payment() {
    let (h, store) = Harness::failing_with(|b| b.session_ttl(Duration::from_secs(1)));
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    store.fail_only(&[StoreOp::Take]);
    h.send(rev5("/paid", &issued, &block))
        .await
        .assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    store.fail_only(&[]);
    assert_granted(&h.send(rev5("/paid", &issued, &block)).await, &issued, &block);
}

/// A verifier that takes `delay` before answering as the ledger would.
struct Slow {
    ledger: Arc<FakeLedger>,
    delay: Duration,
}

#[async_trait::async_trait]
impl nanosession::verify::PaymentVerifier for Slow {
    async fn verify(
        &self,
        hash: &BlockHash,
        expected: &nanosession::verify::Expected,
    ) -> Result<nanosession::verify::VerifiedBlock, Rejection> {
        tokio::time::sleep(self.delay).await;
        self.ledger.verify(hash, expected).await
    }
}

/// F14: a retry that arrived in time is still verifying when the session expires; a second
/// retry after expiry gets `session_expired` but must not delete the session under the first,
/// which is granted.
#[tokio::test]
async fn f14_expiry_during_an_in_flight_verification_does_not_burn_it() {
    let h = Harness::with_ledger(MemorySessionStore::default(), |b, ledger| {
        b.verifier(Slow { ledger: ledger.clone(), delay: Duration::from_millis(3500) })
            .session_ttl(Duration::from_secs(1))
    });
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let first = {
        let app = h.app.clone();
        let req = rev5("/paid", &issued, &block);
        tokio::spawn(async move { Reply::read(app.oneshot(req).await.unwrap()).await })
    };
    tokio::time::sleep(Duration::from_millis(2200)).await; // the session is now expired
    let late = h.send(rev5("/paid", &issued, &block)).await;
    late.assert_refusal(StatusCode::PAYMENT_REQUIRED, "session_expired");
    assert_granted(&first.await.unwrap(), &issued, &block);
}

/// F17: a price cut between challenge and retry honours the session issued at the old price;
/// a rise does not let a cheaper session pay.
#[tokio::test]
async fn f17_a_price_change_between_challenge_and_retry() {
    let current = Arc::new(std::sync::atomic::AtomicU64::new(2));
    let price_now = current.clone();
    let h = Harness::with(move |b| {
        b.price_fn(move |_| {
            Some(Raw::new(PRICE * price_now.load(std::sync::atomic::Ordering::SeqCst) as u128))
        })
    });
    let issued = h.challenge("/paid").await;
    let block = h.ledger.pay(merchant(), issued.amount);
    current.store(1, std::sync::atomic::Ordering::SeqCst); // cheaper now
    let reply = h.send(rev5("/paid", &issued, &block)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", String::from_utf8_lossy(&reply.body));

    let cheap = h.challenge("/paid").await;
    let block = h.ledger.pay(merchant(), cheap.amount);
    current.store(3, std::sync::atomic::Ordering::SeqCst); // dearer now
    h.send(rev5("/paid", &cheap, &block))
        .await
        .assert_refusal(StatusCode::PAYMENT_REQUIRED, "unknown_session");
}

/// F13: a verification that would outlast the session's grace is cut off at the deadline with
/// a 503, nothing consumed; and a verifier that says it may take longer than the grace is
/// refused at build.
#[tokio::test(start_paused = true)]
async fn f13_verification_is_bounded_by_the_session_deadline() {
    let ledger = FakeLedger::new();
    let sessions = Arc::new(MemorySessionStore::default());
    let layer = base_builder(&ledger)
        .verifier(Slow { ledger: ledger.clone(), delay: Duration::from_secs(3600) })
        .session_store_shared(sessions.clone())
        .build()
        .unwrap()
        .json_body();
    let app = routes().layer(layer);
    let now = unix_now();
    // A retry one second before expiry; the verifier would take an hour (tokio's clock is
    // paused and jumps ahead, so the test does not wait).
    let deadline_soon = Session {
        id: SessionId::generate(),
        pay_to: merchant(),
        price: price(),
        tag: 7,
        amount: Raw::new(PRICE + 7),
        created_at: now - 299,
        expires_at: now + 1,
    };
    sessions.insert(&deadline_soon, now).await.unwrap();
    let block = ledger.pay_at(merchant(), deadline_soon.amount, now - 298);
    let started = tokio::time::Instant::now();
    let req = with_headers("/paid", &rev5_headers(&deadline_soon.id.to_string(), &block.to_string()));
    let reply = Reply::read(app.oneshot(req).await.unwrap()).await;
    reply.assert_refusal(StatusCode::SERVICE_UNAVAILABLE, "verifier_unavailable");
    let waited = started.elapsed();
    let bound = Duration::from_secs(1 + nanosession::store::SESSION_GRACE_SECS - 15);
    assert!(
        waited <= bound + Duration::from_secs(1) && waited + Duration::from_secs(2) >= bound,
        "{waited:?}"
    );
    assert!(sessions.get(&deadline_soon.id).await.unwrap().is_some(), "nothing consumed");

    struct Unbounded;
    #[async_trait::async_trait]
    impl nanosession::verify::PaymentVerifier for Unbounded {
        async fn verify(
            &self,
            _: &BlockHash,
            _: &nanosession::verify::Expected,
        ) -> Result<nanosession::verify::VerifiedBlock, Rejection> {
            Err(Rejection::NotFound)
        }
        fn max_duration(&self, confirm_wait: Duration) -> Option<Duration> {
            Some(confirm_wait + Duration::from_secs(80))
        }
    }
    let err = complete().verifier(Unbounded).build().map(|_| ()).unwrap_err();
    assert!(matches!(err, ConfigError::VerificationTooLong { .. }), "{err:?}");
}

/// F7: a granted response is private and not stored, unless the service chose its own
/// `Cache-Control`; configurable.
#[tokio::test]
async fn f7_paid_responses_are_not_cacheable_by_shared_caches() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    let reply = h.send(rev5("/paid", &issued, &block)).await;
    assert_granted(&reply, &issued, &block);
    assert_eq!(reply.header(&http::header::CACHE_CONTROL), Some("private, no-store"));

    let ledger = FakeLedger::new();
    let own = |on: Option<HeaderValue>| {
        let layer = base_builder(&ledger).paid_cache_control(on).build().unwrap().json_body();
        Router::new()
            .route("/paid", get(|| async { ([(http::header::CACHE_CONTROL, "private, max-age=60")], "x") }))
            .route("/plain", get(|| async { "x" }))
            .layer(layer)
    };
    for (path, setting, expected) in
        [("/paid", Some(hv("private, no-store")), Some("private, max-age=60")), ("/plain", None, None)]
    {
        let app = own(setting);
        let issued = Reply::read(app.clone().oneshot(get_req(path)).await.unwrap()).await.issued();
        let block = ledger.pay(merchant(), issued.amount);
        let reply = Reply::read(app.oneshot(rev5(path, &issued, &block)).await.unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header(&http::header::CACHE_CONTROL), expected, "{path}");
    }
}

/// Issue 8 item 6: the retry of a granted (session, block) pair is told it was granted, with
/// the receipt, and is never given a fresh challenge to pay again.
#[tokio::test]
async fn retry_of_a_granted_pair_is_already_granted_never_a_new_challenge() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    assert_granted(&h.send(rev5("/paid", &issued, &block)).await, &issued, &block);
    for req in [rev5("/paid", &issued, &block), x402("/paid", &payload_json(&issued, &block))] {
        let again = h.send(req).await;
        again.assert_refusal(StatusCode::CONFLICT, "already_granted");
        assert!(!again.has_challenge(), "no fresh challenge: the client must not pay again");
        let receipt = again.receipt().expect("the receipt of the grant");
        assert!(receipt.success);
        assert_eq!(receipt.transaction, block.to_string());
        assert_eq!(receipt.network, NETWORK);
    }
    assert_eq!(h.metrics.snapshot().grants, 1);
    // Another session's block on this session is still already_spent, not already_granted.
    let other = h.challenge("/paid").await;
    h.send(rev5("/paid", &other, &block)).await.assert_final_402("already_spent");
}

/// F10: one client's burst of unpaid requests is bounded; other clients still get sessions;
/// bogus proofs (which earn fresh challenges) count too.
#[tokio::test]
async fn f10_sessions_per_client_are_bounded() {
    let h = Harness::with(|b| b.sessions_per_client(3, nanosession::layer::client_key::header("x-real-ip")));
    let from = |ip: &str, extra: &[(HeaderName, HeaderValue)]| {
        let mut headers = vec![(HeaderName::from_static("x-real-ip"), hv(ip))];
        headers.extend_from_slice(extra);
        with_headers("/paid", &headers)
    };
    for _ in 0..2 {
        h.send(from("192.0.2.1", &[])).await.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
    }
    let bogus = rev5_headers(&SessionId::generate().to_string(), &BlockHash::from_bytes([3; 32]).to_string());
    h.send(from("192.0.2.1", &bogus)).await.assert_refusal(StatusCode::PAYMENT_REQUIRED, "unknown_session");
    let limited = h.send(from("192.0.2.1", &[])).await;
    limited.assert_refusal(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(limited.retry_after().is_some() && !limited.has_challenge());
    h.send(from("192.0.2.1", &bogus)).await.assert_refusal(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    h.send(from("192.0.2.2", &[])).await.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
    assert_eq!(h.metrics.snapshot().challenges, 4);
    // Requests the key cannot name share one bound instead of escaping it.
    for _ in 0..3 {
        h.send(get_req("/paid")).await.assert_refusal(StatusCode::PAYMENT_REQUIRED, "payment_required");
    }
    h.send(get_req("/paid")).await.assert_refusal(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

/// F15: one session buys a bounded number of node round trips.
#[tokio::test]
async fn f15_verifier_calls_per_session_are_bounded() {
    let h = Harness::with(|b| b.verifications_per_session(3));
    let issued = h.challenge("/paid").await;
    for i in 0..3 {
        let reply = h.send(rev5("/paid", &issued, &BlockHash::from_bytes([i; 32]))).await;
        reply.assert_refusal(StatusCode::PAYMENT_REQUIRED, "block_not_found");
    }
    let limited = h.send(rev5("/paid", &issued, &BlockHash::from_bytes([9; 32]))).await;
    limited.assert_refusal(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(h.ledger.calls(), 3, "the fourth attempt never reached the node");
    assert!(h.stored(&issued.id).await.is_some(), "the session is kept");
}

/// F10, F22, interop: tag spaces that run out before the store, tags a JavaScript client would
/// round, absurd lifetimes and zero bounds are refused at build.
#[test]
fn build_refuses_tag_spaces_and_lifetimes_that_cannot_work() {
    let err = |b: PaymentRequiredLayerBuilder| b.build().map(|_| ()).unwrap_err();
    assert_eq!(
        err(complete().price(Raw::new(1 << 60)).tag_modulus((1 << 53) + 1)),
        ConfigError::TagModulusTooLarge((1 << 53) + 1)
    );
    assert!(complete().price(Raw::new(1 << 60)).tag_modulus(1 << 53).build().is_ok());
    assert_eq!(
        err(complete().tag_modulus(1000).session_store(MemorySessionStore::with_capacity(1001))),
        ConfigError::TagModulusBelowCapacity { modulus: 1000, capacity: 1001 }
    );
    assert_eq!(
        err(complete().session_ttl(Duration::from_secs(8 * 24 * 3600))),
        ConfigError::SessionTtlTooLong
    );
    assert!(matches!(err(complete().verifications_per_session(0)), ConfigError::ZeroLimit(_)));
    assert!(matches!(err(complete().sessions_per_client(0, |_| None)), ConfigError::ZeroLimit(_)));
}

/// F11: a granted block stays spent for years by default (a node re-bootstrap re-stamps old
/// blocks as new, so an entry dropped after 30 days could be farmed again).
#[tokio::test]
async fn f11_spent_entries_outlive_years_by_default() {
    let h = Harness::new();
    let issued = h.challenge("/paid").await;
    let block = h.pay(&issued);
    assert_granted(&h.send(rev5("/paid", &issued, &block)).await, &issued, &block);
    h.spent.prune(unix_now() + 5 * 365 * 24 * 3600).await.unwrap();
    assert!(h.is_spent(&block).await, "still spent five years on");
}

/// F20: proof headers are marked sensitive before the request goes inward.
#[tokio::test]
async fn f20_proof_headers_reach_the_service_marked_sensitive() {
    let ledger = FakeLedger::new();
    let layer = base_builder(&ledger).build().unwrap().json_body();
    let app = Router::new()
        .route(
            "/paid",
            get(|headers: HeaderMap| async move {
                let sensitive = [X_PAYMENT_SESSION, PAYMENT_SIGNATURE]
                    .iter()
                    .filter_map(|n| headers.get(n))
                    .all(HeaderValue::is_sensitive);
                sensitive.to_string()
            }),
        )
        .layer(layer);
    for form in 0..2 {
        let issued = Reply::read(app.clone().oneshot(get_req("/paid")).await.unwrap()).await.issued();
        let block = ledger.pay(merchant(), issued.amount);
        let req = if form == 0 {
            rev5("/paid", &issued, &block)
        } else {
            x402("/paid", &payload_json(&issued, &block))
        };
        let reply = Reply::read(app.clone().oneshot(req).await.unwrap()).await;
        assert_eq!((reply.status, &reply.body[..]), (StatusCode::OK, &b"true"[..]));
    }
}

/// Fuzz finding: only `application/grpc` itself (or `+…`/`;…` after it) is gRPC.
#[tokio::test]
async fn only_real_grpc_content_types_get_trailers_only_refusals() {
    let h = Harness::new();
    for (ct, grpc) in
        [("application/grpc", true), ("application/grpc+proto", true), ("application/grpcfoo", false)]
    {
        let reply = h.send(with_headers("/paid", &[(http::header::CONTENT_TYPE, hv(ct))])).await;
        assert_eq!(reply.status == StatusCode::OK && reply.headers.contains_key("grpc-status"), grpc, "{ct}");
        if !grpc {
            assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED, "{ct}");
        }
    }
}

/// A service whose readiness fails while `overloaded` is set (like `load_shed`).
#[derive(Clone)]
struct Overloadable {
    overloaded: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl Service<Request<Body>> for Overloadable {
    type Response = Response<Body>;
    type Error = &'static str;
    type Future = Ready<Result<Response<Body>, &'static str>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
        Poll::Ready(if self.overloaded.load(std::sync::atomic::Ordering::SeqCst) {
            Err("overloaded")
        } else {
            Ok(())
        })
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ready(Ok(Response::new(Body::from("the paid content"))))
    }
}

/// Second review pass: a service that fails readiness after the payment verified must not cost
/// the payment: the session is consumed only once the service is ready, so the retry is served.
#[tokio::test]
async fn a_service_not_ready_after_verification_does_not_burn_the_payment() {
    let ledger = FakeLedger::new();
    let svc = Overloadable { overloaded: Arc::default(), calls: Arc::default() };
    let app = base_builder(&ledger).build().unwrap().json_body().layer(svc.clone());
    let issued = Reply::read(app.clone().oneshot(get_req("/paid")).await.unwrap()).await.issued();
    let block = ledger.pay(merchant(), issued.amount);

    svc.overloaded.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut first = app.clone();
    let req = rev5("/paid", &issued, &block);
    let outcome = first.call(req).await; // `oneshot` would stop at the layer's own readiness
    assert_eq!(outcome.err(), Some("overloaded"));

    svc.overloaded.store(false, std::sync::atomic::Ordering::SeqCst);
    let reply = Reply::read(app.clone().oneshot(rev5("/paid", &issued, &block)).await.unwrap()).await;
    assert_eq!((reply.status, &reply.body[..]), (StatusCode::OK, &b"the paid content"[..]));
    assert_eq!(svc.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}
