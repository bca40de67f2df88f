//! The PostgreSQL store: sessions and spent set in two tables shared by any number of instances.
//!
//! Client: `tokio-postgres` with a `deadpool-postgres` pool: the well-kept, lightweight async
//! pair (no ORM, no compile-time query checking that would need a database at build time, and a
//! fraction of sqlx's compile time). Every decision is one statement:
//! - claim: `INSERT … ON CONFLICT (hash) DO UPDATE … WHERE owner_key = EXCLUDED.owner_key RETURNING
//!   claims` (the primary key decides; a row comes back only for the first claim or the owner's
//!   re-entry);
//! - take: `DELETE … WHERE id = $1 RETURNING` (one deleter gets the row);
//! - insert: a unique index on `(pay_to, amount)` enforces amount uniqueness across instances.
//!
//! Tables are created idempotently at start-up (under an advisory lock, so instances starting
//! together do not race), with indexes on the expiry columns for pruning.
//!
//! TLS is rustls (`tokio-postgres-rustls`), chosen by the URL's `sslmode` as libpq does:
//! `disable`; `prefer` (the default) and `require` encrypt without checking the server's
//! certificate; `verify-ca` and `verify-full` check the certificate chain and the host name
//! (both as `verify-full`), against `sslrootcert` (or [`PostgresOptions::tls_ca_file`]) if
//! given, else the web PKI roots.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::SslMode;

