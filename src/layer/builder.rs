use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use tower_layer::Layer;

use super::body::{EmptyBody, FnBody, JsonBody, Refusal};
use super::limit::RateWindow;
use super::metrics::Metrics;
use super::path::{PriceTable, Unlisted};
use super::service::PaymentRequired;
use crate::nano::{Address, Raw};
use crate::protocol::Challenge;
use crate::store::{MemorySessionStore, MemorySpentSet, SessionStore, SpentSet};
use crate::verify::handoff::{BlockPublisher, DEFAULT_WORK_THRESHOLD};
use crate::verify::PaymentVerifier;

/// A price computed from the request head; `None` means "free, pass through".
pub(crate) type PriceFn = dyn Fn(&Parts) -> Option<Raw> + Send + Sync;
/// Who is asking, for the per-client session bound; `None` means "not limited".
pub(crate) type ClientKeyFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

pub(crate) enum Pricing {
    Static(Raw),
    /// Canonical request path (a gRPC method such as `/pkg.Service/Method`) to price.
    Table(PriceTable),
    Dynamic(Box<PriceFn>),
}

/// The longest session lifetime the builder accepts (a week): longer ones only hold tags and
/// store space, and absurd ones overflow the expiry's date.
const MAX_SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest tag modulus: every tag then stays below 2^53, exact in a JavaScript number.
pub const MAX_TAG_MODULUS: u64 = 1 << 53;
/// Default spent-set retention: ten years, in effect forever. A node re-bootstrap re-stamps
/// every old block as new, so a block whose entry was dropped can be farmed again (review F11).
pub const DEFAULT_SPENT_RETENTION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Everything one layer needs, validated once and shared by every service it wraps.
pub(crate) struct Shared {
    pub challenge: Challenge,
    pub pricing: Pricing,
    pub sessions: Arc<dyn SessionStore>,
    pub spent: Arc<dyn SpentSet>,
    pub verifier: Arc<dyn PaymentVerifier>,
    pub session_ttl: Duration,
    pub timestamp_skew: Duration,
    pub retention: Duration,
    pub confirm_wait: Duration,
    pub expose_headers: bool,
    pub grpc_codes: [i32; crate::protocol::Reason::ALL.len()],
    pub metrics: Arc<Metrics>,
    pub last_prune: std::sync::atomic::AtomicU64,
    /// When the store sizes were last sampled for the gauges.
    pub last_sample: std::sync::atomic::AtomicU64,
    /// `Cache-Control` added to granted responses that set none.
    pub paid_cache_control: Option<http::HeaderValue>,
    /// New sessions per client key (review F10).
    pub per_client: Option<(Box<ClientKeyFn>, RateWindow)>,
    /// Verifier calls per session (review F15).
    pub per_session: RateWindow,
    /// Payment with a signed block (spec §9), when enabled.
    pub handoff: Option<HandoffConfig>,
    /// Retries naming only their session settle with a watcher's match.
    pub watched_payments: bool,
    /// The browser paywall, when enabled.
    #[cfg(feature = "paywall")]
    pub paywall: Option<super::paywall::Paywall>,
    /// Cookies get `Secure` (the public base URL is https).
    #[cfg(feature = "paywall")]
    pub secure_cookie: bool,
}

/// When a handed-over block is published, relative to calling the wrapped service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Settlement {
    /// Publish and wait for confirmation, then call the service (the default, as for a block
    /// the client published itself).
    #[default]
    BeforeService,
    /// Call the service first and publish only if it answered with a success (2xx) status: a
    /// failed request costs the payer nothing (its block is never published). If publishing or
    /// confirmation then fails, the service's response is withheld and a refusal sent; the
    /// retry with the same block calls the service again and settles.
    AfterSuccess,
}

/// The hand-off settings, fixed at build time.
pub(crate) struct HandoffConfig {
    pub publisher: Arc<dyn BlockPublisher>,
    pub work_threshold: u64,
    pub settlement: Settlement,
}

