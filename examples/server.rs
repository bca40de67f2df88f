//! The paywall server, configured from the environment (see the README's table).
//!
//! ```sh
//! NANOSESSION_PAY_TO=nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo \
//! NANO_RPC_URLS=http://127.0.0.1:45000 cargo run --example server
//! ```
//!
//! `GET /` and `GET /healthz` are free; `GET /paid` costs `NANOSESSION_PRICE_RAW`. A browser
//! opening `/paid` gets the paywall page with a QR code; a confirmation watcher (WebSocket at
//! `NANO_WS_URL`, else polling the RPC) settles phone payments. `GET /metrics` serves every
//! metric of `nanosession::telemetry` in the Prometheus text format (`NANOSESSION_METRICS=false`
//! turns it off). SIGTERM or Ctrl-C stops accepting connections, lets requests in flight (a
//! payment waiting for its confirmation) finish for up to `NANOSESSION_SHUTDOWN_GRACE_SECS`,
//! then closes the stores and exits 0.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Json, Router};
use nanosession::layer::{ConfigError as LayerConfigError, Paywall};
use nanosession::nano::{Address, Raw};
use nanosession::rpc::{NanoRpcClient, RpcConfigError};
use nanosession::verify::NanoRpcVerifier;
use nanosession::watcher::ConfirmationWatcher;
use nanosession::{PaymentRequiredLayer, Settlement, VerifiedPayment};

/// A start-up problem: one line naming the variable.
struct ConfigError(String);

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &str) -> Result<String, ConfigError> {
    var(name).ok_or_else(|| ConfigError(format!("{name} is required")))
}

fn parsed<T: FromStr>(name: &str, default: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    let value = var(name).unwrap_or_else(|| default.to_owned());
    value.trim().parse().map_err(|e| ConfigError(format!("{name} is invalid: {e}")))
}

struct Config {
    listen: SocketAddr,
    metrics: bool,
    shutdown_grace: Duration,
    layer: PaymentRequiredLayer<nanosession::layer::JsonBody>,
    /// Runs while the server does.
    _watcher: Option<ConfirmationWatcher>,
}

async fn config() -> Result<Config, ConfigError> {
    let listen: SocketAddr = parsed("NANOSESSION_LISTEN", "127.0.0.1:3000")?;
    let metrics: bool = parsed("NANOSESSION_METRICS", "true")?;
    let shutdown_grace = Duration::from_secs(parsed("NANOSESSION_SHUTDOWN_GRACE_SECS", "30")?);
    let pay_to: Address = required("NANOSESSION_PAY_TO")?
        .trim()
        .parse()
        .map_err(|e| ConfigError(format!("NANOSESSION_PAY_TO is invalid: {e}")))?;
    let price: Raw = parsed("NANOSESSION_PRICE_RAW", "1000000000000000000000000")?;
    let urls: Vec<String> = required("NANO_RPC_URLS")?
        .split(',')
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    let network = var("NANOSESSION_NETWORK").unwrap_or_else(|| "nano:mainnet".to_owned());
    let public_url = var("NANOSESSION_PUBLIC_URL").unwrap_or_else(|| format!("http://{listen}"));
    let ttl: u64 = parsed("NANOSESSION_SESSION_TTL_SECS", "300")?;
    let modulus: u64 = parsed("NANOSESSION_TAG_MODULUS", "10000000")?;
    let confirm_ms: u64 = parsed("NANOSESSION_CONFIRM_WAIT_MS", "3000")?;
    let skew: u64 = parsed("NANOSESSION_TIMESTAMP_SKEW_SECS", "30")?;
    let per_client: u32 = parsed("NANOSESSION_SESSIONS_PER_CLIENT", "60")?;
    let store_url = var("NANOSESSION_STORE").unwrap_or_else(|| "file:./nanosession.redb".to_owned());
    let stores = nanosession::store::connect(store_url.trim())
        .await
        .map_err(|e| ConfigError(format!("NANOSESSION_STORE is invalid or unreachable: {e}")))?;
    if !stores.persistent {
        tracing::warn!(
            "NANOSESSION_STORE=memory: spent payments are forgotten on restart, so old payments can be replayed then"
        );
    }

    // Plain http off loopback only for a trusted private network (a node container next door).
    let allow_http: bool = parsed("NANO_RPC_ALLOW_HTTP", "false")?;
    let quorum: usize = parsed("NANO_RPC_QUORUM", "1")?;
    let client = NanoRpcClient::builder().endpoints(urls).allow_insecure_http(allow_http).build().map_err(
        |e| match e {
            RpcConfigError::InsecureHttp { .. } => {
                ConfigError(format!("NANO_RPC_URLS is invalid: {e} (NANO_RPC_ALLOW_HTTP=true allows it)"))
            }
            e => ConfigError(format!("NANO_RPC_URLS is invalid: {e}")),
        },
    )?;
    // The confirmation watcher (WebSocket if NANO_WS_URL is set, else polling) and the
    // browser paywall it makes payable from a phone, on by default.
    let paywall: bool = parsed("NANOSESSION_PAYWALL", "true")?;
    let ws_url = var("NANO_WS_URL");
    if let Some(url) = &ws_url {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(ConfigError("NANO_WS_URL is invalid: expected ws:// or wss://".to_owned()));
        }
    }
    let watcher = paywall.then(|| {
        let builder = ConfirmationWatcher::builder(client.clone(), stores.sessions.clone())
            .account(pay_to)
            .timestamp_skew(Duration::from_secs(skew));
        match &ws_url {
            Some(url) => builder.websocket(url.trim()).spawn(),
            None => builder.spawn(),
        }
    });
    let verifier = std::sync::Arc::new(
        NanoRpcVerifier::builder(client)
            .quorum(quorum)
            .map_err(|e| ConfigError(format!("NANO_RPC_QUORUM is invalid: {e}")))?
            .build(),
    );
    // Signed-block payments (spec §9), on by default: what Nano agent wallets send.
    let handoff: bool = parsed("NANOSESSION_HANDOFF", "true")?;
    let threshold = var("NANOSESSION_WORK_THRESHOLD").unwrap_or_else(|| "fffffff800000000".to_owned());
    let threshold = match threshold.trim() {
        t if t.len() == 16 => u64::from_str_radix(t, 16).ok(),
        _ => None,
    }
    .ok_or_else(|| ConfigError("NANOSESSION_WORK_THRESHOLD is invalid: expected 16 hex digits".to_owned()))?;
    let settlement = match var("NANOSESSION_SETTLEMENT").as_deref() {
        None | Some("before-service") => Settlement::BeforeService,
        Some("after-success") => Settlement::AfterSuccess,
        Some(_) => {
            return Err(ConfigError(
                "NANOSESSION_SETTLEMENT is invalid: expected before-service or after-success".to_owned(),
            ))
        }
    };
    let layer = PaymentRequiredLayer::builder()
        .pay_to(pay_to)
        .price(price)
        .network(network)
        .public_base_url(public_url)
        .session_ttl(Duration::from_secs(ttl))
        .tag_modulus(modulus)
        .confirm_wait(Duration::from_millis(confirm_ms))
        .timestamp_skew(Duration::from_secs(skew))
        // One peer address cannot fill the session store and lock every payer out.
        .sessions_per_client(per_client, nanosession::layer::client_key::peer_ip)
        .description("A paid JSON resource")
        .stores(stores)
        .verifier_shared(verifier.clone());
    let layer = if handoff { layer.accept_signed_blocks(verifier) } else { layer };
    let layer = if paywall { layer.paywall(Paywall::default()) } else { layer };
    let layer = layer
        .work_threshold(threshold)
        .settlement(settlement)
        .build()
        .map_err(|e| ConfigError(format!("{} is invalid: {e}", variable_of(&e))))?
        .json_body();
    Ok(Config { listen, metrics, shutdown_grace, layer, _watcher: watcher })
}