use super::{
    Claim, HandoffClaim, HandoffRelease, Insert, Lock, Record, SessionStore, SpentSet, StoreError,
    StoredSession, WatchedPayment,
};
use crate::nano::{Address, BlockHash, Raw};
use crate::session::{Session, SessionId, SessionKey};

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
    /// Timeout for getting a pooled connection, and the server's `statement_timeout` (default
    /// 2 s).
    pub timeout: Duration,
    /// How much longer than `timeout` the client waits for a statement's answer (default 1 s):
    /// the round trip and the commit. The server gives up on a statement first, so a statement
    /// the client stopped waiting for has not committed behind its back (a consumed session
    /// reported as an outage, which burns the payment).
    pub reply_margin: Duration,
    /// Set the server's `statement_timeout` to `timeout` as a startup option (default `true`).
    /// Turn it off behind poolers that refuse startup options (PgBouncer) and set
    /// `statement_timeout` on the role instead, at most `timeout`.
    pub server_statement_timeout: bool,
    /// Refuse to start unless commits wait for a synchronous standby (`synchronous_commit` at
    /// least `remote_write` and `synchronous_standby_names` set), default `false`. Without it, a
    /// failover to an asynchronous standby loses the last acknowledged claims, and those
    /// blocks can pay twice; the store logs a warning when it sees asynchronous standbys.
    pub require_synchronous_replication: bool,
    /// PEM file of the CA(s) to trust for `sslmode=verify-full` when the URL has no
    /// `sslrootcert` (default none: the web PKI roots).
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            table_prefix: "nanosession_".to_owned(),
            capacity: 100_000,
            pool_size: 16,
            timeout: Duration::from_secs(2),
            reply_margin: Duration::from_secs(1),
            server_statement_timeout: true,
            require_synchronous_replication: false,
            tls_ca_file: None,
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
    /// A recount is running: everyone else uses the estimate meanwhile (one count per
    /// instance per interval, not one per concurrent 402 that saw it stale).
    recounting: bool,
    /// Recounts run so far (for monitoring and tests).
    recounts: u64,
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
    find_session: String,
    record_payment: String,
    lock_read: String,
    lock_write: String,
    lock_idle: String,
    lock_drop: String,
    lock_drop_and_release: String,
    lock_prune: String,
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
            spent_owner: format!("SELECT owner_key, owner FROM {p}spent WHERE hash = $1"),
            // One statement decides: insert (claims = 1), or re-enter if this session owns it
            // (claims + 1), or no row at all when another session owns it. Rows of earlier
            // versions have no owner_key (NULL never equals): spent for every session.
            spent_claim: format!(
                "INSERT INTO {p}spent (hash, owner_key, claims, keep_until) VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (hash) DO UPDATE SET claims = {p}spent.claims + 1 \
                 WHERE {p}spent.owner_key = EXCLUDED.owner_key RETURNING claims"
            ),
            spent_release: format!("DELETE FROM {p}spent WHERE hash = $1 AND owner_key = $2 AND claims = 1"),
            spent_prune: format!("DELETE FROM {p}spent WHERE keep_until < $1"),
            spent_len: format!("SELECT count(*) FROM {p}spent"),
            find_session: format!(
                "SELECT id, data FROM {p}sessions WHERE pay_to = $1 AND amount = $2 AND expires_at >= $3"
            ),
            // Compare-and-set on the record as read: only another match changes it.
            record_payment: format!("UPDATE {p}sessions SET data = $2 WHERE id = $1 AND data = $3"),
            lock_read: format!("SELECT hash, until, busy_until FROM {p}locks WHERE lock_key = ANY($1)"),
            lock_write: format!(
                "INSERT INTO {p}locks (lock_key, hash, until, busy_until) SELECT k, $2, $3, $4 FROM unnest($1::bytea[]) k \
                 ON CONFLICT (lock_key) DO UPDATE SET hash = EXCLUDED.hash, until = EXCLUDED.until, \
                 busy_until = EXCLUDED.busy_until"
            ),
            lock_idle: format!("UPDATE {p}locks SET busy_until = 0 WHERE lock_key = ANY($1) AND hash = $2"),
            lock_drop: format!("DELETE FROM {p}locks WHERE lock_key = ANY($1) AND hash = $2"),
            // One statement, so the claim goes only together with its locks.
            lock_drop_and_release: format!(
                "WITH dropped AS (DELETE FROM {p}locks WHERE lock_key = ANY($1) AND hash = $2) \
                 DELETE FROM {p}spent WHERE hash = $2 AND owner_key = $3 AND claims = 1"
            ),
            lock_prune: format!("DELETE FROM {p}locks WHERE until < $1"),
        }
    }

    /// Sessions: `id` holds the [`SessionKey`] (never the id) and `data` the record without
    /// the id. Rows written by 57fee3c hold ids there; lookups by key never find them, the
    /// amount index still counts them (so old and new instances keep amounts unique), and they
    /// are pruned with their expiry. Spent: `owner_key` is the claiming session's key; the
    /// legacy `owner` column keeps the id rows of 57fee3c were written with (NULL in new rows).
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
                owner_key bytea,
                claims integer NOT NULL,
                keep_until bigint NOT NULL,
                owner bytea);
             CREATE INDEX IF NOT EXISTS {p}spent_keep_until ON {p}spent (keep_until);
             -- Tables of earlier versions: before claims carried their session (no owner: rows
             -- belong to no session), and 57fee3c (owner NOT NULL, the session id in clear).
             ALTER TABLE {p}spent ADD COLUMN IF NOT EXISTS owner bytea;
             ALTER TABLE {p}spent ALTER COLUMN owner DROP NOT NULL;
             ALTER TABLE {p}spent ALTER COLUMN owner DROP DEFAULT;
             ALTER TABLE {p}spent ADD COLUMN IF NOT EXISTS owner_key bytea;
             ALTER TABLE {p}spent ADD COLUMN IF NOT EXISTS claims integer NOT NULL DEFAULT 1;
             -- Hand-off locks: 'p' || previous, 's' || session key.
             CREATE TABLE IF NOT EXISTS {p}locks (
                lock_key bytea PRIMARY KEY,
                hash bytea NOT NULL,
                until bigint NOT NULL,
                busy_until bigint NOT NULL);"
        )
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    // tokio-postgres and deadpool errors carry no connection string.
    StoreError::new("postgres", e.to_string())
}

fn decode(data: &str, key: &SessionKey) -> Result<StoredSession, StoreError> {
    Record::from_json("postgres", data.as_bytes(), *key)
}

/// The advisory lock number serialising hand-off claims on one lock key (its first 8 bytes
/// after the tag: previous hashes and session keys are uniformly random).
fn advisory_id(key: &[u8]) -> i64 {
    i64::from_be_bytes(key[1..9].try_into().expect("lock keys are longer than 9 bytes"))
}

