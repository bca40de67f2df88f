//! Shared test helpers: the canned node and builders of really signed state blocks in the
//! node's reply shapes.
#![allow(dead_code, unused_imports)]

pub mod canned_node;
pub mod logs;

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
    serde_json::from_str(include_str!("../data/block_info_mainnet_send.json")).unwrap()
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
