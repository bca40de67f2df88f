//! One request through the paywall, top to bottom:
//!
//! 1. [`call`](PaymentRequired::call): price it, every method alike (free: pass through
//!    untouched), read the proof headers (malformed: 400 at once), then hand priced requests
//!    to the [`Gate`].
//! 2. [`Gate::challenge`]: no proof, so issue a session (within the client's bound) and answer 402.
//! 3. [`Gate::pay`] → [`Gate::settle`]: session and block owner, expiry, verifier (within the
//!    session's deadline), claim; then call the wrapped service with [`VerifiedPayment`] and
//!    add `PAYMENT-RESPONSE` and `Cache-Control`.
//!
//! Every refusal is rendered by [`Gate::respond`], the one place that maps a reason to headers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{ACCESS_CONTROL_EXPOSE_HEADERS, CACHE_CONTROL, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tower_service::Service;
use tracing::Instrument;

use super::body::{EmptyBody, Refusal, RefusalBody};
use super::builder::{check_price, Pricing, Shared, VERIFY_MARGIN};
use super::future::ResponseFuture;
use super::path::Unlisted;
use crate::grpc;
use crate::nano::{BlockHash, Raw};
use crate::payment::VerifiedPayment;
use crate::protocol::headers::{EXPOSE_LIST, PAYMENT_RESPONSE, PAYMENT_SIGNATURE, X_PAYMENT_SESSION};
use crate::protocol::{MalformedProof, PaidRetry, Proof, ProofForm, Reason, SettlementResponse};
use crate::session::{random_tag, unix_now, Session, SessionId};
use crate::store::{Claim, Insert, StoreError, StoredSession, SESSION_GRACE_SECS};
use crate::verify::{Confirmation, Expected, Rejection, VerifiedBlock};

/// Random tags tried before scanning for a free `(pay_to, amount)`.
const RANDOM_TAG_DRAWS: u64 = 8;
/// The most consecutive tags scanned after the random draws: the whole range when the modulus
/// is at most this (so a small tag space always yields its free tags), and a bound on the
/// store round trips one 402 can cost otherwise.
const MAX_TAG_SCAN: u64 = 64;
/// The least lifetime left for which a paywall reload shows the same session again.
#[cfg(feature = "paywall")]
const RESHOW_MIN_LEFT_SECS: u64 = 5;
/// Seconds between opportunistic prunes of the stores.
const PRUNE_EVERY_SECS: u64 = 60;
/// Seconds between samples of the store sizes for the gauges.
const SAMPLE_EVERY_SECS: u64 = 10;

/// The service [`PaymentRequiredLayer`](super::PaymentRequiredLayer) wraps around `S`.
pub struct PaymentRequired<S, M = EmptyBody> {
    inner: S,
    gate: Gate<M>,
}

impl<S: Clone, M: Clone> Clone for PaymentRequired<S, M> {
    fn clone(&self) -> Self {
        PaymentRequired { inner: self.inner.clone(), gate: self.gate.clone() }
    }
}

impl<S: std::fmt::Debug, M> std::fmt::Debug for PaymentRequired<S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentRequired").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, M> PaymentRequired<S, M> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, body: M) -> Self {
        PaymentRequired { inner, gate: Gate { shared, body } }
    }
}

