use std::fmt;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest};
use ed25519_dalek::hazmat::raw_verify;
use ed25519_dalek::VerifyingKey;

use super::{decode_hex, BlockHash, ParseError, PublicKey, Raw};

/// A 64-byte ed25519-blake2b signature (`R ‖ S`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Parses 128 hex digits, either case.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        decode_hex::<64>(s).map(Signature)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

/// A Nano state block: the only block type a payment may be made with.
///
/// ```
/// use nanosession::nano::{PrivateKey, Raw, StateBlock, BlockHash};
/// let key = PrivateKey::from_bytes([7; 32]);
/// let mut block = StateBlock {
///     account: key.public_key(),
///     previous: BlockHash::from_bytes([1; 32]),
///     representative: key.public_key(),
///     balance: Raw::new(5),
///     link: [2; 32],
///     signature: Default::default(),
///     work: 0,
/// };
/// block.sign(&key);
/// assert!(block.verify_signature());
/// block.balance = Raw::new(6); // any change breaks the signature
/// assert!(!block.verify_signature());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateBlock {
    /// Owner of the account chain and signer of the block.
    pub account: PublicKey,
    /// Previous block of this account, zero for an open block.
    pub previous: BlockHash,
    /// Representative after this block.
    pub representative: PublicKey,
    /// Balance after this block.
    pub balance: Raw,
    /// Destination key for a send, source hash for a receive, zero for a change.
    pub link: [u8; 32],
    /// Signature of [`StateBlock::hash`] by `account`.
    pub signature: Signature,
    /// Proof-of-work nonce.
    pub work: u64,
}

impl Default for Signature {
    fn default() -> Self {
        Signature([0; 64])
    }
}

impl StateBlock {
    /// An unsigned send of `balance_after` left on `account`, crediting `to`.
    pub fn send(
        account: PublicKey,
        previous: BlockHash,
        representative: PublicKey,
        balance_after: Raw,
        to: &PublicKey,
    ) -> Self {
        Self::unsigned(account, previous, representative, balance_after, *to.as_bytes())
    }

    /// An unsigned receive of the send `source`, leaving `balance_after`; with a zero
    /// `previous` it is the account's open block.
    pub fn receive(
        account: PublicKey,
        previous: BlockHash,
        representative: PublicKey,
        balance_after: Raw,
        source: &BlockHash,
    ) -> Self {
        Self::unsigned(account, previous, representative, balance_after, *source.as_bytes())
    }

    /// An unsigned representative change (the balance stays, the link is zero).
    pub fn change(account: PublicKey, previous: BlockHash, representative: PublicKey, balance: Raw) -> Self {
        Self::unsigned(account, previous, representative, balance, [0; 32])
    }

    fn unsigned(
        account: PublicKey,
        previous: BlockHash,
        representative: PublicKey,
        balance: Raw,
        link: [u8; 32],
    ) -> Self {
        StateBlock {
            account,
            previous,
            representative,
            balance,
            link,
            signature: Signature::default(),
            work: 0,
        }
    }

    /// The block hash: blake2b-256 over the preamble and the five hashed fields.
    pub fn hash(&self) -> BlockHash {
        let mut preamble = [0u8; 32];
        preamble[31] = 6;
        let digest: [u8; 32] = Blake2b::<U32>::new()
            .chain_update(preamble)
            .chain_update(self.account.as_bytes())
            .chain_update(self.previous.as_bytes())
            .chain_update(self.representative.as_bytes())
            .chain_update(self.balance.get().to_be_bytes())
            .chain_update(self.link)
            .finalize()
            .into();
        BlockHash::from_bytes(digest)
    }

    /// Checks `signature` over [`StateBlock::hash`] against `account`'s key.
    pub fn verify_signature(&self) -> bool {
        verify_signature(&self.account, &self.hash(), &self.signature)
    }

    /// Signs the block with `key` (which must be the account's key to be valid).
    pub fn sign(&mut self, key: &super::PrivateKey) {
        self.signature = key.sign(&self.hash());
    }

    /// The proof-of-work root: `previous`, or the account key for an open block.
    pub fn work_root(&self) -> [u8; 32] {
        if self.previous.is_zero() {
            *self.account.as_bytes()
        } else {
            *self.previous.as_bytes()
        }
    }
}

