//! The embedded single-file store ([redb]): sessions and the spent set in one file, durable
//! across crashes. The default for a single instance.
//!
//! Every mutation runs inside a redb write transaction committed with fsync (redb's default
//! `Durability::Immediate`) before the call returns, so a claim that reported `true` has
//! reached the disk before the layer grants anything.
//!
//! Mutations go to one writer thread, which runs everything queued meanwhile in one
//! transaction, one after the other, and commits once (group commit): concurrent 402s and
//! grants share an fsync instead of queueing for one each. Run in sequence inside one
//! transaction, they stay exactly as atomic as one transaction each (check-and-insert,
//! take-once); if any of them fails, the whole batch is rolled back and every caller gets the
//! error (a 503), so nothing half-applied is ever reported. A grant's claim and take are one
//! job ([`SpentSet::claim_and_take`]).
//!
//! Pending sessions are rows filed under their expiry and a counter, so a burst of 402s
//! appends to the end of one B-tree instead of dirtying a random page per session (the cost
//! that held a file-backed 402 to a tenth of a bare request). Lookups are answered from an
//! index in memory (the memory store's own, so both keep the same rules), loaded from the rows
//! at open and changed by the writer thread only, together with the rows; if a batch is rolled
//! back, the index is loaded again from the file. It takes about 250 bytes per pending session.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::memory::{RowId, Sessions};
use super::{
    Claim, ClaimAndTake, HandoffClaim, HandoffRelease, Insert, Lock, Record, SessionStore, SpentSet,
    StoreError, StoredSession, WatchedPayment,
};
use crate::nano::{Address, BlockHash, PublicKey, Raw};
use crate::session::{Session, SessionId, SessionKey};

// Sessions are filed under their `SessionKey`, never the id. Sessions written by 57fee3c hold
// an id where the key goes: migrated as they are, they are only ever found by amount (their
// ids hash to nothing), behave there as if the id were the key, and are pruned with their
// expiry. Its spent entries are read as they are (see `Entry::decode`).

/// [`RowId`] (8: expiry, slot) -> the fixed-width row of `row_value`: the pending sessions.
const SESSION_ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("session_rows");
/// Written before: session key (16) -> record JSON, and its two indexes. Moved into
/// [`SESSION_ROWS`] when such a file is opened.
const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");
const AMOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("session_amounts");
const SESSION_EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("session_expiry");
/// block hash (32) -> [`SPENT_V2`] ‖ owner session key (16) ‖ claims u32 BE (4) ‖
/// keep_until u64 BE (8). Entries of 57fee3c are 28 bytes without the version byte and hold
/// the owner's id, which is hashed on read: they keep meaning "spent by that session".
const SPENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("spent");
/// The version byte of spent entries that hold a session key.
const SPENT_V2: u8 = 2;
/// keep_until big-endian (8) ‖ hash (32) -> ().
const SPENT_EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("spent_expiry");

/// `p` ‖ previous (33) or `s` ‖ session key (17) -> [`Lock`] (48): hand-off locks.
const LOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("handoff_locks");

/// Default maximum of pending sessions in the file.
pub const DEFAULT_FILE_SESSION_CAPACITY: u64 = 100_000;

/// Sessions and spent set in one redb file. Implements both [`SessionStore`] and [`SpentSet`];
/// share one `Arc<FileStore>` as both.
///
/// ```no_run
/// # async fn demo() -> Result<(), nanosession::store::StoreError> {
/// use std::sync::Arc;
/// let store = Arc::new(nanosession::store::FileStore::open("nanosession.redb").await?);
/// // builder.session_store_shared(store.clone()).spent_set_shared(store)
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileStore {
    db: Arc<Database>,
    capacity: u64,
    /// The pending sessions, changed only by the writer thread's jobs.
    index: Arc<Mutex<Sessions>>,
    /// This file's [`SessionStore::transaction_domain`].
    domain: u64,
    /// The group-commit writer thread; it ends (and closes the file) with the last clone.
    writer: Arc<Writer>,
}

