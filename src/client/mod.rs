//! The paying side (feature `client`): a [`Wallet`] with spend limits and a [`PayingClient`]
//! that answers any NanoSession server's 402 by paying and retrying.
//!
//! On a 402 the client reads the challenge (either header form), checks it (the expected
//! network, never the burn address, no proof over plain `http://` to a remote host), checks the
//! amount against the wallet's limits, builds and signs a send of exactly that amount on a
//! hash-checked frontier, gets its proof of work (from the node's `work_generate`, else on all
//! local cores), refuses to publish when the session expires within the safety margin (and
//! fetches a fresh challenge instead), publishes it with `process`, waits for confirmation, and
//! retries the request with the proof: `PAYMENT-SIGNATURE` by default, the Rev 5 headers on
//! request or when the x402 header would be too long. The paid retry goes to the URL that
//! answered 402 and never follows a redirect. `block_not_confirmed`, `block_not_found`, 429,
//! 503 and transport errors are retried with the same proof; every error after publishing
//! carries the [`Payment`], which [`PayingClient::resume`] re-sends. The client never pays twice
//! for one session.

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
///
/// Errors that happen after a payment was (or may have been) published are
/// [`AfterPayment`](ClientError::AfterPayment) and [`AlreadyGranted`](ClientError::AlreadyGranted):
/// both carry the [`Payment`] ([`ClientError::payment`]), so a caller never starts over with a new
/// session (and a second payment) by mistake.
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
    /// The node's account state does not match its own frontier block (hash, signature, account
    /// or balance): a lying or broken node could make the client overpay, so nothing is signed.
    #[error("the node's account state does not check out: {0}")]
    UntrustedNode(&'static str),
    /// The challenge names another network than the one this client pays on.
    #[error("the server asks for a payment on {offered}, this client pays on {expected}")]
    WrongNetwork {
        /// The configured network ([`PayingClientBuilder::network`]).
        expected: String,
        /// The challenge's network.
        offered: String,
    },
    /// The challenge asks to pay the burn address: the money would be destroyed.
    #[error("the server asks to pay the burn address")]
    BurnAddress,
    /// The proof would travel over plain `http://` to a host that is not loopback, where anyone
    /// on the path could redeem it first ([`PayingClientBuilder::allow_insecure_http`]).
    #[error("refusing to send a payment proof over plain http:// to a non-loopback host")]
    InsecureTransport,
    /// Every challenge received expires too soon to pay it and still be served: nothing was
    /// published.
    #[error("the session expires in {left:?}, within the safety margin of {margin:?}; nothing was paid")]
    SessionTooShort {
        /// Time left in the last session offered.
        left: Duration,
        /// The client's safety margin ([`PayingClientBuilder::expiry_margin`]).
        margin: Duration,
    },
    /// The server refused the paid retry (only ever the `cause` of
    /// [`AfterPayment`](ClientError::AfterPayment)).
    #[error("the server refused the payment: {status} {reason}")]
    Refused {
        /// HTTP status of the last answer.
        status: u16,
        /// The reason code (`already_spent`, …), or `unknown` without one.
        reason: String,
    },
    /// The payment was published (or its publication is uncertain), but the paid request did
    /// not succeed. Do not start over: [`PayingClient::resume`] re-sends this very proof.
    #[error("paid with block {}, but: {cause}", payment.block)]
    AfterPayment {
        /// The payment, to resume with.
        payment: Box<Payment>,
        /// What went wrong after paying.
        cause: Box<ClientError>,
    },
    /// The server answered 409 `already_granted`: this payment was accepted earlier (a lost
    /// answer). It must never be paid again.
    #[error("the server already granted this payment (block {}); it must not be paid again", payment.block)]
    AlreadyGranted {
        /// The payment the server had granted.
        payment: Box<Payment>,
        /// The server's success receipt (`PAYMENT-RESPONSE`), when it sent one.
        receipt: Option<SettlementResponse>,
    },
}

