//! In-process stores: fast, bounded, correct under concurrency, and gone after a restart
//! (so a replay of an old payment becomes possible then: use a persistent store in production).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

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

/// Pending sessions indexed by key, amount and expiry, with the rules every store keeps
/// (one live session per amount, a bound that only expired sessions can make room under): the
/// whole memory store, and the in-memory half of the file store, which also keeps each
/// session as a row on disk and mirrors what these methods report as gone.
// Keyed by `SessionKey` like the persistent stores (the values are in-process only). Compact,
// since a bound of a million pending sessions must fit in a few hundred MiB: merchant accounts
// interned, amounts in 4-byte words (no 16-byte alignment padding), the amount derived
// from price and tag, the rare watched payment boxed.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    pay_tos: Vec<Address>,
    by_id: HashMap<SessionKey, Pending>,
    by_amount: HashMap<AmountKey, SessionKey>,
    /// `(expires_at, key)`, the time in 32 bits (until 2106) to keep the entries at 20 bytes.
    by_expiry: BTreeSet<(u32, SessionKey)>,
    /// The slot of the next session (wrapping): see [`RowId`].
    next_slot: u32,
}

/// Where the file store files a session's row: expiry, then a slot counted up per session, so
/// new rows append to the end of the table. Unique unless 2^32 sessions share one expiry second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowId {
    pub(crate) expires_at: u32,
    pub(crate) slot: u32,
}

impl RowId {
    /// The row of a session expiring at `expires_at` (clamped as the index clamps it).
    pub(crate) fn new(expires_at: u64, slot: u32) -> Self {
        RowId { expires_at: expiry(expires_at), slot }
    }

    /// Big-endian expiry, then slot: rows sort by expiry, then by age.
    pub(crate) fn to_bytes(self) -> [u8; 8] {
        ((self.expires_at as u64) << 32 | self.slot as u64).to_be_bytes()
    }

    pub(crate) fn from_bytes(bytes: [u8; 8]) -> Self {
        let v = u64::from_be_bytes(bytes);
        RowId { expires_at: (v >> 32) as u32, slot: v as u32 }
    }
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
    /// Unix seconds, until 2106 (later expiries are clamped to then).
    expires_at: u32,
    /// `expires_at - created_at`.
    ttl: u32,
    pay_to: u32,
    slot: u32,
    watched: Option<Box<WatchedPayment>>,
}

fn whole(words: [u32; 4]) -> Raw {
    Raw::new(words.iter().fold(0u128, |v, w| (v << 32) | *w as u128))
}

impl Pending {
    fn row(&self) -> RowId {
        RowId { expires_at: self.expires_at, slot: self.slot }
    }

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
            created_at: (self.expires_at as u64).saturating_sub(self.ttl as u64),
            expires_at: self.expires_at as u64,
            watched: self.watched.as_deref().copied(),
        }
    }
}