struct Writer {
    queue: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for Writer {
    /// Closes the queue and waits for the thread, so the file is closed (and can be opened
    /// again) once the last clone is gone.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One mutation for the writer thread: runs inside the batch's transaction and returns how it
/// went, with what to tell its caller once the batch's fate (commit or rollback) is known.
type Job = Box<dyn FnOnce(&mut Batch<'_>) -> Outcome + Send>;

/// The write transaction of one batch, with the session rows table opened once for all its
/// jobs (opening and closing a table per job cost more than the row itself). Other tables
/// are opened through the transaction it derefs to.
struct Batch<'a> {
    tx: &'a redb::WriteTransaction,
    rows: Option<redb::Table<'a, &'static [u8], &'static [u8]>>,
}

impl<'a> Batch<'a> {
    fn rows(&mut self) -> Result<&mut redb::Table<'a, &'static [u8], &'static [u8]>, redb::Error> {
        match &mut self.rows {
            Some(rows) => Ok(rows),
            rows => Ok(rows.insert(self.tx.open_table(SESSION_ROWS)?)),
        }
    }
}

impl std::ops::Deref for Batch<'_> {
    type Target = redb::WriteTransaction;

    fn deref(&self) -> &redb::WriteTransaction {
        self.tx
    }
}

struct Outcome {
    failed: bool,
    answer: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

/// The most mutations one transaction takes (bounds the latency of a batch).
const MAX_BATCH: usize = 512;

/// The writer thread: takes one job, then everything else already queued, runs them in one
/// transaction and commits once.
fn write_loop(
    db: Arc<Database>,
    index: Arc<Mutex<Sessions>>,
    capacity: usize,
    jobs: std::sync::mpsc::Receiver<Job>,
    commits: &std::sync::atomic::AtomicU64,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let tx = match db.begin_write() {
            Ok(tx) => tx,
            Err(e) => {
                // Dropping the jobs unrun drops their answer channels: each caller sees an error.
                tracing::warn!(error = %e, "redb could not begin a write transaction");
                drop(batch);
                continue;
            }
        };
        let mut open = Batch { tx: &tx, rows: None };
        let outcomes: Vec<Outcome> = batch.into_iter().map(|job| job(&mut open)).collect();
        drop(open);
        let result = if outcomes.iter().any(|o| o.failed) {
            drop(tx); // rolls back every job of the batch
            Err(StoreError::new("file", "a write of the same batch failed; nothing was written"))
        } else {
            let committed = tx.commit().map_err(err);
            commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            committed
        };
        if result.is_err() {
            // The index holds the batch's changes: back to what the file holds.
            match load(&db, capacity) {
                Ok(fresh) => *Sessions::lock(&index) = fresh,
                Err(e) => tracing::error!(error = %e, "the session index could not be reloaded"),
            }
        }
        for outcome in outcomes {
            (outcome.answer)(result.clone());
        }
    }
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new("file", e.to_string())
}

fn expiry_key<const N: usize>(at: u64, id: &[u8; N]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + N);
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(id);
    k
}

fn decode(bytes: &[u8]) -> Result<Record, redb::Error> {
    serde_json::from_slice(bytes).map_err(|e| redb::Error::Corrupted(format!("session record: {e}")))
}

