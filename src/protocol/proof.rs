use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};

use super::headers::{PAYMENT_SIGNATURE, X_PAYMENT_BLOCK, X_PAYMENT_SESSION};
use super::{PaymentRequirements, ResourceInfo, B64, X402_VERSION};
use crate::nano::BlockHash;
use crate::session::SessionId;

/// The largest `PAYMENT-SIGNATURE` header accepted, in bytes (before base64 decoding).
pub const MAX_SIGNATURE_HEADER_LEN: usize = 8 * 1024;

/// x402 v1's proof header. Not a proof form of this crate (yet): see [`x402_v1`].
const X_PAYMENT: HeaderName = HeaderName::from_static("x-payment");

/// A paid retry's claim: "block `block` pays session `session`". Nothing else the client sent
/// is kept, so nothing else can be trusted by mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof {
    /// The session the client says it paid.
    pub session: SessionId,
    /// The send block, normalised.
    pub block: BlockHash,
    /// Which header form(s) carried it.
    pub form: ProofForm,
}

/// Which header form carried a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofForm {
    /// `X-PAYMENT-SESSION` + `X-PAYMENT-BLOCK` (Rev 5).
    Headers,
    /// `PAYMENT-SIGNATURE` (x402 v2).
    X402,
    /// Both, agreeing.
    Both,
}

/// Why proof headers were refused (`malformed_payment`); the text is safe to show the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedProof(pub &'static str);

/// x402 v2 `PaymentPayload`, the JSON inside `PAYMENT-SIGNATURE` (what a client sends).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// Always [`X402_VERSION`].
    pub x402_version: u32,
    /// The resource paid for.
    pub resource: ResourceInfo,
    /// The requirements entry the client chose, echoed.
    pub accepted: PaymentRequirements,
    /// The proof.
    pub payload: ProofPayload,
}

/// The `payload` of a [`PaymentPayload`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofPayload {
    /// The send block's hash.
    pub proof: BlockHash,
}

/// The few fields the server reads from `PAYMENT-SIGNATURE`; everything else is informational
/// and ignored, so an echoed (possibly edited) requirement can never be trusted.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePayload {
    x402_version: Option<u32>,
    accepted: WireAccepted,
    payload: WireProof,
}

#[derive(Deserialize)]
struct WireAccepted {
    extra: WireExtra,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireExtra {
    nano_session: WireSession,
}

#[derive(Deserialize)]
struct WireSession {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireProof {
    proof: Option<String>,
    block_hash: Option<String>,
}

impl Proof {
    /// Reads a proof from request headers, in either form.
    ///
    /// `Ok(None)`: no proof headers at all (the client has not paid yet).
    /// `Err`: proof headers are present but unusable (`malformed_payment`).
    ///
    /// ```
    /// use http::HeaderMap;
    /// use nanosession::protocol::Proof;
    /// let mut h = HeaderMap::new();
    /// assert_eq!(Proof::from_headers(&h), Ok(None));
    /// h.insert("x-payment-session", "9f86d081884c7d659a2feaa0c55ad015".parse().unwrap());
    /// assert!(Proof::from_headers(&h).is_err()); // the block is missing
    /// h.insert("x-payment-block", "87434f8041869a01c8f6f263b87972d7ba443a72e0a97d7a3fd0ccc2358fd6f9".parse().unwrap());
    /// assert!(Proof::from_headers(&h).unwrap().is_some());
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Proof>, MalformedProof> {
        let session = single(headers, &X_PAYMENT_SESSION)?;
        let block = single(headers, &X_PAYMENT_BLOCK)?;
        let signature = single(headers, &PAYMENT_SIGNATURE)?;

        let rev5 = match (session, block) {
            (None, None) => None,
            (Some(s), Some(b)) => Some((
                s.parse::<SessionId>()
                    .map_err(|_| MalformedProof("X-PAYMENT-SESSION must be 32 hex digits"))?,
                b.parse::<BlockHash>()
                    .map_err(|_| MalformedProof("X-PAYMENT-BLOCK must be 64 hex digits"))?,
            )),
            (Some(_), None) => return Err(MalformedProof("X-PAYMENT-BLOCK is missing")),
            (None, Some(_)) => return Err(MalformedProof("X-PAYMENT-SESSION is missing")),
        };
        let x402 = signature.map(parse_signature).transpose()?;
        let v1 = single(headers, &X_PAYMENT)?;

        Ok(match (rev5, x402) {
            (None, None) => match v1 {
                Some(value) => return Err(x402_v1(value)),
                None => None,
            },
            (Some((session, block)), None) => Some(Proof { session, block, form: ProofForm::Headers }),
            (None, Some((session, block))) => Some(Proof { session, block, form: ProofForm::X402 }),
            (Some(a), Some(b)) if a == b => Some(Proof { session: a.0, block: a.1, form: ProofForm::Both }),
            (Some(_), Some(_)) => return Err(MalformedProof("X-PAYMENT-* and PAYMENT-SIGNATURE disagree")),
        })
    }
}

/// The one value of a header, as text; a repeated or non-ASCII header is malformed.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, MalformedProof> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(MalformedProof("a payment header is repeated"));
    }
    if first.len() > MAX_SIGNATURE_HEADER_LEN {
        return Err(MalformedProof("a payment header is too long"));
    }
    first.to_str().map(Some).map_err(|_| MalformedProof("a payment header is not visible ASCII"))
}

/// An x402 v1 `X-PAYMENT` header sent without either accepted form. Without this answer a v1
/// client would see a fresh 402 and pay again; the detail names what to send instead. The one
/// place that reads `X-PAYMENT` (signed blocks in it will be parsed here). Sent next to an
/// accepted form, it is ignored.
fn x402_v1(_value: &str) -> MalformedProof {
    MalformedProof(
        "X-PAYMENT (x402 v1) is not accepted: send PAYMENT-SIGNATURE with x402Version 2, \
         or X-PAYMENT-SESSION + X-PAYMENT-BLOCK",
    )
}

fn parse_signature(value: &str) -> Result<(SessionId, BlockHash), MalformedProof> {
    let json =
        B64.decode(value).map_err(|_| MalformedProof("PAYMENT-SIGNATURE is not standard padded base64"))?;
    let wire: WirePayload = serde_json::from_slice(&json)
        .map_err(|_| MalformedProof("PAYMENT-SIGNATURE is not a valid x402 payment payload"))?;
    match wire.x402_version {
        Some(X402_VERSION) => {}
        Some(_) => return Err(MalformedProof("PAYMENT-SIGNATURE has an unsupported x402Version")),
        None => return Err(MalformedProof("PAYMENT-SIGNATURE lacks x402Version")),
    }
    let session = wire
        .accepted
        .extra
        .nano_session
        .id
        .parse::<SessionId>()
        .map_err(|_| MalformedProof("accepted.extra.nanoSession.id must be 32 hex digits"))?;
    let parse_hash =
        |s: String| s.parse::<BlockHash>().map_err(|_| MalformedProof("payload.proof must be 64 hex digits"));
    let block = match (
        wire.payload.proof.map(parse_hash).transpose()?,
        wire.payload.block_hash.map(parse_hash).transpose()?,
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(MalformedProof("payload.proof and payload.blockHash disagree"))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Err(MalformedProof("payload.proof is missing")),
    };
    Ok((session, block))
}
