//! In-process stores: fast, bounded, correct under concurrency, and gone after a restart
//! (so a replay of an old payment becomes possible then: use a persistent store in production).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    Claim, HandoffClaim, HandoffRelease, Insert, Lock, SessionStore, SpentSet, StoreError, StoredSession,
    WatchedPayment,
};
use crate::nano::{Address, BlockHash, Raw};
use crate::session::{Session, SessionKey};

/// Default maximum of pending sessions.
pub const DEFAULT_SESSION_CAPACITY: usize = 100_000;
/// Default maximum of spent hashes.
pub const DEFAULT_SPENT_CAPACITY: usize = 1_000_000;

/// In-memory [`SessionStore`]. One short `std::sync::Mutex` critical section per call (never
/// held across an `.await`), with an expiry index so pruning costs only what it removes.
///
/// ```
/// use nanosession::store::MemorySessionStore;
/// let store = MemorySessionStore::with_capacity(10_000);
/// ```
#[derive(Debug)]
pub struct MemorySessionStore {
    capacity: usize,
    inner: Mutex<Sessions>,
}

#[derive(Debug, Default)]
// Keyed by `SessionKey` like the persistent stores (the values are in-process only).
struct Sessions {
    by_id: HashMap<SessionKey, StoredSession>,
    by_amount: HashMap<(Address, Raw), SessionKey>,
    by_expiry: BTreeSet<(u64, SessionKey)>,
}

impl Sessions {
    fn remove(&mut self, id: &SessionKey) -> Option<StoredSession> {
        let s = self.by_id.remove(id)?;
        self.by_expiry.remove(&(s.expires_at, *id));
        if self.by_amount.get(&(s.pay_to, s.amount)) == Some(id) {
            self.by_amount.remove(&(s.pay_to, s.amount));
        }
        Some(s)
    }

    fn prune(&mut self, now: u64) -> u64 {
        let mut removed = 0;
        while let Some(&(expires_at, id)) = self.by_expiry.first() {
            if expires_at >= now {
                break;
            }
            self.remove(&id);
            removed += 1;
        }
        removed
    }
}

impl MemorySessionStore {
    /// A store holding at most `capacity` pending sessions.
    pub fn with_capacity(capacity: usize) -> Self {
        MemorySessionStore { capacity, inner: Mutex::new(Sessions::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // No user code runs under this lock and no step panics midway, so even a poisoned lock
        // guards consistent maps: keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_SESSION_CAPACITY)
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn pending_count(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.lock().by_id.len() as u64))
    }

    async fn insert(&self, session: &Session, now: u64) -> Result<Insert, StoreError> {
        let mut s = self.lock();
        if let Some(holder) = s.by_amount.get(&(session.pay_to, session.amount)).copied() {
            match s.by_id.get(&holder) {
                Some(h) if !h.is_expired(now) => return Ok(Insert::AmountInUse),
                _ => {
                    s.remove(&holder);
                }
            }
        }
        if s.by_id.len() >= self.capacity {
            // Full: only expired sessions may make room.
            s.prune(now);
            if s.by_id.len() >= self.capacity {
                return Ok(Insert::Full);
            }
        }
        let key = session.id.key();
        if s.by_id.contains_key(&key) {
            // 128-bit ids do not collide; refuse rather than overwrite if one ever does.
            return Ok(Insert::AmountInUse);
        }
        s.by_amount.insert((session.pay_to, session.amount), key);
        s.by_expiry.insert((session.expires_at, key));
        s.by_id.insert(key, StoredSession::of(session));
        Ok(Insert::Inserted)
    }

    async fn get_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        Ok(self.lock().by_id.get(key).copied())
    }

