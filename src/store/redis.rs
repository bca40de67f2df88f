//! The Redis store: sessions and spent set shared by any number of instances.
//!
//! Every decision is one round trip, a Lua script that Redis runs atomically: the spent-set
//! claim (a hash holding the claiming session's key) and its guarded release, session insert
//! (amount check + capacity check + write), take (read + delete + unindex) and prune.
//!
//! Nothing this store writes has a TTL. Sessions, amount reservations and spent entries are
//! removed by the prune scripts, which walk sorted sets scored by the layer's clock. So:
//! - eviction under a `volatile-*` policy never touches them, and under `allkeys-*` it would,
//!   which is why [`RedisStore::connect`] refuses to start unless `maxmemory-policy` is
//!   `noeviction` (memory full then means write errors, answered 503, never lost entries);
//! - Redis's own clock plays no part: expiry decisions use the `now` the layer passes in, so
//!   an offset between Redis and the instances cannot shorten an amount reservation.
//!
//! Session ids never reach Redis, not even as command arguments (`MONITOR`, `SLOWLOG`): keys,
//! members and values carry [`SessionKey`](crate::session::SessionKey)s.
//!
//! **Redis Cluster** (`redis-cluster://host:port,host:port,…`): every script touches one hash
//! slot. Session-side keys (sessions, amount reservations, the pending index) share the hash tag
//! `{<prefix>sessions}`, spent-side keys (spent entries, their index and count, hand-off
//! locks) the tag `{<prefix>spent}`, so each script's keys, including those it derives from
//! sorted-set members, live on one primary. The two halves may sit on two primaries; more
//! primaries add failover, not throughput. On a single server the keys keep their plain
//! names (`<prefix>s:…`, `<prefix>spent:…`), as written by earlier versions.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Script, Value};

use super::{
    Claim, HandoffClaim, HandoffRelease, Insert, Record, SessionStore, SpentSet, StoreError, StoredSession,
    WatchedPayment, SESSION_GRACE_SECS,
};
use crate::nano::{Address, BlockHash, Raw};
use crate::session::{Session, SessionId, SessionKey};

/// Removes sessions expired before `now` (with their amount reservation), at most 10,000 per
/// call: a Lua function shared by the insert (when full) and prune scripts. Members are
/// session keys (ids for sessions written by 57fee3c, which used the same names, so those are
/// pruned too).
const PRUNE_FN: &str = r#"
local function remove_session(pending, session_prefix, member)
  local key = session_prefix .. member
  local akey = redis.call('HGET', key, 'akey')
  if akey and redis.call('GET', akey) == member then redis.call('DEL', akey) end
  redis.call('DEL', key)
  redis.call('ZREM', pending, member)
end
local function prune(pending, now, session_prefix)
  local members = redis.call('ZRANGEBYSCORE', pending, '-inf', '(' .. now, 'LIMIT', 0, 10000)
  for _, member in ipairs(members) do remove_session(pending, session_prefix, member) end
  return #members
end
"#;

const INSERT: &str = r#"
-- KEYS: session, amount, pending zset.
-- ARGV: record json, session key, now, capacity, expires_at, session key prefix, grace secs
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local holder = redis.call('GET', KEYS[2])
if holder then
  local expires = redis.call('ZSCORE', KEYS[3], holder)
  -- Reserved through expires_at plus the grace, by the layer's clock.
  if expires and tonumber(expires) + tonumber(ARGV[7]) >= tonumber(ARGV[3]) then return 0 end
  if expires then remove_session(KEYS[3], ARGV[6], holder) end
  redis.call('DEL', KEYS[2])
end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then
  prune(KEYS[3], ARGV[3], ARGV[6])
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return 2 end
end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'akey', KEYS[2])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
return 1
"#;

const TAKE: &str = r#"
-- KEYS: session, pending zset. ARGV: session key
local v = redis.call('HMGET', KEYS[1], 'json', 'akey')
if not v[1] then return false end
redis.call('DEL', KEYS[1])
if v[2] and redis.call('GET', v[2]) == ARGV[1] then redis.call('DEL', v[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return v[1]
"#;

const PRUNE: &str = r#"
-- KEYS: pending zset. ARGV: now, session key prefix
return prune(KEYS[1], ARGV[1], ARGV[2])
"#;

const CLAIM: &str = r#"
-- KEYS: spent entry (hash: k = owner session key, n = claims), spent expiry zset, count.
-- ARGV: owner session key, keep_until, zset member (the block hash), '1' to index it
local v = redis.call('HMGET', KEYS[1], 'k', 'o')
if not v[1] then
  -- Entries of 57fee3c name their owner by id ('o'): spent for every session.
  if v[2] or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
  redis.call('HSET', KEYS[1], 'k', ARGV[1], 'n', 1)
  if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3]) end
  redis.call('INCR', KEYS[3])
  return 1
