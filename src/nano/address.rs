use std::fmt;
use std::str::FromStr;

use blake2::digest::consts::U5;
use blake2::{Blake2b, Digest};

use super::{decode_hex, ParseError};

const ALPHABET: &[u8; 32] = b"13456789abcdefghijkmnopqrstuwxyz";

/// A 32-byte ed25519 public key: the identity of a Nano account.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits (either case), as found in a block's `link` field.
    pub fn from_hex(s: &str) -> Result<Self, ParseError> {
        decode_hex::<32>(s).map(PublicKey)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode_upper(self.0))
    }
}

/// A checksummed Nano account address (`nano_…`, or the legacy `xrb_…` on input).
///
/// Two addresses are equal when their keys are equal, whatever prefix they were written with.
///
/// ```
/// use nanosession::nano::Address;
/// let a: Address = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap();
/// let b: Address = "xrb_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap();
/// assert_eq!(a, b);
/// // one changed checksum character is refused
/// assert!("nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtd1".parse::<Address>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(PublicKey);

impl Address {
    /// The burn address (all-zero key): valid, but nobody can spend from it.
    pub const BURN: Address = Address(PublicKey([0; 32]));

    /// The account's public key.
    pub const fn public_key(&self) -> &PublicKey {
        &self.0
    }

    /// True for the burn address.
    pub fn is_burn(&self) -> bool {
        *self == Self::BURN
    }
}

impl From<PublicKey> for Address {
    fn from(key: PublicKey) -> Self {
        Address(key)
    }
}

fn checksum(key: &[u8; 32]) -> [u8; 5] {
    let mut c: [u8; 5] = Blake2b::<U5>::digest(key).into();
    c.reverse();
    c
}

impl FromStr for Address {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let body = ["nano_", "xrb_", "nano-", "xrb-"]
            .iter()
            .find_map(|p| s.strip_prefix(p))
            .ok_or(ParseError::Address("expected a nano_ or xrb_ prefix"))?
            .as_bytes();
        if body.len() != 60 {
            return Err(ParseError::Address("expected 60 characters after the prefix"));
        }
        if !matches!(body[0], b'1' | b'3') {
            return Err(ParseError::Address("the first character must be 1 or 3"));
        }
        // 4 zero bits, 256 key bits and 40 checksum bits, read 5 bits per character.
        let (mut acc, mut bits, mut out) = (0u32, -4i32, [0u8; 37]);
        let mut n = 0;
        for &c in body {
            let v = ALPHABET
                .iter()
                .position(|&a| a == c)
                .ok_or(ParseError::Address("character outside the Nano alphabet"))?;
            acc = ((acc << 5) | v as u32) & 0x1fff;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out[n] = (acc >> bits) as u8;
                n += 1;
            }
        }
        let key: [u8; 32] = out[..32].try_into().expect("37 bytes decoded");
        if out[32..] != checksum(&key) {
            return Err(ParseError::Address("checksum mismatch"));
        }
        Ok(Address(PublicKey(key)))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.0 .0;
        let mut s = String::with_capacity(65);
        s.push_str("nano_");
        let (mut acc, mut bits) = (0u32, 4);
        for &b in key.iter().chain(checksum(key).iter()) {
            acc = ((acc << 8) | b as u32) & 0xfff;
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                s.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
            }
        }
        f.write_str(&s)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

crate::nano::serde_via_str!(Address);

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex: &str) -> PublicKey {
        PublicKey::from_hex(hex).unwrap()
    }

    #[test]
    fn reference_vectors_round_trip() {
        let cases = [
            (
                "B0311EA55708D6A53C75CDBF88300259C6D018522FE3D4D0A242E431F9E8B6D0",
                "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo",
            ),
            (
                "DDD378054E7F57E0B9352FFE176D76322CF10CA7F4945415FE50E84C60583DFB",
                "nano_3qgmh14nwztqw4wmcdzy4xpqeejey68chx6nciczwn9abji7ihhum9qtpmdr",
            ),
            (
                "3FE80B4BC842E82C1C18ABFEEC47EA989E63953BC82AC411F304D13833D52A56",
                "nano_1hza3f7wiiqa7ig3jczyxj5yo86yegcmqk3criaz838j91sxcckpfhbhhra1",
            ),
            (
                "19D3D919475DEED4696B5D13018151D1AF88B2BD3BCFF048B45031C1F36D1858",
                "nano_18gmu6engqhgtjnppqam181o5nfhj4sdtgyhy36dan3jr9spt84rzwmktafc",
            ),
            (
                "C008B814A7D269A1FA3C6528B19201A24D797912DB9996FF02A1FF356E45552B",
                "nano_3i1aq1cchnmbn9x5rsbap8b15akfh7wj7pwskuzi7ahz8oq6cobd99d4r3b7",
            ),
            (
                "9795E63D9242D8C6E00FA5D95587B2E5262B1E15001A24D2F6D803DE577A0574",
                "xrb_37wowrys6iprrui1zbgscp5u7sb87eh3c11t6mbhfp15usdqn3dn3sfp714g",
            ),
            (
                "5D1AA8A45F8736519D707FCB375976A7F9AF795091021D7E9C7548D6F45DD8D5",
                "nano_1qato4k7z3spc8gq1zyd8xeqfbzsoxwo36a45ozbrxcatut7up8ohyardu1z",
            ),
        ];
        for (hex, addr) in cases {
            let parsed: Address = addr.parse().unwrap();
            assert_eq!(parsed.public_key(), &key(hex), "{addr}");
            let canonical = addr.replacen("xrb_", "nano_", 1);
            assert_eq!(Address::from(key(hex)).to_string(), canonical);
        }
    }

    #[test]
    fn burn_address() {
        let burn: Address =
            "nano_1111111111111111111111111111111111111111111111111111hifc8npp".parse().unwrap();
        assert!(burn.is_burn());
        assert_eq!(burn.to_string(), "nano_1111111111111111111111111111111111111111111111111111hifc8npp");
    }

    #[test]
    fn rejects_malformed() {
        let good = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo";
        assert!("nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtd1"
            .parse::<Address>()
            .is_err());
        assert!(good.to_uppercase().parse::<Address>().is_err());
        assert!(good.replace("nano_", "xno_").parse::<Address>().is_err());
        assert!(good[..64].parse::<Address>().is_err());
        assert!(good.replacen("_3", "_4", 1).parse::<Address>().is_err());
        assert!(good.replacen("_3", "_2", 1).parse::<Address>().is_err()); // '2' is not in the alphabet
        assert!(format!("{good}1").parse::<Address>().is_err());
    }
}
