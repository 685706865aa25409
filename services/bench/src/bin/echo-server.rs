//! The baseline of `make bench`: a bare tonic unary service with the same
//! tonic version, runtime and HTTP/2 settings as `identity serve`, and
//! nothing else (no layers, no database).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use identity_bench::echo::echo_service_server::{EchoService, EchoServiceServer};
use identity_bench::echo::{EchoRequest, EchoResponse};
use std::net::SocketAddr;
use std::time::Duration;
use tonic::{Request, Response, Status};

struct Echo;

#[tonic::async_trait]
impl EchoService for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoResponse>, Status> {
        Ok(Response::new(EchoResponse {
            payload: request.into_inner().payload,
        }))
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
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("listening on {}", listener.local_addr()?);
        // As identity's transport::serve, minus its layers and services.
        tonic::transport::Server::builder()
            .timeout(Duration::from_secs(30))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(256))
            .tcp_nodelay(true)
            .add_service(EchoServiceServer::new(Echo))
            // As identity: TCP_NODELAY on every accepted connection.
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            )
            .await?;
        Ok(())
    })
}
