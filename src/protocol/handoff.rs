//! Parsing a handed-over block: the `payload.block` of an x402 `exact` payment on Nano whose
//! client signed a send block and left publishing it to the server (spec §9, step 1).
//!
//! Pure and strict: nothing here does I/O, and every refusal is a [`MalformedProof`] with a
//! fixed detail naming the field at fault. What the block *means* (signature, destination,
//! work, amount) is checked afterwards by [`crate::verify::handoff`].

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{MalformedProof, MAX_SIGNATURE_HEADER_LEN};
use crate::nano::{Address, BlockHash, PublicKey, Raw, Signature, StateBlock};

/// A state block as a client handed it over, parsed and syntactically valid but not yet
/// verified: its signature, destination and work are checked by
/// [`verify::handoff::verify_local`](crate::verify::handoff::verify_local).
///
/// ```
/// use nanosession::protocol::HandoffBlock;
/// let json = r#"{"type": "state",
///   "account": "nano_1ipx847tk8o46pwxt5qjdbncjqcbwcc1rrmqnkztrfjy5k7z4imsrata9est",
///   "previous": "CE898C131AAEE25E05362F247760F8A3ACF34A9796A5AE0D9204E86B0637965E",
///   "representative": "nano_1stofnrxuz3cai7ze75o174bpm7scwj9jn3nxsn8ntzg784jf1gzn1jjdkou",
///   "balance": "5606157000000000000000000000000000000",
///   "link": "5D1AA8A45F8736519D707FCB375976A7F9AF795091021D7E9C7548D6F45DD8D5",
///   "signature": "82D41BC16F313E4B2243D14DFFA2FB04679C540C2095FEE7EAE0F2F26880AD56DD48D87A7CC5DD760C5B2D76EE2C205506AA557BF00B60D8DEE312EC7343A501",
///   "work": "8a142e07a10996d5"}"#;
/// let block = HandoffBlock::from_json(json)?;
/// assert_eq!(block.hash().to_string(), "87434F8041869A01C8F6F263B87972D7BA443A72E0A97D7A3FD0CCC2358FD6F9");
/// assert!(HandoffBlock::from_json(&json.replace("state", "send")).is_err());
/// # Ok::<(), nanosession::protocol::MalformedProof>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffBlock {
    /// The block's hashed and signed fields, plus signature and work.
    pub block: StateBlock,
    /// The client's `link_as_account`, if it sent one. Not signed, so it is never trusted: it
    /// only has to name the same key as `link`.
    pub link_as_account: Option<Address>,
}

impl HandoffBlock {
    /// The block hash, computed from the fields (never taken from the client).
    pub fn hash(&self) -> BlockHash {
        self.block.hash()
    }

    /// Parses the text of a `payload.block` object (spec §9 step 1).
    ///
    /// Longer than [`MAX_SIGNATURE_HEADER_LEN`] bytes, not JSON, or not a valid state block:
    /// `Err` with a detail safe to show the client.
    pub fn from_json(json: &str) -> Result<Self, MalformedProof> {
        if json.len() > MAX_SIGNATURE_HEADER_LEN {
            return Err(MalformedProof("payload.block is too long"));
        }
        let wire: WireBlock =
            serde_json::from_str(json).map_err(|_| MalformedProof("payload.block is not valid JSON"))?;
        wire.into_block()
    }

    /// Parses an already decoded `payload.block` value (spec §9 step 1).
    ///
    /// A [`Value`] has already merged repeated keys (the last one wins); [`from_json`]
    /// refuses them. Either way the block that is verified and later published is this
    /// parse, re-serialised, never the client's text.
    ///
    /// [`from_json`]: HandoffBlock::from_json
    pub fn from_value(value: &Value) -> Result<Self, MalformedProof> {
        // A Value cannot fail to deserialize into WireBlock: every problem is recorded in it.
        let wire = WireBlock::deserialize(value)
            .map_err(|_| MalformedProof("payload.block must be a JSON object"))?;
        wire.into_block()
    }

