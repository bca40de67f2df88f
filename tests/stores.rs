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
        assert_eq!(store.owner(&hash).await.unwrap(), Some(s.id), "spent hash survives a reopen");
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
        assert_eq!(second.owner(&hash).await.unwrap(), Some(s.id), "claim survives");
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
