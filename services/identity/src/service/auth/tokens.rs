//! Tokens after login: Refresh, access-token verification, ValidateToken,
//! authentication of calls, and Logout.

use super::{Auth, Caller, IssuedTokens};
use crate::service::Error;
use crate::service::events::{Emit, EventName, SecurityEvent};
use chrono::Utc;
use identity_core::rate_limit::Action;
use identity_core::tokens::{AccessClaims, Refusal};
use identity_core::{refresh, validation};
use identity_store::notify::Revoked;
use identity_store::{Id, SpendOutcome};

/// Who asks an external authorization Check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxy {
    /// A proxy listed in IDENTITY_TRUSTED_PROXIES: it speaks for many
    /// clients, so no per-address limit applies to it.
    Trusted,
    /// Anyone else, limited like a ValidateToken caller.
    Untrusted,
}

impl Auth {
    pub async fn refresh(
        &self,
        caller: &Caller,
        refresh_token: &str,
    ) -> Result<IssuedTokens, Error> {
        validation::required(refresh_token, refresh::MAX_REFRESH_TOKEN_BYTES)
            .map_err(|d| Error::invalid("refresh_token", d))?;
        self.limit(Action::Refresh, caller, None).await?;
        let presented = refresh::hash(refresh_token);
        // Derived, not random: a retry of this call computes the same one.
        let next = refresh::successor(self.keys.refresh_successor_key(), refresh_token);
        let now = Utc::now();
        match self
            .store
            .spend_refresh_token(
                &presented,
                &next.hash,
                now,
                self.settings.refresh_reuse_grace,
                caller.addr(),
            )
            .await?
        {
            SpendOutcome::Rotated { session, profile } => {
                self.issue(&profile, session.id, session.expires_at, next.token, now)
            }
            SpendOutcome::Retried {
                session,
                profile,
                event,
            } => {
                // Its audit row was written with the retry, not queued.
                event.emit_committed();
                self.issue(&profile, session.id, session.expires_at, next.token, now)
            }
            SpendOutcome::Reused { session_id, event } => {
                event.emit_committed();
                self.fast.revoked(Revoked::Session(session_id));
                // Its audit row is the reuse's, written in the same transaction.
                SecurityEvent::new(EventName::SessionRevoked)
                    .session(session_id)
                    .reason("refresh_token_reused")
                    .emit_committed();
                Err(Error::Unauthenticated)
            }
            SpendOutcome::SessionEnded => {
                SecurityEvent::new(EventName::TokenRefused)
                    .token_kind("refresh")
                    .reason("session_ended")
                    .client(caller.addr())
                    .emit(&self.audit);
                Err(Error::Unauthenticated)
            }
            SpendOutcome::Unknown => {
                SecurityEvent::new(EventName::TokenRefused)
                    .token_kind("refresh")
                    .reason("unknown")
                    .client(caller.addr())
                    .emit(&self.audit);
                Err(Error::Unauthenticated)
            }
        }
    }

    /// Verifies a bearer access token completely: signature, claims and
    /// that its session is still live. The one path for ValidateToken,
    /// ChangePassword, Logout and every ProfileService call.
    pub async fn verify_access_token(
        &self,
        token: &str,
    ) -> Result<Result<AccessClaims, Refusal>, Error> {
        // Same checks, answered from memory when it can (service::revocation).
        self.fast.verify(&self.keys, &self.store, token).await
    }

    /// ValidateToken: `None` means inactive (the reason is logged, not told);
    /// else the claims and whether the profile's email is verified now. An
    /// empty token is the caller's mistake (a missing header forwarded as
    /// ""), not a token that failed: INVALID_ARGUMENT naming the field.
    pub async fn validate(
        &self,
        caller: &Caller,
        token: &str,
    ) -> Result<Option<(AccessClaims, bool)>, Error> {
        self.limit(Action::Validate, caller, None).await?;
        if token.is_empty() {
            return Err(Error::invalid("access_token", "is required"));
        }
        self.current_claims(caller, token).await
    }

