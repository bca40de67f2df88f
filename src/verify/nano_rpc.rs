//! [`NanoRpcVerifier`]: the payment checks of reference §10 / protocol §5 over node RPC.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::handoff::{process_refusal, AccountState, BlockPublisher, NodeError};
use super::{Confirmation, Expected, PaymentVerifier, Rejection, VerifiedBlock};
use crate::nano::{Address, BlockHash, Raw, StateBlock};
use crate::rpc::{BlockInfo, NanoRpcClient, RpcError};

const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long the poll at the deadline may take to answer.
const POLL_GRACE: Duration = Duration::from_secs(1);
/// The longest a detached `block_confirm` may run.
const BLOCK_CONFIRM_BOUND: Duration = Duration::from_secs(10);
/// Default bound on one `verify`: room for a 30 s confirmation wait (the layer's maximum) plus
/// round trips, and well inside the 60 s a session is kept past its expiry.
const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(40);
/// `block_info` calls one verification makes besides the confirmation polls: the block and its
/// previous block (amount derivation and the consistency check).
const CALLS_BEFORE_CONFIRMATION: u32 = 2;

/// Why a [`NanoRpcVerifier`] configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifierConfigError {
    /// The quorum must be between 1 and the number of the client's endpoints.
    #[error("quorum {quorum} is out of range: it must be 1 to {endpoints} (the number of RPC endpoints)")]
    QuorumOutOfRange {
        /// The quorum asked for.
        quorum: usize,
        /// How many endpoints the client has.
        endpoints: usize,
    },
}

/// Verifies payments with `block_info` (and `block_confirm`) through a [`NanoRpcClient`].
///
/// Checks, in order: the block exists; it is a state send; its `link` is the merchant's key;
/// it moves exactly the expected amount (by default derived from the hash-checked previous
/// block and compared with the node's `amount`); the node first saw it no earlier than
/// [`Expected::not_before`]; (by default) its contents hash to the requested hash and carry a
/// valid signature; it is confirmed, possibly after asking the node to confirm it and polling
/// for up to [`Expected::confirm_wait`]. Proof of work is deliberately not checked: historic
/// blocks carry lower work than today's thresholds, and the node checked it on arrival.
///
/// **What the checks are worth.** Hash, signature and amount consistency catch a broken,
/// confused or mixed-up node. They do not stop a node (or whoever can alter its traffic) that
/// lies on purpose: `confirmed`, `local_timestamp` and the ledger itself are its word, and an
/// attacker can sign blocks that were never published. Against that, require a
/// [`quorum`](NanoRpcVerifierBuilder::quorum) of independent nodes, and reach them over
/// `https` (the client refuses plain `http` off loopback).
///
/// **Quorum.** With the default quorum of 1 the client's endpoints are an ordered failover
/// list: the first one that answers decides. With a quorum of `k ≥ 2` every endpoint is asked
/// on its own; at least `k` must answer, and every answer must accept the block (confirmed,
/// exact amount, each endpoint's first-seen time not before [`Expected::not_before`]; the
/// minimum is reported). One endpoint refusing (not found, not confirmed, another amount, …)
/// means no grant; fewer than `k` answers is [`Rejection::Unavailable`].
///
/// **Time bound.** One `verify` never takes longer than the [time
/// limit](NanoRpcVerifierBuilder::time_limit) (default 40 s); past it the answer is
/// [`Rejection::Unavailable`]. [`PaymentVerifier::max_duration`] reports the bound.
///
/// Must run inside a Tokio runtime: `block_confirm` is sent from a spawned task so it reaches
/// the node even when the wait is cut short.
///
/// ```no_run
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use nanosession::rpc::NanoRpcClient;
/// use nanosession::verify::NanoRpcVerifier;
///
/// let client = NanoRpcClient::new([
///     "https://node-a.example/",
///     "https://node-b.example/",
///     "https://node-c.example/",
/// ])?;
/// // Two of the three independent nodes must answer, and every answer must agree.
/// let verifier = NanoRpcVerifier::builder(client)
///     .quorum(2)?
///     .poll_interval(Duration::from_millis(200))
///     .build();
/// # let _ = verifier; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct NanoRpcVerifier {
    client: NanoRpcClient,
    /// Who is asked: the client itself (quorum 1, ordered failover) or one client per endpoint.
    members: Vec<NanoRpcClient>,
    quorum: usize,
    check_block_integrity: bool,
    check_amount: bool,
    poll_interval: Duration,
    time_limit: Duration,
}

