//! One server span per RPC, with the OpenTelemetry RPC semantic
//! conventions, parented on the caller's W3C `traceparent`; and the RPC
//! count and latency metrics. A tower layer, so no handler can forget it.

use super::metrics::metrics;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

#[derive(Clone, Default)]
pub struct RpcSpanLayer;

impl<S> tower::Layer<S> for RpcSpanLayer {
    type Service = RpcSpan<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcSpan { inner }
    }
}

#[derive(Clone)]
pub struct RpcSpan<S> {
    inner: S,
}

/// The gRPC status of a response: in the headers of a trailers-only answer
/// (how tonic answers every error), otherwise OK.
fn status_of<B>(response: &http::Response<B>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(if response.status().is_success() { 0 } else { 2 })
}

impl<S, B, RB> tower::Service<http::Request<B>> for RpcSpan<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/').to_owned();
        let (service, method) = path.split_once('/').unwrap_or((path.as_str(), ""));
        let client = request
            .extensions()
            .get::<crate::transport::client_addr::ClientAddr>()
            .and_then(|c| c.0)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let server_address = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .unwrap_or_default()
            .to_owned();
        let span = tracing::info_span!(
            "rpc",
            otel.name = %path,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            server.address = %server_address,
            client.address = %client,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
        let otel = span.context().span().span_context().clone();
        if otel.is_valid() {
            span.record("trace_id", tracing::field::display(otel.trace_id()));
            span.record("span_id", tracing::field::display(otel.span_id()));
        }
        let started = Instant::now();
        let future = self.inner.call(request);
        let record_span = span.clone();
        Box::pin(
            async move {
                let result = future.await;
                if let Ok(response) = &result {
                    let code = status_of(response);
                    record_span.record("rpc.grpc.status_code", code);
                    // Server spans are errors only for server faults (OTel
                    // gRPC conventions), not for a caller's bad request.
                    if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
                        record_span.record("otel.status_code", "ERROR");
                    }
                    metrics().record_rpc(&path, code, started.elapsed());
                }
                result
            }
            .instrument(span),
        )
    }
}