end
if v[1] == ARGV[1] then
  redis.call('HINCRBY', KEYS[1], 'n', 1)
  return 2
end
return 0
"#;

/// The guarded release: only the owner's single claim is undone.
const RELEASE_FN: &str = r#"
local function release(entry, zset, count, owner, member)
  local v = redis.call('HMGET', entry, 'k', 'n')
  if v[1] == owner and v[2] == '1' then
    redis.call('DEL', entry)
    redis.call('ZREM', zset, member)
    redis.call('DECR', count)
  end
end
"#;

const RELEASE: &str = r#"
-- KEYS: spent entry, spent expiry zset, count. ARGV: owner session key, zset member.
release(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
return 0
"#;

const CLAIM_HANDOFF: &str = r#"
-- KEYS: spent entry, spent expiry zset, count, previous lock, session lock, lock zset.
-- ARGV: owner session key, keep_until, block hash, '1' to index, now, lock_until, busy_until.
-- Locks are hashes: h = holding block, u = lapses at, b = lease of the running attempt.
local v = redis.call('HMGET', KEYS[1], 'k', 'o')
if v[2] or (not v[1] and redis.call('EXISTS', KEYS[1]) == 1) then return 0 end
if v[1] and v[1] ~= ARGV[1] then return 0 end
local now = tonumber(ARGV[5])
for i = 4, 5 do
  local l = redis.call('HMGET', KEYS[i], 'h', 'u', 'b')
  if l[1] then
    if l[1] == ARGV[3] then
      if tonumber(l[3]) >= now then return 3 end
    elseif tonumber(l[2]) >= now then return 3 end
  end
end
local outcome = 2
if v[1] then
  redis.call('HINCRBY', KEYS[1], 'n', 1)
else
  redis.call('HSET', KEYS[1], 'k', ARGV[1], 'n', 1)
  if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3]) end
  redis.call('INCR', KEYS[3])
  outcome = 1
end
for i = 4, 5 do
  redis.call('HSET', KEYS[i], 'h', ARGV[3], 'u', ARGV[6], 'b', ARGV[7])
  redis.call('ZADD', KEYS[6], ARGV[6], KEYS[i])
end
return outcome
"#;

const RELEASE_HANDOFF: &str = r#"
-- KEYS: as CLAIM_HANDOFF. ARGV: owner session key, block hash, 'r' refused | 'k' kept | 'g' granted.
for i = 4, 5 do
  if redis.call('HGET', KEYS[i], 'h') == ARGV[2] then
    if ARGV[3] == 'k' then
      redis.call('HSET', KEYS[i], 'b', 0)
    else
      redis.call('DEL', KEYS[i])
      redis.call('ZREM', KEYS[6], KEYS[i])
    end
  end
end
if ARGV[3] == 'r' then release(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]) end
return 0
"#;

const RECORD: &str = r#"
-- KEYS: session. ARGV: the record json as read, the record json with the match.
-- Compare-and-set: a record changed since it was read (another match) is left alone.
if redis.call('HGET', KEYS[1], 'json') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'json', ARGV[2])
return 1
"#;

const FIND: &str = r#"
-- KEYS: amount reservation. ARGV: session key prefix. Returns {session key, record json}.
local holder = redis.call('GET', KEYS[1])
if not holder then return false end
local json = redis.call('HGET', ARGV[1] .. holder, 'json')
if not json then return false end
return {holder, json}
"#;

const PRUNE_SPENT: &str = r#"
-- KEYS: spent expiry zset, count, lock zset. ARGV: now, spent key prefix
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 10000)
for _, member in ipairs(members) do
  redis.call('DEL', ARGV[2] .. member)
  redis.call('ZREM', KEYS[1], member)
