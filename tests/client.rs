//! The paying client against hostile or unlucky servers, proxies and nodes (review findings
//! F5, F6, F19, the 409/429 reasons, the proof-size fuzz finding, x402 v1 `X-PAYMENT`).
//!
//! Money is checked on the mock node's ledger: "nothing paid" means the customer's balance is
//! untouched, "paid once" means it dropped by exactly one amount.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use nanosession::client::{ClientError, PayingClient, PayingClientBuilder, Wallet, WorkThresholds};
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{Address, PrivateKey, Raw, Seed};
use nanosession::protocol::{Challenge, Proof, SettlementResponse};
use nanosession::rpc::NanoRpcClient;
use nanosession::session::{unix_now, Session};
use nanosession::verify::NanoRpcVerifier;
use nanosession::PaymentRequiredLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

const PRICE: Raw = Raw::new(1_000_000_000_000_000_000_000_000); // 10^-6 XNO
const FUNDS: Raw = Raw::ONE_XNO;
const MODULUS: u64 = 10_000_000;

fn random_account() -> Address {
    Address::from(PrivateKey::from_bytes(rand::random()).public_key())
}

/// A funded customer on `node`: its seed and account.
async fn customer(node: &MockNode) -> (Seed, Address) {
    let seed = Seed::from_bytes(rand::random());
    node.fund(&seed.derive(0), FUNDS).await;
    let account = Wallet::from_seed(&seed, 0).account();
    (seed, account)
}

/// A client for `seed`, paying through `rpc` on the dev network, with short retries.
fn client_for(seed: &Seed, rpc: String) -> PayingClientBuilder {
    let wallet =
        Wallet::from_seed(seed, 0).with_limits(PRICE.checked_add(Raw::new(MODULUS as u128)).unwrap(), FUNDS);
    PayingClient::builder(wallet, NanoRpcClient::new([rpc]).unwrap())
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .confirm_timeout(Duration::from_secs(2))
        .retries(3, Duration::from_secs(1))
}

fn paid_once(node: &MockNode, account: &Address, amount: Raw) {
    assert_eq!(node.balance(account), FUNDS.checked_sub(amount).unwrap(), "paid exactly once");
}

/// The real layer in front of `node`, every path under `/paid` priced.
async fn layer_server(node: &MockNode, ttl: Duration) -> SocketAddr {
    let verifier = NanoRpcVerifier::builder(NanoRpcClient::new([node.rpc_url()]).unwrap())
        .poll_interval(Duration::from_millis(50))
        .build();
    let layer = PaymentRequiredLayer::builder()
        .pay_to(random_account())
        .price(PRICE)
        .network("nano:dev")
        .public_base_url("http://127.0.0.1")
        .session_ttl(ttl)
        .confirm_wait(Duration::from_secs(3))
        .verifier(verifier)
        .build()
        .unwrap()
        .json_body();
    let app = Router::new()
        .route("/paid", get(|| async { "the paid content" }))
        .route("/paid/{*rest}", get(|| async { "the paid content" }))
        .layer(layer);
    serve(app).await
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// What a scripted server saw: the path of each request and the proof it carried.
type Seen = Arc<Mutex<Vec<(String, Option<Proof>)>>>;

/// A server that issues real challenges (the crate's own writer) and answers paid requests
/// with `paid(n, proof)`, `n` counting paid requests from 1. It checks no payment itself.
async fn scripted<F>(pay_to: Address, ttl: Duration, paid: F) -> (SocketAddr, Seen)
where
    F: Fn(usize, &Proof) -> Response + Send + Sync + 'static,
{
    let seen: Seen = Arc::default();
    let (log, count, paid) = (seen.clone(), Arc::new(AtomicUsize::new(0)), Arc::new(paid));
    let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let (log, count, paid) = (log.clone(), count.clone(), paid.clone());
        async move {
            let proof = Proof::from_headers(&headers).unwrap();
            log.lock().unwrap().push((uri.path().to_owned(), proof));
            match proof {
                None => challenge_response(pay_to, "nano:dev", ttl, &uri.to_string()),
                Some(proof) => paid(count.fetch_add(1, Ordering::SeqCst) + 1, &proof),
            }
        }
    });
    (serve(app).await, seen)
}

