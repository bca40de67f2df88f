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

// Keyed by `SessionKey` like the persistent stores (the values are in-process only). Compact,
// since a bound of a million pending sessions must fit in a few hundred MiB: merchant accounts
// interned, amounts in 4-byte words (no 16-byte alignment padding), the amount derived
// from price and tag, the rare watched payment boxed.
#[derive(Debug, Default)]
struct Sessions {
    pay_tos: Vec<Address>,
    by_id: HashMap<SessionKey, Pending>,
    by_amount: HashMap<AmountKey, SessionKey>,
    /// `(expires_at, key)`, the time in 32 bits (until 2106) to keep the entries at 20 bytes.
    by_expiry: BTreeSet<(u32, SessionKey)>,
}

/// `(merchant index, amount)`, in 4-byte words: 20 bytes, no alignment padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AmountKey(u32, [u32; 4]);

fn words(raw: Raw) -> [u32; 4] {
    let v = raw.get();
    [(v >> 96) as u32, (v >> 64) as u32, (v >> 32) as u32, v as u32]
}

fn expiry(expires_at: u64) -> u32 {
    expires_at.min(u32::MAX as u64) as u32
}

#[derive(Debug, Clone)]
struct Pending {
    price: [u32; 4],
    tag: u64,
    expires_at: u64,
    /// `expires_at - created_at`.
    ttl: u32,
    pay_to: u32,
    watched: Option<Box<WatchedPayment>>,
}

fn whole(words: [u32; 4]) -> Raw {
    Raw::new(words.iter().fold(0u128, |v, w| (v << 32) | *w as u128))
}

impl Pending {
    fn amount_key(&self) -> AmountKey {
        AmountKey(self.pay_to, words(self.amount()))
    }

    fn amount(&self) -> Raw {
        // Checked when the session was issued.
        Raw::new(whole(self.price).get() + self.tag as u128)
    }

    fn stored(&self, key: SessionKey, pay_tos: &[Address]) -> StoredSession {
        StoredSession {
            key,
            pay_to: pay_tos[self.pay_to as usize],
            price: whole(self.price),
            tag: self.tag,
            amount: self.amount(),
            created_at: self.expires_at - self.ttl as u64,
            expires_at: self.expires_at,
            watched: self.watched.as_deref().copied(),
        }
    }
}

impl Sessions {
    fn with_capacity(capacity: usize) -> Self {
        Sessions {
            pay_tos: Vec::new(),
            by_id: HashMap::with_capacity(capacity),
            by_amount: HashMap::with_capacity(capacity),
            by_expiry: BTreeSet::new(),
        }
    }

    /// The index of a known merchant account, `None` for one no session was issued for.
    fn pay_to_index(&self, pay_to: &Address) -> Option<u32> {
        self.pay_tos.iter().position(|p| p == pay_to).map(|i| i as u32)
    }

    fn get(&self, key: &SessionKey) -> Option<StoredSession> {
        self.by_id.get(key).map(|e| e.stored(*key, &self.pay_tos))
    }

    fn remove(&mut self, id: &SessionKey) -> Option<StoredSession> {
        let e = self.by_id.remove(id)?;
        self.by_expiry.remove(&(expiry(e.expires_at), *id));
        let amount = e.amount_key();
        if self.by_amount.get(&amount) == Some(id) {
            self.by_amount.remove(&amount);
        }
        Some(e.stored(*id, &self.pay_tos))
    }

    fn prune(&mut self, now: u64) -> u64 {
        let mut removed = 0;
        while let Some(&(expires_at, id)) = self.by_expiry.first() {
            if expires_at as u64 >= now {
                break;
            }
            self.remove(&id);
            removed += 1;
        }
        removed
    }
}

/// Maps are allocated up to this many sessions when the store is created, so inserts never
/// rehash the whole map under the lock; beyond it they grow as they fill.
const PREALLOCATED: usize = 1 << 20;

impl MemorySessionStore {
    /// A store holding at most `capacity` pending sessions.
    pub fn with_capacity(capacity: usize) -> Self {
        MemorySessionStore {
            capacity,
            inner: Mutex::new(Sessions::with_capacity(capacity.min(PREALLOCATED))),
        }
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
        let key = session.id.key();
        let mut s = self.lock();
        let pay_to = match s.pay_to_index(&session.pay_to) {
            Some(index) => index,
            None => {
                s.pay_tos.push(session.pay_to);
                (s.pay_tos.len() - 1) as u32
            }
        };
        let amount = AmountKey(pay_to, words(session.amount));
        if let Some(holder) = s.by_amount.get(&amount).copied() {
            match s.by_id.get(&holder) {
                Some(h) if h.expires_at >= now => return Ok(Insert::AmountInUse),
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
        if s.by_id.contains_key(&key) {
            // 128-bit ids do not collide; refuse rather than overwrite if one ever does.
            return Ok(Insert::AmountInUse);
        }
        let entry = Pending {
            price: words(session.price),
            tag: session.tag,
            expires_at: session.expires_at,
            // A TTL past u32 seconds (136 years) is clamped; created_at is only compared
            // with first-seen times.
            ttl: session.expires_at.saturating_sub(session.created_at).min(u32::MAX as u64) as u32,
            pay_to,
            watched: None,
        };
        s.by_amount.insert(amount, key);
        s.by_expiry.insert((expiry(session.expires_at), key));
        s.by_id.insert(key, entry);
        Ok(Insert::Inserted)
    }

    async fn get_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        Ok(self.lock().get(key))
    }

    async fn take_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        Ok(self.lock().remove(key))
    }

    async fn record_payment(&self, key: &SessionKey, payment: &WatchedPayment) -> Result<bool, StoreError> {
        let mut s = self.lock();
        match s.by_id.get_mut(key) {
            Some(session) if session.watched.is_none() => {
                session.watched = Some(Box::new(*payment));
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
        let Some(index) = s.pay_to_index(pay_to) else { return Ok(None) };
        let holder = s.by_amount.get(&AmountKey(index, words(amount))).and_then(|key| s.get(key));
        Ok(holder.filter(|h| !h.is_expired(now)))
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
