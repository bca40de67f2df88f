//! The metrics this crate emits through the [`metrics`] facade, in one catalog.
//!
//! Nothing is recorded until the application installs a recorder (for example
//! `metrics-exporter-prometheus`, as `examples/server.rs` does for `/metrics`); without one every
//! call below is a no-op. Labels are closed sets (reason codes, backend and operation names,
//! RPC actions, redacted endpoints): never a session id, block hash, account or credential.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`CHALLENGES`] | counter | |
//! | [`CHALLENGE_FAILURES`] | counter | `reason` |
//! | [`GRANTS`] | counter | `confirmation` (`node`, `watched`, `after_response`) |
//! | [`REFUSALS`] | counter | `reason` |
//! | [`VERIFY_SECONDS`] | histogram | |
//! | [`RPC_REQUESTS`] | counter | `endpoint`, `action` |
//! | [`RPC_FAILURES`] | counter | `endpoint`, `action` |
//! | [`RPC_SECONDS`] | histogram | `action` |
//! | [`STORE_SECONDS`] | histogram | `backend`, `op` |
//! | [`STORE_ERRORS`] | counter | `backend`, `op` |
//! | [`PENDING_SESSIONS`] | gauge | `backend` |
//! | [`SPENT_ENTRIES`] | gauge | `backend` |
//! | [`WATCHER_MATCHES`] | counter | |

use std::time::Duration;

/// 402 challenges issued (sessions stored).
pub const CHALLENGES: &str = "nanosession_challenges_total";
/// 402s that could not be issued (store full or down, no free tag, per-client bound): the
/// client got a 503 or 429 instead of a challenge.
pub const CHALLENGE_FAILURES: &str = "nanosession_challenge_failures_total";
/// Paid requests let through to the service.
pub const GRANTS: &str = "nanosession_grants_total";
/// Refusals, by reason code (spec §7), including failed 402s.
pub const REFUSALS: &str = "nanosession_refusals_total";
/// Time in the payment verifier per paid retry, in seconds.
pub const VERIFY_SECONDS: &str = "nanosession_verify_seconds";
/// Node RPC attempts, by redacted endpoint (`scheme://host:port/`) and action.
pub const RPC_REQUESTS: &str = "nanosession_rpc_requests_total";
/// Node RPC attempts that failed (transport, timeout, HTTP status, unusable reply).
pub const RPC_FAILURES: &str = "nanosession_rpc_failures_total";
/// Node RPC calls (all attempts and back-off together), in seconds.
pub const RPC_SECONDS: &str = "nanosession_rpc_seconds";
/// Store operations as the layer awaits them, in seconds.
pub const STORE_SECONDS: &str = "nanosession_store_seconds";
/// Store operations that failed (the layer answered 503 or retried).
pub const STORE_ERRORS: &str = "nanosession_store_errors_total";
/// Pending sessions in the session store (sampled at most every few seconds).
pub const PENDING_SESSIONS: &str = "nanosession_pending_sessions";
/// Entries in the spent set (sampled at most every few seconds).
pub const SPENT_ENTRIES: &str = "nanosession_spent_entries";
/// Confirmed sends the confirmation watcher matched to a pending session.
pub const WATCHER_MATCHES: &str = "nanosession_watcher_matches_total";

/// One store operation's latency and, if it failed, its error.
pub(crate) fn store_op(backend: &'static str, op: &'static str, took: Duration, failed: bool) {
    metrics::histogram!(STORE_SECONDS, "backend" => backend, "op" => op).record(took.as_secs_f64());
    if failed {
        metrics::counter!(STORE_ERRORS, "backend" => backend, "op" => op).increment(1);
    }
}

/// A sampled store size: `gauge` is [`PENDING_SESSIONS`] or [`SPENT_ENTRIES`].
pub(crate) fn store_size(gauge: &'static str, backend: &'static str, size: Option<u64>) {
    if let Some(n) = size {
        metrics::gauge!(gauge, "backend" => backend).set(n as f64);
    }
}
