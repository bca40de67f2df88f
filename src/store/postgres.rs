//! The PostgreSQL store: sessions and spent set in two tables shared by any number of instances.
//!
//! Client: `tokio-postgres` with a `deadpool-postgres` pool: the well-kept, lightweight async
//! pair (no ORM, no compile-time query checking that would need a database at build time, and a
//! fraction of sqlx's compile time). Every decision is one statement:
//! - claim: `INSERT … ON CONFLICT (hash) DO UPDATE … WHERE owner = EXCLUDED.owner RETURNING
//!   claims` (the primary key decides; a row comes back only for the first claim or the owner's
//!   re-entry);
//! - take: `DELETE … WHERE id = $1 RETURNING` (one deleter gets the row);
//! - insert: a unique index on `(pay_to, amount)` enforces amount uniqueness across instances.
//!
//! Tables are created idempotently at start-up (under an advisory lock, so instances starting
//! together do not race), with indexes on the expiry columns for pruning.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::{Claim, Insert, SessionStore, SpentSet, StoreError};
use crate::nano::BlockHash;
use crate::session::{Session, SessionId};

/// Options for [`PostgresStore::connect_with`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Prefix of the table names (default `nanosession_`); lower-case letters, digits and `_`.
    pub table_prefix: String,
    /// Maximum of pending sessions (default 100,000). Each instance counts exactly at most once
    /// a second and tracks its own inserts in between, so with many instances the table may
    /// overshoot by what the others inserted within that second.
    pub capacity: u64,
    /// Pool size per instance (default 16).
    pub pool_size: usize,
    /// Timeout for getting a connection and for each statement (default 2 s).
    pub timeout: Duration,
    /// Also set the server's `statement_timeout` (0.5 s below `timeout`) as a startup option,
    /// so the server abandons a statement before the client stops waiting for it (default
    /// `true`). Turn it off behind poolers that refuse startup options (PgBouncer) and set
    /// `statement_timeout` on the role instead.
    pub server_statement_timeout: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            table_prefix: "nanosession_".to_owned(),
            capacity: 100_000,
            pool_size: 16,
            timeout: Duration::from_secs(2),
            server_statement_timeout: true,
        }
    }
}

/// Sessions and spent set in PostgreSQL. Implements both [`SessionStore`] and [`SpentSet`].
///
/// ```no_run
/// # async fn demo() -> Result<(), nanosession::store::StoreError> {
/// let store = nanosession::store::PostgresStore::connect("postgres://postgres@127.0.0.1/test").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    options: PostgresOptions,
    sql: Sql,
    live: Arc<Mutex<LiveCount>>,
}

/// This instance's estimate of the pending sessions: an exact count at most once a second,
/// plus what this instance inserted and took since. Counting on every insert would cost a scan
/// of up to `capacity` index entries per 402, exactly when a flood makes 402s many.
#[derive(Debug)]
struct LiveCount {
    counted: i64,
    at: Instant,
    delta: i64,
}

/// How long an exact count is trusted (other instances' changes show up after this).
const RECOUNT_EVERY: Duration = Duration::from_secs(1);
/// How long a count that found the store full is trusted before counting again.
const FULL_RECHECK: Duration = Duration::from_millis(100);

impl std::fmt::Debug for PostgresStore {
    // The connection string (and its password) is deliberately not kept.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("options", &self.options).finish_non_exhaustive()
    }
}

/// Every statement, with the table prefix applied once.
#[derive(Clone, Debug)]
struct Sql {
    insert_session: String,
    free_expired_amount: String,
    count_live: String,
    get_session: String,
    take_session: String,
    prune_sessions: String,
    spent_owner: String,
    spent_claim: String,
    spent_release: String,
    spent_prune: String,
    spent_len: String,
}

impl Sql {
    fn new(p: &str) -> Self {
        Sql {
            insert_session: format!(
                "INSERT INTO {p}sessions (id, pay_to, amount, expires_at, data) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING"
            ),
            free_expired_amount: format!(
                "DELETE FROM {p}sessions WHERE pay_to = $1 AND amount = $2 AND expires_at < $3"
            ),
            count_live: format!(
                "SELECT count(*) FROM (SELECT 1 FROM {p}sessions WHERE expires_at >= $1 LIMIT $2) live"
            ),
            get_session: format!("SELECT data FROM {p}sessions WHERE id = $1"),
            take_session: format!("DELETE FROM {p}sessions WHERE id = $1 RETURNING data"),
            prune_sessions: format!("DELETE FROM {p}sessions WHERE expires_at < $1"),
            spent_owner: format!("SELECT owner FROM {p}spent WHERE hash = $1"),
            // One statement decides: insert (claims = 1), or re-enter if this session owns it
            // (claims + 1), or no row at all when another session owns it.
            spent_claim: format!(
                "INSERT INTO {p}spent (hash, owner, claims, keep_until) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (hash) DO UPDATE SET claims = {p}spent.claims + 1 \
                 WHERE {p}spent.owner = EXCLUDED.owner RETURNING claims"
            ),
            spent_release: format!("DELETE FROM {p}spent WHERE hash = $1 AND owner = $2 AND claims = 1"),
            spent_prune: format!("DELETE FROM {p}spent WHERE keep_until < $1"),
            spent_len: format!("SELECT count(*) FROM {p}spent"),
        }
    }

