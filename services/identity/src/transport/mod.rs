//! gRPC transport: tonic services, health, reflection, TLS, shutdown.
//! Thin by design: handlers parse, call `service`, map the result.

pub mod auth;
pub mod authn;
pub mod convert;
pub mod metadata;
pub mod profile;
pub mod status;

use crate::proto::v1::auth_service_server::AuthServiceServer;
use crate::proto::v1::profile_service_server::ProfileServiceServer;
use crate::service::{Auth, Profiles};
use std::sync::Arc;
use std::time::Duration;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

/// Largest request message accepted (larger ones get RESOURCE_EXHAUSTED).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

pub const AUTH_SERVICE: &str = <AuthServiceServer<auth::AuthApi> as NamedService>::NAME;

pub const PROFILE_SERVICE: &str = <ProfileServiceServer<profile::ProfileApi> as NamedService>::NAME;

/// AuthService: only ChangePassword requires a caller (Logout takes an
/// optional bearer token and checks it itself).
pub fn auth_service(
    auth: Arc<Auth>,
    exchange: Option<Arc<crate::service::exchange::TokenExchange>>,
) -> authn::RequireBearer<AuthServiceServer<auth::AuthApi>> {
    let server =
        AuthServiceServer::new(auth::AuthApi::new(Arc::clone(&auth)).with_exchange(exchange))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(4 * MAX_MESSAGE_BYTES);
    authn::RequireBearer::new(server, auth, |path| {
        path == "/identity.v1.AuthService/ChangePassword"
    })
}

/// ProfileService: every call requires a caller.
pub fn profile_service(
    auth: Arc<Auth>,
    profiles: Arc<Profiles>,
) -> authn::RequireBearer<ProfileServiceServer<profile::ProfileApi>> {
    let server = ProfileServiceServer::new(profile::ProfileApi::new(profiles))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(4 * MAX_MESSAGE_BYTES);
    authn::RequireBearer::new(server, auth, |_| true)
}

pub fn health_service(reporter: &HealthReporter) -> HealthServer<HealthService> {
    HealthServer::new(HealthService::from_health_reporter(reporter.clone()))
}

/// Health service name that reports only that the process is alive (for
/// liveness probes: a database outage must not restart the pods).
pub const LIVENESS: &str = "liveness";

/// Sets the overall status and every API service's status together.
pub async fn set_health(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in ["", AUTH_SERVICE, PROFILE_SERVICE] {
        reporter.set_service_status(name, status).await;
    }
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
    tonic_reflection::server::Error,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // So that grpcurl can decode google.rpc.BadRequest and RetryInfo.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// tonic answers an over-long request with OUT_OF_RANGE; gRPC's own
/// convention (and our contract) is RESOURCE_EXHAUSTED. The status travels
/// in the headers of a trailers-only response, so it can be fixed there.
pub fn message_too_large_is_resource_exhausted<B>(
    mut response: http::Response<B>,
) -> http::Response<B> {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.contains("too%20large") || m.contains("too large"));
    if too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("request message too large"),
        );
    }
    response
}

type FixStatus = fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>;
type Layers = tower::layer::util::Stack<
    tower::util::MapResponseLayer<FixStatus>,
    tower::layer::util::Identity,
>;

/// HTTP/2 settings shared by every listener.
pub fn server_builder() -> tonic::transport::Server<Layers> {
    tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            message_too_large_is_resource_exhausted::<tonic::body::Body> as FixStatus,
        ))
        .timeout(Duration::from_secs(30))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(Some(256))
        .tcp_nodelay(true)
}