impl ClientError {
    /// The payment made before the error, if any: resume with it instead of paying again.
    pub fn payment(&self) -> Option<&Payment> {
        match self {
            ClientError::AfterPayment { payment, .. } | ClientError::AlreadyGranted { payment, .. } => {
                Some(payment)
            }
            _ => None,
        }
    }
}

/// A payment the client made for a request. Its `Debug` form shows only the origin of `url`
/// (a path or query may carry credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct Payment {
    /// What the server asked.
    pub offer: Offer,
    /// The published send block.
    pub block: BlockHash,
    /// How many times the paid request was sent (more than one when the server asked to retry).
    pub attempts: u32,
    /// The URL that answered 402: the paid retry goes there, never through a redirect.
    pub url: reqwest::Url,
}

impl std::fmt::Debug for Payment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payment")
            .field("offer", &self.offer)
            .field("block", &self.block)
            .field("attempts", &self.attempts)
            .field("url", &self.url.origin().ascii_serialization())
            .finish()
    }
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
    /// For requests carrying a proof: never follows redirects.
    paid_http: reqwest::Client,
    node: NanoRpcClient,
    wallet: Wallet,
    x402: bool,
    thresholds: WorkThresholds,
    confirm_timeout: Duration,
    max_retries: u32,
    max_retry_after: Duration,
    network: String,
    allow_insecure_http: bool,
    expiry_margin: Duration,
    /// One send at a time: each send builds on the account's current frontier.
    sending: tokio::sync::Mutex<()>,
    /// Sessions already paid, so a repeated challenge is never paid twice.
    paid: Mutex<HashMap<PaidKey, Sent>>,
    /// The last proof of work (root, nonce): a send refused for a short session is rebuilt for a
    /// fresh one on the same frontier, and work depends on the frontier only.
    last_work: Mutex<Option<([u8; 32], u64)>>,
}

impl std::fmt::Debug for PayingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayingClient")
            .field("wallet", &self.inner.wallet)
            .field("node", &self.inner.node)
            .field("x402", &self.inner.x402)
            .field("network", &self.inner.network)
            .finish_non_exhaustive()
    }
}

/// How many paid sessions the client remembers before forgetting the published ones.
const MAX_REMEMBERED_SESSIONS: usize = 10_000;

/// How many fresh challenges the client fetches when the sessions offered are too short.
const MAX_FRESH_CHALLENGES: u32 = 2;

/// How long after a session's expiry the paid retry is still tried: a server may honour a
/// session it had claimed before the expiry for a while (and answers definitely otherwise).
const EXPIRY_GRACE_SECS: u64 = 60;

/// The most of a refusal's body read to find its reason code.
const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// What names a paid session: its id, or for a plain `exact` offer (no session) its
/// destination and amount.
type PaidKey = (Option<SessionId>, Address, Raw);

