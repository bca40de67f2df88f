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

    /// Group commit: 256 concurrent inserts and claims are all applied and durable (they
    /// survive reopening), in far fewer write transactions (fsyncs) than operations.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_stay_durable() {
        let path = path();
        let store = Arc::new(FileStore::open_with_capacity(&path, 1_000).await.unwrap());
        let before = store.commits();
        let merchant = random_merchant();
        let sessions: Vec<_> = (0..128).map(|tag| session(merchant, 1_000_000, tag, 0, 300)).collect();
        let hashes: Vec<_> = (0..128).map(|_| random_hash()).collect();
        let mut tasks = Vec::new();
        for (s, h) in sessions.iter().cloned().zip(hashes.iter().copied()) {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let inserted = store.insert(&s, nanosession::session::unix_now()).await.unwrap();
                let claimed = store.claim(&h, &s.id, u64::MAX).await.unwrap();
                (inserted, claimed)
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), (Insert::Inserted, nanosession::store::Claim::New));
        }
        let commits = store.commits() - before;
        assert!(commits < 256, "256 writes took {commits} commits: no group commit");
        drop(store);
        let reopened = FileStore::open(&path).await.unwrap();
        for (s, h) in sessions.iter().zip(&hashes) {
            assert!(reopened.get(&s.id).await.unwrap().is_some(), "every insert is durable");
            assert_eq!(reopened.owner(h).await.unwrap(), Some(s.id.key()), "every claim is durable");
        }
    }

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

    /// Claim and take of one grant are one transaction (one commit): the claim decides, the
    /// session goes only to its own claim, and of many concurrent grants of one session with
    /// different blocks exactly one takes it; of two sessions paying with one block, exactly
    /// one is not refused as spent, and the other keeps its session.
    #[tokio::test]
    async fn claim_and_take_is_one_commit_and_decides_once() {
        use nanosession::session::unix_now;
        use nanosession::store::Claim;
        let path = path();
        let store = Arc::new(FileStore::open(&path).await.unwrap());
        let (merchant, keep) = (random_merchant(), unix_now() + 3600);
        let s = session(merchant, 1_000_000, 1, 0, 300);
        store.insert(&s, unix_now()).await.unwrap();
        let hash = random_hash();
        let before = store.commits();
        let (claim, taken) = store.claim_and_take(&*store, &hash, &s.id.key(), keep).await.unwrap();
        assert_eq!((claim, taken.unwrap().map(|t| t.key)), (Claim::New, Some(s.id.key())));
        assert_eq!(store.commits() - before, 1, "one commit for claim and take");
        let (claim, taken) = store.claim_and_take(&*store, &hash, &s.id.key(), keep).await.unwrap();
        assert_eq!((claim, taken.unwrap()), (Claim::Reentered, None));

        // Many blocks, one session: one take.
        let s = session(merchant, 1_000_000, 2, 0, 300);
        store.insert(&s, unix_now()).await.unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (store, key) = (store.clone(), s.id.key());
                tokio::spawn(async move {
                    store.claim_and_take(&*store, &random_hash(), &key, keep).await.unwrap()
                })
            })
            .collect();
        let mut took = 0;
        for task in tasks {
            let (claim, taken) = task.await.unwrap();
            assert_eq!(claim, Claim::New);
            took += taken.unwrap().is_some() as usize;
        }
        assert_eq!(took, 1);

        // One block, two sessions: one wins, the other is refused and keeps its session.
        let (a, b) = (session(merchant, 1_000_000, 3, 0, 300), session(merchant, 1_000_000, 4, 0, 300));
        for x in [&a, &b] {
            store.insert(x, unix_now()).await.unwrap();
        }
        let hash = random_hash();
        let race = |x: nanosession::session::Session| {
            let store = store.clone();
            tokio::spawn(
                async move { store.claim_and_take(&*store, &hash, &x.id.key(), keep).await.unwrap() },
            )
        };
        let (ra, rb) = (race(a.clone()), race(b.clone()));
        let (ra, rb) = (ra.await.unwrap(), rb.await.unwrap());
        let spent = [&ra, &rb].iter().filter(|r| r.0 == Claim::Spent).count();
        assert_eq!(spent, 1);
        let loser = if ra.0 == Claim::Spent { &a } else { &b };
        assert!(store.get(&loser.id).await.unwrap().is_some(), "the refused session is kept");
        drop(store);
        let reopened = FileStore::open(&path).await.unwrap();
        assert!(reopened.get(&loser.id).await.unwrap().is_some());
        assert!(reopened.owner(&hash).await.unwrap().is_some(), "the claim is durable");
        std::fs::remove_file(&path).unwrap();
    }

    /// A file written before the session rows (sessions filed under their key, with amount
    /// and expiry index tables) opens with its pending sessions intact: found by id and by
    /// amount, still holding their amount, still taken once, and the old tables are gone.
    #[tokio::test]
    async fn sessions_of_the_earlier_layout_are_moved_into_rows() {
        use nanosession::session::unix_now;
        use redb::{ReadableDatabase, TableHandle};
        let path = path();
        let now = unix_now();
        let s = session(random_merchant(), 1_000_000, 77, 0, 300);
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let bytes = redb::TableDefinition::<&[u8], &[u8]>::new;
                let record = serde_json::json!({
                    "pay_to": s.pay_to, "price": s.price, "tag": s.tag, "amount": s.amount,
                    "created_at": s.created_at, "expires_at": s.expires_at,
                });
                let key = s.id.key();
                tx.open_table(bytes("sessions"))
                    .unwrap()
                    .insert(key.as_bytes().as_slice(), serde_json::to_vec(&record).unwrap().as_slice())
                    .unwrap();
                let mut amount = s.pay_to.public_key().as_bytes().to_vec();
                amount.extend_from_slice(&s.amount.get().to_be_bytes());
                tx.open_table(bytes("session_amounts"))
                    .unwrap()
                    .insert(amount.as_slice(), key.as_bytes().as_slice())
                    .unwrap();
                let mut expiry = s.expires_at.to_be_bytes().to_vec();
                expiry.extend_from_slice(key.as_bytes());
                tx.open_table(redb::TableDefinition::<&[u8], ()>::new("session_expiry"))
                    .unwrap()
                    .insert(expiry.as_slice(), ())
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        let store = FileStore::open(&path).await.unwrap();
        assert_eq!(store.get(&s.id).await.unwrap().map(|f| f.amount), Some(s.amount));
        assert_eq!(
            store.find_by_amount(&s.pay_to, s.amount, now).await.unwrap().map(|f| f.key),
            Some(s.id.key())
        );
        let rival =
            nanosession::session::Session { id: nanosession::session::SessionId::generate(), ..s.clone() };
        assert_eq!(store.insert(&rival, now).await.unwrap(), Insert::AmountInUse);
        assert_eq!(store.pending_count().await.unwrap(), Some(1));
        drop(store);
        {
            let db = redb::Database::open(&path).unwrap();
            let tx = db.begin_read().unwrap();
            let tables: Vec<String> = tx.list_tables().unwrap().map(|t| t.name().to_owned()).collect();
            assert!(!tables.iter().any(|t| t == "sessions" || t == "session_amounts"), "{tables:?}");
        }
        let store = FileStore::open(&path).await.unwrap();
        assert_eq!(store.take(&s.id).await.unwrap().map(|f| f.amount), Some(s.amount));
        assert_eq!(store.take(&s.id).await.unwrap(), None);
        drop(store);
        let store = FileStore::open(&path).await.unwrap();
        assert_eq!(store.get(&s.id).await.unwrap(), None, "the take is durable");
        std::fs::remove_file(&path).unwrap();
    }

    /// The in-memory index is rebuilt from the rows: after reopening, every pending session is
    /// found by id and by amount, a recorded payment is still there, and taken or pruned
    /// sessions stay gone.
    #[tokio::test]
    async fn the_index_is_rebuilt_from_the_rows() {
        use nanosession::session::unix_now;
        use nanosession::store::WatchedPayment;
        let path = path();
        let now = unix_now();
        let merchant = random_merchant();
        let live: Vec<_> = (0..50).map(|i| session(merchant, 1_000_000, i, 0, 300)).collect();
        let old = session(merchant, 1_000_000, 99, 1_000, 10);
        let watched = WatchedPayment { block: random_hash(), payer: random_merchant(), first_seen: now };
        {
            let store = FileStore::open(&path).await.unwrap();
            for s in live.iter().chain([&old]) {
                assert_eq!(store.insert(s, now - 1_000).await.unwrap(), Insert::Inserted);
            }
            assert!(store.record_payment(&live[0].id.key(), &watched).await.unwrap());
            assert!(store.take(&live[1].id).await.unwrap().is_some());
            assert_eq!(SessionStore::prune(&store, now).await.unwrap(), 1);
        }
        let store = FileStore::open(&path).await.unwrap();
        assert_eq!(store.pending_count().await.unwrap(), Some(49));
        assert_eq!(store.get_by_key(&live[0].id.key()).await.unwrap().unwrap().watched, Some(watched));
        assert_eq!(store.get(&live[1].id).await.unwrap(), None);
        assert_eq!(store.get(&old.id).await.unwrap(), None);
        for s in &live[2..] {
            let found = store.find_by_amount(&merchant, s.amount, now).await.unwrap();
            assert_eq!(found.map(|f| f.key), Some(s.id.key()));
        }
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

    /// Fork protection shared by instances: two connections (instances) on one prefix race
    /// hand-offs on one `previous`, and submissions of one block; one claim each time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn handoff_locks_are_shared_by_two_instances() {
        let Ok(url) = std::env::var("REDIS_URL") else { return };
        let options = RedisOptions { prefix: super::unique_prefix(), ..Default::default() };
        let a: Arc<dyn nanosession::store::SpentSet> =
            Arc::new(RedisStore::connect_with(&url, options.clone()).await.unwrap());
        let b: Arc<dyn nanosession::store::SpentSet> =
            Arc::new(RedisStore::connect_with(&url, options).await.unwrap());
        nanosession::store::conformance::spent_handoff_locks_under_races(a, vec![b]).await;
    }

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

    /// A spent entry written by 57fee3c (field `o`, the owner's id in clear, with a TTL)
    /// still means spent: its owner reads as that session's key, and every claim loses.
    #[tokio::test]
    async fn legacy_spent_entries_are_spent() {
        use nanosession::session::{unix_now, SessionId};
        use nanosession::store::{Claim, SpentSet};
        let Ok(url) = std::env::var("REDIS_URL") else {
            eprintln!("REDIS_URL is not set: skipping (./scripts/test runs it)");
            return;
        };
        let prefix = super::unique_prefix();
        let store =
            RedisStore::connect_with(&url, RedisOptions { prefix: prefix.clone(), ..Default::default() })
                .await
                .unwrap();
        let (hash, owner) = (nanosession::store::conformance::random_hash(), SessionId::generate());
        let mut conn =
            redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let key = format!("{prefix}spent:{hash}");
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("o")
            .arg(owner.to_string())
            .arg("n")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(store.owner(&hash).await.unwrap(), Some(owner.key()));
        assert_eq!(
            store.claim(&hash, &SessionId::generate(), unix_now() + 3600).await.unwrap(),
            Claim::Spent
        );
        assert_eq!(store.claim(&hash, &owner, unix_now() + 3600).await.unwrap(), Claim::Spent);
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

    /// The once-a-second recount of pending sessions runs once however many concurrent 402s
    /// find the count stale (the load run: every one of them recounted, 22 ms each).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_stale_count_is_recounted_once_not_by_every_insert() {
        let Ok(url) = std::env::var("DATABASE_URL") else { return };
        let options =
            PostgresOptions { table_prefix: super::unique_prefix(), pool_size: 16, ..Default::default() };
        let store = Arc::new(PostgresStore::connect_with(&url, options).await.unwrap());
        let merchant = nanosession::store::conformance::random_merchant();
        let tasks: Vec<_> = (0..64u64)
            .map(|tag| {
                let store = store.clone();
                tokio::spawn(async move {
                    let s = nanosession::store::conformance::session(merchant, 1_000_000, tag, 0, 300);
                    nanosession::store::SessionStore::insert(&*store, &s, nanosession::session::unix_now())
                        .await
                        .unwrap()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), nanosession::store::Insert::Inserted);
        }
        assert!(store.recounts() <= 2, "{} recounts for 64 concurrent inserts", store.recounts());
    }

    /// Fork protection shared by instances: two pools (instances) on one set of tables race
    /// hand-offs on one `previous`, and submissions of one block; one claim each time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn handoff_locks_are_shared_by_two_instances() {
        let Ok(url) = std::env::var("DATABASE_URL") else { return };
        let options = PostgresOptions { table_prefix: super::unique_prefix(), ..Default::default() };
        let a: Arc<dyn nanosession::store::SpentSet> =
            Arc::new(PostgresStore::connect_with(&url, options.clone()).await.unwrap());
        let b: Arc<dyn nanosession::store::SpentSet> =
            Arc::new(PostgresStore::connect_with(&url, options).await.unwrap());
        nanosession::store::conformance::spent_handoff_locks_under_races(a, vec![b]).await;
    }

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

