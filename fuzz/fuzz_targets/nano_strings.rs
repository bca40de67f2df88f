//! Nano's string types (addresses, hashes, raw amounts, session ids, work, keys): never a panic,
//! and whatever parses prints back to text that parses to the same value.
#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use nanosession::nano::{work, Address, BlockHash, PublicKey, Raw};
use nanosession::session::SessionId;

fn round_trip<T: FromStr + Display + PartialEq + std::fmt::Debug>(text: &str) -> Option<T> {
    let value: T = text.parse().ok()?;
    let again: T = value.to_string().parse().ok().expect("printed form parses");
    assert_eq!(again, value);
    Some(value)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(address) = round_trip::<Address>(text) {
        assert_eq!(Address::from(*address.public_key()), address);
    }
    round_trip::<BlockHash>(text);
    if let Some(raw) = round_trip::<Raw>(text) {
        let _ = raw.to_xno_string();
    }
    round_trip::<SessionId>(text);
    if let Some(w) = work::parse_hex(text) {
        assert_eq!(work::parse_hex(&work::to_hex(w)), Some(w));
    }
    let _ = PublicKey::from_hex(text);
});
