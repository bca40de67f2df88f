//! The browser paywall over HTTP (the real browser drives it in tests/browser.rs): the page,
//! its headers and cookie, the same session on reload, the status endpoint, settlement by
//! cookie through the watcher's match, expiry; JSON and gRPC clients unchanged.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Router};
use nanosession::layer::{Paywall, Unlisted};
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{work, Address, PrivateKey, Raw, StateBlock};
use nanosession::protocol::PaymentRequired;
use nanosession::rpc::NanoRpcClient;
use nanosession::store::Stores;
use nanosession::verify::NanoRpcVerifier;
use nanosession::watcher::ConfirmationWatcher;
use nanosession::{PaymentRequiredLayer, VerifiedPayment};

const PRICE: Raw = Raw::new(2_500_000_000_000_000_000_000_000_000); // 0.0025 XNO
const CHROME: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

struct Site {
    node: MockNode,
    base: String,
    merchant: Address,
    _watcher: ConfirmationWatcher,
}

async fn site(ttl: Duration) -> Site {
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let merchant = Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let stores = Stores::memory();
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant)
        .price_table([("/article", PRICE)])
        .unlisted_paths(Unlisted::Free)
        .network("nano:dev")
        .public_base_url("http://127.0.0.1")
        .description("One premium article")
        .session_ttl(ttl)
        .stores(stores.clone())
        .verifier(NanoRpcVerifier::new(NanoRpcClient::new([node.rpc_url()]).unwrap()))
        .paywall(Paywall::default().title("Premium article"))
        .build()
        .unwrap()
        .json_body();
    let app = Router::new()
        .route(
            "/article",
            get(|Extension(p): Extension<VerifiedPayment>| async move {
                format!("the article, paid by {}", p.payer)
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let watcher =
        ConfirmationWatcher::builder(NanoRpcClient::new([node.rpc_url()]).unwrap(), stores.sessions)
            .account(merchant)
            .websocket(node.ws_url())
            .spawn();
    Site { node, base, merchant, _watcher: watcher }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The `name=value` of the response's `Set-Cookie`, and the whole header.
fn set_cookie(res: &reqwest::Response) -> Option<(String, String)> {
    let header = res.headers().get("set-cookie")?.to_str().unwrap().to_owned();
    Some((header.split(';').next().unwrap().to_owned(), header))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_gets_the_page_and_pays_by_reloading() {
    let s = site(Duration::from_secs(300)).await;
    let http = browser();
    let res = http.get(format!("{}/article", s.base)).header("accept", CHROME).send().await.unwrap();
    assert_eq!(res.status(), 402, "still a 402");
    let h = res.headers().clone();
    for name in ["x-payment-address", "x-payment-session", "payment-required", "x-payment-expires"] {
        assert!(h.contains_key(name), "{name} is still sent");
    }
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let (cookie, whole) = set_cookie(&res).expect("the session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/article;", "Max-Age="] {
        assert!(whole.contains(attribute), "{whole}");
    }
    assert!(!whole.contains("Secure"), "plain http base URL: no Secure");
    let session = h["x-payment-session"].to_str().unwrap().to_owned();
    assert_eq!(cookie, format!("nanosession={session}"));
    let required = PaymentRequired::from_header(&h["payment-required"]).unwrap();
    let amount = required.accepts[0].amount;
    let page = res.text().await.unwrap();
    let uri = format!("nano:{}?amount={amount}", s.merchant);
    assert!(page.contains(&format!("href=\"{uri}\"")), "the tappable URI");
    assert!(page.contains("<svg"), "the QR code is inline SVG");
    assert!(page.contains(&format!("{} XNO", amount.to_xno_string())), "exact XNO");
    assert!(page.contains(&format!("{amount} raw")));
    assert!(page.contains("Premium article") && page.contains("One premium article"));
    assert!(page.contains("http-equiv=\"refresh\""), "works without JavaScript");
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(page.contains(&format!("<script nonce=\"{nonce}\">")), "the script carries the CSP nonce");
    assert!(!page.contains("src=\"http") && !page.contains("href=\"http"), "no external assets");

    // A reload before paying shows the same session (the QR a phone may have scanned).
    let again = http
        .get(format!("{}/article", s.base))
        .header("accept", CHROME)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 402);
    assert_eq!(again.headers()["x-payment-session"].to_str().unwrap(), session, "the same session");

    // The status endpoint answers for the cookie's session; the phone pays the URI.
    let status = format!("{}/article?nanosession=status", s.base);
    let started = std::time::Instant::now();
    let key = PrivateKey::from_bytes(rand::random());
    let frontier = s.node.fund(&key, Raw::ONE_XNO).await;
    let waiter = {
        let (http, status, cookie) = (http.clone(), status.clone(), cookie.clone());
        tokio::spawn(async move {
            http.get(status).header("cookie", cookie).send().await.unwrap().text().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut block = StateBlock::send(
        key.public_key(),
        frontier,
        key.public_key(),
        Raw::ONE_XNO.checked_sub(amount).unwrap(),
        s.merchant.public_key(),
    );
    block.sign(&key);
    block.work =
        work::generate(&block.work_root(), s.node.work_thresholds().epoch_2, &AtomicBool::new(false))
            .unwrap();
    s.node.process(&block).unwrap();
    assert_eq!(waiter.await.unwrap(), r#"{"state":"paid"}"#, "the long poll ends with the payment");
    assert!(started.elapsed() < Duration::from_secs(10));

    let paid = http
        .get(format!("{}/article", s.base))
        .header("accept", CHROME)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200, "the reload settles through the watcher's match");
    let (cleared, _) = set_cookie(&paid).expect("the cookie is cleared");
    assert_eq!(cleared, "nanosession=");
    assert!(paid.headers().contains_key("payment-response"));
    assert_eq!(
        paid.text().await.unwrap(),
        format!("the article, paid by {}", Address::from(key.public_key()))
    );
    let no_session = http.get(&status).send().await.unwrap().text().await.unwrap();
    assert_eq!(no_session, r#"{"state":"unknown"}"#, "no cookie, no answer about anyone's session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_clients_still_get_json_and_expired_pages_get_a_fresh_session() {
    let s = site(Duration::from_secs(1)).await;
    let http = browser();
    let json =
        http.get(format!("{}/article", s.base)).header("accept", "application/json").send().await.unwrap();
    assert_eq!(json.status(), 402);
    assert_eq!(json.headers()["content-type"], "application/json");
    assert!(json.headers().get("set-cookie").is_none(), "no cookie for API clients");
    let page = http.get(format!("{}/article", s.base)).header("accept", CHROME).send().await.unwrap();
    let (cookie, _) = set_cookie(&page).unwrap();
    let first = page.headers()["x-payment-session"].to_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let status = http
        .get(format!("{}/article?nanosession=status", s.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(status.text().await.unwrap(), r#"{"state":"expired"}"#);
    let fresh = http
        .get(format!("{}/article", s.base))
        .header("accept", CHROME)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 402);
    assert_ne!(fresh.headers()["x-payment-session"].to_str().unwrap(), first, "a fresh challenge");
    // gRPC requests never get the page.
    let grpc = http
        .post(format!("{}/article", s.base))
        .header("content-type", "application/grpc")
        .header("accept", CHROME)
        .send()
        .await
        .unwrap();
    assert_eq!(grpc.status(), 200);
    assert!(grpc.headers().contains_key("grpc-status"));
    assert!(grpc.headers().get("content-security-policy").is_none());
}