/// The value of a variable `./scripts/test` sets, or `None` with a notice.
fn env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if value.is_none() {
        eprintln!("{name} is not set: skipping (./scripts/test sets it and starts the server)");
    }
    value
}

/// Every store test against a real three-primary Redis Cluster (`NSTEST_REDIS_CLUSTER_URL`,
/// started by `./scripts/test`): each script's keys hash to one slot, or the cluster refuses it.
mod redis_cluster {
    use std::sync::Arc;

    use nanosession::store::{RedisOptions, RedisStore};

    pub async fn store(capacity: u64) -> Option<Arc<RedisStore>> {
        on(&super::unique_prefix(), capacity).await
    }

    async fn on(prefix: &str, capacity: u64) -> Option<Arc<RedisStore>> {
        let url = super::env("NSTEST_REDIS_CLUSTER_URL")?;
        let options = RedisOptions { prefix: prefix.to_owned(), capacity, ..Default::default() };
        Some(Arc::new(
            RedisStore::connect_with(&url, options).await.expect("the Redis Cluster is unreachable"),
        ))
    }

    nanosession::session_store_conformance!(optional: store(64), capacity = 64);
    nanosession::spent_set_conformance!(optional: store(64));

    /// Fork protection across two instances on the cluster.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn handoff_locks_are_shared_by_two_instances() {
        let prefix = super::unique_prefix();
        let (Some(a), Some(b)) = (on(&prefix, 64).await, on(&prefix, 64).await) else { return };
        nanosession::store::conformance::spent_handoff_locks_under_races(a, vec![b]).await;
    }

    /// Every key carries one of the two hash tags, and the tags name the deployment's prefix:
    /// the layout that keeps each script on one slot.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn keys_carry_the_sessions_or_the_spent_hash_tag() {
        use nanosession::session::unix_now;
        use nanosession::store::{conformance, SessionStore, SpentSet};
        let prefix = super::unique_prefix();
        let Some(store) = on(&prefix, 64).await else { return };
        let session = conformance::session(conformance::random_merchant(), 1_000_000, 7, 0, 300);
        store.insert(&session, unix_now()).await.unwrap();
        store.claim(&conformance::random_hash(), &session.id, unix_now() + 3600).await.unwrap();
        let mut keys = Vec::new();
        for port in [7101, 7102, 7103] {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let found: Vec<String> =
                redis::cmd("KEYS").arg(format!("{{{prefix}*")).query_async(&mut conn).await.unwrap();
            keys.extend(found);
        }
        let (sessions, spent) = (format!("{{{prefix}sessions}}:"), format!("{{{prefix}spent}}:"));
        assert!(keys.len() >= 5, "session, amount, pending, spent entry and count: {keys:?}");
        for key in &keys {
            assert!(key.starts_with(&sessions) || key.starts_with(&spent), "{key} has no tag");
        }
        assert!(keys.iter().any(|k| k.starts_with(&sessions)) && keys.iter().any(|k| k.starts_with(&spent)));
    }
}

