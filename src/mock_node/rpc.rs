//! The node RPC: `POST /` with a JSON body naming an `action`, answered the way a real node
//! answers (reference §6): HTTP 200 even for errors, `{"error": "<exact text>"}`, every scalar a
//! string, empty collections as `""`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::json::{self, address, scalar, ContentsJson, Entries, List};
use super::ledger::{Entry, Ledger, ProcessError, Subtype, GENESIS_PUBLIC_KEY};
use super::node::Node;
use crate::nano::{work, Address, BlockHash, PublicKey, Raw};

/// An error reply's text.
type Error = &'static str;
type Reply = Result<String, Error>;

const PARSE: Error = "Unable to parse JSON";
const NOT_FOUND: Error = "Block not found";
const INVALID_HASH: Error = "Invalid block hash";
const BAD_HASH: Error = "Bad hash number";
const BAD_ACCOUNT: Error = "Bad account number";
const INVALID_COUNT: Error = "Invalid count";
const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The node's default `max_work_generate_multiplier`.
const MAX_WORK_MULTIPLIER: f64 = 64.0;

/// The RPC app: every path and method reaches the same handler, as with the node.
pub(crate) fn router(node: Arc<Node>) -> Router {
    Router::new().fallback(handle).with_state(node)
}

async fn handle(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let (status, text) = if node.faults.fail_this_request() {
        (StatusCode::INTERNAL_SERVER_ERROR, error_json("Internal server error in RPC"))
    } else {
        (StatusCode::OK, dispatch(&node, &body).await.unwrap_or_else(error_json))
    };
    // The action is done first and only the answer is late, as with a node that is slow to
    // reply: a client that gives up may still have published its block.
    let delay = node.faults.reply_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn error_json(text: &str) -> String {
    json!({ "error": text }).to_string()
}

fn to_json<T: Serialize>(reply: &T) -> Reply {
    serde_json::to_string(reply).map_err(|_| "Internal server error in RPC")
}

async fn dispatch(node: &Arc<Node>, body: &[u8]) -> Reply {
    let value: Value = serde_json::from_slice(body).map_err(|_| PARSE)?;
    let req = Request(value.as_object().ok_or(PARSE)?);
    match req.text("action")?.as_str() {
        "process" => process(node, &req),
        "block_info" => block_info(node, &req),
        "blocks_info" => blocks_info(node, &req),
        "account_info" => account_info(node, &req),
        "account_history" => account_history(node, &req),
        "receivable" | "pending" => receivable(node, &req),
        "block_confirm" => block_confirm(node, &req),
        "work_generate" => work_generate(node, &req).await,
        "version" => version(),
        "telemetry" => telemetry(node),
        "block_count" => block_count(node),
        _ => Err("Unknown command"),
    }
}

/// Request fields, read as leniently as the node's property tree reads them.
struct Request<'a>(&'a Map<String, Value>);

impl Request<'_> {
    /// A required scalar; missing is a parse error, as in the node.
    fn text(&self, key: &str) -> Result<String, Error> {
        self.0.get(key).and_then(scalar).ok_or(PARSE)
    }

    /// An optional scalar; empty counts as absent.
    fn opt_text(&self, key: &str) -> Option<String> {
        self.0.get(key).and_then(scalar).filter(|s| !s.is_empty())
    }

    /// A boolean option: `true`/`"true"`/`"1"`/`1` and their negations; anything else is a
    /// parse error.
    fn flag_or(&self, key: &str, default: bool) -> Result<bool, Error> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => match scalar(v).as_deref() {
                Some("true" | "1") => Ok(true),
                Some("false" | "0") => Ok(false),
                _ => Err(PARSE),
            },
        }
    }

    fn flag(&self, key: &str) -> Result<bool, Error> {
        self.flag_or(key, false)
    }

    /// A positive decimal count, if given.
    fn count(&self, key: &str) -> Result<Option<u64>, Error> {
        match self.opt_text(key) {
            None => Ok(None),
            Some(s) => match s.parse::<u64>() {
                Ok(n) if n > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
                _ => Err(INVALID_COUNT),
            },
        }
    }

    /// A required block hash, `bad` when malformed.
    fn hash(&self, key: &str, bad: Error) -> Result<BlockHash, Error> {
        self.text(key)?.parse().map_err(|_| bad)
    }

    /// The required `account`.
    fn account(&self) -> Result<PublicKey, Error> {
        let account: Address = self.text("account")?.parse().map_err(|_| BAD_ACCOUNT)?;
        Ok(*account.public_key())
    }
}

