#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
pub mod grpc;
pub mod layer;
#[cfg(feature = "mock-node")]
pub mod mock_node;
pub mod nano;
pub mod payment;
pub mod protocol;
pub mod rpc;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod verify;
#[cfg(feature = "watcher")]
pub mod watcher;

pub use layer::{PaymentRequired, PaymentRequiredLayer, Settlement};
pub use payment::VerifiedPayment;
pub use protocol::Reason;