    async fn take_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        Ok(self.lock().remove(key))
    }

    async fn record_payment(&self, key: &SessionKey, payment: &WatchedPayment) -> Result<bool, StoreError> {
        let mut s = self.lock();
        match s.by_id.get_mut(key) {
            Some(session) if session.watched.is_none() => {
                session.watched = Some(*payment);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn find_by_amount(
        &self,
        pay_to: &Address,
        amount: Raw,
        now: u64,
    ) -> Result<Option<StoredSession>, StoreError> {
        let s = self.lock();
        let holder = s.by_amount.get(&(*pay_to, amount)).and_then(|key| s.by_id.get(key));
        Ok(holder.filter(|h| !h.is_expired(now)).copied())
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        Ok(self.lock().prune(now))
    }

    fn capacity(&self) -> Option<u64> {
        Some(self.capacity as u64)
    }
}

/// In-memory [`SpentSet`], bounded: when full of unexpired entries it refuses new claims
/// (the layer answers 503) instead of evicting, because eviction would re-open replays.
#[derive(Debug)]
pub struct MemorySpentSet {
    capacity: usize,
    inner: Mutex<Spent>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    owner: SessionKey,
    claims: u32,
    keep_until: u64,
}

#[derive(Debug, Default)]
struct Spent {
    by_hash: HashMap<BlockHash, Entry>,
    by_expiry: BTreeSet<(u64, BlockHash)>,
    /// Hand-off locks: few at a time (one per payment in flight), pruned by a scan.
    locks: HashMap<LockKey, Lock>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LockKey {
    Previous(BlockHash),
    Session(SessionKey),
}

impl LockKey {
    fn both(claim: &HandoffClaim) -> [LockKey; 2] {
        [LockKey::Previous(claim.previous), LockKey::Session(claim.session)]
    }
}

impl Spent {
    fn claim(
        &mut self,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
        capacity: usize,
    ) -> Result<Claim, StoreError> {
        if let Some(entry) = self.by_hash.get_mut(hash) {
            if entry.owner != *session {
                return Ok(Claim::Spent);
            }
            entry.claims += 1;
            return Ok(Claim::Reentered);
        }
        if self.by_hash.len() >= capacity {
            // Only entries past their retention may go, never live ones.
            self.prune(crate::session::unix_now());
            if self.by_hash.len() >= capacity {
                return Err(StoreError::new("memory", "spent set is full"));
            }
        }
        self.by_hash.insert(*hash, Entry { owner: *session, claims: 1, keep_until });
        self.by_expiry.insert((keep_until, *hash));
        Ok(Claim::New)
    }

    fn release(&mut self, hash: &BlockHash, session: &SessionKey) {
        if let Some(entry) = self.by_hash.get(hash).copied() {
            if entry.owner == *session && entry.claims == 1 {
                self.by_hash.remove(hash);
                self.by_expiry.remove(&(entry.keep_until, *hash));
            }
        }
    }

    fn prune(&mut self, now: u64) -> u64 {
        self.locks.retain(|_, lock| lock.until >= now);
        let mut removed = 0;
        while let Some(&(keep_until, hash)) = self.by_expiry.first() {
            if keep_until >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.by_hash.remove(&hash);
            removed += 1;
        }
        removed
    }
}

impl MemorySpentSet {
    /// A set holding at most `capacity` hashes.
    pub fn with_capacity(capacity: usize) -> Self {
        MemorySpentSet { capacity, inner: Mutex::new(Spent::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Spent> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemorySpentSet {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_SPENT_CAPACITY)
    }
}

#[async_trait]
impl SpentSet for MemorySpentSet {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn owner(&self, hash: &BlockHash) -> Result<Option<SessionKey>, StoreError> {
        Ok(self.lock().by_hash.get(hash).map(|e| e.owner))
    }

    async fn claim_by_key(
        &self,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
    ) -> Result<Claim, StoreError> {
        self.lock().claim(hash, session, keep_until, self.capacity)
    }

    async fn release_by_key(&self, hash: &BlockHash, session: &SessionKey) -> Result<(), StoreError> {
        self.lock().release(hash, session);
        Ok(())
    }

    async fn claim_handoff(&self, claim: &HandoffClaim, now: u64) -> Result<Claim, StoreError> {
        let mut s = self.lock();
        if s.by_hash.get(&claim.hash).is_some_and(|e| e.owner != claim.session) {
            return Ok(Claim::Spent);
        }
        let keys = LockKey::both(claim);
        if keys.iter().any(|k| s.locks.get(k).is_some_and(|l| l.blocks(claim, now))) {
            return Ok(Claim::InFlight);
        }
        let outcome = s.claim(&claim.hash, &claim.session, claim.keep_until, self.capacity)?;
        for key in keys {
            s.locks.insert(key, Lock::of(claim));
        }
        Ok(outcome)
    }

    async fn release_handoff(&self, claim: &HandoffClaim, how: HandoffRelease) -> Result<(), StoreError> {
        let mut s = self.lock();
        for key in LockKey::both(claim) {
            let Some(lock) = s.locks.get_mut(&key).filter(|l| l.hash == claim.hash) else { continue };
            match how {
                HandoffRelease::Kept => lock.busy_until = 0,
                HandoffRelease::Refused | HandoffRelease::Granted => {
                    s.locks.remove(&key);
                }
            }
        }
        if how == HandoffRelease::Refused {
            s.release(&claim.hash, &claim.session);
        }
        Ok(())
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        Ok(self.lock().prune(now))
    }

    async fn size(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.lock().by_hash.len() as u64))
    }
}