fn challenge_response(pay_to: Address, network: &str, ttl: Duration, path: &str) -> Response {
    let challenge = Challenge::new(pay_to, MODULUS, network, "http://127.0.0.1", "", "text/plain");
    let session = Session::issue(pay_to, PRICE, MODULUS, unix_now(), ttl).unwrap();
    let mut response = (StatusCode::PAYMENT_REQUIRED, "payment required").into_response();
    challenge.write_headers(&session, &challenge.render(&session, path), response.headers_mut());
    response
}

fn refusal(status: StatusCode, reason: &str) -> Response {
    let mut response = (status, format!(r#"{{"error":"refused","reason":"{reason}"}}"#)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert("retry-after", "1".parse().unwrap());
    }
    response
}

fn paid_requests(seen: &Seen) -> Vec<Proof> {
    seen.lock().unwrap().iter().filter_map(|(_, p)| *p).collect()
}

// ---------------------------------------------------------------------------------------------
// F5: the session's expiry

/// Review E4 with the real layer: TTL 1 s, confirmations after 1.5 s. The client sees the
/// session cannot outlast its margin, fetches fresh challenges (as short), and gives up
/// without publishing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_expiring_before_the_retry_is_never_paid() {
    let node = MockNode::start(MockNodeConfig {
        confirmation_delay: Duration::from_millis(1500),
        ..Default::default()
    })
    .unwrap();
    let addr = layer_server(&node, Duration::from_secs(1)).await;
    let (seed, account) = customer(&node).await;
    let client = client_for(&seed, node.rpc_url()).build();
    let budget = client.wallet().remaining_budget();

    let error = client.get(&format!("http://{addr}/paid")).await.unwrap_err();
    assert!(matches!(error, ClientError::SessionTooShort { .. }), "{error}");
    assert!(error.payment().is_none());
    assert_eq!(client.wallet().remaining_budget(), budget, "budget unchanged");
    assert_eq!(node.balance(&account), FUNDS, "no block was published");
}

/// The proof of work outlasts the first session's margin (every node reply takes 0.7 s): the
/// built send is not published; a fresh challenge (long enough) is paid instead, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_runs_short_during_the_work_is_replaced_by_a_fresh_one() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let (seed, account) = customer(&node).await;
    let merchant = random_account();
    let challenges = Arc::new(AtomicUsize::new(0));
    let seen: Seen = Arc::default();
    let app = {
        let (challenges, seen) = (challenges.clone(), seen.clone());
        Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let (challenges, seen) = (challenges.clone(), seen.clone());
            async move {
                let proof = Proof::from_headers(&headers).unwrap();
                seen.lock().unwrap().push((uri.path().to_owned(), proof));
                if proof.is_some() {
                    return "the paid content".into_response();
                }
                // The first session lives 3 s, the next ones 300 s.
                let ttl = if challenges.fetch_add(1, Ordering::SeqCst) == 0 { 3 } else { 300 };
                challenge_response(merchant, "nano:dev", Duration::from_secs(ttl), uri.path())
            }
        })
    };
    let addr = serve(app).await;
    let client = client_for(&seed, node.rpc_url()).expiry_margin(Duration::from_secs(2)).build();
    node.faults().set_reply_delay(Duration::from_millis(700));

    let paid = client.get(&format!("http://{addr}/paid")).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    assert_eq!(challenges.load(Ordering::SeqCst), 2, "one fresh challenge");
    let payment = paid.payment.unwrap();
    paid_once(&node, &account, payment.offer.amount);
    assert_eq!(node.block(&payment.block).unwrap().link, *merchant.public_key().as_bytes());
    assert_eq!(paid_requests(&seen).len(), 1);
    assert_eq!(client.wallet().remaining_budget(), FUNDS.checked_sub(payment.offer.amount).unwrap());
}

