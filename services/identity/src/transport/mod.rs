//! gRPC transport: tonic services, health, reflection, TLS, shutdown.
//! Thin by design: handlers parse, call `service`, map the result.

pub mod audit;
pub mod auth;
pub mod authn;
pub mod client_addr;
pub mod codec;
pub mod convert;
pub mod ext_authz;
pub mod metadata;
pub mod profile;
pub mod rpc_telemetry;
pub mod status;
pub mod tls;
pub mod well_known;

use crate::proto::ext_authz::authorization_server::AuthorizationServer;
use crate::proto::v1::audit_service_server::AuditServiceServer;
use crate::proto::v1::auth_service_server::AuthServiceServer;
use crate::proto::v1::profile_service_server::ProfileServiceServer;
use crate::service::{Auth, Profiles};
use std::sync::Arc;
use std::time::Duration;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Default largest request message (larger ones get RESOURCE_EXHAUSTED).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

pub const AUTH_SERVICE: &str = <AuthServiceServer<auth::AuthApi> as NamedService>::NAME;

pub const PROFILE_SERVICE: &str = <ProfileServiceServer<profile::ProfileApi> as NamedService>::NAME;

pub const AUDIT_SERVICE: &str = <AuditServiceServer<audit::AuditApi> as NamedService>::NAME;

/// `envoy.service.auth.v3.Authorization`.
pub const EXT_AUTHZ_SERVICE: &str =
    <AuthorizationServer<ext_authz::ExtAuthzApi> as NamedService>::NAME;

/// AuthService: ChangePassword, ChangeEmail and the Sessions API require a
/// caller (Logout takes an optional bearer token and checks it itself).
pub fn auth_service(
    auth: Arc<Auth>,
    max_message_bytes: usize,
    exchange: Option<Arc<crate::service::exchange::TokenExchange>>,
) -> authn::RequireBearer<AuthServiceServer<auth::AuthApi>> {
    let server =
        AuthServiceServer::new(auth::AuthApi::new(Arc::clone(&auth)).with_exchange(exchange))
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(4 * max_message_bytes.max(MAX_MESSAGE_BYTES));
    authn::RequireBearer::new(server, auth, |path| {
        matches!(
            path,
            "/identity.v1.AuthService/ChangePassword"
                | "/identity.v1.AuthService/ChangeEmail"
                | "/identity.v1.AuthService/ListSessions"
                | "/identity.v1.AuthService/RevokeSession"
                | "/identity.v1.AuthService/RevokeAllSessions"
        )
    })
}

/// AuditService: every call requires a caller (and the service an admin).
pub fn audit_service(
    auth: Arc<Auth>,
    trail: Arc<crate::service::audit_trail::AuditTrail>,
    max_message_bytes: usize,
) -> authn::RequireBearer<AuditServiceServer<audit::AuditApi>> {
    let server = AuditServiceServer::new(audit::AuditApi::new(trail))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(4 * max_message_bytes.max(MAX_MESSAGE_BYTES));
    authn::RequireBearer::new(server, auth, |_| true)
}

/// ProfileService: every call requires a caller.
pub fn profile_service(
    auth: Arc<Auth>,
    profiles: Arc<Profiles>,
    max_message_bytes: usize,
) -> authn::RequireBearer<ProfileServiceServer<profile::ProfileApi>> {
    let server = ProfileServiceServer::new(profile::ProfileApi::new(profiles))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(4 * max_message_bytes.max(MAX_MESSAGE_BYTES));
    authn::RequireBearer::new(server, auth, |_| true)
}

/// Envoy's external authorization: no caller authentication of its own (the
/// token it checks is the HTTP request's, not the proxy's); see
/// `ext_authz::ExtAuthzApi::proxy` for who gets which limits.
pub fn ext_authz_service(
    auth: Arc<Auth>,
    trusted_proxies: Vec<ipnet::IpNet>,
    max_message_bytes: usize,
) -> AuthorizationServer<ext_authz::ExtAuthzApi> {
    AuthorizationServer::new(ext_authz::ExtAuthzApi::new(auth, trusted_proxies))
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(4 * max_message_bytes.max(MAX_MESSAGE_BYTES))
}

pub fn health_service(reporter: &HealthReporter) -> HealthServer<HealthService> {
    HealthServer::new(HealthService::from_health_reporter(reporter.clone()))
}

/// Health service name that reports only that the process is alive (for
/// liveness probes: a database outage must not restart the pods).
pub const LIVENESS: &str = "liveness";

/// Keeps the health status `name` in step with a dependency's reachability
/// (`None`: not known yet, reported NOT_SERVING) until the sender goes.
pub async fn follow_health(
    reporter: HealthReporter,
    name: &'static str,
    mut reachable: tokio::sync::watch::Receiver<Option<bool>>,
) {
    loop {
        let status = match *reachable.borrow_and_update() {
            Some(true) => ServingStatus::Serving,
            _ => ServingStatus::NotServing,
        };
        reporter.set_service_status(name, status).await;
        if reachable.changed().await.is_err() {
            return;
        }
    }
}