/// Builds a [`NanoRpcVerifier`]; see [`NanoRpcVerifier::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct NanoRpcVerifierBuilder {
    client: NanoRpcClient,
    quorum: usize,
    check_block_integrity: bool,
    check_amount: bool,
    poll_interval: Duration,
    time_limit: Duration,
}

impl NanoRpcVerifierBuilder {
    /// Recompute the block hash from `contents` and verify the signature (default `true`).
    /// Catches a broken or mixed-up node serving another block's contents; a malicious node
    /// can still serve a block the attacker signed but never published (see the type docs).
    pub fn check_block_integrity(mut self, on: bool) -> Self {
        self.check_block_integrity = on;
        self
    }

    /// Derive the amount from the previous block's balance (hash-checked when
    /// [`check_block_integrity`](Self::check_block_integrity) is on) and refuse, as
    /// `invalid_block`, a node whose `amount` field disagrees (default `true`). Costs one more
    /// `block_info` per verification. A node that cannot serve the previous block (a pruned
    /// ledger) then makes verification unavailable; turn this off for such a node.
    pub fn check_amount(mut self, on: bool) -> Self {
        self.check_amount = on;
        self
    }

    /// Require `k` of the client's endpoints to answer and every answer to accept the block
    /// (default 1: ordered failover, the first answer decides). Refused unless `1 <= k <=`
    /// the number of endpoints. List endpoints run by different operators: a quorum of
    /// endpoints behind one provider or proxy is one opinion.
    ///
    /// ```
    /// use nanosession::rpc::NanoRpcClient;
    /// use nanosession::verify::{NanoRpcVerifier, VerifierConfigError};
    ///
    /// let client = NanoRpcClient::new(["http://127.0.0.1:7076/", "http://127.0.0.2:7076/"])?;
    /// assert!(NanoRpcVerifier::builder(client.clone()).quorum(2).is_ok());
    /// assert_eq!(
    ///     NanoRpcVerifier::builder(client).quorum(3).unwrap_err(),
    ///     VerifierConfigError::QuorumOutOfRange { quorum: 3, endpoints: 2 }
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn quorum(mut self, k: usize) -> Result<Self, VerifierConfigError> {
        let endpoints = self.client.endpoint_count();
        if k == 0 || k > endpoints {
            return Err(VerifierConfigError::QuorumOutOfRange { quorum: k, endpoints });
        }
        self.quorum = k;
        Ok(self)
    }

    /// Pause between `block_info` polls while waiting for confirmation (default 250 ms,
    /// at least 1 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The longest one `verify` may take, confirmation wait included (default 40 s, at least
    /// 1 ms); past it the answer is [`Rejection::Unavailable`]. Keep it above the layer's
    /// confirmation wait plus a few round trips, and below the 60 s a session is kept past its
    /// expiry.
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit.max(Duration::from_millis(1));
        self
    }

    /// Builds the verifier.
    pub fn build(self) -> NanoRpcVerifier {
        let members = if self.quorum > 1 { self.client.per_endpoint() } else { vec![self.client.clone()] };
        NanoRpcVerifier {
            client: self.client,
            members,
            quorum: self.quorum,
            check_block_integrity: self.check_block_integrity,
            check_amount: self.check_amount,
            poll_interval: self.poll_interval,
            time_limit: self.time_limit,
        }
    }
}

impl NanoRpcVerifier {
    /// Starts a builder over `client`.
    pub fn builder(client: NanoRpcClient) -> NanoRpcVerifierBuilder {
        NanoRpcVerifierBuilder {
            client,
            quorum: 1,
            check_block_integrity: true,
            check_amount: true,
            poll_interval: DEFAULT_POLL_INTERVAL,
            time_limit: DEFAULT_TIME_LIMIT,
        }
    }

