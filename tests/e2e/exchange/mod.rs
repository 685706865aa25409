//! ExchangeToken against a real Better-Auth (tests/provider/server.mjs):
//! sign-in there, exchange here; provisioning by (provider, auth_id) and its
//! races; forged, foreign and stale tokens; key rotation and kid floods
//! measured at the provider; the provider going down; the sign-up hook with
//! a provisioner service token.

mod configuration;
mod keys;
mod provisioning;
mod refusals;
mod sign_in;

use crate::support::better_auth::{AUDIENCE, BetterAuth, ISSUER, User, exchange, trusting};
use crate::support::{Backend, PASSWORD, Server, ServerOptions, TestDb, email, eventually, health};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use identity_core::tokens::generate_ed25519_pem;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;

const GENERIC: &str = "missing, invalid or expired credentials";

/// An identity server that trusts `provider`.
fn identity(db: &TestDb, provider: &BetterAuth, min_refresh: &str) -> Server {
    identity_with(db, provider, min_refresh, ServerOptions::default())
}

fn identity_with(
    db: &TestDb,
    provider: &BetterAuth,
    min_refresh: &str,
    options: ServerOptions,
) -> Server {
    let options =
        trusting(provider, options).env("IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL", min_refresh);
    Server::start_with_options(db, options)
}

#[track_caller]
fn assert_refused(result: Result<ExchangeTokenResponse, Status>, case: &str) {
    let status = result.err().unwrap_or_else(|| panic!("{case}: accepted"));
    assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
    assert_eq!(
        status.message(),
        GENERIC,
        "{case}: the message says nothing"
    );
}

async fn profiles(server: &Server) -> ProfileServiceClient<Channel> {
    ProfileServiceClient::new(server.channel().await)
}

/// Waits until the start-up JWKS fetch succeeded.
async fn provider_serving(server: &Server) {
    assert!(
        eventually(Duration::from_secs(15), || async {
            health(server, "identity.provider").await == ServingStatus::Serving
        })
        .await,
        "identity.provider never became SERVING; logs:\n{}",
        server.logs()
    );
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// A token signed by a key the provider never published, under `kid`.
fn stranger_token(kid: &str, sub: &str) -> String {
    let pem = generate_ed25519_pem().unwrap();
    let key = EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    header.typ = None;
    let n = now();
    let claims = json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": n, "exp": n + 600});
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

fn encode_part(value: &Value) -> String {
    B64.encode(value.to_string())
}

async fn signed_up(provider: &BetterAuth, name: &str) -> User {
    provider.sign_up(&email("ba"), PASSWORD, name).await
}