/// A configuration the layer refuses to run with, found when it is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `pay_to` was not set.
    #[error("pay_to (the merchant address) is required")]
    MissingPayTo,
    /// `pay_to` is the burn address.
    #[error("pay_to is the burn address; payments to it are lost")]
    BurnPayTo,
    /// Neither `price` nor `price_fn` was set.
    #[error("a price (price or price_fn) is required")]
    MissingPrice,
    /// No verifier was set.
    #[error("a verifier is required")]
    MissingVerifier,
    /// The public base URL is missing or not an absolute http(s) URL.
    #[error("public_base_url must be an absolute http:// or https:// URL")]
    InvalidPublicUrl,
    /// The tag modulus is zero.
    #[error("tag_modulus must be at least 1")]
    ZeroTagModulus,
    /// The static price is not a multiple of the tag modulus.
    #[error("price {price} raw is not a multiple of tag_modulus {modulus}")]
    PriceNotMultiple {
        /// The price.
        price: Raw,
        /// The tag modulus.
        modulus: u64,
    },
    /// The confirmation wait is longer than the session grace allows.
    #[error("confirm_wait must be at most 30 s (sessions are kept 60 s past expiry for paid retries being verified)")]
    ConfirmWaitTooLong,
    /// A gRPC status code outside 1..=16 was configured.
    #[error("gRPC status code {0} is not a status code (1..=16)")]
    InvalidGrpcCode(i32),
    /// The static price is zero, or price plus the largest tag overflows.
    #[error("price must be above zero and leave room for the tag below 2^128")]
    PriceOutOfRange,
    /// The session lifetime is zero.
    #[error("session_ttl must be at least one second")]
    ZeroSessionTtl,
    /// A price table was set without choosing what happens to unlisted paths.
    #[error("price_table needs an explicit policy for unlisted paths: .unlisted_paths(Unlisted::Free or Unlisted::Deny)")]
    MissingUnlistedPolicy,
    /// The tag modulus is above 2^53: JavaScript clients would round the tag.
    #[error("tag_modulus {0} is above 2^53; JavaScript clients would round tags")]
    TagModulusTooLarge(u64),
    /// The tag modulus is below the session store's capacity, so tags run out first.
    #[error("tag_modulus {modulus} is below the session store capacity {capacity}: every 402 would be a 503 long before the store is full")]
    TagModulusBelowCapacity {
        /// The tag modulus.
        modulus: u64,
        /// The store's capacity.
        capacity: u64,
    },
    /// The session lifetime is longer than a week.
    #[error("session_ttl must be at most 7 days")]
    SessionTtlTooLong,
    /// A rate bound of zero.
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    /// The verifier may take longer than the session grace keeps a session for a paid retry.
    #[error("the verifier may take {max:?} (confirm_wait included), more than the {grace:?} a session is kept past expiry for a retry being verified")]
    VerificationTooLong {
        /// The verifier's longest verification with this confirm wait.
        max: Duration,
        /// The grace left for it.
        grace: Duration,
    },
    /// Spent-set retention does not exceed session lifetime plus skew.
    #[error("spent-set retention ({retention:?}) must exceed session_ttl + timestamp_skew ({needed:?})")]
    RetentionTooShort {
        /// The configured retention.
        retention: Duration,
        /// session_ttl + timestamp_skew.
        needed: Duration,
    },
}

/// Puts a Nano paywall in front of a Tower service.
///
/// Built once with [`PaymentRequiredLayer::builder`]; cloning is cheap (one `Arc`). `M` decides
/// the body of refusals: [`EmptyBody`] by default, [`JsonBody`] via
/// [`json_body`](PaymentRequiredLayer::json_body), or a closure via
/// [`refusal_body`](PaymentRequiredLayer::refusal_body).
///
/// ```
/// use nanosession::{PaymentRequiredLayer, nano::{Raw, BlockHash}};
/// use nanosession::verify::{Expected, PaymentVerifier, Rejection, VerifiedBlock};
///
/// struct NoNode;
/// #[async_trait::async_trait]
/// impl PaymentVerifier for NoNode {
///     async fn verify(&self, _: &BlockHash, _: &Expected) -> Result<VerifiedBlock, Rejection> {
///         Err(Rejection::Unavailable("no node in this example".into()))
///     }
/// }
///
/// let layer = PaymentRequiredLayer::builder()
///     .pay_to("nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap())
///     .price(Raw::new(1_000_000_000_000_000_000_000_000)) // 10^-6 XNO
///     .public_base_url("https://api.example.com")
///     .verifier(NoNode)
///     .build()
///     .expect("valid configuration")
///     .json_body();
/// # let _ = layer;
/// ```
pub struct PaymentRequiredLayer<M = EmptyBody> {
    shared: Arc<Shared>,
    body: M,
}