/// `sslmode` and `sslrootcert` taken out of a connection string (tokio-postgres knows neither
/// `verify-*` nor `sslrootcert`), and the string without them.
struct TlsParams {
    url: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl TlsParams {
    fn take_from(url: &str) -> Self {
        let (mut sslmode, mut sslrootcert) = (None, None);
        let mut keep = |key: &str, value: String| {
            match key {
                "sslmode" => sslmode = Some(value),
                "sslrootcert" => sslrootcert = Some(value),
                _ => return true,
            }
            false
        };
        let url = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            match url.split_once('?') {
                None => url.to_owned(),
                Some((base, query)) => {
                    let kept: Vec<&str> = query
                        .split('&')
                        .filter(|pair| {
                            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                            let decode = |s: &str| {
                                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                                    .next()
                                    .map(|(_, v)| v.into_owned())
                                    .unwrap_or_default()
                            };
                            keep(&decode(k), decode(v))
                        })
                        .collect();
                    if kept.is_empty() {
                        base.to_owned()
                    } else {
                        format!("{base}?{}", kept.join("&"))
                    }
                }
            }
        } else {
            // key=value form (values of these two keys without spaces or quotes).
            url.split_whitespace()
                .filter(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    keep(k, v.to_owned())
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        TlsParams { url, sslmode, sslrootcert }
    }
}

/// The rustls configuration: certificate and host name checked against `ca_file` (or the web
/// PKI roots) when `verify`, else encryption only (libpq's `require`).
fn tls_config(verify: bool, ca_file: Option<&PathBuf>) -> Result<rustls::ClientConfig, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(err)?;
    if !verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                StoreError::new("postgres", format!("cannot read sslrootcert {}: {e}", path.display()))
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `sslmode=require`: the server's certificate is not checked (anyone on the path can pose as
/// the server), but the handshake's signatures are, so the session is encrypted to whoever
/// presented the certificate. Use `verify-full` across untrusted networks.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The claim statement's answer: the row's claim count, or no row when another session owns
/// the hash.
fn claim_outcome(row: Option<tokio_postgres::Row>) -> Claim {
    match row.map(|r| r.get::<_, i32>(0)) {
        Some(1) => Claim::New,
        Some(_) => Claim::Reentered,
        None => Claim::Spent,
    }
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
        let tls = TlsParams::take_from(url);
        let mut config: tokio_postgres::Config =
            tls.url.parse().map_err(|_| StoreError::new("postgres", "invalid PostgreSQL connection URL"))?;
        let (mode, verify) = match tls.sslmode.as_deref() {
            Some("disable") => (SslMode::Disable, false),
            None | Some("allow" | "prefer") => (SslMode::Prefer, false),
            Some("require") => (SslMode::Require, false),
            Some("verify-ca" | "verify-full") => (SslMode::Require, true),
            Some(_) => return Err(StoreError::new("postgres", "unknown sslmode in the connection URL")),
        };
        config.ssl_mode(mode);
        let ca_file = tls.sslrootcert.map(PathBuf::from).or_else(|| options.tls_ca_file.clone());
        let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(verify, ca_file.as_ref())?);
        // The server gives up at `timeout`, the client waits `reply_margin` longer: an answer
        // the client gave up on belongs to a statement the server abandoned.
        if options.server_statement_timeout {
            let user_options = config.get_options().unwrap_or_default().to_owned();
            config.options(
                format!("{user_options} -c statement_timeout={}", options.timeout.as_millis().max(1)).trim(),
            );
        }
        let manager = Manager::from_config(
            config,
            connector,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .wait_timeout(Some(options.timeout))
            .create_timeout(Some(options.timeout))
            .recycle_timeout(Some(options.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(err)?;
        let stale = Instant::now().checked_sub(RECOUNT_EVERY).unwrap_or_else(Instant::now);
        let live = Arc::new(Mutex::new(LiveCount {
            counted: 0,
            at: stale,
            delta: 0,
            recounting: false,
            recounts: 0,
        }));
        let store = PostgresStore { pool, sql: Sql::new(p), options, live };
        store.create_schema().await?;
        store.check_replication().await?;
        Ok(store)
    }

    /// Warns about (or, with [`PostgresOptions::require_synchronous_replication`], refuses)
    /// settings under which an acknowledged claim can be lost: F9 of the security review.
    async fn check_replication(&self) -> Result<(), StoreError> {
        let row = self
            .query_opt(
                "SELECT current_setting('synchronous_commit'), current_setting('synchronous_standby_names'), \
                 (SELECT count(*) FROM pg_stat_replication)",
                &[],
            )
            .await?
            .ok_or_else(|| StoreError::new("postgres", "no answer about replication settings"))?;
        let (commit, standby_names, standbys): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        let waits_for_standby =
            !standby_names.trim().is_empty() && !matches!(commit.as_str(), "off" | "local");
        if self.options.require_synchronous_replication && !waits_for_standby {
            return Err(StoreError::new(
                "postgres",
                format!(
                    "require_synchronous_replication is set, but commits do not wait for a standby \
                     (synchronous_commit = {commit:?}, synchronous_standby_names = {standby_names:?}): set \
                     synchronous_standby_names and synchronous_commit = on or remote_apply"
                ),
            ));
        }
        if commit == "off" {
            tracing::warn!(
                "PostgreSQL synchronous_commit is off: a server crash loses the last acknowledged \
                 claims, which re-opens those payments for replay"
            );
        }
        if standbys > 0 && !waits_for_standby {
            tracing::warn!(
                standbys,
                "PostgreSQL streams to asynchronous standbys: a failover loses the last acknowledged \
                 claims and sessions (replication lag), so a payment can be granted twice; set \
                 synchronous_standby_names and synchronous_commit = on"
            );
        }
        Ok(())
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        let mut client = tokio::time::timeout(self.options.timeout, self.pool.get())
            .await
            .map_err(|_| StoreError::new("postgres", "connecting timed out"))?
            .map_err(err)?;
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
        {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            let age = live.at.elapsed();
            let estimate = live.counted + live.delta;
            let fresh = age < RECOUNT_EVERY && (estimate < cap || age < FULL_RECHECK);
            if fresh || live.recounting {
                return Ok(estimate);
            }
            live.recounting = true;
            live.recounts += 1;
        }
        let counted = self.query_opt(&self.sql.count_live, &[&now, &cap]).await;
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.recounting = false;
        let counted: i64 = counted?.map_or(0, |row| row.get(0));
        // Inserts and takes that finished during the count are in it or in `delta`; keeping
        // `delta` would count them twice, dropping it may miss some: the count wins, as before.
        (live.counted, live.at, live.delta) = (counted, Instant::now(), 0);
        Ok(counted)
    }

    /// How many exact recounts of pending sessions this instance has run.
    pub fn recounts(&self) -> u64 {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).recounts
    }

    fn adjust_live(&self, by: i64) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).delta += by;
    }

