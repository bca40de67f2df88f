//! The mock Nano node on its own, for demos and manual testing, with a funded payer account.
//!
//! ```sh
//! cargo run --example mock_node
//! cargo run --example mock_node -- --confirmation-delay-ms 1500 --drop-ws
//! NANO_MOCK_RPC=127.0.0.1:7076 NANO_MOCK_FAIL_RATE=0.2 cargo run --example mock_node
//! cargo run --example mock_node -- --help
//! ```
//!
//! At start it funds a payer account (a fresh random seed unless `--payer-seed` is given) from
//! the genesis, confirms that funding at once, then switches on the faults asked for, and
//! prints the node's URLs and the payer's seed, address and balance: as text, as an
//! `export NANO_PAYER_SEED=…` line, and as one machine-readable line
//! `NANO_MOCK_READY {json}`. Then it serves until Ctrl-C.
//!
//! Every option is a flag or an environment variable (the flag wins). Bad values stop start-up
//! with one line per problem, naming the flag or variable, and exit status 2.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use nanosession::mock_node::{MockNode, MockNodeConfig, GENESIS_ADDRESS, GENESIS_PRIVATE_KEY};
use nanosession::nano::{work, Address, Raw, Seed};

const HELP: &str = "\
The mock Nano node (dev network): RPC and WebSocket on loopback, an in-memory ledger of really
signed blocks, and a funded payer account.

usage: cargo run --example mock_node -- [OPTIONS]

Every option can also be set in the environment (the flag wins); switches take 1/true/yes/on
or 0/false/no/off there.

  --rpc ADDR                   NANO_MOCK_RPC                    RPC listen address [127.0.0.1:45000]
  --ws ADDR                    NANO_MOCK_WS                     WebSocket listen address [127.0.0.1:47000]
  --payer-seed HEX             NANO_MOCK_PAYER_SEED             seed of the funded payer (64 hex digits) [random]
  --fund-raw RAW               NANO_MOCK_FUND_RAW               raw given to the payer [1000000000000000000000000000000 = 1 XNO]
  --confirmation-delay-ms MS   NANO_MOCK_CONFIRMATION_DELAY_MS  how long each new block waits to be confirmed [0]
  --never-confirm              NANO_MOCK_NEVER_CONFIRM          no new block is ever confirmed
  --drop-ws                    NANO_MOCK_DROP_WS                WebSocket confirmation notifications are lost
  --duplicate-ws               NANO_MOCK_DUPLICATE_WS           every WebSocket notification is sent twice
  --http-500                   NANO_MOCK_HTTP_500               every RPC request answers HTTP 500
  --fail-rate RATE             NANO_MOCK_FAIL_RATE              share of RPC requests answering HTTP 500, 0 to 1 [0]
  --reply-delay-ms MS          NANO_MOCK_REPLY_DELAY_MS         every RPC reply is held back this long [0]
  --no-control                 NANO_MOCK_NO_CONTROL             refuse work_generate (\"RPC control is disabled\")
  -h, --help                                                    this text

The payer's funding is confirmed at start whatever the faults; they apply to every block after.
Work thresholds are the dev network's: send/change ffc0000000000000, receive/open f000000000000000
(and epoch 1 fe00000000000000, the entry check).";

/// What a value must be, with its parser.
#[derive(Clone, Copy)]
enum Kind {
    Addr,
    Seed,
    Raw,
    Millis,
    Rate,
    Switch,
}

/// One option: its flag, its variable and its kind.
struct Opt {
    flag: &'static str,
    var: &'static str,
    kind: Kind,
}

const OPTIONS: &[Opt] = &[
    Opt { flag: "--rpc", var: "NANO_MOCK_RPC", kind: Kind::Addr },
    Opt { flag: "--ws", var: "NANO_MOCK_WS", kind: Kind::Addr },
    Opt { flag: "--payer-seed", var: "NANO_MOCK_PAYER_SEED", kind: Kind::Seed },
    Opt { flag: "--fund-raw", var: "NANO_MOCK_FUND_RAW", kind: Kind::Raw },
    Opt { flag: "--confirmation-delay-ms", var: "NANO_MOCK_CONFIRMATION_DELAY_MS", kind: Kind::Millis },
    Opt { flag: "--never-confirm", var: "NANO_MOCK_NEVER_CONFIRM", kind: Kind::Switch },
    Opt { flag: "--drop-ws", var: "NANO_MOCK_DROP_WS", kind: Kind::Switch },
    Opt { flag: "--duplicate-ws", var: "NANO_MOCK_DUPLICATE_WS", kind: Kind::Switch },
    Opt { flag: "--http-500", var: "NANO_MOCK_HTTP_500", kind: Kind::Switch },
    Opt { flag: "--fail-rate", var: "NANO_MOCK_FAIL_RATE", kind: Kind::Rate },
    Opt { flag: "--reply-delay-ms", var: "NANO_MOCK_REPLY_DELAY_MS", kind: Kind::Millis },
    Opt { flag: "--no-control", var: "NANO_MOCK_NO_CONTROL", kind: Kind::Switch },
];

/// A parsed value.
enum Value {
    Addr(SocketAddr),
    Seed(Box<[u8; 32]>),
    Raw(Raw),
    Millis(Duration),
    Rate(f64),
    Switch(bool),
}

/// Parses `text` as `kind`; `Err` says what was expected (never echoing a seed).
fn parse_value(kind: Kind, text: &str) -> Result<Value, String> {
    let text = text.trim();
    match kind {
        Kind::Addr => SocketAddr::from_str(text)
            .map(Value::Addr)
            .map_err(|_| format!("expected a socket address like 127.0.0.1:45000, got {text:?}")),
        Kind::Seed => {
            let mut seed = [0u8; 32];
            // The value is secret: say what is wrong with it, not what it is.
            hex::decode_to_slice(text, &mut seed)
                .map(|()| Value::Seed(Box::new(seed)))
                .map_err(|_| format!("expected 64 hex digits, got {} characters", text.len()))
        }
        Kind::Raw => match text.parse::<Raw>() {
            Ok(raw) if raw == Raw::ZERO => Err("must be more than zero raw".to_owned()),
            Ok(raw) => Ok(Value::Raw(raw)),
            Err(e) => Err(format!("expected an amount in raw (decimal digits), got {text:?}: {e}")),
        },
        Kind::Millis => text
            .parse::<u64>()
            .map(|ms| Value::Millis(Duration::from_millis(ms)))
            .map_err(|_| format!("expected a whole number of milliseconds, got {text:?}")),
        Kind::Rate => match text.parse::<f64>() {
            Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(Value::Rate(rate)),
            _ => Err(format!("expected a number from 0 to 1, got {text:?}")),
        },
        Kind::Switch => match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Value::Switch(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Value::Switch(false)),
            _ => Err(format!("expected 1/true/yes/on or 0/false/no/off, got {text:?}")),
        },
    }
}

