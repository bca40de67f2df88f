//! Where sessions and spent block hashes live: the [`SessionStore`] and [`SpentSet`] traits,
//! with the invariants every backend must keep, and the in-memory backend.
//!
//! Both traits are object safe (`Arc<dyn SessionStore>`), so a backend can be chosen at run time
//! from configuration. Times are Unix seconds passed in by the caller (the layer's clock), so
//! every instance of a deployment applies one notion of "expired".

use std::sync::Arc;

use async_trait::async_trait;

use serde::{Deserialize, Serialize};

use crate::nano::{Address, BlockHash, Raw};
use crate::session::{Session, SessionId, SessionKey};

#[cfg(feature = "test-util")]
pub mod conformance;
#[cfg(feature = "file")]
mod file;
mod instrumented;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::{RedisOptions, RedisStore};
#[cfg(feature = "file")]
pub use file::FileStore;
pub use memory::{MemorySessionStore, MemorySpentSet};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};

/// How long after `expires_at` a session stays stored and its amount reserved, in seconds.
///
/// A retry that arrived in time may still be verifying when the session expires (the
/// confirmation wait, node round trips); the grace keeps its session from being pruned or its
/// amount reissued under it, which would burn the payment. The layer applies it by passing
/// `now - SESSION_GRACE_SECS` as the time before which sessions count as gone; backends with
/// native expiry (Redis) add it to their TTLs. It also absorbs clock differences of up to
/// this much between instances and the store.
pub const SESSION_GRACE_SECS: u64 = 60;

/// A session as a store holds it: everything but the id, which stays with the client, filed
/// under the id's [`SessionKey`]. What lookups by key or by amount return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredSession {
    /// The key the session is filed under ([`SessionId::key`]).
    pub key: SessionKey,
    /// The merchant account to pay.
    pub pay_to: Address,
    /// The base price in raw, without the tag.
    pub price: Raw,
    /// The session's tag.
    pub tag: u64,
    /// The exact amount to pay: price plus tag.
    pub amount: Raw,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
    /// The confirmed send the confirmation watcher matched to this session, if any
    /// ([`SessionStore::record_payment`]).
    pub watched: Option<WatchedPayment>,
}

/// A confirmed send to the merchant that a confirmation watcher verified (hash from contents,
/// signature, destination, amount derived from the ledger, first seen after the session was
/// created) and matched to a pending session by its exact amount. A retry for that session is
/// settled from it without asking the node again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedPayment {
    /// The send block's hash.
    pub block: BlockHash,
    /// The account that sent it.
    pub payer: Address,
    /// The node's first-seen time of the block (Unix seconds).
    pub first_seen: u64,
}

impl StoredSession {
    /// What a store keeps of `session`.
    pub fn of(session: &Session) -> Self {
        StoredSession {
            key: session.id.key(),
            pay_to: session.pay_to,
            price: session.price,
            tag: session.tag,
            amount: session.amount,
            created_at: session.created_at,
            expires_at: session.expires_at,
            watched: None,
        }
    }

    /// The session again, with the id it was looked up by.
    pub fn with_id(self, id: SessionId) -> Session {
        Session {
            id,
            pay_to: self.pay_to,
            price: self.price,
            tag: self.tag,
            amount: self.amount,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }

    /// True once `now` is past `expires_at` (as [`Session::is_expired`]).
    pub fn is_expired(&self, now: u64) -> bool {
        now > self.expires_at
    }
}

/// What persistent backends write of a session: a [`StoredSession`] without its key (the key
/// is where the record is filed).
#[derive(Serialize, Deserialize)]
#[cfg_attr(not(any(feature = "file", feature = "redis", feature = "postgres")), allow(dead_code))]
pub(crate) struct Record {
    pay_to: Address,
    price: Raw,
    tag: u64,
    amount: Raw,
    created_at: u64,
    expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watched: Option<WatchedPayment>,
}

#[cfg_attr(not(any(feature = "file", feature = "redis", feature = "postgres")), allow(dead_code))]
impl Record {
    pub(crate) fn to_json(s: &Session) -> String {
        Self::stored_json(&StoredSession::of(s))
    }

