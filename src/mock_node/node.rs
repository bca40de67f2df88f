//! [`Node`]: the state the RPC and WebSocket servers share (ledger, faults, confirmation
//! events), and the publish and confirm paths every block goes through.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use futures_util::task::AtomicWaker;
use tokio::sync::broadcast;

use super::config::MockNodeConfig;
use super::faults::Faults;
use super::json::{self, StateJson};
use super::ledger::{self, Ledger, ProcessError};
use crate::nano::{BlockHash, PublicKey, StateBlock};

/// How a confirmation came about, as the WebSocket `confirmation_type` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConfirmationType {
    /// The block's own election reached quorum.
    ActiveQuorum,
    /// An already cemented block re-announced by `block_confirm`, or a block cemented as a
    /// dependency while its own election was still running.
    ActiveConfirmationHeight,
    /// Cemented as a dependency of another block's election, without an election of its own.
    Inactive,
}

impl ConfirmationType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConfirmationType::ActiveQuorum => "active_quorum",
            ConfirmationType::ActiveConfirmationHeight => "active_confirmation_height",
            ConfirmationType::Inactive => "inactive",
        }
    }
}

/// One confirmed block, with what every WebSocket session needs to filter and render it.
#[derive(Clone, Debug)]
pub(crate) struct Confirmation {
    pub(crate) account: PublicKey,
    pub(crate) link: [u8; 32],
    pub(crate) amount: String,
    pub(crate) hash: String,
    pub(crate) confirmation_type: ConfirmationType,
    /// Contents with `subtype` inside.
    pub(crate) block: StateJson,
    pub(crate) height: u64,
    pub(crate) local_timestamp: u64,
}

/// The shared node state.
pub(crate) struct Node {
    ledger: Mutex<Ledger>,
    /// Blocks whose election is running (waiting out the confirmation delay).
    elections: Mutex<HashSet<BlockHash>>,
    /// Set when the node stops: long work searches (`MockNode::fund`) give up.
    pub(crate) cancel: AtomicBool,
    pub(crate) faults: Faults,
    pub(crate) config: MockNodeConfig,
    confirmations: broadcast::Sender<Arc<Confirmation>>,
    pub(crate) started: Instant,
    /// Bumped to cut every open connection (refused connections, shutdown).
    pub(crate) connections: Arc<ConnectionCutter>,
    /// The node's own runtime: elections are timed there whoever publishes.
    runtime: tokio::runtime::Handle,
}

impl Node {
    pub(crate) fn new(config: MockNodeConfig, faults: Faults, runtime: tokio::runtime::Handle) -> Node {
        // Slow WebSocket readers lose notifications past this backlog, as with a real node.
        let (confirmations, _) = broadcast::channel(4096);
        Node {
            ledger: Mutex::new(Ledger::new()),
            elections: Mutex::default(),
            cancel: AtomicBool::new(false),
            faults,
            config,
            confirmations,
            started: Instant::now(),
            connections: Arc::default(),
            runtime,
        }
    }

    /// The ledger. Never hold the guard across an `.await`.
    pub(crate) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // Every ledger mutation completes before it can fail, so a poisoned lock is still sound.
        self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The running elections. Lock order: the ledger first, if both are held.
    fn elections(&self) -> MutexGuard<'_, HashSet<BlockHash>> {
        // A set insert or remove cannot leave it half-done, so a poisoned lock is still sound.
        self.elections.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The RPC's entry check: work below the lowest threshold is refused outright.
    pub(crate) fn check_entry_work(&self, block: &StateBlock) -> Result<(), ProcessError> {
        ledger::check_entry_work(block, &self.config.work_thresholds)
    }

