//! Layers sharing one backend (many instances, one truth), and failing closed when the backend
//! goes away: for the file store (shared in-process), Redis and PostgreSQL (separate
//! connections, as separate instances would have).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use common::fake::FakeLedger;
use common::proxy::Proxy;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use nanosession::nano::{Address, BlockHash, Raw};
use nanosession::store::{self, Stores};
use nanosession::{PaymentRequiredLayer, VerifiedPayment};
use tower::ServiceExt;

const PRICE: Raw = Raw::new(1_000_000_000);

fn merchant() -> Address {
    "nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap()
}

/// One "instance": a router behind its own layer over `stores`, verifying against `ledger`.
fn instance(stores: Stores, ledger: &Arc<FakeLedger>) -> Router {
    let layer = PaymentRequiredLayer::builder()
        .pay_to(merchant())
        .price(PRICE)
        .public_base_url("https://api.example.com")
        .stores(stores)
        .verifier_shared(ledger.clone())
        .build()
        .unwrap()
        .json_body();
    Router::new().route(
        "/paid",
        get(|Extension(p): Extension<VerifiedPayment>| async move { p.block.to_string() }).route_layer(layer),
    )
}

struct Answer {
    status: StatusCode,
    reason: Option<String>,
    retry_after: bool,
    session: Option<(String, Raw)>,
}

async fn get_paid(app: &Router, proof: Option<(&str, BlockHash)>) -> Answer {
    let mut req = Request::get("/paid");
    if let Some((session, block)) = proof {
        req = req.header("x-payment-session", session).header("x-payment-block", block.to_string());
    }
    let res = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let session = {
        let header = |name: &str| res.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        header("x-payment-session").map(|id| {
            let tag: u128 = header("x-payment-tag").unwrap().parse().unwrap();
            (id, Raw::new(PRICE.get() + tag))
        })
    };
    let (status, retry_after) = (res.status(), res.headers().contains_key("retry-after"));
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let reason = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned));
    Answer { status, reason, retry_after, session }
}

/// A session issued by one instance is paid at the other; a replay at the first is refused;
/// 32 concurrent retries split across both produce exactly one grant.
async fn two_instances_share_one_truth(a: Stores, b: Stores) {
    let ledger = FakeLedger::new();
    let (a, b) = (instance(a, &ledger), instance(b, &ledger));

    let (session, amount) = get_paid(&a, None).await.session.expect("challenge from A");
    let block = ledger.pay(merchant(), amount);
    assert_eq!(get_paid(&b, Some((&session, block))).await.status, StatusCode::OK, "B accepts A's session");
    let (session2, _) = get_paid(&a, None).await.session.unwrap();
    assert_eq!(get_paid(&a, Some((&session2, block))).await.reason.as_deref(), Some("already_spent"));

    let (session, amount) = get_paid(&b, None).await.session.unwrap();
    let block = ledger.pay(merchant(), amount);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let app = if i % 2 == 0 { a.clone() } else { b.clone() };
            let session = session.clone();
            tokio::spawn(async move { get_paid(&app, Some((&session, block))).await.status })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::OK {
            granted += 1;
        }
    }
    assert_eq!(granted, 1, "exactly one grant across both instances");
}

