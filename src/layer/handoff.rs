//! A paid retry that hands over a signed block (spec §9), top to bottom:
//!
//! 1. [`pay_handoff`](Gate::pay_handoff): find the session (by the echoed id, or by amount),
//!    refuse a spent or foreign block, check expiry and the per-session bound, then the local
//!    checks (signature, destination, work), all before any node I/O.
//! 2. Claim the block for the session with the fork and session locks (shared by every
//!    instance), then [`attempt`](Gate::attempt): `account_info` and the balance arithmetic,
//!    publish, wait for confirmation (through the layer's verifier), consume the session. A
//!    resumed claim (after a 503 or `block_not_confirmed`) whose account moved past
//!    `previous` skips both: the block is looked up, never re-published.
//! 3. End the attempt in the store as it ended: refused before publishing (claim and locks go,
//!    the payer's block was never seen), kept (published or maybe published: the retry
//!    resumes), or granted.
//!
//! With [`Settlement::AfterSuccess`] the wrapped service is called between the ledger checks
//! and publishing, and its response is held until the block is confirmed.

use http::{Request, Response};
use tower_service::Service;

use super::body::RefusalBody;
use super::builder::{HandoffConfig, Settlement};
use super::service::{rejection_reason, store_down, Gate, PaidRequest};
use crate::payment::VerifiedPayment;
use crate::protocol::{Handoff, Reason, SessionRef};
use crate::session::unix_now;
use crate::store::{Claim, HandoffClaim, HandoffRelease, StoredSession, SESSION_GRACE_SECS};
use crate::verify::handoff::{check_ledger, verify_local, HandoffExpected, NodeError};
use crate::verify::{Confirmation, Rejection};

/// The most one attempt holds its lease: a crashed instance's lease lapses after this, and a
/// concurrent submission of the same block then proceeds (publishing is idempotent and the
/// session is taken once, so the worst case is a second `process`).
const ATTEMPT_LEASE_SECS: u64 = 90;

/// How an attempt ended short of a grant: the reason, and what becomes of the claim.
struct Stop<E, B> {
    outcome: Outcome<E, B>,
    release: HandoffRelease,
}

enum Outcome<E, B> {
    Refused(Reason),
    /// The wrapped service failed to become ready or to answer.
    Service(E),
    /// `AfterSuccess`: the service answered with a failure, returned as it is (no payment).
    Unpaid(Response<B>),
}

impl<E, B> Stop<E, B> {
    fn refused(reason: Reason, release: HandoffRelease) -> Self {
        Stop { outcome: Outcome::Refused(reason), release }
    }
}

/// What a granted attempt hands back: the payment, and under `AfterSuccess` the held response.
struct Granted<B> {
    payment: VerifiedPayment,
    response: Option<Response<B>>,
}

impl<M> Gate<M> {
    /// A paid retry with a handed-over block: settle it, then answer (or refuse).
    pub(super) async fn pay_handoff<S, ReqBody, B>(
        self,
        handoff: Handoff,
        ctx: PaidRequest,
        req: Request<ReqBody>,
        mut inner: S,
    ) -> Result<Response<B>, S::Error>
    where
        S: Service<Request<ReqBody>, Response = Response<B>>,
        M: RefusalBody<B>,
    {
        let hash = handoff.block.hash();
        let (session, claim) = match self.handoff_claim(&handoff, &ctx).await {
            Ok(found) => found,
            Err(reason) => {
                tracing::info!(block = %hash, reason = reason.code(), "hand-off refused before publishing");
                return Ok(self.refuse(reason, &hash, &ctx).await);
            }
        };
        let resume = claim == Claim::Reentered;
        let lock = self.lock_of(&handoff, &session);
        let mut req = Some(req);
        let result = self.attempt(&handoff, &session, resume, &mut req, &mut inner).await;
        let release = match &result {
            Ok(_) => HandoffRelease::Granted,
            Err(stop) => stop.release,
        };
        if let Err(error) = self.shared.spent.release_handoff(&lock, release).await {
            // Locks and leases lapse by themselves; a failed release only delays a retry.
            tracing::warn!(block = %hash, %error, "could not end a hand-off attempt in the store");
        }
        match result {
            Ok(Granted { payment, response }) => {
                tracing::info!(block = %payment.block, payer = %payment.payer, amount = %payment.amount, "hand-off settled");
                let response = match response {
                    Some(response) => response,
                    None => {
                        let mut req = req.take().expect("the request is used once");
                        req.extensions_mut().insert(payment.clone());
                        inner.call(req).await?
                    }
                };
                Ok(self.granted(response, &payment))
            }
            Err(Stop { outcome: Outcome::Refused(reason), release }) => {
                tracing::info!(block = %hash, reason = reason.code(), ?release, "hand-off not settled");
                Ok(self.refuse(reason, &hash, &ctx).await)
            }
            Err(Stop { outcome: Outcome::Service(error), .. }) => Err(error),
            Err(Stop { outcome: Outcome::Unpaid(response), .. }) => Ok(response),
        }
    }

