//! Measures what the layer costs per request, in process (no sockets), so the numbers are the
//! layer's own: `cargo run --release --example overhead`.
//!
//! - bare: an axum handler alone;
//! - free: the same behind the layer with a price function that leaves the route free;
//! - challenge: a priced request without proof (session drawn, stored, 402 rendered);
//! - paid: a paid retry with an in-process verifier (session, spent set, claim, inner call).
//!
//! Memory stores by default; `OVERHEAD_STORE=file:/tmp/o.redb` (or `redis://…`,
//! `postgres://…`) measures the challenge and paid paths on another backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use futures_util::FutureExt;
use http::Request;
use nanosession::nano::{BlockHash, Raw};
use nanosession::store::{MemorySessionStore, MemorySpentSet, Stores};
use nanosession::PaymentRequiredLayer;
use tower::ServiceExt;

#[path = "support/accept_all.rs"]
mod accept_all;
use accept_all::AcceptAll;

/// The layer over both routes, pricing `/paid` with a price table or a price function.
fn app(table: bool, stores: Stores) -> Router {
    let builder = PaymentRequiredLayer::builder()
        .pay_to("nano_3e3j5tkog48pnny9dmfzj1r16pg8t1e76dz5tmac6iq689wyjfpiij4txtdo".parse().unwrap());
    let builder = if table {
        builder
            .price_table([("/paid", Raw::new(1_000_000_000))])
            .unlisted_paths(nanosession::layer::Unlisted::Free)
    } else {
        builder.price_fn(|parts| (parts.uri.path() == "/paid").then_some(Raw::new(1_000_000_000)))
    };
    let layer = builder
        .public_base_url("https://api.example.com")
        .stores(stores)
        .verifier(AcceptAll)
        .build()
        .unwrap()
        .json_body();
    Router::new().route("/free", get(|| async { "ok" })).route("/paid", get(|| async { "ok" })).layer(layer)
}

async fn time<F, Fut>(label: &str, warm_up: u32, n: u32, mut f: F) -> Duration
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..warm_up {
        f(i).await;
    }
    let start = Instant::now();
    for i in warm_up..warm_up + n {
        f(i).await;
    }
    let per = start.elapsed() / n;
    println!("{label:<10} {per:>10.2?} per request ({n} requests)");
    per
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    const N: u32 = 200_000;
    let get_req = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let bare = Router::new().route("/free", get(|| async { "ok" }));
    let t_bare =
        time("bare", N / 10, N, |_| bare.clone().oneshot(get_req("/free")).map(|r| drop(r.unwrap()))).await;
    // Any layer costs axum a boxed service clone and a boxed future per request: measure a
    // do-nothing layer as the floor a Tower middleware can reach here.
    let identity = Router::new()
        .route("/free", get(|| async { "ok" }))
        .layer(tower::util::MapRequestLayer::new(|r: Request<Body>| r));
    let t_identity =
        time("identity", N / 10, N, |_| identity.clone().oneshot(get_req("/free")).map(|r| drop(r.unwrap())))
            .await;
    println!("identity overhead over bare: {:.0?}", t_identity.saturating_sub(t_bare));
    for (label, table) in [("free/table", true), ("free/fn", false)] {
        let app = app(table, memory());
        let t =
            time(label, N / 10, N, |_| app.clone().oneshot(get_req("/free")).map(|r| drop(r.unwrap()))).await;
        println!("{label} overhead over identity layer: {:.0?}", t.saturating_sub(t_identity));
    }

    let (stores, n) = match std::env::var("OVERHEAD_STORE").ok().filter(|u| !u.is_empty()) {
        Some(url) => (nanosession::store::connect(&url).await.expect("OVERHEAD_STORE"), N / 100),
        None => (memory(), N / 10),
    };
    let app = app(true, stores);
    let paying = app.clone(); // same layer, same stores
    let ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = ids.clone();
    time("challenge", 0, 2 * n, move |_| {
        let (svc, sink) = (app.clone(), sink.clone());
        async move {
            let res = svc.oneshot(get_req("/paid")).await.unwrap();
            sink.lock().unwrap().push(res.headers()["x-payment-session"].to_str().unwrap().to_owned());
        }
    })
    .await;
    let ids = Arc::new(std::mem::take(&mut *ids.lock().unwrap()));
    let granted = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let g = granted.clone();
    time("paid", 0, n, move |i| {
        let (svc, ids, g) = (paying.clone(), ids.clone(), g.clone());
        async move {
            // Random: persistent stores remember the blocks of earlier runs.
            let hash: [u8; 32] = rand::random();
            let req = Request::get("/paid")
                .header("x-payment-session", &ids[i as usize])
                .header("x-payment-block", BlockHash::from_bytes(hash).to_string())
                .body(Body::empty())
                .unwrap();
            if svc.oneshot(req).await.unwrap().status() == 200 {
                g.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    })
    .await;
    assert_eq!(granted.load(std::sync::atomic::Ordering::Relaxed), n, "every paid request was granted");
}

fn memory() -> Stores {
    Stores {
        sessions: Arc::new(MemorySessionStore::with_capacity(10_000_000)),
        spent: Arc::new(MemorySpentSet::with_capacity(10_000_000)),
        persistent: false,
    }
}
