//! The Redis store: sessions and spent set shared by any number of instances.
//!
//! Every decision is one round trip, a Lua script that Redis runs atomically: the spent-set
//! claim (a hash holding the claiming session, expiring at `keep_until`) and its guarded
//! release, session insert (amount check + capacity check + write), take (read + delete +
//! unindex) and prune. Spent entries expire natively at their retention; a session's amount
//! reservation expires natively [`SESSION_GRACE_SECS`](super::SESSION_GRACE_SECS) after the
//! session does.
//!
//! The scripts touch keys derived inside the script, so use a single Redis server (or a
//! primary with replicas/Sentinel), not Redis Cluster.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::{Claim, Insert, SessionStore, SpentSet, StoreError};
use crate::nano::BlockHash;
use crate::session::{Session, SessionId};

/// How long an expired session's record is kept for `session_expired` answers if no prune
/// removes it first (its amount reservation is released at expiry regardless).
const EXPIRED_SESSION_GRACE_SECS: u64 = 3600;

const INSERT: &str = r#"
-- KEYS: session, amount, pending zset.
-- ARGV: json, id, amount_expire_ms, now, capacity, expires_at, session_expire_ms, session key prefix
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then
  prune(KEYS[3], ARGV[4], ARGV[8])
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[5]) then return 2 end
end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'akey', KEYS[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[7])
redis.call('SET', KEYS[2], ARGV[2], 'PXAT', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2])
return 1
"#;

const TAKE: &str = r#"
-- KEYS: session, pending zset. ARGV: id
local v = redis.call('HMGET', KEYS[1], 'json', 'akey')
if not v[1] then return false end
redis.call('DEL', KEYS[1])
if v[2] and redis.call('GET', v[2]) == ARGV[1] then redis.call('DEL', v[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return v[1]
"#;

/// Removes sessions expired before ARGV[1] (with their amount reservation): a Lua function
/// shared by the insert (when full) and prune scripts.
const PRUNE_FN: &str = r#"
local function prune(pending, now, session_prefix)
  local ids = redis.call('ZRANGEBYSCORE', pending, '-inf', '(' .. now, 'LIMIT', 0, 10000)
  for _, id in ipairs(ids) do
    local key = session_prefix .. id
    local akey = redis.call('HGET', key, 'akey')
    if akey and redis.call('GET', akey) == id then redis.call('DEL', akey) end
    redis.call('DEL', key)
    redis.call('ZREM', pending, id)
  end
  return #ids
end
"#;

const PRUNE: &str = r#"
-- KEYS: pending zset. ARGV: now, session key prefix
return prune(KEYS[1], ARGV[1], ARGV[2])
"#;

const CLAIM: &str = r#"
-- KEYS: spent entry (hash: o = owner session, n = claims). ARGV: owner, keep_until_ms
local owner = redis.call('HGET', KEYS[1], 'o')
if not owner then
  redis.call('HSET', KEYS[1], 'o', ARGV[1], 'n', 1)
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
  return 1
end
if owner == ARGV[1] then
  redis.call('HINCRBY', KEYS[1], 'n', 1)
  return 2
end
return 0
"#;

const RELEASE: &str = r#"
-- KEYS: spent entry. ARGV: owner. Only the owner's single claim is undone.
local v = redis.call('HMGET', KEYS[1], 'o', 'n')
if v[1] == ARGV[1] and v[2] == '1' then redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Options for [`RedisStore::connect_with`].
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Prefix of every key (default `nanosession:`); give each deployment its own.
    pub prefix: String,
    /// Maximum of pending sessions across all instances (default 100,000).
    pub capacity: u64,
    /// Timeout for connecting and for each command (default 2 s); past it the layer answers 503.
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions { prefix: "nanosession:".to_owned(), capacity: 100_000, timeout: Duration::from_secs(2) }
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
    manager: ConnectionManager,
    options: RedisOptions,
    insert: Script,
    take: Script,
    prune: Script,
    claim: Script,
    release: Script,
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

impl RedisStore {
    /// Connects with default options. The URL's password never appears in errors or logs.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects with `options`. Later outages are answered 503 and the connection is
    /// re-established by itself when Redis is back.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|_| StoreError::new("redis", "invalid redis URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_with_config(client, config).await.map_err(err)?;
        Ok(RedisStore {
            manager,
            options,
            insert: Script::new(&format!("{PRUNE_FN}{INSERT}")),
            take: Script::new(TAKE),
            prune: Script::new(&format!("{PRUNE_FN}{PRUNE}")),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
        })
    }

    fn session_key(&self, id: &SessionId) -> String {
        format!("{}s:{id}", self.options.prefix)
    }

    fn pending_key(&self) -> String {
        format!("{}pending", self.options.prefix)
    }

    fn spent_key(&self, hash: &BlockHash) -> String {
        format!("{}spent:{hash}", self.options.prefix)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn insert(&self, session: &Session, now: u64) -> Result<Insert, StoreError> {
        let amount_key = format!(
            "{}a:{}:{}",
            self.options.prefix,
            hex::encode(session.pay_to.public_key().as_bytes()),
            session.amount
        );
        let json = serde_json::to_string(session).expect("sessions serialize");
        // Reserved through the second `expires_at` (expired means now > expires_at) plus the
        // grace, by Redis's clock.
        let amount_expire_ms = (session.expires_at + 1 + super::SESSION_GRACE_SECS) * 1000;
        let session_expire_ms = (session.expires_at + 1 + EXPIRED_SESSION_GRACE_SECS) * 1000;
        let outcome: i64 = self
            .insert
            .key(self.session_key(&session.id))
            .key(amount_key)
            .key(self.pending_key())
            .arg(json)
            .arg(session.id.to_string())
            .arg(amount_expire_ms)
            .arg(now)
            .arg(self.options.capacity)
            .arg(session.expires_at)
            .arg(session_expire_ms)
            .arg(format!("{}s:", self.options.prefix))
            .invoke_async(&mut self.manager.clone())
            .await
            .map_err(err)?;
        Ok(match outcome {
            1 => Insert::Inserted,
            2 => Insert::Full,
            _ => Insert::AmountInUse,
        })
    }

    async fn get(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let json: Option<String> = redis::cmd("HGET")
            .arg(self.session_key(id))
            .arg("json")
            .query_async(&mut self.manager.clone())
            .await
            .map_err(err)?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| StoreError::new("redis", format!("bad session record: {e}")))
        })
        .transpose()
    }

    async fn take(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        let json: Option<String> = self
            .take
            .key(self.session_key(id))
            .key(self.pending_key())
            .arg(id.to_string())
            .invoke_async(&mut self.manager.clone())
            .await
            .map_err(err)?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| StoreError::new("redis", format!("bad session record: {e}")))
        })
        .transpose()
    }

    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        self.prune
            .key(self.pending_key())
            .arg(now)
            .arg(format!("{}s:", self.options.prefix))
            .invoke_async(&mut self.manager.clone())
            .await
            .map_err(err)
    }
}

