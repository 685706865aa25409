//! ExchangeToken: a token from the external provider (Better-Auth) for a
//! token pair of ours (RFC 8693 in spirit).
//!
//! The provider's JWT is verified against its JWK set (`provider`, through
//! `identity_core::provider::TokenVerifier`), the
//! profile is found by (provider name, `sub`) or created, and an ordinary
//! session starts: refresh, logout, revocation and ValidateToken treat it
//! exactly like a local login.
//!
//! Profile provisioning: the first exchange for a `sub` creates the profile
//! (`auth_provider` = IDENTITY_PROVIDER_NAME, `auth_id` = `sub`, email and
//! display name from the `email` and `name` claims). Later exchanges return
//! the same profile (`created = false`) and copy a changed email or name
//! from the claims only while the profile is unchanged here since the
//! provider last wrote it; once it is updated through ProfileService (or
//! its roles change) the stored values win for good. `email_verified`
//! follows the provider's `emailVerified` claim for the email it names; an
//! email changed here is unverified.
//!
//! One provider token, one session: a token is spent by its first exchange
//! (keyed by its `jti`, or by its SHA-256 when it has none, remembered
//! until it could no longer verify anyway), so a stolen or leaked provider
//! JWT cannot be turned into many sessions. Exchanged sessions end after
//! IDENTITY_PROVIDER_SESSION_TTL (not IDENTITY_REFRESH_TOKEN_TTL): the user
//! then goes back to the provider, which may have banned or deleted them
//! meanwhile.

use crate::service::Error;
use crate::service::events::{Actor, Emit, EventName, SecurityEvent};
use crate::service::{Auth, Caller, IssuedTokens};
use chrono::{SubsecRound, Utc};
use identity_core::provider::{
    ProviderClaims, TOKEN_TYPE_JWT, TokenVerifier, VerifyFailure, profile_fields,
};
use identity_core::tokens::MAX_TOKEN_BYTES;
use identity_core::{Violations, validation};
use identity_store::{Id, Profile, Store};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Added to `exp` + leeway before a spent token is forgotten: replicas'
/// clocks may differ a little.
const REMEMBER_MARGIN_SECS: i64 = 60;

/// The key a provider token is spent under: its `jti` when it has one (a
/// re-signed copy is then the same token), else what was signed; hashed
/// either way, so the table holds no token.
fn spent_key(claims: &ProviderClaims, token: &str) -> String {
    // Without a jti, what was signed (header and claims), not the token
    // text: ECDSA signatures are malleable ((r, s) and (r, n - s) both
    // verify), so hashing the signature too let one token exchange twice.
    let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
    let material = match &claims.jti {
        Some(jti) => format!("jti:{jti}"),
        None => format!("jwt:{signed}"),
    };
    hex::encode(Sha256::digest(material.as_bytes()))
}

/// Accepted `subject_token_type` values; empty means a JWT.
pub const ACCEPTED_TOKEN_TYPES: &[&str] = &["", TOKEN_TYPE_JWT];

/// The result of an exchange.
pub struct Exchanged {
    pub profile: Profile,
    pub tokens: IssuedTokens,
    /// Whether this exchange created the profile.
    pub created: bool,
}

/// What ExchangeToken is configured with (IDENTITY_PROVIDER_*).
#[derive(Debug, Clone)]
pub struct ExchangeSettings {
    /// The provider's name: profiles it creates carry it as `auth_provider`.
    pub provider: String,
    /// Longest life of an exchanged session.
    pub session_ttl: Duration,
    /// The provider's leeway on `exp`, so a spent token is remembered as
    /// long as it could still verify.
    pub leeway: Duration,
}

pub struct TokenExchange {
    /// Sessions, tokens, rate limits and the audit sink, as for a login.
    auth: Arc<Auth>,
    store: Store,
    verifier: Arc<dyn TokenVerifier>,
    provider: String,
    session_ttl: Duration,
    leeway: Duration,
}

impl TokenExchange {
    pub fn new(
        auth: Arc<Auth>,
        store: Store,
        verifier: Arc<dyn TokenVerifier>,
        settings: ExchangeSettings,
    ) -> Self {
        TokenExchange {
            auth,
            store,
            verifier,
            provider: settings.provider,
            session_ttl: settings.session_ttl,
            leeway: settings.leeway,
        }
    }

    pub fn provider_name(&self) -> &str {
        &self.provider
    }

    async fn refused(&self, caller: &Caller, reason: &'static str) -> Error {
        // Anyone can cause this without an account: aggregated per address,
        // reason and minute like the other such refusals (service::audit),
        // never a row per call.
        SecurityEvent::new(EventName::ExchangeRefused)
            .token_kind("provider")
            .reason(reason)
            .provider(&self.provider)
            .client(caller.client_addr.as_deref())
            .emit(&self.auth.audit_sink());
        match reason {
            "provider_unavailable" => Error::Unavailable,
            "already_exchanged" => Error::TokenAlreadyExchanged,
            _ => Error::Unauthenticated,
        }
    }