impl<M: Clone> Clone for PaymentRequiredLayer<M> {
    fn clone(&self) -> Self {
        PaymentRequiredLayer { shared: self.shared.clone(), body: self.body.clone() }
    }
}

impl<M> fmt::Debug for PaymentRequiredLayer<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentRequiredLayer")
            .field("pay_to", &self.shared.challenge.pay_to())
            .field("network", &self.shared.challenge.network())
            .field("tag_modulus", &self.shared.challenge.tag_modulus())
            .field("session_ttl", &self.shared.session_ttl)
            .finish_non_exhaustive()
    }
}

impl PaymentRequiredLayer {
    /// Starts a configuration with the protocol's defaults.
    pub fn builder() -> PaymentRequiredLayerBuilder {
        PaymentRequiredLayerBuilder::default()
    }
}

impl<M> PaymentRequiredLayer<M> {
    /// Refusals carry the default JSON body (for `B: From<Bytes>`, e.g. axum's `Body`).
    pub fn json_body(self) -> PaymentRequiredLayer<JsonBody> {
        PaymentRequiredLayer { shared: self.shared, body: JsonBody }
    }

    /// Refusals carry the body `f` builds (it may also set headers); gRPC refusals stay empty.
    ///
    /// ```
    /// use nanosession::layer::{FnBody, Refusal};
    /// // what `layer.refusal_body(f)` wraps:
    /// let f = |refusal: &Refusal, _headers: &mut http::HeaderMap| {
    ///     axum::body::Body::from(format!("payment needed: {}", refusal.code()))
    /// };
    /// let _body = FnBody(f);
    /// ```
    pub fn refusal_body<F, B>(self, f: F) -> PaymentRequiredLayer<FnBody<F>>
    where
        F: Fn(&Refusal, &mut http::HeaderMap) -> B + Clone + Send + Sync + 'static,
    {
        PaymentRequiredLayer { shared: self.shared, body: FnBody(f) }
    }

    /// The layer's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }
}

impl<S, M: Clone> Layer<S> for PaymentRequiredLayer<M> {
    type Service = PaymentRequired<S, M>;
    fn layer(&self, inner: S) -> Self::Service {
        PaymentRequired::new(inner, self.shared.clone(), self.body.clone())
    }
}

/// Configuration for [`PaymentRequiredLayer`]; every value is checked in [`build`](Self::build).
pub struct PaymentRequiredLayerBuilder {
    pay_to: Option<Address>,
    pricing: Option<Pricing>,
    network: String,
    public_base_url: Option<String>,
    description: String,
    mime_type: String,
    session_ttl: Duration,
    tag_modulus: u64,
    confirm_wait: Duration,
    timestamp_skew: Duration,
    retention: Duration,
    sessions: Option<Arc<dyn SessionStore>>,
    spent: Option<Arc<dyn SpentSet>>,
    verifier: Option<Arc<dyn PaymentVerifier>>,
    expose_headers: bool,
    grpc_codes: [i32; crate::protocol::Reason::ALL.len()],
    unlisted: Option<Unlisted>,
    paid_cache_control: Option<http::HeaderValue>,
    per_client: Option<(u32, Box<ClientKeyFn>)>,
    verifications_per_session: u32,
    publisher: Option<Arc<dyn BlockPublisher>>,
    work_threshold: u64,
    settlement: Settlement,
    watched_payments: bool,
    #[cfg(feature = "paywall")]
    paywall: Option<super::paywall::Paywall>,
}

impl Default for PaymentRequiredLayerBuilder {
    fn default() -> Self {
        PaymentRequiredLayerBuilder {
            pay_to: None,
            pricing: None,
            network: "nano:mainnet".to_owned(),
            public_base_url: None,
            description: String::new(),
            mime_type: "application/json".to_owned(),
            session_ttl: Duration::from_secs(300),
            tag_modulus: 10_000_000,
            confirm_wait: Duration::from_secs(3),
            timestamp_skew: Duration::from_secs(30),
            retention: DEFAULT_SPENT_RETENTION,
            sessions: None,
            spent: None,
            verifier: None,
            expose_headers: false,
            grpc_codes: crate::protocol::Reason::ALL.map(crate::protocol::Reason::grpc_code),
            unlisted: None,
            paid_cache_control: Some(http::HeaderValue::from_static("private, no-store")),
            per_client: None,
            verifications_per_session: DEFAULT_VERIFICATIONS_PER_SESSION,
            publisher: None,
            work_threshold: DEFAULT_WORK_THRESHOLD,
            settlement: Settlement::default(),
            watched_payments: false,
            #[cfg(feature = "paywall")]
            paywall: None,
        }
    }
}

