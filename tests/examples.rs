//! The README's commands must keep working: run the built examples (which `cargo test` builds
//! next to the tests) and check what they print: the demo, the gRPC example, the standalone mock
//! node's flags and environment, and the walkthrough "Try it against the mock node" from the 402
//! to the paid 200.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} is missing: `cargo test` builds the examples", path.display());
    path
}

fn run(name: &str) -> String {
    let output = Command::new(example(name)).env("RUST_LOG", "off").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{name} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[test]
fn the_demo_pays_is_served_and_refuses_the_replay() {
    let out = run("demo");
    assert!(out.contains("402 Payment Required"), "{out}");
    assert!(out.contains("200 OK"), "{out}");
    assert!(out.contains("PAYMENT-RESPONSE: success=true"), "{out}");
    assert!(out.contains("402 already_spent"), "{out}");
    assert!(out.contains("the 402 offers hand-off: true"), "{out}");
    assert!(out.contains("the server published it, confirmed: true"), "{out}");
    let now = out.lines().find(|l| l.trim_start().starts_with("now")).expect("the balances after receiving");
    assert!(
        now.contains("(+0 XNO receivable)") && !now.contains("merchant 0 XNO"),
        "the merchant received it: {now}"
    );
}

#[test]
fn the_grpc_example_pays_unary_and_streaming_calls() {
    let out = run("grpc");
    assert!(out.contains("ResourceExhausted: payment_required"), "{out}");
    assert!(out.contains("Paid -> block "), "{out}");
    assert!(out.contains("payment-response metadata: true"), "{out}");
    assert!(out.contains("AlreadyExists: already_granted"), "{out}");
    assert_eq!(out.matches("PaidStream -> tick").count(), 3, "{out}");
}

// ---------------------------------------------------------------------------------------------
// The standalone mock node (`examples/mock_node.rs`) and the README's walkthrough.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nanosession::nano::{work, Address, BlockHash, PublicKey, Raw, Seed, StateBlock};
use nanosession::rpc::NanoRpcClient;
use serde_json::Value;

/// The dev genesis, the README's merchant.
const GENESIS: &str = "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo";

/// A child process killed when the test ends, pass or fail, and its stdout lines.
struct Running {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// Starts `name` with `args` and only `envs` (plus `PATH`), stdout read line by line.
    fn start(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(example(name));
        cmd.env_clear().env("RUST_LOG", "off").args(args).stdout(Stdio::piped()).stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // Keeps draining after the test stops reading, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running { child, lines }
    }

    /// Lines up to and including the first one starting with `prefix`.
    fn until(&self, prefix: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with(prefix);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no line starting with {prefix:?} ({e}); got {seen:#?}"),
            }
        }
    }
}

