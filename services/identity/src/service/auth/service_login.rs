//! AuthService.ServiceLogin: a service signs in with its client credentials
//! (`service::service_clients`) for an access token of its principal that
//! lives at most IDENTITY_ACCESS_TOKEN_TTL. Login's per-address quota and
//! throttle apply, keyed by client id and address; not Login's account-wide
//! limits, which strangers could use to lock a service out while guessing a
//! 256-bit secret stays hopeless.

use super::{Auth, Caller, throttled};
use crate::service::Error;
use crate::service::events::{Emit, EventName, SecurityEvent};
use crate::service::service_token::service_role;
use chrono::{DateTime, Utc};
use identity_core::rate_limit::Action;
use identity_core::service_client::{self, UNKNOWN_CLIENT_HASH};
use identity_core::throttle::Attempt;
use identity_core::{Violations, refresh};
use identity_store::{Id, NewSession};
use secrecy::{ExposeSecret, SecretString};
use std::time::Instant;

/// A successful ServiceLogin. No refresh token: the service logs in again.
pub struct ServiceLoggedIn {
    pub access_token: SecretString,
    pub expires_at: DateTime<Utc>,
    pub session_id: Id,
}

impl Auth {
    pub async fn service_login(
        &self,
        caller: &Caller,
        client_id: &str,
        secret: SecretString,
    ) -> Result<ServiceLoggedIn, Error> {
        let mut violations = Violations::new();
        violations.check("client_id", service_client::check_client_id(client_id));
        violations.check(
            "client_secret",
            service_client::check_secret(secret.expose_secret()),
        );
        violations.into_result()?;
        let client = self.client_key(caller);
        self.limit_keys(Action::Login, caller, client.as_deref(), None)
            .await?;
        // Per client id AND address, never per client id alone. Client ids
        // are public, so an account-wide quota or pause (Login's) would let
        // strangers with many addresses lock the service out, and it buys
        // nothing: a 256-bit secret cannot be guessed however many
        // addresses try. The per-address quota above bounds the load.
        let throttle_key = self.keys.pseudonym(&format!(
            "service-client:{client_id}:{}",
            client.as_deref().unwrap_or("unknown")
        ));
        let attempt = Attempt::Unknown {
            client: client.as_deref().unwrap_or("unknown"),
        };
        let refused = |reason: &'static str| {
            SecurityEvent::new(EventName::ServiceLoginFailed)
                .reason(reason)
                .client_id(client_id)
                .client(caller.addr())
        };
        let reservation = match self
            .throttle
            .reserve(&throttle_key, attempt, Instant::now())
        {
            Ok(reservation) => reservation,
            Err(wait) => {
                refused("throttled").scope(wait.scope()).emit(&self.audit);
                return Err(throttled(wait));
            }
        };
        let found = match self.store.find_service_client(client_id).await {
            Ok(found) => found,
            Err(e) => {
                // Never evaluated: not a failure of the client.
                self.throttle.release(reservation);
                return Err(e.into());
            }
        };
        // The same hash and comparison whether the client exists or not.
        let stored = found
            .as_ref()
            .map_or(UNKNOWN_CLIENT_HASH, |c| c.row.secret_hash.as_str());
        let secret_ok = service_client::matches(&secret, stored);
        let reason = match &found {
            None => Some("unknown_client"),
            Some(_) if !secret_ok => Some("bad_secret"),
            Some(c) if c.row.disabled_at.is_some() => Some("disabled"),
            // Granted later by hand (e.g. admin): a service never holds it.
            Some(c) if c.profile.roles.iter().any(|r| service_role(r).is_err()) => {
                Some("forbidden_role")
            }
            Some(_) => None,
        };
        let client = match (found, reason) {
            (Some(client), None) => client,
            (found, reason) => {
                let reason = reason.unwrap_or("unknown_client");
                let mut event = refused(reason);
                if let Some(c) = &found {
                    event = event.profile(c.profile.id);
                }
                // The reservation stands as this failure.
                drop(reservation);
                event.emit_awaited(&self.store).await?;
                return Err(Error::InvalidCredentials);
            }
        };
        self.throttle.succeeded(reservation);

        let now = Utc::now();
        let profile = client.profile;
        // The session ends with its only access token.
        let session = NewSession {
            id: Id::new(),
            profile_id: profile.id,
            created_at: now,
            expires_at: now + super::to_chrono(self.settings.access_token_ttl),
            refresh_token_hash: refresh::generate().hash,
            origin: identity_store::SessionOrigin {
                client_addr: caller.client_addr.clone(),
                user_agent: caller.user_agent.clone(),
            },
        };
        let event = SecurityEvent::new(EventName::ServiceLoginSucceeded)
            .profile(profile.id)
            .session(session.id)
            .client_id(client_id)
            .client(caller.addr());
        if !self
            .store
            .start_service_session(
                client_id,
                &client.row.secret_hash,
                &session,
                &event.audit_row(),
            )
            .await?
        {
            // Rotated or disabled since the secret was checked.
            refused("credential_changed")
                .profile(profile.id)
                .emit_awaited(&self.store)
                .await?;
            return Err(Error::InvalidCredentials);
        }
        event.emit_committed();
        let tokens = self.issue(
            &profile,
            session.id,
            session.expires_at,
            SecretString::from(String::new()),
            now,
        )?;
        Ok(ServiceLoggedIn {
            access_token: tokens.access_token,
            expires_at: tokens.access_expires_at,
            session_id: session.id,
        })
    }
}