end
if #members > 0 then redis.call('DECRBY', KEYS[2], #members) end
-- Lapsed hand-off locks (KEYS[3]: the lock zset, scored by when each lapses).
local locks = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[1], 'LIMIT', 0, 10000)
for _, lock in ipairs(locks) do
  redis.call('DEL', lock)
  redis.call('ZREM', KEYS[3], lock)
end
return #members
"#;

/// How many entries one prune script removes at most (keeps each script short).
const PRUNE_BATCH: u64 = 10_000;

/// Options for [`RedisStore::connect_with`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Prefix of every key (default `nanosession:`); give each deployment its own.
    pub prefix: String,
    /// Maximum of pending sessions across all instances (default 100,000).
    pub capacity: u64,
    /// Timeout for connecting and for each command that decides nothing irrevocable (default
    /// 2 s); past it the layer answers 503.
    pub timeout: Duration,
    /// How long the claim and the session take are waited for (default 10 s). Redis has no
    /// server-side bound on a script once it has written, so a claim or take the client stops
    /// waiting for may still be applied; the take's answer is then lost and the payment burned.
    /// Waiting long for these two makes that rarer; keep it well above Redis's worst latency.
    pub decision_timeout: Duration,
    /// Replicas that must acknowledge every insert, claim and take (`WAIT`) before it counts
    /// (default 0: off). With replicas and failover (Sentinel, managed HA), set it to at least
    /// 1: otherwise a failover loses the last acknowledged claims and a block can pay twice.
    /// A shortfall is answered as a store error (503); the claim stays with its session, so the
    /// client's retry re-enters it.
    pub min_replicas: u32,
    /// How long `WAIT` waits for [`min_replicas`](Self::min_replicas) (default 1 s).
    pub replica_timeout: Duration,
    /// Start even though `maxmemory-policy` is not `noeviction`, or cannot be read because
    /// `CONFIG` is disabled (default `false`). Only for a Redis you know is sized so it never
    /// evicts: an evicted spent entry re-opens a payment for replay, an evicted amount
    /// reservation lets two sessions share an amount. Logged as an error at every start.
    pub allow_eviction: bool,
    /// PEM file of the CA(s) to trust for `rediss://` instead of the built-in web PKI roots
    /// (default none), e.g. a private CA.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "nanosession:".to_owned(),
            capacity: 100_000,
            timeout: Duration::from_secs(2),
            decision_timeout: Duration::from_secs(10),
            min_replicas: 0,
            replica_timeout: Duration::from_secs(1),
            allow_eviction: false,
            tls_ca_file: None,
        }
    }
}

/// Sessions and spent set in Redis. Implements both [`SessionStore`] and [`SpentSet`].
///
/// ```no_run
/// # async fn demo() -> Result<(), nanosession::store::StoreError> {
/// let store = std::sync::Arc::new(nanosession::store::RedisStore::connect("redis://127.0.0.1:6379").await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    manager: Conn,
    options: RedisOptions,
    /// What session-side keys start with: the prefix, or in a cluster `{<prefix>sessions}:`.
    sessions_base: String,
    /// What spent-side keys start with: the prefix, or in a cluster `{<prefix>spent}:`.
    spent_base: String,
    insert: Script,
    take: Script,
    prune: Script,
    claim: Script,
    release: Script,
    claim_handoff: Script,
    release_handoff: Script,
    find: Script,
    record: Script,
    prune_spent: Script,
}

impl std::fmt::Debug for RedisStore {
    // The URL (and its password) is deliberately not kept.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("options", &self.options).finish_non_exhaustive()
    }
}

fn err(e: redis::RedisError) -> StoreError {
    // RedisError texts carry no connection URL.
    StoreError::new("redis", e.to_string())
}

/// A connection to one server (re-established by itself) or to a cluster (routed by key).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The seed nodes of a `redis-cluster://[user:password@]host:port,host:port/` URL (or
/// `rediss-cluster://`), each as a plain `redis://` (`rediss://`) URL with the credentials.
fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme {
        "redis-cluster" => "redis",
        "rediss-cluster" => "rediss",
        _ => return None,
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> =
        hosts.split(',').filter(|h| !h.is_empty()).map(|h| format!("{scheme}://{userinfo}{h}")).collect();
    Some(nodes)
}

/// Which bound a command runs under.
#[derive(Clone, Copy)]
enum Bound {
    /// Reads, inserts, prunes, releases: [`RedisOptions::timeout`].
    Ordinary,
    /// Claims and takes: [`RedisOptions::decision_timeout`].
    Decision,
}

