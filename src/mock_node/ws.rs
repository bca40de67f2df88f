//! The WebSocket server's `confirmation` topic (reference §7): subscribe (with ack and
//! options), update, unsubscribe, ping, and notifications filtered per session.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::broadcast::{self, error::RecvError};

use super::json::{self, address, scalar, StateJson};
use super::node::{Confirmation, ConfirmationType, Node};
use crate::nano::{Address, PublicKey};

/// The WebSocket app: any path upgrades.
pub(crate) fn router(node: Arc<Node>) -> Router {
    Router::new().fallback(upgrade).with_state(node)
}

async fn upgrade(State(node): State<Arc<Node>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(node, socket))
}

/// One connection's state: its subscription and the notifications queued for it.
struct Session {
    node: Arc<Node>,
    confirmations: broadcast::Receiver<Arc<Confirmation>>,
    subscription: Option<Subscription>,
}

impl Session {
    fn new(node: Arc<Node>) -> Session {
        let confirmations = node.subscribe();
        Session { node, confirmations, subscription: None }
    }

    /// Applies one client message; returns the ack to send, if any.
    fn handle(&mut self, text: &str) -> Option<String> {
        let was_subscribed = self.subscription.is_some();
        let ack = handle_request(text, &mut self.subscription);
        if !was_subscribed && self.subscription.is_some() {
            // Notifications queued before now are for blocks confirmed before the subscription:
            // a node would not send them, so start from a fresh receiver.
            self.confirmations = self.node.subscribe();
        }
        ack
    }

    /// The message to forward for a notification, if the subscription passes it.
    fn forward(&self, note: &Confirmation) -> Option<String> {
        self.subscription.as_ref().filter(|s| s.passes(note)).map(|s| s.render(note))
    }
}

/// One connection: answers requests and forwards the notifications its subscription passes.
async fn session(node: Arc<Node>, mut socket: WebSocket) {
    let mut session = Session::new(node);
    loop {
        let outgoing = tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => session.handle(text.as_str()),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                // Ping frames are answered by the WebSocket layer; binary frames are ignored.
                Some(Ok(_)) => None,
            },
            note = session.confirmations.recv() => match note {
                Ok(note) => session.forward(&note),
                // A slow reader loses notifications, as with a real node.
                Err(RecvError::Lagged(_)) => None,
                Err(RecvError::Closed) => break,
            },
        };
        if let Some(text) = outgoing {
            if socket.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    }
}

/// Which confirmation types a subscription wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Types {
    All,
    Active,
    ActiveQuorum,
    ActiveConfirmationHeight,
    Inactive,
}

impl Types {
    fn parse(text: &str) -> Types {
        match text.to_ascii_lowercase().as_str() {
            "active" => Types::Active,
            "active_quorum" => Types::ActiveQuorum,
            "active_confirmation_height" => Types::ActiveConfirmationHeight,
            "inactive" => Types::Inactive,
            _ => Types::All,
        }
    }

    fn admits(self, kind: ConfirmationType) -> bool {
        use ConfirmationType as C;
        match self {
            Types::All => true,
            Types::Active => matches!(kind, C::ActiveQuorum | C::ActiveConfirmationHeight),
            Types::ActiveQuorum => kind == C::ActiveQuorum,
            Types::ActiveConfirmationHeight => kind == C::ActiveConfirmationHeight,
            Types::Inactive => kind == C::Inactive,
        }
    }
}

/// A session's `confirmation` subscription and its options.
#[derive(Debug)]
struct Subscription {
    /// `None`: every block. `Some`: only state blocks whose account or `link_as_account` is in
    /// the set (the mock has no wallets, so `all_local_accounts` adds nothing to it).
    accounts: Option<HashSet<PublicKey>>,
    include_block: bool,
    include_election_info: bool,
    include_sideband_info: bool,
    types: Types,
}

