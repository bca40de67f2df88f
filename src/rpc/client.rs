//! [`NanoRpcClient`]: endpoints, failover, timeouts and cool-down.

use std::fmt;
use std::net::Ipv6Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::time::Instant;
use url::{Host, Url};

use super::types::{
    block_json, AccountInfo, BlockConfirmReply, BlockInfo, ProcessReply, ReceivableReply, WorkGenerateReply,
};
use crate::nano::{Address, BlockHash, Raw, StateBlock};
use crate::telemetry;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_BACKOFF: Duration = Duration::from_millis(50);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(1);
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(10);
const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
/// Upper bound of the default attempt budget, so a long endpoint list cannot stall a request.
const DEFAULT_MAX_ATTEMPTS_CAP: usize = 8;
const MAX_ATTEMPTS_LIMIT: usize = 100;
/// A `block_info` reply is about 2 KiB; the cap only stops a hostile endpoint exhausting memory.
const DEFAULT_MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Node error texts that are definite answers about the request or the ledger (reference
/// §6.1, §6.5): another endpoint would say the same, so they are returned at once. Any other
/// `{"error": …}` ("Internal server error in RPC", "Unknown command", "RPC control is
/// disabled", a proxy's "rate limit exceeded", …) describes that endpoint's trouble and fails
/// over like an HTTP 500 would.
const DEFINITE_NODE_ERRORS: &[&str] = &[
    BLOCK_NOT_FOUND,
    "Invalid block hash",
    "Bad hash number",
    "Account not found",
    "Bad account number",
    "Unable to parse JSON",
    // `process` outcomes: the ledger's verdict on the block.
    "Old block",
    "Block is invalid",
    "Block work is less than threshold",
    "Gap previous block",
    "Gap source block",
    "Bad signature",
    "Negative spend",
    "Balance and amount delta do not match",
    "Unreceivable",
    "This block cannot follow the previous block",
    "Fork",
    "Block work is insufficient",
    "Block attempts to open the burn account",
    "Invalid block subtype",
    "Invalid block balance for given subtype",
    "Invalid previous block for given subtype",
];

/// The RPC actions this client sends, as metric labels (anything else is `other`).
const ACTIONS: &[&str] = &[
    "block_info",
    "block_confirm",
    "account_info",
    "process",
    "work_generate",
    "receivable",
    "account_balance",
];

fn action_label(body: &Value) -> &'static str {
    let action = body.get("action").and_then(Value::as_str).unwrap_or("");
    ACTIONS.iter().find(|a| **a == action).copied().unwrap_or("other")
}

/// The most of a node's error text kept in errors and logs: a hostile endpoint may answer
/// with megabytes, newlines or echoed secrets.
const MAX_ERROR_TEXT: usize = 200;

/// The node's answer for an unknown block.
pub(crate) const BLOCK_NOT_FOUND: &str = "Block not found";

/// Why a call failed.
///
/// Messages never contain endpoint credentials: endpoints appear only in their redacted form
/// (`scheme://host:port/`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// A node gave a definite error answer (HTTP 200 with `{"error": "..."}`), such as
    /// `"Block not found"`. Not retried on other endpoints: they serve the same ledger.
    #[error("node error: {0}")]
    Node(String),
    /// Every attempt failed (transport errors, timeouts, HTTP errors, unparseable replies).
    #[error("no Nano RPC endpoint answered: {0}")]
    Unavailable(String),
}

impl RpcError {
    /// True for the node's `"Block not found"` answer.
    pub fn is_block_not_found(&self) -> bool {
        matches!(self, RpcError::Node(m) if m == BLOCK_NOT_FOUND)
    }
}

