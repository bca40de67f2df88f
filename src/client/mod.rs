//! The paying side (feature `client`): a [`Wallet`] with spend limits and a [`PayingClient`]
//! that answers any NanoSession server's 402 by paying and retrying.
//!
//! On a 402 the client reads the challenge (either header form), checks the amount against the
//! wallet's limits, builds and signs a send of exactly that amount, gets its proof of work (from
//! the node's `work_generate`, else on all local cores), publishes it with `process`, waits for
//! confirmation, and retries the request with the proof: `PAYMENT-SIGNATURE` by default, the
//! Rev 5 headers on request. `block_not_confirmed`, `block_not_found` and 503s are retried with
//! the same proof after `Retry-After`; the client never pays twice for one session.

mod wallet;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::nano::{work, Address, BlockHash, Raw, StateBlock};
use crate::protocol::{MalformedChallenge, Offer, SettlementResponse};
use crate::rpc::{NanoRpcClient, RpcError};
use crate::session::SessionId;

pub use wallet::{SpendError, Wallet};

/// Proof-of-work thresholds the client must meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkThresholds {
    /// For sends (and changes).
    pub send: u64,
    /// For receives and opens.
    pub receive: u64,
}

impl WorkThresholds {
    /// The live network at epoch 2.
    pub const LIVE: WorkThresholds = WorkThresholds { send: work::LIVE_SEND, receive: work::LIVE_RECEIVE };
    /// The dev network (and the mock node) at epoch 2.
    pub const DEV: WorkThresholds =
        WorkThresholds { send: work::DEV_EPOCH_2, receive: work::DEV_EPOCH_2_RECEIVE };
}

/// Everything that can stop a paid request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The HTTP request itself failed (connection, TLS, timeout). Safe to log.
    #[error("HTTP request failed: {0}")]
    Http(String),
    /// The request body cannot be replayed (a stream), so it cannot be retried with a proof.
    #[error("the request cannot be retried (its body is a stream)")]
    NotRetryable,
    /// The 402 did not carry a usable challenge.
    #[error(transparent)]
    Challenge(#[from] MalformedChallenge),
    /// The wallet's limits refuse the payment.
    #[error(transparent)]
    Spend(#[from] SpendError),
    /// The account has less than the amount (or was never opened).
    #[error("insufficient funds: {balance} raw available, {needed} raw needed")]
    InsufficientFunds {
        /// The account's balance.
        balance: Raw,
        /// The amount asked.
        needed: Raw,
    },
    /// The node refused or could not be reached.
    #[error("node: {0}")]
    Node(#[from] RpcError),
    /// The server refused the paid retry.
    #[error("the server refused the payment: {status} {reason}")]
    Refused {
        /// HTTP status of the last answer.
        status: u16,
        /// The reason code (`already_spent`, …), or `unknown` without one.
        reason: String,
    },
}

/// A payment the client made for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// What the server asked.
    pub offer: Offer,
    /// The published send block.
    pub block: BlockHash,
    /// How many times the paid request was sent (more than one when the server asked to retry).
    pub attempts: u32,
}

/// A response, and the payment that bought it if there was one.
#[derive(Debug)]
pub struct PaidResponse {
    /// The server's final response.
    pub response: reqwest::Response,
    /// The payment made for it; `None` when the resource was free.
    pub payment: Option<Payment>,
}

/// An HTTP client that pays NanoSession 402s.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use nanosession::client::{PayingClient, Wallet};
/// use nanosession::nano::{Raw, Seed};
/// use nanosession::rpc::NanoRpcClient;
/// let wallet = Wallet::from_seed(&Seed::from_hex(&std::env::var("SEED")?)?, 0)
///     .with_limits(Raw::new(10u128.pow(24)), Raw::new(10u128.pow(27)));
/// let client = PayingClient::builder(wallet, NanoRpcClient::new(["http://127.0.0.1:7076"])?).build();
/// let paid = client.get("https://api.example.com/paid").await?;
/// println!("{} paid with {:?}", paid.response.status(), paid.payment.map(|p| p.block));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PayingClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    node: NanoRpcClient,
    wallet: Wallet,
    x402: bool,
    thresholds: WorkThresholds,
    confirm_timeout: Duration,
    max_retries: u32,
    max_retry_after: Duration,
    /// One send at a time: each send builds on the account's current frontier.
    sending: tokio::sync::Mutex<()>,
    /// Sessions already paid, so a repeated challenge is never paid twice.
    paid: Mutex<HashMap<SessionId, Sent>>,
}