impl Sessions {
    /// Maps allocated for `capacity` sessions (up to [`PREALLOCATED`]).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.min(PREALLOCATED);
        Sessions {
            pay_tos: Vec::new(),
            by_id: HashMap::with_capacity(capacity),
            by_amount: HashMap::with_capacity(capacity),
            by_expiry: BTreeSet::new(),
            next_slot: 0,
        }
    }

    /// The index of a known merchant account, `None` for one no session was issued for.
    fn pay_to_index(&self, pay_to: &Address) -> Option<u32> {
        self.pay_tos.iter().position(|p| p == pay_to).map(|i| i as u32)
    }

    /// Locks `sessions`. No user code runs under this lock and no step panics midway, so even
    /// a poisoned lock guards consistent maps: keep serving.
    pub(crate) fn lock(sessions: &Mutex<Sessions>) -> MutexGuard<'_, Sessions> {
        sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many sessions are held.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, key: &SessionKey) -> Option<StoredSession> {
        self.by_id.get(key).map(|e| e.stored(*key, &self.pay_tos))
    }

    /// Where the session filed under `key` has its row.
    pub(crate) fn row(&self, key: &SessionKey) -> Option<RowId> {
        self.by_id.get(key).map(Pending::row)
    }

    /// The unexpired session waiting for exactly `amount` to `pay_to`.
    pub(crate) fn find(&self, pay_to: &Address, amount: Raw, now: u64) -> Option<StoredSession> {
        let index = self.pay_to_index(pay_to)?;
        let holder = self.by_amount.get(&AmountKey(index, words(amount))).and_then(|key| self.get(key));
        holder.filter(|h| !h.is_expired(now))
    }

    /// [`SessionStore::insert`]'s rules, for `session` (filed under `session.key`); sessions
    /// removed to make room (an expired holder of the amount, pruned ones) go to `gone`.
    pub(crate) fn insert(
        &mut self,
        session: &StoredSession,
        now: u64,
        capacity: usize,
        gone: &mut dyn FnMut(RowId),
    ) -> Insert {
        let key = session.key;
        let pay_to = self.intern(&session.pay_to);
        let amount = AmountKey(pay_to, words(session.amount));
        if let Some(holder) = self.by_amount.get(&amount).copied() {
            match self.by_id.get(&holder) {
                Some(h) if h.expires_at as u64 >= now => return Insert::AmountInUse,
                _ => {
                    if let Some((_, row)) = self.remove(&holder) {
                        gone(row);
                    }
                }
            }
        }
        if self.by_id.len() >= capacity {
            // Full: only expired sessions may make room.
            self.prune(now, gone);
            if self.by_id.len() >= capacity {
                return Insert::Full;
            }
        }
        if self.by_id.contains_key(&key) {
            // 128-bit ids do not collide; refuse rather than overwrite if one ever does.
            return Insert::AmountInUse;
        }
        let slot = self.next_slot;
        self.next_slot = slot.wrapping_add(1);
        self.put(session, pay_to, amount, slot);
        Insert::Inserted
    }

    /// Holds `session` as it was stored in `row`, without [`insert`](Self::insert)'s checks
    /// (a file store loading its rows, oldest first).
    pub(crate) fn restore(&mut self, session: &StoredSession, row: RowId) {
        let pay_to = self.intern(&session.pay_to);
        self.put(session, pay_to, AmountKey(pay_to, words(session.amount)), row.slot);
        self.next_slot = self.next_slot.max(row.slot.wrapping_add(1));
    }

    fn intern(&mut self, pay_to: &Address) -> u32 {
        match self.pay_to_index(pay_to) {
            Some(index) => index,
            None => {
                self.pay_tos.push(*pay_to);
                (self.pay_tos.len() - 1) as u32
            }
        }
    }

    fn put(&mut self, session: &StoredSession, pay_to: u32, amount: AmountKey, slot: u32) {
        let row = RowId::new(session.expires_at, slot);
        let entry = Pending {
            price: words(session.price),
            tag: session.tag,
            expires_at: row.expires_at,
            // A TTL past u32 seconds (136 years) is clamped; created_at is only compared
            // with first-seen times.
            ttl: session.expires_at.saturating_sub(session.created_at).min(u32::MAX as u64) as u32,
            pay_to,
            slot,
            watched: session.watched.map(Box::new),
        };
        self.by_amount.insert(amount, session.key);
        self.by_expiry.insert((row.expires_at, session.key));
        self.by_id.insert(session.key, entry);
    }

    /// Records the watcher's payment on a session that has none: the updated session.
    pub(crate) fn record(
        &mut self,
        key: &SessionKey,
        payment: &WatchedPayment,
    ) -> Option<(StoredSession, RowId)> {
        match self.by_id.get_mut(key) {
            Some(session) if session.watched.is_none() => {
                session.watched = Some(Box::new(*payment));
                let row = session.row();
                self.get(key).map(|s| (s, row))
            }
            _ => None,
        }
    }

    /// Removes the session filed under `id`: what it was, and where its row was.
    pub(crate) fn remove(&mut self, id: &SessionKey) -> Option<(StoredSession, RowId)> {
        let e = self.by_id.remove(id)?;
        self.by_expiry.remove(&(e.expires_at, *id));
        let amount = e.amount_key();
        if self.by_amount.get(&amount) == Some(id) {
            self.by_amount.remove(&amount);
        }
        Some((e.stored(*id, &self.pay_tos), e.row()))
    }

    /// Removes every session that expired before `now` (their rows go to `gone`); how many.
    pub(crate) fn prune(&mut self, now: u64, gone: &mut dyn FnMut(RowId)) -> u64 {
        let mut removed = 0;
        while let Some(&(expires_at, id)) = self.by_expiry.first() {
            if expires_at as u64 >= now {
                break;
            }
            match self.remove(&id) {
                Some((_, row)) => gone(row),
                None => {
                    self.by_expiry.pop_first();
                }
            }
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
        MemorySessionStore { capacity, inner: Mutex::new(Sessions::with_capacity(capacity)) }
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        Sessions::lock(&self.inner)
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
        Ok(Some(self.lock().len() as u64))
    }

    async fn insert(&self, session: &Session, now: u64) -> Result<Insert, StoreError> {
        let session = StoredSession::of(session);
        Ok(self.lock().insert(&session, now, self.capacity, &mut |_| {}))
    }

    async fn get_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        Ok(self.lock().get(key))
    }

    async fn take_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        Ok(self.lock().remove(key).map(|(session, _)| session))
    }

    async fn record_payment(&self, key: &SessionKey, payment: &WatchedPayment) -> Result<bool, StoreError> {
        Ok(self.lock().record(key, payment).is_some())
    }

    async fn find_by_amount(
        &self,
        pay_to: &Address,
        amount: Raw,
        now: u64,
    ) -> Result<Option<StoredSession>, StoreError> {
        Ok(self.lock().find(pay_to, amount, now))
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        Ok(self.lock().prune(now, &mut |_| {}))
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
