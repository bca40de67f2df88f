//! The conformance suite every store backend must pass (feature `test-util`).
//!
//! Each function checks one invariant of [`SessionStore`] or [`SpentSet`] and panics with a
//! message naming it if the store breaks it. The functions use fresh random merchants and
//! hashes, so one backend instance (one Redis, one database) can run them all concurrently.
//! The [`session_store_conformance!`](crate::session_store_conformance) and
//! [`spent_set_conformance!`](crate::spent_set_conformance) macros turn them into one
//! `#[tokio::test]` each:
//!
//! ```no_run
//! // in tests/my_store.rs of a crate with `nanosession = { features = ["test-util"] }`:
//! use std::sync::Arc;
//! use nanosession::store::{MemorySessionStore, MemorySpentSet};
//! nanosession::session_store_conformance!(async { Arc::new(MemorySessionStore::with_capacity(64)) }, capacity = 64);
//! nanosession::spent_set_conformance!(async { Arc::new(MemorySpentSet::default()) });
//! ```

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;

use super::{
    Claim, HandoffClaim, HandoffRelease, Insert, SessionStore, SpentSet, StoredSession, WatchedPayment,
};
use crate::nano::{Address, BlockHash, PublicKey, Raw};
use crate::session::{unix_now, Session, SessionId, SessionKey};

/// How many tasks race in the concurrency checks.
pub const RACERS: usize = 32;

/// A fresh random merchant, so concurrent checks never share an amount index.
pub fn random_merchant() -> Address {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    Address::from(PublicKey::from_bytes(key))
}

/// A fresh random block hash.
pub fn random_hash() -> BlockHash {
    let mut hash = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut hash);
    BlockHash::from_bytes(hash)
}

/// A session for `pay_to` moving `price + tag`, created `age` seconds ago, living `ttl` seconds.
pub fn session(pay_to: Address, price: u128, tag: u64, age: u64, ttl: u64) -> Session {
    let created_at = unix_now() - age;
    Session {
        id: SessionId::generate(),
        pay_to,
        price: Raw::new(price),
        tag,
        amount: Raw::new(price + tag as u128),
        created_at,
        expires_at: created_at + ttl,
    }
}

/// Insert, get and take round-trip the session unchanged; take removes it.
pub async fn session_round_trip(store: Arc<dyn SessionStore>) {
    let s = session(random_merchant(), 1_000_000, 42, 0, 300);
    assert_eq!(store.insert(&s, unix_now()).await.unwrap(), Insert::Inserted, "insert");
    assert_eq!(store.get(&s.id).await.unwrap().as_ref(), Some(&s), "get returns what was inserted");
    assert_eq!(store.take(&s.id).await.unwrap().as_ref(), Some(&s), "take returns the session");
    assert_eq!(store.get(&s.id).await.unwrap(), None, "take removes the session");
    assert_eq!(store.take(&s.id).await.unwrap(), None, "take is once");
    assert_eq!(store.get(&SessionId::generate()).await.unwrap(), None, "unknown id");
}

/// A backend that reports its number of sessions counts inserts and takes (the metrics' gauge).
pub async fn session_pending_count(store: Arc<dyn SessionStore>) {
    let Some(before) = store.pending_count().await.unwrap() else { return };
    let (a, b) =
        (session(random_merchant(), 1_000_000, 1, 0, 300), session(random_merchant(), 1_000_000, 2, 0, 300));
    for s in [&a, &b] {
        assert_eq!(store.insert(s, unix_now()).await.unwrap(), Insert::Inserted);
    }
    assert_eq!(store.pending_count().await.unwrap(), Some(before + 2), "two inserted");
    assert!(store.take(&a.id).await.unwrap().is_some());
    assert_eq!(store.pending_count().await.unwrap(), Some(before + 1), "one taken");
}

