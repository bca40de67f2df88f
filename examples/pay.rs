//! Pays for one URL: asks for it, pays the 402 from a seed, retries with the proof, prints the
//! answer. The paying half of the README's walkthrough against the mock node. Given a
//! `nano:ADDRESS?amount=RAW` URI instead (what the browser paywall's QR code holds), it pays
//! that as a phone wallet would: publishes the send and waits for its confirmation.
//!
//! ```sh
//! export NANO_PAYER_SEED=…   # the line `cargo run --example mock_node` printed
//! NANO_RPC_URLS=http://127.0.0.1:45000 cargo run --example pay -- http://127.0.0.1:3000/paid
//! NANO_RPC_URLS=http://127.0.0.1:45000 cargo run --example pay -- 'nano:nano_3…?amount=1000…'
//! ```
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `NANO_PAYER_SEED` | the paying wallet's seed, 64 hex digits | required |
//! | `NANO_PAYER_INDEX` | account index under the seed | `0` |
//! | `NANO_RPC_URLS` | comma-separated node RPC URLs | `http://127.0.0.1:45000` (the mock node) |
//! | `NANO_PAY_MAX_RAW` | the most it pays, for this request and in total | `1000000000000000000000000000` (0.001 XNO) |
//! | `NANO_WORK` | `dev` or `live`: thresholds for work computed locally | `dev` |
//! | `NANO_NETWORK` | the only network it pays on (x402 `network`) | `nano:dev` (the mock node's) |
//!
//! Exit status: 0 on a 2xx answer, 1 on any other answer or a failed payment, 2 on a bad
//! setting (one line naming the variable). The seed is never printed.

use std::process::ExitCode;

use nanosession::client::{PayingClient, Wallet, WorkThresholds};
use nanosession::nano::{Raw, Seed};
use nanosession::protocol::SettlementResponse;
use nanosession::rpc::NanoRpcClient;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The client and the URL, or one line naming what is wrong.
fn setup() -> Result<(PayingClient, String), String> {
    let mut args = std::env::args().skip(1);
    let url = match (args.next(), args.next()) {
        (Some(url), None) if !url.starts_with('-') => url,
        _ => {
            return Err(
                "usage: cargo run --example pay -- URL|nano:URI (settings in the environment)".to_owned()
            )
        }
    };
    if !url.starts_with("nano:") {
        reqwest::Url::parse(&url).map_err(|e| format!("URL {url:?} is invalid: {e}"))?;
    }
    // The seed is secret: the error says what is wrong with it, never what it is.
    let seed = var("NANO_PAYER_SEED").ok_or("NANO_PAYER_SEED is required (64 hex digits)")?;
    let seed = Seed::from_hex(&seed).map_err(|_| "NANO_PAYER_SEED is invalid: expected 64 hex digits")?;
    let index: u32 = var("NANO_PAYER_INDEX")
        .unwrap_or_else(|| "0".to_owned())
        .parse()
        .map_err(|e| format!("NANO_PAYER_INDEX is invalid: {e}"))?;
    let max: Raw = var("NANO_PAY_MAX_RAW")
        .unwrap_or_else(|| "1000000000000000000000000000".to_owned())
        .parse()
        .map_err(|e| format!("NANO_PAY_MAX_RAW is invalid: {e}"))?;
    let work = match var("NANO_WORK").as_deref() {
        None | Some("dev") => WorkThresholds::DEV,
        Some("live") => WorkThresholds::LIVE,
        Some(other) => return Err(format!("NANO_WORK is invalid: expected dev or live, got {other:?}")),
    };
    let urls: Vec<String> = var("NANO_RPC_URLS")
        .unwrap_or_else(|| "http://127.0.0.1:45000".to_owned())
        .split(',')
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    let node = NanoRpcClient::new(urls).map_err(|e| format!("NANO_RPC_URLS is invalid: {e}"))?;
    // The client refuses offers on any other network: mainnet funds never go to a dev server.
    let network = var("NANO_NETWORK").unwrap_or_else(|| "nano:dev".to_owned());
    let wallet = Wallet::from_seed(&seed, index).with_limits(max, max);
    Ok((PayingClient::builder(wallet, node).work_thresholds(work).network(&network).build(), url))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (client, url) = match setup() {
        Ok(setup) => setup,
        Err(line) => {
            eprintln!("error: {line}");
            return ExitCode::from(2);
        }
    };
    if let Some(uri) = url.strip_prefix("nano:") {
        return pay_uri(&client, uri).await;
    }
    println!("GET {url} as {}", client.wallet().account());
    let paid = match client.get(&url).await {
        Ok(paid) => paid,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &paid.payment {
        Some(payment) => {
            println!(
                "  402 Payment Required: {} raw to {} (price {} + tag {})",
                payment.offer.amount, payment.offer.pay_to, payment.offer.price, payment.offer.tag
            );
            println!("  paid: send block {} (confirmed)", payment.block);
            println!("  retried with the proof ({} attempt(s))", payment.attempts);
        }
        None => println!("  free: no payment asked"),
    }
    let status = paid.response.status();
    println!("  {} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    if let Some(receipt) =
        paid.response.headers().get("payment-response").and_then(SettlementResponse::from_header)
    {
        println!("  PAYMENT-RESPONSE: success={} transaction={}", receipt.success, receipt.transaction);
    }
    match paid.response.text().await {
        Ok(body) => println!("  body: {}", body.trim_end()),
        Err(e) => eprintln!("error: reading the body: {e}"),
    }
    if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Pays a `nano:ADDRESS?amount=RAW` URI: one published send of exactly that amount.
async fn pay_uri(client: &PayingClient, uri: &str) -> ExitCode {
    let parsed = uri.split_once("?amount=").and_then(|(address, amount)| {
        Some((address.parse::<nanosession::nano::Address>().ok()?, amount.parse::<Raw>().ok()?))
    });
    let Some((pay_to, amount)) = parsed else {
        eprintln!("error: expected nano:ADDRESS?amount=RAW");
        return ExitCode::from(2);
    };
    let offer = nanosession::protocol::Offer {
        session: None,
        accepts_block: false,
        pay_to,
        amount,
        price: amount,
        tag: 0,
        required: None,
        expires_at: None,
        network: None,
    };
    println!("paying {amount} raw to {pay_to} from {}", client.wallet().account());
    match client.pay(&offer).await {
        Ok(block) => {
            println!("  paid: send block {block} (published and confirmed)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
