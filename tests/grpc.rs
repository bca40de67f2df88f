//! tonic services behind the same PaymentRequiredLayer, over real loopback sockets with a
//! tonic client: every refusal is a proper `tonic::Status` with the challenge in metadata.

mod common;
#[path = "../examples/grpc/proto.rs"]
mod proto;

use std::sync::Arc;

use base64::Engine as _;
use common::fake::{FailingStore, FakeLedger};
use nanosession::nano::{Address, BlockHash, Raw};
use nanosession::protocol::{PaymentPayload, PaymentRequired, ProofPayload, Reason, SettlementResponse};
use nanosession::session::{unix_now, Session, SessionId};
use nanosession::store::{Insert, MemorySessionStore, MemorySpentSet, SessionStore};
use nanosession::verify::Rejection;
use nanosession::PaymentRequiredLayer;
use proto::{PaywallClient, PaywallServer, Ping, FREE, PAID, PAID_STREAM, STREAM_LEN};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Status};

const PRICE: Raw = Raw::new(50_000_000);

fn merchant() -> Address {
    "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap()
}

struct Harness {
    client: PaywallClient,
    ledger: Arc<FakeLedger>,
    store: Arc<FailingStore>,
    sessions: Arc<MemorySessionStore>,
}

/// A tonic server on loopback with the layer in front of every method, and a client.
async fn harness(
    configure: impl FnOnce(
        nanosession::layer::PaymentRequiredLayerBuilder,
    ) -> nanosession::layer::PaymentRequiredLayerBuilder,
) -> Harness {
    let ledger = FakeLedger::new();
    let sessions = Arc::new(MemorySessionStore::default());
    let store = FailingStore::new(sessions.clone(), Arc::new(MemorySpentSet::default()));
    let builder = PaymentRequiredLayer::builder()
        .pay_to(merchant())
        .price_table([(PAID, PRICE), (PAID_STREAM, PRICE)])
        .unlisted_paths(nanosession::layer::Unlisted::Free) // the other methods are free
        .network("nano:dev")
        .public_base_url("http://grpc.example")
        .session_store_shared(store.clone())
        .spent_set_shared(store.clone())
        .verifier_shared(ledger.clone());
    let layer = configure(builder).build().unwrap();

    let addr = serve(layer).await;
    let client = PaywallClient::connect(format!("http://{addr}")).await.unwrap();
    Harness { client, ledger, store, sessions }
}

/// The example's service behind `layer` on a loopback port.
async fn serve(layer: PaymentRequiredLayer) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(PaywallServer)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

fn ping() -> Request<Ping> {
    Request::new(Ping { text: "hello".into() })
}

