use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::protocol::Reason;

/// Counters a deployment should watch (spec §8), shared by every clone of one layer.
#[derive(Debug, Default)]
pub struct Metrics {
    challenges: AtomicU64,
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
    /// Paid requests let through.
    pub grants: u64,
    /// Replays refused (`already_spent`).
    pub replays: u64,
    /// Refusals per reason code.
    pub refusals: Vec<(&'static str, u64)>,
    /// Calls to the verifier.
    pub verifications: u64,
    /// Total time spent in the verifier, in microseconds.
    pub verify_micros: u64,
}

impl Metrics {
    pub(crate) fn challenge(&self) {
        self.challenges.fetch_add(1, Relaxed);
    }
    pub(crate) fn grant(&self) {
        self.grants.fetch_add(1, Relaxed);
    }
    pub(crate) fn refusal(&self, reason: Reason) {
        self.refusals[reason.index()].fetch_add(1, Relaxed);
    }
    pub(crate) fn verification(&self, took: std::time::Duration) {
        self.verifications.fetch_add(1, Relaxed);
        self.verify_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let refusals: Vec<_> =
            Reason::ALL.iter().zip(&self.refusals).map(|(r, c)| (r.code(), c.load(Relaxed))).collect();
        MetricsSnapshot {
            challenges: self.challenges.load(Relaxed),
            grants: self.grants.load(Relaxed),
            replays: refusals.iter().find(|(c, _)| *c == "already_spent").map_or(0, |x| x.1),
            refusals,
            verifications: self.verifications.load(Relaxed),
            verify_micros: self.verify_micros.load(Relaxed),
        }
    }
}
