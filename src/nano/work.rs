//! Proof of work: the value of a nonce for a root, thresholds, and multi-core generation.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use blake2::digest::consts::U8;
use blake2::{Blake2b, Digest};

/// Dev-network epoch-1 threshold (also used by accounts not yet at epoch 2).
pub const DEV_EPOCH_1: u64 = 0xfe00_0000_0000_0000;
/// Dev-network epoch-2 send/change threshold.
pub const DEV_EPOCH_2: u64 = 0xffc0_0000_0000_0000;
/// Dev-network epoch-2 receive/open threshold.
pub const DEV_EPOCH_2_RECEIVE: u64 = 0xf000_0000_0000_0000;
/// Live-network epoch-2 send/change threshold.
pub const LIVE_SEND: u64 = 0xffff_fff8_0000_0000;
/// Live-network epoch-2 receive/open threshold.
pub const LIVE_RECEIVE: u64 = 0xffff_fe00_0000_0000;
/// Live-network epoch-1 threshold: the most a verifier should demand of historic blocks.
pub const LIVE_EPOCH_1: u64 = 0xffff_ffc0_0000_0000;

/// Parses a work or difficulty value as the node writes it: 1 to 16 hex digits, either case,
/// nothing else (`u64::from_str_radix` alone would also take a leading `+`).
///
/// ```
/// use nanosession::nano::work;
/// assert_eq!(work::parse_hex("ffc0000000000000"), Some(work::DEV_EPOCH_2));
/// assert_eq!(work::parse_hex("+1f"), None);
/// assert_eq!(work::to_hex(0xab), "00000000000000ab");
/// ```
pub fn parse_hex(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// Work or difficulty as the node writes it: 16 lower-case hex digits.
pub fn to_hex(value: u64) -> String {
    format!("{value:016x}")
}

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

/// Hashes each thread tries between looks at the cancel and found flags: rare enough to cost
/// nothing, frequent enough (well under a millisecond) for a prompt stop.
const BATCH: u32 = 4096;

/// Finds a nonce whose [`value`] for `root` is at least `threshold`, on every core.
///
/// Thread `i` of `n` tries `start + i`, `start + i + n`, ... from one random `start`, so the
/// threads never repeat each other's work and two calls do not search the same nonces. Returns
/// `None` once `cancel` is set (checked every few thousand hashes). Blocking: from async code,
/// call it inside `spawn_blocking`.
///
/// ```
/// use std::sync::atomic::AtomicBool;
/// use nanosession::nano::work;
/// let root = [7u8; 32];
/// let nonce = work::generate(&root, work::DEV_EPOCH_2, &AtomicBool::new(false)).unwrap();
/// assert!(work::is_valid(nonce, &root, work::DEV_EPOCH_2));
/// ```
pub fn generate(root: &[u8; 32], threshold: u64, cancel: &AtomicBool) -> Option<u64> {
    let threads = std::thread::available_parallelism().map_or(1, NonZeroUsize::get) as u64;
    let start: u64 = rand::random();
    let found = AtomicBool::new(false);
    let nonce = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for i in 0..threads {
            let (found, nonce) = (&found, &nonce);
            scope.spawn(move || {
                let mut candidate = start.wrapping_add(i);
                loop {
                    for _ in 0..BATCH {
                        if value(candidate, root) >= threshold {
                            // The first finder wins; a later one must not overwrite its nonce.
                            if !found.swap(true, Ordering::AcqRel) {
                                nonce.store(candidate, Ordering::Release);
                            }
                            return;
                        }
                        candidate = candidate.wrapping_add(threads);
                    }
                    if found.load(Ordering::Acquire) || cancel.load(Ordering::Relaxed) {
                        return;
                    }
                }
            });
        }
    });
    // The scope joined every thread, so the winner's store is visible.
    found.load(Ordering::Acquire).then(|| nonce.load(Ordering::Acquire))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(s: &str) -> [u8; 32] {
        crate::nano::decode_hex(s).unwrap()
    }

    #[test]
    fn hex_fields_take_hex_digits_only() {
        assert_eq!(parse_hex("ab"), Some(0xab));
        assert_eq!(parse_hex("FFC0000000000000"), Some(0xffc0_0000_0000_0000));
        for bad in ["", "+ab", "-1", "0x1f", " 1", "1 ", "g", "12345678901234567", "+fff000000000000"] {
            assert_eq!(parse_hex(bad), None, "{bad:?}");
        }
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

    #[test]
    fn generated_work_meets_dev_thresholds() {
        let cancel = AtomicBool::new(false);
        for (i, threshold) in [DEV_EPOCH_2_RECEIVE, DEV_EPOCH_1, DEV_EPOCH_2].into_iter().enumerate() {
            let root = [i as u8 + 1; 32];
            let nonce = generate(&root, threshold, &cancel).expect("not cancelled");
            assert!(value(nonce, &root) >= threshold, "threshold {threshold:016x}");
        }
        // Zero accepts any nonce: the first candidate wins at once.
        assert!(generate(&[0; 32], 0, &cancel).is_some());
    }

    #[test]
    fn cancel_stops_an_impossible_search() {
        let cancel = AtomicBool::new(false);
        let started = std::time::Instant::now();
        let result = std::thread::scope(|s| {
            let search = s.spawn(|| generate(&[9; 32], u64::MAX, &cancel));
            std::thread::sleep(std::time::Duration::from_millis(50));
            cancel.store(true, Ordering::Relaxed);
            search.join().unwrap()
        });
        assert_eq!(result, None);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        // Already cancelled: returns after one batch.
        assert_eq!(generate(&[9; 32], u64::MAX, &cancel), None);
    }
}