/// Everything the node starts with.
struct Settings {
    config: MockNodeConfig,
    payer_seed: Option<Box<[u8; 32]>>,
    fund: Raw,
    never_confirm: bool,
    drop_ws: bool,
    duplicate_ws: bool,
    http_500: bool,
    fail_rate: f64,
    reply_delay: Duration,
}

impl Settings {
    fn set(&mut self, flag: &str, value: Value) {
        match (flag, value) {
            ("--rpc", Value::Addr(a)) => self.config.rpc_addr = a,
            ("--ws", Value::Addr(a)) => self.config.ws_addr = a,
            ("--payer-seed", Value::Seed(s)) => self.payer_seed = Some(s),
            ("--fund-raw", Value::Raw(r)) => self.fund = r,
            ("--confirmation-delay-ms", Value::Millis(d)) => self.config.confirmation_delay = d,
            ("--reply-delay-ms", Value::Millis(d)) => self.reply_delay = d,
            ("--fail-rate", Value::Rate(r)) => self.fail_rate = r,
            ("--never-confirm", Value::Switch(on)) => self.never_confirm = on,
            ("--drop-ws", Value::Switch(on)) => self.drop_ws = on,
            ("--duplicate-ws", Value::Switch(on)) => self.duplicate_ws = on,
            ("--http-500", Value::Switch(on)) => self.http_500 = on,
            ("--no-control", Value::Switch(on)) => self.config.enable_control = !on,
            _ => unreachable!("every option has a setter of its kind"),
        }
    }

    /// The faults switched on, in words.
    fn faults(&self) -> String {
        let mut on = Vec::new();
        if !self.config.confirmation_delay.is_zero() {
            on.push(format!("confirmation delay {} ms", self.config.confirmation_delay.as_millis()));
        }
        for (set, name) in [
            (self.never_confirm, "never confirm"),
            (self.drop_ws, "drop WebSocket notifications"),
            (self.duplicate_ws, "duplicate WebSocket notifications"),
            (self.http_500, "RPC answers HTTP 500"),
            (!self.config.enable_control, "work_generate disabled"),
        ] {
            if set {
                on.push(name.to_owned());
            }
        }
        if self.fail_rate > 0.0 {
            on.push(format!("fail rate {}", self.fail_rate));
        }
        if !self.reply_delay.is_zero() {
            on.push(format!("reply delay {} ms", self.reply_delay.as_millis()));
        }
        if on.is_empty() {
            "none".to_owned()
        } else {
            on.join(", ")
        }
    }
}