impl std::fmt::Debug for PayingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayingClient")
            .field("wallet", &self.inner.wallet)
            .field("node", &self.inner.node)
            .field("x402", &self.inner.x402)
            .finish_non_exhaustive()
    }
}

/// How many paid sessions the client remembers before forgetting the published ones.
const MAX_REMEMBERED_SESSIONS: usize = 10_000;

/// What the client sent for one session.
#[derive(Clone)]
enum Sent {
    /// The node accepted this block.
    Published(BlockHash),
    /// Publishing failed without a definite answer: the node may or may not have it.
    Uncertain(StateBlock),
}

/// Configuration for [`PayingClient`].
#[derive(Debug)]
pub struct PayingClientBuilder {
    wallet: Wallet,
    node: NanoRpcClient,
    http: Option<reqwest::Client>,
    x402: bool,
    thresholds: WorkThresholds,
    confirm_timeout: Duration,
    max_retries: u32,
    max_retry_after: Duration,
}

impl PayingClientBuilder {
    /// Retry with `X-PAYMENT-SESSION` + `X-PAYMENT-BLOCK` instead of `PAYMENT-SIGNATURE`.
    pub fn rev5_headers(mut self) -> Self {
        self.x402 = false;
        self
    }

    /// Proof-of-work thresholds (default [`WorkThresholds::LIVE`]).
    pub fn work_thresholds(mut self, thresholds: WorkThresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// How long to wait for the send to be confirmed before retrying anyway (default 10 s).
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// How often a paid request is retried on `block_not_confirmed`, `block_not_found` and
    /// 503s (default 5), and the longest `Retry-After` honoured (default 10 s).
    pub fn retries(mut self, max_retries: u32, max_retry_after: Duration) -> Self {
        self.max_retries = max_retries;
        self.max_retry_after = max_retry_after;
        self
    }

    /// The HTTP client to use (default: a new `reqwest::Client`).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Builds the client.
    pub fn build(self) -> PayingClient {
        PayingClient {
            inner: Arc::new(Inner {
                http: self.http.unwrap_or_default(),
                node: self.node,
                wallet: self.wallet,
                x402: self.x402,
                thresholds: self.thresholds,
                confirm_timeout: self.confirm_timeout,
                max_retries: self.max_retries,
                max_retry_after: self.max_retry_after,
                sending: tokio::sync::Mutex::new(()),
                paid: Mutex::new(HashMap::new()),
            }),
        }
    }
}

fn http_error(e: reqwest::Error) -> ClientError {
    // Without the URL: it may carry credentials.
    ClientError::Http(e.without_url().to_string())
}

/// The reason code of a refusal: from `PAYMENT-RESPONSE`, else from the JSON body.
async fn refusal_reason(response: reqwest::Response) -> String {
    if let Some(receipt) =
        response.headers().get("payment-response").and_then(SettlementResponse::from_header)
    {
        if let Some(reason) = receipt.error_reason {
            return reason;
        }
    }
    let body = response.bytes().await.unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

impl PayingClient {
    /// A client paying from `wallet` through `node`.
    pub fn builder(wallet: Wallet, node: NanoRpcClient) -> PayingClientBuilder {
        PayingClientBuilder {
            wallet,
            node,
            http: None,
            x402: true,
            thresholds: WorkThresholds::LIVE,
            confirm_timeout: Duration::from_secs(10),
            max_retries: 5,
            max_retry_after: Duration::from_secs(10),
        }
    }

    /// The wallet paying.
    pub fn wallet(&self) -> &Wallet {
        &self.inner.wallet
    }

    /// `GET url`, paying if the server asks.
    pub async fn get(&self, url: &str) -> Result<PaidResponse, ClientError> {
        let request = self.inner.http.get(url).build().map_err(http_error)?;
        self.execute(request).await
    }

    /// Sends `request`, paying if the server answers 402, and retries it with the proof.
    pub async fn execute(&self, request: reqwest::Request) -> Result<PaidResponse, ClientError> {
        let inner = &*self.inner;
        let first = request.try_clone().ok_or(ClientError::NotRetryable)?;
        let response = inner.http.execute(first).await.map_err(http_error)?;
        if response.status() != StatusCode::PAYMENT_REQUIRED {
            return Ok(PaidResponse { response, payment: None });
        }
        let offer = Offer::from_headers(response.headers())?;
        tracing::info!(pay_to = %offer.pay_to, amount = %offer.amount, "payment required");
        let block = self.pay_with_retries(&offer).await?;

        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut retry = request.try_clone().ok_or(ClientError::NotRetryable)?;
            retry.headers_mut().extend(offer.proof_headers(&block, inner.x402));
            let response = inner.http.execute(retry).await.map_err(http_error)?;
            let status = response.status();
            if status.is_success() || !matches!(status.as_u16(), 402 | 503) {
                let payment = Payment { offer, block, attempts };
                return Ok(PaidResponse { response, payment: Some(payment) });
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map(Duration::from_secs);
            let reason = refusal_reason(response).await;
            let retryable = status == StatusCode::SERVICE_UNAVAILABLE
                || matches!(reason.as_str(), "block_not_confirmed" | "block_not_found");
            if !retryable || attempts > inner.max_retries {
                return Err(ClientError::Refused { status: status.as_u16(), reason });
            }
            let wait = retry_after.unwrap_or(Duration::from_secs(1)).min(inner.max_retry_after);
            tracing::info!(%reason, ?wait, "server asks to retry the paid request");
            tokio::time::sleep(wait).await;
        }
    }

    /// [`pay`](Self::pay), retried on node outages: a lost `process` reply is re-sent as the
    /// same block, so giving up here (and letting the caller start over with a new session)
    /// could turn one request into two payments.
    async fn pay_with_retries(&self, offer: &Offer) -> Result<BlockHash, ClientError> {
        let mut attempt = 0;
        loop {
            match self.pay(offer).await {
                Err(ClientError::Node(RpcError::Unavailable(why))) if attempt < self.inner.max_retries => {
                    attempt += 1;
                    tracing::warn!(%why, attempt, "node unavailable while paying; retrying the same payment");
                    tokio::time::sleep(Duration::from_secs(1).min(self.inner.max_retry_after)).await;
                }
                other => return other,
            }
        }
    }

    /// Pays `offer` (once per session): a signed send of exactly the amount, published and,
    /// within the confirmation timeout, confirmed.
    pub async fn pay(&self, offer: &Offer) -> Result<BlockHash, ClientError> {
        let inner = &*self.inner;
        let block = {
            // Held across the node calls on purpose: concurrent sends from one account would
            // fork its chain. Released before waiting for confirmation.
            let _sending = inner.sending.lock().await;
            let known = inner.paid.lock().unwrap_or_else(|e| e.into_inner()).get(&offer.session).cloned();
            let send = match known {
                Some(Sent::Published(block)) => return Ok(block),
                // An earlier attempt lost the node's reply: publish the very same block again
                // (idempotent: "Old block" means it was published after all).
                Some(Sent::Uncertain(send)) => send,
                None => {
                    inner.wallet.reserve(offer.amount)?;
                    match self.build_send(offer.pay_to, offer.amount).await {
                        Ok(send) => send,
                        Err(e) => {
                            inner.wallet.refund(offer.amount);
                            return Err(e);
                        }
                    }
                }
            };
            let outcome = inner.node.process(&send, "send").await;
            let mut paid = inner.paid.lock().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Ok(block) => {
                    if paid.len() >= MAX_REMEMBERED_SESSIONS {
                        // Published payments are only remembered to answer a repeated
                        // challenge; uncertain ones must stay until resolved.
                        paid.retain(|_, sent| matches!(sent, Sent::Uncertain(_)));
                    }
                    paid.insert(offer.session, Sent::Published(block));
                    block
                }
                Err(RpcError::Node(refusal)) => {
                    // A definite refusal (for a re-publish: a fork, so the first never landed):
                    // nothing was published, the money is still ours.
                    paid.remove(&offer.session);
                    inner.wallet.refund(offer.amount);
                    return Err(RpcError::Node(refusal).into());
                }
                Err(outage) => {
                    // The node may have accepted it before the reply was lost: keep the money
                    // counted as spent and the block, so paying this session again re-sends it.
                    paid.insert(offer.session, Sent::Uncertain(send));
                    return Err(outage.into());
                }
            }
        };
        tracing::info!(%block, "payment published");
        self.await_confirmation(&block).await;
        Ok(block)
    }

    /// A signed send with work, on the account's current frontier.
    async fn build_send(&self, to: Address, amount: Raw) -> Result<StateBlock, ClientError> {
        let inner = &*self.inner;
        let account = inner.wallet.account();
        let info = inner.node.account_info(&account).await?;
        let (frontier, balance, representative) = match info {
            Some(info) => (
                info.frontier
                    .and_then(|f| f.parse().ok())
                    .ok_or(RpcError::Node("account_info without frontier".into()))?,
                info.balance.unwrap_or(Raw::ZERO),
                info.representative.unwrap_or(account),
            ),
            None => return Err(ClientError::InsufficientFunds { balance: Raw::ZERO, needed: amount }),
        };
        let after =
            balance.checked_sub(amount).ok_or(ClientError::InsufficientFunds { balance, needed: amount })?;
        let mut block = StateBlock::send(
            *account.public_key(),
            frontier,
            *representative.public_key(),
            after,
            to.public_key(),
        );
        block.work = self.work_for(&block.work_root(), inner.thresholds.send).await?;
        block.sign(inner.wallet.key());
        Ok(block)
    }

    /// Receives every send waiting for the wallet's account (opening it if needed); returns the
    /// receive blocks' hashes.
    pub async fn receive_all(&self) -> Result<Vec<BlockHash>, ClientError> {
        let inner = &*self.inner;
        let _sending = inner.sending.lock().await;
        let account = inner.wallet.account();
        let mut received = Vec::new();
        for (source, amount) in inner.node.receivable(&account).await? {
            let info = inner.node.account_info(&account).await?;
            let (previous, balance, representative) = match info {
                Some(info) => (
                    info.frontier.and_then(|f| f.parse().ok()).unwrap_or(BlockHash::ZERO),
                    info.balance.unwrap_or(Raw::ZERO),
                    info.representative.unwrap_or(account),
                ),
                None => (BlockHash::ZERO, Raw::ZERO, account),
            };
            let balance = balance.checked_add(amount).ok_or(RpcError::Node("balance overflow".into()))?;
            let mut block = StateBlock::receive(
                *account.public_key(),
                previous,
                *representative.public_key(),
                balance,
                &source,
            );
            block.work = self.work_for(&block.work_root(), inner.thresholds.receive).await?;
            block.sign(inner.wallet.key());
            let subtype = if previous.is_zero() { "open" } else { "receive" };
            received.push(inner.node.process(&block, subtype).await?);
        }
        Ok(received)
    }

    /// Work from the node if it offers it, else from every local core.
    async fn work_for(&self, root: &[u8; 32], threshold: u64) -> Result<u64, ClientError> {
        match self.inner.node.work_generate(root, threshold).await {
            Ok(nonce) if work::is_valid(nonce, root, threshold) => return Ok(nonce),
            Ok(_) => tracing::warn!("the node's work does not meet the threshold; computing it locally"),
            Err(error) => tracing::debug!(%error, "no work from the node; computing it locally"),
        }
        let root = *root;
        tokio::task::spawn_blocking(move || work::generate(&root, threshold, &AtomicBool::new(false)))
            .await
            .ok()
            .flatten()
            .ok_or_else(|| ClientError::Node(RpcError::Unavailable("local work generation failed".into())))
    }

    /// Polls until the block is confirmed (nudging the node once) or the timeout passes; the
    /// server answers `block_not_confirmed` otherwise and the retry loop waits.
    async fn await_confirmation(&self, block: &BlockHash) {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.confirm_timeout;
        let mut nudged = false;
        while Instant::now() < deadline {
            match inner.node.block_info(block).await {
                Ok(Some(info)) if info.confirmed => return,
                Ok(Some(_)) if !nudged => {
                    nudged = inner.node.block_confirm(block).await.is_ok();
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!(%block, "not confirmed within the timeout; retrying anyway");
    }
}
