//! Test doubles for the layer tests: [`FakeLedger`], a scriptable [`PaymentVerifier`], and
//! [`FailingStore`], a session store and spent set that can be switched off.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nanosession::nano::{Address, BlockHash, PublicKey, Raw};
use nanosession::session::{unix_now, Session, SessionId, SessionKey};
use nanosession::store::{
    Claim, HandoffClaim, HandoffRelease, Insert, MemorySessionStore, MemorySpentSet, SessionStore, SpentSet,
    StoreError, StoredSession,
};
use nanosession::verify::{Confirmation, Expected, PaymentVerifier, Rejection, VerifiedBlock};
use tokio::sync::Barrier;

/// The account every fake send comes from.
pub fn payer() -> Address {
    Address::from(PublicKey::from_bytes([0x42; 32]))
}

/// A confirmed send the fake ledger knows about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerSend {
    /// Destination account.
    pub to: Address,
    /// Amount moved.
    pub amount: Raw,
    /// Sending account.
    pub payer: Address,
    /// The node's first-seen time (Unix seconds).
    pub first_seen: u64,
}

/// How the fake answers for one hash instead of checking it honestly.
#[derive(Clone, Debug)]
enum Override {
    /// Refuse with this rejection.
    Reject(Rejection),
    /// A lying or broken verifier: claim success, but for another hash and/or amount.
    AnswerFor { hash: BlockHash, amount: Raw },
}

/// A ledger in memory that verifies honestly against [`Expected`], with knobs to force every
/// [`Rejection`], take the node down, count calls and hold verifications at a barrier.
#[derive(Default)]
pub struct FakeLedger {
    sends: Mutex<HashMap<BlockHash, LedgerSend>>,
    overrides: Mutex<HashMap<BlockHash, Override>>,
    down: AtomicBool,
    calls: AtomicUsize,
    barrier: Mutex<Option<Arc<Barrier>>>,
    expected: Mutex<Vec<(BlockHash, Expected)>>,
}

impl FakeLedger {
    /// A new, empty ledger.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a confirmed send of `amount` to `to`, first seen now; returns its (random) hash.
    pub fn pay(&self, to: Address, amount: Raw) -> BlockHash {
        self.pay_at(to, amount, unix_now())
    }

    /// Registers a confirmed send first seen at `first_seen` (Unix seconds).
    pub fn pay_at(&self, to: Address, amount: Raw, first_seen: u64) -> BlockHash {
        let hash = BlockHash::from_bytes(rand::random());
        let send = LedgerSend { to, amount, payer: payer(), first_seen };
        self.sends.lock().unwrap().insert(hash, send);
        hash
    }

    /// Forces `rejection` for `hash` (whether or not the ledger knows it).
    pub fn reject(&self, hash: BlockHash, rejection: Rejection) {
        self.overrides.lock().unwrap().insert(hash, Override::Reject(rejection));
    }

    /// Makes the verifier claim success for `hash` but report another hash and amount.
    pub fn answer_for(&self, hash: BlockHash, reported: BlockHash, amount: Raw) {
        self.overrides.lock().unwrap().insert(hash, Override::AnswerFor { hash: reported, amount });
    }

    /// Removes any override of `hash`: it is verified honestly again.
    pub fn clear_override(&self, hash: BlockHash) {
        self.overrides.lock().unwrap().remove(&hash);
    }

    /// Every node down (`true`): all verifications answer `Unavailable`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// How many times `verify` was called.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every `(hash, Expected)` the layer asked about, in order.
    pub fn asked(&self) -> Vec<(BlockHash, Expected)> {
        self.expected.lock().unwrap().clone()
    }

    /// From now on every verification waits until `n` verifications are waiting, then all go on
    /// together (so the claims that follow race). Call [`release_hold`](Self::release_hold) after.
    pub fn hold_until(&self, n: usize) {
        *self.barrier.lock().unwrap() = Some(Arc::new(Barrier::new(n)));
    }

    /// Verifications no longer wait.
    pub fn release_hold(&self) {
        *self.barrier.lock().unwrap() = None;
    }
}

#[async_trait]
impl PaymentVerifier for FakeLedger {
    async fn verify(&self, hash: &BlockHash, expected: &Expected) -> Result<VerifiedBlock, Rejection> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.expected.lock().unwrap().push((*hash, expected.clone()));
        let barrier = self.barrier.lock().unwrap().clone();
        if let Some(barrier) = barrier {
            barrier.wait().await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(Rejection::Unavailable("fake node is down".into()));
        }
        let send = self.sends.lock().unwrap().get(hash).cloned();
        let over = self.overrides.lock().unwrap().get(hash).cloned();
        match over {
            Some(Override::Reject(rejection)) => return Err(rejection),
            Some(Override::AnswerFor { hash, amount }) => {
                return Ok(VerifiedBlock {
                    hash,
                    payer: payer(),
                    amount,
                    first_seen: unix_now(),
                    confirmation: Confirmation::AlreadyConfirmed,
                })
            }
            None => {}
        }
        let send = send.ok_or(Rejection::NotFound)?;
        if send.to != expected.pay_to {
            return Err(Rejection::WrongDestination);
        }
        if send.amount != expected.amount {
            return Err(Rejection::WrongAmount);
        }
        if send.first_seen < expected.not_before {
            return Err(Rejection::TooOld);
        }
        Ok(VerifiedBlock {
            hash: *hash,
            payer: send.payer,
            amount: send.amount,
            first_seen: send.first_seen,
            confirmation: Confirmation::AlreadyConfirmed,
        })
    }
}

