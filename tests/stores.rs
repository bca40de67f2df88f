//! The store conformance suite against every backend of this crate.

mod memory {
    use std::sync::Arc;

    use nanosession::store::{MemorySessionStore, MemorySpentSet};

    nanosession::session_store_conformance!(
        async { Arc::new(MemorySessionStore::with_capacity(64)) },
        capacity = 64
    );
    nanosession::spent_set_conformance!(async { Arc::new(MemorySpentSet::default()) });

    #[tokio::test]
    async fn memory_spent_set_is_bounded_and_never_evicts_live_entries() {
        use nanosession::session::SessionId;
        use nanosession::store::conformance::random_hash;
        use nanosession::store::{Claim, SpentSet};
        let spent = MemorySpentSet::with_capacity(2);
        let keep = nanosession::session::unix_now() + 3600;
        let (a, b, s) = (random_hash(), random_hash(), SessionId::generate());
        assert_eq!(spent.claim(&a, &s, keep).await.unwrap(), Claim::New);
        assert_eq!(spent.claim(&b, &s, keep).await.unwrap(), Claim::New);
        assert!(spent.claim(&random_hash(), &s, keep).await.is_err(), "full set refuses, it does not evict");
        assert!(spent.owner(&a).await.unwrap().is_some() && spent.owner(&b).await.unwrap().is_some());
    }
}

mod file {
    use std::sync::Arc;

    use nanosession::store::conformance::{random_hash, random_merchant, session};
    use nanosession::store::{FileStore, Insert, SessionStore, SpentSet};

    /// A fresh database file per test, removed when the process exits.
    fn path() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join("nanosession-file-store-tests");
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("{}.redb", nanosession::session::SessionId::generate()))
    }

    nanosession::session_store_conformance!(
        async { Arc::new(FileStore::open_with_capacity(path(), 64).await.unwrap()) },
        capacity = 64
    );
    nanosession::spent_set_conformance!(async { Arc::new(FileStore::open(path()).await.unwrap()) });

    /// F20: the redb file holds no session id, in any form.
    #[tokio::test]
    async fn no_session_id_in_the_file() {
        let path = path();
        let store = Arc::new(FileStore::open(&path).await.unwrap());
        let file = path.clone();
        nanosession::store::conformance::no_session_id_at_rest(store, || async move {
            std::fs::read(file).unwrap()
        })
        .await;
        std::fs::remove_file(&path).unwrap();
    }

    /// A spent entry written by 57fee3c (28 bytes, the owner's id in clear) still means "spent
    /// by that session": other sessions find it spent, its owner re-enters.
    #[tokio::test]
    async fn legacy_spent_entries_keep_their_owner() {
        use nanosession::session::{unix_now, SessionId};
        use nanosession::store::Claim;
        let path = path();
        let (hash, owner) = (random_hash(), SessionId::generate());
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut spent = tx.open_table(redb::TableDefinition::<&[u8], &[u8]>::new("spent")).unwrap();
                let mut v = owner.as_bytes().to_vec();
                v.extend_from_slice(&1u32.to_be_bytes());
                v.extend_from_slice(&(unix_now() + 3600).to_be_bytes());
                spent.insert(hash.as_bytes().as_slice(), v.as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let store = FileStore::open(&path).await.unwrap();
        assert_eq!(store.owner(&hash).await.unwrap(), Some(owner.key()));
        assert_eq!(
            store.claim(&hash, &SessionId::generate(), unix_now() + 3600).await.unwrap(),
            Claim::Spent
        );
        assert_eq!(store.claim(&hash, &owner, unix_now() + 3600).await.unwrap(), Claim::Reentered);
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn survives_reopening() {
        let path = path();
        let hash = random_hash();
        let s = session(random_merchant(), 1_000_000, 5, 0, 300);
        {
            let store = FileStore::open(&path).await.unwrap();
            let claim = store.claim(&hash, &s.id, nanosession::session::unix_now() + 3600).await.unwrap();
            assert_eq!(claim, nanosession::store::Claim::New);
            assert_eq!(store.insert(&s, nanosession::session::unix_now()).await.unwrap(), Insert::Inserted);
        }
        let store = FileStore::open(&path).await.unwrap();
        assert_eq!(store.owner(&hash).await.unwrap(), Some(s.id.key()), "spent hash survives a reopen");
        let other = nanosession::session::SessionId::generate();
        let claim = store.claim(&hash, &other, nanosession::session::unix_now() + 3600).await.unwrap();
        assert_eq!(claim, nanosession::store::Claim::Spent);
        assert_eq!(store.get(&s.id).await.unwrap(), Some(s.clone()), "pending session survives a reopen");
        let same_amount = session(s.pay_to, 1_000_000, 5, 0, 300);
        assert_eq!(
            store.insert(&same_amount, nanosession::session::unix_now()).await.unwrap(),
            Insert::AmountInUse
        );
        std::fs::remove_file(&path).unwrap();
    }
}

/// A fresh key prefix (Redis) or table prefix (PostgreSQL) per test, so tests never share state.
fn unique_prefix() -> String {
    format!("nstest_{}_", &nanosession::session::SessionId::generate().to_string()[..12])
}

mod redis {
    use std::sync::Arc;

    use nanosession::store::{RedisOptions, RedisStore};

    /// `None` (with a notice) when `REDIS_URL` is not set; `./scripts/test` always sets it.
    pub async fn store(capacity: u64) -> Option<Arc<RedisStore>> {
        let Ok(url) = std::env::var("REDIS_URL") else {
            eprintln!("REDIS_URL is not set: skipping the Redis store tests (./scripts/test runs them)");
            return None;
        };
        let options = RedisOptions { prefix: super::unique_prefix(), capacity, ..Default::default() };
        Some(Arc::new(
            RedisStore::connect_with(&url, options).await.expect("REDIS_URL is set but Redis is unreachable"),
        ))
    }

    nanosession::session_store_conformance!(optional: store(64), capacity = 64);
    nanosession::spent_set_conformance!(optional: store(64));

    /// Every key under `prefix` with its value(s), as raw bytes.
    pub async fn dump(url: &str, prefix: &str) -> Vec<u8> {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<Vec<u8>> =
            redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
        let mut out = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
            let values: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap()],
                "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
                    .unwrap(),
                other => panic!("unexpected key type {other}"),
            };
            out.extend_from_slice(&key);
            out.push(b'\n');
            for v in values {
                out.extend_from_slice(&v);
                out.push(b'\n');
            }
        }
        out
    }

    /// F20: no key, member or value in Redis holds a session id.
    #[tokio::test]
    async fn no_session_id_in_redis() {
        let Ok(url) = std::env::var("REDIS_URL") else {
            eprintln!("REDIS_URL is not set: skipping (./scripts/test runs it)");
            return;
        };
        let prefix = super::unique_prefix();
        let options = RedisOptions { prefix: prefix.clone(), ..Default::default() };
        let store = Arc::new(RedisStore::connect_with(&url, options).await.unwrap());
        nanosession::store::conformance::no_session_id_at_rest(
            store,
            || async move { dump(&url, &prefix).await },
        )
        .await;
    }
}