impl RedisStore {
    /// Connects with default options. The URL's password never appears in errors or logs.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects with `options` and checks that Redis does not evict (see
    /// [`RedisOptions::allow_eviction`]). Later outages are answered 503 and the connection is
    /// re-established by itself when Redis is back.
    ///
    /// A `redis-cluster://host:port,host:port/` URL (`rediss-cluster://` with TLS, web PKI
    /// roots) connects to a Redis Cluster through the given seed nodes.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        // The connection's own bound is the longest wait any call may need; shorter calls are
        // bounded by `with_timeout`.
        let longest = options.decision_timeout.max(options.timeout) + options.replica_timeout;
        let timed_out = |_| StoreError::new("redis", "connecting timed out");
        let (manager, sessions_base, spent_base) = if let Some(nodes) = cluster_nodes(url) {
            if nodes.is_empty() {
                return Err(StoreError::new("redis", "redis-cluster:// needs at least one host:port"));
            }
            if options.prefix.contains(['{', '}']) {
                return Err(StoreError::new("redis", "in a cluster the key prefix may not contain { or }"));
            }
            if options.tls_ca_file.is_some() {
                return Err(StoreError::new("redis", "tls_ca_file is not supported with redis-cluster"));
            }
            install_tls_provider(url);
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(options.timeout)
                .response_timeout(longest)
                .retries(1)
                .build()
                .map_err(|_| StoreError::new("redis", "invalid redis-cluster URL"))?;
            let conn = tokio::time::timeout(options.timeout, client.get_async_connection())
                .await
                .map_err(timed_out)?
                .map_err(err)?;
            let p = &options.prefix;
            (Conn::Cluster(conn), format!("{{{p}sessions}}:"), format!("{{{p}spent}}:"))
        } else {
            let client = client(url, &options)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(options.timeout))
                .set_response_timeout(Some(longest))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            let manager =
                tokio::time::timeout(options.timeout, ConnectionManager::new_with_config(client, config))
                    .await
                    .map_err(timed_out)?
                    .map_err(err)?;
            (Conn::Single(manager), options.prefix.clone(), options.prefix.clone())
        };
        let store = RedisStore {
            manager,
            sessions_base,
            spent_base,
            options,
            insert: Script::new(&format!("{PRUNE_FN}{INSERT}")),
            take: Script::new(TAKE),
            prune: Script::new(&format!("{PRUNE_FN}{PRUNE}")),
            claim: Script::new(CLAIM),
            release: Script::new(&format!("{RELEASE_FN}{RELEASE}")),
            claim_handoff: Script::new(CLAIM_HANDOFF),
            release_handoff: Script::new(&format!("{RELEASE_FN}{RELEASE_HANDOFF}")),
            find: Script::new(FIND),
            record: Script::new(RECORD),
            prune_spent: Script::new(PRUNE_SPENT),
        };
        store.check_eviction_policy().await?;
        Ok(store)
    }

    /// Refuses a Redis that may evict keys (F8 of the security review), unless overridden.
    async fn check_eviction_policy(&self) -> Result<(), StoreError> {
        let answer: Result<Vec<String>, StoreError> = self
            .with_timeout(Bound::Ordinary, async {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query_async(&mut self.manager.clone())
                    .await
                    .map_err(err)
            })
            .await;
        let problem = match answer {
            Ok(pair) => match pair.get(1).map(String::as_str) {
                Some("noeviction") => return Ok(()),
                Some(policy) => format!(
                    "maxmemory-policy is {policy:?}: Redis may evict spent entries and amount \
                     reservations, which re-opens payments for replay; set it to noeviction \
                     (CONFIG SET maxmemory-policy noeviction, and in redis.conf)"
                ),
                None => "CONFIG GET maxmemory-policy answered nothing".to_owned(),
            },
            // Managed Redis often renames or disables CONFIG.
            Err(e) => format!(
                "cannot read maxmemory-policy ({e}); if CONFIG is disabled (managed Redis), make \
                 sure the policy is noeviction and start with RedisOptions::allow_eviction"
            ),
        };
        if self.options.allow_eviction {
            tracing::error!(
                "Redis store started with RedisOptions::allow_eviction: {problem}. Eviction of \
                 a spent entry allows a replay; of an amount reservation, receipt theft"
            );
            Ok(())
        } else {
            Err(StoreError::new("redis", problem))
        }
    }

    async fn with_timeout<T>(
        &self,
        bound: Bound,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = match bound {
            Bound::Ordinary => self.options.timeout,
            Bound::Decision => self.options.decision_timeout.max(self.options.timeout),
        };
        let limit =
            limit + if self.options.min_replicas > 0 { self.options.replica_timeout } else { Duration::ZERO };
        tokio::time::timeout(limit, f).await.map_err(|_| StoreError::new("redis", "command timed out"))?
    }

    /// Runs `script` and, when [`RedisOptions::min_replicas`] is set, `WAIT` in the same
    /// pipeline (so on the same connection: `WAIT` counts that connection's writes). A
    /// shortfall is an error: the write stands on the primary, but a failover may lose it.
    async fn run<T: FromRedisValue>(
        &self,
        bound: Bound,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, StoreError> {
        self.with_timeout(bound, async {
            let mut conn = self.manager.clone();
            let eval = || {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(script.get_hash()).arg(keys.len()).arg(keys).arg(args);
                cmd
            };
            for attempt in 0..2 {
                let outcome: redis::RedisResult<(T, u32)> = if self.options.min_replicas == 0 {
                    eval().query_async(&mut conn).await.map(|v| (v, 0))
                } else {
                    let mut pipe = redis::pipe();
                    pipe.add_command(eval())
                        .cmd("WAIT")
                        .arg(self.options.min_replicas)
                        .arg(self.options.replica_timeout.as_millis() as u64);
                    pipe.query_async(&mut conn).await
                };
                match outcome {
                    Ok((value, acked)) => {
                        if acked < self.options.min_replicas {
                            tracing::warn!(
                                acked,
                                wanted = self.options.min_replicas,
                                "Redis replication shortfall"
                            );
                            return Err(StoreError::new(
                                "redis",
                                format!(
                                    "write acknowledged by {acked} of {} replicas",
                                    self.options.min_replicas
                                ),
                            ));
                        }
                        return Ok(value);
                    }
                    // Not cached (a restarted or failed-over Redis, a new cluster primary):
                    // nothing ran, load it and run again. `SCRIPT LOAD` goes to every primary.
                    Err(e)
                        if attempt == 0
                            && e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        script.prepare_invoke().load_async(&mut conn).await.map_err(err)?;
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            unreachable!("the second attempt returns")
        })
        .await
    }

    fn session_prefix(&self) -> String {
        format!("{}s:", self.sessions_base)
    }

    fn session_key(&self, key: &SessionKey) -> String {
        format!("{}{}", self.session_prefix(), key.to_hex())
    }

    fn pending_key(&self) -> String {
        format!("{}pending", self.sessions_base)
    }

    fn spent_prefix(&self) -> String {
        format!("{}spent:", self.spent_base)
    }

    fn spent_key(&self, hash: &BlockHash) -> String {
        format!("{}{hash}", self.spent_prefix())
    }

    fn spent_expiry_key(&self) -> String {
        format!("{}spent_expiry", self.spent_base)
    }

    fn spent_count_key(&self) -> String {
        format!("{}spent_count", self.spent_base)
    }

    fn decode(json: Option<String>, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        json.map(|j| Record::from_json("redis", j.as_bytes(), *key)).transpose()
    }

    /// The stored record text of a session, as written.
    async fn record_json(&self, key: &SessionKey) -> Result<Option<String>, StoreError> {
        self.with_timeout(Bound::Ordinary, async {
            redis::cmd("HGET")
                .arg(self.session_key(key))
                .arg("json")
                .query_async(&mut self.manager.clone())
                .await
                .map_err(err)
        })
        .await
    }

    fn amount_key(&self, pay_to: &Address, amount: Raw) -> String {
        format!("{}a:{}:{}", self.sessions_base, hex::encode(pay_to.public_key().as_bytes()), amount)
    }

    fn lock_zset_key(&self) -> String {
        format!("{}locks", self.spent_base)
    }

    /// The keys of the hand-off scripts.
    fn handoff_keys(&self, claim: &HandoffClaim) -> [String; 6] {
        [
            self.spent_key(&claim.hash),
            self.spent_expiry_key(),
            self.spent_count_key(),
            format!("{}lock:p:{}", self.spent_base, claim.previous),
            format!("{}lock:s:{}", self.spent_base, claim.session.to_hex()),
            self.lock_zset_key(),
        ]
    }
}

/// Entries kept forever (`keep_until` = `u64::MAX`) get no index entry, which is about 170
/// of the 390 bytes an entry costs.
fn index_flag(keep_until: u64) -> &'static str {
    if keep_until == u64::MAX {
        "0"
    } else {
        "1"
    }
}

fn claim_outcome(code: i64) -> Claim {
    match code {
        1 => Claim::New,
        2 => Claim::Reentered,
        3 => Claim::InFlight,
        _ => Claim::Spent,
    }
}

/// The redis crate builds its rustls configuration with the process-wide provider; when the
/// application chose none, use ring (the one this crate's dependencies already build), rather
/// than panic if feature unification enabled a second provider.
fn install_tls_provider(url: &str) {
    if url.starts_with("rediss") && rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A client for `url`, trusting [`RedisOptions::tls_ca_file`] when set.
fn client(url: &str, options: &RedisOptions) -> Result<redis::Client, StoreError> {
    let invalid = |_| StoreError::new("redis", "invalid redis URL");
    install_tls_provider(url);
    let Some(ca) = &options.tls_ca_file else { return redis::Client::open(url).map_err(invalid) };
    let pem = std::fs::read(ca)
        .map_err(|e| StoreError::new("redis", format!("cannot read tls_ca_file {}: {e}", ca.display())))?;
    redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(pem) })
        .map_err(invalid)
}

