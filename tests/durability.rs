//! A `kill -9` of the example server between a payment and its replay must not enable the
//! replay with a persistent store (file, Redis, PostgreSQL), while with `memory` the spent set
//! is gone after the restart (the control that shows the test can tell the difference).
//!
//! The example server is the binary `cargo test` builds next to the test executables.

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{block_info_reply, now_secs, signed_send, CannedNode};
use nanosession::nano::{Address, BlockHash, PrivateKey, Raw};

const PAY_TO: &str = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo";

fn server_binary() -> PathBuf {
    // target/debug/deps/durability-… -> target/debug/examples/server
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join("server");
    assert!(path.exists(), "{} is missing: `cargo test` builds the examples", path.display());
    path
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(store: &str, node: &CannedNode) -> Server {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(server_binary())
            .env("NANOSESSION_LISTEN", format!("127.0.0.1:{port}"))
            .env("NANOSESSION_PAY_TO", PAY_TO)
            .env("NANO_RPC_URLS", node.url())
            .env("NANOSESSION_STORE", store)
            .env("NANOSESSION_CONFIRM_WAIT_MS", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // Owned at once, so Drop kills and reaps it even if it never comes up.
        let server = Server { child, base: format!("http://127.0.0.1:{port}") };
        for _ in 0..100 {
            if reqwest::get(format!("{}/healthz", server.base)).await.is_ok_and(|r| r.status() == 200) {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the example server did not come up");
    }

    /// SIGKILL: no destructor, no flush, no graceful shutdown.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        // Drop's second kill and wait are no-ops on a reaped child.
    }

    async fn challenge(&self) -> (String, Raw) {
        let res = reqwest::get(format!("{}/paid", self.base)).await.unwrap();
        assert_eq!(res.status(), 402);
        let header = |name: &str| res.headers()[name].to_str().unwrap().to_owned();
        let price: u128 = header("x-payment-amount").parse().unwrap();
        let tag: u128 = header("x-payment-tag").parse().unwrap();
        (header("x-payment-session"), Raw::new(price + tag))
    }

    async fn pay(&self, session: &str, block: &BlockHash) -> (u16, String) {
        let res = reqwest::Client::new()
            .get(format!("{}/paid", self.base))
            .header("x-payment-session", session)
            .header("x-payment-block", block.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body: serde_json::Value = res.json().await.unwrap();
        let reason = body["reason"].as_str().map_or_else(|| "paid".to_owned(), str::to_owned);
        (status, reason)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pays once, kill -9s the server, restarts it on the same store and replays the block.
/// Returns the replay's reasons on the old session and on a fresh one.
async fn replay_after_kill_9(store: &str) -> (String, String) {
    let node = CannedNode::start().await;
    let server = Server::start(store, &node).await;
    let (session, amount) = server.challenge().await;

    // A real signed send of exactly the session's amount to the merchant.
    let payer = PrivateKey::from_bytes(rand_bytes());
    let pay_to: Address = PAY_TO.parse().unwrap();
    // Its previous block too: the verifier derives the amount from it.
    let prev = signed_send(
        &payer,
        BlockHash::from_bytes(rand_bytes()),
        Raw::new(1_000 + amount.get()),
        pay_to.public_key(),
    );
    let block = signed_send(&payer, prev.hash(), Raw::new(1_000), pay_to.public_key());
    node.insert_block_info(prev.hash(), block_info_reply(&prev, None, now_secs(), true));
    node.insert_block_info(block.hash(), block_info_reply(&block, Some(amount), now_secs(), true));
    assert_eq!(server.pay(&session, &block.hash()).await, (200, "paid".to_owned()));

    server.kill_9();
    let server = Server::start(store, &node).await;
    let old_session = server.pay(&session, &block.hash()).await;
    let (fresh, _) = server.challenge().await;
    let fresh_session = server.pay(&fresh, &block.hash()).await;
    assert!(matches!(old_session.0, 402 | 409), "the replay is never granted: {old_session:?}");
    assert_eq!(fresh_session.0, 402, "the replay is never granted");
    (old_session.1, fresh_session.1)
}

fn rand_bytes() -> [u8; 32] {
    *nanosession::store::conformance::random_hash().as_bytes()
}

fn temp_file() -> PathBuf {
    std::env::temp_dir()
        .join(format!("nanosession-kill9-{}.redb", nanosession::session::SessionId::generate()))
}

#[tokio::test]
async fn file_store_survives_kill_9() {
    let path = temp_file();
    let reasons = replay_after_kill_9(&format!("file:{}", path.display())).await;
    assert_eq!(reasons, ("already_granted".to_owned(), "already_spent".to_owned()));
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn redis_store_survives_kill_9() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("REDIS_URL is not set: skipping (./scripts/test sets it)");
        return;
    };
    let reasons = replay_after_kill_9(&url).await;
    assert_eq!(reasons, ("already_granted".to_owned(), "already_spent".to_owned()));
}

#[tokio::test]
async fn postgres_store_survives_kill_9() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("DATABASE_URL is not set: skipping (./scripts/test sets it)");
        return;
    };
    let reasons = replay_after_kill_9(&url).await;
    assert_eq!(reasons, ("already_granted".to_owned(), "already_spent".to_owned()));
}

/// The control: the memory store forgets the spent set, so the same replay is no longer caught
/// as `already_spent` (here the new session's tag differs, so it is refused as `wrong_amount`).
#[tokio::test]
async fn memory_store_forgets_after_kill_9() {
    let (_, fresh) = replay_after_kill_9("memory").await;
    assert_ne!(fresh, "already_spent", "memory cannot remember across a restart");
}