mod postgres {
    use std::sync::Arc;

    use nanosession::store::{PostgresOptions, PostgresStore};

    /// `None` (with a notice) when `DATABASE_URL` is not set; `./scripts/test` always sets it.
    pub async fn store(capacity: u64) -> Option<Arc<PostgresStore>> {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!(
                "DATABASE_URL is not set: skipping the PostgreSQL store tests (./scripts/test runs them)"
            );
            return None;
        };
        let options =
            PostgresOptions { table_prefix: super::unique_prefix(), capacity, ..Default::default() };
        Some(Arc::new(
            PostgresStore::connect_with(&url, options)
                .await
                .expect("DATABASE_URL is set but PostgreSQL is unreachable"),
        ))
    }

    nanosession::session_store_conformance!(optional: store(64), capacity = 64);
    nanosession::spent_set_conformance!(optional: store(64));

    /// Every row of the store's tables, as PostgreSQL's text form (bytea as hex).
    pub async fn dump(url: &str, prefix: &str) -> Vec<u8> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let mut out = Vec::new();
        for table in ["sessions", "spent"] {
            for row in client.query(&format!("SELECT t::text FROM {prefix}{table} t"), &[]).await.unwrap() {
                out.extend_from_slice(row.get::<_, String>(0).as_bytes());
                out.push(b'\n');
            }
        }
        out
    }

    /// F20: no row of either table holds a session id.
    #[tokio::test]
    async fn no_session_id_in_postgres() {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("DATABASE_URL is not set: skipping (./scripts/test runs it)");
            return;
        };
        let prefix = super::unique_prefix();
        let options = PostgresOptions { table_prefix: prefix.clone(), ..Default::default() };
        let store = Arc::new(PostgresStore::connect_with(&url, options).await.unwrap());
        nanosession::store::conformance::no_session_id_at_rest(
            store,
            || async move { dump(&url, &prefix).await },
        )
        .await;
    }

    /// A spent row from before claims carried their session (empty owner) still means spent,
    /// never an error that would turn replays into 503s.
    #[tokio::test]
    async fn legacy_rows_without_an_owner_are_spent() {
        use nanosession::session::{unix_now, SessionId};
        use nanosession::store::{Claim, SpentSet};
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("DATABASE_URL is not set: skipping (./scripts/test runs it)");
            return;
        };
        let prefix = super::unique_prefix();
        let options = PostgresOptions { table_prefix: prefix.clone(), ..Default::default() };
        let store = PostgresStore::connect_with(&url, options).await.unwrap();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let hash = nanosession::store::conformance::random_hash();
        client
            .execute(
                // What the migration gives rows from the old schema: an empty owner.
                &format!(
                    "INSERT INTO {prefix}spent (hash, owner, claims, keep_until) VALUES ($1, '\\x', 1, $2)"
                ),
                &[&hash.as_bytes().as_slice(), &((unix_now() + 3600) as i64)],
            )
            .await
            .unwrap();
        assert!(store.owner(&hash).await.unwrap().is_some(), "spent");
        assert_eq!(
            store.claim(&hash, &SessionId::generate(), unix_now() + 3600).await.unwrap(),
            Claim::Spent
        );
        // A 57fee3c row: the owner's id in clear, no owner_key. Its owner is that session's
        // key; every claim, the old owner's too, finds it spent.
        let (hash, owner) = (nanosession::store::conformance::random_hash(), SessionId::generate());
        client
            .execute(
                &format!(
                    "INSERT INTO {prefix}spent (hash, owner, claims, keep_until) VALUES ($1, $2, 1, $3)"
                ),
                &[&hash.as_bytes().as_slice(), &owner.as_bytes().as_slice(), &((unix_now() + 3600) as i64)],
            )
            .await
            .unwrap();
        assert_eq!(store.owner(&hash).await.unwrap(), Some(owner.key()));
        assert_eq!(store.claim(&hash, &owner, unix_now() + 3600).await.unwrap(), Claim::Spent);
    }

    /// A table created by 57fee3c (`owner bytea NOT NULL`, no `owner_key`) is migrated in
    /// place: its rows stay spent and new claims work.
    #[tokio::test]
    async fn tables_of_57fee3c_are_migrated() {
        use nanosession::session::{unix_now, SessionId};
        use nanosession::store::{Claim, SpentSet};
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("DATABASE_URL is not set: skipping (./scripts/test runs it)");
            return;
        };
        let prefix = super::unique_prefix();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let old = nanosession::store::conformance::random_hash();
        client
            .batch_execute(&format!(
                "CREATE TABLE {prefix}spent (hash bytea PRIMARY KEY, owner bytea NOT NULL, claims integer NOT NULL, keep_until bigint NOT NULL);
                 INSERT INTO {prefix}spent VALUES ('\\x{}', '\\x{}', 1, {});",
                old,
                SessionId::generate(),
                unix_now() + 3600
            ))
            .await
            .unwrap();
        let options = PostgresOptions { table_prefix: prefix.clone(), ..Default::default() };
        let store = PostgresStore::connect_with(&url, options).await.unwrap();
        assert!(store.owner(&old).await.unwrap().is_some());
        assert_eq!(store.claim(&old, &SessionId::generate(), unix_now() + 3600).await.unwrap(), Claim::Spent);
        let new = nanosession::store::conformance::random_hash();
        let s = SessionId::generate();
        assert_eq!(store.claim(&new, &s, unix_now() + 3600).await.unwrap(), Claim::New);
        assert_eq!(store.claim(&new, &s, unix_now() + 3600).await.unwrap(), Claim::Reentered);
    }
}