/// Why a [`NanoRpcClient`] could not be built. Never contains credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcConfigError {
    /// No endpoint was given.
    #[error("at least one RPC endpoint is required")]
    NoEndpoints,
    /// Endpoint number `index` (0-based) is not a URL.
    #[error("RPC endpoint #{index} is not a valid URL: {reason}")]
    InvalidUrl {
        /// Position of the endpoint in the list.
        index: usize,
        /// What the URL parser objected to (does not repeat the URL).
        reason: String,
    },
    /// Endpoint number `index` does not use `http` or `https`.
    #[error("RPC endpoint #{index} must use http or https, not {scheme:?}")]
    UnsupportedScheme {
        /// Position of the endpoint in the list.
        index: usize,
        /// The scheme found.
        scheme: String,
    },
    /// Endpoint number `index` uses plain `http://` to a host that is not loopback. Node
    /// replies decide payments and the URL may carry credentials, so a network path must be
    /// `https://` unless [`NanoRpcClientBuilder::allow_insecure_http`] says otherwise.
    #[error(
        "RPC endpoint #{index} uses plain http to a non-loopback host; use https, or allow_insecure_http(true) for a trusted private network"
    )]
    InsecureHttp {
        /// Position of the endpoint in the list.
        index: usize,
    },
    /// An option is out of range (for example a zero timeout).
    #[error("invalid RPC client option: {0}")]
    InvalidOption(&'static str),
    /// The HTTP client could not be created.
    #[error("cannot create the HTTP client: {0}")]
    HttpClient(String),
}

/// Builds a [`NanoRpcClient`]; see [`NanoRpcClient::builder`].
#[derive(Clone)]
#[must_use]
pub struct NanoRpcClientBuilder {
    endpoints: Vec<String>,
    timeout: Duration,
    max_attempts: Option<usize>,
    backoff: Duration,
    backoff_max: Duration,
    cooldown: Duration,
    failure_threshold: u32,
    max_response_bytes: usize,
    allow_insecure_http: bool,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for NanoRpcClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The raw strings may hold credentials: show only what redaction leaves.
        let endpoints: Vec<String> = self
            .endpoints
            .iter()
            .map(|s| Url::parse(s).map_or_else(|_| "<invalid url>".to_owned(), |u| redact(&u)))
            .collect();
        f.debug_struct("NanoRpcClientBuilder")
            .field("endpoints", &endpoints)
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("backoff_max", &self.backoff_max)
            .field("cooldown", &self.cooldown)
            .field("failure_threshold", &self.failure_threshold)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}

impl Default for NanoRpcClientBuilder {
    fn default() -> Self {
        NanoRpcClientBuilder {
            endpoints: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_attempts: None,
            backoff: DEFAULT_BACKOFF,
            backoff_max: DEFAULT_BACKOFF_MAX,
            cooldown: DEFAULT_COOLDOWN,
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            allow_insecure_http: false,
            http: None,
        }
    }
}

