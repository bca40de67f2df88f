//! The Tower middleware: [`PaymentRequiredLayer`] (configuration, built and validated once),
//! [`PaymentRequired`] (the per-request flow, read top to bottom in `service.rs`),
//! [`ResponseFuture`], and the refusal body hooks.

mod body;
mod builder;
pub mod client_key;
mod future;
mod handoff;
mod limit;
mod metrics;
mod path;
#[cfg(feature = "paywall")]
mod paywall;
mod service;

pub use body::{EmptyBody, FnBody, JsonBody, Refusal, RefusalBody};
pub use builder::{
    ConfigError, PaymentRequiredLayer, PaymentRequiredLayerBuilder, Settlement, DEFAULT_SPENT_RETENTION,
    DEFAULT_VERIFICATIONS_PER_SESSION, MAX_TAG_MODULUS,
};
pub use future::ResponseFuture;
pub use metrics::{Metrics, MetricsSnapshot};
pub use path::{normalize_path, Unlisted};
#[cfg(feature = "paywall")]
pub use paywall::{Paywall, PaywallPage, DEFAULT_STATUS_QUERY};
pub use service::PaymentRequired;
