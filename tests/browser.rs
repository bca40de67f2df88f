//! The browser paywall in a real headless Chromium, driven over the DevTools protocol: open the
//! priced page, read the `nano:` URI from it, pay that URI from a mock-node wallet as a phone
//! would, and see the paid content appear with no manual step; and the expired page.
//!
//! `./scripts/test` installs Debian's `chromium` when missing and sets `NSTEST_CHROMIUM` to it.
//! With `NSTEST_UPDATE_SCREENSHOT=1` the paywall's screenshot is written to `docs/paywall.png`.

use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use nanosession::layer::{Paywall, Unlisted};
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{work, Address, PrivateKey, Raw, StateBlock};
use nanosession::rpc::NanoRpcClient;
use nanosession::store::Stores;
use nanosession::verify::NanoRpcVerifier;
use nanosession::watcher::ConfirmationWatcher;
use nanosession::{PaymentRequiredLayer, VerifiedPayment};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const PRICE: Raw = Raw::new(2_500_000_000_000_000_000_000_000_000); // 0.0025 XNO

async fn site(node: &MockNode, ttl: Duration) -> (String, Address, ConfirmationWatcher) {
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
                axum::response::Html(format!("<h1>The article</h1><p id=\"paid\">paid by {}</p>", p.payer))
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
    (base, merchant, watcher)
}

/// A headless Chromium and one page of it, spoken to over the DevTools protocol.
struct Browser {
    _process: tokio::process::Child,
    _profile: std::path::PathBuf,
    page: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Browser {
    async fn open(chromium: &str, url: &str) -> Browser {
        let profile = std::env::temp_dir().join(format!("nstest-chromium-{}", rand::random::<u64>()));
        let mut process = tokio::process::Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=480,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        let mut lines = BufReader::new(process.stderr.take().unwrap()).lines();
        let devtools = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(ws) = line.split("DevTools listening on ").nth(1) {
                    return ws.trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools endpoint");
        })
        .await
        .expect("chromium announces its DevTools endpoint");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = devtools.replace("ws://", "http://");
        let host = http.split("/devtools").next().unwrap();
        let target: Value = reqwest::Client::new()
            .put(format!("{host}/json/new?{url}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ws = target["webSocketDebuggerUrl"].as_str().expect("a page target").to_owned();
        let (page, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
        Browser { _process: process, _profile: profile, page, next_id: 0 }
    }

    /// One DevTools command and its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.page.send(Message::text(request.to_string())).await.unwrap();
        while let Some(message) = self.page.next().await {
            if let Message::Text(text) = message.unwrap() {
                let reply: Value = serde_json::from_str(&text).unwrap();
                if reply["id"] == id {
                    return reply["result"].clone();
                }
            }
        }
        panic!("the page closed");
    }

    /// Evaluates `expression` in the page (`null` while it is not there yet).
    async fn eval(&mut self, expression: &str) -> Value {
        let result =
            self.call("Runtime.evaluate", json!({"expression": expression, "returnByValue": true})).await;
        result["result"]["value"].clone()
    }

    /// Waits (at most `within`) until `expression` is truthy, returning its value.
    async fn until(&mut self, expression: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let value = self.eval(expression).await;
            if !(value.is_null() || value == false || value == "") {
                return value;
            }
            if Instant::now() >= deadline {
                let url = self.eval("location.href").await;
                let text = self.eval("document.body ? document.body.innerText : ''").await;
                panic!("the page never satisfied {expression}\nat {url}:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"})).await;
        base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap()
    }
}

fn chromium() -> Option<String> {
    let path = std::env::var("NSTEST_CHROMIUM").ok();
    if path.is_none() {
        eprintln!("NSTEST_CHROMIUM is not set: skipping (./scripts/test installs Chromium and runs it)");
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_pays_the_qr_code_and_the_page_shows_the_content() {
    let Some(chromium) = chromium() else { return };
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let (base, merchant, _watcher) = site(&node, Duration::from_secs(300)).await;
    let mut browser = Browser::open(&chromium, &format!("{base}/article")).await;

    // What a phone scans: the page's own nano: URI.
    let uri = browser
        .until(
            "document.getElementById('pay-link') && document.getElementById('pay-link').getAttribute('href')",
            Duration::from_secs(20),
        )
        .await;
    let uri = uri.as_str().unwrap().to_owned();
    let (address, amount) = uri.strip_prefix("nano:").unwrap().split_once("?amount=").unwrap();
    assert_eq!(address, merchant.to_string());
    let amount: Raw = amount.parse().unwrap();
    let svg = browser.eval("document.querySelector('.qr svg') !== null").await;
    assert_eq!(svg, true, "the QR code is drawn");
    browser
        .until("document.getElementById('countdown').textContent.includes(':')", Duration::from_secs(5))
        .await;
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("paywall.png");
    std::fs::write(&out, &png).unwrap();
    if std::env::var("NSTEST_UPDATE_SCREENSHOT").is_ok() {
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/paywall.png"), &png).unwrap();
    }

    // The phone's wallet pays exactly the URI, through its own node.
    let key = PrivateKey::from_bytes(rand::random());
    let frontier = node.fund(&key, Raw::ONE_XNO).await;
    let left = Raw::ONE_XNO.checked_sub(amount).unwrap();
    let mut block =
        StateBlock::send(key.public_key(), frontier, key.public_key(), left, merchant.public_key());
    block.sign(&key);
    block.work =
        work::generate(&block.work_root(), node.work_thresholds().epoch_2, &AtomicBool::new(false)).unwrap();
    node.process(&block).unwrap();

    // No manual step: the page sees the payment, reloads, and shows the article.
    let paid = browser
        .until(
            "document.getElementById('paid') && document.getElementById('paid').textContent",
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(paid, format!("paid by {}", Address::from(key.public_key())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_page_says_so_and_offers_a_fresh_request() {
    let Some(chromium) = chromium() else { return };
    let node = MockNode::start(MockNodeConfig::default()).unwrap();
    let (base, _, _watcher) = site(&node, Duration::from_secs(8)).await;
    let mut browser = Browser::open(&chromium, &format!("{base}/article")).await;
    let first = browser
        .until(
            "document.getElementById('pay-link') && document.getElementById('pay-link').getAttribute('href')",
            Duration::from_secs(20),
        )
        .await;
    let shown = browser.until("!document.getElementById('expired').hidden", Duration::from_secs(20)).await;
    assert_eq!(shown, true, "the page says it expired");
    assert_eq!(
        browser.eval("document.getElementById('pay-link').hasAttribute('href')").await,
        false,
        "no stale link"
    );
    // "Get a new one" reloads: a fresh session with another amount.
    browser.eval("document.querySelector('#expired a').click()").await;
    let fresh = browser
        .until(
            &format!("(() => {{ const a = document.getElementById('pay-link'); const h = a && a.getAttribute('href'); return h && h !== {first} ? h : null; }})()"),
            Duration::from_secs(20),
        )
        .await;
    assert_ne!(fresh, first);
}