impl<S, M, ReqBody, ResBody> Service<Request<ReqBody>> for PaymentRequired<S, M>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
    M: RefusalBody<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // 1. Price it. Every method is priced alike: an OPTIONS "preflight" is any client's to
        //    send, and tonic or `any()` routes serve it like a POST (review F1). A CORS layer
        //    outside the paywall answers real preflights.
        let (mut parts, body) = req.into_parts();
        let priced = self.gate.price(&parts);
        if let Ok(None) = priced {
            return ResponseFuture::passthrough(self.inner.call(Request::from_parts(parts, body)));
        }
        // One span per priced request: what it was, how it ended, how long the node took
        // (fields recorded by `respond`, `granted` and `verify`). No session id in it.
        let span = tracing::info_span!(
            "nanosession",
            path = parts.uri.path(),
            kind = tracing::field::Empty,
            status = tracing::field::Empty,
            reason = tracing::field::Empty,
            verify_us = tracing::field::Empty,
            block = tracing::field::Empty,
            payer = tracing::field::Empty,
        );
        let _entered = span.enter();
        // The paywall page's status endpoint (its priced resource's path with the status
        // query), answered here for the cookie's session only; off the free path.
        #[cfg(feature = "paywall")]
        if let Some(paywall) = &self.gate.shared.paywall {
            if paywall.is_status(&parts) {
                span.record("kind", "status");
                let (gate, id) = (self.gate.clone(), super::paywall::cookie_session(&parts.headers));
                return ResponseFuture::gate(Box::pin(
                    async move { Ok(gate.status(id).await) }.instrument(span.clone()),
                ));
            }
        }
        // gRPC clients get every refusal as a trailers-only response instead of a 402 (read
        // only off the free path).
        let grpc = grpc::is_grpc(&parts.headers);
        let reply = Reply { grpc, html: self.gate.wants_page(&parts.headers, grpc) };
        let price = match priced {
            Ok(price) => price.expect("free requests returned above"),
            Err(unpriced) => {
                return ResponseFuture::ready(self.gate.respond(unpriced.refusal(), HeaderMap::new(), reply))
            }
        };

        // 2. Read the proof: pure parsing, so a bad request never costs I/O.
        let proof = match PaidRetry::from_headers(&parts.headers) {
            Ok(Some(PaidRetry::Session(_))) if !self.gate.shared.watched_payments => {
                Err(MalformedProof("X-PAYMENT-BLOCK is missing"))
            }
            Ok(Some(PaidRetry::Handoff(_))) if self.gate.shared.handoff.is_none() => Err(MalformedProof(
                "this server does not accept payload.block: publish the block and send payload.proof",
            )),
            other => other,
        };
        let proof = match proof {
            Ok(proof) => proof,
            Err(MalformedProof(detail)) => {
                tracing::info!(reason = "malformed_payment", detail, "payment refused");
                self.gate.shared.metrics.refusal(Reason::MalformedPayment);
                let refusal = Refusal { detail: Some(detail), ..Refusal::new(Reason::MalformedPayment) };
                return ResponseFuture::ready(self.gate.respond(refusal, HeaderMap::new(), reply));
            }
        };

        let gate = self.gate.clone();
        // Whoever asks for sessions, for the per-client bound (any refusal may issue one).
        let client = gate.shared.per_client.as_ref().map(|(key, _)| key(&parts));
        let path = path_of(&parts);
        // A plain navigation of the paywall page: its cookie names the session.
        #[cfg(feature = "paywall")]
        if let (None, Some(_)) = (&proof, &gate.shared.paywall) {
            if let Some(id) = super::paywall::cookie_session(&parts.headers) {
                span.record("kind", "cookie");
                let (req, inner) = (Request::from_parts(parts, body), self.inner.clone());
                let ctx = PaidRequest { price, path, client, reply };
                return ResponseFuture::gate(Box::pin(
                    gate.pay_cookie(id, ctx, req, inner).instrument(span.clone()),
                ));
            }
        }
        match proof {
            None => {
                span.record("kind", "challenge");
                ResponseFuture::gate(
                    Box::pin(
                        async move {
                            Ok(gate.challenge(Reason::PaymentRequired, price, &path, client, reply).await)
                        }
                        .instrument(span.clone()),
                    ),
                )
            }
            Some(proof) => {
                // Bearer secrets from here on: kept out of `Debug` output and HPACK tables of
                // anything inside (review F20).
                for name in [X_PAYMENT_SESSION, PAYMENT_SIGNATURE] {
                    if let Some(value) = parts.headers.get_mut(name) {
                        value.set_sensitive(true);
                    }
                }
                let req = Request::from_parts(parts, body);
                // Settling takes store and node round trips (seconds when waiting for a
                // confirmation), so the readiness polled here (a Buffer slot, a concurrency
                // permit) stays with `self` for the next request; the paid request drives its
                // own clone to readiness once it is granted.
                let inner = self.inner.clone();
                let ctx = PaidRequest { price, path, client, reply };
                let in_span = span.clone();
                ResponseFuture::gate(match proof {
                    PaidRetry::Published(proof) => {
                        span.record("kind", "published");
                        Box::pin(gate.pay(proof, ctx, req, inner).instrument(in_span))
                    }
                    PaidRetry::Handoff(handoff) => {
                        span.record("kind", "handoff");
                        Box::pin(gate.pay_handoff(*handoff, ctx, req, inner).instrument(in_span))
                    }
                    PaidRetry::Session(id) => {
                        span.record("kind", "watched");
                        Box::pin(gate.pay_watched(id, ctx, req, inner).instrument(in_span))
                    }
                })
            }
        }
    }
}

/// How refusals are rendered for this request: gRPC trailers, the browser paywall page, or the
/// refusal body.
#[derive(Clone, Copy, Debug)]
pub(super) struct Reply {
    pub(super) grpc: bool,
    #[cfg_attr(not(feature = "paywall"), allow(dead_code))]
    pub(super) html: bool,
}

/// What the paid path carries along from [`call`](PaymentRequired::call).
pub(super) struct PaidRequest {
    pub(super) price: Raw,
    pub(super) path: String,
    pub(super) client: Option<Option<String>>,
    pub(super) reply: Reply,
}