// ---------------------------------------------------------------------------------------------
// F6: errors after paying keep the proof

/// A TCP proxy that breaks the connection of the first request carrying a proof: before it
/// reaches the server (`lose_answer` false), or after the server answered (true).
async fn breaking_proxy(target: SocketAddr, lose_answer: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let armed = Arc::new(AtomicBool::new(true));
    let broken = Arc::new(AtomicUsize::new(0));
    let broken2 = broken.clone();
    tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = listener.accept().await else { return };
            let (armed, broken) = (armed.clone(), broken2.clone());
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else { return };
                let (mut cr, mut cw) = inbound.into_split();
                let (mut sr, mut sw) = outbound.into_split();
                let swallow = Arc::new(AtomicBool::new(false));
                let swallow2 = swallow.clone();
                let back = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if swallow2.load(Ordering::SeqCst) {
                            return; // the server answered; the client never hears it
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let text = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                    let has_proof = text.contains("payment-signature:") || text.contains("x-payment-block:");
                    if has_proof && armed.swap(false, Ordering::SeqCst) {
                        broken.fetch_add(1, Ordering::SeqCst);
                        if !lose_answer {
                            back.abort();
                            return;
                        }
                        swallow.store(true, Ordering::SeqCst);
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = back.await;
            });
        }
    });
    (addr, broken)
}

/// The connection breaks before the paid retry reaches the server: the client retries with the
/// same proof and is served; one payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transport_error_on_the_paid_retry_is_retried_with_the_same_proof() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let server = layer_server(&node, Duration::from_secs(300)).await;
    let (proxy, broken) = breaking_proxy(server, false).await;
    let (seed, account) = customer(&node).await;
    let client = client_for(&seed, node.rpc_url()).build();

    let paid = client.get(&format!("http://{proxy}/paid")).await.unwrap();
    assert_eq!(broken.load(Ordering::SeqCst), 1, "the first paid retry was cut");
    assert_eq!(paid.response.status(), 200);
    let payment = paid.payment.unwrap();
    assert!(payment.attempts >= 2, "{}", payment.attempts);
    assert_eq!(paid.response.text().await.unwrap(), "the paid content");
    paid_once(&node, &account, payment.offer.amount);
}

/// The server granted, but the answer was lost: the client does not pay again, and whatever it
/// returns carries the proof of the one payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_grant_is_never_paid_twice_and_the_error_carries_the_proof() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let server = layer_server(&node, Duration::from_secs(300)).await;
    let (proxy, broken) = breaking_proxy(server, true).await;
    let (seed, account) = customer(&node).await;
    let client = client_for(&seed, node.rpc_url()).build();

    let outcome = client.get(&format!("http://{proxy}/paid")).await;
    assert_eq!(broken.load(Ordering::SeqCst), 1);
    let payment = match outcome {
        // The server cannot grant the consumed session twice.
        Ok(paid) => panic!("granted twice: {}", paid.response.status()),
        Err(error) => error.payment().cloned().unwrap_or_else(|| panic!("no proof in: {error}")),
    };
    paid_once(&node, &account, payment.offer.amount);
    assert!(node.is_confirmed(&payment.block), "the error names the published block");
}

