//! Throughput of 402s under concurrency, in process (no sockets), per store: 64 tasks asking
//! for a priced resource at once. Shows what the file store's group commit buys (one fsync per
//! batch instead of one per 402). `cargo run --release --example concurrent_402`
//! (`CONCURRENT_402_STORES=memory,file` by default; `redis://…` or `postgres://…` too).

use std::time::Instant;

use async_trait::async_trait;
use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use nanosession::nano::{Address, BlockHash, PublicKey, Raw};
use nanosession::verify::{Expected, PaymentVerifier, Rejection, VerifiedBlock};
use nanosession::PaymentRequiredLayer;
use tower::ServiceExt;

struct NoNode;

#[async_trait]
impl PaymentVerifier for NoNode {
    async fn verify(&self, _: &BlockHash, _: &Expected) -> Result<VerifiedBlock, Rejection> {
        Err(Rejection::Unavailable("not measured".into()))
    }
}

const TASKS: usize = 64;
const PER_TASK: usize = 300;

#[tokio::main]
async fn main() {
    let stores = std::env::var("CONCURRENT_402_STORES").unwrap_or_else(|_| "memory,file".to_owned());
    for name in stores.split(',') {
        let url = if name == "file" {
            let path = std::env::temp_dir().join(format!("concurrent-402-{}.redb", rand::random::<u64>()));
            format!("file:{}", path.display())
        } else {
            name.to_owned()
        };
        let stores = nanosession::store::connect(&url).await.expect("store");
        let layer = PaymentRequiredLayer::builder()
            .pay_to(Address::from(PublicKey::from_bytes([7; 32])))
            .price(Raw::new(1_000_000_000_000_000_000_000_000))
            .public_base_url("http://127.0.0.1")
            .tag_modulus(1_000_000_000)
            .stores(stores)
            .verifier(NoNode)
            .build()
            .unwrap();
        let app = Router::new().route("/paid", get(|| async { "ok" })).layer(layer);
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    for _ in 0..PER_TASK {
                        let res = app
                            .clone()
                            .oneshot(Request::get("/paid").body(Body::empty()).unwrap())
                            .await
                            .unwrap();
                        assert_eq!(res.status(), 402);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let n = TASKS * PER_TASK;
        let secs = started.elapsed().as_secs_f64();
        println!("{name:<8} {n} 402s by {TASKS} tasks in {secs:.2} s: {:.0} 402/s", n as f64 / secs);
    }
}