    /// Parses the text of an x402 `payload` object that carries a `block`.
    ///
    /// Unknown keys next to `block` are tolerated (clients in the wild add some), but `proof`
    /// or `blockHash` next to `block` is malformed: the client must pick one way of paying.
    ///
    /// ```
    /// use nanosession::protocol::HandoffBlock;
    /// let err = HandoffBlock::from_payload_json(r#"{"proof": "00", "block": {}}"#).unwrap_err();
    /// assert_eq!(err.0, "payload.block and payload.proof are mutually exclusive");
    /// ```
    pub fn from_payload_json(json: &str) -> Result<Self, MalformedProof> {
        if json.len() > MAX_SIGNATURE_HEADER_LEN {
            return Err(MalformedProof("payload is too long"));
        }
        let wire: WirePayload =
            serde_json::from_str(json).map_err(|_| MalformedProof("payload is not a valid JSON object"))?;
        if wire.proof.is_some() || wire.block_hash.is_some() {
            return Err(MalformedProof("payload.block and payload.proof are mutually exclusive"));
        }
        wire.block.ok_or(MalformedProof("payload.block is missing"))?.into_block()
    }
}

/// The x402 `payload` object: `block`, and the hash forms it must not come with.
#[derive(Deserialize)]
struct WirePayload {
    block: Option<WireBlock>,
    proof: Option<IgnoredAny>,
    #[serde(rename = "blockHash")]
    block_hash: Option<IgnoredAny>,
}

/// Field names a block may carry: the node's own JSON form of a state block (`subtype` as
/// `process` takes it). Anything else is refused, so no field is ever silently dropped.
const FIELDS: [&str; 10] = [
    "type",
    "account",
    "previous",
    "representative",
    "balance",
    "link",
    "link_as_account",
    "signature",
    "work",
    "subtype",
];

/// A `payload.block` read without judging it: the raw values by field, plus the first shape
/// problem met. Deserialising never fails on shape, so every refusal keeps a fixed detail.
struct WireBlock {
    values: [Option<Value>; FIELDS.len()],
    problem: Option<&'static str>,
}

impl<'de> Deserialize<'de> for WireBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WireBlockVisitor)
    }
}

struct WireBlockVisitor;

impl WireBlockVisitor {
    fn not_an_object<E>() -> Result<WireBlock, E> {
        Ok(WireBlock { values: Default::default(), problem: Some("payload.block must be a JSON object") })
    }
}