impl fmt::Debug for PaymentRequiredLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentRequiredLayerBuilder")
            .field("pay_to", &self.pay_to)
            .field("network", &self.network)
            .field("session_ttl", &self.session_ttl)
            .field("tag_modulus", &self.tag_modulus)
            .finish_non_exhaustive()
    }
}

impl PaymentRequiredLayerBuilder {
    /// The merchant account payments must credit (required).
    pub fn pay_to(mut self, address: Address) -> Self {
        self.pay_to = Some(address);
        self
    }

    /// One price for every request the layer sees (`OPTIONS` included: put a CORS layer outside
    /// the paywall to answer preflights), in raw. Must be a multiple of the tag modulus.
    pub fn price(mut self, price: Raw) -> Self {
        self.pricing = Some(Pricing::Static(price));
        self
    }

    /// A price per request path, e.g. per gRPC method (`/pkg.Service/Method`). Paths are
    /// compared in their canonical spelling ([`normalize_path`](super::normalize_path)), and
    /// under a nested axum router by the public path (`OriginalUri`, with the `axum` feature).
    /// What unlisted paths get must be chosen with [`unlisted_paths`](Self::unlisted_paths).
    /// Every price must be a multiple of the tag modulus.
    ///
    /// ```
    /// # use nanosession::{PaymentRequiredLayer, nano::Raw, layer::Unlisted};
    /// let builder = PaymentRequiredLayer::builder()
    ///     .price_table([("/demo.Paywall/Paid", Raw::new(10_000_000)), ("/demo.Paywall/PaidStream", Raw::new(20_000_000))])
    ///     .unlisted_paths(Unlisted::Free); // the other methods are free
    /// # let _ = builder;
    /// ```
    pub fn price_table<P: Into<String>>(mut self, prices: impl IntoIterator<Item = (P, Raw)>) -> Self {
        let prices = prices.into_iter().map(|(p, r)| (p.into(), r));
        self.pricing = Some(Pricing::Table(PriceTable::new(prices, Unlisted::Deny)));
        self
    }

    /// What a [`price_table`](Self::price_table) does with paths it does not list (required
    /// with a table): [`Unlisted::Free`] passes them through, [`Unlisted::Deny`] answers 404.
    /// Choose `Deny` in front of `nest_service`, file servers and proxies.
    pub fn unlisted_paths(mut self, policy: Unlisted) -> Self {
        self.unlisted = Some(policy);
        self
    }

    /// `Cache-Control` for granted responses whose service set none (default
    /// `private, no-store`, so no shared cache serves paid content, or the payer's receipt, to
    /// the next caller); `None` adds nothing.
    pub fn paid_cache_control(mut self, value: Option<http::HeaderValue>) -> Self {
        self.paid_cache_control = value;
        self
    }

    /// At most `max` new sessions per client within one session lifetime (per instance),
    /// where `key` names the client from the request head (requests it cannot name, `None`,
    /// share one bound, so a missing header never switches the bound off). Over the
    /// bound the layer answers `429 rate_limited` and stores nothing, so one client cannot fill
    /// the session store and lock every payer out. Off by default.
    ///
    /// ```
    /// # use nanosession::PaymentRequiredLayer;
    /// use nanosession::layer::client_key;
    /// let builder = PaymentRequiredLayer::builder()
    ///     .sessions_per_client(20, client_key::header("x-real-ip"));
    /// # let _ = builder;
    /// ```
    pub fn sessions_per_client<F>(mut self, max: u32, key: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.per_client = Some((max, Box::new(key)));
        self
    }

    /// At most `max` verifier calls per session per minute (per instance; default 20). Past it
    /// a paid retry gets `429 rate_limited` without touching the node, so one free session
    /// cannot spend the node's request quota.
    pub fn verifications_per_session(mut self, max: u32) -> Self {
        self.verifications_per_session = max;
        self
    }

