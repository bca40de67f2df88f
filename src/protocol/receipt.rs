use base64::Engine as _;
use http::HeaderValue;
use serde::{Deserialize, Serialize};

use super::B64;

/// x402 `SettlementResponse`, carried base64-encoded in `PAYMENT-RESPONSE`.
///
/// ```
/// use nanosession::protocol::SettlementResponse;
/// let ok = SettlementResponse::success("ABCD".into(), "nano:mainnet".into(), "nano_1…".into());
/// let back = SettlementResponse::from_header(&ok.to_header()).unwrap();
/// assert!(back.success);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementResponse {
    /// Whether the payment was accepted.
    pub success: bool,
    /// The reason code of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    /// The block hash on success, `""` on failure.
    pub transaction: String,
    /// The network name.
    pub network: String,
    /// The paying account on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

impl SettlementResponse {
    /// A successful settlement.
    pub fn success(transaction: String, network: String, payer: String) -> Self {
        SettlementResponse { success: true, error_reason: None, transaction, network, payer: Some(payer) }
    }

    /// A failed settlement with a reason code.
    pub fn failure(reason: &str, network: String) -> Self {
        SettlementResponse {
            success: false,
            error_reason: Some(reason.to_owned()),
            transaction: String::new(),
            network,
            payer: None,
        }
    }

    /// The `PAYMENT-RESPONSE` header value.
    pub fn to_header(&self) -> HeaderValue {
        let json = serde_json::to_vec(self).expect("SettlementResponse serializes");
        HeaderValue::try_from(B64.encode(json)).expect("base64 is ASCII")
    }

    /// Decodes a `PAYMENT-RESPONSE` header value.
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        let bytes = B64.decode(value.as_bytes()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
