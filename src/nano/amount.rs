use std::fmt;
use std::str::FromStr;

use super::ParseError;

/// An exact amount of raw, the indivisible Nano unit (1 XNO = 10^30 raw).
///
/// Parsed only from 1 to 39 ASCII decimal digits that fit in `u128`, never through floats.
///
/// ```
/// use nanosession::nano::Raw;
/// let price: Raw = "1000000000000000000000000".parse().unwrap();
/// assert_eq!(price, Raw::new(10u128.pow(24)));
/// assert_eq!(price.to_xno_string(), "0.000001");
/// assert!("1e24".parse::<Raw>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Raw(u128);

impl Raw {
    /// Zero raw.
    pub const ZERO: Raw = Raw(0);
    /// Raw in one XNO.
    pub const ONE_XNO: Raw = Raw(10u128.pow(30));

    /// Wraps a raw count.
    pub const fn new(raw: u128) -> Self {
        Raw(raw)
    }

    /// The raw count.
    pub const fn get(self) -> u128 {
        self.0
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(self, other: Raw) -> Option<Raw> {
        self.0.checked_add(other.0).map(Raw)
    }

    /// `self - other`, or `None` if it would go below zero.
    pub fn checked_sub(self, other: Raw) -> Option<Raw> {
        self.0.checked_sub(other.0).map(Raw)
    }

    /// The amount in XNO as an exact decimal string without trailing zeros (`"1.5"`, `"0"`).
    pub fn to_xno_string(self) -> String {
        let unit = Self::ONE_XNO.0;
        let (whole, frac) = (self.0 / unit, self.0 % unit);
        if frac == 0 {
            return whole.to_string();
        }
        let frac = format!("{frac:030}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

impl FromStr for Raw {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 39 {
            return Err(ParseError::Amount("expected 1 to 39 decimal digits"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::Amount("only decimal digits are allowed"));
        }
        s.parse::<u128>().map(Raw).map_err(|_| ParseError::Amount("does not fit in 128 bits"))
    }
}

impl fmt::Display for Raw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u128> for Raw {
    fn from(raw: u128) -> Self {
        Raw(raw)
    }
}

crate::nano::serde_via_str!(Raw);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_range_and_rejects_the_rest() {
        assert_eq!(u128::MAX.to_string().parse::<Raw>().unwrap().get(), u128::MAX);
        assert!("340282366920938463463374607431768211456".parse::<Raw>().is_err()); // 2^128
        for bad in ["", "-1", "+1", "1.0", " 1", "1 ", "0x10", "١"] {
            assert!(bad.parse::<Raw>().is_err(), "{bad:?} must be rejected");
        }
        assert!("0".repeat(40).parse::<Raw>().is_err());
    }

    #[test]
    fn xno_display_is_exact() {
        assert_eq!(Raw::new(30000000000000000000000000000000000).to_xno_string(), "30000");
        assert_eq!(Raw::new(1).to_xno_string(), "0.000000000000000000000000000001");
        assert_eq!(Raw::new(15 * 10u128.pow(29)).to_xno_string(), "1.5");
        assert_eq!(Raw::new(u128::MAX).to_xno_string(), "340282366.920938463463374607431768211455");
    }
}
