//! The mock Nano node on its own, for demos and manual testing.
//!
//! ```sh
//! cargo run --example mock_node
//! MOCK_NODE_RPC=127.0.0.1:7076 MOCK_NODE_WS=127.0.0.1:7078 cargo run --example mock_node
//! ```
//!
//! Prints the RPC and WebSocket URLs and the genesis (faucet) account, then serves until
//! Ctrl-C. The genesis private key is the public dev-network test key.

use std::net::SocketAddr;
use std::process::ExitCode;

use nanosession::mock_node::{MockNode, MockNodeConfig, GENESIS_ADDRESS, GENESIS_PRIVATE_KEY};

/// `name` from the environment as a socket address, or `default`.
fn addr(name: &str, default: &str) -> Result<SocketAddr, String> {
    let value = std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let value = value.as_deref().unwrap_or(default);
    value.trim().parse().map_err(|e| format!("{name} is not a socket address ({value:?}): {e}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match (addr("MOCK_NODE_RPC", "127.0.0.1:45000"), addr("MOCK_NODE_WS", "127.0.0.1:47000")) {
        (Ok(rpc_addr), Ok(ws_addr)) => MockNodeConfig { rpc_addr, ws_addr, ..MockNodeConfig::default() },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("mock node: {e}");
            return ExitCode::FAILURE;
        }
    };
    let node = match MockNode::start(config) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("mock node: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("mock Nano node (dev network)");
    println!("  RPC:       {}", node.rpc_url());
    println!("  WebSocket: {}", node.ws_url());
    println!("  genesis:   {GENESIS_ADDRESS}");
    println!("  genesis private key (public test key): {GENESIS_PRIVATE_KEY}");
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("mock node: cannot wait for Ctrl-C: {e}");
        return ExitCode::FAILURE;
    }
    drop(node);
    ExitCode::SUCCESS
}
