//! Input shapes shared by the targets.

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};

/// `name: value` lines into a header map (lines that are not a valid header are skipped), or,
/// when the input starts with a 0 byte, the rest base64-encoded into `json_header` so the
/// fuzzer explores the JSON inside it directly.
pub fn headers(data: &[u8], json_header: &HeaderName) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some((0, json)) = data.split_first() {
        let value = base64::engine::general_purpose::STANDARD.encode(json);
        headers.insert(json_header.clone(), HeaderValue::try_from(value).expect("base64 is ASCII"));
        return headers;
    }
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    headers
}
