//! The hand-off foundation (spec §9 steps 1, 4–6 and 8) through the public API: a block as a
//! client would hand it over, in the node's JSON form, parsed, verified locally and checked
//! against the account state; and how the headers of a hand-off are read.

use std::sync::atomic::AtomicBool;

use base64::Engine as _;
use http::HeaderMap;
use nanosession::mock_node::WorkThresholds;
use nanosession::nano::{work, Address, BlockHash, PrivateKey, Raw, StateBlock};
use nanosession::protocol::{HandoffBlock, PaidRetry, Proof, ProofForm, Reason, SessionRef};
use nanosession::rpc::block_json;
use nanosession::verify::handoff::{
    check_ledger, verify_local, AccountState, HandoffExpected, HandoffRejection,
};
use serde_json::{json, Value};

const PRICE: u128 = 1_000_000_000_000_000_000_000_000; // 1 µXNO in raw
const TAG: u128 = 4_321;
const BEFORE: u128 = 7 * PRICE;

struct Fixture {
    merchant: Address,
    frontier: BlockHash,
    expected: HandoffExpected,
}

fn fixture() -> Fixture {
    let merchant = Address::from(PrivateKey::from_bytes([2; 32]).public_key());
    Fixture {
        merchant,
        frontier: BlockHash::from_bytes([0xab; 32]),
        expected: HandoffExpected {
            pay_to: merchant,
            amount: Raw::new(PRICE + TAG),
            // The mock node's send threshold: what tests and the demo configure.
            work_threshold: WorkThresholds::DEV.epoch_2,
        },
    }
}

/// The node JSON of a real signed send of `amount` with dev work, as a wallet would build it.
fn handed_over(f: &Fixture, amount: u128) -> Value {
    let payer = PrivateKey::from_bytes([1; 32]);
    let mut block = StateBlock::send(
        payer.public_key(),
        f.frontier,
        payer.public_key(),
        Raw::new(BEFORE - amount),
        f.merchant.public_key(),
    );
    block.sign(&payer);
    block.work = work::generate(&block.work_root(), work::DEV_EPOCH_2, &AtomicBool::new(false)).unwrap();
    block_json(&block)
}

#[test]
fn a_wallet_block_parses_verifies_and_matches_the_ledger() {
    let f = fixture();
    let json = handed_over(&f, PRICE + TAG);
    // Clients write hex in lower case and add nothing the node would not accept.
    let mut lower = json.clone();
    for key in ["previous", "link", "signature"] {
        lower[key] = lower[key].as_str().unwrap().to_ascii_lowercase().into();
    }
    let text = serde_json::to_string(&lower).unwrap();
    let handed = HandoffBlock::from_json(&text).unwrap();
    assert_eq!(handed, HandoffBlock::from_value(&json).unwrap());
    // The node form round-trips to the very block (what the layer will publish).
    assert_eq!(block_json(&handed.block), json);

    let local = verify_local(&handed, &f.expected).unwrap();
    assert_eq!(local.hash, handed.hash());
    assert_eq!(local.previous, f.frontier);
    let state = AccountState { frontier: f.frontier, balance: Raw::new(BEFORE) };
    assert_eq!(check_ledger(&handed, Some(&state), &f.expected), Ok(Raw::new(PRICE + TAG)));
}

#[test]
fn an_amount_off_by_one_either_way_is_wrong_amount() {
    let f = fixture();
    let state = AccountState { frontier: f.frontier, balance: Raw::new(BEFORE) };
    for amount in [PRICE + TAG - 1, PRICE + TAG + 1, PRICE] {
        let handed = HandoffBlock::from_value(&handed_over(&f, amount)).unwrap();
        // Everything local holds: only the ledger shows the amount.
        verify_local(&handed, &f.expected).unwrap();
        let err = check_ledger(&handed, Some(&state), &f.expected).unwrap_err();
        assert_eq!((err, err.reason()), (HandoffRejection::WrongAmount, Reason::WrongAmount), "{amount}");
    }
}

#[test]
fn every_rejection_maps_to_a_402_payment_failure() {
    for (rejection, code) in [
        (HandoffRejection::InvalidBlock("x"), "invalid_block"),
        (HandoffRejection::WrongDestination, "wrong_destination"),
        (HandoffRejection::InsufficientWork, "insufficient_work"),
        (HandoffRejection::FrontierMismatch, "frontier_mismatch"),
        (HandoffRejection::WrongBlockType, "wrong_block_type"),
        (HandoffRejection::WrongAmount, "wrong_amount"),
    ] {
        let reason = rejection.reason();
        assert_eq!(reason.code(), code);
        assert_eq!(reason.status(), http::StatusCode::PAYMENT_REQUIRED);
        assert_eq!(reason.grpc_code(), 8, "{code}");
        assert!(!reason.fresh_challenge(), "{code}: the session is kept, no new challenge");
    }
    assert_eq!(Reason::PaymentInFlight.retry_after_secs(), Some(2));
    assert_eq!(Reason::PaymentInFlight.status(), http::StatusCode::PAYMENT_REQUIRED);
}