    /// The record of `s` (its key aside), as JSON.
    pub(crate) fn stored_json(s: &StoredSession) -> String {
        let record = Record {
            pay_to: s.pay_to,
            price: s.price,
            tag: s.tag,
            amount: s.amount,
            created_at: s.created_at,
            expires_at: s.expires_at,
            watched: s.watched,
        };
        serde_json::to_string(&record).expect("records serialize")
    }

    /// The record filed under `key`.
    pub(crate) fn stored(self, key: SessionKey) -> StoredSession {
        StoredSession {
            key,
            pay_to: self.pay_to,
            price: self.price,
            tag: self.tag,
            amount: self.amount,
            created_at: self.created_at,
            expires_at: self.expires_at,
            watched: self.watched,
        }
    }

    #[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
    pub(crate) fn from_json(
        backend: &'static str,
        json: &[u8],
        key: SessionKey,
    ) -> Result<StoredSession, StoreError> {
        serde_json::from_slice::<Record>(json)
            .map(|r| r.stored(key))
            .map_err(|e| StoreError::new(backend, format!("bad session record: {e}")))
    }
}

/// A backend failure. The layer answers `503 store_unavailable` and grants nothing.
///
/// The message must never contain credentials (connection URLs with passwords).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct StoreError {
    /// Which backend failed (`"memory"`, `"redis"`, …).
    pub backend: &'static str,
    /// What went wrong, safe to log.
    pub message: String,
}

impl StoreError {
    /// A new error for `backend`.
    pub fn new(backend: &'static str, message: impl Into<String>) -> Self {
        StoreError { backend, message: message.into() }
    }
}

/// The outcome of [`SessionStore::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// The session is stored.
    Inserted,
    /// Another pending (unexpired) session already has this `(pay_to, amount)`; nothing was
    /// stored. The caller draws a new tag.
    AmountInUse,
    /// The store holds its maximum of pending sessions; nothing was stored.
    Full,
}

