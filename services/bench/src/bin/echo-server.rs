//! The baseline of `make bench`: a bare tonic unary service with the same
//! tonic version, runtime and HTTP/2 settings as `identity serve`, and
//! nothing else (no layers, no database) but two counters of its answers,
//! which h2load cannot tell apart (`Stats`).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use identity_bench::echo::echo_service_server::{EchoService, EchoServiceServer};
use identity_bench::echo::{EchoRequest, EchoResponse, StatsRequest, StatsResponse};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct Counts {
    echo_ok: AtomicU64,
    not_ok: AtomicU64,
}

struct Echo(Arc<Counts>);

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        // Relaxed: a counter read only between windows.
        self.0.echo_ok.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(EchoResponse {
            payload: request.into_inner().payload,
        }))
    }

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        Ok(Response::new(StatsResponse {
            echo_ok: self.0.echo_ok.load(Ordering::Relaxed),
            not_ok: self.0.not_ok.load(Ordering::Relaxed),
        }))
    }
}

/// Counts answers whose headers carry a non-zero `grpc-status`: tonic
/// answers every unary error (the handler's, a body that does not decode,
/// an unknown method) trailers-only, so the status is in the headers. An
/// OK answer carries its status in the trailers; those are counted by the
/// handler instead.
#[derive(Clone)]
struct CountRefusals<S> {
    inner: S,
    counts: Arc<Counts>,
}

impl<S, B, R> tower::Service<http::Request<B>> for CountRefusals<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        let counts = Arc::clone(&self.counts);
        Box::pin(async move {
            let result = future.await;
            let refused = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|code| code.as_bytes() != b"0"),
                Err(_) => true,
            };
            if refused {
                counts.not_ok.fetch_add(1, Ordering::Relaxed);
            }
            result
        })
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or_default().parse()?,
            other => anyhow::bail!("usage: echo-server [--listen ADDR] (unknown `{other}`)"),
        }
    }
    // As identity's main: the default multi-threaded runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let counts = Arc::new(Counts::default());
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("listening on {}", listener.local_addr()?);
        let count = Arc::clone(&counts);
        // As identity's transport::serve, minus its layers and services.
        tonic::transport::Server::builder()
            .timeout(Duration::from_secs(30))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(256))
            .tcp_nodelay(true)
            .layer(tower::layer::layer_fn(move |inner| CountRefusals {
                inner,
                counts: Arc::clone(&count),
            }))
            .add_service(EchoServiceServer::new(Echo(counts)))
            // As identity: TCP_NODELAY on every accepted connection.
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await?;
        Ok(())
    })
}
