//! One server span per RPC, with the OpenTelemetry RPC semantic
//! conventions; and the RPC count and latency metrics. A tower layer, so no
//! handler can forget it.
//!
//! The caller's W3C trace context (`traceparent`, `tracestate`) is the
//! span's parent only from a peer we trust to have set it: one of
//! IDENTITY_TRACE_TRUSTED_PROXIES or an mTLS client. Anyone else's would
//! decide our sampling (force it on to flood the export queue, or off to
//! hide a call) and plant a trace id of their choosing in security log
//! lines: their call starts a trace of its own, linked to theirs.

use super::client_addr::{ClientAddr, is_mtls_peer, peer};
use crate::telemetry::metrics::metrics;
use ipnet::IpNet;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use prost::Message as _;
use prost_types::FileDescriptorSet;
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Longest `tracestate` believed, in bytes, and most list members: the W3C
/// limits (32 members of up to 256 + 256 bytes) allow 16 KB per span.
const MAX_TRACESTATE_BYTES: usize = 512;
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The headers as the propagator sees them: an over-long `tracestate` is
/// absent (the trace continues without it).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

fn tracestate_within_bounds(value: &str) -> bool {
    value.len() <= MAX_TRACESTATE_BYTES
        && value.split(',').filter(|m| !m.trim().is_empty()).count() <= MAX_TRACESTATE_MEMBERS
}

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.0.get(key).and_then(|v| v.to_str().ok())?;
        if key.eq_ignore_ascii_case("tracestate") && !tracestate_within_bounds(value) {
            return None;
        }
        Some(value)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Copies the OpenTelemetry trace and span ids into the span's fields, so
/// every log line written inside the RPC carries them. One `record_all`:
/// each record makes the JSON log layer parse and re-serialise all the
/// span's fields, which showed up in profiles of ValidateToken.
fn record_ids(span: &tracing::Span) {
    let otel = span.context().span().span_context().clone();
    let Some(fields) = span.metadata().map(|m| m.fields()) else {
        return;
    };
    let (Some(trace_field), Some(span_field)) = (fields.field("trace_id"), fields.field("span_id"))
    else {
        return;
    };
    if !otel.is_valid() {
        return;
    }
    let trace_id = tracing::field::display(otel.trace_id());
    let span_id = tracing::field::display(otel.span_id());
    let values: [(&tracing::field::Field, Option<&dyn tracing::Value>); 2] = [
        (&trace_field, Some(&trace_id)),
        (&span_field, Some(&span_id)),
    ];
    span.record_all(&fields.value_set(&values));
}

/// The methods the API port serves, as `package.Service/Method`, read from
/// the descriptors it serves (the same ones reflection lists).
fn served_methods() -> &'static HashSet<String> {
    static METHODS: OnceLock<HashSet<String>> = OnceLock::new();
    METHODS.get_or_init(|| {
        [
            crate::proto::FILE_DESCRIPTOR_SET,
            crate::proto::EXT_AUTHZ_FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ]
        .into_iter()
        // Compiled in: a set that does not decode is a build defect, which
        // the unit test below catches.
        .filter_map(|bytes| FileDescriptorSet::decode(bytes).ok())
        .flat_map(|set| set.file)
        .flat_map(|file| {
            let package = file.package().to_owned();
            file.service.into_iter().flat_map(move |service| {
                let prefix = format!("{package}.{}/", service.name());
                service
                    .method
                    .into_iter()
                    .map(move |method| format!("{prefix}{}", method.name()))
            })
        })
        .collect()
    })
}

/// What names an RPC in metrics and spans: a served method, or `unknown`.
/// Anything a caller can make up (a path no service routes, a path under a
/// service that refuses it before routing, a CORS preflight) would
/// otherwise mint a new metric series or span name with each request.
pub fn method_label(method: &http::Method, path: &str) -> &'static str {
    if method != http::Method::POST {
        return UNKNOWN;
    }
    path.strip_prefix('/')
        .and_then(|path| served_methods().get(path))
        .map_or(UNKNOWN, String::as_str)
}

const UNKNOWN: &str = "unknown";

/// Methods that may run bcrypt. Every other call is latency-sensitive: while
/// they are served the bcrypt pool leaves a core to the runtime
/// (`infra::bcrypt::latency_sensitive_call`).
const HASHING_METHODS: &[&str] = &[
    "identity.v1.AuthService/Register",
    "identity.v1.AuthService/Login",
    "identity.v1.AuthService/ChangePassword",
    "identity.v1.AuthService/ChangeEmail",
    "identity.v1.ProfileService/DeleteProfile",
];

/// What every RPC span of one listener shares.
struct Settings {
    /// Peers whose trace context is continued (mTLS clients always are).
    trusted: Vec<IpNet>,
    /// The listen address: `server.address` is never the caller's
    /// `:authority` or `host` (kilobytes of their choosing, repeated in
    /// every log line of the span).
    address: Arc<str>,
    port: u16,
    /// Whether spans are exported: without an OpenTelemetry layer the
    /// attributes only it reads are not set at all (five look-ups a call).
    exported: bool,
}

