//! The browser paywall (feature `paywall`): a priced request from a browser (its `Accept`
//! prefers `text/html`) gets, instead of the JSON 402, a small self-contained page with the
//! amount, a QR code of the `nano:` payment URI for phone wallets, the same URI as a link, the
//! address with a copy button, a countdown and a live status. Status and headers stay those of
//! the 402.
//!
//! The session id rides in an `HttpOnly`, `SameSite=Strict` cookie scoped to the resource's
//! path (the status endpoint is that path with `?nanosession=status`) set on that 402, so a plain
//! reload can pay: the layer reads the session from the cookie when no proof header is present
//! and settles it with the payment the [`ConfirmationWatcher`](crate::watcher::ConfirmationWatcher)
//! matched. The page learns of the payment from the status endpoint (a long poll the layer
//! answers for the cookie's session only) and reloads; without JavaScript a `<meta refresh>`
//! reloads it every few seconds.
//!
//! No external assets: the QR code is an inline SVG drawn here, the script and style carry a
//! per-response nonce named by a strict `Content-Security-Policy`.

use std::fmt::Write as _;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use crate::nano::{Address, Raw};
use crate::protocol::PaymentRequired;

/// The cookie carrying the session id of the page's challenge.
pub const COOKIE: &str = "nanosession";
/// The default query that turns a request for the resource into one for its status.
pub const DEFAULT_STATUS_QUERY: &str = "nanosession=status";

/// Everything a page shows, computed by the layer; what a [`Paywall::template`] receives.
#[derive(Clone, Debug)]
pub struct PaywallPage {
    /// The page title (the paywall's, else "Payment required").
    pub title: String,
    /// What is paid for (the paywall's description, else the resource's).
    pub description: String,
    /// The resource URL paid for.
    pub resource: String,
    /// The exact amount in XNO (all 30 decimals kept, trailing zeros cut).
    pub amount_xno: String,
    /// The exact amount in raw.
    pub amount_raw: Raw,
    /// The merchant address.
    pub pay_to: Address,
    /// `nano:<pay_to>?amount=<raw>`, the URI phone wallets scan.
    pub uri: String,
    /// The QR code of `uri`, an inline `<svg>` element.
    pub qr_svg: String,
    /// When the session expires (Unix seconds).
    pub expires_at: u64,
    /// Where the page asks whether it was paid: `?` and the status query, relative to the
    /// page's own URL.
    pub status_url: String,
    /// The nonce the response's `Content-Security-Policy` allows for inline script and style.
    pub nonce: String,
}

type Template = dyn Fn(&PaywallPage) -> String + Send + Sync;

/// How the browser paywall looks and where its status endpoint is. Configure it with
/// [`PaymentRequiredLayerBuilder::paywall`](super::PaymentRequiredLayerBuilder::paywall).
///
/// ```
/// use nanosession::layer::Paywall;
/// let paywall = Paywall::default().title("Premium article").accent("#1f6feb");
/// # let _ = paywall;
/// ```
#[derive(Clone)]
pub struct Paywall {
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) accent: String,
    pub(crate) status_query: String,
    pub(crate) template: Option<Arc<Template>>,
}

impl Default for Paywall {
    fn default() -> Self {
        Paywall {
            title: None,
            description: None,
            accent: "#209ce9".to_owned(),
            status_query: DEFAULT_STATUS_QUERY.to_owned(),
            template: None,
        }
    }
}

impl std::fmt::Debug for Paywall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paywall")
            .field("title", &self.title)
            .field("status_query", &self.status_query)
            .field("template", &self.template.is_some())
            .finish_non_exhaustive()
    }
}

impl Paywall {
    /// The page's heading and title.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// What is paid for (default: the layer's description).
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The accent colour, a CSS colour such as `#209ce9` (branding).
    pub fn accent(mut self, colour: impl Into<String>) -> Self {
        self.accent = colour.into();
        self
    }

    /// The query of the status endpoint, served at the resource's own path (default
    /// [`DEFAULT_STATUS_QUERY`]: `GET /article?nanosession=status`), so the cookie can be
    /// scoped to the resource and a `route_layer` sees it too.
    pub fn status_query(mut self, query: impl Into<String>) -> Self {
        self.status_query = query.into();
        self
    }

    /// Whether a request is for the status endpoint.
    pub(crate) fn is_status(&self, parts: &http::request::Parts) -> bool {
        parts.method == http::Method::GET && parts.uri.query() == Some(self.status_query.as_str())
    }

    /// Replaces the whole page: `template` gets the computed [`PaywallPage`] and returns HTML.
    /// Inline `<script>` and `<style>` must carry `nonce="{page.nonce}"`.
    pub fn template(mut self, template: impl Fn(&PaywallPage) -> String + Send + Sync + 'static) -> Self {
        self.template = Some(Arc::new(template));
        self
    }