    /// §9 steps 2–7: everything before the node, ending with the claim.
    async fn handoff_claim(
        &self,
        handoff: &Handoff,
        ctx: &PaidRequest,
    ) -> Result<(StoredSession, Claim), Reason> {
        let s = &*self.shared;
        let config = s.handoff.as_ref().expect("hand-offs are parsed only when enabled");
        let hash = handoff.block.hash();
        let now = unix_now();
        let pay_to = s.challenge.pay_to();
        let lookup = async {
            match handoff.session {
                SessionRef::Id(id) => s.sessions.get_by_key(&id.key()).await,
                // Sessions within their grace still hold their amount (a resumed hand-off).
                SessionRef::Amount(amount) => {
                    s.sessions.find_by_amount(&pay_to, amount, now.saturating_sub(SESSION_GRACE_SECS)).await
                }
            }
        };
        let (session, owner) = futures_util::future::join(lookup, s.spent.owner(&hash)).await;
        let (session, owner) = (session.map_err(store_down)?, owner.map_err(store_down)?);
        // As for published blocks: a session of a lower price does not exist for this route.
        let Some(session) = session.filter(|x| x.price >= ctx.price && x.pay_to == pay_to) else {
            return Err(match (handoff.session, owner) {
                (SessionRef::Id(id), Some(owner)) if owner == id.key() => Reason::AlreadyGranted,
                // A claimed block pays nothing else, whoever asks.
                (_, Some(_)) => Reason::AlreadySpent,
                (_, None) => Reason::UnknownSession,
            });
        };
        let mine = owner == Some(session.key);
        if owner.is_some() && !mine {
            return Err(Reason::AlreadySpent);
        }
        if !mine && session.is_expired(now) {
            return Err(Reason::SessionExpired);
        }
        if !s.per_session.hit(session.key) {
            return Err(Reason::RateLimited);
        }
        let expected = self.handoff_expected(config, &session);
        verify_local(&handoff.block, &expected).map_err(|r| r.reason())?;
        let claim = s.spent.claim_handoff(&self.lock_of(handoff, &session), now).await.map_err(store_down)?;
        match claim {
            Claim::New | Claim::Reentered => Ok((session, claim)),
            Claim::Spent => Err(Reason::AlreadySpent),
            Claim::InFlight => Err(Reason::PaymentInFlight),
        }
    }

    /// §9 steps 8–10 and the consumption, or where and how they stopped.
    async fn attempt<S, ReqBody, B>(
        &self,
        handoff: &Handoff,
        session: &StoredSession,
        resume: bool,
        req: &mut Option<Request<ReqBody>>,
        inner: &mut S,
    ) -> Result<Granted<B>, Stop<S::Error, B>>
    where
        S: Service<Request<ReqBody>, Response = Response<B>>,
    {
        let s = &*self.shared;
        let config = s.handoff.as_ref().expect("hand-offs are parsed only when enabled");
        let block = &handoff.block.block;
        let hash = handoff.block.hash();
        // Before publishing, a refusal frees the claim; once this block may have been
        // published (a resumed claim included), nothing is ever released.
        let before = if resume { HandoffRelease::Kept } else { HandoffRelease::Refused };
        let expected = self.handoff_expected(config, session);

        // 8. The ledger: the account must still be at `previous`, and the balance must drop by
        //    exactly the stored amount. A resumed claim whose account moved on may have landed
        //    already: it goes on to `process`, where `Old block` means it did.
        let state = match config.publisher.account_state(&block.account.into()).await {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(block = %hash, %error, "account_info failed");
                return Err(Stop::refused(Reason::VerifierUnavailable, before));
            }
        };
        // A resumed block whose account moved on is on the ledger or never will be: not
        // published again (a node refuses a repeated send against the new balance), only looked
        // up by the confirmation step.
        let moved_on = resume && state.is_some_and(|a| a.frontier != block.previous);
        if !moved_on {
            check_ledger(&handoff.block, state.as_ref(), &expected)
                .map_err(|r| Stop::refused(r.reason(), before))?;
        }