/// A 503 storm longer than the retries: the error carries the payment, and `resume` with it is
/// served later without paying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_re_sends_the_same_proof_after_a_503_storm() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let (seed, account) = customer(&node).await;
    let up = Arc::new(AtomicBool::new(false));
    let up2 = up.clone();
    let (addr, seen) = scripted(random_account(), Duration::from_secs(300), move |_, _| {
        if up2.load(Ordering::SeqCst) {
            "the paid content".into_response()
        } else {
            refusal(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
        }
    })
    .await;
    let client = client_for(&seed, node.rpc_url()).build();
    let url = format!("http://{addr}/paid");

    let error = client.get(&url).await.unwrap_err();
    let ClientError::AfterPayment { payment, cause } = &error else { panic!("{error}") };
    assert!(matches!(**cause, ClientError::Refused { status: 503, .. }), "{cause}");
    assert_eq!(paid_requests(&seen).len(), 4, "one paid retry plus three retries");

    up.store(true, Ordering::SeqCst);
    let request = reqwest::Client::new().get(&url).build().unwrap();
    let paid = client.resume(request, (**payment).clone()).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let proofs = paid_requests(&seen);
    assert!(proofs.iter().all(|p| p.block == payment.block), "the same proof every time");
    paid_once(&node, &account, payment.offer.amount);
}

// ---------------------------------------------------------------------------------------------
// 409 already_granted, 429 rate_limited

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn already_granted_is_a_distinct_error_with_the_receipt_and_nothing_more_is_paid() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let (seed, account) = customer(&node).await;
    let (addr, seen) = scripted(random_account(), Duration::from_secs(300), move |_, proof| {
        let receipt =
            SettlementResponse::success(proof.block.to_string(), "nano:dev".into(), "nano_1payer".into());
        let mut response = refusal(StatusCode::CONFLICT, "already_granted");
        response.headers_mut().insert("payment-response", receipt.to_header());
        response
    })
    .await;
    let client = client_for(&seed, node.rpc_url()).build();

    let error = client.get(&format!("http://{addr}/paid")).await.unwrap_err();
    let ClientError::AlreadyGranted { payment, receipt } = &error else { panic!("{error}") };
    let receipt = receipt.as_ref().expect("the receipt is kept");
    assert!(receipt.success);
    assert_eq!(receipt.transaction, payment.block.to_string());
    assert_eq!(paid_requests(&seen).len(), 1, "not retried");
    paid_once(&node, &account, payment.offer.amount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_is_retried_later_with_the_same_proof() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let (seed, account) = customer(&node).await;
    let (addr, seen) = scripted(random_account(), Duration::from_secs(300), move |n, _| {
        if n == 1 {
            refusal(StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        } else {
            "the paid content".into_response()
        }
    })
    .await;
    let client = client_for(&seed, node.rpc_url()).build();

    let started = Instant::now();
    let paid = client.get(&format!("http://{addr}/paid")).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    let payment = paid.payment.unwrap();
    assert_eq!(payment.attempts, 2);
    let proofs = paid_requests(&seen);
    assert_eq!(proofs.len(), 2);
    assert!(proofs.iter().all(|p| p.block == payment.block && Some(p.session) == payment.offer.session));
    paid_once(&node, &account, payment.offer.amount);
}

// ---------------------------------------------------------------------------------------------
// F19: hardening

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_on_another_network_is_refused() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let addr = layer_server(&node, Duration::from_secs(300)).await; // nano:dev
    let (seed, account) = customer(&node).await;
    let wallet = Wallet::from_seed(&seed, 0).with_limits(FUNDS, FUNDS);
    let mainnet = PayingClient::builder(wallet, NanoRpcClient::new([node.rpc_url()]).unwrap())
        .work_thresholds(WorkThresholds::DEV)
        .build(); // expects nano:mainnet by default
    let error = mainnet.get(&format!("http://{addr}/paid")).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::WrongNetwork { expected, offered } if expected == "nano:mainnet" && offered == "nano:dev"),
        "{error}"
    );
    assert_eq!(node.balance(&account), FUNDS);
    assert_eq!(mainnet.wallet().remaining_budget(), FUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_burn_address_is_never_paid() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let (seed, account) = customer(&node).await;
    let (addr, seen) =
        scripted(Address::BURN, Duration::from_secs(300), |_, _| "the paid content".into_response()).await;
    let client = client_for(&seed, node.rpc_url()).build();
    let error = client.get(&format!("http://{addr}/paid")).await.unwrap_err();
    assert!(matches!(error, ClientError::BurnAddress), "{error}");
    assert_eq!(node.balance(&account), FUNDS);
    assert!(paid_requests(&seen).is_empty());
}