    /// The page for a challenge, or `None` when the challenge names no session.
    pub(crate) fn page(&self, required: &PaymentRequired) -> Option<PaywallPage> {
        let accepted = required.accepts.first()?;
        let session = accepted.extra.nano_session.as_ref()?;
        let uri = format!("nano:{}?amount={}", accepted.pay_to, accepted.amount);
        Some(PaywallPage {
            title: self.title.clone().unwrap_or_else(|| "Payment required".to_owned()),
            description: self.description.clone().unwrap_or_else(|| required.resource.description.clone()),
            resource: required.resource.url.clone(),
            amount_xno: accepted.amount.to_xno_string(),
            amount_raw: accepted.amount,
            pay_to: accepted.pay_to,
            qr_svg: qr_svg(&uri),
            uri,
            expires_at: crate::session::parse_rfc3339(&session.expires_at).unwrap_or(0),
            status_url: format!("?{}", self.status_query),
            nonce: nonce(),
        })
    }

    /// The HTML of `page`, and its headers (content type, CSP, no referrer).
    pub(crate) fn render(&self, page: &PaywallPage, headers: &mut HeaderMap) -> String {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        let csp = format!(
            "default-src 'none'; script-src 'nonce-{n}'; style-src 'nonce-{n}'; img-src data:; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
            n = page.nonce
        );
        headers.insert(
            http::header::CONTENT_SECURITY_POLICY,
            HeaderValue::try_from(csp).expect("the policy is ASCII"),
        );
        headers.insert(http::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        match &self.template {
            Some(template) => template(page),
            None => default_page(page, &self.accent),
        }
    }
}

/// The `Set-Cookie` of a challenge's session: `HttpOnly`, `SameSite=Strict`, `Secure` over
/// https, scoped to the resource path (its status endpoint shares it) and expiring with the
/// session.
pub(crate) fn session_cookie(id: &str, path: &str, max_age: u64, secure: bool) -> HeaderValue {
    let mut cookie = format!("{COOKIE}={id}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict");
    if secure {
        cookie.push_str("; Secure");
    }
    let mut value = HeaderValue::try_from(cookie).expect("ids and paths are ASCII");
    value.set_sensitive(true);
    value
}

/// The `Set-Cookie` that forgets the session once it is paid.
pub(crate) fn clear_cookie(path: &str) -> HeaderValue {
    HeaderValue::try_from(format!("{COOKIE}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Strict"))
        .expect("cookie paths are checked to be visible ASCII")
}

/// The cookie `Path` of a resource: its path without the query; `/` when the path holds
/// characters a cookie attribute cannot.
pub(crate) fn cookie_path(path_and_query: &str) -> String {
    let path = path_and_query.split('?').next().unwrap_or("/");
    if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',') {
        path.to_owned()
    } else {
        "/".to_owned()
    }
}

/// The session id in the request's cookie, if any.
pub(crate) fn cookie_session(headers: &HeaderMap) -> Option<crate::session::SessionId> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// Whether the client prefers HTML to JSON (`Accept`, by quality, ties to the earlier one).
pub(crate) fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()) else { return false };
    let quality = |wanted: &[&str]| {
        accept
            .split(',')
            .enumerate()
            .filter_map(|(i, item)| {
                let mut parts = item.split(';');
                let media = parts.next()?.trim().to_ascii_lowercase();
                if !wanted.contains(&media.as_str()) {
                    return None;
                }
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((q, usize::MAX - i))
            })
            .fold(None, |best: Option<(f32, usize)>, x| match best {
                Some(b) if b >= x => Some(b),
                _ => Some(x),
            })
    };
    match (quality(&["text/html", "application/xhtml+xml"]), quality(&["application/json"])) {
        (Some(html), Some(json)) => html.0 > 0.0 && html >= json,
        (Some(html), None) => html.0 > 0.0,
        _ => false,
    }
}