/// No two pending sessions share `(pay_to, amount)`; other merchants and amounts are free.
pub async fn session_amount_is_unique(store: Arc<dyn SessionStore>) {
    let merchant = random_merchant();
    let a = session(merchant, 1_000_000, 7, 0, 300);
    assert_eq!(store.insert(&a, unix_now()).await.unwrap(), Insert::Inserted);
    let same_amount = session(merchant, 1_000_000, 7, 0, 300);
    assert_eq!(store.insert(&same_amount, unix_now()).await.unwrap(), Insert::AmountInUse, "same amount");
    assert_eq!(store.get(&same_amount.id).await.unwrap(), None, "a refused session is not stored");
    let other_tag = session(merchant, 1_000_000, 8, 0, 300);
    assert_eq!(store.insert(&other_tag, unix_now()).await.unwrap(), Insert::Inserted, "other amount");
    let other_merchant = session(random_merchant(), 1_000_000, 7, 0, 300);
    assert_eq!(store.insert(&other_merchant, unix_now()).await.unwrap(), Insert::Inserted, "other merchant");
    // Once the holder is consumed, its amount is free again.
    store.take(&a.id).await.unwrap();
    let again = session(merchant, 1_000_000, 7, 0, 300);
    assert_eq!(store.insert(&again, unix_now()).await.unwrap(), Insert::Inserted, "amount freed by take");
}

/// Concurrent inserts of one amount: exactly one succeeds.
pub async fn session_amount_is_unique_under_races(store: Arc<dyn SessionStore>) {
    let merchant = random_merchant();
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(
                async move { store.insert(&session(merchant, 5_000_000, 3, 0, 300), unix_now()).await },
            )
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() == Insert::Inserted {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 1, "exactly one of {RACERS} racing inserts of one amount wins");
}

/// An expired session does not hold its amount.
pub async fn session_expired_amount_is_free(store: Arc<dyn SessionStore>) {
    let merchant = random_merchant();
    let old = session(merchant, 1_000_000, 9, 400, 300); // expired 100 s ago
    let _ = store.insert(&old, unix_now()).await.unwrap();
    let new = session(merchant, 1_000_000, 9, 0, 300);
    assert_eq!(
        store.insert(&new, unix_now()).await.unwrap(),
        Insert::Inserted,
        "expired holder blocks nothing"
    );
}

/// Of many concurrent takes of one session, exactly one gets it.
pub async fn session_take_once_under_races(store: Arc<dyn SessionStore>) {
    let s = session(random_merchant(), 1_000_000, 1, 0, 300);
    assert_eq!(store.insert(&s, unix_now()).await.unwrap(), Insert::Inserted);
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, id) = (store.clone(), s.id);
            tokio::spawn(async move { store.take(&id).await })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one of {RACERS} racing takes gets the session");
}

/// After `prune(now)`, no session with `expires_at < now` can be read; live ones stay.
pub async fn session_prune_removes_only_expired(store: Arc<dyn SessionStore>) {
    let merchant = random_merchant();
    let expired = session(merchant, 1_000_000, 1, 400, 300);
    let live = session(merchant, 1_000_000, 2, 0, 300);
    let _ = store.insert(&expired, expired.created_at).await.unwrap();
    assert_eq!(store.insert(&live, unix_now()).await.unwrap(), Insert::Inserted);
    store.prune(unix_now()).await.unwrap();
    assert_eq!(store.get(&expired.id).await.unwrap(), None, "expired session pruned");
    assert_eq!(store.get(&live.id).await.unwrap().as_ref(), Some(&live), "live session kept");
}

/// A store built with room for `capacity` sessions refuses the next one with [`Insert::Full`],
/// and has room again once a session is taken.
pub async fn session_store_is_bounded(store: Arc<dyn SessionStore>, capacity: usize) {
    let merchant = random_merchant();
    let mut first = None;
    for tag in 0..capacity as u64 {
        let s = session(merchant, 1_000_000, tag, 0, 300);
        assert_eq!(store.insert(&s, unix_now()).await.unwrap(), Insert::Inserted, "within capacity");
        first.get_or_insert(s.id);
    }
    assert_eq!(store.capacity(), Some(capacity as u64), "capacity() reports the bound");
    let over = session(merchant, 1_000_000, capacity as u64, 0, 300);
    assert_eq!(store.insert(&over, unix_now()).await.unwrap(), Insert::Full, "over capacity");
    store.take(&first.unwrap()).await.unwrap();
    assert_eq!(store.insert(&over, unix_now()).await.unwrap(), Insert::Inserted, "room after a take");
}