/// A node proxy that rewrites replies: `account_info`'s balance, or `block_info`'s contents.
async fn lying_node(node: &MockNode, lie_in_contents: bool) -> String {
    let target = node.rpc_url();
    let http = reqwest::Client::new();
    let app = Router::new().fallback(move |body: Bytes| {
        let (target, http) = (target.clone(), http.clone());
        async move {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let mut reply: serde_json::Value =
                http.post(&target).body(body).send().await.unwrap().json().await.unwrap();
            let lower = |v: &serde_json::Value| {
                let real: u128 = v.as_str().unwrap().parse().unwrap();
                serde_json::Value::String((real - PRICE.get()).to_string())
            };
            match request["action"].as_str() {
                Some("account_info") => reply["balance"] = lower(&reply["balance"]),
                Some("block_info") if lie_in_contents && reply["contents"]["balance"].is_string() => {
                    reply["contents"]["balance"] = lower(&reply["contents"]["balance"]);
                    reply["balance"] = reply["contents"]["balance"].clone();
                }
                _ => {}
            }
            axum::Json(reply)
        }
    });
    format!("http://{}/", serve(app).await)
}

/// The client's node reports the balance one price too low (in `account_info` only, then in
/// the frontier's contents too): a send built on it would move twice the amount. The client
/// checks the frontier block (hash, signature) and signs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_node_cannot_make_the_client_overpay() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let addr = layer_server(&node, Duration::from_secs(300)).await;
    for lie_in_contents in [false, true] {
        let (seed, account) = customer(&node).await;
        let client = client_for(&seed, lying_node(&node, lie_in_contents).await).build();
        let error = client.get(&format!("http://{addr}/paid")).await.unwrap_err();
        assert!(matches!(error, ClientError::UntrustedNode(_)), "{lie_in_contents}: {error}");
        assert_eq!(node.balance(&account), FUNDS, "nothing was sent");
        assert_eq!(client.wallet().remaining_budget(), FUNDS, "refunded");
    }
}

/// A refusal with an endless body: the client reads a bounded prefix and returns, with the
/// proof, instead of buffering forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_body_is_read_bounded() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let (seed, account) = customer(&node).await;
    let (addr, _) = scripted(random_account(), Duration::from_secs(300), |_, _| {
        let endless =
            futures_util::stream::repeat_with(|| Ok::<_, Infallible>(Bytes::from(vec![b' '; 16 * 1024])));
        (StatusCode::PAYMENT_REQUIRED, Body::from_stream(endless)).into_response()
    })
    .await;
    let client = client_for(&seed, node.rpc_url()).build();
    let outcome = tokio::time::timeout(Duration::from_secs(20), client.get(&format!("http://{addr}/paid")))
        .await
        .expect("the client returned");
    let error = outcome.unwrap_err();
    let ClientError::AfterPayment { payment, cause } = &error else { panic!("{error}") };
    assert!(
        matches!(&**cause, ClientError::Refused { status: 402, reason } if reason == "unknown"),
        "{cause}"
    );
    paid_once(&node, &account, payment.offer.amount);
}