/// Redis and PostgreSQL keep sessions and claims across a reconnect (a restart of the process).
mod reopen {
    use std::sync::Arc;

    use nanosession::session::{unix_now, SessionId};
    use nanosession::store::conformance::{random_hash, random_merchant, session};
    use nanosession::store::{Claim, Insert, SessionStore, SpentSet};

    async fn survives<T: SessionStore + SpentSet>(
        first: Arc<T>,
        reopen: impl std::future::Future<Output = Arc<T>>,
    ) {
        let hash = random_hash();
        let s = session(random_merchant(), 1_000_000, 5, 0, 300);
        assert_eq!(first.insert(&s, unix_now()).await.unwrap(), Insert::Inserted);
        assert_eq!(first.claim(&hash, &s.id, unix_now() + 3600).await.unwrap(), Claim::New);
        drop(first);
        let second = reopen.await;
        assert_eq!(second.get(&s.id).await.unwrap(), Some(s.clone()), "pending session survives");
        assert_eq!(second.owner(&hash).await.unwrap(), Some(s.id.key()), "claim survives");
        assert_eq!(
            second.claim(&hash, &SessionId::generate(), unix_now() + 3600).await.unwrap(),
            Claim::Spent
        );
    }

    #[tokio::test]
    async fn redis_survives_reconnecting() {
        let Ok(url) = std::env::var("REDIS_URL") else {
            eprintln!("REDIS_URL is not set: skipping (./scripts/test runs it)");
            return;
        };
        let options =
            nanosession::store::RedisOptions { prefix: super::unique_prefix(), ..Default::default() };
        let connect = || async {
            Arc::new(nanosession::store::RedisStore::connect_with(&url, options.clone()).await.unwrap())
        };
        survives(connect().await, connect()).await;
    }

    #[tokio::test]
    async fn postgres_survives_reconnecting() {
        let Ok(url) = std::env::var("DATABASE_URL") else {
            eprintln!("DATABASE_URL is not set: skipping (./scripts/test runs it)");
            return;
        };
        let options = nanosession::store::PostgresOptions {
            table_prefix: super::unique_prefix(),
            ..Default::default()
        };
        let connect = || async {
            Arc::new(nanosession::store::PostgresStore::connect_with(&url, options.clone()).await.unwrap())
        };
        survives(connect().await, connect()).await;
    }
}