        let mut payment = VerifiedPayment {
            block: hash,
            payer: block.account.into(),
            amount: session.amount,
            price: session.price,
            tag: session.tag,
            session: session.key,
            confirmation: Confirmation::AfterResponse,
        };
        let mut held = None;
        if config.settlement == Settlement::AfterSuccess {
            std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(|e| Stop { outcome: Outcome::Service(e), release: before })?;
            let mut req = req.take().expect("the request is used once");
            req.extensions_mut().insert(payment.clone());
            let response =
                inner.call(req).await.map_err(|e| Stop { outcome: Outcome::Service(e), release: before })?;
            if !response.status().is_success() {
                tracing::info!(block = %hash, status = %response.status(), "the service failed; nothing published");
                return Err(Stop { outcome: Outcome::Unpaid(response), release: before });
            }
            held = Some(response);
        }

        // A first publication only while the session is pending: its confirmation then ends
        // within the grace the session is kept for (checked at build time).
        if !resume && session.is_expired(unix_now()) {
            return Err(Stop::refused(Reason::SessionExpired, HandoffRelease::Refused));
        }
        // 9. Publish.
        match if moved_on { Ok(()) } else { config.publisher.publish(block).await } {
            Ok(()) => {}
            Err(NodeError::Refused(rejection)) => {
                tracing::info!(block = %hash, %rejection, "the node refused the block");
                return Err(Stop::refused(rejection.reason(), before));
            }
            Err(NodeError::Unavailable(error)) => {
                // The block may have landed: the claim stays for the retry.
                tracing::warn!(block = %hash, %error, "process got no answer");
                return Err(Stop::refused(Reason::VerifierUnavailable, HandoffRelease::Kept));
            }
        }

        // 10. Confirmation, by the layer's verifier: confirmed, destination, and the amount
        //     as the node derives it, all checked again on the ledger's own copy.
        let kept = |reason| Stop::refused(reason, HandoffRelease::Kept);
        let verified = self.verify(&hash, session, true).await;
        let verified = match verified {
            Ok(verified) if verified.hash == hash && verified.amount == session.amount => verified,
            Ok(_) => return Err(kept(Reason::InvalidBlock)),
            // The account moved on without this block: another one took its place.
            Err(Rejection::NotFound) if moved_on => return Err(kept(Reason::FrontierMismatch)),
            // Just published: a node that does not show it yet has not caught up.
            Err(Rejection::NotFound) => return Err(kept(Reason::BlockNotConfirmed)),
            Err(rejection) => return Err(kept(rejection_reason(rejection))),
        };
        if held.is_none() {
            payment.confirmation = verified.confirmation;
            // The service must be ready before the session is consumed, as for published blocks.
            std::future::poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(|e| Stop { outcome: Outcome::Service(e), release: HandoffRelease::Kept })?;
        }

        // Consume: the block is on the ledger and confirmed; the session is taken once.
        match s.sessions.take_by_key(&session.key).await {
            Ok(Some(_)) => Ok(Granted { payment, response: held }),
            // Consumed meanwhile: by a resumed attempt of this block, or by another block.
            Ok(None) if resume => Err(Stop::refused(Reason::AlreadyGranted, HandoffRelease::Granted)),
            Ok(None) => Err(Stop::refused(Reason::SessionUsed, HandoffRelease::Granted)),
            Err(error) => Err(kept(store_down(error))),
        }
    }

    fn handoff_expected(&self, config: &HandoffConfig, session: &StoredSession) -> HandoffExpected {
        HandoffExpected {
            pay_to: session.pay_to,
            amount: session.amount,
            work_threshold: config.work_threshold,
        }
    }

    /// The claim and locks of `handoff` for `session`.
    fn lock_of(&self, handoff: &Handoff, session: &StoredSession) -> HandoffClaim {
        let now = unix_now();
        HandoffClaim {
            hash: handoff.block.hash(),
            previous: handoff.block.block.previous,
            session: session.key,
            keep_until: now.saturating_add(self.shared.retention.as_secs()),
            lock_until: session.expires_at + SESSION_GRACE_SECS,
            busy_until: now + ATTEMPT_LEASE_SECS,
        }
    }
}
