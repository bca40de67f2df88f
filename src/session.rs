//! Payment sessions: what the server promised one client, and how ids and tags are drawn.
//!
//! No I/O here. A [`Session`] is created by [`Session::issue`] and stored by a
//! [`SessionStore`](crate::store::SessionStore) before its challenge leaves the server.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blake2::digest::consts::{U16, U4};
use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2b, Blake2bMac, Digest};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::nano::{Address, Raw};

/// A 128-bit session id from the operating system's CSPRNG.
///
/// It is the secret that binds a payment to the client it was issued to, so its `Debug` form
/// shows only a short fingerprint; [`Display`](fmt::Display) writes the full 32 lower-case hex
/// digits for the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh id from the thread's CSPRNG (`rand`'s `ThreadRng`: ChaCha12 seeded from the OS
    /// and reseeded from it periodically), without a system call per id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        SessionId(bytes)
    }

    /// Wraps raw bytes (for stores that keep them as bytes).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        SessionId(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The 32 lower-case hex digits of the wire form, without an allocation.
    pub fn hex(&self) -> [u8; 32] {
        let mut hex = [0u8; 32];
        hex::encode_to_slice(self.0, &mut hex).expect("32 digits for 16 bytes");
        hex
    }

    /// A short, non-reversible tag for logs: 8 hex digits of blake2b-32 of the id.
    pub fn fingerprint(&self) -> String {
        hex::encode(Blake2b::<U4>::digest(self.0))
    }

    /// The key stores file this session under instead of the id itself; see [`SessionKey`].
    ///
    /// ```
    /// use nanosession::session::SessionId;
    /// let id = SessionId::generate();
    /// assert_eq!(id.key(), id.key());
    /// assert_ne!(id.key().as_bytes(), id.as_bytes());
    /// ```
    pub fn key(&self) -> SessionKey {
        let mut mac = <Blake2bMac<U16> as KeyInit>::new_from_slice(SESSION_KEY_DOMAIN)
            .expect("the domain key is shorter than blake2b's 64-byte key limit");
        mac.update(&self.0);
        SessionKey(mac.finalize_fixed().into())
    }
}

/// The fixed blake2b key that separates session keys from every other use of blake2b here.
const SESSION_KEY_DOMAIN: &[u8] = b"nanosession/session-key/v1";

/// What stores key a session by: keyed blake2b-128 of its [`SessionId`], with a fixed,
/// public domain key.
///
/// Stores hold sessions, amount reservations and spent-set owners under this key, never the
/// id, so whoever reads the store (backups, `MONITOR`, read-only SQL access) cannot present a
/// pending session: that takes the id, and the hash cannot be inverted. No secret key is
/// needed because the id is 128 bits from the CSPRNG: there is no dictionary to hash, so
/// finding an id from its key is a 2^128 search, exactly as hard as guessing the id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey([u8; 16]);

impl SessionKey {
    /// Wraps raw bytes read back from a store.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        SessionKey(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// 32 lower-case hex digits (the form text-keyed stores use).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses [`to_hex`](SessionKey::to_hex)'s form.
    pub fn from_hex(s: &str) -> Option<Self> {
        crate::nano::decode_hex::<16>(s).ok().map(SessionKey)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret, but long; 8 hex digits tell keys apart in test output.
        write!(f, "SessionKey({}…)", &self.to_hex()[..8])
    }
}

impl FromStr for SessionId {
    type Err = crate::nano::ParseError;
    /// Parses 32 hex digits (the server writes lower case; either case is accepted).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::nano::decode_hex::<16>(s).map(SessionId)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(#{})", self.fingerprint())
    }
}

crate::nano::serde_via_str!(SessionId);

/// One pending payment: the server's own record, the only values it ever trusts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The secret id the client echoes back.
    pub id: SessionId,
    /// The merchant account to pay.
    pub pay_to: Address,
    /// The resource price, a multiple of the tag modulus.
    pub price: Raw,
    /// The per-session tag, uniform in `[0, tag_modulus)`.
    pub tag: u64,
    /// What the send must move exactly: `price + tag`.
    pub amount: Raw,
    /// Unix seconds when the session was issued.
    pub created_at: u64,
    /// Unix seconds after which the session is no longer accepted.
    pub expires_at: u64,
}