/// The environment variable behind a configuration the layer refused.
fn variable_of(error: &LayerConfigError) -> &'static str {
    match error {
        LayerConfigError::BurnPayTo | LayerConfigError::MissingPayTo => "NANOSESSION_PAY_TO",
        LayerConfigError::ZeroTagModulus
        | LayerConfigError::TagModulusTooLarge(_)
        | LayerConfigError::TagModulusBelowCapacity { .. } => "NANOSESSION_TAG_MODULUS",
        LayerConfigError::ConfirmWaitTooLong | LayerConfigError::VerificationTooLong { .. } => {
            "NANOSESSION_CONFIRM_WAIT_MS"
        }
        LayerConfigError::ZeroLimit(_) => "NANOSESSION_SESSIONS_PER_CLIENT",
        LayerConfigError::InvalidPublicUrl => "NANOSESSION_PUBLIC_URL",
        LayerConfigError::ZeroSessionTtl
        | LayerConfigError::SessionTtlTooLong
        | LayerConfigError::RetentionTooShort { .. } => "NANOSESSION_SESSION_TTL_SECS",
        _ => "NANOSESSION_PRICE_RAW",
    }
}

async fn paid(Extension(payment): Extension<VerifiedPayment>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "paid": true,
        "block": payment.block.to_string(),
        "payer": payment.payer.to_string(),
        "amount": payment.amount.to_string(),
    }))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = match config().await {
        Ok(config) => config,
        Err(ConfigError(line)) => {
            eprintln!("error: {line}");
            std::process::exit(2);
        }
    };
    let mut app = Router::new()
        .route("/paid", get(paid).route_layer(config.layer))
        .route("/", get(|| async { "nanosession example server: GET /paid costs Nano\n" }))
        .route("/healthz", get(|| async { "ok\n" }));
    if config.metrics {
        // Buckets, so dashboards can take quantiles across instances (docs/grafana-dashboard.json).
        let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets(&buckets)
            .expect("the bucket list is not empty");
        let prometheus = match builder.install_recorder() {
            Ok(handle) => handle,
            Err(e) => {
                eprintln!("error: NANOSESSION_METRICS: cannot install the Prometheus recorder: {e}");
                std::process::exit(2);
            }
        };
        // Histograms and idle series are compacted in the background, not on each scrape.
        let upkeep = prometheus.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
        app = app.route("/metrics", get(move || std::future::ready(prometheus.render())));
    }
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: NANOSESSION_LISTEN {}: cannot listen: {e}", config.listen);
            std::process::exit(2);
        }
    };
    tracing::info!(listen = %config.listen, "listening");
    // With the peer address, for the per-client session bound.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: no new connections; finishing requests in flight");
            let _ = stopping.send(true);
        });
    let mut stop = stop;
    let grace = config.shutdown_grace;
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                eprintln!("error: server: {e}");
                std::process::exit(1);
            }
        }
        // The grace starts at the signal; requests still running then are cut off.
        _ = async { let _ = stop.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still in flight at the end of the grace were cut off");
        }
    }
    // The router (and with it the layer) is gone; dropping the watcher releases the last store
    // handles, so the file store's writer commits what is queued and closes the file.
    drop(config._watcher);
    tracing::info!("stopped");
}

/// SIGTERM (how orchestrators stop a process) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
