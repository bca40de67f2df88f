//! Shared test helpers: the canned node and builders of really signed state blocks in the
//! node's reply shapes.
#![allow(dead_code, unused_imports)]

pub mod canned_node;

use std::time::{SystemTime, UNIX_EPOCH};

use nanosession::nano::{Address, BlockHash, PrivateKey, PublicKey, Raw, StateBlock};
use serde_json::{json, Value};

pub use canned_node::{CannedNode, Fault, Recorded};

/// The real mainnet send of reference §6.2, verbatim as a node sends it.
pub const MAINNET_SEND_HASH: &str = "87434F8041869A01C8F6F263B87972D7BA443A72E0A97D7A3FD0CCC2358FD6F9";
/// Its destination (the `link` as an address).
pub const MAINNET_SEND_DESTINATION: &str =
    "nano_1qato4k7z3spc8gq1zyd8xeqfbzsoxwo36a45ozbrxcatut7up8ohyardu1z";
/// Its sender.
pub const MAINNET_SEND_ACCOUNT: &str = "nano_1ipx847tk8o46pwxt5qjdbncjqcbwcc1rrmqnkztrfjy5k7z4imsrata9est";
/// Its amount in raw (30,000 XNO).
pub const MAINNET_SEND_AMOUNT: u128 = 30_000_000_000_000_000_000_000_000_000_000_000;

/// The §6.2 `block_info` reply.
pub fn mainnet_send_reply() -> Value {
    serde_json::from_str(
        r#"{ "block_account": "nano_1ipx847tk8o46pwxt5qjdbncjqcbwcc1rrmqnkztrfjy5k7z4imsrata9est",
  "amount": "30000000000000000000000000000000000", "balance": "5606157000000000000000000000000000000", "height": "58",
  "local_timestamp": "0", "successor": "8D3AB98B301224253750D448B4BD997132400CEDD0A8432F775724F2D9821C72", "confirmed": "true",
  "contents": { "type": "state",
    "account": "nano_1ipx847tk8o46pwxt5qjdbncjqcbwcc1rrmqnkztrfjy5k7z4imsrata9est",
    "previous": "CE898C131AAEE25E05362F247760F8A3ACF34A9796A5AE0D9204E86B0637965E",
    "representative": "nano_1stofnrxuz3cai7ze75o174bpm7scwj9jn3nxsn8ntzg784jf1gzn1jjdkou",
    "balance": "5606157000000000000000000000000000000",
    "link": "5D1AA8A45F8736519D707FCB375976A7F9AF795091021D7E9C7548D6F45DD8D5",
    "link_as_account": "nano_1qato4k7z3spc8gq1zyd8xeqfbzsoxwo36a45ozbrxcatut7up8ohyardu1z",
    "signature": "82D41BC16F313E4B2243D14DFFA2FB04679C540C2095FEE7EAE0F2F26880AD56DD48D87A7CC5DD760C5B2D76EE2C205506AA557BF00B60D8DEE312EC7343A501",
    "work": "8a142e07a10996d5" },
  "subtype": "send" }"#,
    )
    .unwrap()
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A signed state block sending from `payer` to `to`, leaving `balance_after`.
pub fn signed_send(
    payer: &PrivateKey,
    previous: BlockHash,
    balance_after: Raw,
    to: &PublicKey,
) -> StateBlock {
    let mut block = StateBlock {
        account: payer.public_key(),
        previous,
        representative: payer.public_key(),
        balance: balance_after,
        link: *to.as_bytes(),
        signature: Default::default(),
        work: 0x0123_4567_89ab_cdef,
    };
    block.sign(payer);
    block
}

/// `contents` as the node writes a state block (the crate's own writer, also used by `process`).
pub fn contents_json(block: &StateBlock) -> Value {
    nanosession::rpc::block_json(block)
}

/// A `block_info` reply for `block`, every scalar a string as a real node writes it.
pub fn block_info_reply(
    block: &StateBlock,
    amount: Option<Raw>,
    local_timestamp: u64,
    confirmed: bool,
) -> Value {
    let mut reply = json!({
        "block_account": Address::from(block.account).to_string(),
        "balance": block.balance.to_string(),
        "height": "2",
        "local_timestamp": local_timestamp.to_string(),
        "successor": "0000000000000000000000000000000000000000000000000000000000000000",
        "confirmed": if confirmed { "true" } else { "false" },
        "contents": contents_json(block),
        "subtype": "send",
    });
    if let Some(amount) = amount {
        reply["amount"] = json!(amount.to_string());
    }
    reply
}

/// A URL on which nothing listens: a port that was bound, then released.
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/")
}
pub mod fake;
pub mod proxy;
