use std::fmt;
use std::str::FromStr;

use super::{decode_hex, ParseError};

/// A 32-byte Nano block hash.
///
/// Parsed case-insensitively from 64 hex digits and always displayed in the node's upper-case
/// form, so one block has exactly one string form (the spent-set key).
///
/// ```
/// use nanosession::nano::BlockHash;
/// let a: BlockHash = "87434f8041869a01c8f6f263b87972d7ba443a72e0a97d7a3fd0ccc2358fd6f9".parse().unwrap();
/// let b: BlockHash = "87434F8041869A01C8F6F263B87972D7BA443A72E0A97D7A3FD0CCC2358FD6F9".parse().unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "87434F8041869A01C8F6F263B87972D7BA443A72E0A97D7A3FD0CCC2358FD6F9");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash([u8; 32]);

impl BlockHash {
    /// All zeros: "no block" (an open block's `previous`, a chain head's `successor`).
    pub const ZERO: BlockHash = BlockHash([0; 32]);

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        BlockHash(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// True for the all-zero hash.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }
}

impl FromStr for BlockHash {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_hex::<32>(s).map(BlockHash)
    }
}

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode_upper(self.0))
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({self})")
    }
}

crate::nano::serde_via_str!(BlockHash);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert!("ABC".parse::<BlockHash>().is_err());
        assert!("G".repeat(64).parse::<BlockHash>().is_err());
        assert!("0".repeat(65).parse::<BlockHash>().is_err());
        assert!(" ".repeat(64).parse::<BlockHash>().is_err());
        assert!("0".repeat(64).parse::<BlockHash>().unwrap().is_zero());
    }
}