/// Pending payment sessions.
///
/// Invariants every implementation must keep (the conformance tests check them):
/// 1. **Amount uniqueness**: no two stored, unexpired sessions share `(pay_to, amount)`.
///    [`insert`](SessionStore::insert) checks and stores atomically, across every instance that
///    shares the backend. A session whose `expires_at < now` (the `now` passed in) does not
///    block its amount; backends with native expiry may hold it up to
///    [`SESSION_GRACE_SECS`] longer, never shorter.
/// 2. **Take once**: of any number of concurrent [`take`](SessionStore::take) calls for one id,
///    across all instances, exactly one returns the session.
/// 3. **Bounded**: a store never holds more than its capacity; when full (after dropping expired
///    sessions) `insert` answers [`Insert::Full`].
/// 4. **Expiry**: sessions are removed some time after `expires_at`, natively (TTL) or by
///    [`prune`](SessionStore::prune). A store may keep an expired session until then; callers
///    check `expires_at` themselves.
/// 5. **No ids at rest**: persistent stores key sessions and amount reservations by
///    [`SessionId::key`] and never write the id itself.
/// 6. **Amount lookup**: [`find_by_amount`](SessionStore::find_by_amount) returns the stored
///    session holding `(pay_to, amount)` (by 1 there is at most one unexpired one), shared by
///    every instance.
/// 7. **One match**: [`record_payment`](SessionStore::record_payment) sets a session's
///    watched payment at most once, atomically across instances.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores `session` unless its amount is in use or the store is full. `now` decides which
    /// stored sessions count as expired.
    async fn insert(&self, session: &Session, now: u64) -> Result<Insert, StoreError>;

    /// The session filed under `key`, if stored (expired or not).
    async fn get_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError>;

    /// Removes the session filed under `key` and returns it; exactly one concurrent caller
    /// gets `Some`.
    async fn take_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError>;

    /// An id shared with the [`SpentSet`] that can claim a block and take a session of this
    /// store in one transaction ([`SpentSet::claim_and_take`]); `None` (the default) for a
    /// store that shares none.
    fn transaction_domain(&self) -> Option<u64> {
        None
    }

    /// The stored session whose amount reservation is `(pay_to, amount)`, unless it expired
    /// before `now`: how a handed-over block finds its session when the client did not echo
    /// the id (spec §9 step 2). A lookup key, never proof of anything.
    async fn find_by_amount(
        &self,
        pay_to: &Address,
        amount: Raw,
        now: u64,
    ) -> Result<Option<StoredSession>, StoreError>;

    /// Records that `payment` pays the session filed under `key` (a confirmation watcher's
    /// match), so [`get_by_key`](SessionStore::get_by_key) and the other lookups return it in
    /// [`StoredSession::watched`]. Returns `false`, changing nothing, when no such session is
    /// stored or it already has a match: the first match stands (a second send of the same
    /// amount is no payment of this session).
    async fn record_payment(&self, key: &SessionKey, payment: &WatchedPayment) -> Result<bool, StoreError>;

    /// Removes sessions with `expires_at < now`; returns how many were removed.
    async fn prune(&self, now: u64) -> Result<u64, StoreError>;

    /// The most pending sessions this store holds, if it has a bound. The layer refuses a tag
    /// modulus below it, since a full tag space would make every 402 a 503 before the store is full.
    fn capacity(&self) -> Option<u64> {
        None
    }

    /// How many sessions are stored (for monitoring), if the backend can tell cheaply.
    async fn pending_count(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// The backend's name, for metric labels (`"memory"`, `"redis"`, …).
    fn backend(&self) -> &'static str {
        "custom"
    }

    /// The session with this id, if stored (expired or not).
    async fn get(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.get_by_key(&id.key()).await?.map(|s| s.with_id(*id)))
    }

    /// Removes the session with this id and returns it; exactly one concurrent caller gets `Some`.
    async fn take(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        Ok(self.take_by_key(&id.key()).await?.map(|s| s.with_id(*id)))
    }
}

/// The outcome of [`SpentSet::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This call claimed the hash for the session.
    New,
    /// The hash was already claimed for this same session by an earlier attempt whose session
    /// consumption did not complete (e.g. the store failed in between). The claim stands and
    /// the attempt may proceed: a session can be consumed only once, so this cannot grant twice.
    Reentered,
    /// Another session claimed the hash: it is spent.
    Spent,
    /// Only from [`SpentSet::claim_handoff`]: another block on the same `previous` or for the
    /// same session holds its lock, or an attempt with this very block is still running.
    /// Nothing was written; the caller answers `payment_in_flight`.
    InFlight,
}

/// A hand-off claim (spec §9 step 7): the block hash for the session, as
/// [`SpentSet::claim`], plus two locks that keep any other block from being published
/// meanwhile: one on the block's `previous` (a second block there would fork the payer's
/// account) and one on the session (a second block would make the payer pay twice).
///
/// Each lock names the block holding it, lapses at `lock_until` (the session's end: a block
/// that did not land by then can be replaced), and carries a short lease, `busy_until`, while
/// an attempt with the block runs, so concurrent submissions of one block publish it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoffClaim {
    /// The handed-over block's hash (computed from its fields).
    pub hash: BlockHash,
    /// The block's `previous`: the fork lock's key.
    pub previous: BlockHash,
    /// The session it pays: the session lock's key and the claim's owner.
    pub session: SessionKey,
    /// Retention of the spent entry, as for [`SpentSet::claim`].
    pub keep_until: u64,
    /// When both locks lapse (Unix seconds).
    pub lock_until: u64,
    /// When this attempt's lease lapses if it is never released (a crashed instance).
    pub busy_until: u64,
}