    pub async fn exchange(
        &self,
        caller: &Caller,
        subject_token: &str,
        subject_token_type: &str,
    ) -> Result<Exchanged, Error> {
        let mut violations = Violations::new();
        violations.check(
            "subject_token",
            validation::required(subject_token, MAX_TOKEN_BYTES),
        );
        if !ACCEPTED_TOKEN_TYPES.contains(&subject_token_type) {
            violations.check::<()>(
                "subject_token_type",
                Err(format!("must be {TOKEN_TYPE_JWT} (or empty)").into()),
            );
        }
        violations.into_result()?;
        self.auth
            .limit(identity_core::rate_limit::Action::Exchange, caller, None)
            .await?;

        let claims = match self.verifier.verify(subject_token).await {
            Ok(claims) => claims,
            Err(VerifyFailure::Refused(refusal)) => {
                return Err(self.refused(caller, refusal.as_str()).await);
            }
            Err(VerifyFailure::Unavailable) => {
                return Err(self.refused(caller, "provider_unavailable").await);
            }
        };

        // Refused before provisioning too, so that a replayed older token
        // cannot write its stale email or name over the profile.
        let spent = spent_key(&claims, subject_token);
        if self.store.is_exchanged_token(&spent).await? {
            return Err(self.refused(caller, "already_exchanged").await);
        }
        let (profile, created) = self.provision(caller, &claims).await?;
        // The sync may have rewritten email and display name.
        self.auth.profile_changed(profile.id);

        let now = Utc::now();
        let (mut session, refresh_token) = self.auth.new_session(profile.id, caller, now);
        let provider_end = now + chrono::Duration::from_std(self.session_ttl).unwrap_or_default();
        session.expires_at = session.expires_at.min(provider_end);
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let remember_until = claims
            .exp
            .saturating_add(leeway)
            .saturating_add(REMEMBER_MARGIN_SECS);
        let remember_until = chrono::DateTime::from_timestamp(remember_until, 0)
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
        let event = SecurityEvent::new(EventName::ExchangeSucceeded)
            .profile(profile.id)
            .session(session.id)
            .provider(&self.provider)
            .created(created)
            .client(caller.client_addr.as_deref());
        let first = self
            .store
            .start_exchanged_session(&spent, remember_until, &session, &event.audit_row())
            .await?;
        if !first {
            return Err(self.refused(caller, "already_exchanged").await);
        }
        event.emit_committed();
        let tokens =
            self.auth
                .issue(&profile, session.id, session.expires_at, refresh_token, now)?;
        Ok(Exchanged {
            profile,
            tokens,
            created,
        })
    }

    /// Finds or creates the profile of `claims.sub`, and brings its email
    /// and display name in step with the claims when the rule allows.
    async fn provision(
        &self,
        caller: &Caller,
        claims: &ProviderClaims,
    ) -> Result<(Profile, bool), Error> {
        let (claimed_email, claimed_name) = profile_fields(claims);
        let store = &self.store;
        let existing = store
            .find_profile_by_auth(&self.provider, &claims.sub)
            .await?;
        let (profile, created) = match existing {
            Some(profile) => (profile, false),
            None => {
                let now = Utc::now().trunc_subsecs(6);
                let candidate = Profile {
                    email: claimed_email.clone(),
                    display_name: claimed_name.clone().unwrap_or_default(),
                    email_verified: claims.email_verified && claimed_email.is_some(),
                    ..Profile::new(Id::new(), &self.provider, &claims.sub, now)
                };
                let event = SecurityEvent::new(EventName::ProfileCreated)
                    .profile(candidate.id)
                    .actor(Actor::ExchangeToken)
                    .provider(&self.provider)
                    .client(caller.client_addr.as_deref());
                let (profile, created) = store
                    .provision_profile(&candidate, &event.audit_row())
                    .await?;
                if created {
                    event.emit_committed();
                }
                (profile, created)
            }
        };
        // Absent or unusable claims leave the stored values alone.
        let email = claimed_email.clone().or_else(|| profile.email.clone());
        let display_name = claimed_name.unwrap_or_else(|| profile.display_name.clone());
        // The provider vouches only for the address it names.
        let email_verified = claims.email_verified && email.is_some() && email == claimed_email;
        if created
            || (profile.email == email
                && profile.display_name == display_name
                && profile.email_verified == email_verified)
        {
            return Ok((profile, created));
        }
        let event = SecurityEvent::new(EventName::ProfileUpdated)
            .profile(profile.id)
            .actor(Actor::ExchangeToken)
            .paths(&["email", "display_name"])
            .client(caller.client_addr.as_deref());
        match store
            .sync_provider_fields(
                profile.id,
                profile.revision,
                email.as_deref(),
                email_verified,
                &display_name,
                &event.audit_row(),
            )
            .await?
        {
            Some(synced) => {
                event.emit_committed();
                Ok((synced, false))
            }
            None => Ok((profile, false)),
        }
    }
}

#[cfg(test)]
mod tests;
