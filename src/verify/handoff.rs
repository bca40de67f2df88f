//! The local half of verifying a handed-over block (spec §9): every check that needs no node,
//! plus the arithmetic of step 8 on the account state the caller fetched. Pure: no I/O, no
//! clock, no store.
//!
//! The caller's order is §9's: parse ([`HandoffBlock`]), find the session, look the computed
//! hash ([`HandoffBlock::hash`]) up in the spent set, then [`verify_local`] (steps 4–6), claim,
//! fetch `account_info` and [`check_ledger`] (step 8), and only then publish.
//!
//! ```
//! use nanosession::nano::{work, Address, BlockHash, PrivateKey, Raw, StateBlock};
//! use nanosession::protocol::HandoffBlock;
//! use nanosession::verify::handoff::{check_ledger, verify_local, AccountState, HandoffExpected};
//! use std::sync::atomic::AtomicBool;
//!
//! let payer = PrivateKey::from_bytes([1; 32]);
//! let merchant = Address::from(PrivateKey::from_bytes([2; 32]).public_key());
//! let frontier = BlockHash::from_bytes([3; 32]);
//! // The payer holds 100 raw and sends 30.
//! let mut block = StateBlock::send(payer.public_key(), frontier, payer.public_key(), Raw::new(70), merchant.public_key());
//! block.sign(&payer);
//! block.work = work::generate(&block.work_root(), work::DEV_EPOCH_2, &AtomicBool::new(false)).unwrap();
//! let handed = HandoffBlock { block, link_as_account: None };
//!
//! let expected = HandoffExpected { pay_to: merchant, amount: Raw::new(30), work_threshold: work::DEV_EPOCH_2 };
//! let local = verify_local(&handed, &expected)?;
//! assert_eq!(local.hash, handed.hash());
//! let state = AccountState { frontier, balance: Raw::new(100) };
//! assert_eq!(check_ledger(&handed, Some(&state), &expected), Ok(Raw::new(30)));
//! # Ok::<(), nanosession::verify::handoff::HandoffRejection>(())
//! ```

use async_trait::async_trait;

use crate::nano::{work, Address, BlockHash, Raw, StateBlock};
use crate::protocol::{HandoffBlock, Reason};

/// The default work threshold for handed-over sends: the live network's epoch-2 send
/// threshold `fffffff800000000`. Dev and test networks configure their own
/// ([`work::DEV_EPOCH_2`] for the mock node).
pub const DEFAULT_WORK_THRESHOLD: u64 = work::LIVE_SEND;

/// What a handed-over block must satisfy to pay one session; all of it comes from the server
/// (the stored session and the configuration), none from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoffExpected {
    /// The merchant account the send must credit (the stored session's).
    pub pay_to: Address,
    /// The exact amount the send must move: the **stored** session amount, never the echoed one.
    pub amount: Raw,
    /// The least work value accepted on the block's root ([`DEFAULT_WORK_THRESHOLD`] on the
    /// live network).
    pub work_threshold: u64,
}

/// A block that passed the local checks (§9 steps 4–6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocallyVerified {
    /// The block hash, computed from the fields: the spent-set key and the claim's key.
    pub hash: BlockHash,
    /// The paying account (the block's signer).
    pub payer: Address,
    /// The block's `previous`: the frontier the account must still have (fork lock key).
    pub previous: BlockHash,
    /// The work value of the block's nonce on its root.
    pub work_value: u64,
}

/// The account as the node reports it (`account_info`), for [`check_ledger`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountState {
    /// The account's head block.
    pub frontier: BlockHash,
    /// The account's balance at its frontier (confirmed or not, as fetched).
    pub balance: Raw,
}

