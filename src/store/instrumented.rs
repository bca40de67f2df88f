//! Store latency and errors for the metrics catalog ([`crate::telemetry`]): the layer wraps the
//! stores it is given in these, so every backend (third-party ones too) is measured alike.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    Claim, ClaimAndTake, HandoffClaim, HandoffRelease, Insert, SessionStore, SpentSet, StoreError,
    StoredSession, WatchedPayment,
};
use crate::nano::{Address, BlockHash, Raw};
use crate::session::{Session, SessionKey};
use crate::telemetry;

/// A store measured per operation (`backend` and `op` labels).
pub(crate) struct Instrumented<T: ?Sized>(pub(crate) Arc<T>);

async fn timed<R>(
    backend: &'static str,
    op: &'static str,
    f: impl Future<Output = Result<R, StoreError>>,
) -> Result<R, StoreError> {
    let started = Instant::now();
    let result = f.await;
    telemetry::store_op(backend, op, started.elapsed(), result.is_err());
    result
}

#[async_trait]
impl SessionStore for Instrumented<dyn SessionStore> {
    async fn insert(&self, session: &Session, now: u64) -> Result<Insert, StoreError> {
        timed(self.0.backend(), "insert", self.0.insert(session, now)).await
    }
    async fn get_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        timed(self.0.backend(), "get", self.0.get_by_key(key)).await
    }
    async fn take_by_key(&self, key: &SessionKey) -> Result<Option<StoredSession>, StoreError> {
        timed(self.0.backend(), "take", self.0.take_by_key(key)).await
    }
    async fn find_by_amount(
        &self,
        pay_to: &Address,
        amount: Raw,
        now: u64,
    ) -> Result<Option<StoredSession>, StoreError> {
        timed(self.0.backend(), "find_by_amount", self.0.find_by_amount(pay_to, amount, now)).await
    }
    async fn record_payment(&self, key: &SessionKey, payment: &WatchedPayment) -> Result<bool, StoreError> {
        timed(self.0.backend(), "record_payment", self.0.record_payment(key, payment)).await
    }
    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        timed(self.0.backend(), "prune_sessions", self.0.prune(now)).await
    }
    async fn pending_count(&self) -> Result<Option<u64>, StoreError> {
        self.0.pending_count().await
    }
    fn capacity(&self) -> Option<u64> {
        self.0.capacity()
    }
    fn transaction_domain(&self) -> Option<u64> {
        self.0.transaction_domain()
    }
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
}

#[async_trait]
impl SpentSet for Instrumented<dyn SpentSet> {
    async fn owner(&self, hash: &BlockHash) -> Result<Option<SessionKey>, StoreError> {
        timed(self.0.backend(), "owner", self.0.owner(hash)).await
    }
    async fn claim_by_key(
        &self,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
    ) -> Result<Claim, StoreError> {
        timed(self.0.backend(), "claim", self.0.claim_by_key(hash, session, keep_until)).await
    }
    async fn claim_and_take(
        &self,
        sessions: &dyn SessionStore,
        hash: &BlockHash,
        session: &SessionKey,
        keep_until: u64,
    ) -> Result<ClaimAndTake, StoreError> {
        let both = self.0.claim_and_take(sessions, hash, session, keep_until);
        timed(self.0.backend(), "claim_and_take", both).await
    }
    async fn release_by_key(&self, hash: &BlockHash, session: &SessionKey) -> Result<(), StoreError> {
        timed(self.0.backend(), "release", self.0.release_by_key(hash, session)).await
    }
    async fn claim_handoff(&self, claim: &HandoffClaim, now: u64) -> Result<Claim, StoreError> {
        timed(self.0.backend(), "claim_handoff", self.0.claim_handoff(claim, now)).await
    }
    async fn release_handoff(&self, claim: &HandoffClaim, how: HandoffRelease) -> Result<(), StoreError> {
        timed(self.0.backend(), "release_handoff", self.0.release_handoff(claim, how)).await
    }
    async fn prune(&self, now: u64) -> Result<u64, StoreError> {
        timed(self.0.backend(), "prune_spent", self.0.prune(now)).await
    }
    async fn size(&self) -> Result<Option<u64>, StoreError> {
        self.0.size().await
    }
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
}