/// `find_by_amount` finds the stored session holding `(pay_to, amount)`, and nothing for
/// another amount, another merchant, an expired session or a taken one.
pub async fn session_find_by_amount(store: Arc<dyn SessionStore>) {
    let merchant = random_merchant();
    let s = session(merchant, 1_000_000, 7, 0, 300);
    assert_eq!(store.insert(&s, unix_now()).await.unwrap(), Insert::Inserted);
    let found = store.find_by_amount(&merchant, s.amount, unix_now()).await.unwrap();
    assert_eq!(found, Some(StoredSession::of(&s)), "found by its amount, with its key");
    assert_eq!(found.map(|f| f.with_id(s.id)), Some(s.clone()), "the id completes it");
    let other = Raw::new(s.amount.get() + 1);
    assert_eq!(store.find_by_amount(&merchant, other, unix_now()).await.unwrap(), None, "another amount");
    assert_eq!(
        store.find_by_amount(&random_merchant(), s.amount, unix_now()).await.unwrap(),
        None,
        "another merchant"
    );
    let later = s.expires_at + 1;
    assert_eq!(store.find_by_amount(&merchant, s.amount, later).await.unwrap(), None, "expired before now");
    assert!(store.take(&s.id).await.unwrap().is_some());
    assert_eq!(store.find_by_amount(&merchant, s.amount, unix_now()).await.unwrap(), None, "taken");
}

/// `record_payment` sets a session's watched payment once: every lookup returns it, a second
/// match is refused, a missing session is refused, and racing matches from many tasks leave
/// exactly one.
pub async fn session_records_one_payment(store: Arc<dyn SessionStore>) {
    let merchant = random_merchant();
    let s = session(merchant, 1_000_000, 9, 0, 300);
    assert_eq!(store.insert(&s, unix_now()).await.unwrap(), Insert::Inserted);
    let key = s.id.key();
    let paid =
        |n: u8| WatchedPayment { block: BlockHash::from_bytes([n; 32]), payer: merchant, first_seen: 7 };
    assert_eq!(store.get_by_key(&key).await.unwrap().unwrap().watched, None);
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let store = store.clone();
            let payment = paid(i as u8 + 1);
            tokio::spawn(async move { store.record_payment(&key, &payment).await.unwrap() })
        })
        .collect();
    let mut wins = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap() {
            wins.push(paid(i as u8 + 1));
        }
    }
    assert_eq!(wins.len(), 1, "exactly one of {RACERS} racing matches is recorded");
    let first = Some(wins[0]);
    assert_eq!(store.get_by_key(&key).await.unwrap().unwrap().watched, first, "get returns the match");
    assert_eq!(store.find_by_amount(&merchant, s.amount, unix_now()).await.unwrap().unwrap().watched, first);
    assert!(!store.record_payment(&key, &paid(200)).await.unwrap(), "the first match stands");
    assert_eq!(store.take(&s.id).await.unwrap().map(|t| t.id), Some(s.id));
    assert!(!store.record_payment(&key, &paid(201)).await.unwrap(), "no session, no match");
    assert!(store.get_by_key(&key).await.unwrap().is_none());
}

/// A hand-off claim of `hash` on `previous` for `session`, locks held for an hour.
pub fn handoff_claim(hash: BlockHash, previous: BlockHash, session: SessionKey) -> HandoffClaim {
    let now = unix_now();
    HandoffClaim {
        hash,
        previous,
        session,
        keep_until: now + 3600,
        lock_until: now + 3600,
        busy_until: now + 60,
    }
}