    /// A verifier over `client` with default options.
    pub fn new(client: NanoRpcClient) -> Self {
        Self::builder(client).build()
    }

    /// The underlying RPC client.
    pub fn client(&self) -> &NanoRpcClient {
        &self.client
    }

    /// The amount the block moved. Derived from the previous block's balance minus this
    /// block's when [`check_amount`](NanoRpcVerifierBuilder::check_amount) is on or the node
    /// omits `amount`; then a node `amount` that disagrees is `invalid_block`. Never guessed:
    /// the previous block must be a state block and, with integrity checking, must hash to
    /// this block's `previous`.
    async fn amount(
        &self,
        client: &NanoRpcClient,
        info: &BlockInfo,
        block: &StateBlock,
    ) -> Result<Raw, Rejection> {
        match info.amount {
            Some(amount) if !self.check_amount => return Ok(amount),
            _ => {}
        }
        if block.previous.is_zero() {
            // An open block receives; it cannot be a send.
            return Err(Rejection::InvalidBlock("a send block without a previous block"));
        }
        let cannot = |why: &str| {
            Rejection::Unavailable(format!(
                "cannot derive the amount: previous block {}: {why}",
                block.previous
            ))
        };
        let prev = match client.block_info(&block.previous).await {
            Ok(Some(prev)) => prev,
            Ok(None) => return Err(cannot("unknown to the node (pruned?)")),
            Err(e) => return Err(unavailable(e)),
        };
        if prev.contents.block_type.as_deref() != Some("state") {
            // A legacy block's balance is hex and hashes differently: do not guess.
            return Err(cannot("not a state block"));
        }
        let prev_block = prev.contents.to_state_block().map_err(|_| cannot("unreadable contents"))?;
        if self.check_block_integrity && prev_block.hash() != block.previous {
            return Err(Rejection::InvalidBlock("the previous block's contents do not hash to its hash"));
        }
        let derived = prev_block
            .balance
            .checked_sub(block.balance)
            .filter(|a| *a != Raw::ZERO)
            .ok_or(Rejection::InvalidBlock("a send block whose balance did not decrease"))?;
        match info.amount {
            Some(claimed) if claimed != derived => Err(Rejection::InvalidBlock(
                "the node's amount disagrees with the balances of the block and its previous block",
            )),
            _ => Ok(derived),
        }
    }