    /// A pooled connection and the prepared statement, each under `timeout`: nothing is
    /// written yet, so giving up here is harmless, and a slow pool never eats into the
    /// statement's own wait.
    async fn prepare(
        &self,
        sql: &str,
    ) -> Result<(deadpool_postgres::Object, tokio_postgres::Statement), StoreError> {
        let timeout = self.options.timeout;
        let client = tokio::time::timeout(timeout, self.pool.get())
            .await
            .map_err(|_| StoreError::new("postgres", "no pooled connection in time"))?
            .map_err(err)?;
        let statement = tokio::time::timeout(timeout, client.prepare_cached(sql))
            .await
            .map_err(|_| StoreError::new("postgres", "preparing a statement timed out"))?
            .map_err(err)?;
        Ok((client, statement))
    }

    /// Waits for a statement's answer strictly longer than the server's `statement_timeout`.
    async fn answer<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<Result<T, tokio_postgres::Error>, StoreError> {
        tokio::time::timeout(self.options.timeout + self.options.reply_margin, f)
            .await
            .map_err(|_| StoreError::new("postgres", "statement timed out"))
    }

    /// The answer of a statement run on `client`. A server that refuses writes is a primary
    /// demoted by a failover: its connections leave the pool (this one and the idle ones), so
    /// the next statement connects anew and `target_session_attrs=read-write` finds the new
    /// primary among the hosts. This call still fails (503): nothing was written.
    fn checked<T>(
        &self,
        client: deadpool_postgres::Object,
        answer: Result<Result<T, tokio_postgres::Error>, StoreError>,
    ) -> Result<T, StoreError> {
        match answer? {
            Ok(value) => Ok(value),
            Err(e) => {
                if e.code() == Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION) {
                    tracing::warn!("PostgreSQL host is read-only (demoted?): reconnecting");
                    drop(deadpool_postgres::Object::take(client));
                    self.pool.retain(|_, _| false);
                }
                Err(err(e))
            }
        }
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let (client, statement) = self.prepare(sql).await?;
        let answer = self.answer(client.execute(&statement, params)).await;
        self.checked(client, answer)
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        let (client, statement) = self.prepare(sql).await?;
        let answer = self.answer(client.query_opt(&statement, params)).await;
        self.checked(client, answer)
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    /// This instance's estimate (the last exact count plus its own changes since): no query.
    async fn pending_count(&self) -> Result<Option<u64>, StoreError> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Some((live.counted + live.delta).max(0) as u64))
    }

    async fn insert(&self, session: &Session, now: u64) -> Result<Insert, StoreError> {
        let pay_to = session.pay_to.public_key().as_bytes().as_slice();
        let amount = session.amount.get().to_be_bytes();
        let now = to_i64(now);
        let cap = to_i64(self.options.capacity);
        if self.estimate_live(now, cap).await? >= cap {
            return Ok(Insert::Full);
        }
        let data = Record::to_json(session);
        let key = session.id.key();
        let id = key.as_bytes().as_slice();
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

    async fn get_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        let row = self.query_opt(&self.sql.get_session, &[&key.as_bytes().as_slice()]).await?;
        row.map(|r| decode(r.get(0), key)).transpose()
    }

    async fn take_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        let row = self.query_opt(&self.sql.take_session, &[&key.as_bytes().as_slice()]).await?;
        let session = row.map(|r| decode(r.get(0), key)).transpose()?;
        if session.as_ref().is_some_and(|s| !s.is_expired(crate::session::unix_now())) {
            self.adjust_live(-1);
        }
        Ok(session)
    }

    async fn record_payment(&self, key: &SessionKey, payment: &WatchedPayment) -> Result<bool, StoreError> {
        let id = key.as_bytes().as_slice();
        for _ in 0..3 {
            let Some(row) = self.query_opt(&self.sql.get_session, &[&id]).await? else { return Ok(false) };
            let old: String = row.get(0);
            let mut session = decode(&old, key)?;
            if session.watched.is_some() {
                return Ok(false);
            }
            session.watched = Some(*payment);
            let new = Record::stored_json(&session);
            if self.execute(&self.sql.record_payment, &[&id, &new, &old]).await? == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn find_by_amount(
        &self,
        pay_to: &Address,
        amount: Raw,
        now: u64,
    ) -> Result<Option<StoredSession>, StoreError> {
        let pay_to = pay_to.public_key().as_bytes().as_slice();
        let amount = amount.get().to_be_bytes();
        let row =
            self.query_opt(&self.sql.find_session, &[&pay_to, &amount.as_slice(), &to_i64(now)]).await?;
        let Some(row) = row else { return Ok(None) };
        // Rows of 57fee3c hold ids where keys belong: found, they could never be taken by key.
        let Ok(key) = <[u8; 16]>::try_from(row.get::<_, &[u8]>(0)) else { return Ok(None) };
        decode(row.get(1), &SessionKey::from_bytes(key)).map(Some)
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        // Only expired rows go, and the live count never held them.
        self.execute(&self.sql.prune_sessions, &[&to_i64(now)]).await
    }

    fn capacity(&self) -> Option<u64> {
        Some(self.options.capacity)
    }
}

#[async_trait]
impl SpentSet for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn owner(&self, hash: &BlockHash) -> Result<Option<SessionKey>, StoreError> {
        let row = self.query_opt(&self.sql.spent_owner, &[&hash.as_bytes().as_slice()]).await?;
        Ok(row.map(|r| {
            let key: Option<&[u8]> = r.get(0);
            let legacy: Option<&[u8]> = r.get(1);
            match (
                key.and_then(|k| <[u8; 16]>::try_from(k).ok()),
                legacy.and_then(|o| <[u8; 16]>::try_from(o).ok()),
            ) {
                (Some(key), _) => SessionKey::from_bytes(key),
                // 57fee3c rows: the owner's id in clear, which means its key.
                (None, Some(id)) => SessionId::from_bytes(id).key(),
                // Rows from before claims carried their session: spent by a session nobody can
                // present again.
                (None, None) => SessionKey::from_bytes([0; 16]),
            }
        }))
    }

    async fn claim_by_key(
        &self,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
    ) -> Result<Claim, StoreError> {
        let row = self
            .query_opt(
                &self.sql.spent_claim,
                &[&hash.as_bytes().as_slice(), &session.as_bytes().as_slice(), &to_i64(keep_until)],
            )
            .await?;
        Ok(claim_outcome(row))
    }

    async fn release_by_key(&self, hash: &BlockHash, session: &SessionKey) -> Result<(), StoreError> {
        self.execute(&self.sql.spent_release, &[&hash.as_bytes().as_slice(), &session.as_bytes().as_slice()])
            .await
            .map(|_| ())
    }

    async fn claim_handoff(&self, claim: &HandoffClaim, now: u64) -> Result<Claim, StoreError> {
        let keys = Lock::keys(claim);
        let mut client = tokio::time::timeout(self.options.timeout, self.pool.get())
            .await
            .map_err(|_| StoreError::new("postgres", "no pooled connection in time"))?
            .map_err(err)?;
        let work = async {
            let tx = client.transaction().await?;
            // Concurrent claims on either key queue here until this transaction ends, so the
            // read-check-write below is atomic across instances. Sorted: no deadlocks.
            let mut ids = keys.each_ref().map(|k| advisory_id(k));
            ids.sort_unstable();
            for id in ids {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&id]).await?;
            }
            let hash = claim.hash.as_bytes().as_slice();
            let row = tx
                .query_opt(
                    &self.sql.spent_claim,
                    &[&hash, &claim.session.as_bytes().as_slice(), &to_i64(claim.keep_until)],
                )
                .await?;
            let outcome = claim_outcome(row);
            if outcome == Claim::Spent {
                return Ok(Claim::Spent);
            }
            let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            for row in tx.query(&self.sql.lock_read, &[&keys]).await? {
                let lock = Lock {
                    hash: BlockHash::from_bytes(row.get::<_, &[u8]>(0).try_into().unwrap_or([0; 32])),
                    until: row.get::<_, i64>(1).max(0) as u64,
                    busy_until: row.get::<_, i64>(2).max(0) as u64,
                };
                if lock.blocks(claim, now) {
                    // Dropping the transaction rolls the claim back.
                    return Ok(Claim::InFlight);
                }
            }
            tx.execute(
                &self.sql.lock_write,
                &[&keys, &hash, &to_i64(claim.lock_until), &to_i64(claim.busy_until)],
            )
            .await?;
            tx.commit().await?;
            Ok(outcome)
        };
        let answer = self.answer(work).await;
        self.checked(client, answer)
    }

    async fn release_handoff(&self, claim: &HandoffClaim, how: HandoffRelease) -> Result<(), StoreError> {
        let keys = Lock::keys(claim);
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let hash = claim.hash.as_bytes().as_slice();
        match how {
            HandoffRelease::Kept => self.execute(&self.sql.lock_idle, &[&keys, &hash]).await,
            HandoffRelease::Granted => self.execute(&self.sql.lock_drop, &[&keys, &hash]).await,
            HandoffRelease::Refused => {
                let session = claim.session.as_bytes().as_slice();
                self.execute(&self.sql.lock_drop_and_release, &[&keys, &hash, &session]).await
            }
        }
        .map(|_| ())
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        self.execute(&self.sql.lock_prune, &[&to_i64(now)]).await?;
        self.execute(&self.sql.spent_prune, &[&to_i64(now)]).await
    }

    async fn size(&self) -> Result<Option<u64>, StoreError> {
        let row = self.query_opt(&self.sql.spent_len, &[]).await?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }
}