fn nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The QR code of `data` as an inline SVG element (no XML declaration).
fn qr_svg(data: &str) -> String {
    use qrcode::render::svg;
    let Ok(code) = qrcode::QrCode::with_error_correction_level(data, qrcode::EcLevel::M) else {
        return String::new();
    };
    let svg = code
        .render::<svg::Color>()
        .min_dimensions(240, 240)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    let svg = &svg[svg.find("<svg").unwrap_or(0)..];
    // A viewBox, so the page can scale the code without cropping it.
    let size = |attr: &str| {
        let rest = &svg[svg.find(&format!(" {attr}=\""))? + attr.len() + 3..];
        rest[..rest.find('"')?].parse::<u32>().ok()
    };
    let view_box = match (size("width"), size("height")) {
        (Some(w), Some(h)) => format!(" viewBox=\"0 0 {w} {h}\""),
        _ => String::new(),
    };
    svg.replacen(
        "<svg",
        &format!("<svg role=\"img\" aria-label=\"QR code of the payment request\"{view_box}"),
        1,
    )
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn default_page(p: &PaywallPage, accent: &str) -> String {
    let mut html = String::with_capacity(16 * 1024);
    let (n, title, description) = (&p.nonce, esc(&p.title), esc(&p.description));
    let (uri, address) = (esc(&p.uri), esc(&p.pay_to.to_string()));
    // Only a colour may reach the stylesheet: anything else falls back to the default.
    let accent =
        if accent.chars().all(|c| c.is_ascii_alphanumeric() || c == '#') { accent } else { "#209ce9" };
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<noscript><meta http-equiv="refresh" content="5"></noscript>
<style nonce="{n}">
body {{ font-family: system-ui, sans-serif; margin: 0; background: #f4f6f8; color: #1b1f24; }}
main {{ max-width: 26rem; margin: 2rem auto; background: #fff; border-radius: 12px; padding: 1.5rem; box-shadow: 0 1px 4px #0002; }}
h1 {{ font-size: 1.3rem; margin: 0 0 .5rem; }}
.amount {{ font-size: 1.6rem; font-weight: 700; color: {accent}; word-break: break-all; }}
.raw, .address {{ font-family: ui-monospace, monospace; font-size: .8rem; word-break: break-all; color: #444; }}
.qr {{ display: flex; justify-content: center; margin: 1rem 0; }}
.qr svg {{ width: 240px; height: 240px; }}
a.pay {{ display: block; text-align: center; background: {accent}; color: #fff; padding: .8rem; border-radius: 8px; text-decoration: none; font-weight: 600; }}
button {{ margin-top: .4rem; padding: .4rem .8rem; border: 1px solid #bbb; border-radius: 6px; background: #fff; cursor: pointer; }}
#status {{ margin-top: 1rem; font-weight: 600; }}
.expired {{ color: #b42318; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
<p>{description}</p>
<p>Pay exactly</p>
<p class="amount" id="amount">{xno} XNO</p>
<p class="raw">{raw} raw</p>
<div class="qr">{qr}</div>
<a class="pay" id="pay-link" href="{uri}">Open in a Nano wallet</a>
<p>to the address</p>
<p class="address" id="address">{address}</p>
<button type="button" id="copy" aria-label="Copy the address">Copy address</button>
<p>Time left: <span id="countdown" data-expires="{expires}">…</span></p>
<p id="status" role="status" aria-live="polite">Waiting for your payment…</p>
<p id="expired" class="expired" hidden>This payment request has expired. <a href="" id="renew">Get a new one</a>.</p>
</main>
<script nonce="{n}">
(() => {{
  const expires = {expires} * 1000, status = document.getElementById('status');
  document.getElementById('copy').addEventListener('click', () => {{
    navigator.clipboard && navigator.clipboard.writeText(document.getElementById('address').textContent)
      .then(() => {{ status.textContent = 'Address copied.'; }});
  }});
  document.getElementById('renew').addEventListener('click', (e) => {{ e.preventDefault(); location.reload(); }});
  const expire = () => {{
    status.hidden = true;
    document.getElementById('expired').hidden = false;
    document.getElementById('pay-link').removeAttribute('href');
  }};
  const tick = () => {{
    const left = Math.max(0, Math.round((expires - Date.now()) / 1000));
    document.getElementById('countdown').textContent = Math.floor(left / 60) + ':' + String(left % 60).padStart(2, '0');
    if (left === 0) {{ expire(); return; }}
    setTimeout(tick, 1000);
  }};
  tick();
  const poll = async () => {{
    try {{
      const r = await fetch({status_path}, {{ credentials: 'same-origin', cache: 'no-store' }});
      const s = await r.json();
      if (s.state === 'paid') {{ status.textContent = 'Paid. Loading…'; location.reload(); return; }}
      if (s.state === 'expired' || s.state === 'unknown') {{ expire(); return; }}
    }} catch (e) {{ await new Promise(ok => setTimeout(ok, 2000)); }}
    poll();
  }};
  poll();
}})();
</script>
</body>
</html>
"#,
        xno = esc(&p.amount_xno),
        raw = p.amount_raw,
        qr = p.qr_svg,
        expires = p.expires_at,
        status_path = serde_json::to_string(&p.status_url).unwrap_or_else(|_| "\"?\"".into()),
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, accept.parse().unwrap());
        h
    }

    #[test]
    fn browsers_get_html_and_api_clients_json() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
        assert!(wants_html(&headers(chrome)));
        assert!(wants_html(&headers("text/html")));
        assert!(!wants_html(&headers("application/json")));
        assert!(!wants_html(&headers("*/*")));
        assert!(!wants_html(&headers("application/json, text/html;q=0.5")));
        assert!(!wants_html(&headers("text/html;q=0")));
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn the_cookie_is_read_among_others_and_must_be_a_session_id() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; nanosession=9f86d081884c7d659a2feaa0c55ad015; b=2".parse().unwrap(),
        );
        assert_eq!(
            cookie_session(&h).map(|s| s.to_string()).as_deref(),
            Some("9f86d081884c7d659a2feaa0c55ad015")
        );
        h.insert(http::header::COOKIE, "nanosession=nothex".parse().unwrap());
        assert_eq!(cookie_session(&h), None);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
