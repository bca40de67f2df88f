//! The node's JSON shapes, parsed leniently.
//!
//! Real nodes write every scalar as a JSON string (`"height": "58"`, `"confirmed": "true"`) and
//! empty collections as `""`; proxies sometimes turn scalars into real numbers and booleans. The
//! deserializers here accept all of those, and refuse floating point outright (an amount must
//! never pass through `f64`).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::nano::{Address, BlockHash, Raw, Signature, StateBlock};

/// The reply to `block_info` (reference §6.2).
///
/// Top-level scalars are parsed into their types; the block itself ([`BlockContents`]) is kept
/// as text so a verifier can report exactly which field is malformed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct BlockInfo {
    /// Owner of the chain holding the block.
    #[serde(default, deserialize_with = "lenient::address_opt")]
    pub block_account: Option<Address>,
    /// Absolute balance change against the previous block. The node omits it when it cannot
    /// compute it (for example when the previous block was pruned).
    #[serde(default, deserialize_with = "lenient::raw_opt")]
    pub amount: Option<Raw>,
    /// Balance of the account after this block.
    #[serde(default, deserialize_with = "lenient::raw_opt")]
    pub balance: Option<Raw>,
    /// Position of the block in its chain (1 = open block).
    #[serde(default, deserialize_with = "lenient::u64_opt")]
    pub height: Option<u64>,
    /// Unix seconds when this node stored the block; `0` for blocks older than V18.
    #[serde(default, deserialize_with = "lenient::u64_opt")]
    pub local_timestamp: Option<u64>,
    /// The next block of the chain; 64 zeros at the head.
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub successor: Option<String>,
    /// Whether the block is cemented. Absent counts as unconfirmed.
    #[serde(default, deserialize_with = "lenient::bool_or_false")]
    pub confirmed: bool,
    /// `send`, `receive`, `change` or `epoch` for state blocks; absent for legacy blocks.
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub subtype: Option<String>,
    /// The block itself, whether the node sent it as an object or as a string of JSON.
    #[serde(default, deserialize_with = "lenient::contents")]
    pub contents: BlockContents,
}

impl BlockInfo {
    /// The block's subtype, from the top level or (as in WebSocket messages) from `contents`.
    pub fn subtype(&self) -> Option<&str> {
        self.subtype.as_deref().or(self.contents.subtype.as_deref())
    }

    /// Why this reply is too incomplete to judge the block, or `None` when it is complete.
    ///
    /// A real node always sends `contents` with a `type`, a `local_timestamp`, and for state
    /// blocks a `subtype` and well-formed contents. A reply lacking any of these (`{}`, a proxy
    /// that strips fields, a pruned node's `"unknown"` subtype) says something about the
    /// endpoint, not the block, so [`NanoRpcClient::block_info`](crate::rpc::NanoRpcClient::block_info)
    /// treats it as an endpoint failure and fails over.
    ///
    /// ```
    /// use nanosession::rpc::BlockInfo;
    /// let empty: BlockInfo = serde_json::from_str("{}").unwrap();
    /// assert!(empty.incomplete().is_some());
    /// ```
    pub fn incomplete(&self) -> Option<&'static str> {
        let Some(block_type) = self.contents.block_type.as_deref().filter(|t| !t.is_empty()) else {
            return Some("block_info reply without contents or contents type");
        };
        if self.local_timestamp.is_none() {
            return Some("block_info reply without local_timestamp");
        }
        if block_type == "state" {
            match self.subtype() {
                None | Some("") => return Some("block_info reply for a state block without subtype"),
                // A pruned node cannot tell the subtype: that is not a verdict on the block.
                Some("unknown") => return Some("block_info reply with subtype \"unknown\""),
                Some(_) => {}
            }
            if let Err(e) = self.contents.to_state_block() {
                return Some(e.0);
            }
        }
        None
    }
}