/// The unpaid request follows a redirect to the 402; the paid retry goes straight to the URL
/// that answered 402, so the redirecting URL never sees the proof. A redirect answering the
/// paid retry is returned, not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_never_follows_a_redirect() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let (seed, account) = customer(&node).await;
    let merchant = random_account();
    let seen: Seen = Arc::default();
    let redirect_paid = Arc::new(AtomicBool::new(false));
    let app = {
        let (seen, redirect_paid) = (seen.clone(), redirect_paid.clone());
        Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let (seen, redirect_paid) = (seen.clone(), redirect_paid.clone());
            async move {
                let proof = Proof::from_headers(&headers).unwrap();
                seen.lock().unwrap().push((uri.path().to_owned(), proof));
                let to = |path: &'static str| {
                    (StatusCode::TEMPORARY_REDIRECT, [("location", path)]).into_response()
                };
                match (uri.path(), proof) {
                    ("/old", _) => to("/paid"),
                    ("/paid", None) => {
                        challenge_response(merchant, "nano:dev", Duration::from_secs(300), "/paid")
                    }
                    ("/paid", Some(_)) if redirect_paid.load(Ordering::SeqCst) => to("/elsewhere"),
                    ("/paid", Some(_)) => "the paid content".into_response(),
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            }
        })
    };
    let addr = serve(app).await;
    let client = client_for(&seed, node.rpc_url()).build();

    let paid = client.get(&format!("http://{addr}/old")).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let first = paid.payment.unwrap();
    assert_eq!(first.url.path(), "/paid");

    redirect_paid.store(true, Ordering::SeqCst);
    let paid = client.get(&format!("http://{addr}/old")).await.unwrap();
    assert_eq!(paid.response.status(), StatusCode::TEMPORARY_REDIRECT, "returned, not followed");
    let second = paid.payment.unwrap();

    let log = seen.lock().unwrap().clone();
    assert!(log.iter().all(|(path, proof)| path == "/paid" || proof.is_none()), "{log:?}");
    assert!(!log.iter().any(|(path, _)| path == "/elsewhere"));
    assert_eq!(
        node.balance(&account),
        FUNDS.checked_sub(first.offer.amount).unwrap().checked_sub(second.offer.amount).unwrap()
    );
}

/// `http://` to a host that is not loopback (here a name resolved to 127.0.0.1 by the client):
/// refused before paying unless explicitly allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proof_over_plain_http_to_a_remote_host() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let addr = layer_server(&node, Duration::from_secs(300)).await;
    let (seed, account) = customer(&node).await;
    let resolving = || reqwest::Client::builder().resolve("shop.example", addr);
    let url = format!("http://shop.example:{}/paid", addr.port());

    let client = client_for(&seed, node.rpc_url()).http_client(resolving().build().unwrap()).build();
    let error = client.get(&url).await.unwrap_err();
    assert!(matches!(error, ClientError::InsecureTransport), "{error}");
    assert_eq!(node.balance(&account), FUNDS);

    let allowed = client_for(&seed, node.rpc_url())
        .http_client(resolving().build().unwrap())
        .paid_http_client(resolving().redirect(reqwest::redirect::Policy::none()).build().unwrap())
        .allow_insecure_http()
        .build();
    let paid = allowed.get(&url).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    paid_once(&node, &account, paid.payment.unwrap().offer.amount);
}

// ---------------------------------------------------------------------------------------------
// The proof-size fuzz finding

/// Paths and queries around (and far beyond) the length where the x402 proof would pass the
/// server's 8 KiB limit: each is paid once and granted through the real layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_very_long_path_and_query_is_paid_and_granted() {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let addr = layer_server(&node, Duration::from_secs(300)).await;
    for len in [4_000, 5_400, 5_600, 6_000, 12_000] {
        let (seed, account) = customer(&node).await;
        let client = client_for(&seed, node.rpc_url()).build();
        let path = format!("/paid/{}?q={}", "p".repeat(len / 4), "q".repeat(len - len / 4));
        let paid = client.get(&format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(paid.response.status(), 200, "length {len}");
        paid_once(&node, &account, paid.payment.unwrap().offer.amount);
    }
}

// ---------------------------------------------------------------------------------------------
// x402 v1 X-PAYMENT

