//! `PAYMENT-RESPONSE` as a client reads it: never a panic, and what decodes re-encodes to the
//! same receipt.
#![no_main]

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use nanosession::protocol::headers::PAYMENT_RESPONSE;
use nanosession::protocol::SettlementResponse;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let headers = common::headers(data, &PAYMENT_RESPONSE);
    for value in headers.get_all(PAYMENT_RESPONSE) {
        check(value);
    }
});

fn check(value: &HeaderValue) {
    if let Some(receipt) = SettlementResponse::from_header(value) {
        assert_eq!(SettlementResponse::from_header(&receipt.to_header()).as_ref(), Some(&receipt));
    }
}