/// With the backend cut: 503 store_unavailable with Retry-After on both paths, nothing granted;
/// once it is back, the same session and payment succeed without any restart.
async fn fails_closed_and_recovers(stores: Stores, proxy: &Proxy) {
    let ledger = FakeLedger::new();
    let app = instance(stores, &ledger);
    let (session, amount) = get_paid(&app, None).await.session.expect("challenge while healthy");
    let block = ledger.pay(merchant(), amount);

    proxy.cut();
    let challenge = get_paid(&app, None).await;
    assert_eq!(challenge.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(challenge.reason.as_deref(), Some("store_unavailable"));
    assert!(challenge.retry_after && challenge.session.is_none());
    let paid = get_paid(&app, Some((&session, block))).await;
    assert_eq!(paid.status, StatusCode::SERVICE_UNAVAILABLE, "never a grant while the store is down");
    assert_eq!(paid.reason.as_deref(), Some("store_unavailable"));

    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let paid = get_paid(&app, Some((&session, block))).await;
        if paid.status == StatusCode::OK {
            break;
        }
        assert_eq!(paid.reason.as_deref(), Some("store_unavailable"), "only outage answers while recovering");
        assert!(tokio::time::Instant::now() < deadline, "the store did not recover within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = get_paid(&app, Some((&session, block))).await;
    assert_eq!((again.status, again.reason.as_deref()), (StatusCode::CONFLICT, Some("already_granted")));
}

fn env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if value.is_none() {
        eprintln!("{name} is not set: skipping this test (./scripts/test sets it and starts the server)");
    }
    value
}

/// The `host:port` of a URL, resolved for the proxy.
fn target_of(url: &str) -> std::net::SocketAddr {
    let url = url::Url::parse(url).unwrap();
    let host = url.host_str().unwrap();
    let host = if host == "localhost" { "127.0.0.1" } else { host };
    format!("{host}:{}", url.port().unwrap()).parse().unwrap()
}

fn through(url: &str, proxy: &Proxy) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_port(Some(proxy.addr().port())).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_shared_by_two_layers() {
    let path = std::env::temp_dir()
        .join(format!("nanosession-shared-{}.redb", nanosession::session::SessionId::generate()));
    let stores = store::connect(&format!("file:{}", path.display())).await.unwrap();
    two_instances_share_one_truth(stores.clone(), stores).await;
    std::fs::remove_file(path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_shared_by_two_instances() {
    let Some(url) = env("REDIS_URL") else { return };
    let a = store::connect(&url).await.unwrap();
    let b = store::connect(&url).await.unwrap();
    two_instances_share_one_truth(a, b).await;
}

/// Two instances on a three-primary Redis Cluster (`store::connect` with `redis-cluster://`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_shared_by_two_instances() {
    let Some(url) = env("NSTEST_REDIS_CLUSTER_URL") else { return };
    let a = store::connect(&url).await.unwrap();
    let b = store::connect(&url).await.unwrap();
    two_instances_share_one_truth(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_shared_by_two_instances() {
    let Some(url) = env("DATABASE_URL") else { return };
    let a = store::connect(&url).await.unwrap();
    let b = store::connect(&url).await.unwrap();
    two_instances_share_one_truth(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_fails_closed_and_recovers() {
    let Some(url) = env("REDIS_URL") else { return };
    let proxy = Proxy::start(target_of(&url)).await;
    let stores = store::connect(&through(&url, &proxy)).await.unwrap();
    fails_closed_and_recovers(stores, &proxy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_fails_closed_and_recovers() {
    let Some(url) = env("DATABASE_URL") else { return };
    let proxy = Proxy::start(target_of(&url)).await;
    let stores = store::connect(&through(&url, &proxy)).await.unwrap();
    fails_closed_and_recovers(stores, &proxy).await;
}

#[tokio::test]
async fn unreachable_backends_are_refused_at_start_with_a_clean_error() {
    let refused = common::refused_url();
    let port = url::Url::parse(&refused).unwrap().port().unwrap();
    for url in
        [format!("redis://:hunter2@127.0.0.1:{port}"), format!("postgres://u:hunter2@127.0.0.1:{port}/db")]
    {
        let error = store::connect(&url).await.expect_err("nothing listens there").to_string();
        assert!(!error.contains("hunter2"), "credentials leaked into {error:?}");
    }
}

/// A table prefix of this test's own.
fn unique_prefix() -> String {
    format!("nstest_{}_", &nanosession::session::SessionId::generate().to_string()[..12].to_lowercase())
}

async fn postgres_on(url: &str, prefix: &str) -> Stores {
    let options = store::PostgresOptions { table_prefix: prefix.to_owned(), ..Default::default() };
    Stores::shared(store::PostgresStore::connect_with(url, options).await.unwrap(), true)
}

/// PostgreSQL named by two hosts (`host1,host2` with `target_session_attrs=read-write`): when
/// the host in use fails, the store reconnects to the other within 5 s, answering only 503
/// meanwhile, and the session issued before the failure is paid after it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_with_two_hosts_fails_over_when_one_fails() {
    let Some(url) = env("DATABASE_URL") else { return };
    let (first, second) = (Proxy::start(target_of(&url)).await, Proxy::start(target_of(&url)).await);
    let hosts = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/test?target_session_attrs=read-write",
        first.addr().port(),
        second.addr().port()
    );
    let ledger = FakeLedger::new();
    let app = instance(postgres_on(&hosts, &unique_prefix()).await, &ledger);
    let (session, amount) = get_paid(&app, None).await.session.expect("challenge through the first host");
    let block = ledger.pay(merchant(), amount);

    first.cut();
    let cut_at = tokio::time::Instant::now();
    loop {
        let paid = get_paid(&app, Some((&session, block))).await;
        if paid.status == StatusCode::OK {
            break;
        }
        assert_eq!(
            paid.reason.as_deref(),
            Some("store_unavailable"),
            "only outage answers while failing over"
        );
        assert!(cut_at.elapsed() < Duration::from_secs(5), "not back within 5 s of the failure");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = get_paid(&app, Some((&session, block))).await;
    assert_eq!((again.status, again.reason.as_deref()), (StatusCode::CONFLICT, Some("already_granted")));
}

/// A failover demotes the old primary to read-only while it still accepts connections: the
/// store drops its connections to it on the first refused write (a 503, never a 500) and the
/// next statements go to the read-write host, so 402s resume within 5 s, stored there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_leaves_a_demoted_primary_for_the_read_write_host() {
    let (Some(primary), Some(old)) = (env("DATABASE_URL"), env("NSTEST_PG_SECOND_URL")) else { return };
    let prefix = unique_prefix();
    // The tables exist on both servers (here they are two databases; a real pair replicates).
    let on_primary = postgres_on(&primary, &prefix).await;
    let hosts = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/test?target_session_attrs=read-write",
        target_of(&old).port(),
        target_of(&primary).port()
    );
    let ledger = FakeLedger::new();
    let app = instance(postgres_on(&hosts, &prefix).await, &ledger);
    let (before, _) =
        get_paid(&app, None).await.session.expect("a challenge while the first host is primary");
    let key = |id: &str| id.parse::<nanosession::session::SessionId>().unwrap();
    assert!(on_primary.sessions.get(&key(&before)).await.unwrap().is_none(), "stored on the first host");

    let (client, connection) = tokio_postgres::connect(&old, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let demote = |on: bool| {
        let sql = if on {
            "ALTER SYSTEM SET default_transaction_read_only = on"
        } else {
            "ALTER SYSTEM RESET default_transaction_read_only"
        };
        let client = &client;
        async move {
            client.batch_execute(sql).await.unwrap();
            client.batch_execute("SELECT pg_reload_conf()").await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    demote(true).await;
    let demoted_at = tokio::time::Instant::now();
    let after = loop {
        let answer = get_paid(&app, None).await;
        if let Some((id, _)) = answer.session {
            break id;
        }
        assert_eq!(
            (answer.status, answer.reason.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("store_unavailable")),
            "a refused write is an outage"
        );
        assert!(demoted_at.elapsed() < Duration::from_secs(5), "no 402 within 5 s of the demotion");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    demote(false).await;
    assert!(on_primary.sessions.get(&key(&after)).await.unwrap().is_some(), "stored on the read-write host");
}