/// Why a handed-over block does not pay the session. Each variant is one reason code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandoffRejection {
    /// The signature does not verify, or `link_as_account` names another key than `link`
    /// (`invalid_block`); the text says which.
    #[error("the block does not verify: {0}")]
    InvalidBlock(&'static str),
    /// `link` is not the merchant's key (`wrong_destination`).
    #[error("the block pays another account")]
    WrongDestination,
    /// The work is below the threshold (`insufficient_work`).
    #[error("the block's work is below the threshold")]
    InsufficientWork,
    /// The account does not exist, or its frontier is not the block's `previous`
    /// (`frontier_mismatch`).
    #[error("the block does not extend the account's frontier")]
    FrontierMismatch,
    /// The block does not lower the balance: not a send (`wrong_block_type`).
    #[error("the block is not a send")]
    WrongBlockType,
    /// The block moves another amount than the session's (`wrong_amount`).
    #[error("the block moves a different amount")]
    WrongAmount,
}

impl HandoffRejection {
    /// The protocol reason of the refusal.
    ///
    /// ```
    /// use nanosession::protocol::Reason;
    /// use nanosession::verify::handoff::HandoffRejection;
    /// assert_eq!(HandoffRejection::InsufficientWork.reason(), Reason::InsufficientWork);
    /// ```
    pub const fn reason(self) -> Reason {
        match self {
            HandoffRejection::InvalidBlock(_) => Reason::InvalidBlock,
            HandoffRejection::WrongDestination => Reason::WrongDestination,
            HandoffRejection::InsufficientWork => Reason::InsufficientWork,
            HandoffRejection::FrontierMismatch => Reason::FrontierMismatch,
            HandoffRejection::WrongBlockType => Reason::WrongBlockType,
            HandoffRejection::WrongAmount => Reason::WrongAmount,
        }
    }
}

/// §9 steps 4–6, in order: the signature by `account` over the computed hash, `link` as the
/// merchant's key (and `link_as_account`, when sent, naming the same key), then the work.
///
/// Step 3 (the computed hash already spent) is the caller's, with [`HandoffBlock::hash`],
/// since it needs the store.
pub fn verify_local(
    handed: &HandoffBlock,
    expected: &HandoffExpected,
) -> Result<LocallyVerified, HandoffRejection> {
    let block = &handed.block;
    let hash = block.hash();
    if !block.verify_signature() {
        return Err(HandoffRejection::InvalidBlock("the signature does not verify against account"));
    }
    // Only `link` is signed; compare key bytes so `xrb_`/`nano_` forms agree.
    if &block.link != expected.pay_to.public_key().as_bytes() {
        return Err(HandoffRejection::WrongDestination);
    }
    if handed.link_as_account.is_some_and(|a| a.public_key().as_bytes() != &block.link) {
        return Err(HandoffRejection::InvalidBlock("link_as_account names another key than link"));
    }
    let work_value = work::value(block.work, &block.work_root());
    if work_value < expected.work_threshold {
        return Err(HandoffRejection::InsufficientWork);
    }
    Ok(LocallyVerified { hash, payer: Address::from(block.account), previous: block.previous, work_value })
}

/// §9 step 8 on the account state the caller fetched (`None`: the node has no such account):
/// the frontier must be the block's `previous`, the balance must drop, and by exactly the
/// stored session amount. Returns the amount moved.
pub fn check_ledger(
    handed: &HandoffBlock,
    account: Option<&AccountState>,
    expected: &HandoffExpected,
) -> Result<Raw, HandoffRejection> {
    let block = &handed.block;
    let account = account.ok_or(HandoffRejection::FrontierMismatch)?;
    if account.frontier != block.previous {
        return Err(HandoffRejection::FrontierMismatch);
    }
    // A balance that rises or stays is a receive or change, whatever the client called it.
    let delta = match account.balance.checked_sub(block.balance) {
        Some(delta) if delta > Raw::ZERO => delta,
        _ => return Err(HandoffRejection::WrongBlockType),
    };
    if delta != expected.amount {
        return Err(HandoffRejection::WrongAmount);
    }
    Ok(delta)
}