/// The hand-off locks (`SpentSet` invariant 6): a second block on the same `previous` or for
/// the same session is in flight while the first holds its locks; the same block is in flight
/// while an attempt holds the lease, and re-enters after `Kept`; `Refused` frees claim and
/// locks, `Granted` frees the locks and keeps the claim; lapsed locks block nothing; a hash
/// another session claimed is spent.
pub async fn spent_handoff_locks(spent: Arc<dyn SpentSet>) {
    let now = unix_now();
    let (s1, s2) = (SessionId::generate().key(), SessionId::generate().key());
    let (prev, prev2) = (random_hash(), random_hash());
    let a = handoff_claim(random_hash(), prev, s1);
    assert_eq!(spent.claim_handoff(&a, now).await.unwrap(), Claim::New, "first block");
    assert_eq!(spent.owner(&a.hash).await.unwrap(), Some(s1), "the claim is the spent entry");
    let fork = handoff_claim(random_hash(), prev, s2);
    assert_eq!(spent.claim_handoff(&fork, now).await.unwrap(), Claim::InFlight, "a fork waits");
    let twice = handoff_claim(random_hash(), prev2, s1);
    assert_eq!(
        spent.claim_handoff(&twice, now).await.unwrap(),
        Claim::InFlight,
        "a second block of the session waits"
    );
    assert_eq!(spent.owner(&fork.hash).await.unwrap(), None, "nothing was written for a refused claim");
    assert_eq!(
        spent.claim_handoff(&a, now).await.unwrap(),
        Claim::InFlight,
        "the same block while its attempt runs"
    );
    spent.release_handoff(&a, HandoffRelease::Kept).await.unwrap();
    assert_eq!(
        spent.claim_handoff(&fork, now).await.unwrap(),
        Claim::InFlight,
        "a kept claim keeps its locks"
    );
    assert_eq!(spent.claim_handoff(&a, now).await.unwrap(), Claim::Reentered, "the same block resumes");
    spent.release_handoff(&fork, HandoffRelease::Refused).await.unwrap();
    assert_eq!(
        spent.claim_handoff(&fork, now).await.unwrap(),
        Claim::InFlight,
        "another block cannot release the locks"
    );
    spent.release_handoff(&a, HandoffRelease::Granted).await.unwrap();
    assert_eq!(spent.owner(&a.hash).await.unwrap(), Some(s1), "a granted block stays spent");
    assert_eq!(spent.claim_handoff(&fork, now).await.unwrap(), Claim::New, "a granted block frees its locks");
    spent.release_handoff(&fork, HandoffRelease::Refused).await.unwrap();
    assert_eq!(spent.owner(&fork.hash).await.unwrap(), None, "a refused claim made once is gone");
    assert_eq!(spent.claim_handoff(&twice, now).await.unwrap(), Claim::New, "and so are its locks");
    let stolen = handoff_claim(twice.hash, random_hash(), s2);
    assert_eq!(spent.claim_handoff(&stolen, now).await.unwrap(), Claim::Spent, "another session's block");
    // Lapsed locks block nothing.
    let (prev3, s3) = (random_hash(), SessionId::generate().key());
    let mut old = handoff_claim(random_hash(), prev3, s3);
    old.lock_until = now - 1;
    old.busy_until = now - 1;
    assert_eq!(spent.claim_handoff(&old, now - 10).await.unwrap(), Claim::New);
    let after = handoff_claim(random_hash(), prev3, s3);
    assert_eq!(spent.claim_handoff(&after, now).await.unwrap(), Claim::New, "a lapsed lock is free");
    assert_eq!(
        spent.claim_handoff(&old, now).await.unwrap(),
        Claim::InFlight,
        "and now held by the other block"
    );
}

/// Of many concurrent hand-offs of different blocks on one `previous` (different sessions),
/// exactly one claims; of many concurrent submissions of one block, exactly one proceeds.
/// `others` are further handles on the same backend (other instances), used in turn.
pub async fn spent_handoff_locks_under_races(spent: Arc<dyn SpentSet>, others: Vec<Arc<dyn SpentSet>>) {
    let handles: Vec<Arc<dyn SpentSet>> = std::iter::once(spent).chain(others).collect();
    for same_block in [false, true] {
        let (previous, session) = (random_hash(), SessionId::generate().key());
        let block = random_hash();
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let spent = handles[i % handles.len()].clone();
                let claim = if same_block {
                    handoff_claim(block, previous, session)
                } else {
                    handoff_claim(random_hash(), previous, SessionId::generate().key())
                };
                tokio::spawn(async move { spent.claim_handoff(&claim, unix_now()).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().unwrap());
        }
        let new = outcomes.iter().filter(|c| **c == Claim::New).count();
        assert_eq!(new, 1, "exactly one of {RACERS} racing hand-offs proceeds (same block: {same_block})");
        assert!(outcomes.iter().all(|c| *c == Claim::New || *c == Claim::InFlight), "{outcomes:?}");
    }
}