fn text(metadata: &MetadataMap, name: &str) -> Option<String> {
    metadata.get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// The challenge a refusal carries in its metadata: (session id, amount).
fn challenge_of(status: &Status) -> Option<(String, Raw)> {
    let m = status.metadata();
    let session = text(m, "x-payment-session")?;
    let price: u128 = text(m, "x-payment-amount").unwrap().parse().unwrap();
    let tag: u128 = text(m, "x-payment-tag").unwrap().parse().unwrap();
    Some((session, Raw::new(price + tag)))
}

fn with_proof(session: &str, block: &BlockHash) -> Request<Ping> {
    let mut req = ping();
    req.metadata_mut().insert("x-payment-session", session.parse().unwrap());
    req.metadata_mut().insert("x-payment-block", block.to_string().parse().unwrap());
    req
}

fn reason_of(status: &Status) -> &str {
    status.message().split(':').next().unwrap()
}

impl Harness {
    /// Asks for the paid method without proof and returns the challenge.
    async fn challenge(&mut self) -> (String, Raw) {
        let status = self.client.unary(PAID, ping()).await.expect_err("payment required");
        challenge_of(&status).expect("challenge metadata")
    }

    async fn refused(&mut self, request: Request<Ping>) -> Status {
        self.client.unary(PAID, request).await.expect_err("refused")
    }
}

#[tokio::test]
async fn free_methods_pass_through_untouched() {
    let mut h = harness(|b| b).await;
    let res = h.client.unary(FREE, ping()).await.unwrap();
    assert_eq!(res.get_ref().text, "hello");
    assert!(res.get_ref().block.is_empty());
    assert!(res.metadata().get("payment-response").is_none());
    assert_eq!(h.ledger.calls(), 0);
}

#[tokio::test]
async fn payment_required_is_resource_exhausted_with_the_challenge_in_metadata() {
    let mut h = harness(|b| b).await;
    let status = h.client.unary(PAID, ping()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason_of(&status), "payment_required");
    let m = status.metadata();
    assert_eq!(text(m, "x-payment-address").unwrap(), merchant().to_string());
    assert_eq!(text(m, "x-payment-amount").unwrap(), PRICE.to_string());
    assert_eq!(text(m, "x-payment-tag-modulus").unwrap(), "10000000");
    assert!(text(m, "x-payment-expires").unwrap().ends_with('Z'));
    let required = PaymentRequired::from_header(
        m.get("payment-required").unwrap().to_str().unwrap().parse().as_ref().unwrap(),
    )
    .expect("payment-required decodes");
    let (session, amount) = challenge_of(&status).unwrap();
    assert_eq!(required.accepts[0].extra.nano_session.as_ref().unwrap().id.to_string(), session);
    assert_eq!(required.accepts[0].amount, amount);
    assert_eq!(required.resource.url, format!("http://grpc.example{PAID}"));
    let id: SessionId = session.parse().unwrap();
    assert!(h.sessions.get(&id).await.unwrap().is_some(), "the session is stored");
}

#[tokio::test]
async fn paid_unary_call_succeeds_once_and_the_replay_is_refused() {
    let mut h = harness(|b| b).await;
    let (session, amount) = h.challenge().await;
    let block = h.ledger.pay(merchant(), amount);

    let res = h.client.unary(PAID, with_proof(&session, &block)).await.expect("paid call");
    assert_eq!(res.get_ref().block, block.to_string(), "the handler saw VerifiedPayment");
    assert_eq!(res.get_ref().payer, common::fake::payer().to_string());
    let receipt = res.metadata().get("payment-response").expect("payment-response in initial metadata");
    let receipt = SettlementResponse::from_header(&receipt.to_str().unwrap().parse().unwrap()).unwrap();
    assert!(receipt.success);
    assert_eq!(receipt.transaction, block.to_string());

    // Replayed on a fresh session.
    let (fresh, _) = h.challenge().await;
    let status = h.refused(with_proof(&fresh, &block)).await;
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(reason_of(&status), "already_spent");
    let receipt = text(status.metadata(), "payment-response").expect("failed receipt");
    let receipt = SettlementResponse::from_header(&receipt.parse().unwrap()).unwrap();
    assert_eq!(receipt.error_reason.as_deref(), Some("already_spent"));
    assert!(challenge_of(&status).is_none(), "no fresh challenge on already_spent");
}

#[tokio::test]
async fn paid_call_with_payment_signature_metadata() {
    let mut h = harness(|b| b).await;
    let status = h.client.unary(PAID, ping()).await.unwrap_err();
    let required =
        PaymentRequired::from_header(&text(status.metadata(), "payment-required").unwrap().parse().unwrap())
            .unwrap();
    let block = h.ledger.pay(merchant(), required.accepts[0].amount);
    let payload = PaymentPayload {
        x402_version: 2,
        resource: required.resource.clone(),
        accepted: required.accepts[0].clone(),
        payload: ProofPayload { proof: block },
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&payload).unwrap());
    let mut req = ping();
    req.metadata_mut().insert("payment-signature", encoded.parse().unwrap());
    let res = h.client.unary(PAID, req).await.expect("paid with payment-signature");
    assert_eq!(res.get_ref().block, block.to_string());
}

#[tokio::test]
async fn server_streaming_is_priced_too() {
    let mut h = harness(|b| b).await;
    let status = h.client.paid_stream(ping()).await.expect_err("payment required");
    assert_eq!(status.code(), Code::ResourceExhausted);
    let (session, amount) = challenge_of(&status).unwrap();
    let block = h.ledger.pay(merchant(), amount);
    let mut stream =
        h.client.paid_stream(with_proof(&session, &block)).await.expect("paid stream").into_inner();
    let mut received = 0;
    while let Some(pong) = stream.next().await {
        let pong = pong.unwrap();
        assert_eq!(pong.block, block.to_string());
        received += 1;
    }
    assert_eq!(received, STREAM_LEN);
}

#[tokio::test]
async fn malformed_proofs_are_invalid_argument() {
    let mut h = harness(|b| b).await;
    let mut req = ping();
    req.metadata_mut().insert("x-payment-session", "not-hex".parse().unwrap());
    req.metadata_mut().insert("x-payment-block", "00".parse().unwrap());
    let status = h.refused(req).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(reason_of(&status), "malformed_payment");
    let mut req = ping();
    req.metadata_mut().insert("payment-signature", "%%%".parse().unwrap());
    assert_eq!(h.refused(req).await.code(), Code::InvalidArgument);
    assert_eq!(h.ledger.calls(), 0, "a malformed proof never reaches the verifier");
}