/// An x402 v1 client sends `X-PAYMENT` alone: a 400 naming what to send instead (a 402 would
/// make it pay again), before any node call.
#[tokio::test]
async fn x402_v1_x_payment_alone_is_a_clear_malformed_payment() {
    let ledger = common::fake::FakeLedger::new();
    let layer = PaymentRequiredLayer::builder()
        .pay_to(random_account())
        .price(PRICE)
        .public_base_url("https://api.example")
        .verifier_shared(ledger.clone())
        .build()
        .unwrap()
        .json_body();
    let app = Router::new().route("/paid", get(|| async { "the paid content" })).layer(layer);
    let request = axum::http::Request::get("/paid")
        .header("x-payment", "eyJ4NDAyVmVyc2lvbiI6MSwic2NoZW1lIjoiZXhhY3QifQ==")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["reason"], "malformed_payment");
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("PAYMENT-SIGNATURE") && detail.contains("x402Version 2"), "{detail}");
    assert!(detail.contains("X-PAYMENT-SESSION + X-PAYMENT-BLOCK"), "{detail}");
    assert_eq!(ledger.calls(), 0);
}

/// `process` never answers: the money stays counted and the error hands out the payment (the
/// uncertain block); `resume` re-sends that very block, then the proof, and pays nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_publish_is_handed_out_and_resumed_with_the_same_block() {
    let node = common::CannedNode::start().await;
    let seed = Seed::from_bytes(rand::random());
    let key = seed.derive(0);
    let head = common::signed_send(
        &key,
        nanosession::nano::BlockHash::from_bytes([0xAB; 32]),
        FUNDS,
        &key.public_key(),
    );
    node.insert_block_info(head.hash(), common::block_info_reply(&head, None, unix_now(), true));
    let account = Address::from(key.public_key());
    node.set_reply(
        "account_info",
        serde_json::json!({"frontier": head.hash().to_string(), "balance": FUNDS.to_string(), "representative": account.to_string()}),
    );
    node.set_reply("work_generate", serde_json::json!({"error": "RPC control is disabled"}));
    node.set_reply("process", serde_json::json!({"error": "Internal server error in RPC"}));
    let rpc = NanoRpcClient::builder().endpoint(node.url()).max_attempts(1).build().unwrap();
    let wallet = Wallet::from_seed(&seed, 0).with_limits(FUNDS, FUNDS);
    let client = PayingClient::builder(wallet, rpc)
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .confirm_timeout(Duration::from_millis(100))
        .retries(1, Duration::from_millis(100))
        .build();
    let (addr, seen) =
        scripted(random_account(), Duration::from_secs(300), |_, _| "the paid content".into_response()).await;
    let url = format!("http://{addr}/paid?token=secret-in-query");

    let error = client.get(&url).await.unwrap_err();
    let ClientError::AfterPayment { payment, cause } = &error else { panic!("{error}") };
    assert!(matches!(**cause, ClientError::Node(_)), "{cause}");
    assert!(paid_requests(&seen).is_empty(), "no proof before the block is known to be published");
    assert!(!format!("{error:?}").contains("secret-in-query"), "the URL's query stays out of Debug");
    let spent = FUNDS.checked_sub(payment.offer.amount).unwrap();
    assert_eq!(client.wallet().remaining_budget(), spent, "an unanswered publish still counts");

    node.set_reply("process", serde_json::json!({"hash": payment.block.to_string()}));
    let request = reqwest::Client::new().get(&url).build().unwrap();
    let paid = client.resume(request, (**payment).clone()).await.unwrap();
    assert_eq!(paid.response.status(), 200);
    let published: Vec<_> = node
        .requests()
        .into_iter()
        .filter(|r| r.body["action"] == "process")
        .map(|r| r.body["block"].clone())
        .collect();
    assert_eq!(published.len(), 3, "two unanswered tries, then the re-send");
    assert!(published.iter().all(|b| *b == published[0]), "the very same signed block each time");
    assert_eq!(paid_requests(&seen).iter().map(|p| p.block).collect::<Vec<_>>(), vec![payment.block]);
    assert_eq!(client.wallet().remaining_budget(), spent, "counted once");
    assert_eq!(node.count_action("account_info"), 1, "no second send was built");
}