impl FileStore {
    /// Opens (or creates) the store at `path` with the default session capacity.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_capacity(path, DEFAULT_FILE_SESSION_CAPACITY).await
    }

    /// Opens (or creates) the store at `path`, holding at most `capacity` pending sessions.
    pub async fn open_with_capacity(path: impl AsRef<Path>, capacity: u64) -> Result<Self, StoreError> {
        let path = path.as_ref().to_owned();
        let (db, index) =
            tokio::task::spawn_blocking(move || -> Result<(Database, Sessions), redb::Error> {
                let db = Database::create(&path)?;
                let tx = db.begin_write()?;
                // Create every table up front so readers never see "table does not exist".
                tx.open_table(SESSION_ROWS)?;
                tx.open_table(SPENT)?;
                tx.open_table(SPENT_EXPIRY)?;
                tx.open_table(LOCKS)?;
                migrate_sessions(&tx)?;
                tx.commit()?;
                let index = load(&db, capacity as usize)?;
                Ok((db, index))
            })
            .await
            .map_err(err)?
            .map_err(err)?;
        let (db, index) = (Arc::new(db), Arc::new(Mutex::new(index)));
        let (queue, jobs) = std::sync::mpsc::channel();
        let (thread_db, thread_index) = (db.clone(), index.clone());
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = commits.clone();
        let thread = std::thread::Builder::new()
            .name("nanosession-redb-writer".into())
            .spawn(move || write_loop(thread_db, thread_index, capacity as usize, jobs, &counter))
            .map_err(err)?;
        let writer = Arc::new(Writer { queue: Some(queue), thread: Some(thread), commits });
        // Unique per opened file in this process.
        static DOMAINS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let domain = DOMAINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(FileStore { db, capacity, index, domain, writer })
    }

    /// How many write transactions this store has committed (each one fsync): with group
    /// commit, concurrent mutations share them. For monitoring and tests.
    pub fn commits(&self) -> u64 {
        self.writer.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs a mutation in the writer thread's next batch; answers once that batch is durable.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> Result<T, redb::Error> + Send + 'static,
    {
        let (send, receive) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |tx| match f(tx) {
            Ok(value) => Outcome {
                failed: false,
                answer: Box::new(move |committed| {
                    let _ = send.send(committed.map(|()| value));
                }),
            },
            Err(e) => {
                let error = err(e);
                Outcome {
                    failed: true,
                    answer: Box::new(move |_| {
                        let _ = send.send(Err(error));
                    }),
                }
            }
        });
        let queue = self.writer.queue.as_ref().expect("the queue lives as long as the store");
        queue.send(job).map_err(|_| StoreError::new("file", "the writer thread stopped"))?;
        // Dropped unanswered only if the batch could not even begin.
        receive.await.map_err(|_| StoreError::new("file", "the write transaction could not begin"))?
    }

    /// Runs blocking redb work off the async executor.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(err)?.map_err(err)
    }
}

/// A session row's value, fixed-width big-endian: key (16), merchant key (32), price (16),
/// tag, created_at, expires_at (8 each), then the watched payment if any: block (32),
/// payer key (32), first_seen (8). Written straight into one buffer: no text, no checksum.
fn row_value(session: &StoredSession) -> Vec<u8> {
    let mut v = Vec::with_capacity(ROW_BYTES + WATCHED_BYTES);
    v.extend_from_slice(session.key.as_bytes());
    v.extend_from_slice(session.pay_to.public_key().as_bytes());
    v.extend_from_slice(&session.price.get().to_be_bytes());
    for n in [session.tag, session.created_at, session.expires_at] {
        v.extend_from_slice(&n.to_be_bytes());
    }
    if let Some(w) = &session.watched {
        v.extend_from_slice(w.block.as_bytes());
        v.extend_from_slice(w.payer.public_key().as_bytes());
        v.extend_from_slice(&w.first_seen.to_be_bytes());
    }
    v
}

const ROW_BYTES: usize = 16 + 32 + 16 + 3 * 8;
const WATCHED_BYTES: usize = 32 + 32 + 8;

fn decode_row(key: &[u8], v: &[u8]) -> Result<(StoredSession, RowId), redb::Error> {
    let corrupted = || redb::Error::Corrupted("session row".into());
    let row = RowId::from_bytes(key.try_into().map_err(|_| corrupted())?);
    if v.len() != ROW_BYTES && v.len() != ROW_BYTES + WATCHED_BYTES {
        return Err(corrupted());
    }
    let bytes = |at: usize| -> [u8; 32] { v[at..at + 32].try_into().expect("in bounds") };
    let number = |at: usize| u64::from_be_bytes(v[at..at + 8].try_into().expect("in bounds"));
    let price = Raw::new(u128::from_be_bytes(v[48..64].try_into().expect("in bounds")));
    let tag = number(64);
    let session = StoredSession {
        key: SessionKey::from_bytes(v[..16].try_into().expect("in bounds")),
        pay_to: Address::from(PublicKey::from_bytes(bytes(16))),
        price,
        tag,
        amount: Raw::new(price.get().checked_add(tag as u128).ok_or_else(corrupted)?),
        created_at: number(72),
        expires_at: number(80),
        watched: (v.len() > ROW_BYTES).then(|| WatchedPayment {
            block: BlockHash::from_bytes(bytes(ROW_BYTES)),
            payer: Address::from(PublicKey::from_bytes(bytes(ROW_BYTES + 32))),
            first_seen: number(ROW_BYTES + 64),
        }),
    };
    Ok((session, row))
}