/// Verifies an ed25519-blake2b signature of a block hash.
pub(crate) fn verify_signature(key: &PublicKey, hash: &BlockHash, sig: &Signature) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(key.as_bytes()) else {
        return false;
    };
    let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    raw_verify::<Blake2b512>(&vk, hash.as_bytes(), &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nano::{Address, PrivateKey};

    fn bh(s: &str) -> BlockHash {
        s.parse().unwrap()
    }
    fn addr(s: &str) -> PublicKey {
        *s.parse::<Address>().unwrap().public_key()
    }

    /// nano-docs `block_create` example (reference §9.1).
    #[test]
    fn docs_block_hash_and_signature() {
        let key =
            PrivateKey::from_hex("0000000000000000000000000000000000000000000000000000000000000002").unwrap();
        let mut block = StateBlock {
            account: key.public_key(),
            previous: bh("F47B23107E5F34B2CE06F562B5C435DF72A533251CB414C51B2B62A8F63A00E4"),
            representative: addr("nano_1hza3f7wiiqa7ig3jczyxj5yo86yegcmqk3criaz838j91sxcckpfhbhhra1"),
            balance: Raw::new(1000000000000000000000),
            link: decode_hex("19D3D919475DEED4696B5D13018151D1AF88B2BD3BCFF048B45031C1F36D1858").unwrap(),
            signature: Signature::default(),
            work: 0xcab7404f0b5449d0,
        };
        assert_eq!(block.hash(), bh("FF0144381CFF0B2C079A115E7ADA7E96F43FD219446E7524C48D1CC9900C4F17"));
        block.sign(&key);
        assert_eq!(
            block.signature.to_string(),
            "3BFBA64A775550E6D49DF1EB8EEC2136DCD74F090E2ED658FBD9E80F17CB1C9F9F7BDE2B93D95558EC2F277FFF15FD11E6E2162A1714731B743D1E941FA4560A"
        );
        assert!(block.verify_signature());
    }

    #[test]
    fn constructors_fill_the_link_by_kind() {
        let (a, b) = (PublicKey::from_bytes([1; 32]), PublicKey::from_bytes([2; 32]));
        let prev = BlockHash::from_bytes([3; 32]);
        assert_eq!(StateBlock::send(a, prev, a, Raw::new(5), &b).link, [2; 32]);
        let open = StateBlock::receive(a, BlockHash::ZERO, a, Raw::new(5), &prev);
        assert_eq!((open.link, open.work_root()), ([3; 32], [1; 32]));
        let change = StateBlock::change(a, prev, b, Raw::new(5));
        assert_eq!((change.link, change.representative, change.work_root()), ([0; 32], b, [3; 32]));
    }

    /// A real mainnet send (reference §6.2): hash and signature verify.
    #[test]
    fn mainnet_send_verifies() {
        let block = StateBlock {
            account: addr("nano_1ipx847tk8o46pwxt5qjdbncjqcbwcc1rrmqnkztrfjy5k7z4imsrata9est"),
            previous: bh("CE898C131AAEE25E05362F247760F8A3ACF34A9796A5AE0D9204E86B0637965E"),
            representative: addr("nano_1stofnrxuz3cai7ze75o174bpm7scwj9jn3nxsn8ntzg784jf1gzn1jjdkou"),
            balance: Raw::new(5606157000000000000000000000000000000),
            link: decode_hex("5D1AA8A45F8736519D707FCB375976A7F9AF795091021D7E9C7548D6F45DD8D5").unwrap(),
            signature: Signature::from_hex("82D41BC16F313E4B2243D14DFFA2FB04679C540C2095FEE7EAE0F2F26880AD56DD48D87A7CC5DD760C5B2D76EE2C205506AA557BF00B60D8DEE312EC7343A501").unwrap(),
            work: 0x8a142e07a10996d5,
        };
        assert_eq!(block.hash(), bh("87434F8041869A01C8F6F263B87972D7BA443A72E0A97D7A3FD0CCC2358FD6F9"));
        assert!(block.verify_signature());
        let mut forged = block.clone();
        forged.signature.0[0] ^= 1;
        assert!(!forged.verify_signature());
    }

    /// nanocurrency-js valid_blocks.json entry 0 (reference §9.4), an open block.
    #[test]
    fn js_open_block_signature_is_reproduced() {
        let key =
            PrivateKey::from_hex("2B70ABB4D458DC5EDA2C998BF5454717BAA6A122AC8694A02760397DB523CA66").unwrap();
        assert_eq!(
            key.public_key(),
            PublicKey::from_hex("9DB2961B2D01D49C53AE6C9E513BC51AC04273CD4DAC4277F82B44B4F084A91A").unwrap()
        );
        let mut block = StateBlock {
            account: addr("xrb_39fkkrfkt1gnmjbtwu6yc6xwc8p1abswtmfeabuzict6pmrabcatzmh71rgc"),
            previous: BlockHash::ZERO,
            representative: addr("xrb_3qfohkcii7dgaz3beijxc9y93x3kto5wioy5qdt5fdnq3p94psm185n7ktf6"),
            balance: Raw::new(881686),
            link: decode_hex("9728D0A8B740CBABD885A20218CA0D1371A2AF5E8CF8B59CA7D7FA3C290B0CB0").unwrap(),
            signature: Signature::default(),
            work: 0xb2ff948c874e7d62,
        };
        assert_eq!(block.hash(), bh("30B313950FE441F009649DBBEF093DC7968A970E56DADC3E50B1E23A481C5AC6"));
        block.sign(&key);
        assert_eq!(block.signature.to_string(), "59D94A7414CD685D188D5CC77B6DB4E331BBD37534DD2B69DE2198BD1E4ADB3DEBB3E5C1D38597CAA512D45A9E454DE79E995DB71BC646FAA11582A1BC5D9203");
        assert_eq!(block.work_root(), *block.account.as_bytes());
        assert_eq!(crate::nano::work::value(block.work, &block.work_root()), 0xfffffffb301de30f);
    }
}
