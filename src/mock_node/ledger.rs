//! The mock node's ledger: accounts, blocks, receivable sends, confirmation heights, and the
//! checks a real node applies to a published state block, in the same order and with the same
//! outcomes (nano-node `ledger_processor::state_block_impl`). Pure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::config::WorkThresholds;
use crate::nano::{verify_signature, work, BlockHash, PublicKey, Raw, Signature, StateBlock};

/// The dev network's genesis private key (a public test key, reference §8).
pub(crate) const GENESIS_PRIVATE_KEY: &str =
    "34F0A37AAD20F4A260F0A5B3CB3D7FB50673212263E58A380BC10474BB039CE4";
/// The dev genesis account key.
pub(crate) const GENESIS_PUBLIC_KEY: [u8; 32] =
    hex32("B0311EA55708D6A53C75CDBF88300259C6D018522FE3D4D0A242E431F9E8B6D0");
/// The dev genesis block hash ([`super::GENESIS_HASH`]) as bytes.
pub(crate) const GENESIS_HASH_BYTES: [u8; 32] = hex32(super::GENESIS_HASH);
/// The dev genesis block's proof of work.
pub(crate) const GENESIS_WORK: u64 = 0x7b42_a00e_e91d_5810;
/// The dev genesis block's signature.
pub(crate) const GENESIS_SIGNATURE: &str = "ECDA914373A2F0CA1296475BAEE40500A7F0A7AD72A5A80C81D7FAB7F6C802B2CC7DB50F5DD0FB25B2EF11761FA7344A158DD5A700B21BD47DE5BD0F63153A02";

/// Decodes 64 hex digits at compile time (constants only: a bad digit fails the build).
const fn hex32(s: &str) -> [u8; 32] {
    const fn digit(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not an upper-case hex digit"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = digit(b[2 * i]) << 4 | digit(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// Why the node refused a block: each variant displays as the node's exact error text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcessError {
    /// The block does not parse (or is not a state block).
    Invalid,
    /// Work below the entry threshold (the RPC's pre-check).
    WorkLow,
    /// The block is already in the ledger.
    Old,
    /// `previous` is unknown (or non-zero for an account not yet opened).
    GapPrevious,
    /// A receive's source send is unknown, or an open block has no link.
    GapSource,
    /// The signature does not verify against the account (or the epoch signer).
    BadSignature,
    /// The received amount differs from the send's, or a change block moves funds.
    BalanceMismatch,
    /// The source is not a send to this account still waiting to be received.
    Unreceivable,
    /// The block cannot follow the account's chain (epoch upgrades: all accounts are at epoch 2).
    BlockPosition,
    /// `previous` is not the account's frontier, or the account is already opened.
    Fork,
    /// Work below the threshold for this kind of block.
    InsufficientWork,
    /// The block belongs to the all-zero (burn) account.
    OpenedBurnAccount,
    /// `subtype` hint other than send/receive/open/change/epoch.
    InvalidSubtype,
    /// `subtype` hint contradicted by the balance.
    InvalidSubtypeBalance,
    /// `subtype` hint contradicted by `previous`.
    InvalidSubtypePrevious,
    /// `subtype` hint `epoch` without an epoch link.
    InvalidEpochLink,
}

impl ProcessError {
    /// The node's error text.
    pub(crate) fn text(self) -> &'static str {
        match self {
            ProcessError::Invalid => "Block is invalid",
            ProcessError::WorkLow => "Block work is less than threshold",
            ProcessError::Old => "Old block",
            ProcessError::GapPrevious => "Gap previous block",
            ProcessError::GapSource => "Gap source block",
            ProcessError::BadSignature => "Bad signature",
            ProcessError::BalanceMismatch => "Balance and amount delta do not match",
            ProcessError::Unreceivable => "Unreceivable",
            ProcessError::BlockPosition => "This block cannot follow the previous block",
            ProcessError::Fork => "Fork",
            ProcessError::InsufficientWork => "Block work is insufficient",
            ProcessError::OpenedBurnAccount => "Block attempts to open the burn account",
            ProcessError::InvalidSubtype => "Invalid block subtype",
            ProcessError::InvalidSubtypeBalance => "Invalid block balance for given subtype",
            ProcessError::InvalidSubtypePrevious => "Invalid previous block for given subtype",
            ProcessError::InvalidEpochLink => "Invalid epoch link",
        }
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// What a block does, as the node reports it (`open` is reported as `receive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Subtype {
    Send,
    Receive,
    Change,
}

impl Subtype {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Subtype::Send => "send",
            Subtype::Receive => "receive",
            Subtype::Change => "change",
        }
    }
}