    /// Envoy's external authorization Check: ValidateToken's verification,
    /// refusal events and current roles. `Proxy::Trusted` (a proxy checking
    /// for every client of the mesh) skips the per-address limit, which
    /// would throttle them all as one; anyone else is limited as for
    /// ValidateToken (docs/decisions/0015-ext-authz.md).
    pub async fn authorize(
        &self,
        caller: &Caller,
        token: &str,
        proxy: Proxy,
    ) -> Result<Option<(AccessClaims, bool)>, Error> {
        if proxy == Proxy::Untrusted {
            self.limit(Action::Validate, caller, None).await?;
        }
        self.current_claims(caller, token).await
    }

    /// A verified token's claims with the roles its profile holds now, and
    /// whether the profile's email is verified; `None` when refused.
    async fn current_claims(
        &self,
        caller: &Caller,
        token: &str,
    ) -> Result<Option<(AccessClaims, bool)>, Error> {
        let Some(mut claims) = self.check_token(caller, token).await? else {
            return Ok(None);
        };
        // The roles the profile holds now, not those signed into the token:
        // a role an admin took away must not be reported until the token
        // expires. Read like every authorization check (the profile cache,
        // fresh within the revocation bound).
        let Some(id) = Id::parse(&claims.sub) else {
            return Ok(None);
        };
        match self.fast.profile(&self.store, id).await? {
            Some(profile) => {
                claims.roles =
                    identity_core::roles::effective(&profile.auth_provider, profile.roles);
                Ok(Some((claims, profile.email_verified)))
            }
            None => Ok(None),
        }
    }

    /// Verification with the refusal logged, without the ValidateToken rate
    /// limit (authenticated calls have their own).
    async fn check_token(
        &self,
        caller: &Caller,
        token: &str,
    ) -> Result<Option<AccessClaims>, Error> {
        match self.verify_access_token(token).await? {
            Ok(claims) => Ok(Some(claims)),
            Err(refusal) => {
                SecurityEvent::new(EventName::TokenRefused)
                    .token_kind("access")
                    .reason(refusal.as_str())
                    .client(caller.addr())
                    .emit(&self.audit);
                Ok(None)
            }
        }
    }

    /// For calls that require a caller: UNAUTHENTICATED unless the bearer
    /// token is fully valid.
    pub async fn authenticate(
        &self,
        caller: &Caller,
        bearer: Option<&str>,
    ) -> Result<AccessClaims, Error> {
        let token = bearer.ok_or(Error::Unauthenticated)?;
        self.check_token(caller, token)
            .await?
            .ok_or(Error::Unauthenticated)
    }

    /// Revokes the session of a refresh token or, without one, of the
    /// bearer access token. Unknown refresh tokens succeed quietly (RFC 7009).
    pub async fn logout(
        &self,
        caller: &Caller,
        refresh_token: &str,
        bearer: Option<&str>,
    ) -> Result<(), Error> {
        let session_id = if refresh_token.is_empty() {
            let claims = self.authenticate(caller, bearer).await?;
            Id::parse(&claims.sid).ok_or(Error::Unauthenticated)?
        } else {
            validation::required(refresh_token, refresh::MAX_REFRESH_TOKEN_BYTES)
                .map_err(|d| Error::invalid("refresh_token", d))?;
            match self
                .store
                .session_of_refresh_token(&refresh::hash(refresh_token))
                .await?
            {
                Some(session) => session.id,
                None => return Ok(()),
            }
        };
        let session = self.store.find_session(session_id).await?;
        let event = SecurityEvent::new(EventName::SessionRevoked)
            .session(session_id)
            .reason("logout")
            .client(caller.addr());
        let event = match &session {
            Some(s) => event.profile(s.profile_id),
            None => event,
        };
        let revoked = self
            .store
            .revoke_session(session_id, "logout", &event.audit_row())
            .await?;
        self.fast.revoked(Revoked::Session(session_id));
        if revoked {
            event.emit_committed();
        }
        Ok(())
    }
}
