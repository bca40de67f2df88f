//! An offline mock Nano node for tests and demos (feature `mock-node`).
//!
//! [`MockNode`] serves the node RPC (`POST /`, reference §6) and the WebSocket `confirmation`
//! topic (§7) on 127.0.0.1, over an in-memory ledger of really signed state blocks that starts
//! from the dev-network genesis (§8). Published blocks go through the checks a real node makes,
//! in the same order, and are refused with the same error texts; the crate's own
//! [`NanoRpcVerifier`](crate::verify::NanoRpcVerifier) verifies its blocks like a real node's.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use nanosession::mock_node::{MockNode, MockNodeConfig};
//! use nanosession::nano::{PrivateKey, Raw};
//!
//! let node = MockNode::start(MockNodeConfig::default()).unwrap();
//! let wallet = PrivateKey::from_bytes([42; 32]);
//! let open = node.fund(&wallet, Raw::ONE_XNO).await;
//! assert!(node.is_confirmed(&open));
//! assert_eq!(node.balance(&wallet.public_key().into()), Raw::ONE_XNO);
//! # }
//! ```
//!
//! # Faithful to a real node
//! - `process`: parse errors, the `subtype` hint checks, the entry work check, then the ledger
//!   checks in nano-node's order (old, signature, burn account, fork/gap previous, gap source,
//!   unreceivable, balance mismatch, work for the block kind); epoch-2 thresholds for every
//!   account; blocks start unconfirmed, then confirm after the confirmation delay.
//! - Reply shapes: HTTP 200 errors with exact texts, every scalar a string, `""` for empty
//!   collections, `contents` as a string without `json_block`, zero `successor` at the head,
//!   `open` reported as `receive`, `receivable` listing confirmed sends only by default.
//! - Confirmation cements dependencies too (earlier blocks, sources of receives), notified as
//!   `inactive`, or as `active_confirmation_height` while their own election is still running;
//!   `block_confirm` on a confirmed block re-sends it as `active_confirmation_height`; the
//!   WebSocket account filter is the node's rule.
//!
//! # Not faithful
//! - One node, no network, no votes or peers: `telemetry` describes the node itself (a lone
//!   real node has no peers to report). Every account counts as epoch 2 (`account_version`
//!   `"2"`, even the genesis account); epoch blocks get the node's gap, signature, burn-account
//!   and fork checks, then are refused with "This block cannot follow the previous block" (the
//!   node's representative check and its epoch-open rules for unopened accounts are skipped).
//! - New legacy blocks are refused as `"Block is invalid"` (a real dev node may accept a legacy
//!   block on the un-upgraded genesis account). Hence `"Negative spend"`, which only a legacy
//!   send can cause, never occurs: an overspending state block reads as a receive.
//! - `process` ignores `force` (forks are always refused); `work_generate` ignores `block`,
//!   `use_peers` and `version`; only the actions listed on [`MockNode`] exist (others answer
//!   `"Unknown command"`); the only WebSocket topic is `confirmation`.

mod config;
mod faults;
mod json;
mod ledger;
mod node;
mod rpc;
mod server;
mod ws;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

pub use config::{MockNodeConfig, WorkThresholds};
pub use faults::Faults;

use crate::nano::{work, Address, BlockHash, PrivateKey, Raw, StateBlock};
use node::Node;

/// The dev genesis account, which holds the whole supply (reference §8).
pub const GENESIS_ADDRESS: &str = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo";
/// The dev genesis private key: a public test key, never for real funds (see
/// [`MockNode::genesis_key`]).
pub const GENESIS_PRIVATE_KEY: &str = ledger::GENESIS_PRIVATE_KEY;
/// The dev genesis block hash, also the dev `network_identifier`.
pub const GENESIS_HASH: &str = "04270D7F11C4B2B472F2854C5A59F2A7E84226CE9ED799DE75744BD7D85FC9D9";

