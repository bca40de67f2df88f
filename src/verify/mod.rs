//! Deciding whether a block pays a session: the [`PaymentVerifier`] trait and its Nano node
//! implementation ([`NanoRpcVerifier`]).
//!
//! A verifier knows nothing of Tower, HTTP requests or stores. The layer tells it what to
//! expect (destination, exact amount, the earliest acceptable first-seen time, how long to wait
//! for confirmation) and maps its answer to the protocol's reason codes.

use std::time::Duration;

use async_trait::async_trait;

use crate::nano::{Address, BlockHash, Raw};

pub mod handoff;
mod nano_rpc;

pub use nano_rpc::{NanoRpcVerifier, NanoRpcVerifierBuilder, VerifierConfigError};

/// What a block must satisfy to pay one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The merchant account the send must credit.
    pub pay_to: Address,
    /// The exact amount the send must move (price plus tag).
    pub amount: Raw,
    /// Unix seconds: a block the node first saw before this is refused as too old
    /// (the session's creation time minus the allowed clock skew).
    pub not_before: u64,
    /// How long to wait for an unconfirmed block to be confirmed before giving up.
    pub confirm_wait: Duration,
}

/// How the block's confirmation was established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// The node reported the block confirmed on the first look.
    AlreadyConfirmed,
    /// The block was unconfirmed; the verifier asked the node to confirm it and waited this long.
    ConfirmedAfterWait(Duration),
    /// A confirmation watcher saw the block confirmed and matched it to the session: settled
    /// without a node round trip.
    Watched,
    /// A handed-over block under
    /// [`Settlement::AfterSuccess`](crate::layer::Settlement::AfterSuccess): checked and
    /// claimed, published only once the service answers with a success; its response is
    /// released only when the block is confirmed.
    AfterResponse,
}

/// A block that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBlock {
    /// The block hash, normalised.
    pub hash: BlockHash,
    /// The account that sent the payment.
    pub payer: Address,
    /// The amount the block moved (equal to [`Expected::amount`]).
    pub amount: Raw,
    /// The node's `local_timestamp` for the block (Unix seconds).
    pub first_seen: u64,
    /// How confirmation was established.
    pub confirmation: Confirmation,
}

/// Why a block does not pay the session. Each variant is one reason code of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The node does not know the block (`block_not_found`).
    #[error("the node does not know this block")]
    NotFound,
    /// The block is not (yet) confirmed (`block_not_confirmed`).
    #[error("the block is not confirmed yet")]
    NotConfirmed,
    /// Not a state block with subtype send (`wrong_block_type`).
    #[error("the block is not a state send block")]
    WrongBlockType,
    /// The send credits another account (`wrong_destination`).
    #[error("the block pays another account")]
    WrongDestination,
    /// The send moves a different amount (`wrong_amount`).
    #[error("the block moves a different amount")]
    WrongAmount,
    /// The node first saw the block before the session existed (`block_too_old`).
    #[error("the block predates the session")]
    TooOld,
    /// The node's answer is inconsistent: hash or signature do not check out (`invalid_block`).
    #[error("the block does not verify: {0}")]
    InvalidBlock(&'static str),
    /// No node could answer (`verifier_unavailable`). The text is safe to log (no credentials).
    #[error("no node could be reached: {0}")]
    Unavailable(String),
}

/// Checks a block against what a session expects.
///
/// Implementations must be definite: return a grant-worthy [`VerifiedBlock`] only for a
/// confirmed send that meets every field of [`Expected`], and [`Rejection::Unavailable`] (never
/// a rejection that looks final) when the source of truth cannot be reached.
#[async_trait]
pub trait PaymentVerifier: Send + Sync + 'static {
    /// Verifies that block `hash` pays `expected`.
    async fn verify(&self, hash: &BlockHash, expected: &Expected) -> Result<VerifiedBlock, Rejection>;

    /// The longest one [`verify`](Self::verify) can take when `expected.confirm_wait` is
    /// `confirm_wait`, or `None` when the verifier cannot say (the default).
    ///
    /// A session is kept only a short grace past its expiry, so a verification that outlasts
    /// it could find its session gone; the layer uses this bound to refuse such a
    /// configuration when it is built.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nanosession::rpc::NanoRpcClient;
    /// use nanosession::verify::{NanoRpcVerifier, PaymentVerifier};
    ///
    /// let verifier = NanoRpcVerifier::new(NanoRpcClient::new(["http://127.0.0.1:7076/"])?);
    /// let bound = verifier.max_duration(Duration::from_secs(3)).unwrap();
    /// assert!(bound < Duration::from_secs(50));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn max_duration(&self, confirm_wait: Duration) -> Option<Duration> {
        let _ = confirm_wait;
        None
    }
}
