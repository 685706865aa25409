//! ExchangeToken: a token from the external provider (Better-Auth) for a
//! token pair of ours (RFC 8693 in spirit).
//!
//! The provider's JWT is verified against its JWK set (`provider`), the
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
//! its roles change) the stored values win for good.

use crate::domain::provider::{ProviderClaims, TOKEN_TYPE_JWT, profile_fields};
use crate::domain::tokens::MAX_TOKEN_BYTES;
use crate::domain::{Error, Violations, validation};
use crate::provider::{ProviderVerifier, VerifyFailure};
use crate::service::{Auth, Caller, IssuedTokens};
use crate::store::{AuditEvent, Id, Profile};
use chrono::{SubsecRound, Utc};
use std::sync::Arc;

/// Accepted `subject_token_type` values; empty means a JWT.
pub const ACCEPTED_TOKEN_TYPES: &[&str] = &["", TOKEN_TYPE_JWT];

/// The result of an exchange.
pub struct Exchanged {
    pub profile: Profile,
    pub tokens: IssuedTokens,
    /// Whether this exchange created the profile.
    pub created: bool,
}

pub struct TokenExchange {
    auth: Arc<Auth>,
    verifier: Arc<ProviderVerifier>,
    provider: String,
}

impl TokenExchange {
    pub fn new(auth: Arc<Auth>, verifier: Arc<ProviderVerifier>, provider: String) -> Self {
        TokenExchange {
            auth,
            verifier,
            provider,
        }
    }

    pub fn provider_name(&self) -> &str {
        &self.provider
    }

    async fn refused(&self, caller: &Caller, reason: &'static str) -> Error {
        security_event!(
            "identity.exchange.refused",
            token.kind = "provider",
            reason = reason,
            auth.provider = %self.provider,
            client.address = caller.client_addr.as_deref()
        );
        let audit = AuditEvent::new("identity.exchange.refused")
            .client(caller.client_addr.as_deref())
            .detail("reason", reason)
            .detail("provider", self.provider.as_str());
        // Best effort: a refused token is refused whether or not the
        // audit row can be written.
        if let Err(e) = self.auth.store().record_audit(&audit).await {
            tracing::warn!(error = %e, "audit row for a refused exchange not written");
        }
        if reason == "provider_unavailable" {
            Error::Unavailable
        } else {
            Error::Unauthenticated
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
                Err(format!("must be {TOKEN_TYPE_JWT} (or empty)")),
            );
        }
        violations.into_result()?;
        self.auth
            .limit(crate::domain::rate_limit::Action::Exchange, caller, None)
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

        let (profile, created) = self.provision(caller, &claims).await?;
        // The sync may have rewritten email and display name.
        self.auth.profile_changed(profile.id);

        let now = Utc::now();
        let (session, refresh_token) = self.auth.new_session(profile.id, now);
        let audit = AuditEvent::new("identity.exchange.succeeded")
            .profile(profile.id)
            .session(session.id)
            .client(caller.client_addr.as_deref())
            .detail("provider", self.provider.as_str())
            .detail("created", created);
        self.auth
            .store()
            .start_session(&session, None, &audit)
            .await?;
        security_event!(
            "identity.exchange.succeeded",
            profile.id = %profile.id,
            session.id = %session.id,
            auth.provider = %self.provider,
            created = created,
            client.address = caller.client_addr.as_deref()
        );
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
        let store = self.auth.store();
        let existing = store
            .find_profile_by_auth(&self.provider, &claims.sub)
            .await?;
        let (profile, created) = match existing {
            Some(profile) => (profile, false),
            None => {
                let now = Utc::now().trunc_subsecs(6);
                let candidate = Profile {
                    id: Id::new(),
                    auth_provider: self.provider.clone(),
                    auth_id: claims.sub.clone(),
                    email: claimed_email.clone(),
                    display_name: claimed_name.clone().unwrap_or_default(),
                    avatar_url: String::new(),
                    locale: String::new(),
                    roles: Vec::new(),
                    revision: 1,
                    created_at: now,
                    updated_at: now,
                };
                let audit = AuditEvent::new("identity.profile.created")
                    .profile(candidate.id)
                    .client(caller.client_addr.as_deref())
                    .detail("actor", "ExchangeToken")
                    .detail("provider", self.provider.as_str());
                let (profile, created) = store.provision_profile(&candidate, &audit).await?;
                if created {
                    security_event!(
                        "identity.profile.created",
                        profile.id = %profile.id,
                        auth.provider = %self.provider,
                        actor = "ExchangeToken"
                    );
                }
                (profile, created)
            }
        };
        // Absent or unusable claims leave the stored values alone.
        let email = claimed_email.or_else(|| profile.email.clone());
        let display_name = claimed_name.unwrap_or_else(|| profile.display_name.clone());
        if created || (profile.email == email && profile.display_name == display_name) {
            return Ok((profile, created));
        }
        let audit = AuditEvent::new("identity.profile.updated")
            .profile(profile.id)
            .client(caller.client_addr.as_deref())
            .detail("actor", "ExchangeToken")
            .detail("paths", "email,display_name");
        match store
            .sync_provider_fields(
                profile.id,
                profile.revision,
                email.as_deref(),
                &display_name,
                &audit,
            )
            .await?
        {
            Some(synced) => Ok((synced, false)),
            None => Ok((profile, false)),
        }
    }
}