/// `claim` is insert-if-absent per hash; the owner re-enters, others find it spent; `owner`
/// reports the claimer; `release` undoes only the owner's single claim.
pub async fn spent_claim_once(spent: Arc<dyn SpentSet>) {
    let hash = random_hash();
    let (alice, mallory) = (SessionId::generate(), SessionId::generate());
    let keep = unix_now() + 3600;
    assert_eq!(spent.owner(&hash).await.unwrap(), None, "fresh hash is not spent");
    assert_eq!(spent.claim(&hash, &alice, keep).await.unwrap(), Claim::New, "first claim wins");
    assert_eq!(spent.owner(&hash).await.unwrap(), Some(alice.key()), "owner is the claimer");
    assert_eq!(spent.claim(&hash, &mallory, keep).await.unwrap(), Claim::Spent, "another session loses");
    spent.release(&hash, &mallory).await.unwrap();
    assert_eq!(spent.owner(&hash).await.unwrap(), Some(alice.key()), "a non-owner cannot release");
    spent.release(&hash, &alice).await.unwrap();
    assert_eq!(spent.owner(&hash).await.unwrap(), None, "the owner's single claim is released");
    assert_eq!(spent.claim(&hash, &mallory, keep).await.unwrap(), Claim::New, "released hash can be claimed");
}

/// The owner re-entering counts as a second claim, and a claim made twice is never released.
pub async fn spent_reentered_claim_is_never_released(spent: Arc<dyn SpentSet>) {
    let hash = random_hash();
    let alice = SessionId::generate();
    let keep = unix_now() + 3600;
    assert_eq!(spent.claim(&hash, &alice, keep).await.unwrap(), Claim::New);
    assert_eq!(spent.claim(&hash, &alice, keep).await.unwrap(), Claim::Reentered, "owner re-enters");
    spent.release(&hash, &alice).await.unwrap();
    assert_eq!(spent.owner(&hash).await.unwrap(), Some(alice.key()), "a re-entered claim stays");
}

