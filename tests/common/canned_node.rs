//! `CannedNode`: a tiny HTTP server on 127.0.0.1 that answers Nano node RPC calls from canned
//! JSON, with the quirks of a real node (HTTP 200 errors with the exact texts, string scalars,
//! `contents` as a string when `json_block` is not set) and fault switches (HTTP status,
//! delay, garbage body) for failover tests. Every request is recorded.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// A fault the node applies to every request until changed.
#[derive(Clone, Debug, Default)]
pub enum Fault {
    /// Answer normally.
    #[default]
    None,
    /// Answer with this HTTP status and a plain-text body.
    Status(u16),
    /// Sleep this long, then answer normally.
    Delay(Duration),
    /// Answer HTTP 200 with this body verbatim (for unparseable replies).
    Body(String),
}

/// One request as the node received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The JSON body (`Value::Null` if it did not parse).
    pub body: Value,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The query string, if any.
    pub query: Option<String>,
}

#[derive(Default)]
struct NodeState {
    /// block_info replies by upper-case hash.
    blocks: HashMap<String, Value>,
    /// Hashes whose reply turns `"confirmed": "true"` once `block_confirm` is called.
    confirm_on_request: HashSet<String>,
    /// Fixed replies by action, overriding the built-in handling.
    replies: HashMap<String, Value>,
    contents_as_string: bool,
    fault: Fault,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<NodeState>>;

/// The canned node; the server stops when this is dropped.
pub struct CannedNode {
    addr: SocketAddr,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CannedNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CannedNode {
    /// Starts a node on 127.0.0.1 on a free port.
    pub async fn start() -> Self {
        let state = Shared::default();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        CannedNode { addr, state, task }
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> std::sync::MutexGuard<'_, NodeState> {
        self.state.lock().unwrap()
    }

    /// Serves `reply` (a full `block_info` answer) for `hash`.
    pub fn insert_block_info(&self, hash: impl ToString, reply: Value) {
        self.state().blocks.insert(hash.to_string().to_uppercase(), reply);
    }

    /// After `block_confirm` for `hash`, `block_info` reports it confirmed.
    pub fn confirm_on_block_confirm(&self, hash: impl ToString) {
        self.state().confirm_on_request.insert(hash.to_string().to_uppercase());
    }

    /// Answers every request for `action` with `reply`.
    pub fn set_reply(&self, action: &str, reply: Value) {
        self.state().replies.insert(action.to_owned(), reply);
    }

    /// Sends `contents` as a string of JSON even when `json_block` is set (a proxy that drops it).
    pub fn set_contents_as_string(&self, on: bool) {
        self.state().contents_as_string = on;
    }

    /// Applies `fault` to every following request.
    pub fn set_fault(&self, fault: Fault) {
        self.state().fault = fault;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        self.state().requests.len()
    }

    /// How many requests had this `action`.
    pub fn count_action(&self, action: &str) -> usize {
        self.state().requests.iter().filter(|r| r.body["action"] == action).count()
    }
}

fn error(text: &str) -> Value {
    json!({ "error": text })
}

fn is_true(v: &Value) -> bool {
    matches!(v, Value::Bool(true)) || v.as_str() == Some("true")
}

/// Looks up the `hash` of a request the way a node does, with its error texts.
fn hash_of(body: &Value) -> Result<String, Value> {
    let hash = body["hash"].as_str().ok_or_else(|| error("Unable to parse JSON"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(error("Invalid block hash"));
    }
    Ok(hash.to_uppercase())
}

async fn handle(State(state): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let fault = {
        let mut s = state.lock().unwrap();
        s.requests.push(Recorded {
            body: parsed.clone().unwrap_or(Value::Null),
            authorization: headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            query: uri.query().map(str::to_owned),
        });
        s.fault.clone()
    };
    match fault {
        Fault::None => {}
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, "canned failure").into_response();
        }
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Body(text) => {
            return ([(header::CONTENT_TYPE, "application/json")], text).into_response();
        }
    }
    let reply = match parsed {
        Some(body) => answer(&state, &body),
        None => error("Unable to parse JSON"),
    };
    // A real node answers HTTP 200 even for errors.
    ([(header::CONTENT_TYPE, "application/json")], reply.to_string()).into_response()
}

fn answer(state: &Shared, body: &Value) -> Value {
    let mut s = state.lock().unwrap();
    let Some(action) = body["action"].as_str() else {
        return error("Unknown command");
    };
    if let Some(reply) = s.replies.get(action) {
        return reply.clone();
    }
    match action {
        "block_info" => {
            let hash = match hash_of(body) {
                Ok(h) => h,
                Err(e) => return e,
            };
            let Some(mut reply) = s.blocks.get(&hash).cloned() else {
                return error("Block not found");
            };
            if (!is_true(&body["json_block"]) || s.contents_as_string) && reply["contents"].is_object() {
                reply["contents"] = Value::String(reply["contents"].to_string());
            }
            reply
        }
        "block_confirm" => {
            let hash = match hash_of(body) {
                Ok(h) => h,
                Err(e) => return e,
            };
            if !s.blocks.contains_key(&hash) {
                return error("Block not found");
            }
            if s.confirm_on_request.contains(&hash) {
                if let Some(reply) = s.blocks.get_mut(&hash) {
                    reply["confirmed"] = json!("true");
                }
            }
            json!({ "started": "1" })
        }
        _ => error("Unknown command"),
    }
}