/// The request's public URI: under a nested axum router, the one the client sent
/// (`OriginalUri`), not the prefix-stripped one the layer sees.
fn public_uri(parts: &Parts) -> &http::Uri {
    #[cfg(feature = "axum")]
    if let Some(original) = parts.extensions.get::<axum::extract::OriginalUri>() {
        return &original.0;
    }
    &parts.uri
}

/// Path and query for the resource URL of a challenge.
fn path_of(parts: &Parts) -> String {
    public_uri(parts).path_and_query().map_or("/", |p| p.as_str()).to_owned()
}

/// A payment verified for the session, its block not yet claimed.
struct Verified {
    payment: VerifiedPayment,
}

/// Why a paid retry was not settled.
pub(super) enum Settle<E> {
    /// A protocol refusal.
    Refused(Reason),
    /// The wrapped service failed to become ready; the claim stays with the session.
    NotReady(E),
}

impl<E> From<Reason> for Settle<E> {
    fn from(reason: Reason) -> Self {
        Settle::Refused(reason)
    }
}

/// A priced route the layer cannot price for this request.
enum Unpriced {
    /// A denying table does not list the path.
    NotListed,
    /// `price_fn` broke the tag-modulus rule.
    Misconfigured,
}

impl Unpriced {
    fn refusal(self) -> Refusal {
        let (status, message) = match self {
            Unpriced::NotListed => (
                StatusCode::NOT_FOUND,
                "No price is set for this path, and the paywall lets no unlisted path through.",
            ),
            Unpriced::Misconfigured => {
                (StatusCode::INTERNAL_SERVER_ERROR, "The server's price for this resource is misconfigured.")
            }
        };
        Refusal { reason: None, status, message, detail: None, challenge: None }
    }
}

/// The async half of the layer: everything after the request has been priced and parsed.
pub(super) struct Gate<M> {
    pub(super) shared: Arc<Shared>,
    pub(super) body: M,
}

impl<M: Clone> Clone for Gate<M> {
    fn clone(&self) -> Self {
        Gate { shared: self.shared.clone(), body: self.body.clone() }
    }
}

impl<M> Gate<M> {
    /// The request's price: `Ok(None)` for free requests, `Err` for a misconfigured dynamic
    /// price or a path a denying table does not list.
    fn price(&self, parts: &Parts) -> Result<Option<Raw>, Unpriced> {
        match &self.shared.pricing {
            Pricing::Static(price) => Ok(Some(*price)),
            Pricing::Table(table) => {
                // The public path first, then the one this layer sees: a table keyed either way
                // prices the request, so nesting can only make a path priced, never free.
                let price = table.get(public_uri(parts).path()).or_else(|| table.get(parts.uri.path()));
                match (price, table.unlisted) {
                    (Some(price), _) => Ok(Some(price)),
                    (None, Unlisted::Free) => Ok(None),
                    (None, Unlisted::Deny) => Err(Unpriced::NotListed),
                }
            }
            Pricing::Dynamic(price_of) => match price_of(parts) {
                Some(price) => match check_price(price, self.shared.challenge.tag_modulus()) {
                    Ok(()) => Ok(Some(price)),
                    Err(error) => {
                        tracing::error!(%error, "price_fn returned an invalid price; answering 500");
                        Err(Unpriced::Misconfigured)
                    }
                },
                None => Ok(None),
            },
        }
    }
}

impl<M> Gate<M> {
    /// No proof yet (or a fresh challenge is due): issue a session and answer 402.
    pub(super) async fn challenge<B>(
        &self,
        reason: Reason,
        price: Raw,
        path: &str,
        client: Option<Option<String>>,
        reply: Reply,
    ) -> Response<B>
    where
        M: RefusalBody<B>,
    {
        let headers = HeaderMap::new();
        // One client cannot fill the store and lock every payer out (review F10).
        // Requests the key cannot name share one bound, so a missing header or peer address
        // never turns the bound off.
        if let (Some(client), Some((_, window))) = (client, &self.shared.per_client) {
            if !window.hit(client.unwrap_or_default()) {
                tracing::info!(reason = "rate_limited", "too many new sessions for one client");
                self.shared.metrics.challenge_failed(Reason::RateLimited);
                return self.respond(Refusal::new(Reason::RateLimited), headers, reply);
            }
        }
        match self.issue(price).await {
            Ok(session) => {
                self.shared.metrics.challenge();
                self.show(&session, reason, path, reply, headers)
            }
            Err(reason) => {
                self.shared.metrics.challenge_failed(reason);
                self.respond(Refusal::new(reason), headers, reply)
            }
        }
    }