fn paid_key(offer: &Offer) -> PaidKey {
    (offer.session, offer.pay_to, offer.amount)
}

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
    paid_http: Option<reqwest::Client>,
    x402: bool,
    thresholds: WorkThresholds,
    confirm_timeout: Duration,
    max_retries: u32,
    max_retry_after: Duration,
    network: String,
    allow_insecure_http: bool,
    expiry_margin: Option<Duration>,
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

    /// How often a paid request is retried on `block_not_confirmed`, `block_not_found`, 429,
    /// 503 and transport errors (default 5), and the longest `Retry-After` honoured (default
    /// 10 s). Retries also stop 60 s after the session's expiry.
    pub fn retries(mut self, max_retries: u32, max_retry_after: Duration) -> Self {
        self.max_retries = max_retries;
        self.max_retry_after = max_retry_after;
        self
    }

    /// The network this client pays on (default `nano:mainnet`): a challenge naming another one
    /// is refused ([`ClientError::WrongNetwork`]). Rev 5 challenges name none and are not checked.
    pub fn network(mut self, network: &str) -> Self {
        self.network = network.to_owned();
        self
    }

    /// Sends proofs over plain `http://` to hosts that are not loopback (default: refused, as
    /// anyone on the path could redeem the proof first).
    pub fn allow_insecure_http(mut self) -> Self {
        self.allow_insecure_http = true;
        self
    }

    /// The least session lifetime left, after the proof of work, for the client to publish a
    /// payment (default: the confirmation timeout plus `max_retries` × `max_retry_after`).
    /// With less left the client fetches a fresh challenge instead of paying a session that
    /// would expire before its retry.
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.expiry_margin = Some(margin);
        self
    }

    /// The HTTP client for the first, unpaid request (default: a new `reqwest::Client`).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The HTTP client for paid retries (default: a new `reqwest::Client` that never follows
    /// redirects). Give it `redirect(reqwest::redirect::Policy::none())`: a followed redirect
    /// would carry the proof to another URL.
    pub fn paid_http_client(mut self, http: reqwest::Client) -> Self {
        self.paid_http = Some(http);
        self
    }

    /// Builds the client.
    pub fn build(self) -> PayingClient {
        let expiry_margin = self.expiry_margin.unwrap_or_else(|| {
            self.confirm_timeout.saturating_add(self.max_retry_after.saturating_mul(self.max_retries))
        });
        let paid_http = self.paid_http.unwrap_or_else(|| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("the TLS backend initialises (as for reqwest::Client::new)")
        });
        PayingClient {
            inner: Arc::new(Inner {
                http: self.http.unwrap_or_default(),
                paid_http,
                node: self.node,
                wallet: self.wallet,
                x402: self.x402,
                thresholds: self.thresholds,
                confirm_timeout: self.confirm_timeout,
                max_retries: self.max_retries,
                max_retry_after: self.max_retry_after,
                network: self.network,
                allow_insecure_http: self.allow_insecure_http,
                expiry_margin,
                sending: tokio::sync::Mutex::new(()),
                paid: Mutex::new(HashMap::new()),
                last_work: Mutex::new(None),
            }),
        }
    }
}

fn http_error(e: reqwest::Error) -> ClientError {
    // Without the URL: it may carry credentials.
    ClientError::Http(e.without_url().to_string())
}

fn after(payment: Payment, cause: ClientError) -> ClientError {
    ClientError::AfterPayment { payment: Box::new(payment), cause: Box::new(cause) }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// At most `MAX_REFUSAL_BODY` bytes of a body, for at most a few seconds: a hostile server
/// must not exhaust the client's memory or hold it forever.
async fn bounded_body(mut response: reqwest::Response) -> Vec<u8> {
    if response.content_length().is_some_and(|n| n > MAX_REFUSAL_BODY as u64) {
        return Vec::new();
    }
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
            if body.len() + chunk.len() > MAX_REFUSAL_BODY {
                body.clear(); // a truncated JSON body has no reliable reason
                break;
            }
            body.extend_from_slice(&chunk);
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), read).await.is_err() {
        return Vec::new();
    }
    body
}