impl NanoRpcClientBuilder {
    /// Appends an endpoint URL (`http` or `https`). Endpoints are tried in the order given.
    ///
    /// User info (`https://user:pass@host/`) is sent as HTTP basic auth; query parameters
    /// (`?key=...`) are kept. Neither ever appears in logs, errors or `Debug` output.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoints.push(url.into());
        self
    }

    /// Appends several endpoint URLs, in order.
    pub fn endpoints<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints.extend(urls.into_iter().map(Into::into));
        self
    }

    /// Time allowed for one request to one endpoint, reply body included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attempts per call across all endpoints (default twice the number of endpoints, at
    /// most 8; values are clamped to 1..=100).
    pub fn max_attempts(mut self, attempts: usize) -> Self {
        self.max_attempts = Some(attempts.clamp(1, MAX_ATTEMPTS_LIMIT));
        self
    }

    /// Pause after a full pass over the endpoints failed: `initial`, doubling up to `max`
    /// (default 50 ms up to 1 s).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// How long an endpoint that failed [`failure_threshold`](Self::failure_threshold) times
    /// in a row is skipped (default 10 s). A cooling endpoint is still tried when every
    /// endpoint is cooling.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Consecutive failures that put an endpoint in cool-down (default 3, at least 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures.max(1);
        self
    }

    /// Largest reply body accepted (default 4 MiB); a larger one counts as an endpoint failure.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Accepts plain `http://` endpoints on non-loopback hosts (default `false`: refused by
    /// [`build`](Self::build) with [`RpcConfigError::InsecureHttp`]). Loopback endpoints
    /// (`127.0.0.0/8`, `::1`, `localhost`) are always accepted. Only enable this for a node on
    /// a network you trust end to end: whoever can alter the traffic decides which payments
    /// are accepted, and reads any credentials in the URL.
    ///
    /// ```
    /// use nanosession::rpc::NanoRpcClient;
    /// assert!(NanoRpcClient::new(["http://nano-node:7076/"]).is_err());
    /// let private = NanoRpcClient::builder()
    ///     .endpoint("http://nano-node:7076/")
    ///     .allow_insecure_http(true)
    ///     .build();
    /// assert!(private.is_ok());
    /// ```
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Uses this `reqwest` client (for custom TLS roots, proxies, ...). The per-request
    /// timeout is still applied.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Validates the endpoints and options and builds the client.
    pub fn build(self) -> Result<NanoRpcClient, RpcConfigError> {
        if self.endpoints.is_empty() {
            return Err(RpcConfigError::NoEndpoints);
        }
        if self.timeout.is_zero() {
            return Err(RpcConfigError::InvalidOption("the timeout must be positive"));
        }
        let endpoints = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, s)| Endpoint::parse(index, s, self.allow_insecure_http).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(self.timeout)
                // A node never redirects; following one could carry the request elsewhere.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| RpcConfigError::HttpClient(e.without_url().to_string()))?,
        };
        let max_attempts =
            self.max_attempts.unwrap_or_else(|| (2 * endpoints.len()).clamp(1, DEFAULT_MAX_ATTEMPTS_CAP));
        Ok(NanoRpcClient {
            inner: Arc::new(Inner {
                http,
                endpoints,
                timeout: self.timeout,
                max_attempts,
                backoff: self.backoff,
                backoff_max: self.backoff_max,
                cooldown: self.cooldown,
                failure_threshold: self.failure_threshold,
                max_response_bytes: self.max_response_bytes,
                failures: Arc::new(AtomicU64::new(0)),
                skip_cooling: false,
            }),
        })
    }
}

/// A Nano node RPC client over one or more endpoints. Cheap to clone (shared state).
///
/// Each call tries the endpoints in order, skipping those in cool-down, and moves to the next
/// on a transport error, a timeout, a non-success HTTP status, an unparseable or oversized
/// reply, or any node error text that is not a definite answer about the request or the ledger
/// (`"Internal server error in RPC"`, `"Unknown command"`, a proxy's rate limit, …). A definite
/// answer such as `{"error": "Block not found"}` is returned at once as [`RpcError::Node`]. After a full pass fails it backs off and tries
/// again until the attempt budget is spent, then returns [`RpcError::Unavailable`].
#[derive(Clone)]
pub struct NanoRpcClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoints: Vec<Arc<Endpoint>>,
    timeout: Duration,
    max_attempts: usize,
    backoff: Duration,
    backoff_max: Duration,
    cooldown: Duration,
    failure_threshold: u32,
    max_response_bytes: usize,
    /// Shared with the per-endpoint clients split off this one, so `failures()` counts theirs.
    failures: Arc<AtomicU64>,
    /// Per-endpoint clients (quorum members) answer "unavailable" at once while their endpoint
    /// cools down, instead of trying it anyway: the other members carry the verification.
    skip_cooling: bool,
}

impl fmt::Debug for NanoRpcClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("NanoRpcClient")
            .field("endpoints", &self.endpoints().collect::<Vec<_>>())
            .field("timeout", &i.timeout)
            .field("max_attempts", &i.max_attempts)
            .field("cooldown", &i.cooldown)
            .field("failure_threshold", &i.failure_threshold)
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}

