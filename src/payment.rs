//! [`VerifiedPayment`]: what the wrapped service learns about the payment for its request.

use crate::nano::{Address, BlockHash, Raw};
use crate::session::SessionKey;
use crate::verify::Confirmation;

/// The payment that bought this request, placed in the request extensions by the layer just
/// before the wrapped service is called. Its presence means: confirmed, exact, unspent, and now
/// claimed.
///
/// In axum, with the `axum` feature, take it as an extractor; without it, use
/// `Extension<VerifiedPayment>`; in tonic, `request.extensions().get::<VerifiedPayment>()`.
///
/// It names the session by its [`SessionKey`] (the id itself, a bearer secret, stays with the
/// client; a hand-off may not even have sent it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedPayment {
    /// The send block's hash.
    pub block: BlockHash,
    /// The account that paid.
    pub payer: Address,
    /// The amount paid (price plus tag).
    pub amount: Raw,
    /// The price of the resource (without the tag).
    pub price: Raw,
    /// The session's tag.
    pub tag: u64,
    /// The key of the session that was paid (consumed now).
    pub session: SessionKey,
    /// How confirmation was established.
    pub confirmation: Confirmation,
}

#[cfg(feature = "axum")]
mod extractor {
    use axum_core::extract::FromRequestParts;
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;
    use http::StatusCode;

    use super::VerifiedPayment;

    /// The extractor's rejection: the route is not behind a `PaymentRequiredLayer` (a server
    /// bug, hence 500, never a free pass).
    #[derive(Debug, Clone, Copy)]
    pub struct MissingPayment;

    impl IntoResponse for MissingPayment {
        fn into_response(self) -> Response {
            (StatusCode::INTERNAL_SERVER_ERROR, "route is not behind PaymentRequiredLayer").into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for VerifiedPayment {
        type Rejection = MissingPayment;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<VerifiedPayment>().cloned().ok_or(MissingPayment)
        }
    }
}

#[cfg(feature = "axum")]
pub use extractor::MissingPayment;