/// One block with the node's sideband data.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// The state block; `None` for the dev genesis, a legacy open block.
    pub(crate) block: Option<StateBlock>,
    /// Owner of the chain.
    pub(crate) account: PublicKey,
    /// Position in the chain, 1 for the first block.
    pub(crate) height: u64,
    /// Balance after the block.
    pub(crate) balance: Raw,
    /// Absolute balance change against the previous block.
    pub(crate) amount: Raw,
    /// `None` for the legacy genesis block.
    pub(crate) subtype: Option<Subtype>,
    /// Unix seconds when the ledger stored the block (0 for the genesis).
    pub(crate) local_timestamp: u64,
    /// The next block of the chain; zero at the head.
    pub(crate) successor: BlockHash,
}

impl Entry {
    /// The state block, `None` for the genesis.
    pub(crate) fn state(&self) -> Option<&StateBlock> {
        self.block.as_ref()
    }

    /// `previous`: zero for the first block of a chain.
    pub(crate) fn previous(&self) -> BlockHash {
        self.state().map_or(BlockHash::ZERO, |b| b.previous)
    }

    /// The link of a state block; `None` for the legacy genesis block, which has none.
    pub(crate) fn link(&self) -> Option<[u8; 32]> {
        self.state().map(|b| b.link)
    }

    /// The source send of a receive.
    pub(crate) fn source(&self) -> Option<BlockHash> {
        match (self.subtype, self.state()) {
            (Some(Subtype::Receive), Some(b)) => Some(BlockHash::from_bytes(b.link)),
            _ => None,
        }
    }
}

/// One account chain.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    /// Block hashes by height − 1.
    pub(crate) chain: Vec<BlockHash>,
    pub(crate) balance: Raw,
    pub(crate) representative: PublicKey,
    /// Unix seconds of the last block.
    pub(crate) modified: u64,
    /// Highest confirmed (cemented) height; 0 when nothing is.
    pub(crate) confirmation_height: u64,
}

impl Account {
    pub(crate) fn frontier(&self) -> BlockHash {
        *self.chain.last().expect("an account has at least its open block")
    }

    pub(crate) fn open_block(&self) -> BlockHash {
        self.chain[0]
    }

    pub(crate) fn block_count(&self) -> u64 {
        self.chain.len() as u64
    }

    /// The confirmed block at the confirmation height (zero when none is).
    pub(crate) fn confirmation_frontier(&self) -> BlockHash {
        match self.confirmation_height {
            0 => BlockHash::ZERO,
            h => self.chain[h as usize - 1],
        }
    }
}

/// A send waiting to be received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Receivable {
    pub(crate) amount: Raw,
    /// The sending account.
    pub(crate) source: PublicKey,
}

/// Whether the epoch signer (the genesis key on the dev network) signed `block`.
fn signed_by_epoch_signer(block: &StateBlock, hash: &BlockHash) -> bool {
    verify_signature(&PublicKey::from_bytes(GENESIS_PUBLIC_KEY), hash, &block.signature)
}

/// True for the `epoch v1 block` / `epoch v2 block` links.
fn is_epoch_link(link: &[u8; 32]) -> bool {
    let mut v1 = [0u8; 32];
    v1[..14].copy_from_slice(b"epoch v1 block");
    let mut v2 = v1;
    v2[7] = b'2';
    *link == v1 || *link == v2
}