/// One endpoint: the real URL (may hold credentials, never formatted) and its redacted name.
struct Endpoint {
    url: Url,
    redacted: String,
    /// `redacted` as a metric label (shared, so labelling an attempt allocates nothing).
    label: metrics::SharedString,
    /// Credential fragments scrubbed from any message as a second line of defence.
    secrets: Vec<String>,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    consecutive_failures: u32,
    cooling_until: Option<Instant>,
}

impl Endpoint {
    fn parse(index: usize, s: &str, allow_insecure_http: bool) -> Result<Endpoint, RpcConfigError> {
        let url = Url::parse(s).map_err(|e| RpcConfigError::InvalidUrl { index, reason: e.to_string() })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RpcConfigError::UnsupportedScheme { index, scheme: url.scheme().to_owned() });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(RpcConfigError::InvalidUrl { index, reason: "no host".to_owned() });
        }
        if url.scheme() == "http" && !allow_insecure_http && !is_loopback(&url) {
            return Err(RpcConfigError::InsecureHttp { index });
        }
        let mut secrets = vec![s.to_owned(), url.as_str().to_owned()];
        secrets.extend(url.password().map(str::to_owned));
        secrets.extend(url.query().map(str::to_owned));
        secrets.extend(url.query_pairs().map(|(_, v)| v.into_owned()));
        if !url.username().is_empty() {
            secrets.push(url.username().to_owned());
        }
        // Very short fragments would mangle unrelated text; they are also too short to matter.
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let redacted = redact(&url);
        let label = metrics::SharedString::from_shared(std::sync::Arc::from(redacted.as_str()));
        Ok(Endpoint { redacted, label, url, secrets, health: Mutex::new(Health::default()) })
    }

    fn health(&self) -> MutexGuard<'_, Health> {
        // The guarded data is two plain fields; a poisoned lock still holds usable values.
        self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_cooling(&self, now: Instant) -> bool {
        self.health().cooling_until.is_some_and(|t| now < t)
    }

    fn record_success(&self) {
        *self.health() = Health::default();
    }

    /// Returns true when this failure (re)starts a cool-down.
    fn record_failure(&self, threshold: u32, cooldown: Duration) -> bool {
        let mut h = self.health();
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        if h.consecutive_failures >= threshold {
            h.cooling_until = Instant::now().checked_add(cooldown);
            true
        } else {
            false
        }
    }

    fn scrub(&self, mut msg: String) -> String {
        for secret in &self.secrets {
            if msg.contains(secret.as_str()) {
                msg = msg.replace(secret.as_str(), "***");
            }
        }
        msg
    }
}

/// True for `127.0.0.0/8`, `::1` (also IPv4-mapped) and `localhost`: traffic that never
/// leaves the machine.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => {
            ip == Ipv6Addr::LOCALHOST || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Some(Host::Domain(name)) => {
            let name = name.strip_suffix('.').unwrap_or(name);
            name.eq_ignore_ascii_case("localhost")
        }
        None => false,
    }
}

/// `scheme://host:port/`: no user info, path, query or fragment (providers put API keys in
/// any of them).
fn redact(url: &Url) -> String {
    let port = url.port_or_known_default().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{}/", url.scheme(), url.host_str().unwrap_or_default(), port)
}

/// At most [`MAX_ERROR_TEXT`] characters, control characters replaced: safe for one log line.
fn printable(text: &str) -> String {
    let mut out: String =
        text.chars().take(MAX_ERROR_TEXT).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > MAX_ERROR_TEXT {
        out.push('…');
    }
    out
}