fn bool_text(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

// ---------------------------------------------------------------------------------------------
// process

#[derive(Serialize)]
struct HashReply {
    hash: String,
}

fn process(node: &Arc<Node>, req: &Request<'_>) -> Reply {
    let as_object = req.flag("json_block")?;
    let block = match (as_object, req.0.get("block")) {
        (true, Some(v @ Value::Object(_))) => json::parse_state_block(v),
        (false, Some(Value::String(s))) => {
            serde_json::from_str::<Value>(s).ok().as_ref().and_then(json::parse_state_block)
        }
        _ => None,
    }
    .ok_or(ProcessError::Invalid.text())?;
    let is_async = req.flag("async")?;
    {
        let ledger = node.ledger();
        if let Some(hint) = req.opt_text("subtype") {
            ledger.check_subtype_hint(&block, &hint).map_err(ProcessError::text)?;
        }
        node.check_entry_work(&block).map_err(ProcessError::text)?;
    }
    let outcome = node.publish(&block);
    if is_async {
        // The node answers before processing; the outcome only shows in the ledger.
        return Ok(json!({ "started": "1" }).to_string());
    }
    let hash = outcome.map_err(ProcessError::text)?;
    to_json(&HashReply { hash: hash.to_string() })
}

// ---------------------------------------------------------------------------------------------
// block_info, blocks_info

#[derive(Serialize)]
#[serde(untagged)]
enum Contents {
    Object(ContentsJson),
    Text(String),
}

#[derive(Serialize)]
struct BlockInfoJson {
    block_account: String,
    amount: String,
    balance: String,
    height: String,
    local_timestamp: String,
    successor: String,
    confirmed: &'static str,
    contents: Contents,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtype: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    linked_account: Option<String>,
    /// Written together with `receivable`, from the one option, as the node does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receivable: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receive_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_account: Option<String>,
}

/// Which optional `block_info`/`blocks_info` fields to add.
#[derive(Default)]
struct InfoOptions {
    json_block: bool,
    linked_account: bool,
    /// `receivable` (alias `pending`): adds both fields.
    receivable: bool,
    receive_hash: bool,
    source: bool,
}

/// The account a receive took its funds from.
fn source_account(ledger: &Ledger, entry: &Entry) -> Option<PublicKey> {
    entry.source().and_then(|s| ledger.get(&s)).map(|e| e.account)
}

fn block_info_json(ledger: &Ledger, hash: &BlockHash, entry: &Entry, o: &InfoOptions) -> BlockInfoJson {
    let contents = ContentsJson::new(entry);
    let is_send = entry.subtype == Some(Subtype::Send);
    let linked = match entry.subtype {
        Some(Subtype::Send) => entry.link().map(|link| address(&PublicKey::from_bytes(link))),
        Some(Subtype::Receive) => source_account(ledger, entry).map(|a| address(&a)),
        _ => None,
    };
    let unreceived = if is_send && ledger.receivable_send(hash).is_some() { "1" } else { "0" };
    BlockInfoJson {
        block_account: address(&entry.account),
        amount: entry.amount.to_string(),
        balance: entry.balance.to_string(),
        height: entry.height.to_string(),
        local_timestamp: entry.local_timestamp.to_string(),
        successor: entry.successor.to_string(),
        confirmed: bool_text(ledger.is_confirmed(hash)),
        contents: if o.json_block { Contents::Object(contents) } else { Contents::Text(contents.to_text()) },
        subtype: entry.subtype.map(Subtype::as_str),
        linked_account: o.linked_account.then(|| linked.unwrap_or_else(|| "0".to_owned())),
        pending: o.receivable.then_some(unreceived),
        receivable: o.receivable.then_some(unreceived),
        receive_hash: o.receive_hash.then(|| {
            let received = if is_send { ledger.received_by(hash) } else { None };
            received.map_or_else(|| ZERO_HASH.to_owned(), |h| h.to_string())
        }),
        source_account: o
            .source
            .then(|| source_account(ledger, entry).map_or_else(|| "0".to_owned(), |a| address(&a))),
    }
}

fn block_info(node: &Node, req: &Request<'_>) -> Reply {
    let hash = req.hash("hash", INVALID_HASH)?;
    let options = InfoOptions {
        json_block: req.flag("json_block")?,
        linked_account: req.flag("include_linked_account")?,
        ..InfoOptions::default()
    };
    let ledger = node.ledger();
    let entry = ledger.get(&hash).ok_or(NOT_FOUND)?;
    to_json(&block_info_json(&ledger, &hash, entry, &options))
}

#[derive(Serialize)]
struct BlocksInfoJson {
    blocks: Entries<BlockInfoJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocks_not_found: Option<List<String>>,
}

fn blocks_info(node: &Node, req: &Request<'_>) -> Reply {
    let hashes = match req.0.get("hashes") {
        Some(Value::Array(items)) => items.iter().map(scalar).collect::<Option<Vec<_>>>().ok_or(PARSE)?,
        // The node's property tree reads an empty array as "".
        Some(Value::String(s)) if s.is_empty() => Vec::new(),
        _ => return Err(PARSE),
    };
    let options = InfoOptions {
        json_block: req.flag("json_block")?,
        linked_account: req.flag("include_linked_account")?,
        // nano-node: `get<bool>("receivable", get<bool>("pending", false))`.
        receivable: req.flag_or("receivable", req.flag("pending")?)?,
        receive_hash: req.flag("receive_hash")?,
        source: req.flag("source")?,
    };
    let include_not_found = req.flag("include_not_found")?;
    let ledger = node.ledger();
    let mut blocks = Vec::new();
    let mut not_found = Vec::new();
    for text in hashes {
        let hash: BlockHash = text.parse().map_err(|_| BAD_HASH)?;
        match ledger.get(&hash) {
            // Keys are the hashes exactly as the client wrote them.
            Some(entry) => blocks.push((text, block_info_json(&ledger, &hash, entry, &options))),
            None if include_not_found => not_found.push(text),
            None => return Err(NOT_FOUND),
        }
    }
    to_json(&BlocksInfoJson {
        blocks: Entries(blocks),
        blocks_not_found: include_not_found.then_some(List(not_found)),
    })
}

// ---------------------------------------------------------------------------------------------
// account_info

#[derive(Serialize)]
struct AccountInfoJson {
    frontier: String,
    open_block: String,
    representative_block: String,
    balance: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_balance: Option<String>,
    modified_timestamp: String,
    block_count: String,
    account_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_height: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_frontier: Option<String>,
    confirmation_height: String,
    confirmation_height_frontier: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    representative: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_representative: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receivable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_pending: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmed_receivable: Option<String>,
}

fn account_info(node: &Node, req: &Request<'_>) -> Reply {
    let key = req.account()?;
    let with_rep = req.flag("representative")?;
    let with_weight = req.flag("weight")?;
    let with_receivable = req.flag("receivable")? || req.flag("pending")?;
    let with_confirmed = req.flag("include_confirmed")?;
    let ledger = node.ledger();
    let info = ledger.account(&key).ok_or("Account not found")?;
    let confirmed_frontier = info.confirmation_frontier();
    let confirmed_entry = ledger.get(&confirmed_frontier);
    let (mut total, mut confirmed_total) = (0u128, 0u128);
    for (hash, r) in ledger.receivable_for(&key) {
        total = total.saturating_add(r.amount.get());
        if ledger.is_confirmed(&hash) {
            confirmed_total = confirmed_total.saturating_add(r.amount.get());
        }
    }
    let confirmed = |s: String| with_confirmed.then_some(s);
    let confirmed_rep = confirmed_entry.map_or(info.representative, |e| {
        e.state().map_or(PublicKey::from_bytes(GENESIS_PUBLIC_KEY), |b| b.representative)
    });
    to_json(&AccountInfoJson {
        frontier: info.frontier().to_string(),
        open_block: info.open_block().to_string(),
        // Every state block names the representative, so the head is the block that set it.
        representative_block: info.frontier().to_string(),
        balance: info.balance.to_string(),
        confirmed_balance: confirmed(confirmed_entry.map_or(Raw::ZERO, |e| e.balance).to_string()),
        modified_timestamp: info.modified.to_string(),
        block_count: info.block_count().to_string(),
        account_version: "2",
        confirmed_height: confirmed(info.confirmation_height.to_string()),
        confirmed_frontier: confirmed(confirmed_frontier.to_string()),
        confirmation_height: info.confirmation_height.to_string(),
        confirmation_height_frontier: confirmed_frontier.to_string(),
        representative: with_rep.then(|| address(&info.representative)),
        confirmed_representative: (with_rep && with_confirmed).then(|| address(&confirmed_rep)),
        weight: with_weight.then(|| ledger.weight(&key).to_string()),
        pending: with_receivable.then(|| total.to_string()),
        receivable: with_receivable.then(|| total.to_string()),
        confirmed_pending: (with_receivable && with_confirmed).then(|| confirmed_total.to_string()),
        confirmed_receivable: (with_receivable && with_confirmed).then(|| confirmed_total.to_string()),
    })
}

// ---------------------------------------------------------------------------------------------
// account_history

#[derive(Serialize)]
struct HistoryEntryJson {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    representative: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    balance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtype: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<String>,
    local_timestamp: String,
    height: String,
    hash: String,
    confirmed: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    work: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
}

#[derive(Serialize)]
struct HistoryJson {
    account: String,
    history: List<HistoryEntryJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// One history entry; `None` for blocks the plain (not raw) history skips (changes).
fn history_entry(ledger: &Ledger, hash: &BlockHash, entry: &Entry, raw: bool) -> Option<HistoryEntryJson> {
    let counterparty = match entry.subtype {
        Some(Subtype::Send) => entry.link().map(PublicKey::from_bytes),
        Some(Subtype::Receive) => source_account(ledger, entry),
        Some(Subtype::Change) if !raw => return None,
        Some(Subtype::Change) => None,
        None => Some(entry.account), // the genesis opens from itself
    };
    let moves = entry.subtype != Some(Subtype::Change);
    let block = entry.state().filter(|_| raw);
    let kind = match (raw, entry.subtype) {
        (true, Some(_)) => "state",
        (true, None) => "open",
        (false, Some(Subtype::Send)) => "send",
        (false, _) => "receive",
    };
    Some(HistoryEntryJson {
        kind,
        representative: block.map(|b| address(&b.representative)),
        link: block.map(|b| hex::encode_upper(b.link)),
        balance: block.map(|b| b.balance.to_string()),
        previous: block.map(|b| b.previous.to_string()),
        subtype: block.and(entry.subtype.map(Subtype::as_str)),
        account: counterparty.map(|a| address(&a)),
        amount: moves.then(|| entry.amount.to_string()),
        local_timestamp: entry.local_timestamp.to_string(),
        height: entry.height.to_string(),
        hash: hash.to_string(),
        confirmed: bool_text(ledger.is_confirmed(hash)),
        work: block.map(|b| crate::nano::work::to_hex(b.work)),
        signature: block.map(|b| b.signature.to_string()),
    })
}

fn account_history(node: &Node, req: &Request<'_>) -> Reply {
    let key = req.account()?;
    // `count` is required, read like the node's `get<std::string>("count")`: missing is a
    // parse error; empty or not a positive number is "Invalid count" (the line below).
    req.text("count")?;
    let mut count = req.count("count")?.ok_or(INVALID_COUNT)?;
    let raw = req.flag("raw")?;
    let reverse = req.flag("reverse")?;
    let mut offset = match req.opt_text("offset") {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| "Invalid offset")?,
    };
    let head = match req.opt_text("head") {
        None => None,
        Some(s) => Some(s.parse::<BlockHash>().map_err(|_| BAD_HASH)?),
    };
    let ledger = node.ledger();
    let mut history = Vec::new();
    let mut cursor = match (head, ledger.account(&key)) {
        (Some(head), _) => match ledger.get(&head) {
            Some(e) if e.account == key => head,
            _ => return Err(NOT_FOUND),
        },
        (None, Some(info)) if reverse => info.open_block(),
        (None, Some(info)) => info.frontier(),
        (None, None) => BlockHash::ZERO,
    };
    while count > 0 {
        let Some(entry) = ledger.get(&cursor) else { break };
        if offset > 0 {
            offset -= 1;
        } else if let Some(item) = history_entry(&ledger, &cursor, entry, raw) {
            history.push(item);
            count -= 1;
        }
        cursor = if reverse { entry.successor } else { entry.previous() };
    }
    let more = (!cursor.is_zero()).then(|| cursor.to_string());
    to_json(&HistoryJson {
        account: address(&key),
        history: List(history),
        previous: if reverse { None } else { more.clone() },
        next: if reverse { more } else { None },
    })
}

// ---------------------------------------------------------------------------------------------
// receivable (alias pending)

#[derive(Serialize)]
struct SourceJson {
    amount: String,
    source: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ReceivableBlocks {
    Hashes(List<String>),
    Amounts(Entries<String>),
    Sources(Entries<SourceJson>),
}

#[derive(Serialize)]
struct ReceivableJson {
    blocks: ReceivableBlocks,
}

fn receivable(node: &Node, req: &Request<'_>) -> Reply {
    let key = req.account()?;
    let count = req.count("count")?.unwrap_or(u64::MAX);
    let threshold = match req.opt_text("threshold") {
        None => Raw::ZERO,
        Some(s) => s.parse::<Raw>().map_err(|_| "Bad threshold number")?,
    };
    let with_source = req.flag("source")?;
    let only_confirmed = req.flag_or("include_only_confirmed", true)?;
    let sorting = req.flag("sorting")?;
    let ledger = node.ledger();
    let mut found: Vec<_> = ledger
        .receivable_for(&key)
        .filter(|(hash, r)| r.amount >= threshold && (!only_confirmed || ledger.is_confirmed(hash)))
        .collect();
    let simple = threshold == Raw::ZERO && !with_source;
    if sorting && !simple {
        found.sort_by_key(|(_, r)| std::cmp::Reverse(r.amount));
    }
    found.truncate(usize::try_from(count).unwrap_or(usize::MAX));
    let blocks = if simple {
        ReceivableBlocks::Hashes(List(found.iter().map(|(h, _)| h.to_string()).collect()))
    } else if with_source {
        ReceivableBlocks::Sources(Entries(
            found
                .iter()
                .map(|(h, r)| {
                    (h.to_string(), SourceJson { amount: r.amount.to_string(), source: address(&r.source) })
                })
                .collect(),
        ))
    } else {
        ReceivableBlocks::Amounts(Entries(
            found.iter().map(|(h, r)| (h.to_string(), r.amount.to_string())).collect(),
        ))
    };
    to_json(&ReceivableJson { blocks })
}

// ---------------------------------------------------------------------------------------------
// block_confirm

fn block_confirm(node: &Arc<Node>, req: &Request<'_>) -> Reply {
    let hash = req.hash("hash", INVALID_HASH)?;
    let confirmed = {
        let ledger = node.ledger();
        ledger.get(&hash).ok_or(NOT_FOUND)?;
        ledger.is_confirmed(&hash)
    };
    if confirmed {
        node.reannounce(&hash);
    } else {
        node.start_election(hash);
    }
    Ok(json!({ "started": "1" }).to_string())
}

// ---------------------------------------------------------------------------------------------
// work_generate

#[derive(Serialize)]
struct WorkJson {
    work: String,
    difficulty: String,
    multiplier: String,
    hash: String,
}

const TWO_64: u128 = 1 << 64;

/// The difficulty `multiplier` times harder than `base` (reference §5.1, solved for value).
/// The gaps below 2^64 are computed exactly; only the division is in floating point.
fn from_multiplier(multiplier: f64, base: u64) -> u64 {
    let gap = ((TWO_64 - u128::from(base)) as f64 / multiplier).round() as u128;
    u64::try_from(TWO_64.saturating_sub(gap.max(1))).unwrap_or(u64::MAX)
}

/// How many times harder than `base` a work value is.
fn to_multiplier(value: u64, base: u64) -> f64 {
    (TWO_64 - u128::from(base)) as f64 / (TWO_64 - u128::from(value)) as f64
}

/// A multiplier as the node writes it: fixed point, 15 decimals (`"1.000000000000000"`).
fn multiplier_text(multiplier: f64) -> String {
    format!("{multiplier:.15}")
}

/// Sets its flag when dropped: a search outlives nobody who still waits for it.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn work_generate(node: &Node, req: &Request<'_>) -> Reply {
    if !node.config.enable_control {
        return Err("RPC control is disabled");
    }
    let root = req.hash("hash", INVALID_HASH)?;
    let thresholds = node.config.work_thresholds;
    // Like the node's `threshold_base`: the live base `fffffff8…` under live thresholds.
    let base = thresholds.base();
    let difficulty = if let Some(text) = req.opt_text("difficulty") {
        crate::nano::work::parse_hex(&text).ok_or("Bad difficulty")?
    } else if let Some(text) = req.opt_text("multiplier") {
        let multiplier: f64 = text.parse().map_err(|_| "Bad multiplier")?;
        if !(multiplier.is_finite() && multiplier > 0.0) {
            return Err("Bad multiplier");
        }
        from_multiplier(multiplier, base)
    } else {
        base
    };
    if difficulty > from_multiplier(MAX_WORK_MULTIPLIER, base) || difficulty < thresholds.entry() {
        return Err("Difficulty above config maximum or below publish threshold");
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let bytes = *root.as_bytes();
    let found = tokio::task::spawn_blocking(move || work::generate(&bytes, difficulty, &cancel))
        .await
        .ok()
        .flatten()
        .ok_or("Cancelled")?;
    let value = work::value(found, root.as_bytes());
    to_json(&WorkJson {
        work: crate::nano::work::to_hex(found),
        difficulty: crate::nano::work::to_hex(value),
        multiplier: multiplier_text(to_multiplier(value, base)),
        hash: root.to_string(),
    })
}

// ---------------------------------------------------------------------------------------------
// version, telemetry, block_count

fn version() -> Reply {
    Ok(json!({
        "rpc_version": "1",
        "store_version": "24",
        "protocol_version": "21",
        "node_vendor": "Nano V28.2",
        "store_vendor": "in-memory (nanosession mock node)",
        "network": "dev",
        "network_identifier": super::GENESIS_HASH,
        "build_info": concat!("nanosession mock node ", env!("CARGO_PKG_VERSION")),
    })
    .to_string())
}

#[derive(Serialize)]
struct TelemetryJson {
    block_count: String,
    cemented_count: String,
    unchecked_count: &'static str,
    account_count: String,
    bandwidth_cap: &'static str,
    peer_count: &'static str,
    protocol_version: &'static str,
    uptime: String,
    genesis_block: String,
    major_version: &'static str,
    minor_version: &'static str,
    patch_version: &'static str,
    pre_release_version: &'static str,
    maker: &'static str,
    timestamp: String,
    active_difficulty: String,
}

fn telemetry(node: &Node) -> Reply {
    let ledger = node.ledger();
    to_json(&TelemetryJson {
        block_count: ledger.block_count().to_string(),
        cemented_count: ledger.cemented_count().to_string(),
        unchecked_count: "0",
        account_count: ledger.account_count().to_string(),
        bandwidth_cap: "10485760",
        peer_count: "0",
        protocol_version: "21",
        uptime: node.started.elapsed().as_secs().to_string(),
        genesis_block: super::GENESIS_HASH.to_owned(),
        major_version: "28",
        minor_version: "2",
        patch_version: "0",
        pre_release_version: "0",
        maker: "0",
        timestamp: json::now_millis(),
        active_difficulty: crate::nano::work::to_hex(node.config.work_thresholds.base()),
    })
}

fn block_count(node: &Node) -> Reply {
    let ledger = node.ledger();
    Ok(json!({
        "count": ledger.block_count().to_string(),
        "unchecked": "0",
        "cemented": ledger.cemented_count().to_string(),
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_match_the_reference() {
        let live = work::LIVE_SEND;
        // Reference §6.6: value fffffff93c41ec94 is 1.1826... times the live base.
        let m = to_multiplier(0xffff_fff9_3c41_ec94, live);
        assert!((m - 1.182623871097636).abs() < 1e-9, "{m}");
        assert_eq!(from_multiplier(1.0, live), live);
        assert_eq!(from_multiplier(8.0, live), 0xffff_ffff_0000_0000);
        assert_eq!(from_multiplier(64.0, work::DEV_EPOCH_2), 0xffff_0000_0000_0000);
    }

    #[test]
    fn multiplier_text_has_fifteen_decimals_like_the_node() {
        // Reference §6.6: the node's own reply for value fffffff93c41ec94, live base.
        assert_eq!(
            multiplier_text(to_multiplier(0xffff_fff9_3c41_ec94, work::LIVE_SEND)),
            "1.182623871097636"
        );
        assert_eq!(multiplier_text(to_multiplier(work::LIVE_SEND, work::LIVE_SEND)), "1.000000000000000");
        assert_eq!(multiplier_text(8.0), "8.000000000000000");
    }
}