/// The index of every session row in `db`, as last committed.
fn load(db: &Database, capacity: usize) -> Result<Sessions, redb::Error> {
    let tx = db.begin_read()?;
    let mut index = Sessions::with_capacity(capacity);
    for row in tx.open_table(SESSION_ROWS)?.iter()? {
        let (key, value) = row?;
        let (session, row) = decode_row(key.value(), value.value())?;
        index.restore(&session, row);
    }
    Ok(index)
}

/// Moves the sessions of a file written before [`SESSION_ROWS`] into it (rows filed under an
/// id rather than a key, by 57fee3c, move as they are: found only by amount, as before).
fn migrate_sessions(tx: &redb::WriteTransaction) -> Result<(), redb::Error> {
    let old = match tx.open_table(SESSIONS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut rows = tx.open_table(SESSION_ROWS)?;
    for (slot, entry) in old.iter()?.enumerate() {
        let (key, value) = entry?;
        let corrupted = || redb::Error::Corrupted("session key".into());
        let key: [u8; 16] = key.value().try_into().map_err(|_| corrupted())?;
        let session = decode(value.value())?.stored(SessionKey::from_bytes(key));
        // Numbered from 0 in an empty table, so every row is unique.
        let row = RowId::new(session.expires_at, slot as u32);
        rows.insert(row.to_bytes().as_slice(), row_value(&session).as_slice())?;
    }
    drop((old, rows));
    tx.delete_table(SESSIONS)?;
    tx.delete_table(AMOUNTS)?;
    tx.delete_table(SESSION_EXPIRY)?;
    Ok(())
}

/// Removes the rows of sessions the index let go.
fn remove_rows(tx: &mut Batch<'_>, gone: &[RowId]) -> Result<(), redb::Error> {
    if !gone.is_empty() {
        let rows = tx.rows()?;
        for row in gone {
            rows.remove(row.to_bytes().as_slice())?;
        }
    }
    Ok(())
}

/// Takes the session filed under `key` from the index and its row from the file.
fn take_in(
    tx: &mut Batch<'_>,
    index: &Mutex<Sessions>,
    key: &SessionKey,
) -> Result<Option<StoredSession>, redb::Error> {
    let taken = Sessions::lock(index).remove(key);
    if let Some((_, row)) = taken {
        remove_rows(tx, &[row])?;
    }
    Ok(taken.map(|(session, _)| session))
}

fn write_row(tx: &mut Batch<'_>, session: &StoredSession, row: RowId) -> Result<(), redb::Error> {
    tx.rows()?.insert(row.to_bytes().as_slice(), row_value(session).as_slice())?;
    Ok(())
}

#[async_trait]
impl SessionStore for FileStore {
    fn backend(&self) -> &'static str {
        "file"
    }

    async fn pending_count(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(Sessions::lock(&self.index).len() as u64))
    }

    async fn insert(&self, session: &Session, now: u64) -> Result<Insert, StoreError> {
        let (session, capacity, index) =
            (StoredSession::of(session), self.capacity as usize, self.index.clone());
        self.write(move |tx| {
            let mut gone = Vec::new();
            let (outcome, row) = {
                let mut index = Sessions::lock(&index);
                let outcome = index.insert(&session, now, capacity, &mut |row| gone.push(row));
                (outcome, index.row(&session.key))
            };
            remove_rows(tx, &gone)?;
            if let (Insert::Inserted, Some(row)) = (outcome, row) {
                write_row(tx, &session, row)?;
            }
            Ok(outcome)
        })
        .await
    }

    async fn get_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        Ok(Sessions::lock(&self.index).get(key))
    }

    async fn take_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        let (key, index) = (*key, self.index.clone());
        self.write(move |tx| take_in(tx, &index, &key)).await
    }

    async fn record_payment(&self, key: &SessionKey, payment: &WatchedPayment) -> Result<bool, StoreError> {
        let (key, payment, index) = (*key, *payment, self.index.clone());
        self.write(move |tx| {
            let recorded = Sessions::lock(&index).record(&key, &payment);
            if let Some((session, row)) = &recorded {
                write_row(tx, session, *row)?;
            }
            Ok(recorded.is_some())
        })
        .await
    }

    async fn find_by_amount(
        &self,
        pay_to: &Address,
        amount: Raw,
        now: u64,
    ) -> Result<Option<StoredSession>, StoreError> {
        Ok(Sessions::lock(&self.index).find(pay_to, amount, now))
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        let index = self.index.clone();
        self.write(move |tx| {
            let mut gone = Vec::new();
            let removed = Sessions::lock(&index).prune(now, &mut |row| gone.push(row));
            remove_rows(tx, &gone)?;
            Ok(removed)
        })
        .await
    }

    fn capacity(&self) -> Option<u64> {
        Some(self.capacity)
    }

    fn transaction_domain(&self) -> Option<u64> {
        Some(self.domain)
    }
}