#[async_trait]
impl SpentSet for RedisStore {
    async fn owner(&self, hash: &BlockHash) -> Result<Option<SessionId>, StoreError> {
        let owner: Option<String> = redis::cmd("HGET")
            .arg(self.spent_key(hash))
            .arg("o")
            .query_async(&mut self.manager.clone())
            .await
            .map_err(err)?;
        owner.map(|o| o.parse().map_err(|_| StoreError::new("redis", "bad spent record"))).transpose()
    }

    async fn claim(
        &self,
        hash: &BlockHash,
        session: &SessionId,
        keep_until: u64,
    ) -> Result<Claim, StoreError> {
        // One atomic script: claim if absent (expiring at the end of the retention), re-enter
        // if this session owns it.
        let outcome: i64 = self
            .claim
            .key(self.spent_key(hash))
            .arg(session.to_string())
            .arg(keep_until.saturating_mul(1000))
            .invoke_async(&mut self.manager.clone())
            .await
            .map_err(err)?;
        Ok(match outcome {
            1 => Claim::New,
            2 => Claim::Reentered,
            _ => Claim::Spent,
        })
    }

    async fn release(&self, hash: &BlockHash, session: &SessionId) -> Result<(), StoreError> {
        let _: i64 = self
            .release
            .key(self.spent_key(hash))
            .arg(session.to_string())
            .invoke_async(&mut self.manager.clone())
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn prune(&self, _now: u64) -> Result<u64, StoreError> {
        // Spent entries expire natively at keep_until.
        Ok(0)
    }
}