/// An option flag: a JSON boolean, `"true"`/`"false"` or `"1"`/`"0"` (also as numbers), as the
/// node's property tree reads a bool; anything else counts as absent.
fn option_flag(options: &Map<String, Value>, key: &str, default: bool) -> bool {
    match options.get(key).and_then(scalar).as_deref() {
        Some("true" | "1") => true,
        Some("false" | "0") => false,
        _ => default,
    }
}

/// Addresses from an array; invalid ones are skipped (the node logs and ignores them).
fn addresses(value: Option<&Value>) -> impl Iterator<Item = PublicKey> + '_ {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str()?.parse::<Address>().ok())
        .map(|a| *a.public_key())
}

impl Subscription {
    fn new(options: Option<&Map<String, Value>>) -> Subscription {
        let empty = Map::new();
        let options = options.unwrap_or(&empty);
        let listed: HashSet<PublicKey> = addresses(options.get("accounts")).collect();
        let filtering = option_flag(options, "all_local_accounts", false) || options.contains_key("accounts");
        Subscription {
            accounts: filtering.then_some(listed),
            include_block: option_flag(options, "include_block", true),
            include_election_info: option_flag(options, "include_election_info", false)
                || option_flag(options, "include_election_info_with_votes", false),
            include_sideband_info: option_flag(options, "include_sideband_info", false),
            types: Types::parse(options.get("confirmation_type").and_then(Value::as_str).unwrap_or("all")),
        }
    }

    /// `accounts_add` / `accounts_del`; either one turns account filtering on.
    fn update(&mut self, options: &Map<String, Value>) {
        let accounts = self.accounts.get_or_insert_with(HashSet::new);
        accounts.extend(addresses(options.get("accounts_add")));
        for key in addresses(options.get("accounts_del")) {
            accounts.remove(&key);
        }
    }

    /// The node's rule: the type must be wanted; with an account filter, the block must be a
    /// state block included in the message whose account or link (as an account) is listed.
    fn passes(&self, note: &Confirmation) -> bool {
        if !self.types.admits(note.confirmation_type) {
            return false;
        }
        match &self.accounts {
            None => true,
            Some(set) => {
                self.include_block
                    && (set.contains(&note.account) || set.contains(&PublicKey::from_bytes(note.link)))
            }
        }
    }

    fn render(&self, note: &Confirmation) -> String {
        let message = MessageJson {
            account: address(&note.account),
            amount: &note.amount,
            hash: &note.hash,
            confirmation_type: note.confirmation_type.as_str(),
            election_info: self.include_election_info.then(ElectionInfoJson::new),
            block: self.include_block.then_some(&note.block),
            sideband: self.include_sideband_info.then(|| SidebandJson {
                height: note.height.to_string(),
                local_timestamp: note.local_timestamp.to_string(),
            }),
        };
        let notification = NotificationJson { topic: "confirmation", time: json::now_millis(), message };
        serde_json::to_string(&notification).unwrap_or_default()
    }
}

#[derive(Serialize)]
struct NotificationJson<'a> {
    topic: &'static str,
    time: String,
    message: MessageJson<'a>,
}

#[derive(Serialize)]
struct MessageJson<'a> {
    account: String,
    amount: &'a str,
    hash: &'a str,
    confirmation_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    election_info: Option<ElectionInfoJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block: Option<&'a StateJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sideband: Option<SidebandJson>,
}

/// A one-voter election: the genesis representative holds the whole supply.
#[derive(Serialize)]
struct ElectionInfoJson {
    duration: &'static str,
    time: String,
    tally: String,
    #[serde(rename = "final")]
    final_tally: String,
    blocks: &'static str,
    voters: &'static str,
    request_count: &'static str,
}

impl ElectionInfoJson {
    fn new() -> Self {
        ElectionInfoJson {
            duration: "0",
            time: json::now_millis(),
            tally: u128::MAX.to_string(),
            final_tally: u128::MAX.to_string(),
            blocks: "1",
            voters: "1",
            request_count: "1",
        }
    }
}

