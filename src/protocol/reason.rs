use http::StatusCode;

/// Every outcome of the protocol other than success, with its status and handling (spec §6).
///
/// This is the one place that maps reasons to statuses, `Retry-After`, fresh challenges and
/// gRPC codes.
///
/// ```
/// use nanosession::protocol::Reason;
/// assert_eq!(Reason::AlreadySpent.code(), "already_spent");
/// assert_eq!(Reason::StoreUnavailable.status(), http::StatusCode::SERVICE_UNAVAILABLE);
/// assert!(Reason::SessionExpired.fresh_challenge());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No proof was presented.
    PaymentRequired,
    /// The proof headers could not be parsed.
    MalformedPayment,
    /// No pending session has this id (or it was issued for another price).
    UnknownSession,
    /// The session's lifetime is over; it was deleted.
    SessionExpired,
    /// The node does not know the block (yet).
    BlockNotFound,
    /// The block is not confirmed yet.
    BlockNotConfirmed,
    /// Not a state send block.
    WrongBlockType,
    /// The send credits another account.
    WrongDestination,
    /// The send moves a different amount than the session asks.
    WrongAmount,
    /// The node saw the block before the session was created.
    BlockTooOld,
    /// The node's answer does not hash or verify.
    InvalidBlock,
    /// The block already paid for something.
    AlreadySpent,
    /// The session was consumed by a concurrent request.
    SessionUsed,
    /// No node could be reached.
    VerifierUnavailable,
    /// The session store or spent set could not be reached, or is full.
    StoreUnavailable,
    /// This session was already granted for this very block: the client must not pay again
    /// (409, with the success receipt).
    AlreadyGranted,
    /// Too many new sessions for this client, or too many verification attempts for this
    /// session, in a short time (429 + `Retry-After`).
    RateLimited,
    /// A handed-over block's proof of work is below the configured send threshold (spec §9).
    InsufficientWork,
    /// A handed-over block does not extend the account's current frontier, or the account does
    /// not exist (spec §9): it could never be published.
    FrontierMismatch,
    /// Another block on the same `previous`, or another block for the same session, is being
    /// published right now (spec §9; 402 + `Retry-After`).
    PaymentInFlight,
}

impl Reason {
    /// Every reason, in the spec's order.
    pub const ALL: [Reason; 20] = [
        Reason::PaymentRequired,
        Reason::MalformedPayment,
        Reason::UnknownSession,
        Reason::SessionExpired,
        Reason::BlockNotFound,
        Reason::BlockNotConfirmed,
        Reason::WrongBlockType,
        Reason::WrongDestination,
        Reason::WrongAmount,
        Reason::BlockTooOld,
        Reason::InvalidBlock,
        Reason::AlreadySpent,
        Reason::SessionUsed,
        Reason::VerifierUnavailable,
        Reason::StoreUnavailable,
        Reason::AlreadyGranted,
        Reason::RateLimited,
        Reason::InsufficientWork,
        Reason::FrontierMismatch,
        Reason::PaymentInFlight,
    ];