/// Sets the overall status and every API service's status together.
pub async fn set_health(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in [
        "",
        AUTH_SERVICE,
        PROFILE_SERVICE,
        AUDIT_SERVICE,
        EXT_AUTHZ_SERVICE,
    ] {
        reporter.set_service_status(name, status).await;
    }
}

/// Why the gRPC server stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The compiled-in descriptors were refused: a build defect.
    #[error("server reflection")]
    Reflection(#[source] tonic_reflection::server::Error),
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Server reflection, v1 and v1alpha (grpcurl 1.8 speaks only v1alpha).
pub fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    ServeError,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(crate::proto::EXT_AUTHZ_FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // So that grpcurl can decode google.rpc.BadRequest and RetryInfo.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    // The descriptors are compiled in; failing here is a build defect.
    Ok((
        builder().build_v1().map_err(ServeError::Reflection)?,
        builder().build_v1alpha().map_err(ServeError::Reflection)?,
    ))
}

/// tonic answers an over-long request with OUT_OF_RANGE; gRPC's own
/// convention (and our contract) is RESOURCE_EXHAUSTED.
fn message_too_large(code: &str, message: &str) -> bool {
    code == "11" && (message.contains("too%20large") || message.contains("too large"))
}

/// tonic's own INTERNAL answers to a request that is not a well-formed gRPC
/// message (before any codec runs: a truncated or empty frame, a
/// compression flag without an encoding, gRPC-Web text that is not base64)
/// and tonic-prost's INTERNAL for an undecodable message of the services we
/// do not generate (health). They are the caller's fault, and INTERNAL is
/// what operators page on. Our own INTERNAL answers never carry these texts;
/// tests/e2e/fuzz.rs notices if a tonic upgrade changes them.
const MALFORMED_REQUEST: [&str; 5] = [
    "Unexpected EOF decoding stream",
    "Missing request message",
    "protocol error: received message with",
    "failed to decode Protobuf message",
    "tonic-web: ",
];

fn malformed_request(code: &str, message: &str) -> bool {
    let message = message.replace("%20", " ");
    code == "13"
        && MALFORMED_REQUEST
            .iter()
            .any(|text| message.starts_with(text))
}

/// Completes the error answers tonic and library services build themselves
/// (they travel in the headers of a trailers-only response, so they can be
/// fixed there): an over-long request becomes RESOURCE_EXHAUSTED
/// `MESSAGE_TOO_LARGE`, a malformed one INVALID_ARGUMENT
/// `MALFORMED_REQUEST`, and every other error status without details gets
/// the ErrorInfo of its code (UNIMPLEMENTED for an unknown method, the
/// health service's NOT_FOUND), so that no error leaves without a reason.
pub fn every_error_has_a_reason<B>(mut response: http::Response<B>) -> http::Response<B> {
    use status::reason;
    let headers = response.headers_mut();
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|s| s.to_str().ok())
        .map(str::to_owned)
    else {
        return response;
    };
    if code == "0" {
        return response;
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let fixed = if message_too_large(&code, &message) {
        Some((
            tonic::Code::ResourceExhausted,
            "request message too large",
            reason::MESSAGE_TOO_LARGE,
        ))
    } else if malformed_request(&code, &message) {
        Some((
            tonic::Code::InvalidArgument,
            "request is not a well-formed gRPC message",
            reason::MALFORMED_REQUEST,
        ))
    } else {
        None
    };
    if let Some((code, message, reason)) = fixed {
        headers.insert("grpc-status", http::HeaderValue::from(code as i32));
        headers.insert("grpc-message", http::HeaderValue::from_static(message));
        if let Some(details) = status::details_header(code, message, reason) {
            headers.insert("grpc-status-details-bin", details);
        }
        return response;
    }
    if headers.contains_key("grpc-status-details-bin") {
        return response;
    }
    let code = tonic::Code::from_bytes(code.as_bytes());
    let text = message.replace("%20", " ");
    if let Some(details) = status::details_header(code, &text, status::reason_for_code(code)) {
        headers.insert("grpc-status-details-bin", details);
    }
    response
}

/// IDENTITY_REQUEST_TIMEOUT, inside the layers (tonic's own timeout answers
/// from outside them, CANCELLED without details): a call that runs past it
/// is DEADLINE_EXCEEDED with reason `TIMEOUT`.
#[derive(Clone)]
pub struct RequestTimeoutLayer(Duration);

impl<S> tower::Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;
    fn layer(&self, inner: S) -> RequestTimeout<S> {
        RequestTimeout {
            inner,
            limit: self.0,
        }
    }
}

#[derive(Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S, B> tower::Service<http::Request<B>> for RequestTimeout<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = self.inner.call(request);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, call).await {
                Ok(answer) => answer,
                Err(_) => Ok(status::timeout().into_http()),
            }
        })
    }
}

