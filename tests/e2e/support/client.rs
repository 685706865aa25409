//! Calls every test makes the same way: registering, logging in, bearer and
//! forwarded metadata, and the shape of refusals.

use super::PASSWORD;
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::{
    GetProfileRequest, LoginRequest, RegisterRequest, RegisterResponse, TokenPair,
    UpdateProfileRequest, UserProfile, ValidateTokenRequest,
};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The AuthService client of a test.
pub type Auth = AuthServiceClient<Channel>;

/// Registers a local account with `PASSWORD`; returns its first token pair.
pub async fn register(auth: &mut Auth, email: &str) -> TokenPair {
    register_profile(auth, email)
        .await
        .tokens
        .expect("a token pair")
}

/// Registers a local account with `PASSWORD`; the whole answer (its
/// profile and its first token pair).
pub async fn register_profile(auth: &mut Auth, email: &str) -> RegisterResponse {
    auth.register(RegisterRequest {
        email: email.to_owned(),
        password: PASSWORD.into(),
        display_name: String::new(),
    })
    .await
    .expect("registration succeeds")
    .into_inner()
}

/// Logs in with `PASSWORD`; returns the new session's token pair.
pub async fn login(auth: &mut Auth, email: &str) -> TokenPair {
    login_with(auth, email, PASSWORD).await
}

/// Logs in with `password`, expecting success; the new session's tokens.
pub async fn login_with(auth: &mut Auth, email: &str, password: &str) -> TokenPair {
    auth.login(login_request(email, password))
        .await
        .expect("login succeeds")
        .into_inner()
        .tokens
        .expect("a token pair")
}

/// A LoginRequest without a device token.
pub fn login_request(email: &str, password: &str) -> LoginRequest {
    LoginRequest {
        email: email.into(),
        password: password.into(),
        ..Default::default()
    }
}

/// What ValidateToken says of `token`.
pub async fn active(auth: &mut Auth, token: &str) -> bool {
    auth.validate_token(ValidateTokenRequest {
        access_token: token.to_owned(),
    })
    .await
    .expect("ValidateToken answers")
    .into_inner()
    .active
}

/// A request carrying `authorization: Bearer <token>`.
pub fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("a token is a valid header value"),
    );
    request
}

/// A request as a trusted proxy forwards it for client `addr`
/// (`x-forwarded-for`; the server must list 127.0.0.1 in
/// IDENTITY_TRUSTED_PROXIES).
pub fn forwarded_for<T>(addr: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "x-forwarded-for",
        addr.parse().expect("an address is a valid header value"),
    );
    request
}

/// The names of the fields a BadRequest answer names.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// INVALID_ARGUMENT naming exactly `field`.
#[track_caller]
pub fn assert_invalid(status: &tonic::Status, field: &str, case: &str) {
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{case}: {status:?}"
    );
    assert_eq!(violated_fields(status), [field], "{case}: {status:?}");
}

/// `hidden` (someone else's) must be indistinguishable from `missing` (what
/// does not exist): NOT_FOUND both, with the same message and details.
#[track_caller]
pub fn assert_same_as_missing(hidden: tonic::Status, missing: tonic::Status, case: &str) {
    assert_eq!(hidden.code(), tonic::Code::NotFound, "{case}: {hidden:?}");
    assert_eq!(missing.code(), tonic::Code::NotFound, "{case}: {missing:?}");
    assert_eq!(
        hidden.message(),
        missing.message(),
        "{case}: another user's must look exactly like a missing one"
    );
    assert_eq!(hidden.details(), missing.details(), "{case}");
}

/// Polls ValidateToken (back to back, no fixed sleep) until `token` is
/// refused; the time it took from `since`. Fails past `limit`.
pub async fn refused_within(
    auth: &mut Auth,
    token: &str,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        if !active(auth, token).await {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "a revoked session still validates after {:?}",
            since.elapsed()
        );
        tokio::task::yield_now().await;
    }
}

/// The ProfileService client of a test.
pub type Profiles = ProfileServiceClient<Channel>;

/// GetProfile as `token`'s holder; the status code when refused.
pub async fn get_profile(
    profiles: &mut Profiles,
    token: &str,
    id: &str,
) -> Result<UserProfile, tonic::Code> {
    profiles
        .get_profile(bearer(token, GetProfileRequest { id: id.into() }))
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.code())
}

/// Sets the roles of `id`, as the admin holding `admin_token`.
pub async fn set_roles(profiles: &mut Profiles, admin_token: &str, id: &str, roles: &[&str]) {
    let current = get_profile(profiles, admin_token, id).await.unwrap();
    profiles
        .update_profile(bearer(
            admin_token,
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                    ..current
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["roles".into()],
                }),
            },
        ))
        .await
        .unwrap();
}