impl<'de> Visitor<'de> for WireBlockVisitor {
    type Value = WireBlock;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Nano state block object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireBlock, A::Error> {
        let mut wire = WireBlock { values: Default::default(), problem: None };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let Some(i) = FIELDS.iter().position(|f| *f == key) else {
                map.next_value::<IgnoredAny>()?;
                wire.problem.get_or_insert("payload.block has an unknown field");
                continue;
            };
            let value = map.next_value::<Value>()?;
            if wire.values[i].replace(value).is_some() {
                wire.problem.get_or_insert("payload.block repeats a field");
            }
        }
        Ok(wire)
    }

    // Any other JSON value is read and recorded as the wrong shape.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<WireBlock, E> {
        Self::not_an_object()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<WireBlock, E> {
        Self::not_an_object()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<WireBlock, E> {
        Self::not_an_object()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<WireBlock, E> {
        Self::not_an_object()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<WireBlock, E> {
        Self::not_an_object()
    }
    fn visit_unit<E: de::Error>(self) -> Result<WireBlock, E> {
        Self::not_an_object()
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<WireBlock, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Self::not_an_object()
    }
}

/// The three fixed details of one field: missing, not a string, wrong content.
struct Details {
    missing: &'static str,
    not_string: &'static str,
    invalid: &'static str,
}

macro_rules! details {
    ($field:literal, $invalid:literal) => {
        Details {
            missing: concat!("payload.block.", $field, " is missing"),
            not_string: concat!("payload.block.", $field, " must be a string"),
            invalid: concat!("payload.block.", $field, " ", $invalid),
        }
    };
}

impl WireBlock {
    fn field(&self, name: &str) -> Option<&Value> {
        let i = FIELDS.iter().position(|f| *f == name).expect("a known field");
        self.values[i].as_ref()
    }

    /// The field's text; `null` counts as absent (some clients write optional fields so).
    fn text(&self, name: &str, d: &Details) -> Result<Option<&str>, MalformedProof> {
        match self.field(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(MalformedProof(d.not_string)),
        }
    }

    fn required(&self, name: &str, d: &Details) -> Result<&str, MalformedProof> {
        self.text(name, d)?.ok_or(MalformedProof(d.missing))
    }

    fn address(&self, name: &str, d: &Details) -> Result<PublicKey, MalformedProof> {
        let text = self.required(name, d)?;
        text.parse::<Address>().map(|a| *a.public_key()).map_err(|_| MalformedProof(d.invalid))
    }

    fn hex32(&self, name: &str, d: &Details) -> Result<[u8; 32], MalformedProof> {
        crate::nano::decode_hex::<32>(self.required(name, d)?).map_err(|_| MalformedProof(d.invalid))
    }

    /// Checks in the block's field order, so the first problem named is stable.
    fn into_block(self) -> Result<HandoffBlock, MalformedProof> {
        if let Some(problem) = self.problem {
            return Err(MalformedProof(problem));
        }
        // The node writes and compares `state` in lower case only.
        if self.required("type", &details!("type", "must be \"state\""))? != "state" {
            return Err(MalformedProof("payload.block.type must be \"state\""));
        }
        let subtype = details!("subtype", "must be \"send\" when present");
        if self.text("subtype", &subtype)?.is_some_and(|s| s != "send") {
            return Err(MalformedProof(subtype.invalid));
        }
        let account = self.address("account", &details!("account", "is not a valid Nano address"))?;
        let previous =
            BlockHash::from_bytes(self.hex32("previous", &details!("previous", "must be 64 hex digits"))?);
        let representative =
            self.address("representative", &details!("representative", "is not a valid Nano address"))?;
        let balance = parse_balance(self.required("balance", &details!("balance", ""))?)?;
        let link = self.hex32("link", &details!("link", "must be 64 hex digits"))?;
        let link_as_account = details!("link_as_account", "is not a valid Nano address");
        let link_as_account = self
            .text("link_as_account", &link_as_account)?
            .map(|s| s.parse::<Address>().map_err(|_| MalformedProof(link_as_account.invalid)))
            .transpose()?;
        let signature = details!("signature", "must be 128 hex digits");
        let signature = Signature::from_hex(self.required("signature", &signature)?)
            .map_err(|_| MalformedProof(signature.invalid))?;
        let work = parse_work(self.required("work", &details!("work", ""))?)?;
        Ok(HandoffBlock {
            block: StateBlock { account, previous, representative, balance, link, signature, work },
            link_as_account,
        })
    }
}

/// A balance is a decimal string of 1 to 39 digits below 2^128 (leading zeros allowed, as the
/// node parses them); a JSON number is refused, it loses precision in most clients.
fn parse_balance(text: &str) -> Result<Raw, MalformedProof> {
    if text.is_empty() || text.len() > 39 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MalformedProof("payload.block.balance must be 1 to 39 decimal digits"));
    }
    text.parse::<Raw>().map_err(|_| MalformedProof("payload.block.balance must be below 2^128"))
}

