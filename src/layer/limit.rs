//! Per-key counters over a sliding pair of windows, in memory and per instance: the bound on new
//! sessions per client (review F10) and on verifier calls per session (F15).
//!
//! Two generations of counts: a key's count is what it did in the current window plus the
//! previous one, so a burst at a window boundary cannot double its allowance. Memory is bounded:
//! a generation that reaches its key limit rotates early (a flood of distinct keys then only
//! shortens everyone's memory, it never locks out a newcomer).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys one generation remembers.
const MAX_KEYS: usize = 100_000;

pub(crate) struct RateWindow {
    max: u32,
    window: Duration,
    /// Random per layer, so keys (peer addresses) are neither kept in clear nor collidable.
    hasher: std::collections::hash_map::RandomState,
    state: Mutex<Generations>,
}

struct Generations {
    started: Instant,
    current: HashMap<u64, u32>,
    previous: HashMap<u64, u32>,
}

impl RateWindow {
    /// At most `max` hits per key within any `window` (up to two windows when split at a
    /// boundary, never more than `max` in the last one).
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        RateWindow {
            max,
            window,
            hasher: Default::default(),
            state: Mutex::new(Generations {
                started: Instant::now(),
                current: HashMap::new(),
                previous: HashMap::new(),
            }),
        }
    }

    /// Counts one hit for `key`; `false` when the key is over its bound (nothing is counted).
    pub(crate) fn hit(&self, key: impl Hash) -> bool {
        let key = self.hasher.hash_one(key);
        let now = Instant::now();
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.duration_since(g.started);
        if elapsed >= self.window * 2 {
            g.previous.clear();
            g.current.clear();
            g.started = now;
        } else if elapsed >= self.window || g.current.len() >= MAX_KEYS {
            g.previous = std::mem::take(&mut g.current);
            g.started = now;
        }
        let used = g.current.get(&key).copied().unwrap_or(0) + g.previous.get(&key).copied().unwrap_or(0);
        if used >= self.max {
            return false;
        }
        *g.current.entry(key).or_insert(0) += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_each_key_and_forgets_after_two_windows() {
        let w = RateWindow::new(3, Duration::from_millis(50));
        assert!((0..3).all(|_| w.hit("a")));
        assert!(!w.hit("a"));
        assert!(w.hit("b"), "another key has its own bound");
        std::thread::sleep(Duration::from_millis(110));
        assert!(w.hit("a"));
    }

    #[test]
    fn a_flood_of_distinct_keys_never_locks_out_a_newcomer() {
        let w = RateWindow::new(1, Duration::from_secs(3600));
        for i in 0..(MAX_KEYS * 2 + 10) {
            assert!(w.hit(i));
        }
        assert!(w.hit("newcomer"));
    }
}
