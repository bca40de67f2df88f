//! The confirmation watcher: sees confirmed sends to the merchant as they happen and matches
//! each to the pending session of exactly its amount, so a phone wallet's payment settles
//! without anyone sending the server a block hash (feature `watcher`).
//!
//! Sources, in order of preference:
//! - the node's WebSocket `confirmation` topic, filtered to the merchant accounts with the block
//!   and its sideband (`local_timestamp`), acknowledged, kept alive with pings, reconnected with
//!   back-off; after every (re)connect a catch-up poll covers what was confirmed in the gap;
//! - polling `receivable` (with sources and amounts) every `poll_interval`, then `block_info`
//!   of each new block, whenever no WebSocket is configured or it is down.
//!
//! Nothing a message says is trusted: the block hash is computed from the contents, the
//! signature checked, the destination read from the signed `link`, the amount derived from the
//! hash-checked previous block's balance (never the message's `amount`), and the node's
//! first-seen time must follow the session's creation (minus the allowed skew). Only then is the
//! match written to the session store ([`SessionStore::record_payment`]), where every instance
//! sees it: one watcher per deployment is enough, more are harmless (the first match stands).
//!
//! ```no_run
//! # async fn demo(stores: nanosession::store::Stores) -> Result<(), Box<dyn std::error::Error>> {
//! use nanosession::rpc::NanoRpcClient;
//! use nanosession::watcher::ConfirmationWatcher;
//! let merchant = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse()?;
//! let watcher = ConfirmationWatcher::builder(NanoRpcClient::new(["http://127.0.0.1:7076/"])?, stores.sessions)
//!     .account(merchant)
//!     .websocket("ws://127.0.0.1:7078")
//!     .spawn();
//! # drop(watcher); Ok(()) }
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::nano::{Address, BlockHash, Raw, StateBlock};
use crate::rpc::{ConfirmationNotification, NanoRpcClient};
use crate::session::unix_now;
use crate::store::{SessionStore, WatchedPayment, SESSION_GRACE_SECS};

/// Default pause between polls while no WebSocket delivers.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Keep-alive ping interval on the WebSocket; a connection silent for three of them is dropped.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Reconnect back-off bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Hashes remembered as handled (a cheap dedupe; matching is idempotent anyway).
const MAX_SEEN: usize = 100_000;

/// Configuration of a [`ConfirmationWatcher`].
pub struct ConfirmationWatcherBuilder {
    rpc: NanoRpcClient,
    sessions: Arc<dyn SessionStore>,
    accounts: Vec<Address>,
    websocket: Option<String>,
    poll_interval: Duration,
    timestamp_skew: Duration,
}

impl std::fmt::Debug for ConfirmationWatcherBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfirmationWatcherBuilder")
            .field("accounts", &self.accounts)
            .field("websocket", &self.websocket.is_some())
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl ConfirmationWatcherBuilder {
    /// Watches sends to `account` (call once per merchant account; at least one is needed).
    pub fn account(mut self, account: Address) -> Self {
        self.accounts.push(account);
        self
    }

    /// Subscribes to the node's WebSocket at `url` (`ws://` or `wss://`); without one, the
    /// watcher polls.
    pub fn websocket(mut self, url: impl Into<String>) -> Self {
        self.websocket = Some(url.into());
        self
    }

    /// The pause between polls while no WebSocket delivers (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The clock skew allowed for the first-seen check, as the layer's
    /// [`timestamp_skew`](crate::layer::PaymentRequiredLayerBuilder::timestamp_skew) (default 30 s).
    pub fn timestamp_skew(mut self, skew: Duration) -> Self {
        self.timestamp_skew = skew;
        self
    }

    /// Starts the watcher on the current Tokio runtime. It runs until the handle is dropped.
    ///
    /// # Panics
    /// Without an account, or outside a Tokio runtime.
    pub fn spawn(self) -> ConfirmationWatcher {
        assert!(!self.accounts.is_empty(), "ConfirmationWatcher: add at least one account");
        let stats = Arc::new(Stats::default());
        let core = Core {
            rpc: self.rpc,
            sessions: self.sessions,
            accounts: self.accounts,
            skew: self.timestamp_skew.as_secs(),
            stats: stats.clone(),
            seen: HashSet::new(),
        };
        let task = tokio::spawn(run(core, self.websocket, self.poll_interval));
        ConfirmationWatcher { task, stats }
    }
}

/// A running confirmation watcher; dropping it stops the task.
#[derive(Debug)]
pub struct ConfirmationWatcher {
    task: tokio::task::JoinHandle<()>,
    stats: Arc<Stats>,
}

