//! [`Faults`]: run-time switches that make the mock node misbehave the way real nodes and
//! networks do.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

/// A request to the server supervisor to close (`false`) or reopen (`true`) the listeners; the
/// supervisor answers on the channel once done, `true` if the listeners are as asked.
pub(crate) struct ListenerCommand {
    pub(crate) open: bool,
    pub(crate) done: std::sync::mpsc::Sender<bool>,
}

/// How long [`Faults::set_refuse_connections`] waits for the supervisor: longer than a reopen
/// may retry a taken port, so a slow reopen is not mistaken for a failed one.
const LISTENER_WAIT: Duration = Duration::from_secs(10);

/// Millionths in one, the unit of the stored fail rate.
const PPM: u32 = 1_000_000;

/// Switches for the node's faults. Cheap to clone; every clone controls the same node.
///
/// Every switch takes effect for the next request, notification or block; none of them
/// changes blocks already in the ledger.
#[derive(Clone)]
pub struct Faults {
    inner: Arc<State>,
}

struct State {
    never_confirm: AtomicBool,
    confirmation_delay_us: AtomicU64,
    drop_notifications: AtomicBool,
    duplicate_notifications: AtomicBool,
    http_500: AtomicBool,
    /// Share of RPC requests answered with HTTP 500, in millionths.
    fail_rate_ppm: AtomicU32,
    refuse_connections: AtomicBool,
    /// Held while the listeners are switched, so the flag always says what was done last.
    switching: Mutex<()>,
    reply_delay_us: AtomicU64,
    listeners: UnboundedSender<ListenerCommand>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("never_confirm", &self.never_confirm())
            .field("confirmation_delay", &self.confirmation_delay())
            .field("drop_notifications", &self.drop_notifications())
            .field("duplicate_notifications", &self.duplicate_notifications())
            .field("http_500", &self.http_500())
            .field("fail_rate", &self.fail_rate())
            .field("refuse_connections", &self.refuse_connections())
            .field("reply_delay", &self.reply_delay())
            .finish()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Faults {
    pub(crate) fn new(confirmation_delay: Duration, listeners: UnboundedSender<ListenerCommand>) -> Self {
        Faults {
            inner: Arc::new(State {
                never_confirm: AtomicBool::new(false),
                confirmation_delay_us: AtomicU64::new(micros(confirmation_delay)),
                drop_notifications: AtomicBool::new(false),
                duplicate_notifications: AtomicBool::new(false),
                http_500: AtomicBool::new(false),
                fail_rate_ppm: AtomicU32::new(0),
                refuse_connections: AtomicBool::new(false),
                switching: Mutex::new(()),
                reply_delay_us: AtomicU64::new(0),
                listeners,
            }),
        }
    }

    /// While on, no block gets confirmed by itself or through `block_confirm` (elections that
    /// end while it is on leave their block unconfirmed). [`MockNode::confirm`] still works.
    ///
    /// [`MockNode::confirm`]: super::MockNode::confirm
    pub fn set_never_confirm(&self, on: bool) {
        self.inner.never_confirm.store(on, Ordering::SeqCst);
    }

    /// Whether blocks are never confirmed.
    pub fn never_confirm(&self) -> bool {
        self.inner.never_confirm.load(Ordering::SeqCst)
    }

    /// How long an election takes: a new block (or one `block_confirm` re-announces) is
    /// confirmed this long after it started. Zero confirms at once.
    pub fn set_confirmation_delay(&self, delay: Duration) {
        self.inner.confirmation_delay_us.store(micros(delay), Ordering::SeqCst);
    }

    /// The current confirmation delay.
    pub fn confirmation_delay(&self) -> Duration {
        Duration::from_micros(self.inner.confirmation_delay_us.load(Ordering::SeqCst))
    }

    /// While on, WebSocket confirmation notifications are silently lost (blocks still confirm).
    pub fn set_drop_notifications(&self, on: bool) {
        self.inner.drop_notifications.store(on, Ordering::SeqCst);
    }

    /// Whether notifications are dropped.
    pub fn drop_notifications(&self) -> bool {
        self.inner.drop_notifications.load(Ordering::SeqCst)
    }

    /// While on, every WebSocket notification is sent twice.
    pub fn set_duplicate_notifications(&self, on: bool) {
        self.inner.duplicate_notifications.store(on, Ordering::SeqCst);
    }

    /// Whether notifications are duplicated.
    pub fn duplicate_notifications(&self) -> bool {
        self.inner.duplicate_notifications.load(Ordering::SeqCst)
    }

    /// While on, every RPC request gets HTTP 500 with
    /// `{"error": "Internal server error in RPC"}`, and nothing is done.
    pub fn set_http_500(&self, on: bool) {
        self.inner.http_500.store(on, Ordering::SeqCst);
    }

    /// Whether RPC answers HTTP 500.
    pub fn http_500(&self) -> bool {
        self.inner.http_500.load(Ordering::SeqCst)
    }

    /// Each RPC request independently gets the [`set_http_500`](Self::set_http_500) answer
    /// with probability `rate` (0.0 never, 1.0 always; values outside are clamped, NaN is 0):
    /// a flaky node or proxy. The request is not carried out.
    pub fn set_fail_rate(&self, rate: f64) {
        let rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
        // Millionths: fine enough for any test, and an atomic integer needs no lock.
        self.inner.fail_rate_ppm.store((rate * PPM as f64).round() as u32, Ordering::SeqCst);
    }

    /// The share of RPC requests that fail with HTTP 500 (to a millionth).
    pub fn fail_rate(&self) -> f64 {
        f64::from(self.inner.fail_rate_ppm.load(Ordering::SeqCst)) / PPM as f64
    }

    /// Whether this request fails: the HTTP 500 switch, or the dice of the fail rate.
    pub(crate) fn fail_this_request(&self) -> bool {
        if self.http_500() {
            return true;
        }
        let ppm = self.inner.fail_rate_ppm.load(Ordering::SeqCst);
        ppm > 0 && rand::random::<u32>() % PPM < ppm
    }

    /// On: closes the RPC and WebSocket listeners and cuts every open connection, so new
    /// connections are refused. Off: listens again on the same ports. Returns once the
    /// listeners are closed or reopened (or after 10 s if the node does not answer). Calls
    /// from several threads take turns.
    ///
    /// Reopening retries for up to 5 s if another process took a port meanwhile; if it still
    /// fails, [`refuse_connections`](Self::refuse_connections) stays `true` and turning the
    /// fault off again retries.
    pub fn set_refuse_connections(&self, on: bool) {
        // Without this, two callers could swap the flag in one order and have their commands
        // carried out in the other, leaving the flag contradicting the listeners.
        let _turn = self.inner.switching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.inner.refuse_connections.load(Ordering::SeqCst) == on {
            return;
        }
        let (done, wait) = std::sync::mpsc::channel();
        if self.inner.listeners.send(ListenerCommand { open: !on, done }).is_err() {
            return; // the node has stopped: nothing listens either way
        }
        // Blocking cannot deadlock: the listeners live on the node's own thread.
        if wait.recv_timeout(LISTENER_WAIT) == Ok(true) {
            self.inner.refuse_connections.store(on, Ordering::SeqCst);
        }
    }

    /// Whether connections are refused.
    pub fn refuse_connections(&self) -> bool {
        self.inner.refuse_connections.load(Ordering::SeqCst)
    }

    /// Every RPC reply (errors and HTTP 500 included) is held back this long.
    pub fn set_reply_delay(&self, delay: Duration) {
        self.inner.reply_delay_us.store(micros(delay), Ordering::SeqCst);
    }

    /// The current RPC reply delay.
    pub fn reply_delay(&self) -> Duration {
        Duration::from_micros(self.inner.reply_delay_us.load(Ordering::SeqCst))
    }
}
