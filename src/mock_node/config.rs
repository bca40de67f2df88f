//! [`MockNodeConfig`] and [`WorkThresholds`]: what a mock node is started with.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::nano::work;

/// Proof-of-work thresholds the mock ledger demands (reference §5.2).
///
/// Every account counts as upgraded to epoch 2, so sends and changes need [`epoch_2`], receives
/// and opens need [`epoch_2_receive`]; `process` first refuses anything below the lowest of
/// the three (`"Block work is less than threshold"`), as a real node's entry check does.
///
/// [`epoch_2`]: WorkThresholds::epoch_2
/// [`epoch_2_receive`]: WorkThresholds::epoch_2_receive
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkThresholds {
    /// Epoch-1 threshold; only lowers the entry check here.
    pub epoch_1: u64,
    /// Send and change blocks.
    pub epoch_2: u64,
    /// Receive and open blocks.
    pub epoch_2_receive: u64,
}

impl WorkThresholds {
    /// The dev network's thresholds (`fe00…`, `ffc0…`, `f000…`): work takes microseconds.
    pub const DEV: WorkThresholds = WorkThresholds {
        epoch_1: work::DEV_EPOCH_1,
        epoch_2: work::DEV_EPOCH_2,
        epoch_2_receive: work::DEV_EPOCH_2_RECEIVE,
    };

    /// The live network's thresholds (seconds to a minute of work per block on a laptop).
    pub const LIVE: WorkThresholds = WorkThresholds {
        epoch_1: work::LIVE_EPOCH_1,
        epoch_2: work::LIVE_SEND,
        epoch_2_receive: work::LIVE_RECEIVE,
    };

    /// The base difficulty, the highest of the three (nano-node `threshold_base`): what
    /// `work_generate` aims at by default and what its `multiplier` is relative to (the live
    /// base is `fffffff800000000`, reference §5.1).
    pub fn base(&self) -> u64 {
        self.epoch_1.max(self.epoch_2).max(self.epoch_2_receive)
    }

    /// The entry threshold: below this, `process` refuses a block before looking at the ledger.
    pub fn entry(&self) -> u64 {
        self.epoch_1.min(self.epoch_2).min(self.epoch_2_receive)
    }

    /// The exact threshold for a block that receives (or opens) or not.
    pub fn for_block(&self, is_receive: bool) -> u64 {
        if is_receive {
            self.epoch_2_receive
        } else {
            self.epoch_2
        }
    }
}

impl Default for WorkThresholds {
    fn default() -> Self {
        Self::DEV
    }
}

/// How a [`MockNode`](super::MockNode) starts. Build with struct update syntax:
///
/// ```
/// use std::time::Duration;
/// use nanosession::mock_node::MockNodeConfig;
/// let config = MockNodeConfig { confirmation_delay: Duration::from_millis(200), ..Default::default() };
/// assert_eq!(config.rpc_addr.port(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct MockNodeConfig {
    /// Where the RPC server listens (default `127.0.0.1:0`, a free port).
    pub rpc_addr: SocketAddr,
    /// Where the WebSocket server listens (default `127.0.0.1:0`, a free port).
    pub ws_addr: SocketAddr,
    /// How long after its arrival a block is confirmed (default zero: at once). Changeable at
    /// run time with [`Faults::set_confirmation_delay`](super::Faults::set_confirmation_delay).
    pub confirmation_delay: Duration,
    /// Proof-of-work thresholds (default [`WorkThresholds::DEV`]).
    pub work_thresholds: WorkThresholds,
    /// Whether control actions (`work_generate`) are allowed, like the node's `enable_control`
    /// (default `true`); when off they answer `"RPC control is disabled"`.
    pub enable_control: bool,
}

impl Default for MockNodeConfig {
    fn default() -> Self {
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        MockNodeConfig {
            rpc_addr: local,
            ws_addr: local,
            confirmation_delay: Duration::ZERO,
            work_thresholds: WorkThresholds::DEV,
            enable_control: true,
        }
    }
}