#[async_trait]
impl SessionStore for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn pending_count(&self) -> Result<Option<u64>, StoreError> {
        let n: u64 = self
            .with_timeout(Bound::Ordinary, async {
                redis::cmd("ZCARD")
                    .arg(self.pending_key())
                    .query_async(&mut self.manager.clone())
                    .await
                    .map_err(err)
            })
            .await?;
        Ok(Some(n))
    }

    async fn insert(&self, session: &Session, now: u64) -> Result<Insert, StoreError> {
        let key = session.id.key();
        let keys =
            [self.session_key(&key), self.amount_key(&session.pay_to, session.amount), self.pending_key()];
        let args = [
            Record::to_json(session),
            key.to_hex(),
            now.to_string(),
            self.options.capacity.to_string(),
            session.expires_at.to_string(),
            self.session_prefix(),
            SESSION_GRACE_SECS.to_string(),
        ];
        let outcome: i64 = self.run(Bound::Ordinary, &self.insert, &keys, &args).await?;
        Ok(match outcome {
            1 => Insert::Inserted,
            2 => Insert::Full,
            _ => Insert::AmountInUse,
        })
    }

    async fn record_payment(&self, key: &SessionKey, payment: &WatchedPayment) -> Result<bool, StoreError> {
        // A few rounds of read and compare-and-set: only another match changes a record.
        for _ in 0..3 {
            let Some(json) = self.record_json(key).await? else { return Ok(false) };
            let mut session = Record::from_json("redis", json.as_bytes(), *key)?;
            if session.watched.is_some() {
                return Ok(false);
            }
            session.watched = Some(*payment);
            let args = [json, Record::stored_json(&session)];
            let set: i64 = self.run(Bound::Decision, &self.record, &[self.session_key(key)], &args).await?;
            if set == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn get_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        let json = self.record_json(key).await?;
        Self::decode(json, key)
    }

    async fn take_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        let keys = [self.session_key(key), self.pending_key()];
        let json: Option<String> = self.run(Bound::Decision, &self.take, &keys, &[key.to_hex()]).await?;
        Self::decode(json, key)
    }

    async fn find_by_amount(
        &self,
        pay_to: &Address,
        amount: Raw,
        now: u64,
    ) -> Result<Option<StoredSession>, StoreError> {
        let keys = [self.amount_key(pay_to, amount)];
        let found: Option<(String, String)> =
            self.run(Bound::Ordinary, &self.find, &keys, &[self.session_prefix()]).await?;
        let Some((holder, json)) = found else { return Ok(None) };
        // Sessions of 57fee3c are filed under their id: not found by amount, as if expired.
        let Some(key) = SessionKey::from_hex(&holder) else { return Ok(None) };
        let session = Record::from_json("redis", json.as_bytes(), key)?;
        Ok(Some(session).filter(|s| !s.is_expired(now)))
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        let keys = [self.pending_key()];
        let args = [now.to_string(), self.session_prefix()];
        let mut removed = 0;
        // Bounded batches; what is left waits for the next prune.
        for _ in 0..16 {
            let batch: u64 = self.run(Bound::Ordinary, &self.prune, &keys, &args).await?;
            removed += batch;
            if batch < PRUNE_BATCH {
                break;
            }
        }
        Ok(removed)
    }

    fn capacity(&self) -> Option<u64> {
        Some(self.options.capacity)
    }
}