    /// A receiver of confirmation notifications.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Confirmation>> {
        self.confirmations.subscribe()
    }

    /// Runs the ledger checks on `block`, stores it and starts its election.
    pub(crate) fn publish(self: &Arc<Self>, block: &StateBlock) -> Result<BlockHash, ProcessError> {
        let hash = self.ledger().process(block, &self.config.work_thresholds, json::now_secs())?;
        self.start_election(hash);
        Ok(hash)
    }

    /// Confirms `hash` after the current confirmation delay, unless blocks never confirm.
    pub(crate) fn start_election(self: &Arc<Self>, hash: BlockHash) {
        if self.faults.never_confirm() {
            return;
        }
        let delay = self.faults.confirmation_delay();
        if delay.is_zero() {
            self.confirm(&hash, false);
            return;
        }
        self.elections().insert(hash);
        let node = Arc::downgrade(self);
        self.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(node) = Weak::upgrade(&node) {
                node.confirm(&hash, false);
                // Also when blocks never confirm: the election is over either way.
                node.elections().remove(&hash);
            }
        });
    }

    /// Cements `hash` and its dependencies and notifies WebSocket subscribers. Unless `force`,
    /// does nothing while blocks never confirm. Returns false for an unknown block.
    pub(crate) fn confirm(&self, hash: &BlockHash, force: bool) -> bool {
        if !force && self.faults.never_confirm() {
            return self.ledger().get(hash).is_some();
        }
        let notes = {
            let mut ledger = self.ledger();
            if ledger.get(hash).is_none() {
                return false;
            }
            let cemented = ledger.confirm(hash);
            let mut elections = self.elections();
            cemented
                .iter()
                .filter_map(|h| {
                    // A dependency whose own election is still running is reported the way the
                    // node reports a block cemented by height while active.
                    let kind = if h == hash {
                        ConfirmationType::ActiveQuorum
                    } else if elections.contains(h) {
                        ConfirmationType::ActiveConfirmationHeight
                    } else {
                        ConfirmationType::Inactive
                    };
                    elections.remove(h);
                    confirmation(&ledger, h, kind)
                })
                .collect::<Vec<_>>()
        };
        self.notify(notes);
        true
    }

    /// Re-announces an already confirmed block (what `block_confirm` does for one).
    pub(crate) fn reannounce(&self, hash: &BlockHash) {
        let note = confirmation(&self.ledger(), hash, ConfirmationType::ActiveConfirmationHeight);
        self.notify(note.into_iter().collect());
    }

    /// Sends notifications to every WebSocket session, applying the drop/duplicate faults.
    fn notify(&self, notes: Vec<Confirmation>) {
        if self.faults.drop_notifications() {
            return;
        }
        let copies = if self.faults.duplicate_notifications() { 2 } else { 1 };
        for note in notes {
            let note = Arc::new(note);
            for _ in 0..copies {
                // No subscriber is not an error: nobody is listening yet.
                let _ = self.confirmations.send(note.clone());
            }
        }
    }
}

/// The notification for a stored state block (the genesis is never notified).
fn confirmation(ledger: &Ledger, hash: &BlockHash, kind: ConfirmationType) -> Option<Confirmation> {
    let entry = ledger.get(hash)?;
    let block = entry.state()?;
    let mut json = StateJson::new(block);
    json.subtype = entry.subtype.map(|s| s.as_str());
    Some(Confirmation {
        account: entry.account,
        link: block.link,
        amount: entry.amount.to_string(),
        hash: hash.to_string(),
        confirmation_type: kind,
        block: json,
        height: entry.height,
        local_timestamp: entry.local_timestamp,
    })
}

/// Lets the server cut every open connection at once: each connection registers a waker and
/// remembers the generation it was accepted in; bumping the generation wakes them all, and a
/// connection of an older generation fails its next read or write.
#[derive(Default)]
pub(crate) struct ConnectionCutter {
    generation: AtomicU64,
    wakers: Mutex<Vec<Weak<AtomicWaker>>>,
}

impl ConnectionCutter {
    /// The current generation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Registers a connection's waker.
    pub(crate) fn register(&self, waker: &Arc<AtomicWaker>) {
        let mut wakers = self.wakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        wakers.retain(|w| w.strong_count() > 0);
        wakers.push(Arc::downgrade(waker));
    }

    /// Cuts every connection accepted so far.
    pub(crate) fn cut_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let wakers =
            std::mem::take(&mut *self.wakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for waker in wakers.iter().filter_map(Weak::upgrade) {
            waker.wake();
        }
    }
}
