use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};

use super::handoff::HandoffBlock;
use super::headers::{PAYMENT_SIGNATURE, X_PAYMENT_BLOCK, X_PAYMENT_SESSION};
use super::{PaymentRequirements, ResourceInfo, B64, X402_VERSION};
use crate::nano::{BlockHash, Raw};
use crate::session::SessionId;

/// The largest `PAYMENT-SIGNATURE` header accepted, in bytes (before base64 decoding).
pub const MAX_SIGNATURE_HEADER_LEN: usize = 8 * 1024;

/// x402 v1's proof header: accepted only carrying what `PAYMENT-SIGNATURE` would (see
/// [`x402_v1`]).
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

/// A paid retry, as read from its headers: the hash of a block the client published, or a
/// signed block it hands over for the server to publish (spec §9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaidRetry {
    /// "Block `block` (already published) pays session `session`".
    Published(Proof),
    /// A signed, unpublished send for the server to check and publish (boxed: a block is
    /// six times the size of a hash proof).
    Handoff(Box<Handoff>),
    /// Only the session (`X-PAYMENT-SESSION` without `X-PAYMENT-BLOCK`): "settle with the
    /// payment the server's confirmation watcher saw for it" (hash-less settlement).
    Session(SessionId),
}

/// A handed-over block and how the client named its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// The session the block is for.
    pub session: SessionRef,
    /// The block, parsed (not yet verified).
    pub block: HandoffBlock,
    /// Which header form(s) carried it.
    pub form: ProofForm,
}

/// How a hand-off names its session (spec §9 step 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionRef {
    /// The echoed `accepted.extra.nanoSession.id`.
    Id(SessionId),
    /// No id echoed: the pending session whose stored amount is this `accepted.amount`.
    /// Only a lookup key: the block's own balance delta is what pays.
    Amount(Raw),
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
    /// x402 v1's `X-PAYMENT` alone, carrying an x402 v2 payload (clients in the wild).
    XPayment,
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
struct WirePayload<'a> {
    x402_version: Option<u32>,
    accepted: WireAccepted,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

#[derive(Deserialize)]
struct WireAccepted {
    extra: Option<WireExtra>,
    amount: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireExtra {
    nano_session: Option<WireSession>,
}

#[derive(Deserialize)]
struct WireSession {
    id: String,
}

/// Which way of paying `payload` takes; the block itself is read by [`HandoffBlock`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireProof {
    proof: Option<String>,
    block_hash: Option<String>,
    block: Option<serde::de::IgnoredAny>,
}