/// The in-memory ledger.
#[derive(Debug)]
pub(crate) struct Ledger {
    blocks: HashMap<BlockHash, Entry>,
    accounts: HashMap<PublicKey, Account>,
    /// Unreceived sends by (destination, send hash): sorted like the node's pending table.
    receivable: BTreeMap<(PublicKey, BlockHash), Receivable>,
    /// Receiving block of each received send.
    received_by: HashMap<BlockHash, BlockHash>,
    cemented: u64,
}

impl Ledger {
    /// A ledger holding only the confirmed dev genesis, owning the whole supply.
    pub(crate) fn new() -> Ledger {
        let genesis_key = PublicKey::from_bytes(GENESIS_PUBLIC_KEY);
        let genesis = BlockHash::from_bytes(GENESIS_HASH_BYTES);
        let entry = Entry {
            block: None,
            account: genesis_key,
            height: 1,
            balance: Raw::new(u128::MAX),
            amount: Raw::new(u128::MAX),
            subtype: None,
            local_timestamp: 0,
            successor: BlockHash::ZERO,
        };
        let account = Account {
            chain: vec![genesis],
            balance: Raw::new(u128::MAX),
            representative: genesis_key,
            modified: 0,
            confirmation_height: 1,
        };
        Ledger {
            blocks: HashMap::from([(genesis, entry)]),
            accounts: HashMap::from([(genesis_key, account)]),
            receivable: BTreeMap::new(),
            received_by: HashMap::new(),
            cemented: 1,
        }
    }

    /// A block and its sideband.
    pub(crate) fn get(&self, hash: &BlockHash) -> Option<&Entry> {
        self.blocks.get(hash)
    }

    /// An opened account.
    pub(crate) fn account(&self, key: &PublicKey) -> Option<&Account> {
        self.accounts.get(key)
    }

    /// The account's balance (zero if never opened).
    pub(crate) fn balance(&self, key: &PublicKey) -> Raw {
        self.accounts.get(key).map_or(Raw::ZERO, |a| a.balance)
    }

    /// Whether a block is cemented.
    pub(crate) fn is_confirmed(&self, hash: &BlockHash) -> bool {
        self.blocks.get(hash).is_some_and(|e| e.height <= self.accounts[&e.account].confirmation_height)
    }

    /// The unreceived send `hash`, if it is one.
    pub(crate) fn receivable_send(&self, hash: &BlockHash) -> Option<Receivable> {
        let entry = self.blocks.get(hash)?;
        let destination = PublicKey::from_bytes(entry.state()?.link);
        self.receivable.get(&(destination, *hash)).copied()
    }

    /// The block that received send `hash`.
    pub(crate) fn received_by(&self, hash: &BlockHash) -> Option<BlockHash> {
        self.received_by.get(hash).copied()
    }

