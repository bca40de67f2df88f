use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use super::headers::*;
use super::B64;
use crate::nano::{Address, Raw};
use crate::session::{rfc3339, Session, SessionId};

/// The x402 protocol version this crate speaks.
pub const X402_VERSION: u32 = 2;

/// x402 v2 `PaymentRequired`: the JSON carried base64-encoded in `PAYMENT-REQUIRED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always [`X402_VERSION`].
    pub x402_version: u32,
    /// A short human explanation.
    pub error: String,
    /// The resource being paid for.
    pub resource: ResourceInfo,
    /// The payment options; this crate offers exactly one.
    pub accepts: Vec<PaymentRequirements>,
}

/// x402 `ResourceInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// Public URL of the resource: configured base URL plus request path, never the `Host` header.
    pub url: String,
    /// Human description of what is sold.
    #[serde(default)]
    pub description: String,
    /// Media type of the resource.
    #[serde(default)]
    pub mime_type: String,
}

/// x402 `PaymentRequirements` for the Nano `exact` scheme.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// `"exact"`.
    pub scheme: String,
    /// Network name, `nano:mainnet` by default.
    pub network: String,
    /// `"XNO"`.
    pub asset: String,
    /// The *total* to pay: price plus tag.
    pub amount: Raw,
    /// The merchant account.
    pub pay_to: Address,
    /// Session lifetime in seconds.
    pub max_timeout_seconds: u64,
    /// NanoSession details.
    pub extra: RequirementsExtra,
}

/// The `extra` object of [`PaymentRequirements`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequirementsExtra {
    /// The session this requirement belongs to.
    pub nano_session: NanoSessionExtra,
}

/// `extra.nanoSession`: the session the client must echo back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NanoSessionExtra {
    /// The session id.
    pub id: SessionId,
    /// The tag added to the price.
    pub tag: u64,
    /// The base price in raw.
    pub resource_amount_raw: Raw,
    /// The tag as a raw amount.
    pub tag_amount_raw: Raw,
    /// Expiry, RFC 3339 UTC.
    pub expires_at: String,
}

/// What every challenge of one layer has in common, prepared once when the layer is built.
#[derive(Clone, Debug)]
pub struct Challenge {
    pay_to: Address,
    pay_to_header: HeaderValue,
    tag_modulus: u64,
    tag_modulus_header: HeaderValue,
    network: String,
    base_url: String,
    description: String,
    mime_type: String,
}

impl Challenge {
    /// Prepares the per-layer parts of every challenge. `base_url` has no trailing slash.
    pub fn new(
        pay_to: Address,
        tag_modulus: u64,
        network: &str,
        base_url: &str,
        description: &str,
        mime_type: &str,
    ) -> Self {
        Challenge {
            pay_to,
            pay_to_header: header(pay_to.to_string()),
            tag_modulus,
            tag_modulus_header: HeaderValue::from(tag_modulus),
            network: network.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            description: description.to_owned(),
            mime_type: mime_type.to_owned(),
        }
    }

    /// The network name written into requirements and receipts.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The merchant address.
    pub fn pay_to(&self) -> Address {
        self.pay_to
    }

    /// The x402 `PaymentRequired` for `session`, for a request to `path` (path and query).
    pub fn payment_required(&self, session: &Session, path: &str) -> PaymentRequired {
        PaymentRequired {
            x402_version: X402_VERSION,
            error: "payment required".to_owned(),
            resource: ResourceInfo {
                url: format!("{}{}", self.base_url, path),
                description: self.description.clone(),
                mime_type: self.mime_type.clone(),
            },
            accepts: vec![PaymentRequirements {
                scheme: "exact".to_owned(),
                network: self.network.clone(),
                asset: "XNO".to_owned(),
                amount: session.amount,
                pay_to: session.pay_to,
                max_timeout_seconds: session.expires_at.saturating_sub(session.created_at),
                extra: RequirementsExtra {
                    nano_session: NanoSessionExtra {
                        id: session.id,
                        tag: session.tag,
                        resource_amount_raw: session.price,
                        tag_amount_raw: Raw::new(session.tag as u128),
                        expires_at: rfc3339(session.expires_at),
                    },
                },
            }],
        }
    }

    /// Writes both header forms of the challenge (Rev 5 `X-PAYMENT-*` and x402
    /// `PAYMENT-REQUIRED`) plus `Cache-Control: no-store`.
    pub fn write_headers(&self, session: &Session, required: &PaymentRequired, headers: &mut HeaderMap) {
        headers.insert(X_PAYMENT_ADDRESS, self.pay_to_header.clone());
        headers.insert(X_PAYMENT_AMOUNT, header(session.price.to_string()));
        headers.insert(X_PAYMENT_TAG, HeaderValue::from(session.tag));
        headers.insert(X_PAYMENT_TAG_MODULUS, self.tag_modulus_header.clone());
        headers.insert(X_PAYMENT_SESSION, header(session.id.to_string()));
        headers.insert(X_PAYMENT_EXPIRES, header(rfc3339(session.expires_at)));
        let json = serde_json::to_vec(required).expect("PaymentRequired serializes");
        headers.insert(PAYMENT_REQUIRED, header(B64.encode(json)));
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    /// The tag modulus of this layer.
    pub fn tag_modulus(&self) -> u64 {
        self.tag_modulus
    }
}

/// A header value from text this module produced itself (ASCII only).
fn header(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("protocol header values are ASCII")
}

impl PaymentRequired {
    /// Decodes a `PAYMENT-REQUIRED` header value (standard base64 JSON).
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        let bytes = B64.decode(value.as_bytes()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