/// What a node said to a hand-off call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// A definite refusal: the block was not (and will not be) accepted as sent.
    #[error("{0}")]
    Refused(HandoffRejection),
    /// No definite answer (transport failure, timeout, a reply without a verdict). After
    /// `process` the block may have landed. The text is safe to log.
    #[error("no node could be reached: {0}")]
    Unavailable(String),
}

/// The node calls a hand-off needs beyond [`PaymentVerifier`](super::PaymentVerifier) (which
/// confirms the published block): the payer's account before publishing (§9 step 8) and the
/// publication itself (step 9). [`NanoRpcVerifier`](super::NanoRpcVerifier) implements it.
#[async_trait]
pub trait BlockPublisher: Send + Sync + 'static {
    /// The account's frontier and balance (`account_info`); `Ok(None)` when the node has no
    /// such account.
    async fn account_state(&self, account: &Address) -> Result<Option<AccountState>, NodeError>;

    /// Publishes the block (`process`, subtype `send`). `Ok` when the node accepted it or
    /// already has it (`Old block`).
    async fn publish(&self, block: &StateBlock) -> Result<(), NodeError>;
}

/// The reason for a node's refusal of a published block (§9 step 9), from its error text.
///
/// ```
/// use nanosession::verify::handoff::{process_refusal, HandoffRejection};
/// assert_eq!(process_refusal("Fork"), HandoffRejection::FrontierMismatch);
/// assert_eq!(process_refusal("Block work is less than threshold"), HandoffRejection::InsufficientWork);
/// ```
pub fn process_refusal(text: &str) -> HandoffRejection {
    match text {
        "Fork" | "Gap previous block" | "Gap source block" => HandoffRejection::FrontierMismatch,
        "Bad signature" => HandoffRejection::InvalidBlock("the node refused the signature"),
        "Invalid block balance for given subtype"
        | "Balance and amount delta do not match"
        | "Negative spend" => HandoffRejection::WrongBlockType,
        t if t.contains("work") => HandoffRejection::InsufficientWork,
        _ => HandoffRejection::InvalidBlock("the node refused the block"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::nano::{PrivateKey, PublicKey, StateBlock};

    const AMOUNT: u128 = 1_000_000;
    const LEFT: u128 = 5_000_000;

    fn payer() -> PrivateKey {
        PrivateKey::from_bytes([11; 32])
    }
    fn merchant() -> Address {
        Address::from(PrivateKey::from_bytes([22; 32]).public_key())
    }
    fn frontier() -> BlockHash {
        BlockHash::from_bytes([33; 32])
    }
    fn expected() -> HandoffExpected {
        HandoffExpected { pay_to: merchant(), amount: Raw::new(AMOUNT), work_threshold: work::DEV_EPOCH_2 }
    }
    fn state(balance: u128) -> AccountState {
        AccountState { frontier: frontier(), balance: Raw::new(balance) }
    }

    /// A real signed send of `AMOUNT` to `to` with dev work, leaving `LEFT`.
    fn send_to(to: &PublicKey) -> HandoffBlock {
        let key = payer();
        let mut block = StateBlock::send(key.public_key(), frontier(), key.public_key(), Raw::new(LEFT), to);
        block.sign(&key);
        block.work = work::generate(&block.work_root(), work::DEV_EPOCH_2, &AtomicBool::new(false)).unwrap();
        HandoffBlock { block, link_as_account: Some(Address::from(*to)) }
    }
    fn good() -> HandoffBlock {
        send_to(merchant().public_key())
    }

    #[test]
    fn a_good_block_passes_every_local_check() {
        let handed = good();
        let ok = verify_local(&handed, &expected()).unwrap();
        assert_eq!(ok.hash, handed.block.hash());
        assert_eq!(ok.payer, Address::from(payer().public_key()));
        assert_eq!(ok.previous, frontier());
        assert!(ok.work_value >= work::DEV_EPOCH_2);
        // link_as_account is optional.
        let bare = HandoffBlock { link_as_account: None, ..handed };
        assert!(verify_local(&bare, &expected()).is_ok());
    }

    #[test]
    fn a_bad_signature_is_invalid_block() {
        let mut handed = good();
        handed.block.signature.0[5] ^= 1;
        let err = verify_local(&handed, &expected()).unwrap_err();
        assert_eq!(err, HandoffRejection::InvalidBlock("the signature does not verify against account"));
        assert_eq!(err.reason(), Reason::InvalidBlock);
        // A field changed after signing breaks the signature too (the hash is recomputed).
        let mut edited = good();
        edited.block.balance = Raw::new(LEFT + 1);
        assert!(matches!(verify_local(&edited, &expected()), Err(HandoffRejection::InvalidBlock(_))));
        // Signed by another key than `account`.
        let mut other = good();
        other.block.sign(&PrivateKey::from_bytes([99; 32]));
        assert!(matches!(verify_local(&other, &expected()), Err(HandoffRejection::InvalidBlock(_))));
    }

    #[test]
    fn a_wrong_link_is_wrong_destination() {
        let elsewhere = PrivateKey::from_bytes([44; 32]).public_key();
        let err = verify_local(&send_to(&elsewhere), &expected()).unwrap_err();
        assert_eq!(err, HandoffRejection::WrongDestination);
        assert_eq!(err.reason(), Reason::WrongDestination);
        // A link_as_account naming the merchant does not help: only link is signed.
        let lying = HandoffBlock { link_as_account: Some(merchant()), ..send_to(&elsewhere) };
        assert_eq!(verify_local(&lying, &expected()), Err(HandoffRejection::WrongDestination));
        // The signature is checked first: a forged block to elsewhere is invalid_block.
        let mut forged = send_to(&elsewhere);
        forged.block.signature.0[0] ^= 1;
        assert!(matches!(verify_local(&forged, &expected()), Err(HandoffRejection::InvalidBlock(_))));
    }

    #[test]
    fn link_as_account_contradicting_link_is_invalid_block() {
        let other = Address::from(PrivateKey::from_bytes([55; 32]).public_key());
        let handed = HandoffBlock { link_as_account: Some(other), ..good() };
        let err = verify_local(&handed, &expected()).unwrap_err();
        assert_eq!(err, HandoffRejection::InvalidBlock("link_as_account names another key than link"));
        assert_eq!(err.reason(), Reason::InvalidBlock);
    }

    #[test]
    fn work_below_the_threshold_is_insufficient_work() {
        let handed = good();
        let value = work::value(handed.block.work, &handed.block.work_root());
        // At the threshold passes, one above the work's value fails.
        let at = HandoffExpected { work_threshold: value, ..expected() };
        assert_eq!(verify_local(&handed, &at).unwrap().work_value, value);
        let above = HandoffExpected { work_threshold: value + 1, ..expected() };
        assert_eq!(verify_local(&handed, &above), Err(HandoffRejection::InsufficientWork));
        assert_eq!(HandoffRejection::InsufficientWork.reason(), Reason::InsufficientWork);
        // A nonce that misses the dev threshold (work is not signed: the signature still holds).
        let mut weak = good();
        weak.block.work =
            (0..).find(|n| !work::is_valid(*n, &weak.block.work_root(), work::DEV_EPOCH_2)).unwrap();
        assert_eq!(verify_local(&weak, &expected()), Err(HandoffRejection::InsufficientWork));
        // The root is `previous`: the same nonce on another root is judged on that root.
        assert_eq!(handed.block.work_root(), *frontier().as_bytes());
    }

    #[test]
    fn the_default_threshold_is_live_epoch_2_send() {
        assert_eq!(DEFAULT_WORK_THRESHOLD, 0xfffffff800000000);
        // Dev work, far below the live threshold.
        let live = HandoffExpected { work_threshold: DEFAULT_WORK_THRESHOLD, ..expected() };
        let mut handed = good();
        handed.block.work =
            (0..).find(|n| work::value(*n, &handed.block.work_root()) < DEFAULT_WORK_THRESHOLD).unwrap();
        assert_eq!(verify_local(&handed, &live), Err(HandoffRejection::InsufficientWork));
    }

    /// nano-reference §9.1 (nano-docs `block_create`): key 2 sends to the key of private key
    /// 0; its work `cab7404f0b5449d0` is worth `ffffffd2b7ffab7b` on its previous, enough for
    /// the dev network and epoch 1 but not for the live epoch-2 send threshold.
    #[test]
    fn reference_vector_block_create() {
        let json = r#"{"type": "state",
            "account": "nano_3qgmh14nwztqw4wmcdzy4xpqeejey68chx6nciczwn9abji7ihhum9qtpmdr",
            "previous": "f47b23107e5f34b2ce06f562b5c435df72a533251cb414c51b2b62a8f63a00e4",
            "representative": "nano_1hza3f7wiiqa7ig3jczyxj5yo86yegcmqk3criaz838j91sxcckpfhbhhra1",
            "balance": "1000000000000000000000",
            "link": "19D3D919475DEED4696B5D13018151D1AF88B2BD3BCFF048B45031C1F36D1858",
            "link_as_account": "nano_18gmu6engqhgtjnppqam181o5nfhj4sdtgyhy36dan3jr9spt84rzwmktafc",
            "signature": "3bfba64a775550e6d49df1eb8eec2136dcd74f090e2ed658fbd9e80f17cb1c9f9f7bde2b93d95558ec2f277fff15fd11e6e2162a1714731b743d1e941fa4560a",
            "work": "cab7404f0b5449d0"}"#;
        let handed = HandoffBlock::from_json(json).unwrap();
        let pay_to: Address =
            "nano_18gmu6engqhgtjnppqam181o5nfhj4sdtgyhy36dan3jr9spt84rzwmktafc".parse().unwrap();
        let dev = HandoffExpected { pay_to, amount: Raw::new(1), work_threshold: work::DEV_EPOCH_2 };
        let ok = verify_local(&handed, &dev).unwrap();
        assert_eq!(ok.hash.to_string(), "FF0144381CFF0B2C079A115E7ADA7E96F43FD219446E7524C48D1CC9900C4F17");
        assert_eq!(ok.work_value, 0xffffffd2b7ffab7b);
        let epoch_1 = HandoffExpected { work_threshold: work::LIVE_EPOCH_1, ..dev.clone() };
        assert!(verify_local(&handed, &epoch_1).is_ok());
        let live = HandoffExpected { work_threshold: DEFAULT_WORK_THRESHOLD, ..dev };
        assert_eq!(verify_local(&handed, &live), Err(HandoffRejection::InsufficientWork));
    }

    #[test]
    fn the_ledger_must_show_previous_as_the_frontier() {
        let handed = good();
        let moved = state(LEFT + AMOUNT);
        assert_eq!(check_ledger(&handed, Some(&moved), &expected()), Ok(Raw::new(AMOUNT)));
        let forked = AccountState { frontier: BlockHash::from_bytes([34; 32]), ..moved };
        let err = check_ledger(&handed, Some(&forked), &expected()).unwrap_err();
        assert_eq!((err, err.reason()), (HandoffRejection::FrontierMismatch, Reason::FrontierMismatch));
        // No such account (an unopened one cannot send).
        assert_eq!(check_ledger(&handed, None, &expected()), Err(HandoffRejection::FrontierMismatch));
        // The frontier is checked before the amount.
        let both = AccountState { frontier: BlockHash::ZERO, balance: Raw::new(1) };
        assert_eq!(check_ledger(&handed, Some(&both), &expected()), Err(HandoffRejection::FrontierMismatch));
    }

    #[test]
    fn the_balance_delta_must_be_the_stored_amount_exactly() {
        let handed = good();
        for off in [LEFT + AMOUNT - 1, LEFT + AMOUNT + 1] {
            let err = check_ledger(&handed, Some(&state(off)), &expected()).unwrap_err();
            assert_eq!((err, err.reason()), (HandoffRejection::WrongAmount, Reason::WrongAmount), "{off}");
        }
        // Balance unchanged (a change) or higher (a receive): not a send.
        for not_send in [LEFT, LEFT - 1, 0] {
            let err = check_ledger(&handed, Some(&state(not_send)), &expected()).unwrap_err();
            assert_eq!((err, err.reason()), (HandoffRejection::WrongBlockType, Reason::WrongBlockType));
        }
        // The amount compared is the caller's (stored) one, whatever the block moves.
        let other = HandoffExpected { amount: Raw::new(AMOUNT + 1), ..expected() };
        assert_eq!(
            check_ledger(&handed, Some(&state(LEFT + AMOUNT)), &other),
            Err(HandoffRejection::WrongAmount)
        );
        // Extremes do not overflow.
        let mut empty = good();
        empty.block.balance = Raw::ZERO;
        let all = HandoffExpected { amount: Raw::new(u128::MAX), ..expected() };
        assert_eq!(check_ledger(&empty, Some(&state(u128::MAX)), &all), Ok(Raw::new(u128::MAX)));
    }

    /// nano-reference §9.5: the mainnet send `87434F80…` moved 30,000 XNO out of
    /// 5,636,157 XNO on `CE898C13…`; its epoch-1 era work is below today's live send threshold.
    #[test]
    fn reference_vector_mainnet_send() {
        let json = r#"{"type": "state", "subtype": "send",
            "account": "nano_1ipx847tk8o46pwxt5qjdbncjqcbwcc1rrmqnkztrfjy5k7z4imsrata9est",
            "previous": "CE898C131AAEE25E05362F247760F8A3ACF34A9796A5AE0D9204E86B0637965E",
            "representative": "nano_1stofnrxuz3cai7ze75o174bpm7scwj9jn3nxsn8ntzg784jf1gzn1jjdkou",
            "balance": "5606157000000000000000000000000000000",
            "link": "5D1AA8A45F8736519D707FCB375976A7F9AF795091021D7E9C7548D6F45DD8D5",
            "link_as_account": "nano_1qato4k7z3spc8gq1zyd8xeqfbzsoxwo36a45ozbrxcatut7up8ohyardu1z",
            "signature": "82D41BC16F313E4B2243D14DFFA2FB04679C540C2095FEE7EAE0F2F26880AD56DD48D87A7CC5DD760C5B2D76EE2C205506AA557BF00B60D8DEE312EC7343A501",
            "work": "8a142e07a10996d5"}"#;
        let handed = HandoffBlock::from_json(json).unwrap();
        let pay_to: Address =
            "nano_1qato4k7z3spc8gq1zyd8xeqfbzsoxwo36a45ozbrxcatut7up8ohyardu1z".parse().unwrap();
        let amount = Raw::new(30000000000000000000000000000000000);
        let expected = HandoffExpected { pay_to, amount, work_threshold: work::LIVE_EPOCH_1 };
        let ok = verify_local(&handed, &expected).unwrap();
        assert_eq!(ok.hash.to_string(), "87434F8041869A01C8F6F263B87972D7BA443A72E0A97D7A3FD0CCC2358FD6F9");
        assert_eq!(ok.work_value, 0xffffffdabde2c8ce);
        let before = AccountState {
            frontier: "CE898C131AAEE25E05362F247760F8A3ACF34A9796A5AE0D9204E86B0637965E".parse().unwrap(),
            balance: Raw::new(5636157000000000000000000000000000000),
        };
        assert_eq!(check_ledger(&handed, Some(&before), &expected), Ok(amount));
        let live = HandoffExpected { work_threshold: DEFAULT_WORK_THRESHOLD, ..expected };
        assert_eq!(verify_local(&handed, &live), Err(HandoffRejection::InsufficientWork));
    }
}