/// Of many concurrent claims of one hash by different sessions, exactly one wins; of many by
/// one session, exactly one is `New` and the rest re-enter.
pub async fn spent_claim_once_under_races(spent: Arc<dyn SpentSet>) {
    for same_session in [false, true] {
        let hash = random_hash();
        let keep = unix_now() + 3600;
        let shared = SessionId::generate();
        let tasks: Vec<_> = (0..RACERS)
            .map(|_| {
                let spent = spent.clone();
                let session = if same_session { shared } else { SessionId::generate() };
                tokio::spawn(async move { spent.claim(&hash, &session, keep).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().unwrap());
        }
        let new = outcomes.iter().filter(|c| **c == Claim::New).count();
        assert_eq!(new, 1, "exactly one of {RACERS} racing claims wins (same session: {same_session})");
        let others = if same_session { Claim::Reentered } else { Claim::Spent };
        assert!(outcomes.iter().all(|c| *c == Claim::New || *c == others), "{outcomes:?}");
    }
}

/// Pruning never drops an entry before its `keep_until`, and drops it after.
pub async fn spent_prune_respects_retention(spent: Arc<dyn SpentSet>) {
    let (live, old) = (random_hash(), random_hash());
    let session = SessionId::generate();
    let now = unix_now();
    assert_eq!(spent.claim(&live, &session, now + 3600).await.unwrap(), Claim::New);
    assert_eq!(spent.claim(&old, &session, now + 1).await.unwrap(), Claim::New);
    spent.prune(now).await.unwrap();
    assert!(spent.owner(&live).await.unwrap().is_some(), "prune keeps entries within retention");
    assert!(spent.owner(&old).await.unwrap().is_some(), "prune keeps entries until keep_until");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    spent.prune(unix_now()).await.unwrap();
    assert!(spent.owner(&old).await.unwrap().is_none(), "entries past keep_until are dropped");
    assert!(spent.owner(&live).await.unwrap().is_some(), "live entries survive");
}

/// No session id at rest: after a session is inserted, its block claimed and re-entered, and
/// a second session inserted and taken, `dump` (every key, row and value the backend holds, as
/// raw bytes) contains neither id, in hex (either case) or as raw bytes. `get` still returns
/// the session with its id. Backend-specific, since only the backend's test can dump it.
pub async fn no_session_id_at_rest<T, F, Fut>(store: Arc<T>, dump: F)
where
    T: SessionStore + SpentSet,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Vec<u8>>,
{
    let (s, gone) = (
        session(random_merchant(), 1_000_000, 11, 0, 300),
        session(random_merchant(), 1_000_000, 12, 0, 300),
    );
    let hash = random_hash();
    assert_eq!(store.insert(&s, unix_now()).await.unwrap(), Insert::Inserted);
    assert_eq!(store.claim(&hash, &s.id, unix_now() + 3600).await.unwrap(), Claim::New);
    assert_eq!(store.claim(&hash, &s.id, unix_now() + 3600).await.unwrap(), Claim::Reentered);
    assert_eq!(store.insert(&gone, unix_now()).await.unwrap(), Insert::Inserted);
    assert_eq!(store.take(&gone.id).await.unwrap().map(|t| t.id), Some(gone.id));
    assert_eq!(store.get(&s.id).await.unwrap().as_ref(), Some(&s), "the id is put back on read");
    assert_eq!(store.owner(&hash).await.unwrap(), Some(s.id.key()));
    let bytes = dump().await;
    assert!(!bytes.is_empty(), "the dump holds the store's data");
    for id in [s.id, gone.id] {
        let hex = id.to_string();
        for needle in [hex.as_bytes().to_vec(), hex.to_uppercase().into_bytes(), id.as_bytes().to_vec()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "a session id is stored in clear"
            );
        }
    }
    let key = s.id.key().to_hex();
    let raw = s.id.key();
    assert!(
        bytes.windows(key.len()).any(|w| w == key.as_bytes())
            || bytes.windows(16).any(|w| w == raw.as_bytes()),
        "the dump should hold the session's key (is it the store's data?)"
    );
}

/// One `#[tokio::test]` per session-store invariant.
///
/// `$make` is an expression (typically an `async` block) evaluated once per test, producing an
/// `Arc` of the store; `$capacity` is the capacity its stores were built with. With
/// `optional:` in front, `$make` produces an `Option<Arc<…>>` and `None` skips the test with a
/// printed notice (for backends that need a server which may not be configured).
#[macro_export]
macro_rules! session_store_conformance {
    (optional: $make:expr, capacity = $capacity:expr) => {
        $crate::session_store_conformance!(@tests $make;
            session_round_trip, session_amount_is_unique, session_amount_is_unique_under_races,
            session_expired_amount_is_free, session_take_once_under_races,
            session_prune_removes_only_expired, session_find_by_amount, session_records_one_payment,
            session_pending_count);
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn session_store_is_bounded() {
            let Some(store) = $make.await else {
                eprintln!("session_store_is_bounded: skipped, the backend is not configured");
                return;
            };
            let store: ::std::sync::Arc<dyn $crate::store::SessionStore> = store;
            $crate::store::conformance::session_store_is_bounded(store, $capacity).await;
        }
    };
    ($make:expr, capacity = $capacity:expr) => {
        $crate::session_store_conformance!(optional: async { Some($make.await) }, capacity = $capacity);
    };
    (@tests $make:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(store) = $make.await else {
                eprintln!("{}: skipped, the backend is not configured", stringify!($name));
                return;
            };
            let store: ::std::sync::Arc<dyn $crate::store::SessionStore> = store;
            $crate::store::conformance::$name(store).await;
        }
    )*};
}

/// One `#[tokio::test]` per spent-set invariant; see [`session_store_conformance!`]
/// (`optional:` works the same way).
#[macro_export]
macro_rules! spent_set_conformance {
    (optional: $make:expr) => {
        $crate::spent_set_conformance!(@tests $make;
            spent_claim_once, spent_reentered_claim_is_never_released, spent_claim_once_under_races,
            spent_prune_respects_retention, spent_handoff_locks);
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn spent_handoff_locks_under_races() {
            let Some(spent) = $make.await else {
                eprintln!("spent_handoff_locks_under_races: skipped, the backend is not configured");
                return;
            };
            let spent: ::std::sync::Arc<dyn $crate::store::SpentSet> = spent;
            $crate::store::conformance::spent_handoff_locks_under_races(spent, ::std::vec::Vec::new()).await;
        }
    };
    ($make:expr) => {
        $crate::spent_set_conformance!(optional: async { Some($make.await) });
    };
    (@tests $make:expr; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let Some(spent) = $make.await else {
                eprintln!("{}: skipped, the backend is not configured", stringify!($name));
                return;
            };
            let spent: ::std::sync::Arc<dyn $crate::store::SpentSet> = spent;
            $crate::store::conformance::$name(spent).await;
        }
    )*};
}
