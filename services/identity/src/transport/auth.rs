//! `identity.v1.AuthService`: parse, call the service, map the result.

use super::{convert, metadata};
use crate::proto::v1::auth_service_server::AuthService;
use crate::proto::v1::*;
use crate::service::Auth;
use crate::service::auth::{RevokeAll, Watcher};
use crate::service::exchange::TokenExchange;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AuthApi {
    auth: Arc<Auth>,
    exchange: Option<Arc<TokenExchange>>,
}

impl AuthApi {
    pub fn new(auth: Arc<Auth>) -> Self {
        AuthApi {
            auth,
            exchange: None,
        }
    }

    /// Turns ExchangeToken on (without it the RPC answers UNIMPLEMENTED).
    pub fn with_exchange(mut self, exchange: Option<Arc<TokenExchange>>) -> Self {
        self.exchange = exchange;
        self
    }
}

/// The answer stream of WatchRevocations.
pub type RevocationStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<RevocationEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AuthService for AuthApi {
    type WatchRevocationsStream = RevocationStream;

    async fn watch_revocations(
        &self,
        request: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let caller = metadata::caller(&request);
        let bearer = metadata::bearer(&request);
        // The handshake verified a presented certificate (chain, CRL, SAN
        // allow-list); without IDENTITY_TLS_CLIENT_CA_FILE none is asked for.
        let certificate = super::client_addr::mtls_identity_of(&request);
        let watcher = match &certificate {
            Some(identity) => Watcher::Certificate(identity),
            None => Watcher::Bearer(bearer.as_deref()),
        };
        let watching = self
            .auth
            .watch_revocations(&caller, watcher, &request.get_ref().resume_after)
            .await?;
        let events = futures_util::stream::unfold(Some(watching), |state| async move {
            let mut watching = state?;
            match watching.next().await? {
                Ok(event) => Some((Ok(convert::revocation_event(&event)), Some(watching))),
                Err(end) => Some((Err(Status::from(end)), None)),
            }
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let caller = metadata::caller(&request);
        let r = request.into_inner();
        let (profile, tokens) = self
            .auth
            .register(
                &caller,
                &r.email,
                SecretString::from(r.password),
                &r.display_name,
            )
            .await?;
        Ok(Response::new(RegisterResponse {
            profile: Some(convert::profile(&profile)),
            tokens: Some(convert::tokens(tokens)),
        }))
    }

    async fn login(
        &self,
        request: Request<LoginRequest>,
    ) -> Result<Response<LoginResponse>, Status> {
        let caller = metadata::caller(&request);
        let r = request.into_inner();
        let done = self
            .auth
            .login(
                &caller,
                &r.email,
                SecretString::from(r.password),
                &r.device_token,
            )
            .await?;
        Ok(Response::new(LoginResponse {
            tokens: Some(convert::tokens(done.tokens)),
            device_token: done.device_token.expose_secret().to_owned(),
        }))
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        let caller = metadata::caller(&request);
        let tokens = self
            .auth
            .refresh(&caller, &request.get_ref().refresh_token)
            .await?;
        Ok(Response::new(RefreshResponse {
            tokens: Some(convert::tokens(tokens)),
        }))
    }

    async fn logout(
        &self,
        request: Request<LogoutRequest>,
    ) -> Result<Response<LogoutResponse>, Status> {
        let caller = metadata::caller(&request);
        let bearer = metadata::bearer(&request);
        self.auth
            .logout(&caller, &request.get_ref().refresh_token, bearer.as_deref())
            .await?;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn validate_token(
        &self,
        request: Request<ValidateTokenRequest>,
    ) -> Result<Response<ValidateTokenResponse>, Status> {
        let caller = metadata::caller(&request);
        let Some((claims, email_verified)) = self
            .auth
            .validate(&caller, &request.get_ref().access_token)
            .await?
        else {
            return Ok(Response::new(ValidateTokenResponse::default()));
        };
        let time = |secs: i64| chrono::DateTime::from_timestamp(secs, 0).map(convert::timestamp);
        Ok(Response::new(ValidateTokenResponse {
            active: true,
            subject: claims.sub.clone(),
            profile_id: claims.sub,
            auth_provider: claims.auth_provider,
            auth_id: claims.auth_id,
            session_id: claims.sid,
            roles: claims.roles,
            issue_time: time(claims.iat),
            expire_time: time(claims.exp),
            jti: claims.jti,
            issuer: claims.iss,
            audience: vec![claims.aud],
            email_verified,
        }))
    }

    async fn change_password(
        &self,
        request: Request<ChangePasswordRequest>,
    ) -> Result<Response<ChangePasswordResponse>, Status> {
        let principal = super::authn::principal(&request)?;
        let r = request.into_inner();
        self.auth
            .change_password(
                &principal,
                SecretString::from(r.current_password),
                SecretString::from(r.new_password),
            )
            .await?;
        Ok(Response::new(ChangePasswordResponse {}))
    }

    async fn change_email(
        &self,
        request: Request<ChangeEmailRequest>,
    ) -> Result<Response<ChangeEmailResponse>, Status> {
        let principal = super::authn::principal(&request)?;
        let r = request.into_inner();
        self.auth
            .change_email(
                &principal,
                SecretString::from(r.current_password),
                &r.new_email,
            )
            .await?;
        Ok(Response::new(ChangeEmailResponse {}))
    }

    async fn get_jwks(
        &self,
        _request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        Ok(Response::new(GetJwksResponse {
            keys: self.auth.jwks().iter().map(convert::jwk).collect(),
        }))
    }

    async fn exchange_token(
        &self,
        request: Request<ExchangeTokenRequest>,
    ) -> Result<Response<ExchangeTokenResponse>, Status> {
        let caller = metadata::caller(&request);
        let exchange = self
            .exchange
            .as_ref()
            .ok_or(crate::service::Error::NotEnabled("ExchangeToken"))?;
        let r = request.get_ref();
        let done = exchange
            .exchange(&caller, &r.subject_token, &r.subject_token_type)
            .await?;
        Ok(Response::new(ExchangeTokenResponse {
            tokens: Some(convert::tokens(done.tokens)),
            profile: Some(convert::profile(&done.profile)),
            created: done.created,
        }))
    }

    async fn service_login(
        &self,
        request: Request<ServiceLoginRequest>,
    ) -> Result<Response<ServiceLoginResponse>, Status> {
        let caller = metadata::caller(&request);
        let r = request.into_inner();
        let done = self
            .auth
            .service_login(&caller, &r.client_id, SecretString::from(r.client_secret))
            .await?;
        Ok(Response::new(ServiceLoginResponse {
            access_token: done.access_token.expose_secret().to_owned(),
            token_type: "Bearer".into(),
            access_token_expire_time: Some(convert::timestamp(done.expires_at)),
            session_id: done.session_id.to_string(),
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let principal = super::authn::principal(&request)?;
        let r = request.get_ref();
        let (sessions, next_page_token) = self
            .auth
            .list_sessions(&principal, &r.profile_id, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(ListSessionsResponse {
            sessions: sessions.iter().map(convert::session).collect(),
            next_page_token,
        }))
    }

    async fn revoke_session(
        &self,
        request: Request<RevokeSessionRequest>,
    ) -> Result<Response<RevokeSessionResponse>, Status> {
        let principal = super::authn::principal(&request)?;
        self.auth
            .revoke_one_session(&principal, &request.get_ref().session_id)
            .await?;
        Ok(Response::new(RevokeSessionResponse {}))
    }

    async fn revoke_all_sessions(
        &self,
        request: Request<RevokeAllSessionsRequest>,
    ) -> Result<Response<RevokeAllSessionsResponse>, Status> {
        let principal = super::authn::principal(&request)?;
        let r = request.get_ref();
        let revoked = self
            .auth
            .revoke_all_sessions(
                &principal,
                RevokeAll {
                    profile_id: &r.profile_id,
                    auth_provider: &r.auth_provider,
                    auth_id: &r.auth_id,
                    keep_current: r.keep_current,
                },
            )
            .await?;
        Ok(Response::new(RevokeAllSessionsResponse {
            revoked_count: i32::try_from(revoked).unwrap_or(i32::MAX),
        }))
    }
}