#[async_trait]
impl SpentSet for RedisStore {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn owner(&self, hash: &BlockHash) -> Result<Option<SessionKey>, StoreError> {
        let (key, legacy): (Option<String>, Option<String>) = self
            .with_timeout(Bound::Ordinary, async {
                redis::cmd("HMGET")
                    .arg(self.spent_key(hash))
                    .arg("k")
                    .arg("o")
                    .query_async(&mut self.manager.clone())
                    .await
                    .map_err(err)
            })
            .await?;
        let bad = || StoreError::new("redis", "bad spent record");
        match (key, legacy) {
            (Some(key), _) => SessionKey::from_hex(&key).map(Some).ok_or_else(bad),
            // 57fee3c entries: the owner's id in clear, which means its key.
            (None, Some(id)) => id.parse::<SessionId>().map(|id| Some(id.key())).map_err(|_| bad()),
            (None, None) => Ok(None),
        }
    }

    async fn claim_by_key(
        &self,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
    ) -> Result<Claim, StoreError> {
        // One atomic script: claim if absent (indexed for pruning at keep_until), re-enter if
        // this session owns it.
        let keys = [self.spent_key(hash), self.spent_expiry_key(), self.spent_count_key()];
        let args =
            [session.to_hex(), keep_until.to_string(), hash.to_string(), index_flag(keep_until).to_owned()];
        let outcome: i64 = self.run(Bound::Decision, &self.claim, &keys, &args).await?;
        Ok(claim_outcome(outcome))
    }