    /// Sends waiting for `account`, by send hash ascending.
    pub(crate) fn receivable_for(
        &self,
        account: &PublicKey,
    ) -> impl Iterator<Item = (BlockHash, Receivable)> + '_ {
        let from = (*account, BlockHash::ZERO);
        let to = (*account, BlockHash::from_bytes([0xff; 32]));
        self.receivable.range(from..=to).map(|((_, hash), r)| (*hash, *r))
    }

    /// Sum of the balances of the accounts represented by `rep`.
    pub(crate) fn weight(&self, rep: &PublicKey) -> Raw {
        let total = self
            .accounts
            .values()
            .filter(|a| a.representative == *rep)
            .fold(0u128, |sum, a| sum.saturating_add(a.balance.get()));
        Raw::new(total)
    }

    /// Number of blocks.
    pub(crate) fn block_count(&self) -> u64 {
        self.blocks.len() as u64
    }

    /// Number of cemented blocks.
    pub(crate) fn cemented_count(&self) -> u64 {
        self.cemented
    }

    /// Number of opened accounts.
    pub(crate) fn account_count(&self) -> u64 {
        self.accounts.len() as u64
    }

    /// The RPC's `subtype` hint checks (nano-node `json_handler::process`), run before the
    /// ledger sees the block. They compare against the account's current balance.
    pub(crate) fn check_subtype_hint(&self, block: &StateBlock, hint: &str) -> Result<(), ProcessError> {
        if !block.previous.is_zero() && !self.blocks.contains_key(&block.previous) {
            return Err(ProcessError::GapPrevious);
        }
        let balance = self.balance(&block.account);
        match hint {
            "send" if balance <= block.balance => Err(ProcessError::InvalidSubtypeBalance),
            "receive" if balance > block.balance => Err(ProcessError::InvalidSubtypeBalance),
            "open" if !block.previous.is_zero() => Err(ProcessError::InvalidSubtypePrevious),
            "change" if balance != block.balance => Err(ProcessError::InvalidSubtypeBalance),
            "change" if block.previous.is_zero() => Err(ProcessError::InvalidSubtypePrevious),
            "epoch" if balance != block.balance => Err(ProcessError::InvalidSubtypeBalance),
            "epoch" if !is_epoch_link(&block.link) => Err(ProcessError::InvalidEpochLink),
            "send" | "receive" | "open" | "change" | "epoch" => Ok(()),
            _ => Err(ProcessError::InvalidSubtype),
        }
    }

    /// Validates `block` against `thresholds` and, if it passes, appends it (unconfirmed) with
    /// `local_timestamp` `now`.
    pub(crate) fn process(
        &mut self,
        block: &StateBlock,
        thresholds: &WorkThresholds,
        now: u64,
    ) -> Result<BlockHash, ProcessError> {
        let hash = block.hash();
        if self.blocks.contains_key(&hash) {
            return Err(ProcessError::Old);
        }
        if is_epoch_link(&block.link) {
            // nano-node `ledger_processor::state_block`: a gap comes first, and the block is an
            // epoch block only if it keeps the *previous block's* balance (else it is an
            // ordinary block that happens to link the epoch account).
            let previous_balance = if block.previous.is_zero() {
                Some(Raw::ZERO)
            } else {
                self.blocks.get(&block.previous).map(|e| e.balance)
            };
            match previous_balance {
                // Signed by neither the account nor the epoch signer: the node answers that
                // rather than the gap.
                None if !block.verify_signature() && !signed_by_epoch_signer(block, &hash) => {
                    return Err(ProcessError::BadSignature);
                }
                None => return Err(ProcessError::GapPrevious),
                Some(balance) if balance == block.balance => return Err(self.epoch_block_error(block, &hash)),
                Some(_) => {}
            }
        }
        let info = self.accounts.get(&block.account);
        let balance_before = info.map_or(Raw::ZERO, |a| a.balance);
        if !block.verify_signature() {
            return Err(ProcessError::BadSignature);
        }
        // After the signature check, as in the node: the zero key is a small-order point, so
        // signatures "by" the burn account can be forged.
        if block.account.as_bytes() == &[0; 32] {
            return Err(ProcessError::OpenedBurnAccount);
        }
        let is_send = match info {
            Some(info) => {
                if block.previous.is_zero() {
                    return Err(ProcessError::Fork);
                }
                if !self.blocks.contains_key(&block.previous) {
                    return Err(ProcessError::GapPrevious);
                }
                if block.previous != info.frontier() {
                    return Err(ProcessError::Fork);
                }
                block.balance < info.balance
            }
            None => {
                if !block.previous.is_zero() {
                    return Err(ProcessError::GapPrevious);
                }
                if block.link == [0; 32] {
                    return Err(ProcessError::GapSource);
                }
                false
            }
        };
        let amount = Raw::new(block.balance.get().abs_diff(balance_before.get()));
        let is_receive = !is_send && block.link != [0; 32];
        let source = BlockHash::from_bytes(block.link);
        if is_receive {
            if !self.blocks.contains_key(&source) {
                return Err(ProcessError::GapSource);
            }
            let pending = self.receivable.get(&(block.account, source)).ok_or(ProcessError::Unreceivable)?;
            if pending.amount != amount {
                return Err(ProcessError::BalanceMismatch);
            }
        } else if !is_send && amount != Raw::ZERO {
            // No link: only the representative may change.
            return Err(ProcessError::BalanceMismatch);
        }
        if work::value(block.work, &block.work_root()) < thresholds.for_block(is_receive) {
            return Err(ProcessError::InsufficientWork);
        }

        let subtype = match (is_send, is_receive) {
            (true, _) => Subtype::Send,
            (false, true) => Subtype::Receive,
            (false, false) => Subtype::Change,
        };
        let height = info.map_or(1, |a| a.block_count() + 1);
        if let Some(previous) = self.blocks.get_mut(&block.previous) {
            previous.successor = hash;
        }
        let account = self.accounts.entry(block.account).or_insert_with(|| Account {
            chain: Vec::new(),
            balance: Raw::ZERO,
            representative: block.representative,
            modified: now,
            confirmation_height: 0,
        });
        account.chain.push(hash);
        account.balance = block.balance;
        account.representative = block.representative;
        account.modified = now;
        match subtype {
            Subtype::Send => {
                let destination = PublicKey::from_bytes(block.link);
                self.receivable.insert((destination, hash), Receivable { amount, source: block.account });
            }
            Subtype::Receive => {
                self.receivable.remove(&(block.account, source));
                self.received_by.insert(source, hash);
            }
            Subtype::Change => {}
        }
        self.blocks.insert(
            hash,
            Entry {
                block: Some(block.clone()),
                account: block.account,
                height,
                balance: block.balance,
                amount,
                subtype: Some(subtype),
                local_timestamp: now,
                successor: BlockHash::ZERO,
            },
        );
        Ok(hash)
    }

    /// Why an epoch block (one keeping its previous block's balance, `previous` known) is
    /// refused, in nano-node's order (`ledger_processor::epoch_block_impl`). Every account here
    /// already counts as epoch 2, so one that passes the other checks cannot follow either.
    fn epoch_block_error(&self, block: &StateBlock, hash: &BlockHash) -> ProcessError {
        if !signed_by_epoch_signer(block, hash) {
            return ProcessError::BadSignature;
        }
        if block.account.as_bytes() == &[0; 32] {
            return ProcessError::OpenedBurnAccount;
        }
        match self.accounts.get(&block.account) {
            Some(info) if block.previous.is_zero() || block.previous != info.frontier() => ProcessError::Fork,
            None if !block.previous.is_zero() => ProcessError::GapPrevious,
            _ => ProcessError::BlockPosition,
        }
    }

    /// Cements `hash` with everything it depends on (earlier blocks of its chain, the sources
    /// of receives among them). Returns the newly cemented hashes, dependencies first; empty
    /// if the block is unknown or already confirmed.
    pub(crate) fn confirm(&mut self, hash: &BlockHash) -> Vec<BlockHash> {
        let mut cemented = Vec::new();
        let Some(entry) = self.blocks.get(hash) else { return cemented };
        // An explicit stack of (account, height to cement up to): a chain of receives can be
        // as long as the ledger, too deep for recursion.
        let mut work = vec![(entry.account, entry.height)];
        while let Some(&(account, target)) = work.last() {
            let info = &self.accounts[&account];
            let next = info.confirmation_height + 1;
            if next > target {
                work.pop();
                continue;
            }
            let next_hash = info.chain[next as usize - 1];
            // Sends come before the receives that take them: the source is cemented first.
            let source = self.blocks[&next_hash].source().and_then(|s| self.blocks.get(&s));
            if let Some(source) = source.filter(|s| s.height > self.accounts[&s.account].confirmation_height)
            {
                work.push((source.account, source.height));
                continue;
            }
            if let Some(info) = self.accounts.get_mut(&account) {
                info.confirmation_height = next;
            }
            cemented.push(next_hash);
        }
        self.cemented += cemented.len() as u64;
        cemented
    }
}