    /// The 402 of `session`: both header forms, the paywall cookie, the body or page.
    fn show<B>(
        &self,
        session: &Session,
        reason: Reason,
        path: &str,
        reply: Reply,
        mut headers: HeaderMap,
    ) -> Response<B>
    where
        M: RefusalBody<B>,
    {
        let rendered = self.shared.challenge.render(session, path);
        self.shared.challenge.write_headers(session, &rendered, &mut headers);
        self.set_cookie(session, path, reply, &mut headers);
        self.respond(Refusal { challenge: Some(rendered), ..Refusal::new(reason) }, headers, reply)
    }

    /// The paywall page's cookie naming `session`, scoped to the resource and its lifetime.
    fn set_cookie(&self, session: &Session, path: &str, reply: Reply, headers: &mut HeaderMap) {
        #[cfg(feature = "paywall")]
        if reply.html {
            let max_age = session.expires_at.saturating_sub(unix_now());
            let (id, path) = (session.id.to_string(), super::paywall::cookie_path(path));
            let cookie = super::paywall::session_cookie(&id, &path, max_age, self.shared.secure_cookie);
            headers.append(http::header::SET_COOKIE, cookie);
        }
        let _ = (session, path, reply, headers);
    }

    /// Draws a session whose amount no other pending session has, and stores it.
    async fn issue(&self, price: Raw) -> Result<Session, Reason> {
        let s = &*self.shared;
        let now = unix_now();
        self.maybe_prune(now);
        let modulus = s.challenge.tag_modulus();
        let start = random_tag(modulus);
        for attempt in 0..RANDOM_TAG_DRAWS + modulus.min(MAX_TAG_SCAN) {
            // Random draws first (almost always the first one is free); then a scan from a
            // random start, so a nearly full tag space still yields its free tags.
            let tag = match attempt.checked_sub(RANDOM_TAG_DRAWS) {
                None => random_tag(modulus),
                Some(step) => ((start as u128 + step as u128) % modulus as u128) as u64,
            };
            let session = Session::issue_with_tag(s.challenge.pay_to(), price, tag, now, s.session_ttl)
                .ok_or(Reason::StoreUnavailable)?;
            // Sessions within their grace after expiry still hold their amount.
            match s
                .sessions
                .insert(&session, now.saturating_sub(SESSION_GRACE_SECS))
                .await
                .map_err(store_down)?
            {
                Insert::Inserted => return Ok(session),
                Insert::AmountInUse => continue,
                Insert::Full => {
                    tracing::warn!("session store is full; refusing new sessions (503)");
                    return Err(Reason::StoreUnavailable);
                }
            }
        }
        tracing::warn!("no free tag found; raise tag_modulus or lower the pending-session bound");
        Err(Reason::StoreUnavailable)
    }

    /// A paid retry: settle it, then call the wrapped service, or refuse.
    async fn pay<S, ReqBody, B>(
        self,
        proof: Proof,
        ctx: PaidRequest,
        mut req: Request<ReqBody>,
        mut inner: S,
    ) -> Result<Response<B>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<B>>,
        M: RefusalBody<B>,
    {
        let payment = match self.settle(&proof, ctx.price, &mut inner).await {
            Ok(payment) => payment,
            // The claim stays with the session and nothing was consumed: the retry re-enters.
            Err(Settle::NotReady(error)) => return Err(error),
            Err(Settle::Refused(reason)) => return Ok(self.refuse(reason, &proof.block, &ctx).await),
        };
        req.extensions_mut().insert(payment.clone());
        // `settle` drove `inner` to readiness before consuming the session.
        let response = inner.call(req).await?;
        Ok(self.granted(response, &payment))
    }

    /// A retry naming only its session (hash-less settlement): settled with the payment the
    /// confirmation watcher recorded for it, else `block_not_found` with `Retry-After` (the
    /// session is kept: the payment may not be confirmed yet).
    async fn pay_watched<S, ReqBody, B>(
        self,
        id: SessionId,
        ctx: PaidRequest,
        req: Request<ReqBody>,
        inner: S,
    ) -> Result<Response<B>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<B>>,
        M: RefusalBody<B>,
    {
        let reason = match self.shared.sessions.get_by_key(&id.key()).await {
            Ok(Some(session)) => match session.watched {
                Some(watched) => {
                    let proof = Proof { session: id, block: watched.block, form: ProofForm::Headers };
                    return self.pay(proof, ctx, req, inner).await;
                }
                None if session.is_expired(unix_now()) => Reason::SessionExpired,
                None => Reason::BlockNotFound,
            },
            Ok(None) => Reason::UnknownSession,
            Err(error) => store_down(error),
        };
        Ok(self.refuse(reason, &BlockHash::ZERO, &ctx).await)
    }