/// What the API port serves.
pub struct Api {
    pub auth: Arc<Auth>,
    pub profiles: Arc<Profiles>,
    pub audit: Arc<crate::service::audit_trail::AuditTrail>,
    pub exchange: Option<Arc<crate::service::exchange::TokenExchange>>,
    pub health: HealthReporter,
}

/// Settings of the HTTP/2 (and gRPC-Web) front.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub tls: bool,
    pub grpc_web_origins: Vec<http::HeaderValue>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Peers whose trace context is continued (mTLS clients always are).
    pub trace_trusted_proxies: Vec<ipnet::IpNet>,
    /// Where the API listens: spans name it, never the caller's `:authority`.
    pub listen_addr: std::net::SocketAddr,
    pub max_message_bytes: usize,
    pub max_concurrent_streams: u32,
    pub request_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            tls: false,
            grpc_web_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            trace_trusted_proxies: Vec::new(),
            listen_addr: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_concurrent_streams: 256,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The browser-facing headers on every answer (threat model T1.18), set in
/// one pass: four layers of one header each cost a clone and a future per
/// layer on every call.
fn with_security_headers<B>(mut response: http::Response<B>) -> http::Response<B> {
    use http::header::{self, HeaderValue};
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The same, and HSTS: only over TLS, where a browser heeds it.
fn with_security_headers_and_hsts<B>(response: http::Response<B>) -> http::Response<B> {
    let mut response = with_security_headers(response);
    response.headers_mut().insert(
        http::header::STRICT_TRANSPORT_SECURITY,
        http::HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    response
}

/// CORS for gRPC-Web: only the configured origins, only POST, and the
/// headers a gRPC-Web client sends and must read.
fn cors(origins: &[http::HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([http::Method::POST])
        .allow_headers([
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            http::HeaderName::from_static("x-grpc-web"),
            http::HeaderName::from_static("x-user-agent"),
            http::HeaderName::from_static("grpc-timeout"),
        ])
        .expose_headers([
            http::HeaderName::from_static("grpc-status"),
            http::HeaderName::from_static("grpc-message"),
            http::HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(600))
}

/// Serves the API on `incoming` (plain TCP or TLS streams) until
/// `shutdown`: the shared HTTP/2 limits, then the layers — client address,
/// security headers on every response, status fix-up, optional gRPC-Web
/// with CORS — then the services.
pub async fn serve<I, IO, IE, F>(
    http: HttpSettings,
    api: Api,
    incoming: I,
    shutdown: F,
) -> Result<(), ServeError>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: std::future::Future<Output = ()>,
{
    let web = !http.grpc_web_origins.is_empty();
    let layers = tower::ServiceBuilder::new()
        .layer(client_addr::ClientAddrLayer::new(
            http.trusted_proxies.clone(),
        ))
        .layer(rpc_telemetry::RpcSpanLayer::new(
            http.trace_trusted_proxies.clone(),
            http.listen_addr,
        ))
        .layer(tower::util::MapResponseLayer::new(if http.tls {
            with_security_headers_and_hsts::<tonic::body::Body> as fn(_) -> _
        } else {
            with_security_headers::<tonic::body::Body>
        }))
        .layer(tower::util::MapResponseLayer::new(
            every_error_has_a_reason::<tonic::body::Body> as fn(_) -> _,
        ))
        .layer(RequestTimeoutLayer(http.request_timeout))
        .option_layer(web.then(|| cors(&http.grpc_web_origins)))
        .option_layer(web.then(tonic_web::GrpcWebLayer::new))
        .into_inner();
    let (reflection_v1, reflection_v1alpha) = reflection()?;
    tonic::transport::Server::builder()
        .accept_http1(web)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(Some(http.max_concurrent_streams))
        .tcp_nodelay(true)
        .layer(layers)
        .add_service(auth_service(
            Arc::clone(&api.auth),
            http.max_message_bytes,
            api.exchange,
        ))
        .add_service(audit_service(
            Arc::clone(&api.auth),
            api.audit,
            http.max_message_bytes,
        ))
        .add_service(ext_authz_service(
            Arc::clone(&api.auth),
            http.trusted_proxies.clone(),
            http.max_message_bytes,
        ))
        .add_service(profile_service(
            api.auth,
            api.profiles,
            http.max_message_bytes,
        ))
        .add_service(health_service(&api.health))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

type Fixup = fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>;

/// Plain HTTP/2 settings for the health-only port, which answers a
/// malformed request as the API port does.
pub fn health_server_builder() -> tonic::transport::Server<
    tower::layer::util::Stack<tower::util::MapResponseLayer<Fixup>, tower::layer::util::Identity>,
> {
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(5))
        .max_concurrent_streams(Some(16))
        .layer(tower::util::MapResponseLayer::new(
            every_error_has_a_reason as Fixup,
        ))
}