#[derive(Serialize)]
struct SidebandJson {
    height: String,
    local_timestamp: String,
}

#[derive(Serialize)]
struct AckJson {
    ack: String,
    time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

/// Applies one client message; returns the ack to send, if any. Unparseable messages and
/// unknown actions or topics are ignored, as the node does.
fn handle_request(text: &str, subscription: &mut Option<Subscription>) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    let request = value.as_object()?;
    let action = request.get("action")?.as_str()?;
    let confirmation_topic = request.get("topic").and_then(Value::as_str) == Some("confirmation");
    let options = request.get("options").and_then(Value::as_object);
    let wants_ack = option_flag(request, "ack", false);
    let ack = match action {
        "ping" => "pong",
        "subscribe" if confirmation_topic => {
            *subscription = Some(Subscription::new(options));
            "subscribe"
        }
        "update" if confirmation_topic => {
            let (Some(current), Some(options)) = (subscription.as_mut(), options) else { return None };
            current.update(options);
            "update"
        }
        "unsubscribe" if confirmation_topic => {
            *subscription = None;
            "unsubscribe"
        }
        _ => return None,
    };
    if action != "ping" && !wants_ack {
        return None;
    }
    let id = request.get("id").and_then(scalar);
    serde_json::to_string(&AckJson { ack: ack.to_owned(), time: json::now_millis(), id }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(account: [u8; 32], link: [u8; 32], kind: ConfirmationType) -> Confirmation {
        let block = crate::nano::StateBlock {
            account: PublicKey::from_bytes(account),
            previous: crate::nano::BlockHash::ZERO,
            representative: PublicKey::from_bytes(account),
            balance: crate::nano::Raw::new(1),
            link,
            signature: Default::default(),
            work: 0,
        };
        Confirmation {
            account: PublicKey::from_bytes(account),
            link,
            amount: "1".into(),
            hash: "AB".repeat(32),
            confirmation_type: kind,
            block: StateJson::new(&block),
            height: 1,
            local_timestamp: 5,
        }
    }

    fn addr(b: u8) -> String {
        address(&PublicKey::from_bytes([b; 32]))
    }

    /// Publishes a genesis send of `amount` raw; with the default zero delay it is confirmed
    /// (and notified) at once.
    fn publish_send(node: &Arc<Node>, amount: u128) -> crate::nano::BlockHash {
        let genesis = crate::nano::PrivateKey::from_hex(super::super::GENESIS_PRIVATE_KEY).unwrap();
        let (previous, balance) = {
            let ledger = node.ledger();
            let info = ledger.account(&genesis.public_key()).unwrap();
            (info.frontier(), info.balance)
        };
        let mut block = crate::nano::StateBlock {
            account: genesis.public_key(),
            previous,
            representative: genesis.public_key(),
            balance: crate::nano::Raw::new(balance.get() - amount),
            link: [9; 32],
            signature: Default::default(),
            work: 0,
        };
        block.sign(&genesis);
        let cancel = std::sync::atomic::AtomicBool::new(false);
        block.work =
            crate::nano::work::generate(&block.work_root(), crate::nano::work::DEV_EPOCH_2, &cancel).unwrap();
        node.publish(&block).unwrap()
    }

    #[tokio::test]
    async fn subscribing_skips_blocks_confirmed_before() {
        let (listeners, _commands) = tokio::sync::mpsc::unbounded_channel();
        let config = super::super::MockNodeConfig::default();
        let faults = super::super::Faults::new(config.confirmation_delay, listeners);
        let node = Arc::new(Node::new(config, faults, tokio::runtime::Handle::current()));
        let mut session = Session::new(node.clone());
        // Queued for the connected but not yet subscribed session.
        let before = publish_send(&node, 1);
        assert_eq!(session.handle(r#"{"action":"subscribe","topic":"confirmation"}"#), None);
        let after = publish_send(&node, 2);
        let note = session.confirmations.try_recv().expect("the later confirmation");
        assert_eq!(note.hash, after.to_string(), "not {before}");
        assert!(session.forward(&note).is_some());
        assert!(session.confirmations.try_recv().is_err(), "nothing else queued");

        // Subscribing again (new options) keeps what is queued: it was confirmed while subscribed.
        let queued = publish_send(&node, 3);
        session
            .handle(r#"{"action":"subscribe","topic":"confirmation","options":{"include_block":"false"}}"#);
        assert_eq!(session.confirmations.try_recv().unwrap().hash, queued.to_string());
    }

    #[test]
    fn account_filter_matches_account_or_link() {
        let mut sub = None;
        let request = format!(
            r#"{{"action":"subscribe","topic":"confirmation","options":{{"accounts":["{}"]}}}}"#,
            addr(1).replace("nano_", "xrb_")
        );
        assert_eq!(handle_request(&request, &mut sub), None, "no ack unless asked");
        let s = sub.as_ref().unwrap();
        assert!(s.passes(&note([1; 32], [2; 32], ConfirmationType::ActiveQuorum)));
        assert!(s.passes(&note([2; 32], [1; 32], ConfirmationType::Inactive)));
        assert!(!s.passes(&note([2; 32], [3; 32], ConfirmationType::ActiveQuorum)));

        let update = format!(
            r#"{{"action":"update","topic":"confirmation","ack":true,"options":{{"accounts_add":["{}"],"accounts_del":["{}"]}}}}"#,
            addr(3),
            addr(1)
        );
        let ack: Value = serde_json::from_str(&handle_request(&update, &mut sub).unwrap()).unwrap();
        assert_eq!(ack["ack"], "update");
        let s = sub.as_ref().unwrap();
        assert!(s.passes(&note([2; 32], [3; 32], ConfirmationType::ActiveQuorum)));
        assert!(!s.passes(&note([1; 32], [2; 32], ConfirmationType::ActiveQuorum)));
    }

    #[test]
    fn options_shape_the_message() {
        let mut sub = None;
        let request = r#"{"action":"subscribe","topic":"confirmation","ack":"true","id":"x1",
            "options":{"include_block":"false","include_sideband_info":true,"confirmation_type":"Inactive"}}"#;
        let ack: Value = serde_json::from_str(&handle_request(request, &mut sub).unwrap()).unwrap();
        assert_eq!((ack["ack"].as_str(), ack["id"].as_str()), (Some("subscribe"), Some("x1")));
        assert!(ack["time"].as_str().unwrap().parse::<u64>().is_ok());
        let s = sub.as_ref().unwrap();
        assert!(!s.passes(&note([1; 32], [2; 32], ConfirmationType::ActiveQuorum)));
        let inactive = note([1; 32], [2; 32], ConfirmationType::Inactive);
        assert!(s.passes(&inactive));
        let rendered: Value = serde_json::from_str(&s.render(&inactive)).unwrap();
        assert_eq!(rendered["message"]["sideband"]["local_timestamp"], "5");
        assert!(rendered["message"].get("block").is_none());

        // Filtering without the block in the message delivers nothing (the node's rule).
        let request = format!(
            r#"{{"action":"subscribe","topic":"confirmation","options":{{"include_block":false,"accounts":["{}"]}}}}"#,
            addr(1)
        );
        handle_request(&request, &mut sub);
        assert!(!sub.as_ref().unwrap().passes(&note([1; 32], [2; 32], ConfirmationType::ActiveQuorum)));

        assert_eq!(handle_request(r#"{"action":"subscribe","topic":"votes","ack":true}"#, &mut sub), None);
        assert_eq!(handle_request("not json", &mut sub), None);
        let pong: Value =
            serde_json::from_str(&handle_request(r#"{"action":"ping"}"#, &mut sub).unwrap()).unwrap();
        assert_eq!(pong["ack"], "pong");
        handle_request(r#"{"action":"unsubscribe","topic":"confirmation"}"#, &mut sub);
        assert!(sub.is_none());
    }
}
