//! [`NanoRpcVerifier`]: the payment checks of reference §10 / protocol §5 over node RPC.

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Confirmation, Expected, PaymentVerifier, Rejection, VerifiedBlock};
use crate::nano::{BlockHash, Raw};
use crate::rpc::{BlockInfo, ContentsError, NanoRpcClient, RpcError};

const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);

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
    /// balance minus this block's. Never guessed.
    async fn amount(&self, info: &BlockInfo) -> Result<Raw, Rejection> {
        if let Some(amount) = info.amount {
            return Ok(amount);
        }
        let balance = info.contents.balance_raw().map_err(invalid)?;
        let previous = info.contents.previous_hash().map_err(invalid)?;
        if previous.is_zero() {
            // An open block receives; it cannot be a send.
            return Err(Rejection::InvalidBlock("a send block without a previous block"));
        }
        let prev = match self.client.block_info(&previous).await {
            Ok(Some(prev)) => prev,
            Ok(None) => {
                return Err(Rejection::Unavailable(format!(
                    "amount absent and previous block {previous} unknown to the node (pruned?)"
                )))
            }
            Err(e) => return Err(unavailable(e)),
        };
        let prev_balance = match prev.balance {
            Some(b) => b,
            None => prev.contents.balance_raw().map_err(|_| {
                Rejection::Unavailable(format!(
                    "amount absent and previous block {previous} has no readable balance"
                ))
            })?,
        };
        prev_balance
            .checked_sub(balance)
            .filter(|a| *a != Raw::ZERO)
            .ok_or(Rejection::InvalidBlock("a send block whose balance did not decrease"))
    }

    /// Waits for confirmation: starts `block_confirm`, then polls `block_info` every poll
    /// interval, all bounded by `wait`.
    async fn await_confirmation(&self, hash: &BlockHash, wait: Duration) -> Result<Duration, Rejection> {
        let start = Instant::now();
        let deadline = start + wait;
        // Detached, so the request reaches the node even when `wait` is shorter than the
        // call (a later retry then finds the block confirmed) and polling starts at once.
        let (client, target) = (self.client.clone(), *hash);
        tokio::spawn(async move {
            if let Err(e) = client.block_confirm(&target).await {
                // Not fatal: the block may still confirm by itself; the polls decide.
                tracing::warn!(block = %target, error = %e, "block_confirm failed");
            }
        });
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Rejection::NotConfirmed);
            }
            tokio::time::sleep_until((now + self.poll_interval).min(deadline)).await;
            match tokio::time::timeout_at(deadline, self.client.block_info(hash)).await {
                Ok(Ok(Some(info))) if info.confirmed => return Ok(start.elapsed()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(block = %hash, error = %e, "confirmation poll failed");
                }
                Err(_) => return Err(Rejection::NotConfirmed),
            }
        }
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

        if contents.block_type.as_deref() != Some("state") || info.subtype() != Some("send") {
            return Err(Rejection::WrongBlockType);
        }

        let link = contents.link_bytes().map_err(invalid)?;
        if link != *expected.pay_to.public_key().as_bytes() {
            return Err(Rejection::WrongDestination);
        }

        let amount = self.amount(&info).await?;
        if amount != expected.amount {
            return Err(Rejection::WrongAmount);
        }

        let first_seen =
            info.local_timestamp.ok_or(Rejection::InvalidBlock("the node reply lacks local_timestamp"))?;
        if first_seen == 0 || first_seen < expected.not_before {
            return Err(Rejection::TooOld);
        }

        let payer = contents.account_address().map_err(invalid)?;
        if self.check_block_integrity {
            let block = contents.to_state_block().map_err(invalid)?;
            if block.hash() != *hash {
                return Err(Rejection::InvalidBlock("the contents do not hash to the requested block hash"));
            }
            if !block.verify_signature() {
                return Err(Rejection::InvalidBlock("the block signature does not verify"));
            }
        }

        let confirmation = if info.confirmed {
            Confirmation::AlreadyConfirmed
        } else {
            Confirmation::ConfirmedAfterWait(self.await_confirmation(hash, expected.confirm_wait).await?)
        };

        Ok(VerifiedBlock { hash: *hash, payer, amount, first_seen, confirmation })
    }
}
