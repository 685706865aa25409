//! A small tonic service guarded by identity-client: the standard health
//! service (and reflection, so grpcurl needs no proto files), reachable only
//! with a valid access token of identity. Every admitted call prints the
//! principal the layer put into the request's extensions.
//!
//! With `make run` in another terminal (see README.md, "Rust: the
//! identity-client crate"):
//!
//! ```sh
//! export IDENTITY_WATCH_TOKEN=$(IDENTITY_DATABASE_URL=sqlite://data/identity.db \
//!   cargo run -q --bin identity -- admin issue-service-token --role revocations:watch --ttl 1h --dev)
//! cargo run -p identity-client --example guarded_service
//! grpcurl -plaintext -H "authorization: Bearer $ACCESS" 127.0.0.1:50061 grpc.health.v1.Health/Check
//! ```
//!
//! Settings (environment): IDENTITY_ENDPOINT (default
//! `http://127.0.0.1:50051`), IDENTITY_WATCH_TOKEN (a service token holding
//! `revocations:watch`; required), GUARDED_LISTEN_ADDR (default
//! `127.0.0.1:50061`).

use identity_client::{Fallback, Principal, Verifier, VerifierLayer};
use std::error::Error;
use std::time::Duration;
use tonic::transport::{Endpoint, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let endpoint =
        std::env::var("IDENTITY_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let watch_token = std::env::var("IDENTITY_WATCH_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or(
            "IDENTITY_WATCH_TOKEN: set it to a service token holding revocations:watch \
             (identity admin issue-service-token --role revocations:watch --dev)",
        )?;
    let listen = std::env::var("GUARDED_LISTEN_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:50061".into())
        .parse()?;

    let verifier = Verifier::builder(Endpoint::from_shared(endpoint)?)
        .service_token(watch_token)
        // While the revocation stream is silent, ask identity per call
        // rather than refuse everyone.
        .fallback(Fallback::Remote)
        .build()
        .await?;
    if !verifier.wait_current(Duration::from_secs(5)).await {
        tracing::warn!("no heartbeat from identity yet: calls are checked with ValidateToken");
    }

    let (_, health) = tonic_health::server::health_reporter();
    // Both versions: grpcurl asks v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    // Runs after the verifier layer: every request that reaches it carries
    // a Principal.
    let log_caller = tonic::service::InterceptorLayer::new(|request: tonic::Request<()>| {
        if let Some(caller) = request.extensions().get::<Principal>() {
            tracing::info!(
                subject = %caller.subject,
                session = %caller.session_id,
                roles = ?caller.roles,
                auth_provider = %caller.auth_provider,
                "call admitted"
            );
        }
        Ok(request)
    });
    tracing::info!(%listen, "serving grpc.health.v1.Health behind identity's tokens");
    Server::builder()
        .layer(
            tower::ServiceBuilder::new()
                .layer(VerifierLayer::new(verifier))
                .layer(log_caller),
        )
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .serve(listen)
        .await?;
    Ok(())
}
