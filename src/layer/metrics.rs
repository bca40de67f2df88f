use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::protocol::Reason;
use crate::telemetry;
use crate::verify::Confirmation;

/// Counters a deployment should watch (spec §8), shared by every clone of one layer.
///
/// Every event is also emitted through the [`metrics`] facade under the names of
/// [`telemetry`](crate::telemetry), for whatever recorder the application installed; this
/// per-layer copy is what [`snapshot`](Metrics::snapshot) reads (tests, health pages).
#[derive(Debug, Default)]
pub struct Metrics {
    challenges: AtomicU64,
    challenge_failures: AtomicU64,
    grants: AtomicU64,
    refusals: [AtomicU64; crate::protocol::Reason::ALL.len()],
    verifications: AtomicU64,
    verify_micros: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// 402 challenges issued (sessions created).
    pub challenges: u64,
    /// 402s that could not be issued (store full or down, no free tag, per-client bound).
    pub challenge_failures: u64,
    /// Paid requests let through.
    pub grants: u64,
    /// Replays refused (`already_spent`).
    pub replays: u64,
    /// Refusals per reason code (failed 402s included).
    pub refusals: Vec<(&'static str, u64)>,
    /// Calls to the verifier.
    pub verifications: u64,
    /// Total time spent in the verifier, in microseconds.
    pub verify_micros: u64,
}

impl Metrics {
    pub(crate) fn challenge(&self) {
        self.challenges.fetch_add(1, Relaxed);
        metrics::counter!(telemetry::CHALLENGES).increment(1);
    }
    /// A 402 that could not be issued; also counted as a refusal for `reason`.
    pub(crate) fn challenge_failed(&self, reason: Reason) {
        self.challenge_failures.fetch_add(1, Relaxed);
        metrics::counter!(telemetry::CHALLENGE_FAILURES, "reason" => reason.code()).increment(1);
        self.refusal(reason);
    }
    pub(crate) fn grant(&self, confirmation: Confirmation) {
        self.grants.fetch_add(1, Relaxed);
        let how = match confirmation {
            Confirmation::AlreadyConfirmed | Confirmation::ConfirmedAfterWait(_) => "node",
            Confirmation::Watched => "watched",
            Confirmation::AfterResponse => "after_response",
        };
        metrics::counter!(telemetry::GRANTS, "confirmation" => how).increment(1);
    }
    pub(crate) fn refusal(&self, reason: Reason) {
        self.refusals[reason.index()].fetch_add(1, Relaxed);
        metrics::counter!(telemetry::REFUSALS, "reason" => reason.code()).increment(1);
    }
    pub(crate) fn verification(&self, took: std::time::Duration) {
        self.verifications.fetch_add(1, Relaxed);
        self.verify_micros.fetch_add(took.as_micros() as u64, Relaxed);
        metrics::histogram!(telemetry::VERIFY_SECONDS).record(took.as_secs_f64());
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let refusals: Vec<_> =
            Reason::ALL.iter().zip(&self.refusals).map(|(r, c)| (r.code(), c.load(Relaxed))).collect();
        MetricsSnapshot {
            challenges: self.challenges.load(Relaxed),
            challenge_failures: self.challenge_failures.load(Relaxed),
            grants: self.grants.load(Relaxed),
            replays: refusals.iter().find(|(c, _)| *c == "already_spent").map_or(0, |x| x.1),
            refusals,
            verifications: self.verifications.load(Relaxed),
            verify_micros: self.verify_micros.load(Relaxed),
        }
    }
}
