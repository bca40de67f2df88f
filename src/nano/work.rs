//! Proof of work: the value of a nonce for a root, and thresholds.

use blake2::digest::consts::U8;
use blake2::{Blake2b, Digest};

/// Dev-network epoch-1 threshold (also used by accounts not yet at epoch 2).
pub const DEV_EPOCH_1: u64 = 0xfe00_0000_0000_0000;
/// Live-network epoch-2 send/change threshold.
pub const LIVE_SEND: u64 = 0xffff_fff8_0000_0000;
/// Live-network epoch-1 threshold: the most a verifier should demand of historic blocks.
pub const LIVE_EPOCH_1: u64 = 0xffff_ffc0_0000_0000;

/// The work value of `nonce` for `root`: blake2b-64 (digest length 8, not truncated) of
/// `nonce` little-endian ‖ root, read little-endian.
pub fn value(nonce: u64, root: &[u8; 32]) -> u64 {
    let out: [u8; 8] =
        Blake2b::<U8>::new().chain_update(nonce.to_le_bytes()).chain_update(root).finalize().into();
    u64::from_le_bytes(out)
}

/// True if `nonce` meets `threshold` for `root`.
pub fn is_valid(nonce: u64, root: &[u8; 32], threshold: u64) -> bool {
    value(nonce, root) >= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(s: &str) -> [u8; 32] {
        crate::nano::decode_hex(s).unwrap()
    }

    #[test]
    fn reference_vectors() {
        let cases = [
            (
                "2387767168f9453db0eca227c79d7e7a31b78cafb58bd9cdee630881c70979b8",
                0xc3f097857cc7106b,
                0xfffffff867b3146b,
            ),
            (
                "2387767168f9453db0eca227c79d7e7a31b78cafb58bd9cdee630881c70979b9",
                0xec4f0960a70fdcbe,
                0xfffffffde26451db,
            ),
            (
                "2387767168f9453db0eca227c79d7e7a31b78cafb58bd9cdee630881c70979ba",
                0xb58e13f297179bc2,
                0xfffffffb6fc1b4a6,
            ),
            ("2387767168f9453db0eca227c79d7e7a31b78cafb58bd9cdee630881c70979ba", 0, 0x357abcab02726362),
            (
                "718CC2121C3E641059BC1C2CFC45666C99E8AE922F7A807B7D07B62C995D79E2",
                0x2b3d689bbcb21dca,
                0xfffffff93c41ec94,
            ),
            (
                "718CC2121C3E641059BC1C2CFC45666C99E8AE922F7A807B7D07B62C995D79E2",
                0x2bf29ef00786a6bc,
                0xffffffd21c3933f4,
            ),
            (
                "B0311EA55708D6A53C75CDBF88300259C6D018522FE3D4D0A242E431F9E8B6D0",
                0x7b42a00ee91d5810,
                0xff1475ba5c832b89,
            ),
            (
                "F47B23107E5F34B2CE06F562B5C435DF72A533251CB414C51B2B62A8F63A00E4",
                0xcab7404f0b5449d0,
                0xffffffd2b7ffab7b,
            ),
        ];
        for (r, nonce, expected) in cases {
            assert_eq!(value(nonce, &root(r)), expected, "root {r}");
        }
        assert!(is_valid(0x2b3d689bbcb21dca, &root(cases[4].0), LIVE_SEND));
        assert!(!is_valid(0, &root(cases[3].0), DEV_EPOCH_1));
    }
}