impl Settings {
    fn trusts(&self, extensions: &http::Extensions) -> bool {
        is_mtls_peer(extensions)
            || peer(extensions).is_some_and(|ip| {
                // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
                let ip = ip.to_canonical();
                self.trusted.iter().any(|net| net.contains(&ip))
            })
    }
}

#[derive(Clone)]
pub struct RpcSpanLayer {
    settings: Arc<Settings>,
}

impl RpcSpanLayer {
    pub fn new(trusted: Vec<IpNet>, listen: SocketAddr) -> Self {
        RpcSpanLayer {
            settings: Arc::new(Settings {
                trusted,
                address: listen.ip().to_string().into(),
                port: listen.port(),
                // telemetry::init's own test: without it no layer reads them.
                exported: crate::telemetry::otlp_enabled(),
            }),
        }
    }
}

impl<S> tower::Layer<S> for RpcSpanLayer {
    type Service = RpcSpan<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcSpan {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

#[derive(Clone)]
pub struct RpcSpan<S> {
    inner: S,
    settings: Arc<Settings>,
}

/// Parents `span` on the caller's trace context when the peer is trusted;
/// otherwise the span starts a trace (sampled by our own sampler) and only
/// links to the caller's, without its `tracestate`.
fn adopt_remote_context(span: &tracing::Span, headers: &http::HeaderMap, trusted: bool) {
    let remote = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let context = remote.span().span_context().clone();
    if !context.is_valid() {
        return;
    }
    if trusted {
        let _ = span.set_parent(remote);
    } else {
        span.add_link(SpanContext::new(
            context.trace_id(),
            context.span_id(),
            context.trace_flags(),
            true,
            TraceState::NONE,
        ));
    }
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
        let label = method_label(request.method(), request.uri().path());
        if !HASHING_METHODS.contains(&label) {
            crate::infra::bcrypt::latency_sensitive_call();
        }
        let (service, method) = label.split_once('/').unwrap_or((label, ""));
        let client = request
            .extensions()
            .get::<ClientAddr>()
            .and_then(|c| c.0)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        // Fields are for what a log line inside the call needs; the JSON log
        // layer serialises every field of every span when it opens (8.7 % of
        // the server's CPU under ValidateToken load). The constant and
        // derivable attributes go to the OpenTelemetry span alone, and cost
        // nothing when no exporter is configured.
        let span = tracing::info_span!(
            "rpc",
            otel.name = label,
            otel.kind = "server",
            client.address = %client,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        if self.settings.exported {
            span.set_attribute("rpc.system", "grpc");
            span.set_attribute("rpc.service", service);
            span.set_attribute("rpc.method", method);
            span.set_attribute("server.address", Arc::clone(&self.settings.address));
            span.set_attribute("server.port", i64::from(self.settings.port));
        }
        let trusted = self.settings.trusts(request.extensions());
        adopt_remote_context(&span, request.headers(), trusted);
        record_ids(&span);
        let started = Instant::now();
        let future = self.inner.call(request);
        let record_span = span.clone();
        Box::pin(
            async move {
                let result = future.await;
                if let Ok(response) = &result {
                    let code = status_of(response);
                    // Straight to the OpenTelemetry span: a `Span::record`
                    // would make the JSON log layer re-serialise the span's
                    // fields, and no log line is written after the answer.
                    record_span.set_attribute("rpc.grpc.status_code", i64::from(code));
                    // Server spans are errors only for server faults (OTel
                    // gRPC conventions), not for a caller's bad request.
                    if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
                        record_span.set_status(opentelemetry::trace::Status::error(""));
                    }
                    metrics().record_rpc(label, code, started.elapsed());
                }
                result
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn an_over_long_tracestate_is_not_believed() {
        let mut headers = http::HeaderMap::new();
        let state = |members: usize, value: usize| {
            (0..members)
                .map(|i| format!("k{i}={}", "v".repeat(value)))
                .collect::<Vec<_>>()
                .join(",")
        };
        for (value, kept) in [
            (state(2, 10), true),
            (state(32, 4), true),
            (state(33, 1), false),
            (state(3, 250), false),
        ] {
            headers.insert("tracestate", value.parse().unwrap());
            let extractor = HeaderExtractor(&headers);
            assert_eq!(
                extractor.get("tracestate").is_some(),
                kept,
                "{} bytes",
                value.len()
            );
        }
    }

    #[test]
    fn every_hashing_method_is_a_served_one() {
        for method in HASHING_METHODS {
            assert!(served_methods().contains(*method), "{method}");
        }
    }

    #[test]
    fn only_served_methods_name_an_rpc() {
        for path in [
            "/identity.v1.AuthService/Login",
            "/identity.v1.ProfileService/ListProfiles",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            "/envoy.service.auth.v3.Authorization/Check",
        ] {
            assert_eq!(method_label(&Method::POST, path), &path[1..]);
        }
        for (method, path) in [
            (Method::POST, "/identity.v1.ProfileService/made-up"),
            (Method::POST, "/identity.v1.AuthService/Login/"),
            (Method::POST, "identity.v1.AuthService/Login"),
            (Method::POST, "/made.Up/Method"),
            (Method::OPTIONS, "/identity.v1.AuthService/Login"),
            (Method::GET, "/identity.v1.AuthService/Login"),
        ] {
            assert_eq!(method_label(&method, path), "unknown", "{method} {path}");
        }
    }
}