    /// A request whose paywall cookie names a session: settled if the watcher matched a
    /// payment (the cookie is then cleared), the same session's challenge again while it is
    /// pending (the page a phone may already have scanned), else a fresh challenge.
    #[cfg(feature = "paywall")]
    async fn pay_cookie<S, ReqBody, B>(
        self,
        id: SessionId,
        ctx: PaidRequest,
        req: Request<ReqBody>,
        inner: S,
    ) -> Result<Response<B>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<B>>,
        M: RefusalBody<B>,
    {
        let stored = match self.shared.sessions.get_by_key(&id.key()).await {
            Ok(stored) => stored,
            Err(error) => return Ok(self.refuse(store_down(error), &BlockHash::ZERO, &ctx).await),
        };
        let pay_to = self.shared.challenge.pay_to();
        match stored.filter(|s| s.price >= ctx.price && s.pay_to == pay_to) {
            Some(StoredSession { watched: Some(watched), .. }) => {
                let path = super::paywall::cookie_path(&ctx.path);
                let proof = Proof { session: id, block: watched.block, form: ProofForm::Headers };
                let mut response = self.pay(proof, ctx, req, inner).await?;
                if response.status().is_success() {
                    response
                        .headers_mut()
                        .append(http::header::SET_COOKIE, super::paywall::clear_cookie(&path));
                }
                Ok(response)
            }
            // The same session again only while it is worth paying: one about to expire (the
            // page already counts it down to zero) is replaced by a fresh one.
            Some(s) if s.expires_at > unix_now() + RESHOW_MIN_LEFT_SECS => {
                Ok(self.show(&s.with_id(id), Reason::PaymentRequired, &ctx.path, ctx.reply, HeaderMap::new()))
            }
            _ => {
                Ok(self.challenge(Reason::PaymentRequired, ctx.price, &ctx.path, ctx.client, ctx.reply).await)
            }
        }
    }