/// Work is exactly 16 hex digits in either case, the form the node writes.
fn parse_work(text: &str) -> Result<u64, MalformedProof> {
    crate::nano::decode_hex::<8>(text)
        .map(u64::from_be_bytes)
        .map_err(|_| MalformedProof("payload.block.work must be 16 hex digits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real mainnet send of nano-reference §6.2, as the node writes it.
    const MAINNET: &str = r#"{"type": "state",
        "account": "nano_1ipx847tk8o46pwxt5qjdbncjqcbwcc1rrmqnkztrfjy5k7z4imsrata9est",
        "previous": "CE898C131AAEE25E05362F247760F8A3ACF34A9796A5AE0D9204E86B0637965E",
        "representative": "nano_1stofnrxuz3cai7ze75o174bpm7scwj9jn3nxsn8ntzg784jf1gzn1jjdkou",
        "balance": "5606157000000000000000000000000000000",
        "link": "5D1AA8A45F8736519D707FCB375976A7F9AF795091021D7E9C7548D6F45DD8D5",
        "link_as_account": "nano_1qato4k7z3spc8gq1zyd8xeqfbzsoxwo36a45ozbrxcatut7up8ohyardu1z",
        "signature": "82D41BC16F313E4B2243D14DFFA2FB04679C540C2095FEE7EAE0F2F26880AD56DD48D87A7CC5DD760C5B2D76EE2C205506AA557BF00B60D8DEE312EC7343A501",
        "work": "8a142e07a10996d5"}"#;
    const MAINNET_HASH: &str = "87434F8041869A01C8F6F263B87972D7BA443A72E0A97D7A3FD0CCC2358FD6F9";

    fn object() -> serde_json::Map<String, Value> {
        match serde_json::from_str(MAINNET).unwrap() {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn parse(map: &serde_json::Map<String, Value>) -> Result<HandoffBlock, MalformedProof> {
        let text = serde_json::to_string(map).unwrap();
        let from_text = HandoffBlock::from_json(&text);
        // Both entry points agree on every input without repeated keys.
        assert_eq!(from_text, HandoffBlock::from_value(&Value::Object(map.clone())), "{text}");
        from_text
    }

    fn with(key: &str, value: Value) -> Result<HandoffBlock, MalformedProof> {
        let mut map = object();
        map.insert(key.into(), value);
        parse(&map)
    }

    fn err(result: Result<HandoffBlock, MalformedProof>) -> &'static str {
        result.expect_err("must be refused").0
    }

    #[test]
    fn the_mainnet_send_parses_to_its_hash() {
        let parsed = HandoffBlock::from_json(MAINNET).unwrap();
        assert_eq!(parsed.hash().to_string(), MAINNET_HASH);
        assert!(parsed.block.verify_signature());
        assert_eq!(parsed.block.work, 0x8a142e07a10996d5);
        assert_eq!(parsed.block.balance, Raw::new(5606157000000000000000000000000000000));
        assert_eq!(parsed.link_as_account.unwrap().public_key().as_bytes(), &parsed.block.link);
    }

    #[test]
    fn hex_is_accepted_in_either_case_and_means_the_same_block() {
        let reference = HandoffBlock::from_json(MAINNET).unwrap();
        let mut lower = object();
        let mut upper = object();
        for key in ["previous", "link", "signature", "work"] {
            let text = lower[key].as_str().unwrap().to_owned();
            lower.insert(key.into(), text.to_ascii_lowercase().into());
            upper.insert(key.into(), text.to_ascii_uppercase().into());
        }
        assert_eq!(parse(&lower).unwrap(), reference);
        assert_eq!(parse(&upper).unwrap(), reference);
        // Mixed case within one value too.
        assert_eq!(with("work", "8A142e07a10996D5".into()).unwrap(), reference);
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let reference = HandoffBlock::from_json(MAINNET).unwrap();
        let mut map = object();
        map.remove("link_as_account");
        let parsed = parse(&map).unwrap();
        assert_eq!((parsed.block, parsed.link_as_account), (reference.block.clone(), None));
        assert_eq!(with("link_as_account", Value::Null).unwrap().link_as_account, None);
        assert_eq!(with("subtype", "send".into()).unwrap(), reference);
        assert_eq!(with("subtype", Value::Null).unwrap(), reference);
        // xrb_ addresses name the same keys.
        let xrb = with("account", "xrb_1ipx847tk8o46pwxt5qjdbncjqcbwcc1rrmqnkztrfjy5k7z4imsrata9est".into());
        assert_eq!(xrb.unwrap(), reference);
    }

    #[test]
    fn type_and_subtype_are_checked() {
        for bad in ["send", "open", "State", "STATE", ""] {
            assert_eq!(err(with("type", bad.into())), "payload.block.type must be \"state\"", "{bad}");
        }
        assert_eq!(err(with("type", 6.into())), "payload.block.type must be a string");
        for bad in ["receive", "change", "epoch", "open", "Send"] {
            assert_eq!(
                err(with("subtype", bad.into())),
                "payload.block.subtype must be \"send\" when present"
            );
        }
        assert_eq!(err(with("subtype", true.into())), "payload.block.subtype must be a string");
    }

    #[test]
    fn every_required_field_missing_is_named() {
        for (key, detail) in [
            ("type", "payload.block.type is missing"),
            ("account", "payload.block.account is missing"),
            ("previous", "payload.block.previous is missing"),
            ("representative", "payload.block.representative is missing"),
            ("balance", "payload.block.balance is missing"),
            ("link", "payload.block.link is missing"),
            ("signature", "payload.block.signature is missing"),
            ("work", "payload.block.work is missing"),
        ] {
            let mut map = object();
            map.remove(key);
            assert_eq!(err(parse(&map)), detail);
            assert_eq!(err(with(key, Value::Null)), detail, "null is absent");
        }
    }

    #[test]
    fn address_checksums_are_checked() {
        // One character changed in the checksum of each address (`…a9est` -> `…a9esu`).
        let bad = "nano_1ipx847tk8o46pwxt5qjdbncjqcbwcc1rrmqnkztrfjy5k7z4imsrata9esu";
        assert_eq!(err(with("account", bad.into())), "payload.block.account is not a valid Nano address");
        assert_eq!(
            err(with("representative", bad.into())),
            "payload.block.representative is not a valid Nano address"
        );
        assert_eq!(
            err(with("link_as_account", bad.into())),
            "payload.block.link_as_account is not a valid Nano address"
        );
        // The reference's rejected dev-genesis address (nano-node key_is_not_updated_on_checksum_error).
        let node = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtd1";
        assert_eq!(err(with("account", node.into())), "payload.block.account is not a valid Nano address");
        // Addresses are lower case only, as the node writes them.
        let upper = "NANO_1IPX847TK8O46PWXT5QJDBNCJQCBWCC1RRMQNKZTRFJY5K7Z4IMSRATA9EST";
        assert_eq!(err(with("account", upper.into())), "payload.block.account is not a valid Nano address");
        assert_eq!(err(with("account", 1.into())), "payload.block.account must be a string");
    }

    #[test]
    fn hex_lengths_are_exact() {
        let hash = "CE898C131AAEE25E05362F247760F8A3ACF34A9796A5AE0D9204E86B0637965E";
        let sig = "82D41BC16F313E4B2243D14DFFA2FB04679C540C2095FEE7EAE0F2F26880AD56DD48D87A7CC5DD760C5B2D76EE2C205506AA557BF00B60D8DEE312EC7343A501";
        let cases: [(&str, String, &str); 12] = [
            ("previous", hash[..62].into(), "payload.block.previous must be 64 hex digits"),
            ("previous", format!("{hash}00"), "payload.block.previous must be 64 hex digits"),
            ("previous", format!("{}g", &hash[..63]), "payload.block.previous must be 64 hex digits"),
            ("link", hash[..63].into(), "payload.block.link must be 64 hex digits"),
            ("link", format!("0x{}", &hash[..62]), "payload.block.link must be 64 hex digits"),
            ("signature", sig[..126].into(), "payload.block.signature must be 128 hex digits"),
            ("signature", format!("{sig}0"), "payload.block.signature must be 128 hex digits"),
            ("work", "8a142e07a10996d".into(), "payload.block.work must be 16 hex digits"),
            ("work", "8a142e07a10996d5a".into(), "payload.block.work must be 16 hex digits"),
            ("work", "+a142e07a10996d5".into(), "payload.block.work must be 16 hex digits"),
            ("work", "8a142e07a10996dz".into(), "payload.block.work must be 16 hex digits"),
            ("work", " a142e07a10996d5".into(), "payload.block.work must be 16 hex digits"),
        ];
        for (key, value, detail) in cases {
            assert_eq!(err(with(key, value.clone().into())), detail, "{key} = {value:?}");
        }
        assert_eq!(err(with("work", 12345.into())), "payload.block.work must be a string");
    }

    #[test]
    fn balance_is_a_decimal_below_2_128() {
        let max = u128::MAX.to_string();
        assert_eq!(with("balance", max.clone().into()).unwrap().block.balance, Raw::new(u128::MAX));
        assert_eq!(with("balance", "0".into()).unwrap().block.balance, Raw::ZERO);
        assert_eq!(with("balance", "0007".into()).unwrap().block.balance, Raw::new(7));
        // 2^128 and beyond, still 39 digits.
        for big in ["340282366920938463463374607431768211456", "999999999999999999999999999999999999999"] {
            assert_eq!(err(with("balance", big.into())), "payload.block.balance must be below 2^128");
        }
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            "1e30",
            "0x10",
            " 1",
            "1 ",
            "١",
            "1000000000000000000000000000000000000000",
        ] {
            assert_eq!(
                err(with("balance", bad.into())),
                "payload.block.balance must be 1 to 39 decimal digits",
                "{bad:?}"
            );
        }
        assert_eq!(err(with("balance", 5.into())), "payload.block.balance must be a string");
        assert_eq!(
            err(with("balance", serde_json::json!(5606157e30))),
            "payload.block.balance must be a string"
        );
    }

    #[test]
    fn shape_problems_are_refused() {
        for text in ["[]", "\"state\"", "1", "null", "true", "[1, {\"type\": \"state\"}]"] {
            assert_eq!(err(HandoffBlock::from_json(text)), "payload.block must be a JSON object", "{text}");
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(err(HandoffBlock::from_value(&value)), "payload.block must be a JSON object");
        }
        assert_eq!(err(HandoffBlock::from_json("{")), "payload.block is not valid JSON");
        assert_eq!(err(HandoffBlock::from_json(&format!("{MAINNET} x"))), "payload.block is not valid JSON");
        assert_eq!(err(with("hash", MAINNET_HASH.into())), "payload.block has an unknown field");
        assert_eq!(err(with("Signature", "".into())), "payload.block has an unknown field");
        // Repeated keys are ambiguous between parsers: refused when the text shows them.
        let repeated = MAINNET.replace(r#""work": "#, r#""work": "0000000000000000", "work": "#);
        assert_eq!(err(HandoffBlock::from_json(&repeated)), "payload.block repeats a field");
        let long = format!("{{\"type\": \"state\", \"pad\": \"{}\"}}", " ".repeat(MAX_SIGNATURE_HEADER_LEN));
        assert_eq!(err(HandoffBlock::from_json(&long)), "payload.block is too long");
    }

    #[test]
    fn the_payload_object_tolerates_unknown_keys_but_not_two_proofs() {
        let reference = HandoffBlock::from_json(MAINNET).unwrap();
        let payload =
            format!(r#"{{"scheme": "exact", "network": "nano:mainnet", "block": {MAINNET}, "x": [1]}}"#);
        assert_eq!(HandoffBlock::from_payload_json(&payload).unwrap(), reference);
        for other in [r#""proof""#, r#""blockHash""#] {
            let both = format!(r#"{{"block": {MAINNET}, {other}: "{MAINNET_HASH}"}}"#);
            assert_eq!(
                err(HandoffBlock::from_payload_json(&both)),
                "payload.block and payload.proof are mutually exclusive"
            );
        }
        assert_eq!(
            err(HandoffBlock::from_payload_json(r#"{"scheme": "exact"}"#)),
            "payload.block is missing"
        );
        assert_eq!(err(HandoffBlock::from_payload_json("[]")), "payload is not a valid JSON object");
        let bad = format!(r#"{{"block": {}}}"#, MAINNET.replace("\"state\"", "\"send\""));
        assert_eq!(err(HandoffBlock::from_payload_json(&bad)), "payload.block.type must be \"state\"");
        assert_eq!(
            err(HandoffBlock::from_payload_json(r#"{"block": 7}"#)),
            "payload.block must be a JSON object"
        );
    }
}