    fn schema(p: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {p}sessions (
                id bytea PRIMARY KEY,
                pay_to bytea NOT NULL,
                amount bytea NOT NULL,
                expires_at bigint NOT NULL,
                data text NOT NULL);
             CREATE UNIQUE INDEX IF NOT EXISTS {p}sessions_amount ON {p}sessions (pay_to, amount);
             CREATE INDEX IF NOT EXISTS {p}sessions_expiry ON {p}sessions (expires_at);
             CREATE TABLE IF NOT EXISTS {p}spent (
                hash bytea PRIMARY KEY,
                owner bytea NOT NULL,
                claims integer NOT NULL,
                keep_until bigint NOT NULL);
             CREATE INDEX IF NOT EXISTS {p}spent_keep_until ON {p}spent (keep_until);
             -- Tables from before claims carried their session: old rows belong to no session.
             ALTER TABLE {p}spent ADD COLUMN IF NOT EXISTS owner bytea NOT NULL DEFAULT '\\x'::bytea;
             ALTER TABLE {p}spent ADD COLUMN IF NOT EXISTS claims integer NOT NULL DEFAULT 1;"
        )
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    // tokio-postgres and deadpool errors carry no connection string.
    StoreError::new("postgres", e.to_string())
}

fn decode(data: &str) -> Result<Session, StoreError> {
    serde_json::from_str(data).map_err(|e| StoreError::new("postgres", format!("bad session record: {e}")))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PostgresStore {
    /// Connects with default options and creates the tables if needed.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// Connects with `options` and creates the tables if needed. Later outages are answered 503;
    /// the pool replaces broken connections by itself when the database is back.
    pub async fn connect_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let p = &options.table_prefix;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(StoreError::new("postgres", "table_prefix must be lower-case letters, digits and _"));
        }
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|_| StoreError::new("postgres", "invalid PostgreSQL connection URL"))?;
        // The server gives up before the client does, so a statement the client stopped waiting
        // for has not committed behind its back (a consumed session reported as an outage).
        if options.server_statement_timeout {
            let server_timeout =
                options.timeout.saturating_sub(Duration::from_millis(500)).max(Duration::from_millis(100));
            let user_options = config.get_options().unwrap_or_default().to_owned();
            config.options(
                format!("{user_options} -c statement_timeout={}", server_timeout.as_millis()).trim(),
            );
        }
        let manager =
            Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(err)?;
        let stale = Instant::now().checked_sub(RECOUNT_EVERY).unwrap_or_else(Instant::now);
        let live = Arc::new(Mutex::new(LiveCount { counted: 0, at: stale, delta: 0 }));
        let store = PostgresStore { pool, sql: Sql::new(p), options, live };
        store.create_schema().await?;
        Ok(store)
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        let mut client = self.pool.get().await.map_err(err)?;
        let tx = client.transaction().await.map_err(err)?;
        // CREATE … IF NOT EXISTS races between instances starting together; serialise them.
        tx.execute("SELECT pg_advisory_xact_lock(7310411797)", &[]).await.map_err(err)?;
        tx.batch_execute(&Sql::schema(&self.options.table_prefix)).await.map_err(err)?;
        tx.commit().await.map_err(err)
    }

    /// Pending sessions as far as this instance knows: counted exactly (up to `cap`) when the
    /// last count is older than [`RECOUNT_EVERY`], or when the estimate reaches `cap` and the
    /// last count is older than [`FULL_RECHECK`].
    async fn estimate_live(&self, now: i64, cap: i64) -> Result<i64, StoreError> {
        let estimate = {
            let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            let age = live.at.elapsed();
            let estimate = live.counted + live.delta;
            (age < RECOUNT_EVERY && (estimate < cap || age < FULL_RECHECK)).then_some(estimate)
        };
        if let Some(estimate) = estimate {
            return Ok(estimate);
        }
        let counted: i64 =
            self.query_opt(&self.sql.count_live, &[&now, &cap]).await?.map_or(0, |row| row.get(0));
        *self.live.lock().unwrap_or_else(|e| e.into_inner()) =
            LiveCount { counted, at: Instant::now(), delta: 0 };
        Ok(counted)
    }

    fn adjust_live(&self, by: i64) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).delta += by;
    }

    /// Runs one statement-level operation under the configured timeout.
    async fn with_timeout<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.options.timeout, f)
            .await
            .map_err(|_| StoreError::new("postgres", "statement timed out"))?
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.with_timeout(async {
            let client = self.pool.get().await.map_err(err)?;
            let statement = client.prepare_cached(sql).await.map_err(err)?;
            client.execute(&statement, params).await.map_err(err)
        })
        .await
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        self.with_timeout(async {
            let client = self.pool.get().await.map_err(err)?;
            let statement = client.prepare_cached(sql).await.map_err(err)?;
            client.query_opt(&statement, params).await.map_err(err)
        })
        .await
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn insert(&self, session: &Session, now: u64) -> Result<Insert, StoreError> {
        let pay_to = session.pay_to.public_key().as_bytes().as_slice();
        let amount = session.amount.get().to_be_bytes();
        let now = to_i64(now);
        let cap = to_i64(self.options.capacity);
        if self.estimate_live(now, cap).await? >= cap {
            return Ok(Insert::Full);
        }
        let data = serde_json::to_string(session).expect("sessions serialize");
        let id = session.id.as_bytes().as_slice();
        let expires_at = to_i64(session.expires_at);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&id, &pay_to, &amount.as_slice(), &expires_at, &data];
        let mut inserted = self.execute(&self.sql.insert_session, &params).await? == 1;
        if !inserted {
            // The amount may be held by an expired session, which does not block it: free it
            // and try once more (the unique index still decides between racing inserts).
            // Expired rows are not in the live count: freeing one changes nothing there.
            let freed =
                self.execute(&self.sql.free_expired_amount, &[&pay_to, &amount.as_slice(), &now]).await?;
            inserted = freed > 0 && self.execute(&self.sql.insert_session, &params).await? == 1;
        }
        if inserted {
            self.adjust_live(1);
        }
        Ok(if inserted { Insert::Inserted } else { Insert::AmountInUse })
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let row = self.query_opt(&self.sql.get_session, &[&id.as_bytes().as_slice()]).await?;
        row.map(|r| decode(r.get(0))).transpose()
    }

    async fn take(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let row = self.query_opt(&self.sql.take_session, &[&id.as_bytes().as_slice()]).await?;
        let session = row.map(|r| decode(r.get(0))).transpose()?;
        if session.as_ref().is_some_and(|s| !s.is_expired(crate::session::unix_now())) {
            self.adjust_live(-1);
        }
        Ok(session)
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        // Only expired rows go, and the live count never held them.
        self.execute(&self.sql.prune_sessions, &[&to_i64(now)]).await
    }
}