fn signature_header(payment: &Value) -> http::HeaderValue {
    base64::engine::general_purpose::STANDARD.encode(payment.to_string()).parse().unwrap()
}

fn payment(f: &Fixture, extra: Value, payload: Value) -> Value {
    json!({
        "x402Version": 2,
        "resource": {"url": "http://localhost/paid"},
        "accepted": {
            "scheme": "exact", "network": "nano:mainnet", "amount": (PRICE + TAG).to_string(),
            "asset": "XNO", "payTo": f.merchant.to_string(), "maxTimeoutSeconds": 60,
            "extra": extra,
        },
        "payload": payload,
    })
}

const ID: &str = "9f86d081884c7d659a2feaa0c55ad015";

/// `payload.block` is read as a hand-off: by the echoed session id, else by the echoed amount
/// (a lookup key only), from `PAYMENT-SIGNATURE` or the same payload in x402 v1's `X-PAYMENT`.
#[test]
fn payload_block_is_read_as_a_handoff() {
    let f = fixture();
    let block = handed_over(&f, PRICE + TAG);
    let hash = HandoffBlock::from_value(&block).unwrap().hash();
    let by_id = payment(&f, json!({"nanoSession": {"id": ID}}), json!({"block": block}));
    let mut headers = HeaderMap::new();
    headers.insert("payment-signature", signature_header(&by_id));
    let Some(PaidRetry::Handoff(h)) = PaidRetry::from_headers(&headers).unwrap() else {
        panic!("a hand-off")
    };
    assert_eq!(h.session, SessionRef::Id(ID.parse().unwrap()));
    assert_eq!((h.block.hash(), h.form), (hash, ProofForm::X402));
    assert!(Proof::from_headers(&headers).is_err(), "not a published block's proof");

    let by_amount = payment(&f, json!({}), json!({"block": block, "scheme": "exact"}));
    let mut headers = HeaderMap::new();
    headers.insert("x-payment", signature_header(&by_amount));
    let Some(PaidRetry::Handoff(h)) = PaidRetry::from_headers(&headers).unwrap() else {
        panic!("a hand-off")
    };
    assert_eq!(h.session, SessionRef::Amount(Raw::new(PRICE + TAG)), "no id echoed: found by amount");
    assert_eq!(h.form, ProofForm::XPayment);

    // The same value in both headers is fine; one naming another block is malformed.
    headers.insert("payment-signature", signature_header(&by_amount));
    assert!(PaidRetry::from_headers(&headers).unwrap().is_some());
    let other = payment(&f, json!({}), json!({"block": handed_over(&f, PRICE + TAG + 1)}));
    headers.insert("x-payment", signature_header(&other));
    assert_eq!(PaidRetry::from_headers(&headers).unwrap_err().0, "X-PAYMENT and PAYMENT-SIGNATURE disagree");
}

#[test]
fn malformed_handoffs_are_refused_with_a_reason() {
    let f = fixture();
    let block = handed_over(&f, PRICE + TAG);
    let cases = [
        (
            payment(&f, json!({}), json!({"block": block, "proof": "00"})),
            "payload.block and payload.proof are mutually exclusive",
        ),
        (
            payment(&f, json!({"nanoSession": {"id": "nothex"}}), json!({"block": block})),
            "accepted.extra.nanoSession.id must be 32 hex digits",
        ),
        (payment(&f, json!({}), json!({"block": {"type": "send"}})), "payload.block.type must be \"state\""),
    ];
    for (payment, detail) in cases {
        let mut headers = HeaderMap::new();
        headers.insert("payment-signature", signature_header(&payment));
        assert_eq!(PaidRetry::from_headers(&headers).unwrap_err().0, detail);
    }
    let mut no_amount = payment(&f, json!({}), json!({"block": block}));
    no_amount["accepted"].as_object_mut().unwrap().remove("amount");
    let mut headers = HeaderMap::new();
    headers.insert("payment-signature", signature_header(&no_amount));
    assert_eq!(
        PaidRetry::from_headers(&headers).unwrap_err().0,
        "a hand-off needs accepted.extra.nanoSession.id or accepted.amount"
    );
    // Rev 5 headers naming another block than the hand-off's computed hash.
    let mut headers = HeaderMap::new();
    headers.insert(
        "payment-signature",
        signature_header(&payment(&f, json!({"nanoSession": {"id": ID}}), json!({"block": block}))),
    );
    headers.insert("x-payment-session", ID.parse().unwrap());
    headers.insert("x-payment-block", f.frontier.to_string().parse().unwrap());
    assert_eq!(
        PaidRetry::from_headers(&headers).unwrap_err().0,
        "X-PAYMENT-* and PAYMENT-SIGNATURE disagree"
    );
}