/// One operation of [`FailingStore`], to fail selectively.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// `SessionStore::insert`
    Insert,
    /// `SessionStore::get`
    Get,
    /// `SessionStore::take`
    Take,
    /// `SessionStore::prune`
    PruneSessions,
    /// `SpentSet::owner`
    Owner,
    /// `SpentSet::claim`
    Claim,
    /// `SpentSet::release`
    Release,
    /// `SpentSet::prune`
    PruneSpent,
    /// `SpentSet::size`
    Size,
}

/// A session store and spent set in one, delegating to the memory backends while healthy;
/// switched down, every call (or every call of the chosen operations) fails.
pub struct FailingStore {
    /// The session store behind it (inspect it directly; it never fails).
    pub sessions: Arc<MemorySessionStore>,
    /// The spent set behind it (inspect it directly; it never fails).
    pub spent: Arc<MemorySpentSet>,
    down: AtomicBool,
    failing: Mutex<HashSet<StoreOp>>,
    errors: AtomicUsize,
}

impl FailingStore {
    /// A healthy store over the given memory backends.
    pub fn new(sessions: Arc<MemorySessionStore>, spent: Arc<MemorySpentSet>) -> Arc<Self> {
        Arc::new(FailingStore {
            sessions,
            spent,
            down: AtomicBool::new(false),
            failing: Mutex::new(HashSet::new()),
            errors: AtomicUsize::new(0),
        })
    }

    /// Every call errors (`true`) or is delegated (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Only these operations error (in addition to everything while down); `&[]` heals them.
    pub fn fail_only(&self, ops: &[StoreOp]) {
        *self.failing.lock().unwrap() = ops.iter().copied().collect();
    }

    /// How many calls errored.
    pub fn errors(&self) -> usize {
        self.errors.load(Ordering::SeqCst)
    }

    fn check(&self, op: StoreOp) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) || self.failing.lock().unwrap().contains(&op) {
            self.errors.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::new("failing", format!("{op:?} failed: backend unreachable")));
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for FailingStore {
    async fn insert(&self, session: &Session, now: u64) -> Result<Insert, StoreError> {
        self.check(StoreOp::Insert)?;
        self.sessions.insert(session, now).await
    }

    async fn get_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        self.check(StoreOp::Get)?;
        self.sessions.get_by_key(key).await
    }

    async fn take_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        self.check(StoreOp::Take)?;
        self.sessions.take_by_key(key).await
    }

    async fn record_payment(
        &self,
        key: &SessionKey,
        payment: &nanosession::store::WatchedPayment,
    ) -> Result<bool, StoreError> {
        self.check(StoreOp::Insert)?;
        self.sessions.record_payment(key, payment).await
    }

    async fn find_by_amount(
        &self,
        pay_to: &Address,
        amount: Raw,
        now: u64,
    ) -> Result<Option<StoredSession>, StoreError> {
        self.check(StoreOp::Get)?;
        self.sessions.find_by_amount(pay_to, amount, now).await
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        self.check(StoreOp::PruneSessions)?;
        SessionStore::prune(&*self.sessions, now).await
    }
}

#[async_trait]
impl SpentSet for FailingStore {
    async fn owner(&self, hash: &BlockHash) -> Result<Option<nanosession::session::SessionKey>, StoreError> {
        self.check(StoreOp::Owner)?;
        self.spent.owner(hash).await
    }

    async fn claim_by_key(
        &self,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
    ) -> Result<Claim, StoreError> {
        self.check(StoreOp::Claim)?;
        self.spent.claim_by_key(hash, session, keep_until).await
    }

    async fn release_by_key(&self, hash: &BlockHash, session: &SessionKey) -> Result<(), StoreError> {
        self.check(StoreOp::Release)?;
        self.spent.release_by_key(hash, session).await
    }

    async fn claim_handoff(&self, claim: &HandoffClaim, now: u64) -> Result<Claim, StoreError> {
        self.check(StoreOp::Claim)?;
        self.spent.claim_handoff(claim, now).await
    }

    async fn release_handoff(&self, claim: &HandoffClaim, how: HandoffRelease) -> Result<(), StoreError> {
        self.check(StoreOp::Release)?;
        self.spent.release_handoff(claim, how).await
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        self.check(StoreOp::PruneSpent)?;
        SpentSet::prune(&*self.spent, now).await
    }

    async fn size(&self) -> Result<Option<u64>, StoreError> {
        self.check(StoreOp::Size)?;
        self.spent.size().await
    }
}
