//! The `demo.Paywall` gRPC service, written by hand with `prost` derive so no `protoc` is
//! needed. Equivalent to:
//!
//! ```proto
//! package demo;
//! service Paywall {
//!   rpc Free(Ping) returns (Pong);              // free
//!   rpc Paid(Ping) returns (Pong);              // priced
//!   rpc PaidStream(Ping) returns (stream Pong); // priced, server streaming
//! }
//! message Ping { string text = 1; }
//! message Pong { string text = 1; string block = 2; string payer = 3; }
//! ```
#![allow(dead_code)]

use std::convert::Infallible;

use nanosession::VerifiedPayment;
use tonic::codegen::{http, Body, BoxFuture, BoxStream, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

/// Request message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    /// Echoed back.
    #[prost(string, tag = "1")]
    pub text: String,
}

/// Response message: what the handler learnt about the payment.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Pong {
    /// The request's text.
    #[prost(string, tag = "1")]
    pub text: String,
    /// The paying block's hash (empty on free calls).
    #[prost(string, tag = "2")]
    pub block: String,
    /// The paying account (empty on free calls).
    #[prost(string, tag = "3")]
    pub payer: String,
}

/// Method paths, which are also the keys of the layer's price table.
pub const FREE: &str = "/demo.Paywall/Free";
/// The priced unary method.
pub const PAID: &str = "/demo.Paywall/Paid";
/// The priced server-streaming method.
pub const PAID_STREAM: &str = "/demo.Paywall/PaidStream";
/// How many messages `PaidStream` sends.
pub const STREAM_LEN: usize = 3;

fn pong(text: String, payment: Option<&VerifiedPayment>) -> Pong {
    Pong {
        text,
        block: payment.map(|p| p.block.to_string()).unwrap_or_default(),
        payer: payment.map(|p| p.payer.to_string()).unwrap_or_default(),
    }
}

struct Unary;

impl UnaryService<Ping> for Unary {
    type Response = Pong;
    type Future = BoxFuture<Response<Pong>, Status>;

    fn call(&mut self, request: Request<Ping>) -> Self::Future {
        // The layer put the payment in the HTTP extensions; tonic hands them to the handler.
        let payment = request.extensions().get::<VerifiedPayment>().cloned();
        Box::pin(async move { Ok(Response::new(pong(request.into_inner().text, payment.as_ref()))) })
    }
}

struct Streamed;

impl ServerStreamingService<Ping> for Streamed {
    type Response = Pong;
    type ResponseStream = BoxStream<Pong>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Ping>) -> Self::Future {
        let payment = request.extensions().get::<VerifiedPayment>().cloned();
        let text = request.into_inner().text;
        let items: Vec<Result<Pong, Status>> =
            (0..STREAM_LEN).map(|i| Ok(pong(format!("{text} #{i}"), payment.as_ref()))).collect();
        Box::pin(async move {
            let stream: BoxStream<Pong> = Box::pin(tokio_stream::iter(items));
            Ok(Response::new(stream))
        })
    }
}

/// The server side (what `tonic-build` would generate, reduced to what the demo needs).
#[derive(Clone, Copy, Debug, Default)]
pub struct PaywallServer;

impl NamedService for PaywallServer {
    const NAME: &'static str = "demo.Paywall";
}

impl<B> Service<http::Request<B>> for PaywallServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            FREE | PAID => {
                Box::pin(async move { Ok(Grpc::new(ProstCodec::default()).unary(Unary, req).await) })
            }
            PAID_STREAM => {
                Box::pin(
                    async move { Ok(Grpc::new(ProstCodec::default()).server_streaming(Streamed, req).await) },
                )
            }
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// The client side.
#[derive(Clone, Debug)]
pub struct PaywallClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl PaywallClient {
    /// Connects to `url` (`http://127.0.0.1:50051`).
    pub async fn connect(url: String) -> Result<Self, tonic::transport::Error> {
        let channel = Channel::from_shared(url).expect("a valid URL").connect().await?;
        Ok(PaywallClient { grpc: tonic::client::Grpc::new(channel) })
    }

    /// Calls a unary method (`FREE` or `PAID`).
    pub async fn unary(
        &mut self,
        path: &'static str,
        request: Request<Ping>,
    ) -> Result<Response<Pong>, Status> {
        self.grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static(path);
        self.grpc.unary(request, path, ProstCodec::default()).await
    }

    /// Calls `PaidStream`.
    pub async fn paid_stream(&mut self, request: Request<Ping>) -> Result<Response<Streaming<Pong>>, Status> {
        self.grpc.ready().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let path = http::uri::PathAndQuery::from_static(PAID_STREAM);
        self.grpc.server_streaming(request, path, ProstCodec::default()).await
    }
}
