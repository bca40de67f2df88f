//! Price tables keyed by path: one canonical spelling per path, so another spelling of a priced
//! path can never miss the table and pass for free (review F3).
//!
//! Lenient inner services (tower-http's `ServeDir`, proxies) serve `/files/%72eport.pdf`,
//! `/files//report.pdf`, `/files/./report.pdf` and `/files%2Freport.pdf` as
//! `/files/report.pdf`; the table must see them as that path too. Table keys are normalised the same way when the layer is built.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::nano::Raw;

/// What a price table does with a path it does not list.
///
/// There is no default: a table that silently let unlisted paths through is how a nested
/// router or a `nest_service` ends up serving paid content for free, so the choice is explicit.
///
/// ```
/// use nanosession::layer::Unlisted;
/// # use nanosession::{PaymentRequiredLayer, nano::Raw};
/// let builder = PaymentRequiredLayer::builder()
///     .price_table([("/paid", Raw::new(10_000_000))])
///     .unlisted_paths(Unlisted::Deny); // anything else: 404, never passed inward
/// # let _ = builder;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlisted {
    /// Unlisted paths pass through to the inner service without payment.
    Free,
    /// Unlisted paths are answered `404 Not Found` by the layer (gRPC `UNIMPLEMENTED`).
    Deny,
}

/// A price per canonical path.
pub(crate) struct PriceTable {
    prices: HashMap<String, Raw>,
    pub(crate) unlisted: Unlisted,
}

impl PriceTable {
    pub(crate) fn new(prices: impl IntoIterator<Item = (String, Raw)>, unlisted: Unlisted) -> Self {
        let prices =
            prices.into_iter().map(|(path, price)| (normalize_path(&path).into_owned(), price)).collect();
        PriceTable { prices, unlisted }
    }

    pub(crate) fn prices(&self) -> impl Iterator<Item = &Raw> {
        self.prices.values()
    }

    /// The price of `path` (any spelling), or `None` when unlisted.
    pub(crate) fn get(&self, path: &str) -> Option<Raw> {
        self.prices.get(normalize_path(path).as_ref()).copied()
    }
}

/// The canonical spelling of a request path, as the most lenient inner service reads it
/// (tower-http's `ServeDir` percent-decodes the whole path, then splits it): every escape
/// percent-decoded (invalid UTF-8 replaced), `\\` and a decoded `%2F` taken as separators,
/// empty and `.` segments dropped, `..` resolved (never above the root), no trailing `/`
/// (except the root itself). Borrows when the path is already canonical, the common case.
///
/// ```
/// use nanosession::layer::normalize_path;
/// assert_eq!(normalize_path("/files//./sub/../%72eport.pdf/"), "/files/report.pdf");
/// assert_eq!(normalize_path("/files/sub%2Freport.pdf"), "/files/sub/report.pdf");
/// assert_eq!(normalize_path("/files/%C3%A9.pdf"), "/files/é.pdf");
/// assert_eq!(normalize_path("/paid"), "/paid");
/// ```
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if is_canonical(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len() + 1);
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Fast check: starts with `/`, no `%` or `\\`, no `//`, no `.` or `..` segment, no trailing `/`.
fn is_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.contains(&b'%') || bytes.contains(&b'\\') {
        return false;
    }
    if path == "/" {
        return true;
    }
    !path.ends_with('/') && path[1..].split('/').all(|s| !matches!(s, "" | "." | ".."))
}

/// Every valid `%XX` escape decoded; anything else kept as it is.
fn decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_path as n;

    /// Every spelling of the review's F3 maps to the one table key.
    #[test]
    fn every_spelling_of_a_path_is_one_key() {
        for spelling in [
            "/paid",
            "/paid/",
            "//paid",
            "/%70aid",
            "/%70%61%69%64",
            "/./paid",
            "/x/../paid",
            "/../paid",
            "///paid//",
            "/%2e/paid",
            "/%2E%2E/paid",
        ] {
            assert_eq!(n(spelling), "/paid", "{spelling}");
        }
        assert_eq!(n("/files/%72eport.pdf"), "/files/report.pdf");
        assert_eq!(n("/files//report.pdf"), "/files/report.pdf");
        assert_eq!(n("/files/./report.pdf"), "/files/report.pdf");
    }

    /// The review's second pass: escapes a lenient service decodes must not miss the table.
    #[test]
    fn every_escape_is_decoded_as_a_lenient_service_would() {
        assert_eq!(n("/files/sub%2Freport.pdf"), "/files/sub/report.pdf");
        assert_eq!(n("/files/sub%2freport.pdf"), "/files/sub/report.pdf");
        assert_eq!(n("/files\\sub\\report.pdf"), "/files/sub/report.pdf");
        assert_eq!(n("/files/report%281%29.pdf"), "/files/report(1).pdf");
        assert_eq!(n("/files/%C3%A9.pdf"), "/files/é.pdf");
        assert_eq!(n("/a%20b"), "/a b");
        assert_eq!(n("/%2e%2e%2fpaid"), "/paid");
    }

    #[test]
    fn odd_input_does_not_panic() {
        assert_eq!(n("/%"), "/%");
        assert_eq!(n("/%4"), "/%4");
        assert_eq!(n("/%zz"), "/%zz");
        assert_eq!(n("/é/%C3%A9"), "/é/é");
        assert_eq!(n("/%FF"), "/\u{FFFD}");
        assert_eq!(n(""), "/");
        assert_eq!(n("/"), "/");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("relative"), "/relative");
        assert!(matches!(n("/a/b"), std::borrow::Cow::Borrowed(_)));
    }
}