/// What [`SpentSet::claim_and_take`] did: the claim, and how the take went (`Ok(None)` when
/// the claim was [`Claim::Spent`] or the session was already gone).
pub type ClaimAndTake = (Claim, Result<Option<StoredSession>, StoreError>);

/// [`SpentSet::claim_and_take`] as two calls: the claim, then (unless spent) the take.
pub(crate) async fn claim_then_take<S: SpentSet + ?Sized>(
    spent: &S,
    sessions: &dyn SessionStore,
    hash: &BlockHash,
    session: &SessionKey,
    keep_until: u64,
) -> Result<ClaimAndTake, StoreError> {
    let claim = spent.claim_by_key(hash, session, keep_until).await?;
    if claim == Claim::Spent {
        return Ok((claim, Ok(None)));
    }
    Ok((claim, sessions.take_by_key(session).await))
}

/// How a hand-off attempt ended, for [`SpentSet::release_handoff`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffRelease {
    /// Refused before anything was published: the claim (if made exactly once) and both
    /// locks go, so the payer's account and the session are free again.
    Refused,
    /// Published or possibly published, not settled (node outage, not yet confirmed): claim
    /// and locks stay for the retry; only the attempt's lease ends.
    Kept,
    /// Granted: the claim stays as the spent entry; the locks go.
    Granted,
}

/// Block hashes that already paid for something, each with the session that claimed it.
///
/// Invariants every implementation must keep (the conformance tests check them):
/// 1. **Atomic claim**: [`claim`](SpentSet::claim) is insert-if-absent; of any number of
///    concurrent claims of one hash, across all instances sharing the backend, exactly one
///    returns [`Claim::New`]. Claims for another session get [`Claim::Spent`]; claims for the
///    owning session get [`Claim::Reentered`] and count as one more claim. (The seed's `has`
///    then `add` races; `claim` is the one operation that decides.)
/// 2. **Guarded release**: [`release`](SpentSet::release) removes the entry only if `session`
///    owns it and it was claimed exactly once, atomically. So a request that lost the race for
///    its session never frees a block that a concurrent request of the same session used.
/// 3. **Retention**: a claimed hash stays claimed at least until the `keep_until` it was first
///    claimed with. Dropping it earlier re-opens the block for replay, so a full store refuses
///    new claims with an error rather than evicting live entries.
/// 4. **Durability** (persistent backends): a claim that returned `New` survives a crash.
/// 5. **No ids at rest**: the owner is recorded as [`SessionId::key`], never the id.
/// 6. **Hand-off locks** ([`claim_handoff`](SpentSet::claim_handoff)): in one atomic step
///    shared by every instance, the claim is refused with [`Claim::Spent`] as `claim` would,
///    or with [`Claim::InFlight`] when the `previous` lock or the session lock is held by
///    another block and has not lapsed (`lock_until >= now`), or either is held by this block
///    with an unexpired lease (`busy_until >= now`); otherwise the claim is made as `claim`
///    makes it and both locks are (re)written for this block. So of concurrent hand-offs of
///    two blocks on one `previous`, or for one session, exactly one proceeds, and of
///    concurrent submissions of one block, one at a time. Locks are removed by
///    [`release_handoff`](SpentSet::release_handoff) and by `prune` once lapsed.
#[async_trait]
pub trait SpentSet: Send + Sync + 'static {
    /// The key of the session that claimed the hash, if any (a cheap pre-check; `claim`
    /// decides). Compare it with [`SessionId::key`].
    async fn owner(&self, hash: &BlockHash) -> Result<Option<SessionKey>, StoreError>;

    /// Claims the hash for the session filed under `session` until `keep_until` (Unix
    /// seconds); see [`Claim`].
    async fn claim_by_key(
        &self,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
    ) -> Result<Claim, StoreError>;

    /// Claims the hash for the session filed under `session` and, unless it is
    /// [`Claim::Spent`], takes that session from `sessions`: the claim, and how the take went
    /// (an `Err` of the take leaves the claim made). Both are durable when it returns.
    ///
    /// Provided as the two calls in turn. A backend that is also `sessions` (same
    /// [`transaction_domain`](SessionStore::transaction_domain)) does both in one
    /// transaction, so a grant waits for one commit instead of two.
    async fn claim_and_take(
        &self,
        sessions: &dyn SessionStore,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
    ) -> Result<ClaimAndTake, StoreError> {
        claim_then_take(self, sessions, hash, session, keep_until).await
    }

    /// Undoes a claim that `session` made exactly once, because its session was consumed by a
    /// concurrent request and the payment was not used. Otherwise does nothing.
    async fn release_by_key(&self, hash: &BlockHash, session: &SessionKey) -> Result<(), StoreError>;

    /// The claim of a handed-over block with its locks (invariant 6); never
    /// [`Claim::InFlight`] for a block whose locks and lease are its own and lapsed.
    async fn claim_handoff(&self, claim: &HandoffClaim, now: u64) -> Result<Claim, StoreError>;

    /// Ends one attempt of a [`claim_handoff`](SpentSet::claim_handoff) claim; see
    /// [`HandoffRelease`]. Touches only locks this block holds, and the spent entry only as
    /// [`release_by_key`](SpentSet::release_by_key) would.
    async fn release_handoff(&self, claim: &HandoffClaim, how: HandoffRelease) -> Result<(), StoreError>;

    /// Claims the hash for `session` until `keep_until`; see [`Claim`].
    async fn claim(
        &self,
        hash: &BlockHash,
        session: &SessionId,
        keep_until: u64,
    ) -> Result<Claim, StoreError> {
        self.claim_by_key(hash, &session.key(), keep_until).await
    }

    /// [`release_by_key`](SpentSet::release_by_key) for a session id.
    async fn release(&self, hash: &BlockHash, session: &SessionId) -> Result<(), StoreError> {
        self.release_by_key(hash, &session.key()).await
    }

    /// Removes entries whose `keep_until < now`, and hand-off locks lapsed before `now`;
    /// returns how many entries were removed.
    async fn prune(&self, now: u64) -> Result<u64, StoreError>;

    /// How many hashes are held (for monitoring), if the backend can tell cheaply.
    async fn size(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// The backend's name, for metric labels (`"memory"`, `"redis"`, …).
    fn backend(&self) -> &'static str {
        "custom"
    }
}