    /// The wire code (`"payment_required"`, …).
    pub const fn code(self) -> &'static str {
        match self {
            Reason::PaymentRequired => "payment_required",
            Reason::MalformedPayment => "malformed_payment",
            Reason::UnknownSession => "unknown_session",
            Reason::SessionExpired => "session_expired",
            Reason::BlockNotFound => "block_not_found",
            Reason::BlockNotConfirmed => "block_not_confirmed",
            Reason::WrongBlockType => "wrong_block_type",
            Reason::WrongDestination => "wrong_destination",
            Reason::WrongAmount => "wrong_amount",
            Reason::BlockTooOld => "block_too_old",
            Reason::InvalidBlock => "invalid_block",
            Reason::AlreadySpent => "already_spent",
            Reason::SessionUsed => "session_used",
            Reason::VerifierUnavailable => "verifier_unavailable",
            Reason::StoreUnavailable => "store_unavailable",
            Reason::AlreadyGranted => "already_granted",
            Reason::RateLimited => "rate_limited",
            Reason::InsufficientWork => "insufficient_work",
            Reason::FrontierMismatch => "frontier_mismatch",
            Reason::PaymentInFlight => "payment_in_flight",
        }
    }

    /// The HTTP status of the refusal.
    pub const fn status(self) -> StatusCode {
        match self {
            Reason::MalformedPayment => StatusCode::BAD_REQUEST,
            Reason::VerifierUnavailable | Reason::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            // Not a 402: a stock x402 client answers a 402 by paying again.
            Reason::AlreadyGranted => StatusCode::CONFLICT,
            Reason::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::PAYMENT_REQUIRED,
        }
    }

    /// Whether the refusal carries a fresh challenge (a new session).
    pub const fn fresh_challenge(self) -> bool {
        matches!(
            self,
            Reason::PaymentRequired | Reason::UnknownSession | Reason::SessionExpired | Reason::SessionUsed
        )
    }

    /// `Retry-After` in seconds, for the reasons where trying again later can succeed.
    pub const fn retry_after_secs(self) -> Option<u32> {
        match self {
            // A competing publication settles within the confirm wait (about 3 s).
            Reason::BlockNotFound | Reason::BlockNotConfirmed | Reason::PaymentInFlight => Some(2),
            Reason::VerifierUnavailable | Reason::StoreUnavailable | Reason::RateLimited => Some(5),
            _ => None,
        }
    }

    /// One human sentence for the body's `error` field.
    pub const fn message(self) -> &'static str {
        match self {
            Reason::PaymentRequired => {
                "Payment required: pay the amount in the challenge and retry with the block hash."
            }
            Reason::MalformedPayment => "The payment proof headers are malformed.",
            Reason::UnknownSession => "No pending payment session has this id; use the new challenge.",
            Reason::SessionExpired => "The payment session has expired; use the new challenge.",
            Reason::BlockNotFound => "The node does not know this block yet; retry shortly.",
            Reason::BlockNotConfirmed => "The block is not confirmed yet; retry shortly.",
            Reason::WrongBlockType => "The block is not a state send block.",
            Reason::WrongDestination => "The block does not pay the merchant account.",
            Reason::WrongAmount => "The block does not move the exact amount of this session.",
            Reason::BlockTooOld => "The block was published before this session was created.",
            Reason::InvalidBlock => "The block does not hash or verify as the node reported it.",
            Reason::AlreadySpent => "This block has already paid for a request.",
            Reason::SessionUsed => "This payment session has already been used; use the new challenge.",
            Reason::VerifierUnavailable => "The payment could not be verified right now; retry later.",
            Reason::StoreUnavailable => "The payment store is unavailable; retry later.",
            Reason::AlreadyGranted => "This payment was already accepted for this session; do not pay again.",
            Reason::RateLimited => "Too many payment requests in a short time; retry later.",
            Reason::InsufficientWork => "The block's proof of work is below the required threshold.",
            Reason::FrontierMismatch => "The block does not extend the account's current frontier.",
            Reason::PaymentInFlight => {
                "Another payment on this account or session is in flight; retry shortly."
            }
        }
    }

    /// The default gRPC status code (as `tonic::Code as i32`) of the refusal: `RESOURCE_EXHAUSTED`
    /// (8) for payment required and payment failures, `INVALID_ARGUMENT` (3) for malformed
    /// proofs, `UNAVAILABLE` (14) for verifier and store outages. Configurable per layer.
    pub const fn grpc_code(self) -> i32 {
        match self {
            Reason::MalformedPayment => 3,
            Reason::VerifierUnavailable | Reason::StoreUnavailable => 14,
            Reason::AlreadyGranted => 6, // ALREADY_EXISTS
            _ => 8,
        }
    }

    /// Position in [`Reason::ALL`].
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// Whether a refusal with this reason came after a proof was presented (and so carries a
    /// failed `PAYMENT-RESPONSE` when it is a 402).
    pub const fn after_proof(self) -> bool {
        !matches!(self, Reason::PaymentRequired)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status table of spec §6, row by row.
    #[test]
    fn matches_the_spec_table() {
        use Reason::*;
        let table: [(Reason, u16, bool, bool); 20] = [
            (PaymentRequired, 402, true, false),
            (MalformedPayment, 400, false, false),
            (UnknownSession, 402, true, false),
            (SessionExpired, 402, true, false),
            (BlockNotFound, 402, false, true),
            (BlockNotConfirmed, 402, false, true),
            (WrongBlockType, 402, false, false),
            (WrongDestination, 402, false, false),
            (WrongAmount, 402, false, false),
            (BlockTooOld, 402, false, false),
            (InvalidBlock, 402, false, false),
            (AlreadySpent, 402, false, false),
            (SessionUsed, 402, true, false),
            (VerifierUnavailable, 503, false, true),
            (StoreUnavailable, 503, false, true),
            (AlreadyGranted, 409, false, false),
            (RateLimited, 429, false, true),
            (InsufficientWork, 402, false, false),
            (FrontierMismatch, 402, false, false),
            (PaymentInFlight, 402, false, true),
        ];
        for (reason, status, fresh, retry) in table {
            assert_eq!(reason.status().as_u16(), status, "{reason}");
            assert_eq!(reason.fresh_challenge(), fresh, "{reason}");
            assert_eq!(reason.retry_after_secs().is_some(), retry, "{reason}");
        }
        let codes: std::collections::HashSet<_> = Reason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), 20);
        assert_eq!(table.map(|row| row.0), Reason::ALL, "the table covers every reason in order");
        for (reason, code) in [
            (InsufficientWork, "insufficient_work"),
            (FrontierMismatch, "frontier_mismatch"),
            (PaymentInFlight, "payment_in_flight"),
        ] {
            assert_eq!(reason.code(), code);
            assert!(reason.after_proof());
        }
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
            let expected = match reason.status().as_u16() {
                400 => 3,
                409 => 6,
                503 => 14,
                _ => 8,
            };
            assert_eq!(reason.grpc_code(), expected, "{reason}");
        }
    }
}
