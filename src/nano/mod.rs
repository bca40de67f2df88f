//! Nano (XNO) primitives: no I/O, no Tower, no network.
//!
//! Every value that crosses the wire is parsed once into a type that cannot hold an invalid
//! value: [`Address`] (a checksummed account), [`BlockHash`], [`Raw`] (an exact `u128` amount),
//! [`StateBlock`] (hashing and ed25519-blake2b signature checks) and, for the paying side,
//! [`PrivateKey`] and [`work`].

mod address;
mod amount;
mod block;
mod hash;
mod keys;
pub mod work;

pub use address::{Address, PublicKey};
pub use amount::Raw;
#[cfg(feature = "mock-node")]
pub(crate) use block::verify_signature;
pub use block::{Signature, StateBlock};
pub use hash::BlockHash;
pub use keys::{PrivateKey, Seed};

/// Why a Nano value could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not exactly the expected number of hex digits, or a non-hex character.
    #[error("expected {expected} hexadecimal digits")]
    Hex {
        /// How many hex digits the value must have.
        expected: usize,
    },
    /// Not a valid account address (prefix, length, alphabet or checksum).
    #[error("invalid Nano address: {0}")]
    Address(&'static str),
    /// Not a decimal amount of 1 to 39 digits that fits in `u128`.
    #[error("invalid raw amount: {0}")]
    Amount(&'static str),
}

/// Serde through the type's `Display` and `FromStr`: every wire value here is a string.
macro_rules! serde_via_str {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_via_str;

/// Decodes exactly `N` bytes from `2 * N` hex digits, either case.
pub(crate) fn decode_hex<const N: usize>(s: &str) -> Result<[u8; N], ParseError> {
    let mut out = [0u8; N];
    if s.len() != 2 * N {
        return Err(ParseError::Hex { expected: 2 * N });
    }
    hex::decode_to_slice(s, &mut out).map_err(|_| ParseError::Hex { expected: 2 * N })?;
    Ok(out)
}
