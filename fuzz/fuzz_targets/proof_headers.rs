//! A paid retry's headers (Rev 5 pair, `PAYMENT-SIGNATURE`, `X-PAYMENT`): never a panic, and
//! `Proof::from_headers` agrees with `PaidRetry::from_headers`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nanosession::protocol::headers::PAYMENT_SIGNATURE;
use nanosession::protocol::{PaidRetry, Proof};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let headers = common::headers(data, &PAYMENT_SIGNATURE);
    let retry = PaidRetry::from_headers(&headers);
    let proof = Proof::from_headers(&headers);
    match (&retry, &proof) {
        (Ok(None), Ok(None)) => {}
        (Ok(Some(PaidRetry::Published(a))), Ok(Some(b))) => assert_eq!(a, b),
        (Ok(Some(PaidRetry::Handoff(handoff))), Err(_)) => {
            // What the verifier computes first from a handed-over block.
            let _ = handoff.block.hash();
        }
        (Ok(Some(PaidRetry::Session(_))), Err(_)) => {}
        (Err(a), Err(b)) => assert_eq!(a, b),
        other => panic!("PaidRetry and Proof disagree: {other:?}"),
    }
});