/// The `contents` of a block as the node wrote them, every field as text.
///
/// Legacy blocks carry other fields (`source`, `destination`, ...), so everything is optional;
/// [`BlockContents::to_state_block`] checks that a state block is complete and well-formed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct BlockContents {
    /// `state` for every current block; `send`, `receive`, `open`, `change` for legacy ones.
    #[serde(rename = "type", default, deserialize_with = "lenient::string_opt")]
    pub block_type: Option<String>,
    /// Owner of the chain and signer of the block (an address).
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub account: Option<String>,
    /// Previous block hash (64 hex), zeros for an open block.
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub previous: Option<String>,
    /// Representative after this block (an address).
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub representative: Option<String>,
    /// Balance after this block (decimal raw for state blocks).
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub balance: Option<String>,
    /// Destination key of a send, source hash of a receive (64 hex).
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub link: Option<String>,
    /// `link` rendered as an address; informational only, never compared.
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub link_as_account: Option<String>,
    /// Signature of the block hash (128 hex).
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub signature: Option<String>,
    /// Proof-of-work nonce (16 hex).
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub work: Option<String>,
    /// Present in WebSocket notifications; `block_info` puts `subtype` at the top level.
    #[serde(default, deserialize_with = "lenient::string_opt")]
    pub subtype: Option<String>,
}

/// Why [`BlockContents`] do not make a valid state block. The text names the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed block contents: {0}")]
pub struct ContentsError(pub &'static str);

impl BlockContents {
    /// `link` decoded as 32 bytes (either hex case).
    pub fn link_bytes(&self) -> Result<[u8; 32], ContentsError> {
        let link = self.link.as_deref().ok_or(ContentsError("link is missing"))?;
        crate::nano::decode_hex::<32>(link).map_err(|_| ContentsError("link is not 64 hex digits"))
    }

    /// `account` parsed as an address.
    pub fn account_address(&self) -> Result<Address, ContentsError> {
        self.account
            .as_deref()
            .ok_or(ContentsError("account is missing"))?
            .parse()
            .map_err(|_| ContentsError("account is not a valid address"))
    }

    /// `previous` parsed as a block hash.
    pub fn previous_hash(&self) -> Result<BlockHash, ContentsError> {
        self.previous
            .as_deref()
            .ok_or(ContentsError("previous is missing"))?
            .parse()
            .map_err(|_| ContentsError("previous is not 64 hex digits"))
    }

    /// `balance` parsed as a decimal raw amount (state blocks only; legacy sends use hex).
    pub fn balance_raw(&self) -> Result<Raw, ContentsError> {
        self.balance
            .as_deref()
            .ok_or(ContentsError("balance is missing"))?
            .parse()
            .map_err(|_| ContentsError("balance is not a decimal raw amount"))
    }

    /// Parses every hashed field, the signature and the work into a [`StateBlock`].
    ///
    /// Does not check `type`; callers check it first.
    pub fn to_state_block(&self) -> Result<StateBlock, ContentsError> {
        let representative: Address = self
            .representative
            .as_deref()
            .ok_or(ContentsError("representative is missing"))?
            .parse()
            .map_err(|_| ContentsError("representative is not a valid address"))?;
        let signature = self.signature.as_deref().ok_or(ContentsError("signature is missing"))?;
        let signature =
            Signature::from_hex(signature).map_err(|_| ContentsError("signature is not 128 hex digits"))?;
        let work = self.work.as_deref().ok_or(ContentsError("work is missing"))?;
        let work = crate::nano::work::parse_hex(work).ok_or(ContentsError("work is not hex"))?;
        Ok(StateBlock {
            account: *self.account_address()?.public_key(),
            previous: self.previous_hash()?,
            representative: *representative.public_key(),
            balance: self.balance_raw()?,
            link: self.link_bytes()?,
            signature,
            work,
        })
    }
}

/// The reply to `block_confirm`: `{"started": "1"}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct BlockConfirmReply {
    /// Confirmation was started or re-announced (not achieved).
    #[serde(default, deserialize_with = "lenient::bool_or_false")]
    pub started: bool,
}

/// Lenient field deserializers, usable with `#[serde(deserialize_with = ...)]`.
pub mod lenient {
    use super::{de, fmt, Address, BlockContents, Deserialize, Deserializer, MapAccess, Raw, Visitor};

    /// Any JSON scalar the node or a proxy may send.
    enum Scalar {
        Str(String),
        Unsigned(u128),
        Signed(i64),
        Bool(bool),
        Null,
    }

    struct ScalarVisitor;

