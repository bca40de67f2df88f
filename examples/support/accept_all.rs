//! The verifier the benchmarks use: it accepts any block as paying exactly what is expected, so
//! what they measure is the layer and its store, not a node.

use async_trait::async_trait;
use nanosession::nano::{Address, BlockHash, PublicKey};
use nanosession::verify::{Confirmation, Expected, PaymentVerifier, Rejection, VerifiedBlock};

/// Accepts every block (never use outside a benchmark).
pub struct AcceptAll;

#[async_trait]
impl PaymentVerifier for AcceptAll {
    async fn verify(&self, hash: &BlockHash, expected: &Expected) -> Result<VerifiedBlock, Rejection> {
        Ok(VerifiedBlock {
            hash: *hash,
            payer: Address::from(PublicKey::from_bytes([1; 32])),
            amount: expected.amount,
            first_seen: expected.not_before,
            confirmation: Confirmation::AlreadyConfirmed,
        })
    }
}