/// One hand-off lock as a backend keeps it: the block holding it, when it lapses, and the
/// lease of the attempt running with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lock {
    pub(crate) hash: BlockHash,
    pub(crate) until: u64,
    pub(crate) busy_until: u64,
}

#[cfg_attr(not(any(feature = "file", feature = "postgres")), allow(dead_code))]
impl Lock {
    /// The lock `claim` writes.
    pub(crate) fn of(claim: &HandoffClaim) -> Self {
        Lock { hash: claim.hash, until: claim.lock_until, busy_until: claim.busy_until }
    }

    /// The two lock keys of a hand-off claim in byte-keyed backends: `p` ‖ previous and
    /// `s` ‖ session key.
    pub(crate) fn keys(claim: &HandoffClaim) -> [Vec<u8>; 2] {
        [
            [b"p".as_slice(), claim.previous.as_bytes()].concat(),
            [b"s".as_slice(), claim.session.as_bytes()].concat(),
        ]
    }

    /// Whether this lock keeps `claim` out at `now` (`SpentSet` invariant 6).
    pub(crate) fn blocks(&self, claim: &HandoffClaim, now: u64) -> bool {
        if self.hash == claim.hash {
            self.busy_until >= now
        } else {
            self.until >= now
        }
    }

    /// hash (32) ‖ until BE (8) ‖ busy_until BE (8).
    pub(crate) fn encode(&self) -> [u8; 48] {
        let mut v = [0u8; 48];
        v[..32].copy_from_slice(self.hash.as_bytes());
        v[32..40].copy_from_slice(&self.until.to_be_bytes());
        v[40..].copy_from_slice(&self.busy_until.to_be_bytes());
        v
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Self> {
        let v: &[u8; 48] = v.try_into().ok()?;
        Some(Lock {
            hash: BlockHash::from_bytes(v[..32].try_into().expect("32 bytes")),
            until: u64::from_be_bytes(v[32..40].try_into().expect("8 bytes")),
            busy_until: u64::from_be_bytes(v[40..].try_into().expect("8 bytes")),
        })
    }
}

/// A session store and spent set chosen together, e.g. from a URL with [`connect`].
#[derive(Clone)]
pub struct Stores {
    /// The session store.
    pub sessions: Arc<dyn SessionStore>,
    /// The spent set.
    pub spent: Arc<dyn SpentSet>,
    /// Whether the backend survives a restart and can be shared by instances
    /// (`false` only for `memory`).
    pub persistent: bool,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").field("persistent", &self.persistent).finish_non_exhaustive()
    }
}

