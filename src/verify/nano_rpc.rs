//! [`NanoRpcVerifier`]: the payment checks of reference §10 / protocol §5 over node RPC.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Confirmation, Expected, PaymentVerifier, Rejection, VerifiedBlock};
use crate::nano::{Address, BlockHash, Raw, StateBlock};
use crate::rpc::{BlockInfo, ContentsError, NanoRpcClient, RpcError};

const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long the poll at the deadline may take to answer.
const POLL_GRACE: Duration = Duration::from_secs(1);
/// The longest a detached `block_confirm` may run.
const BLOCK_CONFIRM_BOUND: Duration = Duration::from_secs(10);

/// Verifies payments with `block_info` (and `block_confirm`) through a [`NanoRpcClient`].
///
/// Checks, in order: the block exists; it is a state send; its `link` is the merchant's key;
/// it moves exactly the expected amount; the node first saw it no earlier than
/// [`Expected::not_before`]; (by default) its contents hash to the requested hash and carry a
/// valid signature; it is confirmed, possibly after asking the node to confirm it and polling
/// for up to [`Expected::confirm_wait`]. Proof of work is deliberately not checked: historic
/// blocks carry lower work than today's thresholds, and the node checked it on arrival.
///
/// Must run inside a Tokio runtime: `block_confirm` is sent from a spawned task so it reaches
/// the node even when the wait is cut short.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use nanosession::rpc::NanoRpcClient;
/// use nanosession::verify::NanoRpcVerifier;
///
/// let client = NanoRpcClient::new(["http://127.0.0.1:7076/"])?;
/// let verifier = NanoRpcVerifier::builder(client)
///     .poll_interval(std::time::Duration::from_millis(200))
///     .build();
/// # let _ = verifier; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct NanoRpcVerifier {
    client: NanoRpcClient,
    check_block_integrity: bool,
    poll_interval: Duration,
}

/// Builds a [`NanoRpcVerifier`]; see [`NanoRpcVerifier::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct NanoRpcVerifierBuilder {
    client: NanoRpcClient,
    check_block_integrity: bool,
    poll_interval: Duration,
}

impl NanoRpcVerifierBuilder {
    /// Recompute the block hash from `contents` and verify the signature, so a lying or broken
    /// RPC proxy cannot fabricate a payment (default `true`).
    pub fn check_block_integrity(mut self, on: bool) -> Self {
        self.check_block_integrity = on;
        self
    }

    /// Pause between `block_info` polls while waiting for confirmation (default 250 ms,
    /// at least 1 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Builds the verifier.
    pub fn build(self) -> NanoRpcVerifier {
        NanoRpcVerifier {
            client: self.client,
            check_block_integrity: self.check_block_integrity,
            poll_interval: self.poll_interval,
        }
    }
}

impl NanoRpcVerifier {
    /// Starts a builder over `client`.
    pub fn builder(client: NanoRpcClient) -> NanoRpcVerifierBuilder {
        NanoRpcVerifierBuilder { client, check_block_integrity: true, poll_interval: DEFAULT_POLL_INTERVAL }
    }

    /// A verifier over `client` with default options.
    pub fn new(client: NanoRpcClient) -> Self {
        Self::builder(client).build()
    }

    /// The underlying RPC client.
    pub fn client(&self) -> &NanoRpcClient {
        &self.client
    }

    /// The amount the block moved: the node's `amount`, or, when absent, the previous block's
    /// balance minus this block's. Never guessed: the previous block must be a state block and,
    /// with integrity checking, must hash to this block's `previous`.
    async fn amount(&self, info: &BlockInfo, block: &StateBlock) -> Result<Raw, Rejection> {
        if let Some(amount) = info.amount {
            return Ok(amount);
        }
        if block.previous.is_zero() {
            // An open block receives; it cannot be a send.
            return Err(Rejection::InvalidBlock("a send block without a previous block"));
        }
        let cannot = |why: &str| {
            Rejection::Unavailable(format!("amount absent and previous block {}: {why}", block.previous))
        };
        let prev = match self.client.block_info(&block.previous).await {
            Ok(Some(prev)) => prev,
            Ok(None) => return Err(cannot("unknown to the node (pruned?)")),
            Err(e) => return Err(unavailable(e)),
        };
        if prev.contents.block_type.as_deref() != Some("state") {
            // A legacy block's balance is hex and hashes differently: do not guess.
            return Err(cannot("not a state block"));
        }
        let prev_block = prev.contents.to_state_block().map_err(|_| cannot("unreadable contents"))?;
        if self.check_block_integrity && prev_block.hash() != block.previous {
            return Err(Rejection::InvalidBlock("the previous block's contents do not hash to its hash"));
        }
        prev_block
            .balance
            .checked_sub(block.balance)
            .filter(|a| *a != Raw::ZERO)
            .ok_or(Rejection::InvalidBlock("a send block whose balance did not decrease"))
    }