/// The RPC's entry check: work below the lowest threshold is refused outright.
pub(crate) fn check_entry_work(block: &StateBlock, thresholds: &WorkThresholds) -> Result<(), ProcessError> {
    if work::value(block.work, &block.work_root()) < thresholds.entry() {
        return Err(ProcessError::WorkLow);
    }
    Ok(())
}

/// The genesis signature as a [`Signature`].
pub(crate) fn genesis_signature() -> Signature {
    Signature::from_hex(GENESIS_SIGNATURE).expect("constant is 128 hex digits")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use blake2::digest::consts::U32;
    use blake2::{Blake2b, Digest};

    use super::*;
    use crate::nano::PrivateKey;

    const DEV: &WorkThresholds = &WorkThresholds::DEV;

    fn genesis_key() -> PrivateKey {
        PrivateKey::from_hex(GENESIS_PRIVATE_KEY).unwrap()
    }

    /// A signed block with work at the dev threshold for its kind.
    fn block(
        key: &PrivateKey,
        previous: BlockHash,
        balance: u128,
        link: [u8; 32],
        receive: bool,
    ) -> StateBlock {
        let mut b = StateBlock {
            account: key.public_key(),
            previous,
            representative: key.public_key(),
            balance: Raw::new(balance),
            link,
            signature: Signature::default(),
            work: 0,
        };
        b.sign(key);
        let threshold = WorkThresholds::DEV.for_block(receive);
        b.work = work::generate(&b.work_root(), threshold, &AtomicBool::new(false)).unwrap();
        b
    }

    #[test]
    fn genesis_constants_agree() {
        // blake2b-256(source ‖ representative ‖ account): a legacy open block has no preamble.
        let digest: [u8; 32] = Blake2b::<U32>::new()
            .chain_update(GENESIS_PUBLIC_KEY)
            .chain_update(GENESIS_PUBLIC_KEY)
            .chain_update(GENESIS_PUBLIC_KEY)
            .finalize()
            .into();
        assert_eq!(digest, GENESIS_HASH_BYTES);
        let key = genesis_key();
        assert_eq!(key.public_key().as_bytes(), &GENESIS_PUBLIC_KEY);
        // Signing is deterministic: the genesis key reproduces the published signature.
        assert_eq!(key.sign(&BlockHash::from_bytes(GENESIS_HASH_BYTES)), genesis_signature());
        assert!(work::value(GENESIS_WORK, &GENESIS_PUBLIC_KEY) >= WorkThresholds::DEV.epoch_1);
        let ledger = Ledger::new();
        assert!(ledger.is_confirmed(&BlockHash::from_bytes(GENESIS_HASH_BYTES)));
        assert_eq!(ledger.balance(&key.public_key()), Raw::new(u128::MAX));
    }

    #[test]
    fn send_open_receive_change_then_confirm_cements_dependencies() {
        let mut ledger = Ledger::new();
        let genesis = genesis_key();
        let alice = PrivateKey::from_bytes([1; 32]);
        let g0 = BlockHash::from_bytes(GENESIS_HASH_BYTES);
        let send1 = block(&genesis, g0, u128::MAX - 100, *alice.public_key().as_bytes(), false);
        let send1_hash = ledger.process(&send1, DEV, 10).unwrap();
        let send2 = block(&genesis, send1_hash, u128::MAX - 150, *alice.public_key().as_bytes(), false);
        let send2_hash = ledger.process(&send2, DEV, 11).unwrap();
        assert_eq!(ledger.receivable_for(&alice.public_key()).count(), 2);
        assert_eq!(ledger.get(&g0).unwrap().successor, send1_hash);

        let open = block(&alice, BlockHash::ZERO, 100, *send1_hash.as_bytes(), true);
        let open_hash = ledger.process(&open, DEV, 12).unwrap();
        let receive = block(&alice, open_hash, 150, *send2_hash.as_bytes(), true);
        let receive_hash = ledger.process(&receive, DEV, 13).unwrap();
        let change = block(&alice, receive_hash, 150, [0; 32], false);
        let change_hash = ledger.process(&change, DEV, 14).unwrap();
        assert_eq!(ledger.balance(&alice.public_key()), Raw::new(150));
        assert_eq!(ledger.receivable_for(&alice.public_key()).count(), 0);
        assert_eq!(ledger.received_by(&send2_hash), Some(receive_hash));
        let entry = ledger.get(&change_hash).unwrap();
        assert_eq!((entry.height, entry.subtype, entry.amount), (3, Some(Subtype::Change), Raw::ZERO));
        assert_eq!(ledger.get(&open_hash).unwrap().subtype, Some(Subtype::Receive));

        // Confirming the receive cements the open and both sends first, then itself.
        assert!(!ledger.is_confirmed(&send1_hash));
        let cemented = ledger.confirm(&receive_hash);
        assert_eq!(cemented, vec![send1_hash, open_hash, send2_hash, receive_hash]);
        assert!(!ledger.is_confirmed(&change_hash));
        assert!(ledger.confirm(&receive_hash).is_empty(), "idempotent");
        assert_eq!(ledger.cemented_count(), 5);
        assert_eq!(ledger.account(&alice.public_key()).unwrap().confirmation_frontier(), receive_hash);
    }

    /// Appends a made-up block (`confirm` looks at neither signature nor work) to `account`'s
    /// chain, opening the account if needed; block `n` gets a hash made from `n`.
    fn append(
        ledger: &mut Ledger,
        account: PublicKey,
        subtype: Subtype,
        link: [u8; 32],
        n: u64,
    ) -> BlockHash {
        let mut id = [1u8; 32];
        id[..8].copy_from_slice(&n.to_le_bytes());
        let hash = BlockHash::from_bytes(id);
        let info = ledger.accounts.entry(account).or_insert_with(|| Account {
            chain: Vec::new(),
            balance: Raw::ZERO,
            representative: account,
            modified: 0,
            confirmation_height: 0,
        });
        let previous = info.chain.last().copied().unwrap_or(BlockHash::ZERO);
        info.chain.push(hash);
        let height = info.block_count();
        let block = StateBlock {
            account,
            previous,
            representative: account,
            balance: Raw::ZERO,
            link,
            signature: Signature::default(),
            work: 0,
        };
        let entry = Entry {
            block: Some(block),
            account,
            height,
            balance: Raw::ZERO,
            amount: Raw::ZERO,
            subtype: Some(subtype),
            local_timestamp: 0,
            successor: BlockHash::ZERO,
        };
        ledger.blocks.insert(hash, entry);
        hash
    }

    #[test]
    fn confirming_a_long_chain_of_receives_needs_no_deep_stack() {
        const ACCOUNTS: u64 = 20_000;
        // Account i opens from account i-1's send and sends to account i+1: confirming the
        // last open cements every account before it, each one a level deeper.
        let run = || {
            let mut ledger = Ledger::new();
            let account = |i: u64| {
                let mut key = [2u8; 32];
                key[..8].copy_from_slice(&i.to_le_bytes());
                PublicKey::from_bytes(key)
            };
            let genesis = PublicKey::from_bytes(GENESIS_PUBLIC_KEY);
            let first = append(&mut ledger, genesis, Subtype::Send, *account(1).as_bytes(), 0);
            let mut send = first;
            let mut open = first;
            for i in 1..=ACCOUNTS {
                open = append(&mut ledger, account(i), Subtype::Receive, *send.as_bytes(), 2 * i - 1);
                send = append(&mut ledger, account(i), Subtype::Send, *account(i + 1).as_bytes(), 2 * i);
            }
            let cemented = ledger.confirm(&open);
            assert_eq!(cemented.len() as u64, 2 * ACCOUNTS);
            assert_eq!((cemented[0], *cemented.last().unwrap()), (first, open), "dependencies first");
            assert!(!ledger.is_confirmed(&send), "the last send does not feed the open");
        };
        // A small stack: recursing once per account would overflow it.
        std::thread::Builder::new().stack_size(256 * 1024).spawn(run).unwrap().join().unwrap();
    }

    #[test]
    fn subtype_hints_compare_with_the_account_balance() {
        let ledger = Ledger::new();
        let genesis = genesis_key();
        let g0 = BlockHash::from_bytes(GENESIS_HASH_BYTES);
        let send = block(&genesis, g0, 5, [1; 32], false);
        assert_eq!(ledger.check_subtype_hint(&send, "send"), Ok(()));
        assert_eq!(ledger.check_subtype_hint(&send, "receive"), Err(ProcessError::InvalidSubtypeBalance));
        assert_eq!(ledger.check_subtype_hint(&send, "change"), Err(ProcessError::InvalidSubtypeBalance));
        assert_eq!(ledger.check_subtype_hint(&send, "open"), Err(ProcessError::InvalidSubtypePrevious));
        assert_eq!(ledger.check_subtype_hint(&send, "epoch"), Err(ProcessError::InvalidSubtypeBalance));
        assert_eq!(ledger.check_subtype_hint(&send, "Send"), Err(ProcessError::InvalidSubtype));
        let same = block(&genesis, g0, u128::MAX, [0; 32], false);
        assert_eq!(ledger.check_subtype_hint(&same, "change"), Ok(()));
        assert_eq!(ledger.check_subtype_hint(&same, "epoch"), Err(ProcessError::InvalidEpochLink));
        let gap = block(&genesis, BlockHash::from_bytes([7; 32]), 5, [1; 32], false);
        assert_eq!(ledger.check_subtype_hint(&gap, "send"), Err(ProcessError::GapPrevious));
    }

    #[test]
    fn epoch_blocks_check_gap_then_previous_balance_then_fork() {
        let mut ledger = Ledger::new();
        let genesis = genesis_key();
        let g0 = BlockHash::from_bytes(GENESIS_HASH_BYTES);
        let mut link = [0u8; 32];
        link[..14].copy_from_slice(b"epoch v2 block");
        // A gap is reported before anything else, even with the account's balance kept.
        let gap = block(&genesis, BlockHash::from_bytes([0x42; 32]), u128::MAX, link, false);
        assert_eq!(ledger.process(&gap, DEV, 1), Err(ProcessError::GapPrevious));
        let alice = PrivateKey::from_bytes([1; 32]);
        let send = block(&genesis, g0, u128::MAX - 10, *alice.public_key().as_bytes(), false);
        ledger.process(&send, DEV, 2).unwrap();
        let open = block(&alice, BlockHash::ZERO, 10, *send.hash().as_bytes(), true);
        ledger.process(&open, DEV, 3).unwrap();
        let spend = block(&alice, open.hash(), 4, [9; 32], false);
        ledger.process(&spend, DEV, 4).unwrap();
        // Keeping the *previous block's* balance (10, not the account's 4) makes an epoch block,
        // signed by the epoch signer, and on a block that is not the head: a fork.
        let mut stale = block(&alice, open.hash(), 10, link, false);
        stale.sign(&genesis);
        assert_eq!(ledger.process(&stale, DEV, 5), Err(ProcessError::Fork));
        // With the account's balance instead it is an ordinary block, which genesis cannot sign.
        let mut ordinary = block(&alice, open.hash(), 4, link, false);
        ordinary.sign(&genesis);
        assert_eq!(ledger.process(&ordinary, DEV, 6), Err(ProcessError::BadSignature));
        // A gap signed by neither the account nor the epoch signer is a bad signature.
        let mut unsigned = block(&alice, BlockHash::from_bytes([0x42; 32]), 4, link, false);
        unsigned.signature = Signature::default();
        assert_eq!(ledger.process(&unsigned, DEV, 7), Err(ProcessError::BadSignature));
        // At the head: the position error.
        let mut head = block(&alice, spend.hash(), 4, link, false);
        head.sign(&genesis);
        assert_eq!(ledger.process(&head, DEV, 8), Err(ProcessError::BlockPosition));
    }

    #[test]
    fn epoch_blocks_cannot_follow() {
        let mut ledger = Ledger::new();
        let genesis = genesis_key();
        let mut link = [0u8; 32];
        link[..14].copy_from_slice(b"epoch v2 block");
        let epoch = block(&genesis, BlockHash::from_bytes(GENESIS_HASH_BYTES), u128::MAX, link, false);
        assert_eq!(ledger.process(&epoch, DEV, 1), Err(ProcessError::BlockPosition));
        let alice = PrivateKey::from_bytes([1; 32]);
        let mut forged = block(&alice, BlockHash::ZERO, 0, link, false);
        forged.sign(&alice); // not the epoch signer
        assert_eq!(ledger.process(&forged, DEV, 1), Err(ProcessError::BadSignature));
    }
}
