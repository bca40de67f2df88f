//! A client for the Nano node RPC: ordered endpoints, per-request timeouts, failover and
//! cool-down, credential-safe logging, and lenient parsing of what real nodes send.
//!
//! The client knows nothing of payments; [`crate::verify::NanoRpcVerifier`] builds the payment
//! checks on top of it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use nanosession::rpc::NanoRpcClient;
//!
//! let client = NanoRpcClient::builder()
//!     .endpoint("http://127.0.0.1:7076/")
//!     .endpoint("https://user:secret@rpc.example.com/?key=abc")
//!     .timeout(Duration::from_secs(3))
//!     .build()?;
//! let hash = "87434F8041869A01C8F6F263B87972D7BA443A72E0A97D7A3FD0CCC2358FD6F9".parse()?;
//! match client.block_info(&hash).await? {
//!     Some(info) => println!("confirmed: {}", info.confirmed),
//!     None => println!("unknown block"),
//! }
//! # Ok(()) }
//! ```

mod client;
mod types;

pub use client::{NanoRpcClient, NanoRpcClientBuilder, RpcConfigError, RpcError};
pub use types::{
    block_json, lenient, AccountInfo, BlockConfirmReply, BlockContents, BlockInfo, ConfirmationNotification,
    ContentsError,
};