/// A running mock node. Dropping it stops both servers and frees the ports.
///
/// RPC actions: `process`, `block_info`, `blocks_info`, `account_info`, `account_history`,
/// `receivable` (alias `pending`), `block_confirm`, `work_generate`, `version`, `telemetry`,
/// `block_count`.
///
/// The node runs on its own thread and Tokio runtime, so it works from synchronous code and
/// from any runtime, and a test's paused clock does not stop its elections.
pub struct MockNode {
    node: Arc<Node>,
    rpc_addr: SocketAddr,
    ws_addr: SocketAddr,
    runtime: tokio::runtime::Handle,
    /// Serializes [`MockNode::fund`] calls, which all spend from the genesis account.
    funding: Arc<Mutex<()>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MockNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockNode")
            .field("rpc", &self.rpc_addr)
            .field("ws", &self.ws_addr)
            .field("faults", &self.node.faults)
            .finish_non_exhaustive()
    }
}

impl MockNode {
    /// Binds the RPC and WebSocket ports and starts serving.
    ///
    /// Fails if a port cannot be bound or the node's thread cannot start.
    pub fn start(config: MockNodeConfig) -> std::io::Result<MockNode> {
        let rpc_listener = server::bind(config.rpc_addr)?;
        let ws_listener = server::bind(config.ws_addr)?;
        let addrs = (rpc_listener.local_addr()?, ws_listener.local_addr()?);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (commands_tx, commands) = tokio::sync::mpsc::unbounded_channel();
        let faults = Faults::new(config.confirmation_delay, commands_tx);
        let node = Arc::new(Node::new(config, faults, runtime.handle().clone()));
        let (shutdown, shutdown_rx) = oneshot::channel();
        let handle = runtime.handle().clone();
        let serving = node.clone();
        let thread = std::thread::Builder::new().name("mock-node".into()).spawn(move || {
            runtime.block_on(server::supervise(
                serving,
                (rpc_listener, ws_listener),
                addrs,
                commands,
                shutdown_rx,
            ));
            // Open sessions, timers and RPC handlers are dropped here (a dropped `work_generate`
            // handler cancels its search); `fund`'s search stops on `Node::cancel`, set by Drop.
            runtime.shutdown_timeout(std::time::Duration::from_secs(2));
        })?;
        Ok(MockNode {
            node,
            rpc_addr: addrs.0,
            ws_addr: addrs.1,
            runtime: handle,
            funding: Arc::default(),
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The RPC endpoint, `http://127.0.0.1:<port>/`.
    pub fn rpc_url(&self) -> String {
        format!("http://{}/", self.rpc_addr)
    }

    /// The WebSocket endpoint, `ws://127.0.0.1:<port>/`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.ws_addr)
    }

    /// The RPC server's address.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    /// The WebSocket server's address.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// The dev genesis private key (a public test key, also [`GENESIS_PRIVATE_KEY`]): the
    /// faucet of the whole supply.
    pub fn genesis_key(&self) -> PrivateKey {
        genesis_private_key()
    }

    /// The fault switches (a cheap-clone handle).
    pub fn faults(&self) -> Faults {
        self.node.faults.clone()
    }

    /// The work thresholds the ledger demands.
    pub fn work_thresholds(&self) -> WorkThresholds {
        self.node.config.work_thresholds
    }

    /// An account's balance, including unconfirmed blocks (zero if never opened).
    pub fn balance(&self, account: &Address) -> Raw {
        self.node.ledger().balance(account.public_key())
    }

    /// A stored state block (`None` for unknown hashes and for the legacy genesis block).
    pub fn block(&self, hash: &BlockHash) -> Option<StateBlock> {
        self.node.ledger().get(hash).and_then(|e| e.state().cloned())
    }

    /// Whether a block is confirmed (cemented).
    pub fn is_confirmed(&self, hash: &BlockHash) -> bool {
        self.node.ledger().is_confirmed(hash)
    }

    /// Confirms a block now, with everything it depends on, even while
    /// [`Faults::set_never_confirm`] is on; WebSocket subscribers are notified. Returns false
    /// for an unknown block.
    pub fn confirm(&self, hash: &BlockHash) -> bool {
        self.node.confirm(hash, true)
    }

    /// Publishes a block through the same checks as RPC `process` (subtype hint aside).
    /// `Err` carries the node's error text.
    pub fn process(&self, block: &StateBlock) -> Result<BlockHash, &'static str> {
        self.node.check_entry_work(block).map_err(ledger::ProcessError::text)?;
        self.node.publish(block).map_err(ledger::ProcessError::text)
    }

    /// Gives `to` a balance: publishes a genesis send of `amount` to `to` and `to`'s block
    /// receiving it (an open block, or a receive if the account exists), both signed and with
    /// work, through the ledger's normal checks. Returns the receiving block's hash. Both
    /// blocks confirm like any others (at once by default).
    ///
    /// # Panics
    /// If `amount` is zero (a send that moves nothing is no send: the node would read it as a
    /// receive of nothing), if the ledger refuses either block (the genesis cannot cover
    /// `amount`, or another publisher raced `to`'s chain), or if the node has stopped.
    pub async fn fund(&self, to: &PrivateKey, amount: Raw) -> BlockHash {
        assert!(amount != Raw::ZERO, "MockNode::fund: the amount is zero, and a send must move funds");
        let node = self.node.clone();
        let funding = self.funding.clone();
        let to = to.clone();
        let task = self.runtime.spawn_blocking(move || {
            let _serial = funding.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            fund_blocking(&node, &to, amount)
        });
        match task.await {
            Ok(Ok(hash)) => hash,
            Ok(Err(e)) => panic!("MockNode::fund: {e}"),
            Err(e) => panic!("MockNode::fund: the node stopped: {e}"),
        }
    }
}

fn genesis_private_key() -> PrivateKey {
    PrivateKey::from_hex(GENESIS_PRIVATE_KEY).expect("constant is 64 hex digits")
}

/// Builds, signs, works and publishes one block of `key`'s chain after `previous`. `Err`
/// says why, for `fund`'s panic message.
fn publish_next(
    node: &Arc<Node>,
    key: &PrivateKey,
    previous: BlockHash,
    balance: Raw,
    link: [u8; 32],
    is_receive: bool,
) -> Result<BlockHash, String> {
    let mut block = StateBlock {
        account: key.public_key(),
        previous,
        representative: node
            .ledger()
            .account(&key.public_key())
            .map_or(key.public_key(), |a| a.representative),
        balance,
        link,
        signature: Default::default(),
        work: 0,
    };
    block.sign(key);
    let threshold = node.config.work_thresholds.for_block(is_receive);
    // At live thresholds a search can take a minute: the node's cancel flag ends it at shutdown.
    block.work = work::generate(&block.work_root(), threshold, &node.cancel)
        .ok_or("the node stopped during the work search")?;
    node.publish(&block).map_err(|e| format!("the ledger refused a block: {e}"))
}

fn fund_blocking(node: &Arc<Node>, to: &PrivateKey, amount: Raw) -> Result<BlockHash, String> {
    let genesis = genesis_private_key();
    let frontier = |key: &PrivateKey| {
        let ledger = node.ledger();
        ledger.account(&key.public_key()).map(|a| (a.frontier(), a.balance))
    };
    let (previous, balance) = frontier(&genesis).ok_or("the genesis account is missing")?;
    let remaining = balance.checked_sub(amount).ok_or("the genesis balance is too low")?;
    let send = publish_next(node, &genesis, previous, remaining, *to.public_key().as_bytes(), false)?;
    let (previous, balance) = frontier(to).unwrap_or((BlockHash::ZERO, Raw::ZERO));
    let received = balance.checked_add(amount).ok_or("the balance would overflow")?;
    publish_next(node, to, previous, received, *send.as_bytes(), true)
}

impl Drop for MockNode {
    fn drop(&mut self) {
        // Before the shutdown, so a `fund` search still running (its caller gave up) ends now
        // rather than holding the runtime's shutdown for its whole timeout.
        self.node.cancel.store(true, Ordering::Relaxed);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Quick (the supervisor aborts its servers) and frees the ports before returning.
            let _ = thread.join();
        }
    }
}