impl Session {
    /// Draws a new session: a CSPRNG id and an unbiased tag below `tag_modulus`.
    ///
    /// Returns `None` if `price + tag` would overflow `u128`.
    ///
    /// ```
    /// use nanosession::{session::Session, nano::{Address, Raw}};
    /// let pay_to: Address = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap();
    /// let s = Session::issue(pay_to, Raw::new(10_000_000_000), 10_000_000, 1_700_000_000, std::time::Duration::from_secs(300)).unwrap();
    /// assert_eq!(s.amount.get() % 10_000_000, s.tag as u128);
    /// assert_eq!(s.expires_at, 1_700_000_300);
    /// ```
    pub fn issue(pay_to: Address, price: Raw, tag_modulus: u64, now: u64, ttl: Duration) -> Option<Session> {
        Self::issue_with_tag(pay_to, price, random_tag(tag_modulus), now, ttl)
    }

    /// Like [`Session::issue`] with a chosen tag (the caller keeps it below the modulus).
    pub fn issue_with_tag(pay_to: Address, price: Raw, tag: u64, now: u64, ttl: Duration) -> Option<Session> {
        Some(Session {
            id: SessionId::generate(),
            pay_to,
            price,
            tag,
            amount: price.checked_add(Raw::new(tag as u128))?,
            created_at: now,
            expires_at: now.saturating_add(ttl.as_secs()),
        })
    }

    /// True once `now` is past the expiry.
    pub fn is_expired(&self, now: u64) -> bool {
        now > self.expires_at
    }
}

/// A tag uniform in `[0, tag_modulus)` from the thread's CSPRNG (rejection sampling: no modulo
/// bias).
pub fn random_tag(tag_modulus: u64) -> u64 {
    rand::thread_rng().gen_range(0..tag_modulus)
}

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// RFC 3339 UTC with `Z` for a Unix time in seconds (`2026-02-13T00:05:00Z`).
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// An RFC 3339 time as Unix seconds (fractions dropped); `None` when it does not parse.
pub(crate) fn parse_rfc3339(value: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339_weak(value.trim()).ok()?;
    Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_hex_and_debug_is_redacted() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        let text = a.to_string();
        assert_eq!(text.len(), 32);
        assert!(text.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(text.parse::<SessionId>().unwrap(), a);
        assert!(!format!("{a:?}").contains(&text));
        assert!(!format!("{a:?}").contains(&text[..8]));
    }

    #[test]
    fn session_keys_are_stable_distinct_and_not_the_id() {
        let a = SessionId::from_bytes([7; 16]);
        // Pinned (standard keyed BLAKE2b-128, e.g. Python's hashlib.blake2b(id, digest_size=16,
        // key=domain)): stores written by one version must be read by the next.
        assert_eq!(a.key().to_hex(), "7083ccb88332bec2897f3e2d3555fed5");
        assert_eq!(a.key(), SessionId::from_bytes([7; 16]).key());
        assert_ne!(a.key(), SessionId::from_bytes([8; 16]).key());
        assert_ne!(a.key().as_bytes(), a.as_bytes());
        assert!(!a.key().to_hex().contains(&a.to_string()));
        assert_eq!(SessionKey::from_hex(&a.key().to_hex()), Some(a.key()));
    }

    #[test]
    fn tags_cover_the_range_uniformly() {
        let pay_to: Address =
            "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap();
        let mut counts = [0u32; 10];
        for _ in 0..20_000 {
            let s = Session::issue(pay_to, Raw::new(100), 10, 0, Duration::from_secs(1)).unwrap();
            assert!(s.tag < 10);
            assert_eq!(s.amount.get(), 100 + s.tag as u128);
            counts[s.tag as usize] += 1;
        }
        // 2000 expected per bucket; 6 sigma is about 255.
        assert!(counts.iter().all(|&c| (1745..=2255).contains(&c)), "{counts:?}");
    }

    #[test]
    fn overflowing_amount_is_refused() {
        let max = Raw::new(u128::MAX);
        assert!(Session::issue_with_tag(Address::BURN, max, 1, 0, Duration::ZERO).is_none());
        assert!(Session::issue_with_tag(Address::BURN, max, 0, 0, Duration::ZERO).is_some());
    }

    #[test]
    fn rfc3339_format() {
        assert_eq!(rfc3339(1_770_941_100), "2026-02-13T00:05:00Z");
    }
}
