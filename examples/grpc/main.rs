//! A tonic service behind `PaymentRequiredLayer`, and a tonic client that pays with the
//! project's client, offline against the mock node: `cargo run --example grpc`.
//!
//! `demo.Paywall/Free` is free; `Paid` and the server-streaming `PaidStream` are priced per
//! method with a price table. Refusals arrive as `tonic::Status` (`RESOURCE_EXHAUSTED`,
//! `INVALID_ARGUMENT`, `UNAVAILABLE`) with the challenge in the metadata.

mod proto;

use nanosession::client::{PayingClient, Wallet, WorkThresholds};
use nanosession::mock_node::{MockNode, MockNodeConfig};
use nanosession::nano::{PrivateKey, Raw, Seed};
use nanosession::protocol::Offer;
use nanosession::rpc::NanoRpcClient;
use nanosession::verify::NanoRpcVerifier;
use nanosession::PaymentRequiredLayer;
use proto::{PaywallClient, PaywallServer, Ping, FREE, PAID, PAID_STREAM};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataMap;
use tonic::Request;

/// 0.001 XNO per call.
const PRICE: Raw = Raw::new(1_000_000_000_000_000_000_000_000_000);

fn ping(text: &str) -> Request<Ping> {
    Request::new(Ping { text: text.into() })
}

/// Turns a refusal's metadata into the offer, pays it, and returns the proof as metadata.
async fn pay(
    client: &PayingClient,
    metadata: &MetadataMap,
) -> Result<MetadataMap, Box<dyn std::error::Error>> {
    let offer = Offer::from_headers(&metadata.clone().into_headers())?;
    let block = client.pay(&offer).await?;
    println!("   paid {} raw with block {block}", offer.amount);
    Ok(MetadataMap::from_headers(offer.proof_headers(&block, true)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = MockNode::start(MockNodeConfig::default())?;
    let merchant = nanosession::nano::Address::from(PrivateKey::from_bytes(rand::random()).public_key());
    let seed = Seed::from_bytes(rand::random());
    node.fund(&seed.derive(0), Raw::ONE_XNO).await;

    let paywall = PaymentRequiredLayer::builder()
        .pay_to(merchant)
        .price_table([(PAID, PRICE), (PAID_STREAM, PRICE)])
        .unlisted_paths(nanosession::layer::Unlisted::Free) // the other methods are free
        .network("nano:dev")
        .public_base_url("http://127.0.0.1")
        .verifier(NanoRpcVerifier::builder(NanoRpcClient::new([node.rpc_url()])?).build())
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(paywall)
            .add_service(PaywallServer)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    println!("gRPC paywall on {addr}, mock node on {}", node.rpc_url());

    let wallet = Wallet::from_seed(&seed, 0)
        .with_limits(PRICE.checked_add(Raw::new(10_000_000)).unwrap(), Raw::ONE_XNO);
    let payer = PayingClient::builder(wallet, NanoRpcClient::new([node.rpc_url()])?)
        .work_thresholds(WorkThresholds::DEV)
        .network("nano:dev")
        .build();
    let mut grpc = PaywallClient::connect(format!("http://{addr}")).await?;

    println!("\n1. Free is free");
    let pong = grpc.unary(FREE, ping("hi")).await?.into_inner();
    println!("   Free -> {:?}", pong.text);

    println!("\n2. Paid without payment");
    let status = grpc.unary(PAID, ping("hi")).await.expect_err("payment required");
    println!("   {:?}: {}", status.code(), status.message());

    println!("\n3. Pay the challenge from the status metadata and call again with the proof");
    let proof = pay(&payer, status.metadata()).await?;
    let mut request = ping("hi");
    *request.metadata_mut() = proof.clone();
    let response = grpc.unary(PAID, request).await?;
    println!("   Paid -> block {} from {}", response.get_ref().block, response.get_ref().payer);
    println!("   payment-response metadata: {}", response.metadata().contains_key("payment-response"));

    println!("\n4. The same proof again");
    let mut replay = ping("hi");
    *replay.metadata_mut() = proof;
    let status = grpc.unary(PAID, replay).await.expect_err("already granted");
    println!("   {:?}: {}", status.code(), status.message());

    println!("\n5. A paid server stream");
    let status = grpc.paid_stream(ping("tick")).await.expect_err("payment required");
    let mut request = ping("tick");
    *request.metadata_mut() = pay(&payer, status.metadata()).await?;
    let mut stream = grpc.paid_stream(request).await?.into_inner();
    while let Some(pong) = stream.next().await {
        println!("   PaidStream -> {}", pong?.text);
    }
    Ok(())
}