    /// The paywall page's status endpoint: the state of the cookie's session, held open (a
    /// long poll) up to 20 s while it is pending.
    #[cfg(feature = "paywall")]
    async fn status<B>(&self, id: Option<SessionId>) -> Response<B>
    where
        M: RefusalBody<B>,
    {
        const HOLD: std::time::Duration = std::time::Duration::from_secs(20);
        const EVERY: std::time::Duration = std::time::Duration::from_millis(250);
        let deadline = tokio::time::Instant::now() + HOLD;
        let state = loop {
            let Some(id) = id else { break Ok("unknown") };
            let state = match self.shared.sessions.get_by_key(&id.key()).await {
                Ok(Some(s)) if s.watched.is_some() => "paid",
                Ok(Some(s)) if s.is_expired(unix_now()) => "expired",
                Ok(Some(_)) => "pending",
                Ok(None) => "unknown",
                Err(error) => break Err(store_down(error)),
            };
            if state != "pending" || tokio::time::Instant::now() + EVERY >= deadline {
                break Ok(state);
            }
            tokio::time::sleep(EVERY).await;
        };
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let (status, json) = match state {
            Ok(state) => (StatusCode::OK, format!(r#"{{"state":"{state}"}}"#)),
            Err(reason) => {
                (reason.status(), format!(r#"{{"state":"unavailable","reason":"{}"}}"#, reason.code()))
            }
        };
        let Some(body) = self.body.bytes(bytes::Bytes::from(json)) else {
            // A body type that cannot carry bytes (`EmptyBody`): a server misconfiguration.
            let refusal = Refusal {
                reason: None,
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "The paywall's status endpoint needs a refusal body that carries bytes (json_body).",
                detail: None,
                challenge: None,
            };
            return self.respond(refusal, HeaderMap::new(), Reply { grpc: false, html: false });
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// The answer to a refused paid retry: a fresh challenge where the reason calls for one,
    /// the earlier grant's receipt for `already_granted`, else the refusal.
    pub(super) async fn refuse<B>(&self, reason: Reason, block: &BlockHash, ctx: &PaidRequest) -> Response<B>
    where
        M: RefusalBody<B>,
    {
        self.shared.metrics.refusal(reason);
        if reason.fresh_challenge() {
            self.challenge(reason, ctx.price, &ctx.path, ctx.client.clone(), ctx.reply).await
        } else if reason == Reason::AlreadyGranted {
            // The receipt of the earlier grant, so the client knows it must not pay again.
            let mut headers = HeaderMap::new();
            let receipt = SettlementResponse {
                payer: None,
                ..SettlementResponse::success(
                    block.to_string(),
                    self.shared.challenge.network().to_owned(),
                    String::new(),
                )
            };
            headers.insert(PAYMENT_RESPONSE, receipt.to_header());
            self.respond(Refusal::new(reason), headers, ctx.reply)
        } else {
            self.respond(Refusal::new(reason), HeaderMap::new(), ctx.reply)
        }
    }

    /// The wrapped service's response to a granted request, with the receipt, the paid
    /// `Cache-Control` and CORS exposure.
    pub(super) fn granted<B>(&self, mut response: Response<B>, payment: &VerifiedPayment) -> Response<B> {
        self.shared.metrics.grant(payment.confirmation);
        let span = tracing::Span::current();
        span.record("status", response.status().as_u16());
        span.record("block", tracing::field::display(&payment.block));
        span.record("payer", tracing::field::display(&payment.payer));
        let receipt = SettlementResponse::success(
            payment.block.to_string(),
            self.shared.challenge.network().to_owned(),
            payment.payer.to_string(),
        )
        .to_header();
        let headers = response.headers_mut();
        headers.insert(PAYMENT_RESPONSE, receipt);
        // Paid content must not be served from a shared cache to the next, unpaid caller (F7).
        if let Some(value) = &self.shared.paid_cache_control {
            headers.entry(CACHE_CONTROL).or_insert_with(|| value.clone());
        }
        if self.shared.expose_headers {
            headers.append(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_LIST));
        }
        response
    }

    /// Verification in the spec's order (§5): cheap store reads first, the node last, then the
    /// atomic claim; then the wrapped service must be ready, and only then is the session
    /// consumed. Nothing is consumed unless every step passes.
    async fn settle<S, R>(
        &self,
        proof: &Proof,
        price: Raw,
        inner: &mut S,
    ) -> Result<VerifiedPayment, Settle<S::Error>>
    where
        S: Service<R>,
    {
        let session_tag = proof.session.fingerprint();
        let outcome = async {
            let verified = self.check(proof, price).await?;
            // A service that cannot take the request (load shedding, a dead buffer worker) must
            // not cost the payment: the block is claimed and the session consumed only once it
            // is ready (nothing is spent before that: the retry verifies again).
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await.map_err(Settle::NotReady)?;
            Ok(self.consume(proof, verified).await?)
        }
        .await;

        match &outcome {
            Ok(p) => {
                tracing::info!(session = %session_tag, block = %p.block, payer = %p.payer, amount = %p.amount, "payment settled")
            }
            Err(Settle::NotReady(_)) => {
                tracing::warn!(session = %session_tag, block = %proof.block, "the service was not ready; the claim is kept for the retry")
            }
            Err(Settle::Refused(Reason::AlreadySpent)) => {
                tracing::warn!(session = %session_tag, block = %proof.block, "replay refused: already_spent")
            }
            Err(Settle::Refused(reason)) => {
                tracing::info!(session = %session_tag, block = %proof.block, reason = reason.code(), "payment refused")
            }
        }
        outcome
    }

    /// Everything up to the block claim: the session, the spent pre-check, the verification.
    async fn check(&self, proof: &Proof, price: Raw) -> Result<Verified, Reason> {
        let s = &*self.shared;
        let session_tag = proof.session.fingerprint();
        {
            let now = unix_now();
            // Both reads at once: the session, and which session (if any) claimed the block.
            let (session, owner) = futures_util::future::join(
                s.sessions.get_by_key(&proof.session.key()),
                s.spent.owner(&proof.block),
            )
            .await;
            let (session, owner) = (session.map_err(store_down)?, owner.map_err(store_down)?);
            // Claimed by this very session: an earlier attempt verified it in time and was
            // interrupted before (or after) consuming the session.
            let mine = owner == Some(proof.session.key());
            // A session issued for a lower price (another route) does not exist for this one;
            // one issued before a price cut is honoured, or the payment would be stranded (F17).
            let Some(session) =
                session.filter(|session| session.price >= price && session.pay_to == s.challenge.pay_to())
            else {
                // Gone while its block is claimed by it: this pair was granted (or, after an
                // outage longer than the grace, claimed and then pruned). Never pay again.
                return Err(if mine { Reason::AlreadyGranted } else { Reason::UnknownSession });
            };
            if owner.is_some() && !mine {
                return Err(Reason::AlreadySpent);
            }
            // An owned claim proves the block verified before the deadline: an outage between
            // claim and take must not turn into an expiry that burns the payment (F4).
            if !mine && session.is_expired(now) {
                // Kept, amount and all, until pruned after the grace: a retry of this session
                // that is still being verified must not lose it under its feet (F14).
                tracing::info!(session = %session_tag, "session expired");
                return Err(Reason::SessionExpired);
            }
            // One free session must not buy unlimited node round trips (F15).
            if !s.per_session.hit(session.key) {
                return Err(Reason::RateLimited);
            }

            // The verification must end while the session is still kept for it (F13): past
            // this point the session may be pruned or its amount reissued.
            let deadline = deadline(&session);
            let block = match session.watched.filter(|w| w.block == proof.block) {
                // The 0-RPC path: a confirmation watcher already checked this very block for
                // this session (first seen included) and recorded it in the shared store.
                Some(watched) => VerifiedBlock {
                    hash: watched.block,
                    payer: watched.payer,
                    amount: session.amount,
                    first_seen: watched.first_seen,
                    confirmation: Confirmation::Watched,
                },
                None => self.verify(&proof.block, &session, !mine).await.map_err(rejection_reason)?,
            };
            if !mine && unix_now() > deadline {
                tracing::warn!(session = %session_tag, "verified past the session's deadline; nothing claimed");
                return Err(Reason::VerifierUnavailable);
            }
            // A third-party verifier must answer for the block and amount it was asked about.
            if block.hash != proof.block || block.amount != session.amount {
                tracing::error!(block = %proof.block, "verifier answered for another block or amount");
                return Err(Reason::InvalidBlock);
            }

            let payment = VerifiedPayment {
                block: block.hash,
                payer: block.payer,
                amount: block.amount,
                price: session.price,
                tag: session.tag,
                session: session.key,
                confirmation: block.confirmation,
            };
            Ok(Verified { payment })
        }
    }

    /// Asks the verifier whether `hash` pays `session` (exact amount, first seen after the
    /// session less the skew, confirmed within the confirm wait), cut off at the session's
    /// [`deadline`] when `cut`.
    pub(super) async fn verify(
        &self,
        hash: &BlockHash,
        session: &StoredSession,
        cut: bool,
    ) -> Result<VerifiedBlock, Rejection> {
        let s = &*self.shared;
        let expected = Expected {
            pay_to: session.pay_to,
            amount: session.amount,
            not_before: session.created_at.saturating_sub(s.timestamp_skew.as_secs()),
            confirm_wait: s.confirm_wait,
        };
        let started = Instant::now();
        let verify = s.verifier.verify(hash, &expected);
        let verified = if cut {
            let left = std::time::Duration::from_secs(deadline(session).saturating_sub(unix_now()));
            tokio::time::timeout(left, verify).await.unwrap_or_else(|_| {
                Err(Rejection::Unavailable("verification cut off at the session's deadline".into()))
            })
        } else {
            verify.await
        };
        s.metrics.verification(started.elapsed());
        tracing::Span::current().record("verify_us", started.elapsed().as_micros() as u64);
        verified
    }

    /// Claims the block (exactly one session wins it) and consumes the session (taken once),
    /// in one transaction where the stores share one.
    async fn consume(
        &self,
        proof: &Proof,
        Verified { payment }: Verified,
    ) -> Result<VerifiedPayment, Reason> {
        let s = &*self.shared;
        {
            let session = &payment.session;
            let keep_until = unix_now().saturating_add(s.retention.as_secs());
            let (claim, taken) = s
                .spent
                .claim_and_take(&*s.sessions, &proof.block, session, keep_until)
                .await
                .map_err(store_down)?;
            if claim == Claim::Spent {
                return Err(Reason::AlreadySpent);
            }
            match taken {
                Ok(Some(_)) => {}
                Ok(None) if claim == Claim::New => {
                    // A concurrent request consumed the session with another block: give this
                    // one back (`release` is a no-op if a retry of this pair re-entered it).
                    if let Err(error) = s.spent.release_by_key(&proof.block, session).await {
                        tracing::warn!(block = %proof.block, %error, "could not release an unused claim");
                    }
                    return Err(Reason::SessionUsed);
                }
                // Re-entered a claim of this pair and the session is gone: a concurrent retry
                // of the same pair was granted.
                Ok(None) => return Err(Reason::AlreadyGranted),
                // The claim stays with this session, so its retry re-enters it once the store
                // is back: an outage here never burns the payment.
                Err(error) => return Err(store_down(error)),
            }
        }
        Ok(payment)
    }

    /// Renders a refusal: status, `Retry-After`, failed `PAYMENT-RESPONSE` after a proof,
    /// `Cache-Control: no-store`, optional CORS exposure, and the body from the hook; for gRPC
    /// the same headers as metadata of a trailers-only response with `grpc-status`.
    pub(super) fn respond<B>(&self, refusal: Refusal, mut headers: HeaderMap, reply: Reply) -> Response<B>
    where
        M: RefusalBody<B>,
    {
        let span = tracing::Span::current();
        span.record("status", refusal.status.as_u16());
        if let Some(reason) = refusal.reason {
            span.record("reason", reason.code());
            if let Some(secs) = reason.retry_after_secs() {
                headers.insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            if reason.status() == http::StatusCode::PAYMENT_REQUIRED && reason.after_proof() {
                let receipt =
                    SettlementResponse::failure(reason.code(), self.shared.challenge.network().to_owned());
                headers.insert(PAYMENT_RESPONSE, receipt.to_header());
            }
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.shared.expose_headers {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_LIST));
        }
        let mut response = if reply.grpc {
            // An unlisted path of a denying table is UNIMPLEMENTED (12), a misconfigured price
            // INTERNAL (13).
            let code = match refusal.reason {
                Some(r) => self.shared.grpc_codes[r.index()],
                None if refusal.status == StatusCode::NOT_FOUND => 12,
                None => 13,
            };
            let message = format!("{}: {}", refusal.code(), refusal.detail.unwrap_or(refusal.message));
            grpc::trailers_only(&mut headers, code, &message);
            Response::new(self.body.empty())
        } else {
            let body = match self.page(&refusal, &mut headers, reply) {
                Some(page) => page,
                None => self.body.body(&refusal, &mut headers),
            };
            let mut response = Response::new(body);
            *response.status_mut() = refusal.status;
            response
        };
        *response.headers_mut() = headers;
        response
    }

    /// The browser paywall page for a refusal carrying a challenge, when the request wants one.
    #[cfg(feature = "paywall")]
    fn page<B>(&self, refusal: &Refusal, headers: &mut HeaderMap, reply: Reply) -> Option<B>
    where
        M: RefusalBody<B>,
    {
        let (paywall, required) = (self.shared.paywall.as_ref()?, refusal.challenge.as_ref()?);
        if !reply.html {
            return None;
        }
        let page = paywall.page(&required.required())?;
        // Its own headers go in only once the body type took the page.
        let mut page_headers = HeaderMap::new();
        let body = self.body.bytes(bytes::Bytes::from(paywall.render(&page, &mut page_headers)))?;
        headers.extend(page_headers);
        Some(body)
    }

    #[cfg(not(feature = "paywall"))]
    fn page<B>(&self, _: &Refusal, _: &mut HeaderMap, _: Reply) -> Option<B> {
        None
    }

    /// Whether refusals of this request get the browser paywall page.
    pub(super) fn wants_page(&self, headers: &HeaderMap, grpc: bool) -> bool {
        #[cfg(feature = "paywall")]
        if self.shared.paywall.is_some() && !grpc {
            return super::paywall::wants_html(headers);
        }
        let _ = (headers, grpc);
        false
    }

    /// Prunes both stores in the background at most once a minute (persistent backends with
    /// native TTLs make this a cheap no-op).
    fn maybe_prune(&self, now: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (sessions, spent) = (self.shared.sessions.clone(), self.shared.spent.clone());
        if due(&self.shared.last_prune, now, PRUNE_EVERY_SECS) {
            let (sessions, spent) = (sessions.clone(), spent.clone());
            runtime.spawn(async move {
                if let Err(error) = sessions.prune(now.saturating_sub(SESSION_GRACE_SECS)).await {
                    tracing::warn!(%error, "pruning sessions failed");
                }
                if let Err(error) = spent.prune(now).await {
                    tracing::warn!(%error, "pruning the spent set failed");
                }
            });
        }
        if due(&self.shared.last_sample, now, SAMPLE_EVERY_SECS) {
            runtime.spawn(async move {
                use crate::telemetry::{store_size, PENDING_SESSIONS, SPENT_ENTRIES};
                store_size(
                    PENDING_SESSIONS,
                    sessions.backend(),
                    sessions.pending_count().await.ok().flatten(),
                );
                store_size(SPENT_ENTRIES, spent.backend(), spent.size().await.ok().flatten());
            });
        }
    }
}

/// True for the one caller that moves `last` to `now` once `every` seconds have passed.
fn due(last: &std::sync::atomic::AtomicU64, now: u64, every: u64) -> bool {
    let seen = last.load(Ordering::Relaxed);
    now >= seen + every && last.compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

/// When a verification for `session` must have ended: its expiry plus the grace it is kept
/// for, less the margin left for the claim and take (review F13).
fn deadline(session: &StoredSession) -> u64 {
    session.expires_at + SESSION_GRACE_SECS - VERIFY_MARGIN.as_secs()
}

pub(super) fn store_down(error: StoreError) -> Reason {
    tracing::warn!(%error, "store unavailable");
    Reason::StoreUnavailable
}

/// The one mapping from verifier answers to reason codes.
pub(super) fn rejection_reason(rejection: Rejection) -> Reason {
    match rejection {
        Rejection::NotFound => Reason::BlockNotFound,
        Rejection::NotConfirmed => Reason::BlockNotConfirmed,
        Rejection::WrongBlockType => Reason::WrongBlockType,
        Rejection::WrongDestination => Reason::WrongDestination,
        Rejection::WrongAmount => Reason::WrongAmount,
        Rejection::TooOld => Reason::BlockTooOld,
        Rejection::InvalidBlock(_) => Reason::InvalidBlock,
        Rejection::Unavailable(error) => {
            tracing::warn!(%error, "verifier unavailable");
            Reason::VerifierUnavailable
        }
    }
}
