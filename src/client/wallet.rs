use std::fmt;
use std::sync::Mutex;

use crate::nano::{Address, PrivateKey, Raw, Seed};

/// A Nano account that pays, with a per-request spend limit and a total budget.
///
/// Limits start at zero: a wallet pays nothing until [`with_limits`](Wallet::with_limits) says
/// how much. Its `Debug` form shows the account and limits, never the key.
///
/// ```
/// use nanosession::client::Wallet;
/// use nanosession::nano::{Raw, Seed};
/// let seed = Seed::from_bytes([7; 32]);
/// let wallet = Wallet::from_seed(&seed, 0).with_limits(Raw::new(10u128.pow(24)), Raw::new(10u128.pow(27)));
/// assert_eq!(wallet.remaining_budget(), Raw::new(10u128.pow(27)));
/// assert!(!format!("{wallet:?}").contains("0707"));
/// ```
pub struct Wallet {
    key: PrivateKey,
    account: Address,
    per_request: Raw,
    remaining: Mutex<Raw>,
}

/// Why the wallet will not pay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpendError {
    /// The challenge asks more than one request may cost.
    #[error("the server asks {asked} raw, above the per-request limit of {limit} raw")]
    OverLimit {
        /// What the server asks.
        asked: Raw,
        /// The per-request limit.
        limit: Raw,
    },
    /// Paying would exceed the remaining budget.
    #[error("the server asks {asked} raw, but only {remaining} raw of the budget remain")]
    OverBudget {
        /// What the server asks.
        asked: Raw,
        /// What is left of the budget.
        remaining: Raw,
    },
}

impl Wallet {
    /// Account `index` of `seed`.
    pub fn from_seed(seed: &Seed, index: u32) -> Self {
        Self::from_key(seed.derive(index))
    }

    /// The account of a private key.
    pub fn from_key(key: PrivateKey) -> Self {
        let account = Address::from(key.public_key());
        Wallet { key, account, per_request: Raw::ZERO, remaining: Mutex::new(Raw::ZERO) }
    }

    /// Sets the most one request may cost and the total the wallet may spend.
    pub fn with_limits(mut self, per_request: Raw, budget: Raw) -> Self {
        self.per_request = per_request;
        self.remaining = Mutex::new(budget);
        self
    }

    /// The paying account.
    pub fn account(&self) -> Address {
        self.account
    }

    /// What is left of the budget.
    pub fn remaining_budget(&self) -> Raw {
        *self.remaining.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `amount` from the budget if the limits allow it.
    pub(crate) fn reserve(&self, amount: Raw) -> Result<(), SpendError> {
        if amount > self.per_request {
            return Err(SpendError::OverLimit { asked: amount, limit: self.per_request });
        }
        let mut remaining = self.remaining.lock().unwrap_or_else(|e| e.into_inner());
        *remaining = remaining
            .checked_sub(amount)
            .ok_or(SpendError::OverBudget { asked: amount, remaining: *remaining })?;
        Ok(())
    }

    /// Gives back a reservation whose payment was never published.
    pub(crate) fn refund(&self, amount: Raw) {
        let mut remaining = self.remaining.lock().unwrap_or_else(|e| e.into_inner());
        *remaining = remaining.checked_add(amount).unwrap_or(*remaining);
    }

    pub(crate) fn key(&self) -> &PrivateKey {
        &self.key
    }
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field("account", &self.account)
            .field("per_request", &self.per_request)
            .field("remaining", &self.remaining_budget())
            .finish_non_exhaustive()
    }
}