/// Redis behaviours that need a server of their own (`NSTEST_REDIS_ISOLATED_URL`, with a
/// replica): eviction policy, replication acknowledgement, slowness.
mod redis_server {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use nanosession::session::{unix_now, SessionId};
    use nanosession::store::conformance::{random_hash, random_merchant, session};
    use nanosession::store::{Claim, Insert, RedisOptions, RedisStore, SessionStore, SpentSet};

    /// Tests on the isolated server reconfigure or block it: one at a time.
    static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
        redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
    }

    fn options() -> RedisOptions {
        RedisOptions { prefix: super::unique_prefix(), ..Default::default() }
    }

    /// F8: a Redis that may evict is refused at start (naming the policy), unless overridden;
    /// one whose CONFIG is forbidden is refused with a message naming the override.
    #[tokio::test]
    async fn an_evicting_redis_is_refused() {
        let Some(url) = super::env("NSTEST_REDIS_ISOLATED_URL") else { return };
        let _one = SERVER.lock().await;
        let mut conn = raw(&url).await;
        let set = |policy: &'static str| {
            let mut conn = conn.clone();
            async move {
                let _: () = redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("maxmemory-policy")
                    .arg(policy)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        };
        set("volatile-lru").await;
        let refused = RedisStore::connect_with(&url, options()).await;
        let allowed =
            RedisStore::connect_with(&url, RedisOptions { allow_eviction: true, ..options() }).await;
        set("noeviction").await;
        let error = refused.expect_err("volatile-lru is refused").to_string();
        assert!(error.contains("maxmemory-policy") && error.contains("volatile-lru"), "{error}");
        assert!(allowed.is_ok(), "allow_eviction overrides");
        assert!(RedisStore::connect_with(&url, options()).await.is_ok(), "noeviction is accepted");

        // A user without CONFIG (as on managed Redis).
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "nstest_noconfig", "on", ">pw", "~*", "&*", "+@all", "-config"][..])
            .query_async(&mut conn)
            .await
            .unwrap();
        let limited = url.replace("redis://", "redis://nstest_noconfig:pw@");
        let error =
            RedisStore::connect_with(&limited, options()).await.expect_err("unknown policy").to_string();
        assert!(error.contains("allow_eviction") && !error.contains("pw@"), "{error}");
        let allowed =
            RedisStore::connect_with(&limited, RedisOptions { allow_eviction: true, ..options() }).await;
        assert!(allowed.is_ok());
    }

    /// F8: nothing the store writes can expire or be picked by a `volatile-*` eviction: no key
    /// has a TTL.
    #[tokio::test]
    async fn no_key_has_a_ttl() {
        let Some(url) = super::env("REDIS_URL") else { return };
        let options = options();
        let prefix = options.prefix.clone();
        let store = RedisStore::connect_with(&url, options).await.unwrap();
        let s = session(random_merchant(), 1_000_000, 3, 0, 300);
        assert_eq!(store.insert(&s, unix_now()).await.unwrap(), Insert::Inserted);
        assert_eq!(store.claim(&random_hash(), &s.id, unix_now() + 3600).await.unwrap(), Claim::New);
        let mut conn = raw(&url).await;
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap();
        assert!(keys.len() >= 4, "session, amount, pending, spent, spent index: {keys:?}");
        for key in keys {
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
            assert_eq!(ttl, -1, "{key} has a TTL");
        }
    }

    /// Entries kept forever (`keep_until` = `u64::MAX`) get no index entry and are never
    /// pruned; `size` counts claims and releases.
    #[tokio::test]
    async fn entries_kept_forever_are_not_indexed() {
        let Some(url) = super::env("REDIS_URL") else { return };
        let options = options();
        let prefix = options.prefix.clone();
        let store = RedisStore::connect_with(&url, options).await.unwrap();
        let (forever, once, released, id) =
            (random_hash(), random_hash(), random_hash(), SessionId::generate());
        assert_eq!(store.claim(&forever, &id, u64::MAX).await.unwrap(), Claim::New);
        assert_eq!(store.claim(&once, &id, unix_now() - 10).await.unwrap(), Claim::New);
        assert_eq!(
            store.claim(&released, &SessionId::generate(), unix_now() + 60).await.unwrap(),
            Claim::New
        );
        assert_eq!(store.size().await.unwrap(), Some(3));
        store.release(&released, &SessionId::generate()).await.unwrap();
        assert_eq!(store.size().await.unwrap(), Some(3), "a non-owner's release changes nothing");
        let mut conn = raw(&url).await;
        let indexed: u64 =
            redis::cmd("ZCARD").arg(format!("{prefix}spent_expiry")).query_async(&mut conn).await.unwrap();
        assert_eq!(indexed, 2, "the entry kept forever has no index entry");
        assert_eq!(SpentSet::prune(&store, unix_now()).await.unwrap(), 1);
        assert_eq!(store.size().await.unwrap(), Some(2));
        assert!(
            store.owner(&forever).await.unwrap().is_some() && store.owner(&once).await.unwrap().is_none()
        );
    }

    /// F18: amount reservations follow the layer's clock, whatever Redis's clock says: a
    /// session on a clock 11 days ahead of or behind Redis holds its amount through expiry
    /// plus the grace, and not beyond.
    #[tokio::test]
    async fn amount_reservations_follow_the_layers_clock() {
        let Some(url) = super::env("REDIS_URL") else { return };
        let store = RedisStore::connect_with(&url, options()).await.unwrap();
        for offset in [-1_000_000i64, 1_000_000] {
            let now = unix_now().checked_add_signed(offset).unwrap();
            let merchant = random_merchant();
            let at = |now: u64| {
                let mut s = session(merchant, 1_000_000, 5, 0, 300);
                s.created_at = now;
                s.expires_at = now + 300;
                s
            };
            let first = at(now);
            assert_eq!(store.insert(&first, now).await.unwrap(), Insert::Inserted);
            let grace = nanosession::store::SESSION_GRACE_SECS;
            let later = now + 300 + grace;
            assert_eq!(
                store.insert(&at(later), later).await.unwrap(),
                Insert::AmountInUse,
                "offset {offset}: reserved"
            );
            let after = later + 1;
            assert_eq!(
                store.insert(&at(after), after).await.unwrap(),
                Insert::Inserted,
                "offset {offset}: free"
            );
        }
    }

    /// F9: with `min_replicas`, claims and takes count only once a replica has them; a
    /// shortfall is an error and the claim stays with its session, so its retry re-enters.
    #[tokio::test]
    async fn claims_wait_for_replicas() {
        let Some(url) = super::env("NSTEST_REDIS_ISOLATED_URL") else { return };
        let _one = SERVER.lock().await;
        let base = options();
        let replicated =
            RedisStore::connect_with(&url, RedisOptions { min_replicas: 1, ..base.clone() }).await.unwrap();
        let s = session(random_merchant(), 1_000_000, 4, 0, 300);
        assert_eq!(replicated.insert(&s, unix_now()).await.unwrap(), Insert::Inserted);
        let hash = random_hash();
        assert_eq!(replicated.claim(&hash, &s.id, unix_now() + 3600).await.unwrap(), Claim::New);
        assert_eq!(
            replicated.take(&s.id).await.unwrap().map(|t| t.id),
            Some(s.id),
            "one replica acknowledges"
        );

        let short = RedisStore::connect_with(
            &url,
            RedisOptions { min_replicas: 2, replica_timeout: Duration::from_millis(200), ..base.clone() },
        )
        .await
        .unwrap();
        let (hash, id) = (random_hash(), SessionId::generate());
        let error = short.claim(&hash, &id, unix_now() + 3600).await.expect_err("only one replica");
        assert!(error.to_string().contains("1 of 2"), "{error}");
        let plain = RedisStore::connect_with(&url, base).await.unwrap();
        assert_eq!(plain.owner(&hash).await.unwrap(), Some(id.key()), "the claim stays with its session");
        assert_eq!(plain.claim(&hash, &id, unix_now() + 3600).await.unwrap(), Claim::Reentered);
        assert_eq!(
            plain.claim(&hash, &SessionId::generate(), unix_now() + 3600).await.unwrap(),
            Claim::Spent
        );
    }

    /// F12: a take is waited for longer than ordinary commands, so a slow Redis that applies it
    /// late still reports it (rather than a 503 for a consumed session, which burns the payment).
    #[tokio::test]
    async fn a_slow_take_is_still_answered() {
        let Some(url) = super::env("NSTEST_REDIS_ISOLATED_URL") else { return };
        let _one = SERVER.lock().await;
        let options = RedisOptions {
            timeout: Duration::from_millis(300),
            decision_timeout: Duration::from_secs(5),
            ..options()
        };
        let store = Arc::new(RedisStore::connect_with(&url, options).await.unwrap());
        let s = session(random_merchant(), 1_000_000, 6, 0, 300);
        assert_eq!(store.insert(&s, unix_now()).await.unwrap(), Insert::Inserted);
        let mut conn = raw(&url).await;
        let sleeper = tokio::spawn(async move {
            // This connection's own response timeout may end the wait; the server sleeps anyway.
            let _ = redis::cmd("DEBUG").arg("SLEEP").arg("1").query_async::<()>(&mut conn).await;
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let (get, take) = tokio::join!(store.get(&s.id), store.take(&s.id));
        assert!(get.is_err(), "ordinary commands keep their short bound");
        assert_eq!(take.unwrap().map(|t| t.id), Some(s.id), "the take waited {:?}", started.elapsed());
        sleeper.await.unwrap();
    }
}

/// F21: `rediss://` and PostgreSQL `sslmode` over rustls, against the TLS servers
/// `./scripts/test` starts with its test CA.
mod tls {
    use std::sync::Arc;

    use nanosession::store::{PostgresOptions, PostgresStore, RedisOptions, RedisStore};

    fn ca() -> Option<std::path::PathBuf> {
        super::env("NSTEST_TLS_CA").map(Into::into)
    }

    pub async fn redis(capacity: u64) -> Option<Arc<RedisStore>> {
        let url = super::env("NSTEST_REDIS_TLS_URL")?;
        let options = RedisOptions {
            prefix: super::unique_prefix(),
            capacity,
            tls_ca_file: Some(ca()?),
            ..Default::default()
        };
        Some(Arc::new(RedisStore::connect_with(&url, options).await.expect("rediss:// with the test CA")))
    }

    /// `DATABASE_URL` with `params` added to its query.
    fn pg_url(params: &str) -> Option<String> {
        let url = super::env("DATABASE_URL")?;
        Some(format!("{url}{}{params}", if url.contains('?') { '&' } else { '?' }))
    }

    pub async fn postgres(capacity: u64) -> Option<Arc<PostgresStore>> {
        let url = pg_url(&format!("sslmode=verify-full&sslrootcert={}", ca()?.display()))?;
        let options =
            PostgresOptions { table_prefix: super::unique_prefix(), capacity, ..Default::default() };
        Some(Arc::new(
            PostgresStore::connect_with(&url, options).await.expect("verify-full with the test CA"),
        ))
    }

    mod redis_conformance {
        nanosession::session_store_conformance!(optional: super::redis(64), capacity = 64);
        nanosession::spent_set_conformance!(optional: super::redis(64));
    }

    mod postgres_conformance {
        nanosession::session_store_conformance!(optional: super::postgres(64), capacity = 64);
        nanosession::spent_set_conformance!(optional: super::postgres(64));
    }

    #[tokio::test]
    async fn redis_tls_is_verified_and_required() {
        let (Some(url), Some(_)) = (super::env("NSTEST_REDIS_TLS_URL"), ca()) else { return };
        assert!(redis(64).await.is_some());
        // The test CA is not a web PKI root: the certificate is checked.
        let options = RedisOptions { prefix: super::unique_prefix(), ..Default::default() };
        assert!(RedisStore::connect_with(&url, options.clone()).await.is_err(), "unknown CA refused");
        // The port speaks TLS only.
        let plain = url.replace("rediss://", "redis://");
        assert!(RedisStore::connect_with(&plain, options).await.is_err(), "plain connection to the TLS port");
    }

    /// How many of the server's connections with this application name use TLS / do not.
    async fn pg_connections(name: &str) -> (i64, i64) {
        let url = super::env("DATABASE_URL").unwrap();
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
                 FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
                &[&name],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    #[tokio::test]
    async fn postgres_sslmodes() {
        let Some(ca) = ca() else { return };
        let connect = |params: String| async move {
            let name = super::unique_prefix();
            let url = pg_url(&format!("{params}&application_name={name}")).unwrap();
            let options = PostgresOptions { table_prefix: super::unique_prefix(), ..Default::default() };
            let store = PostgresStore::connect_with(&url, options).await;
            let counts = pg_connections(&name).await;
            (store, counts)
        };
        let (store, (tls, plain)) =
            connect(format!("sslmode=verify-full&sslrootcert={}", ca.display())).await;
        assert!(store.is_ok() && tls >= 1 && plain == 0, "verify-full: {tls} TLS, {plain} plain");
        let (store, _) = connect("sslmode=verify-full".to_owned()).await;
        assert!(store.is_err(), "verify-full checks the certificate against the web PKI roots");
        let (store, (tls, plain)) = connect("sslmode=require".to_owned()).await;
        assert!(store.is_ok() && tls >= 1 && plain == 0, "require encrypts: {tls} TLS, {plain} plain");
        let (store, (tls, plain)) = connect("sslmode=disable".to_owned()).await;
        assert!(store.is_ok() && tls == 0 && plain >= 1, "disable: {tls} TLS, {plain} plain");
    }
}

/// F9 and F12 for PostgreSQL.
mod postgres_server {
    use std::sync::Arc;
    use std::time::Duration;

    use nanosession::session::{unix_now, SessionId};
    use nanosession::store::conformance::{random_merchant, session};
    use nanosession::store::{Insert, PostgresOptions, PostgresStore, SessionStore};

    /// F9: with `require_synchronous_replication`, a server whose commits do not wait for a
    /// standby (the test server has none) is refused, naming the settings.
    #[tokio::test]
    async fn synchronous_replication_can_be_required() {
        let Some(url) = super::env("DATABASE_URL") else { return };
        let options = PostgresOptions {
            table_prefix: super::unique_prefix(),
            require_synchronous_replication: true,
            ..Default::default()
        };
        let error = PostgresStore::connect_with(&url, options).await.expect_err("no standby").to_string();
        assert!(error.contains("synchronous_standby_names"), "{error}");
        let options = PostgresOptions { table_prefix: super::unique_prefix(), ..Default::default() };
        assert!(PostgresStore::connect_with(&url, options).await.is_ok(), "only a warning by default");
    }

    /// F12: waiting for a pooled connection does not eat into the statement's wait. With the
    /// one pooled connection busy for 1.2 s, a take that then waits 1.1 s on a row lock commits
    /// after 57fee3c's shared 2 s budget, and must be reported as done, never as a failure.
    #[tokio::test]
    async fn a_take_after_a_pool_wait_is_answered() {
        let Some(url) = super::env("DATABASE_URL") else { return };
        let prefix = super::unique_prefix();
        let options = PostgresOptions {
            table_prefix: prefix.clone(),
            pool_size: 1,
            timeout: Duration::from_secs(2),
            ..Default::default()
        };
        let store = Arc::new(PostgresStore::connect_with(&url, options).await.unwrap());
        let (busy, s) = (
            session(random_merchant(), 1_000_000, 1, 0, 300),
            session(random_merchant(), 1_000_000, 2, 0, 300),
        );
        assert_eq!(store.insert(&busy, unix_now()).await.unwrap(), Insert::Inserted);
        assert_eq!(store.insert(&s, unix_now()).await.unwrap(), Insert::Inserted);
        assert!(store.take(&SessionId::generate()).await.unwrap().is_none(), "prepares the take statement");

        // Two row locks held elsewhere: `busy` for 1.2 s, `s` for 2.3 s.
        let lock = |id: nanosession::session::SessionId, hold: Duration| {
            let (url, prefix) = (url.clone(), prefix.clone());
            async move {
                let (mut client, connection) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                let (locked, release) = tokio::sync::oneshot::channel();
                tokio::spawn(async move {
                    let tx = client.transaction().await.unwrap();
                    tx.execute(
                        &format!("SELECT 1 FROM {prefix}sessions WHERE id = $1 FOR UPDATE"),
                        &[&id.key().as_bytes().as_slice()],
                    )
                    .await
                    .unwrap();
                    locked.send(()).unwrap();
                    tokio::time::sleep(hold).await;
                    tx.commit().await.unwrap();
                });
                release.await.unwrap();
            }
        };
        let start = tokio::time::Instant::now();
        tokio::join!(lock(busy.id, Duration::from_millis(1200)), lock(s.id, Duration::from_millis(2300)));
        let holder = {
            let store = store.clone();
            tokio::spawn(async move { store.take(&busy.id).await })
        };
        tokio::time::sleep_until(start + Duration::from_millis(100)).await;
        let taken = store.take(&s.id).await;
        let after_wait = store.get(&s.id).await.unwrap();
        assert!(holder.await.unwrap().unwrap().is_some());
        match taken {
            Ok(found) => assert_eq!(found.map(|t| t.id), Some(s.id)),
            Err(error) => {
                assert!(after_wait.is_some(), "the take was reported failed ({error}) but committed")
            }
        }
        assert!(after_wait.is_none(), "the take went through");
    }
}
