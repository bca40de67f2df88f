use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::protocol::{Reason, Rendered};

/// Everything the layer knows about a refusal, handed to a [`RefusalBody`] to render.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The protocol reason; `None` only for a path a denying price table does not list (404)
    /// and for a server misconfiguration (a dynamic price that breaks the tag-modulus rule,
    /// 500).
    pub reason: Option<Reason>,
    /// The HTTP status of the response.
    pub status: StatusCode,
    /// One human sentence.
    pub message: &'static str,
    /// Detail for `malformed_payment` (which header, what is wrong).
    pub detail: Option<&'static str>,
    /// The fresh challenge, when the refusal carries one ([`Rendered::required`] reads it
    /// as a typed `PaymentRequired`).
    pub challenge: Option<Rendered>,
}

impl Refusal {
    pub(crate) fn new(reason: Reason) -> Self {
        Refusal {
            reason: Some(reason),
            status: reason.status(),
            message: reason.message(),
            detail: None,
            challenge: None,
        }
    }

    /// The reason code (`"not_found"` for a path a denying price table does not list,
    /// `"internal_error"` for a misconfiguration).
    pub fn code(&self) -> &'static str {
        match self.reason {
            Some(reason) => reason.code(),
            None if self.status == StatusCode::NOT_FOUND => "not_found",
            None => "internal_error",
        }
    }

    /// The default JSON body: `{"error": …, "reason": …}`, plus `detail` for malformed proofs
    /// and, with a fresh challenge, the `PaymentRequired` fields (so the body is itself an x402
    /// `PaymentRequired` with a reason).
    pub fn to_json(&self) -> Bytes {
        // Written from the challenge's rendered JSON (no serializer runs twice): this runs
        // for every 402.
        #[derive(serde::Serialize)]
        struct Head<'a> {
            error: &'a str,
            reason: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a str>,
        }
        let head = Head { error: self.message, reason: self.code(), detail: self.detail };
        let Some(challenge) = &self.challenge else {
            return Bytes::from(serde_json::to_vec(&head).expect("the refusal body serializes"));
        };
        let mut body = Vec::with_capacity(128 + challenge.fields().len());
        body.extend_from_slice(b"{\"x402Version\":");
        body.extend_from_slice(itoa::Buffer::new().format(crate::protocol::X402_VERSION).as_bytes());
        body.push(b',');
        let at = body.len();
        serde_json::to_writer(&mut body, &head).expect("the refusal body serializes");
        body.remove(at); // the head's braces: it continues the version's object
        body.pop(); // and the challenge's fields follow
        body.push(b',');
        body.extend_from_slice(challenge.fields());
        Bytes::from(body)
    }
}

/// Renders the body of a refusal for response body type `B`.
///
/// Everything the protocol needs is in the headers; the body is for humans and x402 clients that
/// read it. Pick [`EmptyBody`] (any `B: Default`, e.g. gRPC), [`JsonBody`] (any `B: From<Bytes>`,
/// e.g. axum) or a closure with [`FnBody`].
pub trait RefusalBody<B>: Clone + Send + Sync + 'static {
    /// Builds the body; may add headers such as `Content-Type`.
    fn body(&self, refusal: &Refusal, headers: &mut HeaderMap) -> B;

    /// An empty body, for gRPC refusals (trailers-only responses carry everything in headers).
    fn empty(&self) -> B;

    /// A body of exactly these bytes (the browser paywall's page, its status answers), when
    /// the body type can carry them; `None` (the default) leaves those features off.
    fn bytes(&self, bytes: Bytes) -> Option<B> {
        let _ = bytes;
        None
    }
}

/// Refusals get `B::default()`: an empty body. Works for every body type, including tonic's.
#[derive(Clone, Copy, Debug, Default)]
pub struct EmptyBody;

impl<B: Default> RefusalBody<B> for EmptyBody {
    fn body(&self, _: &Refusal, _: &mut HeaderMap) -> B {
        B::default()
    }

    fn empty(&self) -> B {
        B::default()
    }
}

/// Refusals get [`Refusal::to_json`] with `Content-Type: application/json`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonBody;

impl<B: From<Bytes>> RefusalBody<B> for JsonBody {
    fn body(&self, refusal: &Refusal, headers: &mut HeaderMap) -> B {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        B::from(refusal.to_json())
    }

    fn empty(&self) -> B {
        B::from(Bytes::new())
    }

    fn bytes(&self, bytes: Bytes) -> Option<B> {
        Some(B::from(bytes))
    }
}

/// Refusals get whatever the closure builds (gRPC refusals get `B::default()`).
#[derive(Clone, Copy, Debug)]
pub struct FnBody<F>(pub F);

impl<B, F> RefusalBody<B> for FnBody<F>
where
    B: Default,
    F: Fn(&Refusal, &mut HeaderMap) -> B + Clone + Send + Sync + 'static,
{
    fn body(&self, refusal: &Refusal, headers: &mut HeaderMap) -> B {
        (self.0)(refusal, headers)
    }

    fn empty(&self) -> B {
        B::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nano::{Address, Raw};
    use crate::protocol::Challenge;
    use crate::session::Session;

    #[test]
    fn the_json_body_is_the_challenge_with_a_reason() {
        let pay_to: Address =
            "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap();
        let challenge = Challenge::new(pay_to, 1_000, "nano:dev", "https://x.example", "d\"", "text/plain");
        let session = Session::issue(
            pay_to,
            Raw::new(1_000_000),
            1_000,
            1_770_940_800,
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        let required = challenge.payment_required(&session, "/p");
        let refusal = Refusal {
            challenge: Some(challenge.render(&session, "/p")),
            ..Refusal::new(Reason::PaymentRequired)
        };
        let body: serde_json::Value = serde_json::from_slice(&refusal.to_json()).unwrap();
        let expected = serde_json::json!({
            "x402Version": required.x402_version,
            "error": Reason::PaymentRequired.message(),
            "reason": "payment_required",
            "resource": required.resource,
            "accepts": required.accepts,
        });
        assert_eq!(body, expected);

        let malformed = Refusal { detail: Some("bad header"), ..Refusal::new(Reason::MalformedPayment) };
        let body: serde_json::Value = serde_json::from_slice(&malformed.to_json()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": Reason::MalformedPayment.message(),
                "reason": "malformed_payment",
                "detail": "bad header",
            })
        );
    }
}