/// Formats a transport error without its URL (which may carry credentials).
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut msg = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else if err.is_body() || err.is_decode() {
        "reading the reply failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// What one attempt produced: a node answer (value or definite node error) or a failure that
/// justifies trying another endpoint.
type Attempt<T> = Result<Result<T, String>, String>;

impl NanoRpcClient {
    /// Starts a builder.
    pub fn builder() -> NanoRpcClientBuilder {
        NanoRpcClientBuilder::default()
    }

    /// A client over `urls`, tried in order, with default options.
    pub fn new<I, S>(urls: I) -> Result<Self, RpcConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder().endpoints(urls).build()
    }

    /// The endpoints in their redacted form (`scheme://host:port/`), in order.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> + '_ {
        self.inner.endpoints.iter().map(|e| e.redacted.as_str())
    }

    /// Failed attempts since the client was built, over all endpoints.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// How many endpoints the client has.
    pub fn endpoint_count(&self) -> usize {
        self.inner.endpoints.len()
    }

    /// The longest one call ([`call`](Self::call), [`block_info`](Self::block_info), …) can
    /// take before it returns: every attempt running into the per-request timeout, plus the
    /// back-off pauses between passes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nanosession::rpc::NanoRpcClient;
    /// let client = NanoRpcClient::builder()
    ///     .endpoint("http://127.0.0.1:7076/")
    ///     .timeout(Duration::from_secs(2))
    ///     .max_attempts(3)
    ///     .backoff(Duration::from_millis(100), Duration::from_millis(150))
    ///     .build()?;
    /// // 3 attempts of 2 s, and at most two pauses (100 ms, then 150 ms).
    /// assert_eq!(client.max_call_duration(), Duration::from_millis(6250));
    /// # Ok::<(), nanosession::rpc::RpcConfigError>(())
    /// ```
    pub fn max_call_duration(&self) -> Duration {
        let i = &*self.inner;
        let attempts = u32::try_from(i.max_attempts).unwrap_or(u32::MAX);
        let mut total = i.timeout.saturating_mul(attempts);
        // Worst case one endpoint per pass (the others cooling): a pause after every attempt.
        let mut backoff = i.backoff;
        for _ in 1..i.max_attempts {
            total = total.saturating_add(backoff);
            backoff = backoff.saturating_mul(2).min(i.backoff_max);
        }
        total
    }

    /// One client per endpoint, sharing this client's options, endpoint health and failure
    /// counter. The attempt budget is shared out (at least one attempt each) so the members of
    /// a quorum together make no more attempts than this client would. A member whose endpoint
    /// is cooling down answers "unavailable" at once.
    pub(crate) fn per_endpoint(&self) -> Vec<NanoRpcClient> {
        let i = &*self.inner;
        let attempts = i.max_attempts.div_ceil(i.endpoints.len()).max(1);
        i.endpoints
            .iter()
            .map(|endpoint| NanoRpcClient {
                inner: Arc::new(Inner {
                    http: i.http.clone(),
                    endpoints: vec![endpoint.clone()],
                    timeout: i.timeout,
                    max_attempts: attempts,
                    backoff: i.backoff,
                    backoff_max: i.backoff_max,
                    cooldown: i.cooldown,
                    failure_threshold: i.failure_threshold,
                    max_response_bytes: i.max_response_bytes,
                    failures: i.failures.clone(),
                    skip_cooling: true,
                }),
            })
            .collect()
    }

    /// Posts `body` (a JSON object with an `"action"`) and parses the reply as `T`.
    ///
    /// Returns [`RpcError::Node`] for a definite `{"error": ...}` answer and
    /// [`RpcError::Unavailable`] once every attempt failed. A reply that is JSON but does not
    /// fit `T` counts as an endpoint failure. The body is sent as given: include
    /// `"json_block": "true"` where blocks are returned.
    pub async fn call<T: DeserializeOwned>(&self, body: &Value) -> Result<T, RpcError> {
        self.call_checked(body, |_: &T| None).await
    }

    /// [`call`](Self::call), where a reply that parses but for which `incomplete` gives a
    /// reason counts as that endpoint failing (it fails over), not as an answer.
    async fn call_checked<T: DeserializeOwned>(
        &self,
        body: &Value,
        incomplete: impl Fn(&T) -> Option<&'static str>,
    ) -> Result<T, RpcError> {
        let action = action_label(body);
        let started = Instant::now();
        let result = self.attempts(body, action, incomplete).await;
        metrics::histogram!(telemetry::RPC_SECONDS, "action" => action)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Every attempt of one call, over the endpoints in order with back-off between passes.
    async fn attempts<T: DeserializeOwned>(
        &self,
        body: &Value,
        action: &'static str,
        incomplete: impl Fn(&T) -> Option<&'static str>,
    ) -> Result<T, RpcError> {
        let inner = &*self.inner;
        let mut attempts = 0;
        let mut backoff = inner.backoff;
        let mut last = String::from("no attempt made");
        loop {
            let now = Instant::now();
            let mut pass: Vec<&Endpoint> =
                inner.endpoints.iter().map(|e| &**e).filter(|e| !e.is_cooling(now)).collect();
            if pass.is_empty() {
                if inner.skip_cooling {
                    let name = inner.endpoints.first().map_or("", |e| e.redacted.as_str());
                    return Err(RpcError::Unavailable(format!("{name} is cooling down after failures")));
                }
                // Everything is cooling: trying beats refusing outright.
                pass = inner.endpoints.iter().map(|e| &**e).collect();
            }
            for endpoint in pass {
                if attempts >= inner.max_attempts {
                    break;
                }
                attempts += 1;
                let labels = [("endpoint", endpoint.label.clone()), ("action", action.into())];
                metrics::counter!(telemetry::RPC_REQUESTS, &labels).increment(1);
                let outcome = match self.attempt::<T>(endpoint, body).await {
                    Ok(Ok(value)) => match incomplete(&value) {
                        Some(why) => Err(format!("incomplete reply: {why}")),
                        None => Ok(Ok(value)),
                    },
                    other => other,
                };
                match outcome {
                    Ok(answer) => {
                        endpoint.record_success();
                        return answer.map_err(RpcError::Node);
                    }
                    Err(why) => {
                        let why = endpoint.scrub(why);
                        inner.failures.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!(telemetry::RPC_FAILURES, &labels).increment(1);
                        let cooling = endpoint.record_failure(inner.failure_threshold, inner.cooldown);
                        tracing::warn!(
                            endpoint = %endpoint.redacted,
                            attempt = attempts,
                            cooling,
                            error = %why,
                            "Nano RPC endpoint failed"
                        );
                        last = format!("{}: {why}", endpoint.redacted);
                    }
                }
            }
            if attempts >= inner.max_attempts {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(inner.backoff_max);
        }
        Err(RpcError::Unavailable(format!("{attempts} attempt(s) failed, last {last}")))
    }

    async fn attempt<T: DeserializeOwned>(&self, endpoint: &Endpoint, body: &Value) -> Attempt<T> {
        let timeout = self.inner.timeout;
        // reqwest applies the timeout too; the outer one also bounds a custom client.
        match tokio::time::timeout(timeout, self.exchange(endpoint, body)).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
        }
    }

    async fn exchange<T: DeserializeOwned>(&self, endpoint: &Endpoint, body: &Value) -> Attempt<T> {
        let mut response = self
            .inner
            .http
            .post(endpoint.url.clone())
            .timeout(self.inner.timeout)
            .json(body)
            .send()
            .await
            .map_err(describe)?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP status {}", status.as_u16()));
        }
        let limit = self.inner.max_response_bytes;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if bytes.len() + chunk.len() > limit {
                return Err(format!("reply larger than {limit} bytes"));
            }
            bytes.extend_from_slice(&chunk);
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| format!("reply is not JSON ({e})"))?;
        // Every node reply is an object; serde would read an array into a struct by position.
        if !value.is_object() {
            return Err("reply is not a JSON object".to_owned());
        }
        if let Some(error) = value.get("error") {
            let message = match error {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if DEFINITE_NODE_ERRORS.contains(&message.as_str()) {
                return Ok(Err(message));
            }
            return Err(format!("node error: {}", printable(&message)));
        }
        match serde_json::from_value::<T>(value) {
            Ok(v) => Ok(Ok(v)),
            Err(e) => Err(format!("unexpected reply shape ({e})")),
        }
    }

    /// `block_info` with `"json_block": "true"`. `Ok(None)` when the node answers
    /// `"Block not found"`.
    ///
    /// A reply too incomplete to judge the block ([`BlockInfo::incomplete`]: `{}`, no
    /// contents type, no `local_timestamp`, a state block without subtype or with unreadable
    /// contents) counts as that endpoint failing: the next endpoint is asked, and when none
    /// gives a complete reply the call is [`RpcError::Unavailable`].
    pub async fn block_info(&self, hash: &BlockHash) -> Result<Option<BlockInfo>, RpcError> {
        let body = json!({
            "action": "block_info",
            "json_block": "true",
            "hash": hash.to_string(),
        });
        match self.call_checked::<BlockInfo>(&body, BlockInfo::incomplete).await {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.is_block_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `block_confirm`: asks the node to start (or re-announce) confirmation of a block.
    /// Returns the node's `started` flag; confirmation itself is not awaited. An unknown block
    /// gives `RpcError::Node("Block not found")`.
    pub async fn block_confirm(&self, hash: &BlockHash) -> Result<bool, RpcError> {
        let body = json!({ "action": "block_confirm", "hash": hash.to_string() });
        self.call::<BlockConfirmReply>(&body).await.map(|r| r.started)
    }
}

impl NanoRpcClient {
    /// `account_info` with the representative. `Ok(None)` for `"Account not found"` (an
    /// account that was never opened).
    pub async fn account_info(&self, account: &Address) -> Result<Option<AccountInfo>, RpcError> {
        let body =
            json!({ "action": "account_info", "account": account.to_string(), "representative": "true" });
        match self.call::<AccountInfo>(&body).await {
            Ok(info) => Ok(Some(info)),
            Err(RpcError::Node(m)) if m == "Account not found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `process`: publishes a signed state block with a subtype hint. A re-publish of a block
    /// the ledger already has (`"Old block"`) counts as success for that hash, so publishing is
    /// idempotent.
    pub async fn process(&self, block: &StateBlock, subtype: &str) -> Result<BlockHash, RpcError> {
        let body = json!({ "action": "process", "json_block": "true", "subtype": subtype, "block": block_json(block) });
        match self.call::<ProcessReply>(&body).await {
            // An answer without a hash is no verdict: the block may have been accepted.
            Ok(reply) => reply
                .hash
                .and_then(|h| h.parse().ok())
                .ok_or_else(|| RpcError::Unavailable("process answered without a valid hash".into())),
            Err(RpcError::Node(m)) if m == "Old block" => Ok(block.hash()),
            Err(e) => Err(e),
        }
    }

    /// `work_generate` for `root` at `difficulty` (needs `enable_control` on the node).
    pub async fn work_generate(&self, root: &[u8; 32], difficulty: u64) -> Result<u64, RpcError> {
        let body = json!({
            "action": "work_generate",
            "hash": hex::encode_upper(root),
            "difficulty": format!("{difficulty:016x}"),
        });
        let reply = self.call::<WorkGenerateReply>(&body).await?;
        reply
            .work
            .and_then(|w| crate::nano::work::parse_hex(&w))
            .ok_or_else(|| RpcError::Node("work_generate answered without valid work".into()))
    }

    /// `receivable` with sources: the sends waiting for `account` to receive them, with amounts.
    pub async fn receivable(&self, account: &Address) -> Result<Vec<(BlockHash, Raw)>, RpcError> {
        let body = json!({ "action": "receivable", "account": account.to_string(), "source": "true", "count": "100" });
        let reply = self.call::<ReceivableReply>(&body).await?;
        Ok(reply
            .blocks
            .iter()
            .filter_map(|(hash, entry)| Some((hash.parse().ok()?, entry.amount()?)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_userinfo_path_query_and_fragment() {
        let e =
            Endpoint::parse(0, "https://user:pa55word@node.example:7076/rpc/v1?key=topsecret#frag", false)
                .unwrap();
        assert_eq!(e.redacted, "https://node.example:7076/", "the path may hold an API key");
        let e = Endpoint::parse(0, "http://[::1]/", false).unwrap();
        assert_eq!(e.redacted, "http://[::1]:80/");
        let e = Endpoint::parse(1, "https://user:pa55word@node.example/?key=topsecret", false).unwrap();
        assert_eq!(
            e.scrub("oops https://user:pa55word@node.example/?key=topsecret pa55word topsecret".into()),
            "oops *** *** ***"
        );
    }

    #[test]
    fn builder_validates_endpoints() {
        assert_eq!(NanoRpcClient::new(Vec::<String>::new()).unwrap_err(), RpcConfigError::NoEndpoints);
        assert!(matches!(
            NanoRpcClient::new(["ftp://host/"]).unwrap_err(),
            RpcConfigError::UnsupportedScheme { index: 0, .. }
        ));
        let err = NanoRpcClient::new(["https://ok/", "not a url with secret"]).unwrap_err();
        assert!(matches!(err, RpcConfigError::InvalidUrl { index: 1, .. }));
        assert!(!err.to_string().contains("secret"));
        assert!(NanoRpcClient::builder().endpoint("https://ok/").timeout(Duration::ZERO).build().is_err());
        let c = NanoRpcClient::new(["https://a/", "https://b/", "https://c/", "https://d/", "https://e/"])
            .unwrap();
        assert_eq!(c.inner.max_attempts, DEFAULT_MAX_ATTEMPTS_CAP);
        let c = NanoRpcClient::new(["https://a/"]).unwrap();
        assert_eq!(c.inner.max_attempts, 2);
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for ok in [
            "http://127.0.0.1:7076/",
            "http://127.8.9.10/",
            "http://127.1/",
            "http://[::1]:7076/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:7076/",
            "http://LOCALHOST./",
            "https://node.example/",
            "https://10.0.0.5:7076/",
        ] {
            assert!(NanoRpcClient::new([ok]).is_ok(), "{ok}");
        }
        for refused in [
            "http://node.example:7076/",
            "http://10.0.0.5:7076/",
            "http://0.0.0.0/",
            "http://[::2]/",
            "http://localhost.evil.example/",
            "http://127.0.0.1.nip.io/",
        ] {
            let err = NanoRpcClient::new(["https://first.example/", refused]).unwrap_err();
            assert_eq!(err, RpcConfigError::InsecureHttp { index: 1 }, "{refused}");
            assert!(NanoRpcClient::builder().endpoint(refused).allow_insecure_http(true).build().is_ok());
        }
        // The error never repeats the URL, so credentials in it stay out of logs.
        let err =
            NanoRpcClient::new(["http://user:hunter22@node.example/v1/APIKEY?key=topsecret"]).unwrap_err();
        let text = format!("{err} {err:?}");
        for secret in ["hunter22", "user", "APIKEY", "topsecret", "node.example"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn per_endpoint_clients_share_the_budget_and_the_counter() {
        let c = NanoRpcClient::builder()
            .endpoints(["https://a/", "https://b/", "https://c/"])
            .max_attempts(7)
            .build()
            .unwrap();
        let members = c.per_endpoint();
        assert_eq!(members.len(), 3);
        for (m, name) in members.iter().zip(["https://a:443/", "https://b:443/", "https://c:443/"]) {
            assert_eq!(m.endpoints().collect::<Vec<_>>(), [name]);
            assert_eq!(m.inner.max_attempts, 3);
            assert!(Arc::ptr_eq(&m.inner.failures, &c.inner.failures));
        }
    }

    #[test]
    fn debug_output_is_redacted() {
        let url = "http://user:secret@127.0.0.1:1/?key=topsecret";
        let builder = NanoRpcClient::builder().endpoint(url);
        let dbg = format!("{builder:?}");
        assert!(!dbg.contains("secret") && !dbg.contains("user"), "{dbg}");
        let dbg = format!("{:?}", builder.build().unwrap());
        assert!(!dbg.contains("secret") && !dbg.contains("user"), "{dbg}");
        assert!(dbg.contains("http://127.0.0.1:1/"), "{dbg}");
    }
}