/// Starts the mock node on free ports with `args` and `envs`; its printed lines and its
/// `NANO_MOCK_READY` JSON.
fn mock_node(args: &[&str], envs: &[(&str, &str)]) -> (Running, Vec<String>, Value) {
    let mut all = vec!["--rpc", "127.0.0.1:0", "--ws", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let node = Running::start("mock_node", &all, envs);
    let lines = node.until("NANO_MOCK_READY ");
    let ready =
        serde_json::from_str(lines.last().unwrap().strip_prefix("NANO_MOCK_READY ").unwrap()).unwrap();
    (node, lines, ready)
}

fn rpc_client(ready: &Value) -> NanoRpcClient {
    NanoRpcClient::new([ready["rpc"].as_str().unwrap()]).unwrap()
}

/// Runs `mock_node` with `args` and `envs` to its exit: status and stderr.
fn mock_node_exit(args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(example("mock_node"))
        .env_clear()
        .envs(envs.iter().copied())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mock_node_help_names_every_flag_and_variable() {
    let (code, stdout, _) = mock_node_exit(&["--help"], &[]);
    assert_eq!(code, Some(0));
    for name in [
        "--rpc",
        "--ws",
        "--payer-seed",
        "--fund-raw",
        "--confirmation-delay-ms",
        "--never-confirm",
        "--drop-ws",
        "--duplicate-ws",
        "--http-500",
        "--fail-rate",
        "--reply-delay-ms",
        "--no-control",
        "NANO_MOCK_CONFIRMATION_DELAY_MS",
        "NANO_MOCK_FAIL_RATE",
        "NANO_MOCK_PAYER_SEED",
        "ffc0000000000000",
    ] {
        assert!(stdout.contains(name), "--help lacks {name}:\n{stdout}");
    }
}

#[test]
fn mock_node_bad_settings_exit_2_with_one_line_each_naming_it() {
    let secret = "not-a-seed-but-secret";
    let (code, stdout, stderr) = mock_node_exit(
        &[
            "--fail-rate",
            "2",
            "--confirmation-delay-ms",
            "soon",
            "--bogus",
            "--payer-seed",
            secret,
            "--fund-raw",
        ],
        &[("NANO_MOCK_RPC", "nowhere"), ("NANO_MOCK_DROP_WS", "maybe"), ("NANO_MOCK_FUND_RAW", "0")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stdout.contains("NANO_MOCK_READY"), "nothing started: {stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let named = [
        "NANO_MOCK_RPC",
        "NANO_MOCK_FUND_RAW",
        "NANO_MOCK_DROP_WS",
        "--fail-rate",
        "--confirmation-delay-ms",
        "--bogus",
        "--payer-seed",
        "--fund-raw",
    ];
    assert_eq!(lines.len(), named.len(), "one line per problem: {stderr}");
    for (line, name) in lines.iter().zip(named) {
        assert!(line.starts_with("error: ") && line.contains(name), "{name} in {line:?}");
    }
    assert!(!stderr.contains(secret), "a bad seed is not echoed: {stderr}");
}

#[test]
fn mock_node_prints_a_funded_payer_and_delays_confirmations_as_asked() {
    let (_node, lines, ready) = mock_node(&["--confirmation-delay-ms", "1500"], &[]);
    let text = lines.join("\n");
    let seed_hex = ready["payer"]["seed"].as_str().unwrap();
    let account: Address = ready["payer"]["account"].as_str().unwrap().parse().unwrap();
    let key = Seed::from_hex(seed_hex).unwrap().derive(0);
    assert_eq!(Address::from(key.public_key()), account, "the printed seed controls the printed account");
    assert!(text.contains(&format!("export NANO_PAYER_SEED={seed_hex}")), "{text}");
    assert!(text.contains(&format!("{account} holds 1 XNO")), "{text}");
    assert!(text.contains("confirmation delay 1500 ms"), "{text}");
    assert_eq!(ready["payer"]["balance_raw"], Raw::ONE_XNO.to_string());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let rpc = rpc_client(&ready);
        // The funding is confirmed at start despite the delay, so the balance is spendable.
        let info = rpc.account_info(&account).await.unwrap().expect("the payer's account is open");
        assert_eq!(info.balance, Some(Raw::ONE_XNO));
        let funding: BlockHash = ready["payer"]["funding_block"].as_str().unwrap().parse().unwrap();
        assert!(rpc.block_info(&funding).await.unwrap().unwrap().confirmed);

        // A new block from the payer waits out the delay before it is confirmed.
        let mut send = StateBlock::send(
            key.public_key(),
            funding,
            key.public_key(),
            Raw::new(Raw::ONE_XNO.get() - 1),
            &PublicKey::from_bytes([7; 32]),
        );
        send.sign(&key);
        send.work = work::generate(&send.work_root(), work::DEV_EPOCH_2, &Default::default()).unwrap();
        let started = Instant::now();
        let hash = rpc.process(&send, "send").await.unwrap();
        assert!(!rpc.block_info(&hash).await.unwrap().unwrap().confirmed, "unconfirmed at first");
        while !rpc.block_info(&hash).await.unwrap().unwrap().confirmed {
            assert!(started.elapsed() < Duration::from_secs(20), "never confirmed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(started.elapsed() >= Duration::from_millis(1500), "confirmed after {:?}", started.elapsed());
    });
}

#[test]
fn mock_node_takes_its_settings_from_the_environment_flags_winning() {
    let seed = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
    let (_node, lines, ready) = mock_node(
        &["--fund-raw", "7000"],
        &[("NANO_MOCK_PAYER_SEED", seed), ("NANO_MOCK_FUND_RAW", "5000"), ("NANO_MOCK_FAIL_RATE", "1")],
    );
    let expected = Address::from(Seed::from_hex(seed).unwrap().derive(0).public_key());
    assert_eq!(ready["payer"]["account"], expected.to_string());
    assert_eq!(ready["payer"]["balance_raw"], "7000", "the flag wins over the variable");
    assert!(lines.join("\n").contains("fail rate 1"), "{lines:#?}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        let reply = reqwest::Client::new()
            .post(ready["rpc"].as_str().unwrap())
            .json(&serde_json::json!({ "action": "version" }))
            .send()
            .await
            .unwrap();
        reply.status().as_u16()
    });
    assert_eq!(status, 500, "NANO_MOCK_FAIL_RATE=1 fails every RPC request");
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The README's "Try it against the mock node", step by step, on free ports.
#[test]
fn readme_walkthrough_pays_from_the_printed_payer_and_gets_200() {
    // 1. cargo run --example mock_node
    let (_node, lines, ready) = mock_node(&[], &[]);
    let rpc_url = ready["rpc"].as_str().unwrap().trim_end_matches('/').to_owned();
    let export =
        lines.iter().find_map(|l| l.strip_prefix("export NANO_PAYER_SEED=")).expect("the export line");

    // 2. the example server, paid to the genesis (not the payer)
    let listen = format!("127.0.0.1:{}", free_port());
    let server = Running::start(
        "server",
        &[],
        &[
            ("NANOSESSION_PAY_TO", GENESIS),
            ("NANO_RPC_URLS", &rpc_url),
            ("NANOSESSION_NETWORK", "nano:dev"),
            ("NANOSESSION_STORE", "memory"),
            ("NANOSESSION_WORK_THRESHOLD", "ffc0000000000000"),
            ("NANOSESSION_LISTEN", &listen),
        ],
    );
    let url = format!("http://{listen}/paid");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let payer: Address = ready["payer"]["account"].as_str().unwrap().parse().unwrap();
    let rpc = rpc_client(&ready);
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("http://{listen}/healthz")).await.is_err() {
            assert!(Instant::now() < deadline, "the server never listened");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // 3. curl -i http://127.0.0.1:3000/paid: the 402 challenge
        let plain = reqwest::get(&url).await.unwrap();
        assert_eq!(plain.status(), 402);
        assert_eq!(plain.headers()["x-payment-address"], GENESIS);
        assert!(plain.headers().contains_key("payment-required"));
    });

    // 4. export NANO_PAYER_SEED=… ; cargo run --example pay -- URL
    let out = Command::new(example("pay"))
        .env_clear()
        .env("NANO_PAYER_SEED", export)
        .env("NANO_RPC_URLS", &rpc_url)
        .arg(&url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pay failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("402 Payment Required"), "{stdout}");
    assert!(stdout.contains("200 OK"), "{stdout}");
    assert!(stdout.contains("PAYMENT-RESPONSE: success=true"), "{stdout}");
    assert!(stdout.contains(&format!("\"payer\":\"{payer}\"")), "paid by the printed payer: {stdout}");
    assert!(!stdout.contains(export), "the seed is never printed: {stdout}");

    // The money moved from the payer to the merchant's receivable.
    rt.block_on(async {
        let left = rpc.account_info(&payer).await.unwrap().unwrap().balance.unwrap();
        let paid = Raw::ONE_XNO.checked_sub(left).unwrap();
        let merchant: Address = GENESIS.parse().unwrap();
        let receivable = rpc.receivable(&merchant).await.unwrap();
        assert!(receivable.iter().any(|(_, amount)| *amount == paid), "{receivable:?} lacks {paid}");
    });
    drop(server);
}

/// `cargo run --example demo -- --browser` serves the paywall; its printed pay command pays the
/// `nano:` URI the page shows (as a phone would), and the page's cookie then gets the article.
#[test]
fn the_browser_demo_serves_a_payable_page_and_its_pay_command_pays_it() {
    let listen = format!("127.0.0.1:{}", free_port());
    let demo = Running::start("demo", &["--browser"], &[("NANOSESSION_LISTEN", &listen)]);
    let lines = demo.until("the page notices");
    let command = lines.iter().find(|l| l.contains("NANO_PAYER_SEED=")).expect("the pay command");
    let var = |name: &str| {
        command.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap().to_owned()
    };
    let (rpc, seed) = (var("NANO_RPC_URLS"), var("NANO_PAYER_SEED"));
    let url = format!("http://{listen}/article");
    assert!(lines.iter().any(|l| l.contains(&url)), "the URL to open: {lines:#?}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::new();
    let (cookie, uri) = rt.block_on(async {
        let page = http.get(&url).header("accept", "text/html").send().await.unwrap();
        assert_eq!(page.status(), 402);
        let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        let html = page.text().await.unwrap();
        let uri = html
            .split("href=\"")
            .find(|s| s.starts_with("nano:"))
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        (cookie, uri)
    });
    let out = Command::new(example("pay"))
        .env_clear()
        .env("NANO_RPC_URLS", &rpc)
        .env("NANO_PAYER_SEED", &seed)
        .arg(&uri)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "pay failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("published and confirmed"), "{stdout}");
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let res =
                http.get(&url).header("accept", "text/html").header("cookie", &cookie).send().await.unwrap();
            if res.status() == 200 {
                assert!(res.text().await.unwrap().contains("Today's article"));
                break;
            }
            assert!(Instant::now() < deadline, "the paid page never appeared");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// SIGTERM while a payment waits for its confirmation: the server stops accepting, lets that
/// payment finish with its 200, exits 0, and leaves its file store closed with the payment
/// recorded (another process opens it at once).
#[test]
fn the_server_finishes_a_payment_in_flight_on_sigterm_and_closes_its_file_store() {
    use nanosession::client::{PayingClient, Wallet, WorkThresholds};
    use nanosession::store::{FileStore, SpentSet};

    let (_node, _, ready) = mock_node(&["--confirmation-delay-ms", "1500"], &[]);
    let rpc_url = ready["rpc"].as_str().unwrap().trim_end_matches('/').to_owned();
    let dir = std::env::temp_dir().join(format!("nanosession-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("store.redb");
    let _ = std::fs::remove_file(&file);
    let listen = format!("127.0.0.1:{}", free_port());
    let mut server = Running::start(
        "server",
        &[],
        &[
            ("NANOSESSION_PAY_TO", GENESIS),
            ("NANO_RPC_URLS", &rpc_url),
            ("NANOSESSION_NETWORK", "nano:dev"),
            ("NANOSESSION_STORE", &format!("file:{}", file.display())),
            ("NANOSESSION_WORK_THRESHOLD", "ffc0000000000000"),
            ("NANOSESSION_LISTEN", &listen),
        ],
    );
    let url = format!("http://{listen}/paid");
    let seed = Seed::from_hex(ready["payer"]["seed"].as_str().unwrap()).unwrap();
    let payer: Address = ready["payer"]["account"].as_str().unwrap().parse().unwrap();
    let rpc = rpc_client(&ready);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let block = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("http://{listen}/healthz")).await.is_err() {
            assert!(Instant::now() < deadline, "the server never listened");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let wallet = Wallet::from_seed(&seed, 0).with_limits(Raw::ONE_XNO, Raw::ONE_XNO);
        let client = PayingClient::builder(wallet, NanoRpcClient::new([rpc_url.as_str()]).unwrap())
            .work_thresholds(WorkThresholds::DEV)
            .network("nano:dev")
            .build();
        let paying = tokio::spawn({
            let url = url.clone();
            async move { client.get(&url).await }
        });
        // The server publishes the handed-over block, then waits out the node's 1.5 s delay.
        while rpc.account_info(&payer).await.unwrap().unwrap().balance == Some(Raw::ONE_XNO) {
            assert!(Instant::now() < deadline, "the payment was never published");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let killed = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
        assert!(killed.success());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            reqwest::get(format!("http://{listen}/healthz")).await.is_err(),
            "still accepting after SIGTERM"
        );
        let paid = paying.await.unwrap().expect("the payment in flight finished");
        assert_eq!(paid.response.status(), 200, "the payment in flight was served");
        paid.payment.unwrap().block
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    rt.block_on(async {
        let store = FileStore::open(&file).await.expect("the file store was closed");
        assert!(store.owner(&block).await.unwrap().is_some(), "the grant's spent entry is on disk");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README's benchmark command works end to end over sockets (a short run, memory and file
/// stores): every path answers what it must (the program fails on any other answer) and every
/// row of the table has a rate. Not a timed test: no figure is compared with a target here.
#[test]
fn the_load_benchmark_measures_every_path_over_sockets() {
    let output = Command::new(example("loadbench"))
        .args(["--seconds", "1", "--rounds", "1", "--connections", "16", "--stores", "memory,file"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadbench failed:\n{stdout}\n{stderr}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ") && l.contains("/s |")).collect();
    for label in [
        "bare axum router",
        "free route through the layer",
        "402, memory store",
        "402, file store",
        "paid (402 + retry), memory store",
        "paid (402 + retry), file store",
    ] {
        let row = rows
            .iter()
            .find(|r| r.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no row for {label}:\n{stdout}"));
        let rate: f64 = row.split('|').nth(2).unwrap().trim().trim_end_matches("/s").parse().unwrap();
        assert!(rate > 0.0, "{row}");
    }
}