#[async_trait]
impl SpentSet for PostgresStore {
    async fn owner(&self, hash: &BlockHash) -> Result<Option<SessionId>, StoreError> {
        let row = self.query_opt(&self.sql.spent_owner, &[&hash.as_bytes().as_slice()]).await?;
        Ok(row.map(|r| {
            let owner: &[u8] = r.get(0);
            // Rows from before claims carried their session have an empty owner: spent by a
            // session nobody can present again.
            owner.try_into().map(SessionId::from_bytes).unwrap_or(SessionId::from_bytes([0; 16]))
        }))
    }

    async fn claim(
        &self,
        hash: &BlockHash,
        session: &SessionId,
        keep_until: u64,
    ) -> Result<Claim, StoreError> {
        let row = self
            .query_opt(
                &self.sql.spent_claim,
                &[&hash.as_bytes().as_slice(), &session.as_bytes().as_slice(), &to_i64(keep_until)],
            )
            .await?;
        Ok(match row.map(|r| r.get::<_, i32>(0)) {
            Some(1) => Claim::New,
            Some(_) => Claim::Reentered,
            None => Claim::Spent,
        })
    }

    async fn release(&self, hash: &BlockHash, session: &SessionId) -> Result<(), StoreError> {
        self.execute(&self.sql.spent_release, &[&hash.as_bytes().as_slice(), &session.as_bytes().as_slice()])
            .await
            .map(|_| ())
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        self.execute(&self.sql.spent_prune, &[&to_i64(now)]).await
    }

    async fn size(&self) -> Result<Option<u64>, StoreError> {
        let row = self.query_opt(&self.sql.spent_len, &[]).await?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }
}