/// What the command line asks for.
enum Parsed {
    Run(Box<Settings>),
    Help,
}

/// Reads the environment, then the flags over it. `Err` has one line per problem.
fn parse(args: Vec<String>) -> Result<Parsed, Vec<String>> {
    let mut settings = Settings {
        config: MockNodeConfig {
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 45000)),
            ws_addr: SocketAddr::from(([127, 0, 0, 1], 47000)),
            ..MockNodeConfig::default()
        },
        payer_seed: None,
        fund: Raw::ONE_XNO,
        never_confirm: false,
        drop_ws: false,
        duplicate_ws: false,
        http_500: false,
        fail_rate: 0.0,
        reply_delay: Duration::ZERO,
    };
    let mut errors = Vec::new();
    for opt in OPTIONS {
        match std::env::var(opt.var) {
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => match parse_value(opt.kind, &text) {
                Ok(value) => settings.set(opt.flag, value),
                Err(e) => errors.push(format!("{}: {e}", opt.var)),
            },
            Err(std::env::VarError::NotPresent) => {}
            Err(std::env::VarError::NotUnicode(_)) => errors.push(format!("{}: not valid UTF-8", opt.var)),
        }
    }
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Parsed::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let Some(opt) = OPTIONS.iter().find(|o| o.flag == flag) else {
            errors.push(format!("{flag}: unknown option (see --help)"));
            continue;
        };
        let text = match (opt.kind, inline) {
            (_, Some(text)) => text,
            (Kind::Switch, None) => "true".to_owned(),
            (_, None) => match args.next() {
                Some(text) => text,
                None => {
                    errors.push(format!("{flag}: a value is required"));
                    continue;
                }
            },
        };
        match parse_value(opt.kind, &text) {
            Ok(value) => settings.set(opt.flag, value),
            Err(e) => errors.push(format!("{flag}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(Parsed::Run(Box::new(settings)))
    } else {
        Err(errors)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let settings = match parse(std::env::args().skip(1).collect()) {
        Ok(Parsed::Run(settings)) => settings,
        Ok(Parsed::Help) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    let node = match MockNode::start(settings.config.clone()) {
        Ok(node) => node,
        Err(e) => {
            eprintln!(
                "error: --rpc {} / --ws {}: cannot listen: {e}",
                settings.config.rpc_addr, settings.config.ws_addr
            );
            return ExitCode::from(2);
        }
    };

    // The payer is funded and its funding confirmed before any fault is on, so the printed
    // balance is spendable whatever the faults.
    let seed_bytes = settings.payer_seed.clone().unwrap_or_else(|| Box::new(rand::random()));
    let seed_hex = hex::encode_upper(*seed_bytes);
    let payer = Seed::from_bytes(*seed_bytes).derive(0);
    let payer_account = Address::from(payer.public_key());
    let open = node.fund(&payer, settings.fund).await;
    node.confirm(&open);
    let balance = node.balance(&payer_account);

    let faults = node.faults();
    faults.set_never_confirm(settings.never_confirm);
    faults.set_drop_notifications(settings.drop_ws);
    faults.set_duplicate_notifications(settings.duplicate_ws);
    faults.set_http_500(settings.http_500);
    faults.set_fail_rate(settings.fail_rate);
    faults.set_reply_delay(settings.reply_delay);

    let thresholds = node.work_thresholds();
    println!("mock Nano node (dev network; test funds only, never use these keys for real funds)");
    println!("  RPC:        {}", node.rpc_url());
    println!("  WebSocket:  {}", node.ws_url());
    println!(
        "  work:       send/change {}, receive/open {}",
        work::to_hex(thresholds.epoch_2),
        work::to_hex(thresholds.epoch_2_receive)
    );
    println!("  faults:     {}", settings.faults());
    println!("  genesis:    {GENESIS_ADDRESS} (private key {GENESIS_PRIVATE_KEY})");
    println!(
        "  payer:      {payer_account} holds {} XNO ({balance} raw), confirmed",
        balance.to_xno_string()
    );
    println!("  payer seed: {seed_hex} (account index 0)");
    println!();
    println!("export NANO_PAYER_SEED={seed_hex}");
    let ready = serde_json::json!({
        "rpc": node.rpc_url(),
        "ws": node.ws_url(),
        "genesis": GENESIS_ADDRESS,
        "payer": {
            "seed": seed_hex,
            "index": 0,
            "account": payer_account.to_string(),
            "balance_raw": balance.to_string(),
            "funding_block": open.to_string(),
        },
        "confirmation_delay_ms": settings.config.confirmation_delay.as_millis().to_string(),
    });
    println!("NANO_MOCK_READY {ready}");

    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C: {e}");
        return ExitCode::FAILURE;
    }
    drop(node);
    ExitCode::SUCCESS
}
