//! Logs, traces and metrics.
//!
//! - JSON (or text) logs on stdout; inside an RPC they carry the span's
//!   `trace_id` and `span_id`.
//! - OTLP/gRPC traces when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `..._TRACES_ENDPOINT`) is set and `OTEL_SDK_DISABLED` is not `true`;
//!   the other standard variables (`OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`)
//!   are honoured. Export never blocks an RPC (see `export`).
//! - Metrics: Prometheus text on the admin port, OTLP metrics with traces.

pub mod admin;
pub mod export;
pub mod metrics;
mod span_fields;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How log lines are written. The command line's `--log-format` maps to it
/// (`config`), so telemetry needs nothing of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Handles to flush and stop exporters at exit.
#[derive(Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
    metrics: Option<SdkMeterProvider>,
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// Whether OTLP export is configured (and not disabled).
pub fn otlp_enabled() -> bool {
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled
        && (env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Why OTLP export cannot be set up as configured (the server refuses to
/// start on it); each names the variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error(
        "OTEL_EXPORTER_OTLP_ENDPOINT: credentials in the URL are refused; use OTEL_EXPORTER_OTLP_HEADERS"
    )]
    CredentialsInEndpoint,
    #[error("{variable}: {reason}")]
    Certificate {
        variable: &'static str,
        reason: identity_store::pem::BundleError,
    },
}

/// TLS for an `https://` collector: the CA bundle named by the standard
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` (or `..._TRACES_CERTIFICATE`), else the
/// system roots; the certificate and host name are always checked. `None`
/// for a plaintext endpoint. An error names the variable, and the server
/// refuses to start on it.
pub fn otlp_tls() -> Result<Option<tonic::transport::ClientTlsConfig>, OtlpError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .unwrap_or_default();
    // Start-up errors print the endpoint: it must not carry credentials
    // (OTEL_EXPORTER_OTLP_HEADERS is the place for them).
    let authority = endpoint.split("://").nth(1).unwrap_or("").split('/').next();
    if authority.is_some_and(|a| a.contains('@')) {
        return Err(OtlpError::CredentialsInEndpoint);
    }
    if !endpoint.trim().to_ascii_lowercase().starts_with("https://") {
        return Ok(None);
    }
    let tls = tonic::transport::ClientTlsConfig::new();
    let named = [
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    ]
    .into_iter()
    .find_map(|name| var(name).map(|path| (name, path)));
    match named {
        Some((name, path)) => {
            let bundle = identity_store::pem::read_certificates(std::path::Path::new(&path))
                .map_err(|reason| OtlpError::Certificate {
                    variable: name,
                    reason,
                })?;
            Ok(Some(tls.ca_certificate(
                tonic::transport::Certificate::from_pem(bundle.pem),
            )))
        }
        None => Ok(Some(tls.with_native_roots())),
    }
}

fn resource() -> Resource {
    let builder = Resource::builder();
    if env_set("OTEL_SERVICE_NAME") {
        builder.build()
    } else {
        builder.with_service_name("identity").build()
    }
}

fn register_otlp_metrics(provider: &SdkMeterProvider) {
    use opentelemetry::metrics::MeterProvider as _;
    let meter = provider.meter("identity");
    for name in [
        "identity.rpc.requests",
        "identity.login.failures",
        "identity.rate_limited",
        "identity.bcrypt.shed",
        "identity.jwks.refetches",
        "identity.spans.dropped",
    ] {
        meter
            .f64_observable_counter(name)
            .with_callback(move |observer| {
                for (metric, labels, value) in metrics::metrics().snapshot_counters() {
                    if metric == name {
                        let attributes: Vec<opentelemetry::KeyValue> = labels
                            .into_iter()
                            .map(|(k, v)| opentelemetry::KeyValue::new(k, v))
                            .collect();
                        observer.observe(value, &attributes);
                    }
                }
            })
            .build();
    }
}

/// Installs logging and, when configured, OTLP export. Call inside the
/// Tokio runtime.
/// `tls`: what [`otlp_tls`] said (checked before, at start-up).
pub fn init(
    format: LogFormat,
    filter: &str,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Telemetry {
    let filter = || EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(span_fields::SpanFields)
            .with_writer(std::io::stdout)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .boxed(),
    };
    let mut telemetry = Telemetry::default();
    let traces = if otlp_enabled() {
        use opentelemetry_otlp::WithTonicConfig as _;
        let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
        if let Some(tls) = &tls {
            builder = builder.with_tls_config(tls.clone());
        }
        match builder.build() {
            Ok(exporter) => {
                let processor =
                    export::BoundedBatchProcessor::new(exporter, export::BatchSettings::from_env());
                let provider = SdkTracerProvider::builder()
                    .with_span_processor(processor)
                    .with_resource(resource())
                    .build();
                let tracer = provider.tracer("identity");
                telemetry.traces = Some(provider);
                opentelemetry::global::set_text_map_propagator(
                    opentelemetry_sdk::propagation::TraceContextPropagator::new(),
                );
                let mut metrics = opentelemetry_otlp::MetricExporter::builder().with_tonic();
                if let Some(tls) = &tls {
                    metrics = metrics.with_tls_config(tls.clone());
                }
                if let Ok(exporter) = metrics.build() {
                    let reader =
                        opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).build();
                    let provider = SdkMeterProvider::builder()
                        .with_reader(reader)
                        .with_resource(resource())
                        .build();
                    register_otlp_metrics(&provider);
                    telemetry.metrics = Some(provider);
                }
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(filter()),
                )
            }
            Err(e) => {
                eprintln!("identity: OTLP trace export is off: {e}");
                None
            }
        }
    } else {
        None
    };
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter()))
        .with(traces)
        .try_init();
    telemetry
}

impl Telemetry {
    /// Flushes what is queued and stops the exporters (bounded in time).
    pub async fn shutdown(self) {
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(traces) = self.traces {
                let _ = traces.shutdown_with_timeout(std::time::Duration::from_secs(5));
            }
            if let Some(metrics) = self.metrics {
                let _ = metrics.shutdown_with_timeout(std::time::Duration::from_secs(5));
            }
        })
        .await;
    }
}