    /// Waits for confirmation: starts `block_confirm`, then polls `block_info` every poll
    /// interval until `wait` has passed. At least one poll always happens, the last one at the
    /// deadline (allowed [`POLL_GRACE`] to answer), so a short wait still sees a fast node.
    async fn await_confirmation(
        &self,
        client: &NanoRpcClient,
        hash: &BlockHash,
        wait: Duration,
    ) -> Result<Duration, Rejection> {
        let start = Instant::now();
        let deadline = start.checked_add(wait).unwrap_or_else(|| start + Duration::from_secs(3600));
        // Detached, so the request reaches the node even when `wait` is shorter than the call
        // (a later retry then finds the block confirmed); bounded, so it cannot pile up.
        let (confirmer, target) = (client.clone(), *hash);
        tokio::spawn(async move {
            match tokio::time::timeout(BLOCK_CONFIRM_BOUND, confirmer.block_confirm(&target)).await {
                Ok(Ok(_)) => {}
                // Not fatal: the block may still confirm by itself; the polls decide.
                Ok(Err(e)) => tracing::warn!(block = %target, error = %e, "block_confirm failed"),
                Err(_) => tracing::warn!(block = %target, "block_confirm timed out"),
            }
        });
        let mut answered = false;
        loop {
            tokio::time::sleep_until((Instant::now() + self.poll_interval).min(deadline)).await;
            match tokio::time::timeout_at(deadline + POLL_GRACE, client.block_info(hash)).await {
                Ok(Ok(Some(info))) if info.confirmed => return Ok(start.elapsed()),
                Ok(Ok(_)) => answered = true,
                Ok(Err(e)) => tracing::debug!(block = %hash, error = %e, "confirmation poll failed"),
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        // A node that never answered while we waited is an outage, not an unconfirmed block.
        Err(if answered {
            Rejection::NotConfirmed
        } else {
            Rejection::Unavailable("no node answered while waiting for confirmation".into())
        })
    }
}

#[async_trait::async_trait]
impl BlockPublisher for NanoRpcVerifier {
    async fn account_state(&self, account: &Address) -> Result<Option<AccountState>, NodeError> {
        let info = match self.client.account_info(account).await {
            Ok(Some(info)) => info,
            Ok(None) => return Ok(None),
            Err(e) => return Err(NodeError::Unavailable(e.to_string())),
        };
        // A reply without both is no verdict on the account: never guess a balance.
        let frontier = info.frontier.as_deref().and_then(|f| f.parse::<BlockHash>().ok());
        match (frontier, info.balance) {
            (Some(frontier), Some(balance)) => Ok(Some(AccountState { frontier, balance })),
            _ => Err(NodeError::Unavailable("account_info answered without frontier and balance".into())),
        }
    }

    async fn publish(&self, block: &StateBlock) -> Result<(), NodeError> {
        match self.client.process(block, "send").await {
            Ok(hash) if hash == block.hash() => Ok(()),
            Ok(_) => Err(NodeError::Unavailable("process answered with another block's hash".into())),
            Err(RpcError::Node(text)) => Err(NodeError::Refused(process_refusal(&text))),
            Err(e) => Err(NodeError::Unavailable(e.to_string())),
        }
    }
}

fn unavailable(e: RpcError) -> Rejection {
    Rejection::Unavailable(e.to_string())
}

/// The redacted name of a member's (only) endpoint, for logs.
fn member_name(client: &NanoRpcClient) -> &str {
    client.endpoints().next().unwrap_or("")
}

impl NanoRpcVerifier {
    /// Every check of the type docs against one member (the whole client, or one endpoint).
    async fn verify_on(
        &self,
        client: &NanoRpcClient,
        hash: &BlockHash,
        expected: &Expected,
    ) -> Result<VerifiedBlock, Rejection> {
        let info = match client.block_info(hash).await {
            Ok(Some(info)) => info,
            Ok(None) => return Err(Rejection::NotFound),
            // Any other node error ("Invalid block hash", ...) says nothing final about the block.
            Err(e) => return Err(unavailable(e)),
        };
        // The client already fails over on these; an incomplete reply is never a verdict.
        if let Some(why) = info.incomplete() {
            return Err(Rejection::Unavailable(why.to_owned()));
        }
        let contents = &info.contents;

        // Only a definite other type or subtype is a verdict (`subtype` is top-level in
        // `block_info`; `contents` carries it only in WebSocket messages).
        if contents.block_type.as_deref() != Some("state") || info.subtype() != Some("send") {
            return Err(Rejection::WrongBlockType);
        }
        let block = contents.to_state_block().map_err(|e| Rejection::Unavailable(e.to_string()))?;

        // Key bytes, not address strings: `link_as_account` is cosmetic and may disagree.
        if block.link != *expected.pay_to.public_key().as_bytes() {
            return Err(Rejection::WrongDestination);
        }

        let amount = self.amount(client, &info, &block).await?;
        if amount != expected.amount {
            return Err(Rejection::WrongAmount);
        }

        let first_seen = info
            .local_timestamp
            .ok_or_else(|| Rejection::Unavailable("the node reply lacks local_timestamp".into()))?;
        if first_seen == 0 || first_seen < expected.not_before {
            return Err(Rejection::TooOld);
        }

        if self.check_block_integrity {
            if block.hash() != *hash {
                return Err(Rejection::InvalidBlock("the contents do not hash to the requested block hash"));
            }
            if !block.verify_signature() {
                return Err(Rejection::InvalidBlock("the block signature does not verify"));
            }
        }
        let payer = Address::from(block.account);

        let confirmation = if info.confirmed {
            Confirmation::AlreadyConfirmed
        } else {
            Confirmation::ConfirmedAfterWait(
                self.await_confirmation(client, hash, expected.confirm_wait).await?,
            )
        };

        Ok(VerifiedBlock { hash: *hash, payer, amount, first_seen, confirmation })
    }

    /// Asks every member at once and combines their verdicts: the first refusal ends it (no
    /// grant), unavailable or unfinished members only count as missing answers.
    async fn verify_all(
        &self,
        hash: &BlockHash,
        expected: &Expected,
        deadline: Instant,
    ) -> Result<VerifiedBlock, Rejection> {
        let mut pending: FuturesUnordered<_> = self
            .members
            .iter()
            .map(|member| async move { (member, self.verify_on(member, hash, expected).await) })
            .collect();
        let mut granted: Vec<VerifiedBlock> = Vec::new();
        let mut missing: Vec<String> = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, pending.next()).await {
                Ok(None) => break,
                Ok(Some((_, Ok(verified)))) => granted.push(verified),
                Ok(Some((member, Err(Rejection::Unavailable(why))))) => {
                    missing.push(if self.quorum > 1 {
                        format!("{}: {why}", member_name(member))
                    } else {
                        why
                    });
                }
                Ok(Some((member, Err(rejection)))) => {
                    if self.quorum > 1 {
                        tracing::warn!(
                            block = %hash,
                            endpoint = member_name(member),
                            %rejection,
                            accepted_by = granted.len(),
                            "a quorum endpoint refused the block: no grant"
                        );
                    }
                    return Err(rejection);
                }
                Err(_) => {
                    missing.push(format!(
                        "verification did not finish within {} ms",
                        self.time_limit.as_millis()
                    ));
                    break;
                }
            }
        }
        if granted.len() < self.quorum {
            let why = missing.join("; ");
            return Err(Rejection::Unavailable(if self.quorum > 1 {
                format!(
                    "{} of {} endpoints answered, quorum {}: {why}",
                    granted.len(),
                    self.members.len(),
                    self.quorum
                )
            } else {
                why
            }));
        }
        let mut combined = granted.swap_remove(0);
        for other in granted {
            // Without integrity checks two nodes may serve different contents under one hash.
            if other.payer != combined.payer || other.amount != combined.amount {
                tracing::warn!(block = %hash, "quorum endpoints disagree on the block's contents");
                return Err(Rejection::InvalidBlock("the quorum endpoints disagree on the block's contents"));
            }
            combined.first_seen = combined.first_seen.min(other.first_seen);
            combined.confirmation = match (combined.confirmation, other.confirmation) {
                (Confirmation::AlreadyConfirmed, Confirmation::AlreadyConfirmed) => {
                    Confirmation::AlreadyConfirmed
                }
                (a, b) => Confirmation::ConfirmedAfterWait(waited(a).max(waited(b))),
            };
        }
        Ok(combined)
    }
}

