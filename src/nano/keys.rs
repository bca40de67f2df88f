use std::fmt;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest};
use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::VerifyingKey;
use zeroize::Zeroizing;

use super::{decode_hex, BlockHash, ParseError, PublicKey, Signature};

/// A 32-byte wallet seed. Its `Debug` form never shows the bytes.
#[derive(Clone)]
pub struct Seed(Zeroizing<[u8; 32]>);

impl Seed {
    /// Wraps seed bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Seed(Zeroizing::new(bytes))
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        decode_hex::<32>(s).map(Self::from_bytes)
    }

    /// The private key of account `index`: blake2b-256(seed ‖ index as u32 big-endian).
    pub fn derive(&self, index: u32) -> PrivateKey {
        let key: [u8; 32] = Blake2b::<U32>::new()
            .chain_update(self.0.as_slice())
            .chain_update(index.to_be_bytes())
            .finalize()
            .into();
        PrivateKey::from_bytes(key)
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// A Nano private key (ed25519 with Blake2b-512). Its `Debug` form never shows the key.
#[derive(Clone)]
pub struct PrivateKey {
    /// Expanded once: signing then skips the Blake2b-512 expansion and the public-key
    /// multiplication (zeroized when the last clone drops).
    expanded: std::sync::Arc<ExpandedSecretKey>,
    verifying: VerifyingKey,
    public: PublicKey,
}

impl PrivateKey {
    /// Wraps private key bytes and derives the public key.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let (esk, vk) = expand(&bytes);
        PrivateKey {
            expanded: std::sync::Arc::new(esk),
            verifying: vk,
            public: PublicKey::from_bytes(vk.to_bytes()),
        }
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        decode_hex::<32>(s).map(Self::from_bytes)
    }

    /// The account's public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Signs a block hash (deterministic, as the node does).
    pub fn sign(&self, hash: &BlockHash) -> Signature {
        Signature(raw_sign::<Blake2b512>(&self.expanded, hash.as_bytes(), &self.verifying).to_bytes())
    }
}

fn expand(secret: &[u8; 32]) -> (ExpandedSecretKey, VerifyingKey) {
    let h: Zeroizing<[u8; 64]> = Zeroizing::new(Blake2b512::digest(secret).into());
    let esk = ExpandedSecretKey::from_bytes(&h);
    let vk = VerifyingKey::from(&esk);
    (esk, vk)
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey {{ public: {:?}, secret: <redacted> }}", self.public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_expansion_uses_blake2b() {
        let zero = PrivateKey::from_bytes([0; 32]);
        assert_eq!(
            zero.public_key(),
            PublicKey::from_hex("19D3D919475DEED4696B5D13018151D1AF88B2BD3BCFF048B45031C1F36D1858").unwrap()
        );
        let docs =
            PrivateKey::from_hex("781186FB9EF17DB6E3D1056550D9FAE5D5BBADA6A6BC370E4CBB938B1DC71DA3").unwrap();
        assert_eq!(
            docs.public_key(),
            PublicKey::from_hex("3068BB1CA04525BB0E416C485FE6A67FD52540227D267CC8B6E8DA958A7FA039").unwrap()
        );
    }

    #[test]
    fn seed_derivation_vectors() {
        let cases = [
            (
                "0000000000000000000000000000000000000000000000000000000000000000",
                0,
                "9F0E444C69F77A49BD0BE89DB92C38FE713E0963165CCA12FAF5712D7657120F",
                "nano_3i1aq1cchnmbn9x5rsbap8b15akfh7wj7pwskuzi7ahz8oq6cobd99d4r3b7",
            ),
            (
                "0000000000000000000000000000000000000000000000000000000000000001",
                1,
                "1495F2D49159CC2EAAAA97EBB42346418E1268AFF16D7FCA90E6BAD6D0965520",
                "nano_35s8xxbrurpph5zrcb8ey3y1j9niij7k1m645otcxdk3fxg517i6j5empshy",
            ),
            (
                "BBA067329F44D8011BD6E15F43366A81307FBD8A4801A6997B354AD302F4BC72",
                0,
                "19622D20FBC8AAA9E45CF016FAC7EF7D85908EE898A670B4D6A2C8AA272828D0",
                "nano_37wowrys6iprrui1zbgscp5u7sb87eh3c11t6mbhfp15usdqn3dn3sfp714g",
            ),
            (
                "A98A541406E5DF55EB3F57396255AB133A417C3252679CC9C1AEF51382089AF9",
                1,
                "AB308F564D2FC791B2601C64E52E102C3E779AC6AB4A2AF875855C6256EB3686",
                "nano_3eizh9rjaaphzj4wd7mbmuawfmdz17e7pao9nbstwg4ohfhfcoxq98o6xdw7",
            ),
            (
                "445466874730B5CC66692BE409069644F836E051962AAA420521F06580883034",
                7,
                "C0CB015BCA0834AC827B6259B48C052F7D62692DA1FA21DCDF755CFD27ACBE43",
                "nano_3iy8tenzc3mcc7jprs6gszcsdbrnusfnsjyp8my3f1jwtshn6mdowe5gpytj",
            ),
        ];
        for (seed, index, private, address) in cases {
            let key = Seed::from_hex(seed).unwrap().derive(index);
            let expected = PrivateKey::from_hex(private).unwrap();
            assert_eq!(key.public_key(), expected.public_key(), "the derived private key is {private}");
            let hash = BlockHash::from_bytes([index as u8; 32]);
            assert_eq!(key.sign(&hash).0, expected.sign(&hash).0);
            assert_eq!(crate::nano::Address::from(key.public_key()).to_string(), address);
        }
    }

    #[test]
    fn debug_never_shows_secrets() {
        let seed =
            Seed::from_hex("BBA067329F44D8011BD6E15F43366A81307FBD8A4801A6997B354AD302F4BC72").unwrap();
        let key = seed.derive(0);
        let printed = format!("{seed:?} {key:?}").to_uppercase();
        assert!(!printed.contains("BBA067329F44"));
        assert!(!printed.contains("19622D20FBC8"));
    }
}
