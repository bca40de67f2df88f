use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

/// The boxed future of a request that goes through the payment gate (it does I/O anyway).
pub(crate) type GateFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<B>, E>> + Send>>;

pin_project! {
    /// Response future of [`PaymentRequired`](super::PaymentRequired).
    ///
    /// Free requests poll the inner future in place (no allocation); a refusal known without
    /// I/O is returned as is; only requests that touch the stores or the node are boxed.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Passthrough { #[pin] future: F },
        Ready { response: Option<Response<B>> },
        Gate { future: GateFuture<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn passthrough(future: F) -> Self {
        ResponseFuture { kind: Kind::Passthrough { future } }
    }

    pub(crate) fn ready(response: Response<B>) -> Self {
        ResponseFuture { kind: Kind::Ready { response: Some(response) } }
    }

    pub(crate) fn gate(future: GateFuture<B, E>) -> Self {
        ResponseFuture { kind: Kind::Gate { future } }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { future } => future.poll(cx),
            KindProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("ResponseFuture polled after completion")))
            }
            KindProj::Gate { future } => future.as_mut().poll(cx),
        }
    }
}