/// One spent-set record.
struct Entry {
    owner: SessionKey,
    claims: u32,
    keep_until: u64,
}

impl Entry {
    fn encode(&self) -> [u8; 29] {
        let mut v = [0u8; 29];
        v[0] = SPENT_V2;
        v[1..17].copy_from_slice(self.owner.as_bytes());
        v[17..21].copy_from_slice(&self.claims.to_be_bytes());
        v[21..].copy_from_slice(&self.keep_until.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Result<Self, redb::Error> {
        let (owner, rest) = match v.len() {
            29 if v[0] == SPENT_V2 => {
                (SessionKey::from_bytes(v[1..17].try_into().expect("16 bytes")), &v[17..])
            }
            // 57fee3c: the owner's id in clear; its key is what it means now.
            28 => (SessionId::from_bytes(v[..16].try_into().expect("16 bytes")).key(), &v[16..]),
            _ => return Err(redb::Error::Corrupted("spent record of the wrong size".into())),
        };
        Ok(Entry {
            owner,
            claims: u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")),
            keep_until: u64::from_be_bytes(rest[4..].try_into().expect("8 bytes")),
        })
    }
}

/// `SpentSet::claim_by_key` inside a write transaction.
fn claim_in(
    tx: &redb::WriteTransaction,
    hash: &BlockHash,
    session: &SessionKey,
    keep_until: u64,
) -> Result<Claim, redb::Error> {
    let mut spent = tx.open_table(SPENT)?;
    let existing = spent.get(hash.as_bytes().as_slice())?.map(|v| Entry::decode(v.value())).transpose()?;
    Ok(match existing {
        Some(entry) if entry.owner != *session => Claim::Spent,
        Some(mut entry) => {
            entry.claims += 1;
            spent.insert(hash.as_bytes().as_slice(), entry.encode().as_slice())?;
            Claim::Reentered
        }
        None => {
            let entry = Entry { owner: *session, claims: 1, keep_until };
            spent.insert(hash.as_bytes().as_slice(), entry.encode().as_slice())?;
            let key = expiry_key(keep_until, hash.as_bytes());
            tx.open_table(SPENT_EXPIRY)?.insert(key.as_slice(), ())?;
            Claim::New
        }
    })
}

/// `SpentSet::release_by_key` inside a write transaction.
fn release_in(
    tx: &redb::WriteTransaction,
    hash: &BlockHash,
    session: &SessionKey,
) -> Result<(), redb::Error> {
    let mut spent = tx.open_table(SPENT)?;
    let existing = spent.get(hash.as_bytes().as_slice())?.map(|v| Entry::decode(v.value())).transpose()?;
    if let Some(entry) = existing.filter(|e| e.owner == *session && e.claims == 1) {
        spent.remove(hash.as_bytes().as_slice())?;
        tx.open_table(SPENT_EXPIRY)?.remove(expiry_key(entry.keep_until, hash.as_bytes()).as_slice())?;
    }
    Ok(())
}

#[async_trait]
impl SpentSet for FileStore {
    fn backend(&self) -> &'static str {
        "file"
    }

    async fn owner(&self, hash: &BlockHash) -> Result<Option<SessionKey>, StoreError> {
        // Read in place, not on the blocking pool: a lookup in redb's page cache costs less
        // than the thread hand-off, which was a context switch per paid request.
        let read = || -> Result<Option<SessionKey>, redb::Error> {
            let tx = self.db.begin_read()?;
            let table = tx.open_table(SPENT)?;
            let found = table.get(hash.as_bytes().as_slice())?;
            found.map(|v| Entry::decode(v.value()).map(|e| e.owner)).transpose()
        };
        read().map_err(err)
    }

    async fn claim_by_key(
        &self,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
    ) -> Result<Claim, StoreError> {
        let (hash, session) = (*hash, *session);
        self.write(move |tx| {
            let outcome = claim_in(tx, &hash, &session, keep_until)?;
            // Durable before the layer grants anything.
            Ok(outcome)
        })
        .await
    }

    async fn claim_and_take(
        &self,
        sessions: &dyn SessionStore,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
    ) -> Result<ClaimAndTake, StoreError> {
        if sessions.transaction_domain() != Some(self.domain) {
            return super::claim_then_take(self, sessions, hash, session, keep_until).await;
        }
        let (hash, key, index) = (*hash, *session, self.index.clone());
        let (claim, taken) = self
            .write(move |tx| {
                let claim = claim_in(tx, &hash, &key, keep_until)?;
                if claim == Claim::Spent {
                    return Ok((claim, None));
                }
                Ok((claim, take_in(tx, &index, &key)?))
            })
            .await?;
        Ok((claim, Ok(taken)))
    }

    async fn release_by_key(&self, hash: &BlockHash, session: &SessionKey) -> Result<(), StoreError> {
        let (hash, session) = (*hash, *session);
        self.write(move |tx| {
            release_in(tx, &hash, &session)?;
            Ok(())
        })
        .await
    }

    async fn claim_handoff(&self, claim: &HandoffClaim, now: u64) -> Result<Claim, StoreError> {
        let claim = *claim;
        self.write(move |tx| {
            let owner = tx
                .open_table(SPENT)?
                .get(claim.hash.as_bytes().as_slice())?
                .map(|v| Entry::decode(v.value()).map(|e| e.owner))
                .transpose()?;
            if owner.is_some_and(|o| o != claim.session) {
                return Ok(Claim::Spent);
            }
            let keys = Lock::keys(&claim);
            {
                let locks = tx.open_table(LOCKS)?;
                for key in &keys {
                    let lock = locks.get(key.as_slice())?.and_then(|v| Lock::decode(v.value()));
                    if lock.is_some_and(|l| l.blocks(&claim, now)) {
                        return Ok(Claim::InFlight);
                    }
                }
            }
            let outcome = claim_in(tx, &claim.hash, &claim.session, claim.keep_until)?;
            {
                let mut locks = tx.open_table(LOCKS)?;
                for key in &keys {
                    locks.insert(key.as_slice(), Lock::of(&claim).encode().as_slice())?;
                }
            }
            Ok(outcome)
        })
        .await
    }

    async fn release_handoff(&self, claim: &HandoffClaim, how: HandoffRelease) -> Result<(), StoreError> {
        let claim = *claim;
        self.write(move |tx| {
            {
                let mut locks = tx.open_table(LOCKS)?;
                for key in &Lock::keys(&claim) {
                    let lock = locks.get(key.as_slice())?.and_then(|v| Lock::decode(v.value()));
                    let Some(mut lock) = lock.filter(|l| l.hash == claim.hash) else { continue };
                    if how == HandoffRelease::Kept {
                        lock.busy_until = 0;
                        locks.insert(key.as_slice(), lock.encode().as_slice())?;
                    } else {
                        locks.remove(key.as_slice())?;
                    }
                }
            }
            if how == HandoffRelease::Refused {
                release_in(tx, &claim.hash, &claim.session)?;
            }
            Ok(())
        })
        .await
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        self.write(move |tx| {
            let mut old = Vec::new();
            {
                let index = tx.open_table(SPENT_EXPIRY)?;
                for entry in index.range(..expiry_key(now, &[0u8; 32]).as_slice())? {
                    old.push(entry?.0.value().to_vec());
                }
            }
            {
                let mut spent = tx.open_table(SPENT)?;
                let mut index = tx.open_table(SPENT_EXPIRY)?;
                for key in &old {
                    spent.remove(&key[8..])?;
                    index.remove(key.as_slice())?;
                }
            }
            // Lapsed hand-off locks (few: one per payment in flight).
            tx.open_table(LOCKS)?.retain(|_, v| Lock::decode(v).is_some_and(|l| l.until >= now))?;
            Ok(old.len() as u64)
        })
        .await
    }

    async fn size(&self) -> Result<Option<u64>, StoreError> {
        self.run(|db| Ok(Some(db.begin_read()?.open_table(SPENT)?.len()?))).await
    }
}