fn waited(confirmation: Confirmation) -> Duration {
    match confirmation {
        Confirmation::AlreadyConfirmed | Confirmation::AfterResponse | Confirmation::Watched => {
            Duration::ZERO
        }
        Confirmation::ConfirmedAfterWait(d) => d,
    }
}

#[async_trait]
impl PaymentVerifier for NanoRpcVerifier {
    async fn verify(&self, hash: &BlockHash, expected: &Expected) -> Result<VerifiedBlock, Rejection> {
        let start = Instant::now();
        let deadline = start.checked_add(self.time_limit).unwrap_or_else(|| start + DEFAULT_TIME_LIMIT);
        self.verify_all(hash, expected, deadline).await
    }

    /// The smaller of the time limit and what the client's budget allows: two `block_info`
    /// calls (each at most [`NanoRpcClient::max_call_duration`]), then the confirmation wait
    /// and its last poll's grace.
    fn max_duration(&self, confirm_wait: Duration) -> Option<Duration> {
        let call = self.members.iter().map(NanoRpcClient::max_call_duration).max().unwrap_or_default();
        let budget = call
            .saturating_mul(CALLS_BEFORE_CONFIRMATION)
            .saturating_add(confirm_wait)
            .saturating_add(POLL_GRACE);
        Some(budget.min(self.time_limit))
    }
}