impl Stores {
    /// Both stores wrapped so each operation's latency and errors reach the metrics catalog.
    pub(crate) fn instrumented(
        sessions: Arc<dyn SessionStore>,
        spent: Arc<dyn SpentSet>,
    ) -> (Arc<dyn SessionStore>, Arc<dyn SpentSet>) {
        (Arc::new(instrumented::Instrumented(sessions)), Arc::new(instrumented::Instrumented(spent)))
    }

    /// Both stores from one value implementing both traits (every backend here does).
    pub fn shared<T: SessionStore + SpentSet>(store: T, persistent: bool) -> Self {
        let store = Arc::new(store);
        Stores { sessions: store.clone(), spent: store, persistent }
    }

    /// Fresh in-memory stores (forgotten on restart).
    pub fn memory() -> Self {
        Stores {
            sessions: Arc::new(MemorySessionStore::default()),
            spent: Arc::new(MemorySpentSet::default()),
            persistent: false,
        }
    }
}

/// Opens the stores a URL names:
///
/// | URL | backend | feature |
/// |---|---|---|
/// | `memory` | in-process, forgotten on restart | always |
/// | `file:PATH` | embedded redb file | `file` (default) |
/// | `redis://…`, `rediss://…` | Redis | `redis` |
/// | `redis-cluster://h:p,h:p`, `rediss-cluster://…` | Redis Cluster | `redis` |
/// | `postgres://…`, `postgresql://…` | PostgreSQL | `postgres` |
///
/// Errors never contain the URL's credentials.
///
/// ```no_run
/// # async fn demo() -> Result<(), nanosession::store::StoreError> {
/// let stores = nanosession::store::connect("file:./nanosession.redb").await?;
/// // PaymentRequiredLayer::builder().stores(stores)…
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<Stores, StoreError> {
    let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
    match scheme {
        "memory" if url == "memory" => Ok(Stores::memory()),
        #[cfg(feature = "file")]
        "file" => {
            let path = &url["file:".len()..];
            if path.is_empty() {
                return Err(StoreError::new("file", "file: needs a path, e.g. file:./nanosession.redb"));
            }
            Ok(Stores::shared(FileStore::open(path).await?, true))
        }
        #[cfg(feature = "redis")]
        "redis" | "rediss" | "redis-cluster" | "rediss-cluster" => {
            Ok(Stores::shared(RedisStore::connect(url).await?, true))
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Stores::shared(PostgresStore::connect(url).await?, true)),
        // Reachable only when a backend's feature is off.
        #[allow(unreachable_patterns)]
        "file" | "redis" | "rediss" | "redis-cluster" | "rediss-cluster" | "postgres" | "postgresql" => {
            Err(StoreError::new(
                "config",
                format!("store {scheme:?} is not compiled in: enable the nanosession feature for it"),
            ))
        }
        _ => Err(StoreError::new(
            "config",
            "unknown store: expected memory, file:PATH, redis://… or postgres://…",
        )),
    }
}
