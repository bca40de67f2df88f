//! Price tables keyed by path: one canonical spelling per path, so another spelling of a priced
//! path can never miss the table and pass for free (review F3).
//!
//! Lenient inner services (tower-http's `ServeDir`, proxies) serve `/files/%72eport.pdf`,
//! `/files//report.pdf` and `/files/./report.pdf` as `/files/report.pdf`; the table must see
//! them as that path too. Table keys are normalised the same way when the layer is built.

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

/// The canonical spelling of a request path: unreserved bytes percent-decoded (other escapes
/// kept, hex in upper case), empty and `.` segments dropped, `..` resolved (never above the
/// root), no trailing `/` (except the root itself). Borrows when the path is already canonical,
/// which is the common case.
///
/// ```
/// use nanosession::layer::normalize_path;
/// assert_eq!(normalize_path("/files//./sub/../%72eport.pdf/"), "/files/report.pdf");
/// assert_eq!(normalize_path("/a%2fb"), "/a%2Fb");
/// assert_eq!(normalize_path("/paid"), "/paid");
/// ```
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if is_canonical(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
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

/// Fast check: starts with `/`, no `%`, no `//`, no `.` or `..` segment, no trailing `/`.
fn is_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.contains(&b'%') {
        return false;
    }
    if path == "/" {
        return true;
    }
    !path.ends_with('/') && path[1..].split('/').all(|s| !matches!(s, "" | "." | ".."))
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let byte = hi << 4 | lo;
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    out.push(byte as char);
                } else {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[(byte >> 4) as usize]));
                    out.push(char::from(b"0123456789ABCDEF"[(byte & 15) as usize]));
                }
                i += 3;
                continue;
            }
        }
        // The path is a `str`, so copying char by char keeps any UTF-8 intact.
        let ch = path[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
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

    #[test]
    fn reserved_escapes_stay_escaped_and_odd_input_does_not_panic() {
        assert_eq!(n("/a%2fb"), "/a%2Fb");
        assert_eq!(n("/a%20b"), "/a%20b");
        assert_eq!(n("/%"), "/%");
        assert_eq!(n("/%4"), "/%4");
        assert_eq!(n("/%zz"), "/%zz");
        assert_eq!(n("/é/%C3%A9"), "/é/%C3%A9");
        assert_eq!(n(""), "/");
        assert_eq!(n("/"), "/");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("relative"), "/relative");
        assert!(matches!(n("/a/b"), std::borrow::Cow::Borrowed(_)));
    }
}
