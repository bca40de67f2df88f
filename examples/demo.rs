//! The whole flow in one process, offline: a mock Nano node, a paywalled axum server (the real
//! RPC verifier talking to the node over loopback HTTP), and a client that really pays.
//!
//! ```sh
//! cargo run --example demo
//! cargo run --example demo -- --browser   # the phone paywall: open the printed URL
//! ```
//!
//! The browser mode listens on `NANOSESSION_LISTEN` (default `127.0.0.1:3000`).
//!
//! ```sh
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Extension, Json, Router};
use nanosession::client::{PayingClient, Wallet, WorkThresholds};
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{Address, Raw, Seed};
use nanosession::protocol::{Offer, SettlementResponse};
use nanosession::rpc::NanoRpcClient;
use nanosession::verify::NanoRpcVerifier;
use nanosession::{PaymentRequiredLayer, VerifiedPayment};

/// 0.001 XNO: a multiple of the tag modulus, as every price must be.
const PRICE: Raw = Raw::new(1_000_000_000_000_000_000_000_000_000);

fn xno(raw: Raw) -> String {
    format!("{} XNO", raw.to_xno_string())
}

fn step(n: u32, title: &str) {
    println!("\n{n}. {title}");
}

/// Balances as the ledger has them; the merchant's incoming send is receivable until received.
async fn show(
    node: &MockNode,
    rpc: &NanoRpcClient,
    label: &str,
    customer: Address,
    merchant: Address,
) -> Result<(), Box<dyn std::error::Error>> {
    let receivable = rpc
        .receivable(&merchant)
        .await?
        .iter()
        .fold(Raw::ZERO, |sum, (_, amount)| sum.checked_add(*amount).unwrap_or(sum));
    println!(
        "   {label}: customer {} | merchant {} (+{} receivable)",
        xno(node.balance(&customer)),
        xno(node.balance(&merchant)),
        xno(receivable)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--browser") {
        return browser().await;
    }
    let started = Instant::now();

    // The ledger: an in-memory dev network whose blocks confirm 200 ms after they arrive.
    let node = MockNode::start(MockNodeConfig {
        confirmation_delay: Duration::from_millis(200),
        ..Default::default()
    })?;
    println!("mock Nano node  {} (dev network, really signed blocks)", node.rpc_url());

    // Two accounts from fresh random seeds: the merchant and the customer.
    let merchant = Wallet::from_seed(&Seed::from_bytes(rand::random()), 0);
    let customer_seed = Seed::from_bytes(rand::random());
    node.fund(&customer_seed.derive(0), Raw::ONE_XNO).await;
    let pay_to = merchant.account();

    // The paywalled server: /paid costs PRICE, verified through the node's RPC.
    let verifier = Arc::new(NanoRpcVerifier::builder(NanoRpcClient::new([node.rpc_url()])?).build());
    let paywall = || {
        PaymentRequiredLayer::builder()
            .pay_to(pay_to)
            .price(PRICE)
            .network("nano:dev")
            .public_base_url("http://127.0.0.1")
            .description("A paid JSON resource")
            .verifier_shared(verifier.clone())
    };
    // /paid takes the hash of a block the client published; /agent also takes a signed block
    // and publishes it itself (x402 `exact` on Nano, as agent wallets pay).
    let published = paywall().build()?.json_body();
    let handed_over = paywall()
        .accept_signed_blocks(verifier.clone())
        .work_threshold(nanosession::nano::work::DEV_EPOCH_2)
        .build()?
        .json_body();
    let handler = |Extension(p): Extension<VerifiedPayment>| async move {
        Json(
            serde_json::json!({"paid": true, "block": p.block.to_string(), "payer": p.payer.to_string(), "amount": p.amount.to_string()}),
        )
    };
    let app = Router::new()
        .route("/paid", get(handler).route_layer(published))
        .route("/agent", get(handler).route_layer(handed_over));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/paid", listener.local_addr()?);
    let agent_url = format!("http://{}/agent", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("paywall server  {url} (price {})", xno(PRICE));

    let rpc = NanoRpcClient::new([node.rpc_url()])?;

    step(1, "An unpaid request gets a 402 challenge");
    let plain = reqwest::get(&url).await?;
    let offer = Offer::from_headers(plain.headers())?;
    println!("   {} {}", plain.status().as_u16(), plain.status().canonical_reason().unwrap_or(""));
    println!("   pay exactly {} raw to {}", offer.amount, offer.pay_to);
    println!(
        "   = price {} raw + tag {} (binds the payment to session {}…)",
        offer.price,
        offer.tag,
        &offer.session.map(|s| s.to_string()).unwrap_or_default()[..8]
    );

    step(2, "The paying client asks, gets its own challenge, pays it and retries with the proof");
    let wallet = Wallet::from_seed(&customer_seed, 0)
        .with_limits(PRICE.checked_add(Raw::new(10_000_000)).unwrap(), Raw::ONE_XNO);
    let customer = wallet.account();
    show(&node, &rpc, "before", customer, pay_to).await?;
    let client = PayingClient::builder(wallet, NanoRpcClient::new([node.rpc_url()])?)
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .build();
    let paid = client.get(&url).await?;
    let payment = paid.payment.clone().expect("the server asked for a payment");
    println!(
        "   its challenge: tag {} for session {}…",
        payment.offer.tag,
        &payment.offer.session.map(|s| s.to_string()).unwrap_or_default()[..8]
    );
    println!("   published send {} ({} raw)", payment.block, payment.offer.amount);
    let receipt = paid.response.headers().get("payment-response").and_then(SettlementResponse::from_header);
    println!(
        "   {} {}",
        paid.response.status().as_u16(),
        paid.response.status().canonical_reason().unwrap_or("")
    );
    if let Some(receipt) = receipt {
        println!(
            "   PAYMENT-RESPONSE: success={} transaction={} payer={}",
            receipt.success,
            receipt.transaction,
            receipt.payer.unwrap_or_default()
        );
    }
    println!("   body: {}", paid.response.text().await?);
    show(&node, &rpc, "after ", customer, pay_to).await?;

    step(3, "The merchant receives the payment into its balance");
    let merchant_client = PayingClient::builder(merchant, NanoRpcClient::new([node.rpc_url()])?)
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .build();
    merchant_client.receive_all().await?;
    show(&node, &rpc, "now   ", customer, pay_to).await?;

    step(4, "Replaying the same block for a new session is refused");
    let fresh = reqwest::get(&url).await?;
    let fresh = Offer::from_headers(fresh.headers())?;
    let replay =
        reqwest::Client::new().get(&url).headers(fresh.proof_headers(&payment.block, false)).send().await?;
    let status = replay.status();
    let body: serde_json::Value = replay.json().await?;
    println!(
        "   {} {}: {}",
        status.as_u16(),
        body["reason"].as_str().unwrap_or(""),
        body["error"].as_str().unwrap_or("")
    );

    step(5, "An agent wallet hands over a signed block instead; the server checks and publishes it");
    let paid = client.get(&agent_url).await?;
    let payment = paid.payment.clone().expect("the server asked for a payment");
    println!("   the 402 offers hand-off: {}", payment.offer.accepts_block);
    println!(
        "   handed over signed send {} ({} raw), never published by the client",
        payment.block, payment.offer.amount
    );
    println!(
        "   {} {}; the server published it, confirmed: {}",
        paid.response.status().as_u16(),
        paid.response.status().canonical_reason().unwrap_or(""),
        node.is_confirmed(&payment.block)
    );
    if let Some(receipt) =
        paid.response.headers().get("payment-response").and_then(SettlementResponse::from_header)
    {
        println!("   PAYMENT-RESPONSE: success={} transaction={}", receipt.success, receipt.transaction);
    }
    show(&node, &rpc, "after ", customer, pay_to).await?;

    println!("\ndone in {:.1?}", started.elapsed());
    Ok(())
}

/// The browser paywall against the mock node: serves a priced page with a QR code and prints
/// the URL to open and the command that pays the URI it shows (as a phone wallet would).
async fn browser() -> Result<(), Box<dyn std::error::Error>> {
    use nanosession::layer::{Paywall, Unlisted};
    use nanosession::watcher::ConfirmationWatcher;

    let listen = std::env::var("NANOSESSION_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let node = MockNode::start(MockNodeConfig::default())?;
    let merchant = Wallet::from_seed(&Seed::from_bytes(rand::random()), 0).account();
    // A dev-network seed, printed for the pay command below (never do this with real funds).
    let phone_seed: [u8; 32] = rand::random();
    node.fund(&Seed::from_bytes(phone_seed).derive(0), Raw::ONE_XNO).await;
    let stores = nanosession::store::Stores::memory();
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant)
        // Below examples/pay's default limit (0.001 XNO) with the tag.
        .price_table([("/article", Raw::new(PRICE.get() / 2))])
        .unlisted_paths(Unlisted::Free)
        .network("nano:dev")
        .public_base_url(format!("http://{listen}"))
        .description("Today's premium article")
        .stores(stores.clone())
        .verifier(NanoRpcVerifier::new(NanoRpcClient::new([node.rpc_url()])?))
        .paywall(Paywall::default().title("Premium article"))
        .build()?
        .json_body();
    let _watcher = ConfirmationWatcher::builder(NanoRpcClient::new([node.rpc_url()])?, stores.sessions)
        .account(merchant)
        .websocket(node.ws_url())
        .spawn();
    let app = Router::new()
        .route(
            "/article",
            get(|Extension(p): Extension<VerifiedPayment>| async move {
                axum::response::Html(format!(
                    "<h1>Today's article</h1><p>Paid by {} with block {}.</p>",
                    p.payer, p.block
                ))
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("mock Nano node  {} (WebSocket {})", node.rpc_url(), node.ws_url());
    println!("open            http://{}/article", listener.local_addr()?);
    println!("then pay the nano: URI the page shows (as a phone wallet would):");
    println!(
        "  NANO_RPC_URLS={} NANO_PAYER_SEED={} cargo run --example pay -- 'nano:…?amount=…'",
        node.rpc_url(),
        hex::encode_upper(phone_seed)
    );
    println!("the page notices the payment and shows the article. Ctrl-C stops.");
    axum::serve(listener, app).await?;
    Ok(())
}
