//! The Tower middleware: [`PaymentRequiredLayer`] (configuration, built and validated once),
//! [`PaymentRequired`] (the per-request flow, read top to bottom in `service.rs`),
//! [`ResponseFuture`], and the refusal body hooks.

mod body;
mod builder;
mod future;
mod metrics;
mod service;

pub use body::{EmptyBody, FnBody, JsonBody, Refusal, RefusalBody};
pub use builder::{ConfigError, PaymentRequiredLayer, PaymentRequiredLayerBuilder};
pub use future::ResponseFuture;
pub use metrics::{Metrics, MetricsSnapshot};
pub use service::PaymentRequired;
