use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
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
    /// The session this requirement belongs to. Always sent by this crate's servers; other
    /// Nano x402 sellers may send none (the client then pays `amount` by hand-off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_session: Option<NanoSessionExtra>,
    /// `true` when the server accepts a signed, unpublished block in `payload.block` and
    /// publishes it itself (spec §9). Absent means "not announced".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accepts_block: bool,
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

/// A challenge rendered for the wire: the x402 [`PaymentRequired`] JSON of one session, written
/// once per 402 and shared by the `PAYMENT-REQUIRED` header and the JSON body.
///
/// Its `Debug` form shows nothing of it: the JSON holds the session id.
#[derive(Clone)]
pub struct Rendered {
    json: Bytes,
    /// Where `"resource":` starts: the fields a refusal body repeats after its own head.
    fields_at: usize,
    /// Where the RFC 3339 expiry is, for the Rev 5 header (formatted once per 402).
    expires: std::ops::Range<usize>,
}

impl Rendered {
    /// The `PaymentRequired` JSON, exactly as `serde_json` writes [`PaymentRequired`].
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// `"resource":{…},"accepts":[…]}`: the JSON from the resource to the closing brace.
    pub fn fields(&self) -> &[u8] {
        &self.json[self.fields_at..]
    }

    /// The typed challenge (parsed from the JSON: for custom bodies and pages, not the 402 path).
    pub fn required(&self) -> PaymentRequired {
        serde_json::from_slice(&self.json).expect("a rendered challenge is valid PaymentRequired JSON")
    }
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rendered { .. }")
    }
}

/// The constant parts of every challenge's JSON, escaped once when the layer is built.
#[derive(Clone, Debug)]
struct Pieces {
    /// `{"x402Version":…,"error":…,`: everything before the fields.
    head: Vec<u8>,
    /// `"resource":{"url":"` and the escaped base URL, without its closing quote.
    url: Vec<u8>,
    /// From `","description":` to `"amount":"`.
    after_url: Vec<u8>,
    /// `"payTo":"nano_…"` of the layer's account.
    pay_to: Vec<u8>,
    /// What closes `nanoSession`, `extra` (after `acceptsBlock` if announced) and the rest.
    end: &'static [u8],
}

/// The JSON of a string, written by `serde_json` (so escaping is exactly its own).
fn json_str(s: &str) -> Vec<u8> {
    serde_json::to_vec(s).expect("strings serialize")
}

impl Pieces {
    fn new(pay_to: &Address, network: &str, base_url: &str, description: &str, mime_type: &str) -> Self {
        let mut head = format!(r#"{{"x402Version":{X402_VERSION},"error":"#).into_bytes();
        head.extend_from_slice(&json_str(REQUIRED_ERROR));
        head.push(b',');
        let mut url = br#""resource":{"url":"#.to_vec();
        url.extend_from_slice(&json_str(base_url));
        url.pop(); // the path follows inside the same string
        let mut after_url = br#","description":"#.to_vec();
        after_url.extend_from_slice(&json_str(description));
        after_url.extend_from_slice(br#","mimeType":"#);
        after_url.extend_from_slice(&json_str(mime_type));
        after_url.extend_from_slice(br#"},"accepts":[{"scheme":"exact","network":"#);
        after_url.extend_from_slice(&json_str(network));
        after_url.extend_from_slice(br#","asset":"XNO","amount":""#);
        Pieces { head, url, after_url, pay_to: Self::pay_to(pay_to), end: b"}}}]}" }
    }

    fn pay_to(pay_to: &Address) -> Vec<u8> {
        format!(r#"","payTo":"{pay_to}","maxTimeoutSeconds":"#).into_bytes()
    }
}

/// What every challenge of one layer has in common, prepared once when the layer is built.
#[derive(Clone, Debug)]
pub struct Challenge {
    pay_to: Address,
    pay_to_header: HeaderValue,
    pieces: Pieces,
    tag_modulus: u64,
    tag_modulus_header: HeaderValue,
    network: String,
    base_url: String,
    description: String,
    mime_type: String,
    accepts_block: bool,
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
            pieces: Pieces::new(&pay_to, network, base_url.trim_end_matches('/'), description, mime_type),
            tag_modulus,
            tag_modulus_header: HeaderValue::from(tag_modulus),
            network: network.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            description: description.to_owned(),
            mime_type: mime_type.to_owned(),
            accepts_block: false,
        }
    }

    /// Announces (`extra.acceptsBlock`) that the server accepts signed blocks to publish.
    pub fn accepting_blocks(mut self, on: bool) -> Self {
        self.accepts_block = on;
        self.pieces.end = if on { br#"},"acceptsBlock":true}}]}"# } else { b"}}}]}" };
        self
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
            error: REQUIRED_ERROR.to_owned(),
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
                    nano_session: Some(NanoSessionExtra {
                        id: session.id,
                        tag: session.tag,
                        resource_amount_raw: session.price,
                        tag_amount_raw: Raw::new(session.tag as u128),
                        expires_at: rfc3339(session.expires_at),
                    }),
                    accepts_block: self.accepts_block,
                },
            }],
        }
    }