    /// Waits for confirmation: starts `block_confirm`, then polls `block_info` every poll
    /// interval until `wait` has passed. At least one poll always happens, the last one at the
    /// deadline (allowed [`POLL_GRACE`] to answer), so a short wait still sees a fast node.
    async fn await_confirmation(&self, hash: &BlockHash, wait: Duration) -> Result<Duration, Rejection> {
        let start = Instant::now();
        let deadline = start.checked_add(wait).unwrap_or_else(|| start + Duration::from_secs(3600));
        // Detached, so the request reaches the node even when `wait` is shorter than the call
        // (a later retry then finds the block confirmed); bounded, so it cannot pile up.
        let (client, target) = (self.client.clone(), *hash);
        tokio::spawn(async move {
            match tokio::time::timeout(BLOCK_CONFIRM_BOUND, client.block_confirm(&target)).await {
                Ok(Ok(_)) => {}
                // Not fatal: the block may still confirm by itself; the polls decide.
                Ok(Err(e)) => tracing::warn!(block = %target, error = %e, "block_confirm failed"),
                Err(_) => tracing::warn!(block = %target, "block_confirm timed out"),
            }
        });
        let mut answered = false;
        loop {
            tokio::time::sleep_until((Instant::now() + self.poll_interval).min(deadline)).await;
            match tokio::time::timeout_at(deadline + POLL_GRACE, self.client.block_info(hash)).await {
                Ok(Ok(Some(info))) if info.confirmed => return Ok(start.elapsed()),
                Ok(Ok(_)) => answered = true,
                Ok(Err(e)) => tracing::debug!(block = %hash, error = %e, "confirmation poll failed"),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        // A node that never answered while we waited is an outage, not an unconfirmed block.
        Err(if answered {
            Rejection::NotConfirmed
        } else {
            Rejection::Unavailable("no node answered while waiting for confirmation".into())
        })
    }
}

fn invalid(e: ContentsError) -> Rejection {
    Rejection::InvalidBlock(e.0)
}

fn unavailable(e: RpcError) -> Rejection {
    Rejection::Unavailable(e.to_string())
}

#[async_trait]
impl PaymentVerifier for NanoRpcVerifier {
    async fn verify(&self, hash: &BlockHash, expected: &Expected) -> Result<VerifiedBlock, Rejection> {
        let info = match self.client.block_info(hash).await {
            Ok(Some(info)) => info,
            Ok(None) => return Err(Rejection::NotFound),
            // Any other node error ("Invalid block hash", ...) says nothing final about the block.
            Err(e) => return Err(unavailable(e)),
        };
        let contents = &info.contents;

        // `subtype` is top-level in `block_info`; `contents` carries it only in WebSocket messages.
        if contents.block_type.as_deref() != Some("state") || info.subtype.as_deref() != Some("send") {
            return Err(Rejection::WrongBlockType);
        }
        let block = contents.to_state_block().map_err(invalid)?;

        // Key bytes, not address strings: `link_as_account` is cosmetic and may disagree.
        if block.link != *expected.pay_to.public_key().as_bytes() {
            return Err(Rejection::WrongDestination);
        }

        let amount = self.amount(&info, &block).await?;
        if amount != expected.amount {
            return Err(Rejection::WrongAmount);
        }

        let first_seen =
            info.local_timestamp.ok_or(Rejection::InvalidBlock("the node reply lacks local_timestamp"))?;
        if first_seen == 0 || first_seen < expected.not_before {
            return Err(Rejection::TooOld);
        }

        if self.check_block_integrity {
            if block.hash() != *hash {
                return Err(Rejection::InvalidBlock("the contents do not hash to the requested block hash"));
            }
            if !block.verify_signature() {
                return Err(Rejection::InvalidBlock("the block signature does not verify"));
            }
        }
        let payer = Address::from(block.account);

        let confirmation = if info.confirmed {
            Confirmation::AlreadyConfirmed
        } else {
            Confirmation::ConfirmedAfterWait(self.await_confirmation(hash, expected.confirm_wait).await?)
        };

        Ok(VerifiedBlock { hash: *hash, payer, amount, first_seen, confirmation })
    }
}