#[tokio::test]
async fn outages_are_unavailable_with_retry_after() {
    let mut h = harness(|b| b).await;
    let (session, amount) = h.challenge().await;
    let block = h.ledger.pay(merchant(), amount);

    h.ledger.set_down(true);
    let status = h.refused(with_proof(&session, &block)).await;
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason_of(&status), "verifier_unavailable");
    assert_eq!(text(status.metadata(), "retry-after").as_deref(), Some("5"));
    h.ledger.set_down(false);

    h.store.set_down(true);
    let status = h.refused(with_proof(&session, &block)).await;
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason_of(&status), "store_unavailable");
    let status = h.client.unary(PAID, ping()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "no challenge while the store is down");
    h.store.set_down(false);

    assert!(h.client.unary(PAID, with_proof(&session, &block)).await.is_ok(), "nothing was consumed");
}

/// Every reason of the spec's table that a paid retry can produce, as a tonic status.
#[tokio::test]
async fn every_reason_maps_to_a_status_and_metadata() {
    let mut h = harness(|b| b).await;
    let rejections = [
        (Rejection::NotFound, Reason::BlockNotFound),
        (Rejection::NotConfirmed, Reason::BlockNotConfirmed),
        (Rejection::WrongBlockType, Reason::WrongBlockType),
        (Rejection::WrongDestination, Reason::WrongDestination),
        (Rejection::WrongAmount, Reason::WrongAmount),
        (Rejection::TooOld, Reason::BlockTooOld),
        (Rejection::InvalidBlock("bad signature"), Reason::InvalidBlock),
    ];
    let (session, amount) = h.challenge().await;
    for (rejection, reason) in rejections {
        let block = h.ledger.pay(merchant(), amount);
        h.ledger.reject(block, rejection);
        let status = h.refused(with_proof(&session, &block)).await;
        assert_eq!(status.code(), Code::ResourceExhausted, "{reason}");
        assert_eq!(reason_of(&status), reason.code());
        assert_eq!(
            status.metadata().get("retry-after").is_some(),
            reason.retry_after_secs().is_some(),
            "{reason}"
        );
        assert!(challenge_of(&status).is_none(), "{reason}: no fresh challenge");
        assert!(status.metadata().get("payment-response").is_some(), "{reason}: failed receipt");
    }

    // unknown_session: a fresh challenge comes with it.
    let status =
        h.refused(with_proof(&SessionId::generate().to_string(), &h.ledger.pay(merchant(), amount))).await;
    assert_eq!((status.code(), reason_of(&status)), (Code::ResourceExhausted, "unknown_session"));
    assert!(challenge_of(&status).is_some());

    // session_expired: deleted and re-challenged.
    let now = unix_now();
    let mut expired =
        Session::issue(merchant(), PRICE, 10_000_000, now - 600, std::time::Duration::from_secs(300))
            .unwrap();
    expired.created_at = now - 600;
    assert_eq!(h.sessions.insert(&expired, now - 600).await.unwrap(), Insert::Inserted);
    let block = h.ledger.pay(merchant(), expired.amount);
    let status = h.refused(with_proof(&expired.id.to_string(), &block)).await;
    assert_eq!((status.code(), reason_of(&status)), (Code::ResourceExhausted, "session_expired"));
    assert!(challenge_of(&status).is_some());
    assert!(h.sessions.get(&expired.id).await.unwrap().is_some(), "kept until pruned after the grace");

    // session_used: two blocks for one session, verified together; one wins.
    let (session, amount) = h.challenge().await;
    let (a, b) = (h.ledger.pay(merchant(), amount), h.ledger.pay(merchant(), amount));
    h.ledger.hold_until(2);
    let (mut c1, mut c2) = (h.client.clone(), h.client.clone());
    let (s1, s2) = (session.clone(), session.clone());
    let (r1, r2) = tokio::join!(c1.unary(PAID, with_proof(&s1, &a)), c2.unary(PAID, with_proof(&s2, &b)));
    h.ledger.release_hold();
    let loser = match (r1, r2) {
        (Ok(_), Err(status)) | (Err(status), Ok(_)) => status,
        other => panic!("expected exactly one success, got {other:?}"),
    };
    assert_eq!((loser.code(), reason_of(&loser)), (Code::ResourceExhausted, "session_used"));
    assert!(challenge_of(&loser).is_some(), "session_used carries a fresh challenge");
}

