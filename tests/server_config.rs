//! The example server's environment contract: a bad or missing value stops start-up with one
//! line naming the variable (exit status 2), before anything listens.

use std::path::PathBuf;
use std::process::Command;

const PAY_TO: &str = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo";

fn server() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join("server");
    assert!(path.exists(), "{} is missing: `cargo test` builds the examples", path.display());
    path
}

/// Runs the server with a valid base environment plus `overrides` (an empty value removes the
/// variable) and returns its exit status and standard error.
fn start_with(overrides: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(server());
    cmd.env_clear()
        .env("NANOSESSION_PAY_TO", PAY_TO)
        .env("NANO_RPC_URLS", "http://127.0.0.1:9")
        .env("NANOSESSION_STORE", "memory")
        .env("NANOSESSION_LISTEN", "127.0.0.1:1"); // never reached: every case fails before
    for (name, value) in overrides {
        if value.is_empty() {
            cmd.env_remove(name);
        } else {
            cmd.env(name, value);
        }
    }
    let out = cmd.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_bad_value_names_its_variable() {
    let cases: &[(&str, &str)] = &[
        ("NANOSESSION_PAY_TO", ""),
        ("NANOSESSION_PAY_TO", "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtd1"),
        ("NANOSESSION_PAY_TO", "nano_1111111111111111111111111111111111111111111111111111hifc8npp"),
        ("NANO_RPC_URLS", ""),
        ("NANO_RPC_URLS", "ftp://node.example"),
        ("NANOSESSION_PRICE_RAW", "12345"),
        ("NANOSESSION_PRICE_RAW", "1e24"),
        ("NANOSESSION_TAG_MODULUS", "0"),
        ("NANOSESSION_TAG_MODULUS", "ten"),
        ("NANOSESSION_TAG_MODULUS", "9007199254740993"),
        ("NANOSESSION_TAG_MODULUS", "1000"),
        ("NANOSESSION_SESSIONS_PER_CLIENT", "0"),
        ("NANO_RPC_URLS", "http://node.example:7076"),
        ("NANO_RPC_ALLOW_HTTP", "yes please"),
        ("NANO_RPC_QUORUM", "2"),
        ("NANO_RPC_QUORUM", "0"),
        ("NANOSESSION_SESSIONS_PER_CLIENT", "many"),
        ("NANOSESSION_SESSION_TTL_SECS", "9999999"),
        ("NANOSESSION_SESSION_TTL_SECS", "0"),
        ("NANOSESSION_CONFIRM_WAIT_MS", "60000"),
        ("NANOSESSION_TIMESTAMP_SKEW_SECS", "-1"),
        ("NANOSESSION_PUBLIC_URL", "/relative"),
        ("NANOSESSION_LISTEN", "nowhere"),
        ("NANOSESSION_STORE", "mongodb://x"),
        ("NANOSESSION_STORE", "file:"),
        ("NANOSESSION_WORK_THRESHOLD", "ffffffc0"),
        ("NANOSESSION_WORK_THRESHOLD", "zzzzzzzzzzzzzzzz"),
        ("NANOSESSION_WORK_THRESHOLD", "0xfffffff8000000"),
        ("NANOSESSION_HANDOFF", "maybe"),
        ("NANOSESSION_SETTLEMENT", "later"),
        ("NANOSESSION_PAYWALL", "sometimes"),
        ("NANO_WS_URL", "http://127.0.0.1:47000"),
    ];
    for (name, value) in cases {
        let (code, stderr) = start_with(&[(name, value)]);
        assert_eq!(code, Some(2), "{name}={value:?}: {stderr}");
        let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}={value:?}: one line, got {stderr}");
        assert!(lines[0].contains(name), "{name}={value:?}: the line names the variable: {}", lines[0]);
    }
}

#[test]
fn credentials_in_urls_stay_out_of_the_error_line() {
    let (code, stderr) = start_with(&[("NANOSESSION_STORE", "redis://:hunter2@127.0.0.1:9/")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("NANOSESSION_STORE") && !stderr.contains("hunter2"), "{stderr}");
}

/// Review F10: the example server bounds new sessions per peer address.
#[tokio::test]
async fn sessions_per_peer_address_are_bounded() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(server())
        .env_clear()
        .env("NANOSESSION_PAY_TO", PAY_TO)
        .env("NANO_RPC_URLS", "http://127.0.0.1:9")
        .env("NANOSESSION_STORE", "memory")
        .env("NANOSESSION_SESSIONS_PER_CLIENT", "2")
        .env("NANOSESSION_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "off")
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/paid");
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..100 {
        if http.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        statuses.push(http.get(&url).send().await.unwrap().status().as_u16());
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(statuses, [402, 402, 429]);
}