    impl<'de> Visitor<'de> for ScalarVisitor {
        type Value = Scalar;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, an integer or a boolean")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
            Ok(Scalar::Str(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
            Ok(Scalar::Str(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
            Ok(Scalar::Unsigned(v.into()))
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Scalar, E> {
            Ok(Scalar::Unsigned(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
            Ok(Scalar::Signed(v))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar, E> {
            // A float has already lost precision; an exact amount cannot be recovered from it.
            Err(E::custom("floating-point numbers are not accepted"))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
            Ok(Scalar::Bool(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
            Ok(Scalar::Null)
        }
        fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
            Ok(Scalar::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
            d.deserialize_any(ScalarVisitor)
        }
    }

    fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }

    /// A string, or a number or boolean rendered as one; `null` is `None`.
    pub fn string_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match scalar(d)? {
            Scalar::Str(s) => Some(s),
            Scalar::Unsigned(n) => Some(n.to_string()),
            Scalar::Signed(n) => Some(n.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Null => None,
        })
    }

    /// A `u64` written as a decimal string or a number.
    pub fn u64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match scalar(d)? {
            Scalar::Str(s) => decimal(&s)
                .and_then(|n| u64::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| de::Error::custom("expected a decimal u64")),
            Scalar::Unsigned(n) => {
                u64::try_from(n).map(Some).map_err(|_| de::Error::custom("expected a u64"))
            }
            Scalar::Null => Ok(None),
            _ => Err(de::Error::custom("expected a decimal u64")),
        }
    }

    /// A raw amount written as a decimal string (1 to 39 digits) or an integer.
    pub fn raw_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Raw>, D::Error> {
        match scalar(d)? {
            Scalar::Str(s) => {
                s.parse::<Raw>().map(Some).map_err(|_| de::Error::custom("expected a decimal raw amount"))
            }
            Scalar::Unsigned(n) => Ok(Some(Raw::new(n))),
            Scalar::Null => Ok(None),
            _ => Err(de::Error::custom("expected a decimal raw amount")),
        }
    }

    /// `"true"`/`"false"`, `"1"`/`"0"`, a boolean, or `1`/`0`; absent or `null` is `false`.
    pub fn bool_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match scalar(d)? {
            Scalar::Bool(b) => Ok(b),
            Scalar::Str(s) if s == "true" || s == "1" => Ok(true),
            Scalar::Str(s) if s == "false" || s == "0" => Ok(false),
            Scalar::Unsigned(1) | Scalar::Signed(1) => Ok(true),
            Scalar::Unsigned(0) | Scalar::Signed(0) => Ok(false),
            Scalar::Null => Ok(false),
            _ => Err(de::Error::custom("expected a boolean")),
        }
    }

    /// An address; `null` is `None`.
    pub fn address_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Address>, D::Error> {
        match string_opt(d)? {
            Some(s) => s.parse().map(Some).map_err(de::Error::custom),
            None => Ok(None),
        }
    }

    /// A collection that the node writes as `""` when it is empty.
    pub fn empty_string_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default,
    {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OrEmpty<T> {
            Empty(EmptyString),
            Value(T),
        }
        struct EmptyString;
        impl<'de> Deserialize<'de> for EmptyString {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                if s.is_empty() {
                    Ok(EmptyString)
                } else {
                    Err(de::Error::custom("expected an empty string"))
                }
            }
        }
        Ok(match OrEmpty::<T>::deserialize(d)? {
            OrEmpty::Empty(_) => T::default(),
            OrEmpty::Value(v) => v,
        })
    }

    /// Block contents as an object, or as a string holding JSON (when `json_block` was not
    /// honoured). `null` and `""` give empty contents.
    pub fn contents<'de, D: Deserializer<'de>>(d: D) -> Result<BlockContents, D::Error> {
        struct ContentsVisitor;
        impl<'de> Visitor<'de> for ContentsVisitor {
            type Value = BlockContents;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("block contents as an object or a JSON string")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<BlockContents, A::Error> {
                BlockContents::deserialize(de::value::MapAccessDeserializer::new(map))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BlockContents, E> {
                if v.is_empty() {
                    // The node's spelling of an empty object.
                    return Ok(BlockContents::default());
                }
                serde_json::from_str(v).map_err(|e| E::custom(format!("contents string: {e}")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<BlockContents, E> {
                Ok(BlockContents::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<BlockContents, E> {
                Ok(BlockContents::default())
            }
        }
        d.deserialize_any(ContentsVisitor)
    }

    /// Digits only (no sign, no spaces), at most 39 of them, fitting in `u128`.
    fn decimal(s: &str) -> Option<u128> {
        if s.is_empty() || s.len() > 39 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real mainnet send of reference §6.2, as a node answers `block_info` for it.
    const MAINNET: &str = include_str!("../../tests/data/block_info_mainnet_send.json");

    fn hash(s: &str) -> BlockHash {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_mainnet_reply() {
        let info: BlockInfo = serde_json::from_str(MAINNET).unwrap();
        assert_eq!(info.amount, Some(Raw::new(30_000 * 10u128.pow(30))));
        assert_eq!(info.height, Some(58));
        assert_eq!(info.local_timestamp, Some(0));
        assert!(info.confirmed);
        assert_eq!(info.subtype(), Some("send"));
        let block = info.contents.to_state_block().unwrap();
        assert_eq!(block.hash(), hash("87434F8041869A01C8F6F263B87972D7BA443A72E0A97D7A3FD0CCC2358FD6F9"));
        assert!(block.verify_signature());
        assert_eq!(block.work, 0x8a142e07a10996d5);
    }

    #[test]
    fn contents_as_a_json_string() {
        let mut v: serde_json::Value = serde_json::from_str(MAINNET).unwrap();
        let contents = v["contents"].to_string();
        v["contents"] = serde_json::Value::String(contents);
        let info: BlockInfo = serde_json::from_value(v).unwrap();
        assert_eq!(info.contents.block_type.as_deref(), Some("state"));
        assert!(info.contents.to_state_block().unwrap().verify_signature());
    }

    #[test]
    fn numeric_and_boolean_scalars() {
        let info: BlockInfo = serde_json::from_str(
            r#"{"amount": 1000000, "height": 58, "local_timestamp": 1700000000,
                "confirmed": true, "contents": {"type": "state", "balance": 5}}"#,
        )
        .unwrap();
        assert_eq!(info.amount, Some(Raw::new(1_000_000)));
        assert_eq!(info.local_timestamp, Some(1_700_000_000));
        assert!(info.confirmed);
        assert_eq!(info.contents.balance_raw(), Ok(Raw::new(5)));
    }

    #[test]
    fn refuses_floats_and_junk() {
        for bad in [
            r#"{"amount": 1.5}"#,
            r#"{"amount": 3e35}"#,
            // Beyond u64 a JSON number is already a float: refused rather than rounded.
            r#"{"amount": 30000000000000000000000000000000000}"#,
            r#"{"amount": "-1"}"#,
            r#"{"amount": "1 000"}"#,
            r#"{"height": "58.0"}"#,
            r#"{"confirmed": "yes"}"#,
            r#"{"contents": 5}"#,
            r#"{"contents": "{not json"}"#,
        ] {
            assert!(serde_json::from_str::<BlockInfo>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn absent_fields_and_confirm_reply() {
        let info: BlockInfo = serde_json::from_str(r#"{"confirmed": "false", "contents": ""}"#).unwrap();
        assert_eq!(info.amount, None);
        assert!(!info.confirmed);
        assert_eq!(info.contents.to_state_block(), Err(ContentsError("representative is missing")));
        let r: BlockConfirmReply = serde_json::from_str(r#"{"started": "1"}"#).unwrap();
        assert!(r.started);
    }

    #[test]
    fn empty_string_collections() {
        #[derive(Deserialize)]
        struct Reply {
            #[serde(deserialize_with = "lenient::empty_string_as_default")]
            blocks: Vec<String>,
        }
        let r: Reply = serde_json::from_str(r#"{"blocks": ""}"#).unwrap();
        assert!(r.blocks.is_empty());
        let r: Reply = serde_json::from_str(r#"{"blocks": ["AB"]}"#).unwrap();
        assert_eq!(r.blocks, ["AB"]);
        assert!(serde_json::from_str::<Reply>(r#"{"blocks": "x"}"#).is_err());
    }

    #[test]
    fn malformed_contents_fields_are_named() {
        let mut info: BlockInfo = serde_json::from_str(MAINNET).unwrap();
        info.contents.signature = Some("zz".into());
        assert_eq!(info.contents.to_state_block(), Err(ContentsError("signature is not 128 hex digits")));
        info.contents.link = Some("5D1A".into());
        assert_eq!(info.contents.link_bytes(), Err(ContentsError("link is not 64 hex digits")));
    }
}

/// The reply to `account_info` with `"representative": "true"` (reference §6.3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct AccountInfo {
    /// Newest block of the account (possibly unconfirmed): the `previous` of its next block.
    #[serde(deserialize_with = "lenient::string_opt")]
    pub frontier: Option<String>,
    /// Balance after the frontier.
    #[serde(default, deserialize_with = "lenient::raw_opt")]
    pub balance: Option<Raw>,
    /// Current representative (present when asked for with `"representative": "true"`).
    #[serde(default, deserialize_with = "lenient::address_opt")]
    pub representative: Option<Address>,
    /// Account epoch: `"2"` means epoch-2 work thresholds.
    #[serde(default, deserialize_with = "lenient::u64_opt")]
    pub account_version: Option<u64>,
}

/// The reply to `process`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct ProcessReply {
    #[serde(deserialize_with = "lenient::string_opt")]
    pub hash: Option<String>,
}

/// The reply to `work_generate`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct WorkGenerateReply {
    #[serde(deserialize_with = "lenient::string_opt")]
    pub work: Option<String>,
}

/// The reply to `receivable` with `"source": "true"` (or a threshold): hash -> details.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct ReceivableReply {
    #[serde(default, deserialize_with = "lenient::empty_string_as_default")]
    pub blocks: std::collections::BTreeMap<String, ReceivableEntry>,
}

/// One receivable send.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ReceivableEntry {
    /// `{"amount": …, "source": …}` (with `"source": "true"`).
    Detailed {
        #[serde(deserialize_with = "lenient::raw_opt")]
        amount: Option<Raw>,
    },
    /// Just the amount (with a threshold).
    Amount(#[serde(deserialize_with = "lenient::raw_opt")] Option<Raw>),
}

impl ReceivableEntry {
    pub(crate) fn amount(&self) -> Option<Raw> {
        match self {
            ReceivableEntry::Detailed { amount } | ReceivableEntry::Amount(amount) => *amount,
        }
    }
}

/// A `confirmation` message from the node's WebSocket (reference §7) with its block included:
/// what the watcher acts on. Anything else the socket sends (acks, other topics, malformed
/// text) parses to `None`.
///
/// ```
/// use nanosession::rpc::ConfirmationNotification;
/// assert!(ConfirmationNotification::parse(r#"{"ack": "subscribe"}"#).is_none());
/// assert!(ConfirmationNotification::parse("not json").is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfirmationNotification {
    /// The confirmed block's hash as the node states it (a verifier recomputes it).
    pub hash: BlockHash,
    /// The block as the node wrote it.
    pub contents: BlockContents,
    /// `sideband.local_timestamp`: when this node first saw the block (unix seconds).
    pub local_timestamp: Option<u64>,
}

impl ConfirmationNotification {
    /// Parses one WebSocket text message.
    pub fn parse(text: &str) -> Option<ConfirmationNotification> {
        #[derive(Deserialize)]
        struct Note {
            topic: String,
            message: NoteMessage,
        }
        #[derive(Deserialize)]
        struct NoteMessage {
            hash: String,
            block: Option<BlockContents>,
            sideband: Option<Sideband>,
        }
        #[derive(Deserialize)]
        struct Sideband {
            local_timestamp: Option<String>,
        }
        let note: Note = serde_json::from_str(text).ok()?;
        if note.topic != "confirmation" {
            return None;
        }
        Some(ConfirmationNotification {
            hash: note.message.hash.parse().ok()?,
            contents: note.message.block?,
            local_timestamp: note.message.sideband.and_then(|s| s.local_timestamp?.parse().ok()),
        })
    }
}

/// A state block as the node writes it in `contents` and reads it in `process`: addresses with
/// `nano_`, hashes and keys in upper-case hex, work as 16 lower-case hex digits.
pub fn block_json(block: &StateBlock) -> serde_json::Value {
    use crate::nano::PublicKey;
    serde_json::json!({
        "type": "state",
        "account": Address::from(block.account).to_string(),
        "previous": block.previous.to_string(),
        "representative": Address::from(block.representative).to_string(),
        "balance": block.balance.to_string(),
        "link": hex::encode_upper(block.link),
        "link_as_account": Address::from(PublicKey::from_bytes(block.link)).to_string(),
        "signature": block.signature.to_string(),
        "work": crate::nano::work::to_hex(block.work),
    })
}