    async fn release_by_key(&self, hash: &BlockHash, session: &SessionKey) -> Result<(), StoreError> {
        let keys = [self.spent_key(hash), self.spent_expiry_key(), self.spent_count_key()];
        let args = [session.to_hex(), hash.to_string()];
        let _: i64 = self.run(Bound::Ordinary, &self.release, &keys, &args).await?;
        Ok(())
    }

    async fn claim_handoff(&self, claim: &HandoffClaim, now: u64) -> Result<Claim, StoreError> {
        let args = [
            claim.session.to_hex(),
            claim.keep_until.to_string(),
            claim.hash.to_string(),
            index_flag(claim.keep_until).to_owned(),
            now.to_string(),
            claim.lock_until.to_string(),
            claim.busy_until.to_string(),
        ];
        let outcome: i64 =
            self.run(Bound::Decision, &self.claim_handoff, &self.handoff_keys(claim), &args).await?;
        Ok(claim_outcome(outcome))
    }

    async fn release_handoff(&self, claim: &HandoffClaim, how: HandoffRelease) -> Result<(), StoreError> {
        let how = match how {
            HandoffRelease::Refused => "r",
            HandoffRelease::Kept => "k",
            HandoffRelease::Granted => "g",
        };
        let args = [claim.session.to_hex(), claim.hash.to_string(), how.to_owned()];
        let _: i64 =
            self.run(Bound::Ordinary, &self.release_handoff, &self.handoff_keys(claim), &args).await?;
        Ok(())
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        let keys = [self.spent_expiry_key(), self.spent_count_key(), self.lock_zset_key()];
        let args = [now.to_string(), self.spent_prefix()];
        let mut removed = 0;
        for _ in 0..16 {
            let batch: u64 = self.run(Bound::Ordinary, &self.prune_spent, &keys, &args).await?;
            removed += batch;
            if batch < PRUNE_BATCH {
                break;
            }
        }
        Ok(removed)
    }

    /// Entries claimed by this version (a counter kept by the scripts; entries written by
    /// 57fee3c are not counted).
    async fn size(&self) -> Result<Option<u64>, StoreError> {
        let n: Option<i64> = self
            .with_timeout(Bound::Ordinary, async {
                redis::cmd("GET")
                    .arg(self.spent_count_key())
                    .query_async(&mut self.manager.clone())
                    .await
                    .map_err(err)
            })
            .await?;
        Ok(Some(n.unwrap_or(0).max(0) as u64))
    }
}