impl PaidRetry {
    /// Reads a paid retry from request headers, in any accepted form: Rev 5
    /// (`X-PAYMENT-SESSION` + `X-PAYMENT-BLOCK`), x402 v2 `PAYMENT-SIGNATURE` with
    /// `payload.proof` or `payload.block`, and the same v2 payload in x402 v1's `X-PAYMENT`.
    ///
    /// `Ok(None)`: no proof headers at all (the client has not paid yet).
    /// `Err`: proof headers are present but unusable (`malformed_payment`), including two
    /// forms that name different blocks or sessions.
    ///
    /// ```
    /// use http::HeaderMap;
    /// use nanosession::protocol::{PaidRetry, Proof};
    /// let mut h = HeaderMap::new();
    /// assert_eq!(PaidRetry::from_headers(&h), Ok(None));
    /// h.insert("x-payment-session", "9f86d081884c7d659a2feaa0c55ad015".parse().unwrap());
    /// // Only a session: settled if the server's watcher saw its payment (hash-less).
    /// assert!(matches!(PaidRetry::from_headers(&h), Ok(Some(PaidRetry::Session(_)))));
    /// h.insert("x-payment-block", "87434f8041869a01c8f6f263b87972d7ba443a72e0a97d7a3fd0ccc2358fd6f9".parse().unwrap());
    /// assert!(matches!(PaidRetry::from_headers(&h), Ok(Some(PaidRetry::Published(Proof { .. })))));
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<PaidRetry>, MalformedProof> {
        let session = single(headers, &X_PAYMENT_SESSION)?;
        let block = single(headers, &X_PAYMENT_BLOCK)?;
        let signature = single(headers, &PAYMENT_SIGNATURE)?;
        let v1 = single(headers, &X_PAYMENT)?;

        let rev5 = match (session, block) {
            (None, None) => None,
            (Some(s), Some(b)) => Some((
                s.parse::<SessionId>()
                    .map_err(|_| MalformedProof("X-PAYMENT-SESSION must be 32 hex digits"))?,
                b.parse::<BlockHash>()
                    .map_err(|_| MalformedProof("X-PAYMENT-BLOCK must be 64 hex digits"))?,
            )),
            (Some(s), None) => {
                let session = s
                    .parse::<SessionId>()
                    .map_err(|_| MalformedProof("X-PAYMENT-SESSION must be 32 hex digits"))?;
                if signature.is_some() || v1.is_some() {
                    return Err(MalformedProof("X-PAYMENT-BLOCK is missing"));
                }
                return Ok(Some(PaidRetry::Session(session)));
            }
            (None, Some(_)) => return Err(MalformedProof("X-PAYMENT-SESSION is missing")),
        };
        let x402 = match (signature, v1) {
            (Some(signature), v1) => {
                let parsed = parse_signature(signature)?;
                // The same payload may ride in `X-PAYMENT` too; one naming anything else is
                // malformed, and a v1 payload there (not ours to read) is ignored.
                if let Some(other) = v1.filter(|v1| *v1 != signature).and_then(|v1| parse_signature(v1).ok())
                {
                    if other != parsed {
                        return Err(MalformedProof("X-PAYMENT and PAYMENT-SIGNATURE disagree"));
                    }
                }
                Some((parsed, ProofForm::X402))
            }
            (None, Some(v1)) => match parse_signature(v1) {
                Ok(parsed @ Wire::Handoff(..)) => Some((parsed, ProofForm::XPayment)),
                _ => return Err(x402_v1()),
            },
            (None, None) => None,
        };

        Ok(Some(match (rev5, x402) {
            (None, None) => return Ok(None),
            (Some((session, block)), None) => {
                PaidRetry::Published(Proof { session, block, form: ProofForm::Headers })
            }
            (None, Some((Wire::Hash(session, block), form))) => {
                PaidRetry::Published(Proof { session, block, form })
            }
            (Some(a), Some((Wire::Hash(session, block), _))) if a == (session, block) => {
                PaidRetry::Published(Proof { session, block, form: ProofForm::Both })
            }
            (None, Some((Wire::Handoff(session, block), form))) => {
                PaidRetry::Handoff(Box::new(Handoff { session, block: *block, form }))
            }
            // Rev 5 headers next to a hand-off must name its computed hash, and its session
            // when it names one.
            (Some((id, hash)), Some((Wire::Handoff(session, block), _))) => {
                let same_session = matches!(session, SessionRef::Amount(_)) || session == SessionRef::Id(id);
                if hash != block.hash() || !same_session {
                    return Err(MalformedProof("X-PAYMENT-* and PAYMENT-SIGNATURE disagree"));
                }
                PaidRetry::Handoff(Box::new(Handoff {
                    session: SessionRef::Id(id),
                    block: *block,
                    form: ProofForm::Both,
                }))
            }
            (Some(_), Some(_)) => return Err(MalformedProof("X-PAYMENT-* and PAYMENT-SIGNATURE disagree")),
        }))
    }
}