impl Drop for ConfirmationWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a watcher has done so far (for tests and monitoring).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatcherStats {
    /// Payments matched to a session and recorded.
    pub matched: u64,
    /// Blocks refused by the local checks (forged or inconsistent messages).
    pub refused: u64,
    /// WebSocket connections established (1 + reconnects).
    pub connections: u64,
    /// Polls of `receivable`.
    pub polls: u64,
}

#[derive(Debug, Default)]
struct Stats {
    matched: AtomicU64,
    refused: AtomicU64,
    connections: AtomicU64,
    polls: AtomicU64,
}

impl ConfirmationWatcher {
    /// A watcher of sends, fed by `rpc` (and a WebSocket if set), recording matches in `sessions`.
    pub fn builder(rpc: NanoRpcClient, sessions: Arc<dyn SessionStore>) -> ConfirmationWatcherBuilder {
        ConfirmationWatcherBuilder {
            rpc,
            sessions,
            accounts: Vec::new(),
            websocket: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            timestamp_skew: Duration::from_secs(30),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> WatcherStats {
        let s = &self.stats;
        WatcherStats {
            matched: s.matched.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            connections: s.connections.load(Ordering::Relaxed),
            polls: s.polls.load(Ordering::Relaxed),
        }
    }
}

/// Everything the loop needs to check and record one block.
struct Core {
    rpc: NanoRpcClient,
    sessions: Arc<dyn SessionStore>,
    accounts: Vec<Address>,
    skew: u64,
    stats: Arc<Stats>,
    seen: HashSet<BlockHash>,
}

/// A confirmed block as a source delivered it: its contents and the node's first-seen time.
async fn run(mut core: Core, websocket: Option<String>, poll_interval: Duration) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if let Some(url) = &websocket {
            match subscribe(url, &core.accounts).await {
                Ok(ws) => {
                    core.stats.connections.fetch_add(1, Ordering::Relaxed);
                    backoff = BACKOFF_MIN;
                    // What was confirmed while disconnected (or before the first connect).
                    core.poll().await;
                    listen(&mut core, ws).await;
                    tracing::warn!("confirmation WebSocket lost; polling until it is back");
                }
                Err(error) => tracing::warn!(%error, "confirmation WebSocket unavailable; polling"),
            }
            // Down: poll at the poll interval until the back-off has passed, then reconnect.
            let reconnect_at = tokio::time::Instant::now() + backoff;
            loop {
                core.poll().await;
                if tokio::time::Instant::now() + poll_interval >= reconnect_at {
                    tokio::time::sleep_until(reconnect_at).await;
                    break;
                }
                tokio::time::sleep(poll_interval).await;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        } else {
            core.poll().await;
            tokio::time::sleep(poll_interval).await;
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects and subscribes, waiting for the acknowledgement.
async fn subscribe(url: &str, accounts: &[Address]) -> Result<Socket, String> {
    let connect = tokio_tungstenite::connect_async(url);
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let request = serde_json::json!({
        "action": "subscribe", "topic": "confirmation", "ack": true,
        "options": {
            "accounts": accounts.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "include_block": "true", "include_sideband_info": "true",
        },
    });
    ws.send(Message::text(request.to_string())).await.map_err(|e| e.to_string())?;
    let ack = async {
        while let Some(message) = ws.next().await {
            if let Message::Text(text) = message.map_err(|e| e.to_string())? {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if value["ack"] == "subscribe" {
                    return Ok(());
                }
            }
        }
        Err("closed before the subscription was acknowledged".to_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), ack)
        .await
        .map_err(|_| "no subscription ack".to_owned())??;
    Ok(ws)
}

/// Reads notifications until the connection fails or goes silent.
async fn listen(core: &mut Core, mut ws: Socket) {
    let mut silent = 0;
    loop {
        match tokio::time::timeout(KEEPALIVE, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                silent = 0;
                if let Some(delivered) = ConfirmationNotification::parse(&text) {
                    core.handle(delivered).await;
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => return,
            Ok(Some(Ok(_))) => silent = 0,
            Err(_) => {
                silent += 1;
                if silent >= 3 || ws.send(Message::text(r#"{"action": "ping"}"#)).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Core {
    /// One catch-up pass: every confirmed receivable send to the accounts not seen yet.
    async fn poll(&mut self) {
        self.stats.polls.fetch_add(1, Ordering::Relaxed);
        for account in self.accounts.clone() {
            let receivable = match self.rpc.receivable(&account).await {
                Ok(receivable) => receivable,
                Err(error) => {
                    tracing::warn!(%error, "receivable failed; the next poll retries");
                    continue;
                }
            };
            for (hash, _claimed_amount) in receivable {
                if self.seen.contains(&hash) {
                    continue;
                }
                match self.rpc.block_info(&hash).await {
                    Ok(Some(info)) if info.confirmed => {
                        let delivered = ConfirmationNotification {
                            hash,
                            contents: info.contents,
                            local_timestamp: info.local_timestamp,
                        };
                        self.handle(delivered).await;
                    }
                    // Not confirmed yet: a later poll (or the WebSocket) sees it again.
                    Ok(_) => {}
                    Err(error) => tracing::debug!(%error, block = %hash, "block_info failed"),
                }
            }
        }
    }

    /// Checks a confirmed block and records it for the session of its amount.
    async fn handle(&mut self, delivered: ConfirmationNotification) {
        let hash = delivered.hash;
        if self.seen.contains(&hash) {
            return;
        }
        match self.check(delivered).await {
            Ok(Some((pay_to, amount, payment))) => {
                // A store outage leaves it unremembered: the next poll tries again.
                if self.record(pay_to, amount, payment).await {
                    self.remember(hash);
                }
            }
            // Not for us (the merchant's own blocks, receives): nothing to do, ever.
            Ok(None) => self.remember(hash),
            Err(Check::Refused(why)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                self.remember(hash);
                tracing::warn!(block = %hash, why, "watched block refused");
            }
            // The node could not answer: not remembered, so the next poll tries again.
            Err(Check::Unavailable(error)) => {
                tracing::warn!(block = %hash, %error, "cannot check a watched block yet")
            }
        }
    }

    fn remember(&mut self, hash: BlockHash) {
        if self.seen.len() >= MAX_SEEN {
            self.seen.clear();
        }
        self.seen.insert(hash);
    }

    /// The local checks, and the amount from the ledger. `Ok(None)`: not a send to a watched
    /// account.
    async fn check(
        &self,
        delivered: ConfirmationNotification,
    ) -> Result<Option<(Address, Raw, WatchedPayment)>, Check> {
        let block: StateBlock =
            delivered.contents.to_state_block().map_err(|_| Check::Refused("not a complete state block"))?;
        if block.hash() != delivered.hash {
            return Err(Check::Refused("the contents do not hash to the announced hash"));
        }
        if !block.verify_signature() {
            return Err(Check::Refused("the signature does not verify"));
        }
        let Some(pay_to) = self.accounts.iter().find(|a| a.public_key().as_bytes() == &block.link).copied()
        else {
            return Ok(None);
        };
        if block.previous.is_zero() {
            return Ok(None); // an open block receives
        }
        let previous = match self.rpc.block_info(&block.previous).await {
            Ok(Some(info)) => info,
            Ok(None) => return Err(Check::Refused("the previous block is unknown")),
            Err(e) => return Err(Check::Unavailable(e.to_string())),
        };
        let previous = previous
            .contents
            .to_state_block()
            .map_err(|_| Check::Refused("the previous block is not a state block"))?;
        if previous.hash() != block.previous {
            return Err(Check::Refused("the previous block's contents do not hash to it"));
        }
        let Some(amount) = previous.balance.checked_sub(block.balance).filter(|a| *a != Raw::ZERO) else {
            return Ok(None); // not a send (a receive or change linking the merchant's key)
        };
        let first_seen = delivered.local_timestamp.ok_or(Check::Unavailable("no first-seen time".into()))?;
        Ok(Some((
            pay_to,
            amount,
            WatchedPayment { block: delivered.hash, payer: block.account.into(), first_seen },
        )))
    }

    /// Matches the payment to the pending session of exactly its amount and records it;
    /// `false` when the store could not be asked.
    async fn record(&self, pay_to: Address, amount: Raw, payment: WatchedPayment) -> bool {
        let now = unix_now();
        let session =
            match self.sessions.find_by_amount(&pay_to, amount, now.saturating_sub(SESSION_GRACE_SECS)).await
            {
                Ok(Some(session)) => session,
                Ok(None) => {
                    tracing::debug!(block = %payment.block, %amount, "a send matching no pending session");
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, "session store unavailable; matching again on the next poll");
                    return false;
                }
            };
        // A block the node saw before the session existed cannot be its payment (old-block replay).
        if payment.first_seen < session.created_at.saturating_sub(self.skew) || payment.first_seen == 0 {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(block = %payment.block, "a send older than the session of its amount");
            return true;
        }
        match self.sessions.record_payment(&session.key, &payment).await {
            Ok(true) => {
                self.stats.matched.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::telemetry::WATCHER_MATCHES).increment(1);
                tracing::info!(block = %payment.block, payer = %payment.payer, "payment seen and matched");
                true
            }
            Ok(false) => true,
            Err(error) => {
                tracing::warn!(%error, "could not record a match; trying again on the next poll");
                false
            }
        }
    }
}

enum Check {
    Refused(&'static str),
    Unavailable(String),
}