#[tokio::test]
async fn grpc_codes_are_configurable() {
    let mut h = harness(|b| b.grpc_code(Reason::PaymentRequired, Code::FailedPrecondition as i32)).await;
    let status = h.client.unary(PAID, ping()).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(challenge_of(&status).is_some());
    let bad = PaymentRequiredLayer::builder()
        .pay_to(merchant())
        .price(PRICE)
        .public_base_url("http://x.example")
        .verifier_shared(FakeLedger::new())
        .grpc_code(Reason::AlreadySpent, 0)
        .build();
    assert!(matches!(bad, Err(nanosession::layer::ConfigError::InvalidGrpcCode(0))));
}

fn grpc_frame(msg: &[u8]) -> bytes::Bytes {
    let mut v = vec![0u8];
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    bytes::Bytes::from(v)
}

/// Review F1 (the review's E1): `OPTIONS /pkg.Svc/Method` with a gRPC body and made-up CORS
/// headers is refused like a POST; tonic routes on the path only, so passing it inward would
/// serve the priced method for free.
#[tokio::test]
async fn f1_options_with_a_grpc_body_is_refused_like_a_post() {
    use http_body_util::BodyExt;
    use tower::{Service, ServiceExt};
    let ledger = FakeLedger::new();
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant())
        .price_table([(PAID, PRICE)])
        .unlisted_paths(nanosession::layer::Unlisted::Free)
        .network("nano:dev")
        .public_base_url("http://grpc.example")
        .verifier_shared(ledger.clone())
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    for method in [http::Method::POST, http::Method::OPTIONS] {
        let req = http::Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}{PAID}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .body(tonic::body::Body::new(http_body_util::Full::new(grpc_frame(&[0x0a, 0x02, b'h', b'i']))))
            .unwrap();
        let mut ch = channel.clone();
        let resp = ch.ready().await.unwrap().call(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let collected = body.collect().await.unwrap();
        assert_eq!(
            parts.headers.get("grpc-status").unwrap(),
            "8",
            "{method}: trailers-only RESOURCE_EXHAUSTED"
        );
        assert!(collected.to_bytes().is_empty(), "{method}: no message from the priced method");
    }
    assert_eq!(ledger.calls(), 0);
}

/// Spec §9 over gRPC: the same hand-off payload in `payment-signature` metadata pays a call;
/// the layer publishes the block through the mock node, and the block is not served twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handed_over_block_in_metadata_pays_a_call() {
    use nanosession::mock_node::{MockNode, MockNodeConfig};
    use nanosession::nano::{work, PrivateKey, StateBlock};
    use nanosession::rpc::{block_json, NanoRpcClient};
    use nanosession::verify::NanoRpcVerifier;

    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let verifier = Arc::new(
        NanoRpcVerifier::builder(NanoRpcClient::new([node.rpc_url()]).unwrap())
            .poll_interval(std::time::Duration::from_millis(50))
            .build(),
    );
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant())
        .price_table([(PAID, PRICE)])
        .unlisted_paths(nanosession::layer::Unlisted::Free)
        .network("nano:dev")
        .public_base_url("http://grpc.example")
        .verifier_shared(verifier.clone())
        .accept_signed_blocks(verifier)
        .work_threshold(node.work_thresholds().epoch_2)
        .build()
        .unwrap();
    let addr = serve(layer).await;
    let mut client = PaywallClient::connect(format!("http://{addr}")).await.unwrap();
    let status = client.unary(PAID, ping()).await.unwrap_err();
    let required =
        PaymentRequired::from_header(&text(status.metadata(), "payment-required").unwrap().parse().unwrap())
            .unwrap();
    assert!(required.accepts[0].extra.accepts_block);
    let key = PrivateKey::from_bytes(rand::random());
    let frontier = node.fund(&key, Raw::ONE_XNO).await;
    let left = Raw::ONE_XNO.checked_sub(required.accepts[0].amount).unwrap();
    let mut block =
        StateBlock::send(key.public_key(), frontier, key.public_key(), left, merchant().public_key());
    block.sign(&key);
    block.work =
        work::generate(&block.work_root(), node.work_thresholds().epoch_2, &Default::default()).unwrap();
    let payment = serde_json::json!({
        "x402Version": 2, "resource": required.resource, "accepted": required.accepts[0],
        "payload": {"block": block_json(&block)},
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(payment.to_string());
    let paid = |encoded: &str| {
        let mut req = ping();
        req.metadata_mut().insert("payment-signature", encoded.parse().unwrap());
        req
    };
    let res = client.unary(PAID, paid(&encoded)).await.expect("paid by hand-off");
    assert_eq!(res.get_ref().block, block.hash().to_string());
    assert!(node.is_confirmed(&block.hash()), "the layer published it");
    let again = client.unary(PAID, paid(&encoded)).await.unwrap_err();
    assert_eq!((again.code(), reason_of(&again)), (Code::AlreadyExists, "already_granted"));
}