impl Proof {
    /// Reads a proof of a published block from request headers, in either form; see
    /// [`PaidRetry::from_headers`], which also reads handed-over blocks (refused here).
    ///
    /// ```
    /// use http::HeaderMap;
    /// use nanosession::protocol::Proof;
    /// let mut h = HeaderMap::new();
    /// assert_eq!(Proof::from_headers(&h), Ok(None));
    /// h.insert("x-payment-session", "9f86d081884c7d659a2feaa0c55ad015".parse().unwrap());
    /// h.insert("x-payment-block", "87434f8041869a01c8f6f263b87972d7ba443a72e0a97d7a3fd0ccc2358fd6f9".parse().unwrap());
    /// assert!(Proof::from_headers(&h).unwrap().is_some());
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Proof>, MalformedProof> {
        match PaidRetry::from_headers(headers)? {
            None => Ok(None),
            Some(PaidRetry::Published(proof)) => Ok(Some(proof)),
            Some(PaidRetry::Handoff(_)) => Err(MalformedProof("expected payload.proof, not payload.block")),
            Some(PaidRetry::Session(_)) => Err(MalformedProof("X-PAYMENT-BLOCK is missing")),
        }
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

/// An x402 v1 `X-PAYMENT` header sent without an accepted form and without an x402 v2
/// hand-off payload in it. Without this answer a v1 client would see a fresh 402 and pay
/// again; the detail names what to send instead.
fn x402_v1() -> MalformedProof {
    MalformedProof(
        "X-PAYMENT (x402 v1) is not accepted: send PAYMENT-SIGNATURE with x402Version 2, \
         or X-PAYMENT-SESSION + X-PAYMENT-BLOCK",
    )
}

/// What a v2 payload says, before any I/O.
#[derive(Debug, PartialEq, Eq)]
enum Wire {
    Hash(SessionId, BlockHash),
    Handoff(SessionRef, Box<HandoffBlock>),
}

fn parse_signature(value: &str) -> Result<Wire, MalformedProof> {
    let json =
        B64.decode(value).map_err(|_| MalformedProof("PAYMENT-SIGNATURE is not standard padded base64"))?;
    let wire: WirePayload = serde_json::from_slice(&json)
        .map_err(|_| MalformedProof("PAYMENT-SIGNATURE is not a valid x402 payment payload"))?;
    match wire.x402_version {
        Some(X402_VERSION) => {}
        Some(_) => return Err(MalformedProof("PAYMENT-SIGNATURE has an unsupported x402Version")),
        None => return Err(MalformedProof("PAYMENT-SIGNATURE lacks x402Version")),
    }
    let id = wire
        .accepted
        .extra
        .and_then(|e| e.nano_session)
        .map(|s| {
            s.id.parse::<SessionId>()
                .map_err(|_| MalformedProof("accepted.extra.nanoSession.id must be 32 hex digits"))
        })
        .transpose()?;
    let kind: WireProof = serde_json::from_str(wire.payload.get())
        .map_err(|_| MalformedProof("payload is not a valid JSON object"))?;
    if kind.block.is_some() {
        // Strict, and refuses `proof` or `blockHash` next to `block`.
        let block = HandoffBlock::from_payload_json(wire.payload.get())?;
        let session = match (id, wire.accepted.amount) {
            (Some(id), _) => SessionRef::Id(id),
            (None, Some(amount)) => SessionRef::Amount(
                amount
                    .parse::<Raw>()
                    .map_err(|_| MalformedProof("accepted.amount must be a decimal raw amount"))?,
            ),
            (None, None) => {
                return Err(MalformedProof(
                    "a hand-off needs accepted.extra.nanoSession.id or accepted.amount",
                ))
            }
        };
        return Ok(Wire::Handoff(session, Box::new(block)));
    }
    let id = id.ok_or(MalformedProof("accepted.extra.nanoSession.id is missing"))?;
    let parse_hash =
        |s: String| s.parse::<BlockHash>().map_err(|_| MalformedProof("payload.proof must be 64 hex digits"));
    let block = match (kind.proof.map(parse_hash).transpose()?, kind.block_hash.map(parse_hash).transpose()?)
    {
        (Some(a), Some(b)) if a != b => {
            return Err(MalformedProof("payload.proof and payload.blockHash disagree"))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Err(MalformedProof("payload.proof is missing")),
    };
    Ok(Wire::Hash(id, block))
}