    /// The gRPC status code (as `tonic::Code as i32`) for refusals with `reason`; defaults in
    /// [`Reason::grpc_code`](crate::protocol::Reason::grpc_code).
    pub fn grpc_code(mut self, reason: crate::protocol::Reason, code: i32) -> Self {
        self.grpc_codes[reason.index()] = code;
        self
    }

    /// A price computed from the request head; `None` lets the request through for free.
    /// Returned prices must be multiples of the tag modulus: a request priced otherwise is
    /// answered 500 and logged as a configuration error.
    pub fn price_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Option<Raw> + Send + Sync + 'static,
    {
        self.pricing = Some(Pricing::Dynamic(Box::new(f)));
        self
    }

    /// Network name in x402 requirements and receipts (default `nano:mainnet`).
    pub fn network(mut self, network: impl Into<String>) -> Self {
        self.network = network.into();
        self
    }

    /// Public base URL (`https://api.example.com`); resource URLs are this plus the request path,
    /// never taken from the `Host` header. Required.
    pub fn public_base_url(mut self, url: impl Into<String>) -> Self {
        self.public_base_url = Some(url.into());
        self
    }

    /// Human description of the resource in x402 requirements.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Media type of the resource in x402 requirements (default `application/json`).
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = mime_type.into();
        self
    }

    /// Session lifetime (default 300 s).
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl;
        self
    }

    /// Tag modulus (default 10,000,000 raw): tags are drawn from `[0, tag_modulus)`.
    pub fn tag_modulus(mut self, modulus: u64) -> Self {
        self.tag_modulus = modulus;
        self
    }

    /// How long a paid retry may wait for an unconfirmed block (default 3 s).
    pub fn confirm_wait(mut self, wait: Duration) -> Self {
        self.confirm_wait = wait;
        self
    }

    /// Allowed clock skew for the first-seen check (default 30 s).
    pub fn timestamp_skew(mut self, skew: Duration) -> Self {
        self.timestamp_skew = skew;
        self
    }

    /// How long a spent block hash is kept (default [`DEFAULT_SPENT_RETENTION`], ten years);
    /// must exceed session TTL + skew. A shorter retention re-opens old payments for replay after
    /// a node re-bootstrap (see `docs/production.md`).
    pub fn spent_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The session store (default: in memory, forgotten on restart; see
    /// [`stores`](Self::stores) for persistent ones).
    pub fn session_store(self, store: impl SessionStore) -> Self {
        self.session_store_shared(Arc::new(store))
    }

    /// A session store shared with other layers or kept by the caller.
    pub fn session_store_shared(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.sessions = Some(store);
        self
    }

    /// The spent set (default: in memory).
    pub fn spent_set(self, set: impl SpentSet) -> Self {
        self.spent_set_shared(Arc::new(set))
    }

    /// A spent set shared with other layers or kept by the caller.
    pub fn spent_set_shared(mut self, set: Arc<dyn SpentSet>) -> Self {
        self.spent = Some(set);
        self
    }

    /// Both stores at once, e.g. from [`store::connect`](crate::store::connect).
    pub fn stores(mut self, stores: crate::store::Stores) -> Self {
        self.sessions = Some(stores.sessions);
        self.spent = Some(stores.spent);
        self
    }

    /// The payment verifier (required), e.g. a [`NanoRpcVerifier`](crate::verify::NanoRpcVerifier).
    pub fn verifier(self, verifier: impl PaymentVerifier) -> Self {
        self.verifier_shared(Arc::new(verifier))
    }

    /// A verifier shared with other layers.
    pub fn verifier_shared(mut self, verifier: Arc<dyn PaymentVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Accepts payment with a signed, unpublished send block (spec §9, the x402 `exact`
    /// scheme as Nano agent wallets speak it): the layer checks the block, publishes it
    /// through `publisher` and grants once the [`verifier`](Self::verifier) sees it confirmed.
    /// Off by default; a [`NanoRpcVerifier`](crate::verify::NanoRpcVerifier) is both.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use nanosession::{PaymentRequiredLayer, nano::{work, Raw}, rpc::NanoRpcClient, verify::NanoRpcVerifier};
    /// let node = Arc::new(NanoRpcVerifier::new(NanoRpcClient::new(["http://127.0.0.1:7076/"])?));
    /// let layer = PaymentRequiredLayer::builder()
    ///     .pay_to("nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse()?)
    ///     .price(Raw::new(1_000_000_000_000_000_000_000_000))
    ///     .public_base_url("https://api.example.com")
    ///     .verifier_shared(node.clone())
    ///     .accept_signed_blocks(node)
    ///     .work_threshold(work::DEV_EPOCH_2) // a dev network; the default is the live threshold
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn accept_signed_blocks(mut self, publisher: Arc<dyn BlockPublisher>) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// The least work accepted on a handed-over block (default [`DEFAULT_WORK_THRESHOLD`],
    /// the live network's epoch-2 send threshold `fffffff800000000`).
    pub fn work_threshold(mut self, threshold: u64) -> Self {
        self.work_threshold = threshold;
        self
    }

    /// Settles retries that name only their session (`X-PAYMENT-SESSION` without a block,
    /// hash-less settlement) with the payment a
    /// [`ConfirmationWatcher`](crate::watcher::ConfirmationWatcher) sharing this layer's
    /// session store matched to it; without a match they get `402 block_not_found` with
    /// `Retry-After`. Off by default (such a retry is then 400 `malformed_payment`). Retries
    /// that carry a block the watcher already checked settle without a node round trip
    /// either way.
    pub fn accept_watched_payments(mut self, on: bool) -> Self {
        self.watched_payments = on;
        self
    }

    /// Serves the browser paywall (feature `paywall`): a page with a QR code for requests
    /// that prefer HTML, the session in a cookie so a reload pays, and a status endpoint the
    /// page polls. Turns on [`accept_watched_payments`](Self::accept_watched_payments) too:
    /// run a [`ConfirmationWatcher`](crate::watcher::ConfirmationWatcher) on the same session
    /// store. Needs a refusal body that can carry bytes (`.json_body()`).
    ///
    /// ```
    /// # use nanosession::{PaymentRequiredLayer, nano::Raw, layer::Paywall};
    /// # fn demo(b: nanosession::layer::PaymentRequiredLayerBuilder) {
    /// let builder = b.paywall(Paywall::default().title("Premium article"));
    /// # let _ = builder; }
    /// ```
    #[cfg(feature = "paywall")]
    pub fn paywall(mut self, paywall: super::paywall::Paywall) -> Self {
        self.paywall = Some(paywall);
        self.watched_payments = true;
        self
    }

    /// When a handed-over block is published (default [`Settlement::BeforeService`]).
    pub fn settlement(mut self, settlement: Settlement) -> Self {
        self.settlement = settlement;
        self
    }

    /// Adds `Access-Control-Expose-Headers` for the payment headers to 402s and paid responses,
    /// so browser clients can read them across origins (default off).
    pub fn expose_headers(mut self, on: bool) -> Self {
        self.expose_headers = on;
        self
    }

    /// Validates the configuration and builds the layer.
    pub fn build(self) -> Result<PaymentRequiredLayer, ConfigError> {
        let pay_to = self.pay_to.ok_or(ConfigError::MissingPayTo)?;
        if pay_to.is_burn() {
            return Err(ConfigError::BurnPayTo);
        }
        if self.tag_modulus == 0 {
            return Err(ConfigError::ZeroTagModulus);
        }
        if self.tag_modulus > MAX_TAG_MODULUS {
            return Err(ConfigError::TagModulusTooLarge(self.tag_modulus));
        }
        let mut pricing = self.pricing.ok_or(ConfigError::MissingPrice)?;
        match &mut pricing {
            Pricing::Static(price) => check_price(*price, self.tag_modulus)?,
            Pricing::Table(table) => {
                table.unlisted = self.unlisted.ok_or(ConfigError::MissingUnlistedPolicy)?;
                table.prices().try_for_each(|price| check_price(*price, self.tag_modulus))?
            }
            Pricing::Dynamic(_) => {} // checked per request
        }
        if let Some(code) = self.grpc_codes.iter().find(|c| !(1..=16).contains(*c)) {
            return Err(ConfigError::InvalidGrpcCode(*code));
        }
        let verifier = self.verifier.ok_or(ConfigError::MissingVerifier)?;
        let base_url = self.public_base_url.ok_or(ConfigError::InvalidPublicUrl)?;
        match url::Url::parse(&base_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(ConfigError::InvalidPublicUrl),
        }
        // Half the grace for the wait, half for node round trips around it.
        if self.confirm_wait > Duration::from_secs(crate::store::SESSION_GRACE_SECS / 2) {
            return Err(ConfigError::ConfirmWaitTooLong);
        }
        if self.session_ttl.as_secs() == 0 {
            return Err(ConfigError::ZeroSessionTtl);
        }
        if self.session_ttl > MAX_SESSION_TTL {
            return Err(ConfigError::SessionTtlTooLong);
        }
        // The verification of a retry that arrived just in time must end inside the grace,
        // or its session could be pruned (or its amount reissued) under it (review F13).
        let grace = Duration::from_secs(crate::store::SESSION_GRACE_SECS) - VERIFY_MARGIN;
        if let Some(max) = verifier.max_duration(self.confirm_wait) {
            if max > grace {
                return Err(ConfigError::VerificationTooLong { max, grace });
            }
        }
        if self.verifications_per_session == 0 {
            return Err(ConfigError::ZeroLimit("verifications_per_session"));
        }
        if matches!(self.per_client, Some((0, _))) {
            return Err(ConfigError::ZeroLimit("sessions_per_client"));
        }
        let sessions = self.sessions.unwrap_or_else(|| Arc::new(MemorySessionStore::default()));
        if let Some(capacity) = sessions.capacity() {
            if self.tag_modulus < capacity {
                return Err(ConfigError::TagModulusBelowCapacity { modulus: self.tag_modulus, capacity });
            }
        }
        let needed = self.session_ttl.saturating_add(self.timestamp_skew);
        if self.retention <= needed {
            return Err(ConfigError::RetentionTooShort { retention: self.retention, needed });
        }
        let challenge = Challenge::new(
            pay_to,
            self.tag_modulus,
            &self.network,
            &base_url,
            &self.description,
            &self.mime_type,
        )
        .accepting_blocks(self.publisher.is_some());
        if self.spent.is_none() {
            tracing::warn!("PaymentRequiredLayer uses an in-memory spent set: after a restart old payments can be replayed; set .stores(...) for production");
        }
        let spent = self.spent.unwrap_or_else(|| Arc::new(MemorySpentSet::default()));
        let (sessions, spent) = crate::store::Stores::instrumented(sessions, spent);
        let shared = Shared {
            challenge,
            pricing,
            sessions,
            spent,
            verifier,
            session_ttl: self.session_ttl,
            timestamp_skew: self.timestamp_skew,
            retention: self.retention,
            confirm_wait: self.confirm_wait,
            expose_headers: self.expose_headers,
            grpc_codes: self.grpc_codes,
            metrics: Arc::default(),
            last_prune: Default::default(),
            last_sample: Default::default(),
            paid_cache_control: self.paid_cache_control,
            per_client: self.per_client.map(|(max, key)| (key, RateWindow::new(max, self.session_ttl))),
            per_session: RateWindow::new(self.verifications_per_session, Duration::from_secs(60)),
            handoff: self.publisher.map(|publisher| HandoffConfig {
                publisher,
                work_threshold: self.work_threshold,
                settlement: self.settlement,
            }),
            watched_payments: self.watched_payments,
            #[cfg(feature = "paywall")]
            paywall: self.paywall,
            #[cfg(feature = "paywall")]
            secure_cookie: base_url.starts_with("https:"),
        };
        Ok(PaymentRequiredLayer { shared: Arc::new(shared), body: EmptyBody })
    }
}

/// Default bound on verifier calls per session per minute.
pub const DEFAULT_VERIFICATIONS_PER_SESSION: u32 = 20;
/// Kept free at the end of the grace for the claim and take after verification (each bounded
/// by its store: PostgreSQL 3 s, Redis up to 10 s under load).
pub(crate) const VERIFY_MARGIN: Duration = Duration::from_secs(15);

/// The rule every price obeys: above zero, a multiple of the modulus (so `amount % modulus ==
/// tag`), and room for the largest tag.
pub(crate) fn check_price(price: Raw, modulus: u64) -> Result<(), ConfigError> {
    if price.get() % modulus as u128 != 0 {
        return Err(ConfigError::PriceNotMultiple { price, modulus });
    }
    if price == Raw::ZERO || price.checked_add(Raw::new(modulus as u128 - 1)).is_none() {
        return Err(ConfigError::PriceOutOfRange);
    }
    Ok(())
}
