//! A 402's challenge as a client reads it: never a panic, and every offer naming a session can
//! be answered with proof headers the server's own reader accepts for that session.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nanosession::nano::BlockHash;
use nanosession::protocol::headers::PAYMENT_REQUIRED;
use nanosession::protocol::{Offer, PaidRetry};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let headers = common::headers(data, &PAYMENT_REQUIRED);
    let Ok(offer) = Offer::from_headers(&headers) else { return };
    let _ = offer.seconds_left();
    let Some(session) = offer.session else { return };
    let block: BlockHash =
        "87434F8041869A01C8F6F263B87972D7BA443A72E0A97D7A3FD0CCC2358FD6F9".parse().unwrap();
    for x402 in [false, true] {
        match PaidRetry::from_headers(&offer.proof_headers(&block, x402)) {
            Ok(Some(PaidRetry::Published(proof))) => {
                assert_eq!((proof.session, proof.block), (session, block), "x402 = {x402}")
            }
            other => panic!("the proof for {offer:?} (x402 = {x402}) reads back as {other:?}"),
        }
    }
});
