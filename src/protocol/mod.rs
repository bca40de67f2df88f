//! The wire protocol, without I/O: the 402 challenge in both header forms, parsing a paid retry,
//! the `PAYMENT-RESPONSE` receipt and the reason codes with their statuses.
//!
//! See `docs/protocol.md` (and the spec it points to) for the full contract.

mod challenge;
mod handoff;
mod proof;
mod reason;
mod receipt;

pub use challenge::{
    Challenge, MalformedChallenge, NanoSessionExtra, Offer, PaymentRequired, PaymentRequirements, Rendered,
    RequirementsExtra, ResourceInfo, X402_VERSION,
};
pub use handoff::HandoffBlock;
pub use proof::{
    Handoff, MalformedProof, PaidRetry, PaymentPayload, Proof, ProofForm, ProofPayload, SessionRef,
    MAX_SIGNATURE_HEADER_LEN,
};
pub use reason::Reason;
pub use receipt::SettlementResponse;

/// Header names of the protocol, lower case as `http` wants them.
pub mod headers {
    use http::HeaderName;

    /// Rev 5: the merchant address.
    pub const X_PAYMENT_ADDRESS: HeaderName = HeaderName::from_static("x-payment-address");
    /// Rev 5: the base price in raw, without the tag.
    pub const X_PAYMENT_AMOUNT: HeaderName = HeaderName::from_static("x-payment-amount");
    /// Rev 5: the session's tag.
    pub const X_PAYMENT_TAG: HeaderName = HeaderName::from_static("x-payment-tag");
    /// Rev 5: the tag modulus.
    pub const X_PAYMENT_TAG_MODULUS: HeaderName = HeaderName::from_static("x-payment-tag-modulus");
    /// Rev 5: the session id (challenge and paid retry).
    pub const X_PAYMENT_SESSION: HeaderName = HeaderName::from_static("x-payment-session");
    /// Rev 5: the session's expiry, RFC 3339 UTC.
    pub const X_PAYMENT_EXPIRES: HeaderName = HeaderName::from_static("x-payment-expires");
    /// Rev 5 paid retry: the send block's hash.
    pub const X_PAYMENT_BLOCK: HeaderName = HeaderName::from_static("x-payment-block");
    /// x402: base64 JSON `PaymentRequired`.
    pub const PAYMENT_REQUIRED: HeaderName = HeaderName::from_static("payment-required");
    /// x402 paid retry: base64 JSON `PaymentPayload`.
    pub const PAYMENT_SIGNATURE: HeaderName = HeaderName::from_static("payment-signature");
    /// x402: base64 JSON `SettlementResponse`.
    pub const PAYMENT_RESPONSE: HeaderName = HeaderName::from_static("payment-response");

    /// The value of `Access-Control-Expose-Headers` that lets browsers read the payment headers.
    pub const EXPOSE_LIST: &str = "x-payment-address, x-payment-amount, x-payment-tag, \
        x-payment-tag-modulus, x-payment-session, x-payment-expires, payment-required, payment-response, retry-after";
}

/// Standard base64 (RFC 4648 §4, with padding), the only alphabet the protocol uses.
pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
