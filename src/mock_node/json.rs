//! The node's JSON spellings: blocks as `contents`, blocks parsed from `process`, lenient
//! request fields, and empty collections written as `""`.
//!
//! Replies are serialized from structs so their fields come out in the node's order.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use super::ledger::{self, Entry, GENESIS_PUBLIC_KEY, GENESIS_WORK};
use crate::nano::{Address, BlockHash, PublicKey, Raw, Signature, StateBlock};

/// Unix seconds now.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix milliseconds now, as the node writes `time`.
pub(crate) fn now_millis() -> String {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis()).to_string()
}

/// A key as an address, `nano_` prefix.
pub(crate) fn address(key: &PublicKey) -> String {
    Address::from(*key).to_string()
}

/// A state block as `contents` (and, with `subtype`, as a WebSocket `block`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StateJson {
    #[serde(rename = "type")]
    kind: &'static str,
    account: String,
    previous: String,
    representative: String,
    balance: String,
    link: String,
    link_as_account: String,
    signature: String,
    work: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) subtype: Option<&'static str>,
}

impl StateJson {
    pub(crate) fn new(block: &StateBlock) -> StateJson {
        StateJson {
            kind: "state",
            account: address(&block.account),
            previous: block.previous.to_string(),
            representative: address(&block.representative),
            balance: block.balance.to_string(),
            link: hex::encode_upper(block.link),
            link_as_account: address(&PublicKey::from_bytes(block.link)),
            signature: block.signature.to_string(),
            work: crate::nano::work::to_hex(block.work),
            subtype: None,
        }
    }
}

/// The dev genesis, a legacy open block, in the node's form.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct OpenJson {
    #[serde(rename = "type")]
    kind: &'static str,
    source: String,
    representative: String,
    account: String,
    work: String,
    signature: String,
}

/// `contents` of a stored block.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum ContentsJson {
    State(StateJson),
    Open(OpenJson),
}

impl ContentsJson {
    pub(crate) fn new(entry: &Entry) -> ContentsJson {
        match &entry.block {
            Some(block) => ContentsJson::State(StateJson::new(block)),
            None => {
                let genesis = PublicKey::from_bytes(GENESIS_PUBLIC_KEY);
                ContentsJson::Open(OpenJson {
                    kind: "open",
                    source: hex::encode_upper(GENESIS_PUBLIC_KEY),
                    representative: address(&genesis),
                    account: address(&genesis),
                    work: crate::nano::work::to_hex(GENESIS_WORK),
                    signature: ledger::genesis_signature().to_string(),
                })
            }
        }
    }

    /// The string form the node sends when `json_block` is not set: the same object as text,
    /// indented with four spaces like the node's property-tree writer.
    pub(crate) fn to_text(&self) -> String {
        let mut out = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
        match self.serialize(&mut ser) {
            Ok(()) => String::from_utf8(out).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

/// An ordered JSON object that the node writes as `""` when empty.
#[derive(Debug)]
pub(crate) struct Entries<V>(pub(crate) Vec<(String, V)>);

impl<V: Serialize> Serialize for Entries<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            return s.serialize_str("");
        }
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A JSON array that the node writes as `""` when empty.
#[derive(Debug)]
pub(crate) struct List<V>(pub(crate) Vec<V>);

impl<V: Serialize> Serialize for List<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            return s.serialize_str("");
        }
        self.0.serialize(s)
    }
}

/// A scalar request field as text, as the node's property tree sees it: strings as they are,
/// numbers and booleans rendered. Objects, arrays and `null` are not scalars.
pub(crate) fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses a block from `process`: a complete state block, either hex case, addresses with
/// either prefix, `link` as hex or as an address, `work` as 1 to 16 hex digits.
/// `link_as_account` is ignored, as by the node.
pub(crate) fn parse_state_block(value: &Value) -> Option<StateBlock> {
    let obj: &Map<String, Value> = value.as_object()?;
    let field = |key: &str| obj.get(key).and_then(scalar);
    if field("type")? != "state" {
        return None;
    }
    let link = field("link")?;
    let link = match crate::nano::PublicKey::from_hex(&link) {
        Ok(key) => *key.as_bytes(),
        Err(_) => *link.parse::<Address>().ok()?.public_key().as_bytes(),
    };
    let work = crate::nano::work::parse_hex(&field("work")?)?;
    Some(StateBlock {
        account: *field("account")?.parse::<Address>().ok()?.public_key(),
        previous: field("previous")?.parse::<BlockHash>().ok()?,
        representative: *field("representative")?.parse::<Address>().ok()?.public_key(),
        balance: field("balance")?.parse::<Raw>().ok()?,
        link,
        signature: Signature::from_hex(&field("signature")?).ok()?,
        work,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_collections_are_empty_strings() {
        assert_eq!(serde_json::to_string(&List::<u8>(vec![])).unwrap(), r#""""#);
        assert_eq!(serde_json::to_string(&List(vec!["a"])).unwrap(), r#"["a"]"#);
        assert_eq!(serde_json::to_string(&Entries::<u8>(vec![])).unwrap(), r#""""#);
        let e = Entries(vec![("b".to_owned(), 1), ("a".to_owned(), 2)]);
        assert_eq!(serde_json::to_string(&e).unwrap(), r#"{"b":1,"a":2}"#, "order is kept");
    }

    #[test]
    fn block_round_trips_through_contents() {
        let key = crate::nano::PrivateKey::from_bytes([3; 32]);
        let mut block = StateBlock {
            account: key.public_key(),
            previous: BlockHash::from_bytes([1; 32]),
            representative: key.public_key(),
            balance: Raw::new(12345),
            link: [0xab; 32],
            signature: Signature::default(),
            work: 0x00ab,
        };
        block.sign(&key);
        let text = serde_json::to_value(StateJson::new(&block)).unwrap();
        assert_eq!(text["work"], "00000000000000ab");
        assert_eq!(text["link"], "AB".repeat(32));
        assert_eq!(parse_state_block(&text), Some(block.clone()));
        // Lower-case hex, xrb_ prefix, link as an address and short work are accepted.
        let mut loose = text.clone();
        loose["previous"] = json!("01".repeat(32));
        loose["link"] = text["link_as_account"].clone();
        loose["account"] = json!(text["account"].as_str().unwrap().replace("nano_", "xrb_"));
        loose["work"] = json!("ab");
        assert_eq!(parse_state_block(&loose), Some(block));
        for (key, bad) in [
            ("type", "send"),
            ("balance", "-1"),
            ("work", "12345678901234567"),
            ("work", "+ab"),
            ("work", ""),
            ("work", " ab"),
            ("link", "xyz"),
        ] {
            let mut broken = text.clone();
            broken[key] = json!(bad);
            assert_eq!(parse_state_block(&broken), None, "{key}");
        }
        let mut missing = text;
        missing.as_object_mut().unwrap().remove("signature");
        assert_eq!(parse_state_block(&missing), None);
    }
}