/// The reason code of a refusal: from `PAYMENT-RESPONSE`, else from the JSON body.
async fn refusal_reason(response: reqwest::Response) -> String {
    if let Some(reason) = receipt(&response).and_then(|r| r.error_reason) {
        return reason;
    }
    let body = bounded_body(response).await;
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn receipt(response: &reqwest::Response) -> Option<SettlementResponse> {
    response.headers().get("payment-response").and_then(SettlementResponse::from_header)
}

impl PayingClient {
    /// A client paying from `wallet` through `node`.
    pub fn builder(wallet: Wallet, node: NanoRpcClient) -> PayingClientBuilder {
        PayingClientBuilder {
            wallet,
            node,
            http: None,
            paid_http: None,
            x402: true,
            thresholds: WorkThresholds::LIVE,
            confirm_timeout: Duration::from_secs(10),
            max_retries: 5,
            max_retry_after: Duration::from_secs(10),
            network: "nano:mainnet".to_owned(),
            allow_insecure_http: false,
            expiry_margin: None,
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
    ///
    /// An error after paying carries the [`Payment`]: pass it to [`resume`](Self::resume)
    /// rather than calling `execute` again, which would pay a new session.
    pub async fn execute(&self, request: reqwest::Request) -> Result<PaidResponse, ClientError> {
        let inner = &*self.inner;
        let mut fresh = 0;
        loop {
            let first = request.try_clone().ok_or(ClientError::NotRetryable)?;
            let response = inner.http.execute(first).await.map_err(http_error)?;
            if response.status() != StatusCode::PAYMENT_REQUIRED {
                return Ok(PaidResponse { response, payment: None });
            }
            // The retry goes where the 402 came from (after any redirect of the unpaid request).
            let url = response.url().clone();
            let offer = Offer::from_headers(response.headers())?;
            drop(response);
            if url.scheme() != "https" && !is_loopback(&url) && !inner.allow_insecure_http {
                return Err(ClientError::InsecureTransport);
            }
            tracing::info!(pay_to = %offer.pay_to, amount = %offer.amount, "payment required");
            if offer.session.is_none() || (offer.accepts_block && inner.x402 && offer.required.is_some()) {
                match self.hand_off(&request, offer, url).await {
                    Err(ClientError::SessionTooShort { left, margin }) if fresh < MAX_FRESH_CHALLENGES => {
                        fresh += 1;
                        tracing::info!(
                            ?left,
                            ?margin,
                            "session too short to pay; fetching a fresh challenge"
                        );
                        continue;
                    }
                    other => return other,
                }
            }
            match self.pay_with_retries(&offer).await {
                Ok(block) => {
                    let payment = Payment { offer, block, attempts: 0, url };
                    return self.send_paid(&request, payment, None).await;
                }
                Err(ClientError::SessionTooShort { left, margin }) if fresh < MAX_FRESH_CHALLENGES => {
                    fresh += 1;
                    tracing::info!(?left, ?margin, "session too short to pay; fetching a fresh challenge");
                }
                Err(error) => {
                    // A publish without an answer may have landed: hand out its proof.
                    return Err(match self.uncertain_block(&paid_key(&offer)) {
                        Some(block) => after(Payment { offer, block, attempts: 0, url }, error),
                        None => error,
                    });
                }
            }
        }
    }

    /// Sends `request` again with the proof of an earlier `payment` (from
    /// [`ClientError::payment`]), never paying anything new: a publish whose answer was lost is
    /// re-sent as the very same block first, then the paid retry goes to `payment.url`.
    ///
    /// ```no_run
    /// # async fn demo(client: nanosession::client::PayingClient) -> Result<(), nanosession::client::ClientError> {
    /// let request = || reqwest::Client::new().get("https://api.example.com/paid").build().unwrap();
    /// let paid = match client.execute(request()).await {
    ///     Err(e) if e.payment().is_some() => client.resume(request(), e.payment().unwrap().clone()).await?,
    ///     other => other?,
    /// };
    /// # Ok(()) }
    /// ```
    pub async fn resume(
        &self,
        request: reqwest::Request,
        mut payment: Payment,
    ) -> Result<PaidResponse, ClientError> {
        if self.uncertain_block(&paid_key(&payment.offer)) == Some(payment.block) {
            if let Err(error) = self.pay_with_retries(&payment.offer).await {
                return Err(after(payment, error));
            }
        }
        payment.attempts = 0;
        self.send_paid(&request, payment, None).await
    }

    /// The block of a session whose publication is uncertain, if any.
    fn uncertain_block(&self, key: &PaidKey) -> Option<BlockHash> {
        match self.inner.paid.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            Some(Sent::Uncertain(block)) => Some(block.hash()),
            _ => None,
        }
    }

    /// The paid retry loop: the same proof (the published block's hash, or with `handed_over`
    /// the headers carrying the signed block itself), to the URL that answered 402, without
    /// redirects, until a final answer, the retry limit, or the session's expiry plus grace.
    ///
    /// A handed-over block may never have left this process and the server: after a refusal,
    /// or a final answer without its receipt, a node that does not know it means nothing was
    /// published, so the budget is refunded and the payment forgotten.
    async fn send_paid(
        &self,
        request: &reqwest::Request,
        mut payment: Payment,
        handed_over: Option<reqwest::header::HeaderMap>,
    ) -> Result<PaidResponse, ClientError> {
        let inner = &*self.inner;
        let give_up = payment.offer.expires_at.map(|at| at.saturating_add(EXPIRY_GRACE_SECS));
        let headers = match &handed_over {
            Some(headers) => headers.clone(),
            None => payment.offer.proof_headers(&payment.block, inner.x402),
        };
        let unpublished = |payment: &Payment| {
            let hash = payment.block;
            async move { handed_over.is_some() && matches!(inner.node.block_info(&hash).await, Ok(None)) }
        };
        let mut sent = 0;
        loop {
            sent += 1;
            payment.attempts += 1;
            let Some(mut retry) = request.try_clone() else {
                if unpublished(&payment).await {
                    inner.wallet.refund(payment.offer.amount);
                    return Err(ClientError::NotRetryable);
                }
                return Err(after(payment, ClientError::NotRetryable));
            };
            *retry.url_mut() = payment.url.clone();
            retry.headers_mut().extend(headers.clone());
            let (cause, retry_after) = match inner.paid_http.execute(retry).await {
                Ok(response) => {
                    let status = response.status();
                    let receipt = receipt(&response);
                    let granted = receipt.as_ref().is_some_and(|r| {
                        r.success && r.transaction.eq_ignore_ascii_case(&payment.block.to_string())
                    });
                    if status == StatusCode::CONFLICT {
                        let reason = refusal_reason(response).await;
                        if reason == "already_granted" || granted {
                            return Err(ClientError::AlreadyGranted { payment: Box::new(payment), receipt });
                        }
                        return Err(after(payment, ClientError::Refused { status: 409, reason }));
                    }
                    if !matches!(status.as_u16(), 402 | 429 | 503) {
                        // The server's final answer (a redirect is returned, not followed). One
                        // without this block's receipt after a hand-off (a server settling after
                        // success whose service failed) may have published nothing.
                        if !granted && unpublished(&payment).await {
                            inner.wallet.refund(payment.offer.amount);
                            return Ok(PaidResponse { response, payment: None });
                        }
                        return Ok(PaidResponse { response, payment: Some(payment) });
                    }
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let reason = refusal_reason(response).await;
                    let retryable = matches!(status.as_u16(), 429 | 503)
                        || matches!(
                            reason.as_str(),
                            "block_not_confirmed" | "block_not_found" | "payment_in_flight"
                        );
                    let cause = ClientError::Refused { status: status.as_u16(), reason };
                    if !retryable {
                        if unpublished(&payment).await {
                            inner.wallet.refund(payment.offer.amount);
                            return Err(cause);
                        }
                        return Err(after(payment, cause));
                    }
                    (cause, retry_after)
                }
                // The server may or may not have granted: the same proof again is safe (it is
                // granted once, or answered `already_granted`), a new payment is not.
                Err(e) => (http_error(e), None),
            };
            let now = unix_now();
            if sent > inner.max_retries || give_up.is_some_and(|at| now >= at) {
                return Err(after(payment, cause));
            }
            let mut wait = retry_after.unwrap_or(Duration::from_secs(1)).min(inner.max_retry_after);
            if let Some(at) = give_up {
                wait = wait.min(Duration::from_secs(at - now));
            }
            tracing::info!(cause = %cause, ?wait, "retrying the paid request with the same proof");
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

    /// Refuses offers that are unsafe to pay whatever the amount.
    fn check_offer(&self, offer: &Offer) -> Result<(), ClientError> {
        if let Some(offered) = &offer.network {
            if *offered != self.inner.network {
                return Err(ClientError::WrongNetwork {
                    expected: self.inner.network.clone(),
                    offered: offered.clone(),
                });
            }
        }
        if offer.pay_to.is_burn() {
            return Err(ClientError::BurnAddress);
        }
        Ok(())
    }

    /// `Err` when the offer's session has less than the safety margin left.
    fn check_time_left(&self, offer: &Offer) -> Result<(), ClientError> {
        let margin = self.inner.expiry_margin;
        match offer.seconds_left().map(Duration::from_secs) {
            Some(left) if left < margin => Err(ClientError::SessionTooShort { left, margin }),
            _ => Ok(()),
        }
    }

    /// Pays `offer` (once per session): a signed send of exactly the amount, published and,
    /// within the confirmation timeout, confirmed.
    ///
    /// Refuses (without spending) another network, the burn address, and a session with less
    /// than the safety margin left once the proof of work is done
    /// ([`ClientError::SessionTooShort`]: ask for a fresh challenge).
    pub async fn pay(&self, offer: &Offer) -> Result<BlockHash, ClientError> {
        let inner = &*self.inner;
        self.check_offer(offer)?;
        let block = {
            // Held across the node calls on purpose: concurrent sends from one account would
            // fork its chain. Released before waiting for confirmation.
            let _sending = inner.sending.lock().await;
            let known = inner.paid.lock().unwrap_or_else(|e| e.into_inner()).get(&paid_key(offer)).cloned();
            let send = match known {
                Some(Sent::Published(block)) => return Ok(block),
                // An earlier attempt lost the node's reply: publish the very same block again
                // (idempotent: "Old block" means it was published after all).
                Some(Sent::Uncertain(send)) => send,
                None => {
                    // Cheap check first, so no work is spent on a session already too short.
                    self.check_time_left(offer)?;
                    inner.wallet.reserve(offer.amount)?;
                    let built = match self.build_send(offer.pay_to, offer.amount).await {
                        // Work can take long: the session must still outlast confirmation and
                        // the paid retries, or the money would arrive after its expiry.
                        Ok(send) => self.check_time_left(offer).map(|()| send),
                        Err(e) => Err(e),
                    };
                    match built {
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
                    paid.insert(paid_key(offer), Sent::Published(block));
                    block
                }
                Err(RpcError::Node(refusal)) => {
                    // A definite refusal (for a re-publish: a fork, so the first never landed):
                    // nothing was published, the money is still ours.
                    paid.remove(&paid_key(offer));
                    inner.wallet.refund(offer.amount);
                    return Err(RpcError::Node(refusal).into());
                }
                Err(outage) => {
                    // The node may have accepted it before the reply was lost: keep the money
                    // counted as spent and the block, so paying this session again re-sends it.
                    paid.insert(paid_key(offer), Sent::Uncertain(send));
                    return Err(outage.into());
                }
            }
        };
        tracing::info!(%block, "payment published");
        self.await_confirmation(&block).await;
        Ok(block)
    }

    /// Pays `offer` by hand-off (spec §9): signs a send of exactly the amount, does not
    /// publish it, and sends it in the retry for the server to publish; re-sends the same
    /// block while the server answers "try again" (`payment_in_flight`, `block_not_confirmed`,
    /// 429, 503).
    ///
    /// The wallet's sends are held for the whole exchange, so the next payment is built on the
    /// frontier as the server left it: after its block (published) or before it (refused
    /// before publishing, when the budget is refunded and the block is forgotten).
    async fn hand_off(
        &self,
        request: &reqwest::Request,
        offer: Offer,
        url: reqwest::Url,
    ) -> Result<PaidResponse, ClientError> {
        let inner = &*self.inner;
        self.check_offer(&offer)?;
        if offer.required.is_none() || !inner.x402 {
            return Err(ClientError::Challenge(crate::protocol::MalformedChallenge(
                "a hand-off needs the x402 PAYMENT-REQUIRED challenge",
            )));
        }
        let _sending = inner.sending.lock().await;
        self.check_time_left(&offer)?;
        inner.wallet.reserve(offer.amount)?;
        let block = match self.build_send(offer.pay_to, offer.amount).await {
            Ok(block) => match self.check_time_left(&offer) {
                Ok(()) => block,
                Err(e) => {
                    inner.wallet.refund(offer.amount);
                    return Err(e);
                }
            },
            Err(e) => {
                inner.wallet.refund(offer.amount);
                return Err(e);
            }
        };
        let headers = offer.handoff_headers(&block);
        let payment = Payment { offer, block: block.hash(), attempts: 0, url };
        tracing::info!(block = %payment.block, "handing the signed block over");
        self.send_paid(request, payment, Some(headers)).await
    }

    /// A signed send with work, on the account's current frontier.
    ///
    /// The balance and representative come from the frontier block itself, checked by hash,
    /// signature and account: a node lying low about the balance would otherwise make the
    /// send move more than the amount.
    async fn build_send(&self, to: Address, amount: Raw) -> Result<StateBlock, ClientError> {
        let inner = &*self.inner;
        let account = inner.wallet.account();
        let info = inner.node.account_info(&account).await?;
        let Some(info) = info else {
            return Err(ClientError::InsufficientFunds { balance: Raw::ZERO, needed: amount });
        };
        let frontier: BlockHash = info
            .frontier
            .and_then(|f| f.parse().ok())
            .ok_or(RpcError::Node("account_info without frontier".into()))?;
        let head = inner
            .node
            .block_info(&frontier)
            .await?
            .ok_or(ClientError::UntrustedNode("the node does not know its own frontier"))?;
        let head = head
            .contents
            .to_state_block()
            .map_err(|_| ClientError::UntrustedNode("the frontier is not a complete state block"))?;
        if head.hash() != frontier {
            return Err(ClientError::UntrustedNode("the frontier's contents do not hash to it"));
        }
        if head.account != *account.public_key() || !head.verify_signature() {
            return Err(ClientError::UntrustedNode("the frontier is not signed by this account"));
        }
        if info.balance != Some(head.balance) {
            return Err(ClientError::UntrustedNode("account_info's balance is not the frontier's"));
        }
        let balance = head.balance;
        let after =
            balance.checked_sub(amount).ok_or(ClientError::InsufficientFunds { balance, needed: amount })?;
        let mut block =
            StateBlock::send(*account.public_key(), frontier, head.representative, after, to.public_key());
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
        let cached = *self.inner.last_work.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_root, nonce)) = cached {
            if cached_root == *root && work::is_valid(nonce, root, threshold) {
                return Ok(nonce);
            }
        }
        let nonce = match self.inner.node.work_generate(root, threshold).await {
            Ok(nonce) if work::is_valid(nonce, root, threshold) => nonce,
            other => {
                match other {
                    Ok(_) => {
                        tracing::warn!("the node's work does not meet the threshold; computing it locally")
                    }
                    Err(error) => tracing::debug!(%error, "no work from the node; computing it locally"),
                }
                let owned = *root;
                tokio::task::spawn_blocking(move || {
                    work::generate(&owned, threshold, &AtomicBool::new(false))
                })
                .await
                .ok()
                .flatten()
                .ok_or_else(|| {
                    ClientError::Node(RpcError::Unavailable("local work generation failed".into()))
                })?
            }
        };
        *self.inner.last_work.lock().unwrap_or_else(|e| e.into_inner()) = Some((*root, nonce));
        Ok(nonce)
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