    /// The challenge of `session` for a request to `path`, rendered for the wire: the same JSON
    /// `serde_json` writes for [`payment_required`](Self::payment_required), written from
    /// pieces escaped when the layer was built (this runs for every 402).
    pub fn render(&self, session: &Session, path: &str) -> Rendered {
        let (p, mut numbers) = (&self.pieces, itoa::Buffer::new());
        let mut json = Vec::with_capacity(p.head.len() + 420 + p.url.len() + p.after_url.len() + path.len());
        json.extend_from_slice(&p.head);
        let fields_at = json.len();
        json.extend_from_slice(&p.url);
        let at = json.len();
        serde_json::to_writer(&mut json, path).expect("strings serialize");
        json.remove(at); // its opening quote: the path continues the base URL's string
        json.extend_from_slice(&p.after_url);
        json.extend_from_slice(numbers.format(session.amount.get()).as_bytes());
        if session.pay_to == self.pay_to {
            json.extend_from_slice(&p.pay_to);
        } else {
            json.extend_from_slice(&Pieces::pay_to(&session.pay_to));
        }
        json.extend_from_slice(
            numbers.format(session.expires_at.saturating_sub(session.created_at)).as_bytes(),
        );
        json.extend_from_slice(br#","extra":{"nanoSession":{"id":""#);
        json.extend_from_slice(&session.id.hex());
        json.extend_from_slice(br#"","tag":"#);
        json.extend_from_slice(numbers.format(session.tag).as_bytes());
        json.extend_from_slice(br#","resourceAmountRaw":""#);
        json.extend_from_slice(numbers.format(session.price.get()).as_bytes());
        json.extend_from_slice(br#"","tagAmountRaw":""#);
        json.extend_from_slice(numbers.format(session.tag).as_bytes());
        json.extend_from_slice(br#"","expiresAt":""#);
        let expires_at = json.len();
        json.extend_from_slice(rfc3339(session.expires_at).as_bytes());
        let expires = expires_at..json.len();
        json.push(b'"');
        json.extend_from_slice(p.end);
        Rendered { json: Bytes::from(json), fields_at, expires }
    }

    /// Writes both header forms of the challenge (Rev 5 `X-PAYMENT-*` and x402
    /// `PAYMENT-REQUIRED`, from `rendered`, the [`render`](Self::render) of `session`) plus
    /// `Cache-Control: no-store`.
    pub fn write_headers(&self, session: &Session, rendered: &Rendered, headers: &mut HeaderMap) {
        let mut numbers = itoa::Buffer::new();
        headers.insert(X_PAYMENT_ADDRESS, self.pay_to_header.clone());
        headers.insert(X_PAYMENT_AMOUNT, ascii(numbers.format(session.price.get()).as_bytes()));
        headers.insert(X_PAYMENT_TAG, HeaderValue::from(session.tag));
        headers.insert(X_PAYMENT_TAG_MODULUS, self.tag_modulus_header.clone());
        // The session id is a bearer secret until used: keep it out of header dumps.
        headers.insert(X_PAYMENT_SESSION, sensitive(ascii(&session.id.hex())));
        headers.insert(X_PAYMENT_EXPIRES, ascii(&rendered.json[rendered.expires.clone()]));
        headers.insert(PAYMENT_REQUIRED, sensitive(header(B64.encode(rendered.json()))));
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }

    /// The tag modulus of this layer.
    pub fn tag_modulus(&self) -> u64 {
        self.tag_modulus
    }
}

/// Marks a header value as sensitive: `http`'s `Debug` prints `Sensitive` instead of it, and
/// HTTP/2 never puts it in a compression table.
fn sensitive(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// A header value from text this module produced itself (ASCII only).
fn header(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("protocol header values are ASCII")
}

/// A header value copied from bytes this module produced itself (ASCII only).
fn ascii(bytes: &[u8]) -> HeaderValue {
    HeaderValue::from_bytes(bytes).expect("protocol header values are ASCII")
}

/// The `error` of every `PaymentRequired` this crate writes.
const REQUIRED_ERROR: &str = "payment required";

impl PaymentRequired {
    /// Decodes a `PAYMENT-REQUIRED` header value (standard base64 JSON).
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        let bytes = B64.decode(value.as_bytes()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Why a client could not read a 402 challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed payment challenge: {0}")]
pub struct MalformedChallenge(pub &'static str);

/// What a 402 asks a client to pay, read from either header form (the client's side of
/// [`Challenge`]).
///
/// With both forms present they must agree; with only one, it is used. Its `Debug` form leaves
/// out the x402 requirements (their resource URL may carry credentials in its query).
#[derive(Clone, PartialEq, Eq)]
pub struct Offer {
    /// The session to echo back; `None` for a plain x402 `exact` offer of another Nano seller,
    /// which names no session (it is then paid by hand-off, found by its amount).
    pub session: Option<SessionId>,
    /// Whether the server takes a signed block and publishes it itself (`extra.acceptsBlock`,
    /// or any offer without a session).
    pub accepts_block: bool,
    /// The account to pay.
    pub pay_to: Address,
    /// The exact amount to send: price plus tag.
    pub amount: Raw,
    /// The resource price.
    pub price: Raw,
    /// The session's tag.
    pub tag: u64,
    /// The x402 requirements, when the server sent `PAYMENT-REQUIRED` (needed for a
    /// `PAYMENT-SIGNATURE` retry).
    pub required: Option<PaymentRequired>,
    /// When the session expires, in Unix seconds on this machine's clock: the earliest of
    /// `X-PAYMENT-EXPIRES`, `extra.nanoSession.expiresAt` and the time the challenge was read
    /// plus `maxTimeoutSeconds` (the relative form is immune to clock offset, the absolute one to
    /// stale challenges). `None` when the server stated none.
    pub expires_at: Option<u64>,
    /// The network of the x402 requirements (`nano:mainnet`, …); `None` for a Rev 5 challenge,
    /// which does not name one.
    pub network: Option<String>,
}

impl std::fmt::Debug for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offer")
            .field("session", &self.session)
            .field("accepts_block", &self.accepts_block)
            .field("pay_to", &self.pay_to)
            .field("amount", &self.amount)
            .field("price", &self.price)
            .field("tag", &self.tag)
            .field("x402", &self.required.is_some())
            .field("expires_at", &self.expires_at)
            .field("network", &self.network)
            .finish()
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Offer {
    /// Reads the challenge of a 402 (or of a gRPC status's metadata, converted to headers).
    pub fn from_headers(headers: &HeaderMap) -> Result<Offer, MalformedChallenge> {
        let x402 = match headers.get(PAYMENT_REQUIRED) {
            Some(value) => Some(Self::from_required(
                PaymentRequired::from_header(value)
                    .ok_or(MalformedChallenge("PAYMENT-REQUIRED does not decode"))?,
            )?),
            None => None,
        };
        let rev5 = match text(headers, &X_PAYMENT_SESSION) {
            Some(session) => Some(Self::from_rev5(headers, session)?),
            None => None,
        };
        match (x402, rev5) {
            (Some(mut a), Some(b)) => {
                if (a.session, a.pay_to, a.amount, a.price, a.tag)
                    != (b.session, b.pay_to, b.amount, b.price, b.tag)
                {
                    return Err(MalformedChallenge("the two header forms disagree"));
                }
                a.expires_at = earliest(a.expires_at, b.expires_at);
                Ok(a)
            }
            (Some(offer), None) | (None, Some(offer)) => Ok(offer),
            (None, None) => Err(MalformedChallenge("no payment challenge headers")),
        }
    }

    fn from_required(required: PaymentRequired) -> Result<Offer, MalformedChallenge> {
        let entry = required
            .accepts
            .iter()
            .find(|a| a.scheme == "exact" && a.asset == "XNO")
            .ok_or(MalformedChallenge("no exact XNO requirement"))?;
        let relative = unix_now().saturating_add(entry.max_timeout_seconds);
        let Some(session) = entry.extra.nano_session.as_ref() else {
            // A plain `exact` offer: pay `amount` by hand-off; no tag, no session to echo.
            return Ok(Offer {
                session: None,
                accepts_block: true,
                pay_to: entry.pay_to,
                amount: entry.amount,
                price: entry.amount,
                tag: 0,
                expires_at: Some(relative),
                network: Some(entry.network.clone()),
                required: Some(required.clone()),
            });
        };
        if session.resource_amount_raw.checked_add(Raw::new(session.tag as u128)) != Some(entry.amount) {
            return Err(MalformedChallenge("amount is not price plus tag"));
        }
        let stated = crate::session::parse_rfc3339(&session.expires_at)
            .ok_or(MalformedChallenge("extra.nanoSession.expiresAt is not an RFC 3339 time"))?;
        Ok(Offer {
            session: Some(session.id),
            accepts_block: entry.extra.accepts_block,
            pay_to: entry.pay_to,
            amount: entry.amount,
            price: session.resource_amount_raw,
            tag: session.tag,
            expires_at: earliest(Some(stated), Some(relative)),
            network: Some(entry.network.clone()),
            required: Some(required.clone()),
        })
    }

    fn from_rev5(headers: &HeaderMap, session: &str) -> Result<Offer, MalformedChallenge> {
        let field =
            |name: &HeaderName, what: &'static str| text(headers, name).ok_or(MalformedChallenge(what));
        let session =
            session.parse().map_err(|_| MalformedChallenge("X-PAYMENT-SESSION is not 32 hex digits"))?;
        let pay_to: Address = field(&X_PAYMENT_ADDRESS, "X-PAYMENT-ADDRESS is missing")?
            .parse()
            .map_err(|_| MalformedChallenge("X-PAYMENT-ADDRESS is not a Nano address"))?;
        let price: Raw = field(&X_PAYMENT_AMOUNT, "X-PAYMENT-AMOUNT is missing")?
            .parse()
            .map_err(|_| MalformedChallenge("X-PAYMENT-AMOUNT is not a raw amount"))?;
        let tag: u64 = field(&X_PAYMENT_TAG, "X-PAYMENT-TAG is missing")?
            .parse()
            .map_err(|_| MalformedChallenge("X-PAYMENT-TAG is not a number"))?;
        if let Some(modulus) = text(headers, &X_PAYMENT_TAG_MODULUS) {
            let modulus: u64 =
                modulus.parse().map_err(|_| MalformedChallenge("X-PAYMENT-TAG-MODULUS is not a number"))?;
            if tag >= modulus {
                return Err(MalformedChallenge("X-PAYMENT-TAG is not below the modulus"));
            }
        }
        let amount =
            price.checked_add(Raw::new(tag as u128)).ok_or(MalformedChallenge("amount overflows"))?;
        let expires_at = match text(headers, &X_PAYMENT_EXPIRES) {
            Some(value) => Some(
                crate::session::parse_rfc3339(value)
                    .ok_or(MalformedChallenge("X-PAYMENT-EXPIRES is not an RFC 3339 time"))?,
            ),
            None => None,
        };
        Ok(Offer {
            session: Some(session),
            accepts_block: false,
            pay_to,
            amount,
            price,
            tag,
            required: None,
            expires_at,
            network: None,
        })
    }

    /// Seconds left before the session expires, on this machine's clock (`None`: unknown).
    pub fn seconds_left(&self) -> Option<u64> {
        self.expires_at.map(|at| at.saturating_sub(unix_now()))
    }

    /// The headers of the paid retry for `block`: `PAYMENT-SIGNATURE` when `x402` is asked for
    /// and the server sent `PAYMENT-REQUIRED`, else `X-PAYMENT-SESSION` + `X-PAYMENT-BLOCK`.
    ///
    /// The x402 payload echoes the resource URL, so a long path and query can push it past the
    /// server's [`MAX_SIGNATURE_HEADER_LEN`](super::MAX_SIGNATURE_HEADER_LEN); the short Rev 5
    /// pair (which every NanoSession server accepts) is sent instead, so a payment is never
    /// refused for its proof's size.
    pub fn proof_headers(&self, block: &crate::nano::BlockHash, x402: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if x402 {
            let payload = serde_json::json!({ "proof": block.to_string() });
            if let Some(value) = self.signature(payload) {
                headers.insert(PAYMENT_SIGNATURE, value);
                return headers;
            }
        }
        if let Some(session) = self.session {
            headers.insert(X_PAYMENT_SESSION, sensitive(header(session.to_string())));
            headers.insert(X_PAYMENT_BLOCK, header(block.to_string()));
        }
        headers
    }

    /// The headers of a hand-off (spec §9): `PAYMENT-SIGNATURE` with the signed, unpublished
    /// `block` in `payload.block`. Empty without x402 requirements (a Rev 5 challenge has no
    /// form for it).
    pub fn handoff_headers(&self, block: &crate::nano::StateBlock) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = self.signature(serde_json::json!({ "block": crate::rpc::block_json(block) })) {
            headers.insert(PAYMENT_SIGNATURE, value);
        }
        headers
    }

    /// `PAYMENT-SIGNATURE` carrying `payload` for the accepted requirements, if they were sent
    /// and it fits the header limit.
    fn signature(&self, payload: serde_json::Value) -> Option<HeaderValue> {
        let required = self.required.as_ref()?;
        let accepted = required
            .accepts
            .iter()
            .find(|a| a.scheme == "exact" && a.asset == "XNO")
            .expect("from_required checked it");
        let body = serde_json::json!({
            "x402Version": X402_VERSION,
            "resource": required.resource,
            "accepted": accepted,
            "payload": payload,
        });
        let value = B64.encode(serde_json::to_vec(&body).expect("payloads serialize"));
        (value.len() <= super::MAX_SIGNATURE_HEADER_LEN).then(|| sensitive(header(value)))
    }
}

/// The earlier of two optional times.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Session;

    fn issued() -> (Challenge, Session, HeaderMap) {
        let pay_to: Address =
            "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap();
        let challenge = Challenge::new(
            pay_to,
            10_000_000,
            "nano:dev",
            "https://api.example.com/",
            "",
            "application/json",
        );
        let session = Session::issue(
            pay_to,
            Raw::new(1_000_000_000),
            10_000_000,
            1_770_940_800,
            std::time::Duration::from_secs(300),
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        challenge.write_headers(&session, &challenge.render(&session, "/paid?x=1"), &mut headers);
        (challenge, session, headers)
    }

    #[test]
    fn the_rendered_json_is_exactly_what_serde_writes() {
        let (plain, session, _) = issued();
        let other: Address =
            "nano_1111111111111111111111111111111111111111111111111111hifc8npp".parse().unwrap();
        let awkward = Challenge::new(
            session.pay_to,
            10_000_000,
            "nano:\"odd\"",
            "https://api.example.com/base\\dir/",
            "Quotes \" and \\ and \u{1} and ünïcødé and </script>",
            "text/plain; charset=\"utf-8\"",
        );
        let elsewhere = Session { pay_to: other, ..session.clone() };
        for challenge in
            [plain.clone(), plain.accepting_blocks(true), awkward.clone(), awkward.accepting_blocks(true)]
        {
            for path in ["/paid", "/paid?x=1&y=\"2\"", "", "/ü/\\/\u{7f}"] {
                for session in [&session, &elsewhere] {
                    let rendered = challenge.render(session, path);
                    let typed = challenge.payment_required(session, path);
                    assert_eq!(
                        std::str::from_utf8(rendered.json()).unwrap(),
                        serde_json::to_string(&typed).unwrap(),
                        "{path}"
                    );
                    assert_eq!(rendered.required(), typed);
                    assert!(rendered.fields().starts_with(br#""resource":{"#));
                    assert!(!format!("{rendered:?}").contains(&session.id.to_string()));
                }
            }
        }
    }

    #[test]
    fn a_client_reads_what_the_server_wrote_in_either_form() {
        let (_, session, headers) = issued();
        let both = Offer::from_headers(&headers).unwrap();
        assert_eq!(
            (both.session, both.amount, both.price, both.tag),
            (Some(session.id), session.amount, session.price, session.tag)
        );
        assert_eq!(both.required.as_ref().unwrap().resource.url, "https://api.example.com/paid?x=1");
        assert_eq!(headers[X_PAYMENT_EXPIRES], "2026-02-13T00:05:00Z");
        let dumped = format!("{headers:?} {:?}", both.proof_headers(&crate::nano::BlockHash::ZERO, true));
        assert!(!dumped.contains(&session.id.to_string()), "the session id stays out of header dumps");

        let mut rev5 = headers.clone();
        rev5.remove(PAYMENT_REQUIRED);
        let only_rev5 = Offer::from_headers(&rev5).unwrap();
        assert_eq!((only_rev5.session, only_rev5.amount), (Some(session.id), session.amount));
        assert!(only_rev5.required.is_none());

        let mut x402 = headers.clone();
        x402.remove(X_PAYMENT_SESSION);
        assert_eq!(Offer::from_headers(&x402).unwrap().amount, session.amount);
    }

    #[test]
    fn malformed_challenges_are_refused() {
        let (_, _, headers) = issued();
        assert!(Offer::from_headers(&HeaderMap::new()).is_err(), "no challenge at all");

        let mut disagree = headers.clone();
        disagree.insert(X_PAYMENT_TAG, HeaderValue::from(1u64));
        assert_eq!(Offer::from_headers(&disagree), Err(MalformedChallenge("the two header forms disagree")));

        let mut tag_too_big = headers.clone();
        tag_too_big.remove(PAYMENT_REQUIRED);
        tag_too_big.insert(X_PAYMENT_TAG, HeaderValue::from(10_000_000u64));
        assert!(Offer::from_headers(&tag_too_big).is_err());

        let mut bad_address = headers.clone();
        bad_address.remove(PAYMENT_REQUIRED);
        bad_address.insert(X_PAYMENT_ADDRESS, HeaderValue::from_static("nano_1bad"));
        assert!(Offer::from_headers(&bad_address).is_err());

        let mut not_base64 = headers.clone();
        not_base64.insert(PAYMENT_REQUIRED, HeaderValue::from_static("%%%"));
        assert!(Offer::from_headers(&not_base64).is_err());

        // x402 requirements whose amount is not price plus tag.
        let mut required = PaymentRequired::from_header(&headers[PAYMENT_REQUIRED]).unwrap();
        required.accepts[0].amount = Raw::new(required.accepts[0].amount.get() + 1);
        let mut inconsistent = HeaderMap::new();
        inconsistent.insert(PAYMENT_REQUIRED, header(B64.encode(serde_json::to_vec(&required).unwrap())));
        assert_eq!(
            Offer::from_headers(&inconsistent),
            Err(MalformedChallenge("amount is not price plus tag"))
        );
    }

    #[test]
    fn proof_headers_round_trip_through_the_server_parser() {
        let (_, session, headers) = issued();
        let offer = Offer::from_headers(&headers).unwrap();
        let block = crate::nano::BlockHash::from_bytes([7; 32]);
        for x402 in [true, false] {
            let proof =
                super::super::Proof::from_headers(&offer.proof_headers(&block, x402)).unwrap().unwrap();
            assert_eq!((Some(proof.session), proof.block), (Some(session.id), block), "x402: {x402}");
        }
    }

    #[test]
    fn the_expiry_is_read_from_every_form_and_the_earliest_wins() {
        let (challenge, session, headers) = issued();
        let both = Offer::from_headers(&headers).unwrap();
        assert_eq!(both.expires_at, Some(session.expires_at), "the stated expiry is in the past: it wins");
        assert_eq!(both.network.as_deref(), Some("nano:dev"));
        assert_eq!(both.seconds_left(), Some(0));

        let mut rev5 = headers.clone();
        rev5.remove(PAYMENT_REQUIRED);
        let only_rev5 = Offer::from_headers(&rev5).unwrap();
        assert_eq!((only_rev5.expires_at, only_rev5.network), (Some(session.expires_at), None));
        rev5.insert(X_PAYMENT_EXPIRES, HeaderValue::from_static("soon"));
        assert!(Offer::from_headers(&rev5).is_err(), "an unreadable expiry is malformed");

        // A session issued now for 300 s: the relative form bounds it even if expiresAt lies.
        let now = unix_now();
        let fresh = Session::issue(
            challenge.pay_to(),
            Raw::new(1_000_000_000),
            10_000_000,
            now,
            std::time::Duration::from_secs(300),
        )
        .unwrap();
        let mut required = challenge.payment_required(&fresh, "/paid");
        required.accepts[0].extra.nano_session.as_mut().unwrap().expires_at = rfc3339(now + 100_000);
        let mut x402 = HeaderMap::new();
        x402.insert(PAYMENT_REQUIRED, header(B64.encode(serde_json::to_vec(&required).unwrap())));
        let offer = Offer::from_headers(&x402).unwrap();
        let left = offer.seconds_left().unwrap();
        assert!((299..=300).contains(&left), "{left}");
    }

    /// Whatever the length of the resource URL, the proof fits the server's limit and parses;
    /// PAYMENT-SIGNATURE is used exactly as long as it fits.
    #[test]
    fn a_long_resource_never_makes_the_proof_too_long() {
        let (challenge, session, _) = issued();
        let block = crate::nano::BlockHash::from_bytes([7; 32]);
        let mut saw = (false, false);
        for len in (4_000..7_000).step_by(7) {
            let path = format!("/paid?q={}", "a".repeat(len));
            let required = challenge.payment_required(&session, &path);
            let mut headers = HeaderMap::new();
            challenge.write_headers(&session, &challenge.render(&session, &path), &mut headers);
            let offer = Offer::from_headers(&headers).unwrap();
            let proof_headers = offer.proof_headers(&block, true);
            let proof = super::super::Proof::from_headers(&proof_headers).unwrap().unwrap();
            assert_eq!((proof.session, proof.block), (session.id, block), "len {len}");
            let full = serde_json::to_vec(&super::super::PaymentPayload {
                x402_version: X402_VERSION,
                resource: required.resource.clone(),
                accepted: required.accepts[0].clone(),
                payload: super::super::ProofPayload { proof: block },
            })
            .unwrap();
            let fits = B64.encode(full).len() <= super::super::MAX_SIGNATURE_HEADER_LEN;
            let form = if fits { super::super::ProofForm::X402 } else { super::super::ProofForm::Headers };
            assert_eq!(proof.form, form, "len {len}");
            if fits {
                saw.0 = true
            } else {
                saw.1 = true
            }
        }
        assert_eq!(saw, (true, true), "the range crosses the limit");
    }
}
