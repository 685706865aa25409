//! Service principals: access tokens for other services, minted by
//! `identity admin issue-service-token` — for bootstrapping only, at most
//! 24 h. Services sign in with client credentials instead
//! (`service::service_clients`, AuthService.ServiceLogin).
//!
//! A service principal is an ordinary profile with `auth_provider` =
//! `service` and `auth_id` = its name, holding the role it was given. Each
//! token has a session of its own, so ValidateToken, Logout (with the token
//! as bearer) and DeleteProfile revoke it at once, and roles are read fresh
//! from the database on every call. Its refresh token is thrown away: a
//! service gets a new token by running the command again.

use crate::service::Error;
use crate::service::events::{Actor, Emit, EventName, SecurityEvent};
use crate::service::profile_change::ProfileChange;
use crate::service::profiles::{ADMIN_ROLE, NewProfile};
use chrono::{DateTime, SubsecRound, Utc};
use identity_core::roles::is_reserved_provider;
use identity_core::tokens::{AccessClaims, TokenKeys};
use identity_core::{Invalid, refresh, validation};
use identity_store::{Id, NewSession, Profile, Store};
use secrecy::SecretString;
use std::time::Duration;

pub use identity_core::roles::SERVICE_PROVIDER;
pub use identity_core::roles::{PROFILES_READ_ROLE, PROVISIONER_ROLE, REVOCATIONS_WATCH_ROLE};
/// Roles a service principal may hold. Never `admin`: admins are people
/// (IDENTITY_BOOTSTRAP_ADMINS, `identity admin grant-role`), and a service's
/// bearer token is copied into configuration where a person's is not.
pub const SERVICE_ROLES: &[&str] = identity_core::roles::SERVICE_ONLY_ROLES;
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// The cap of access tokens (IDENTITY_ACCESS_TOKEN_TTL): a self-contained
/// token is accepted by offline verifiers until it expires, whatever
/// happens to its session.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Checks a role for a service principal (`SERVICE_ROLES`).
pub fn service_role(role: &str) -> Result<(), Invalid> {
    if SERVICE_ROLES.contains(&role) {
        Ok(())
    } else if role == ADMIN_ROLE {
        Err(format!(
            "admin is for people (IDENTITY_BOOTSTRAP_ADMINS, identity admin grant-role), never for services; use one of: {}",
            SERVICE_ROLES.join(", ")
        )
        .into())
    } else {
        Err(format!("must be one of: {}", SERVICE_ROLES.join(", ")).into())
    }
}

/// Whether a non-admin caller may create `new`: it holds the provisioner
/// role, the profile is for an external provider (not `local` or
/// `service`) and it asks for no roles.
pub fn provisioner_may_create(caller: &Profile, new: &NewProfile) -> bool {
    caller.roles.iter().any(|r| r == PROVISIONER_ROLE)
        && new.patch.roles.is_empty()
        && !is_reserved_provider(&new.auth_provider)
}

/// A new service principal `name` holding `role`, and the event of its
/// creation (its audit row is written in the same transaction).
pub fn new_principal(name: &str, role: &str, now: DateTime<Utc>) -> (Profile, SecurityEvent) {
    let profile = Profile {
        display_name: format!("service {name}"),
        roles: vec![role.to_owned()],
        ..Profile::new(Id::new(), SERVICE_PROVIDER, name, now)
    };
    let event = SecurityEvent::new(EventName::ProfileCreated)
        .profile(profile.id)
        .actor(Actor::AdminCli)
        .roles(&profile.roles);
    (profile, event)
}

/// A minted service token.
pub struct ServiceToken {
    pub token: SecretString,
    pub profile: Profile,
    pub session_id: Id,
    pub expires_at: DateTime<Utc>,
}

/// Checks a service name: 1 to 64 of `a-z`, `0-9`, `.`, `_`, `-`.
pub fn service_name(name: &str) -> Result<String, Invalid> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(name.to_owned())
    } else {
        Err("must be 1 to 64 of a-z, 0-9, '.', '_', '-'".into())
    }
}

/// Finds or creates the service principal `name`, makes sure it holds
/// `role`, starts a session of `ttl` and signs its access token.
pub async fn issue(
    store: &Store,
    keys: &TokenKeys,
    name: &str,
    role: &str,
    ttl: Duration,
) -> Result<ServiceToken, Error> {
    let name = service_name(name).map_err(|d| Error::invalid("name", d))?;
    service_role(role).map_err(|d| Error::invalid("role", d))?;
    validation::roles(&[role.to_owned()]).map_err(|d| Error::invalid("role", d))?;
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(Error::invalid("ttl", "must be between 1m and 24h"));
    }
    let now = Utc::now().trunc_subsecs(6);

    let mut profile = match store.find_profile_by_auth(SERVICE_PROVIDER, &name).await? {
        Some(profile) => profile,
        None => {
            let (candidate, created) = new_principal(&name, role, now);
            match store.create_profile(&candidate, &created.audit_row()).await {
                Ok(()) => {
                    created.emit_committed();
                    candidate
                }
                Err(identity_store::StoreError::Conflict(_)) => store
                    .find_profile_by_auth(SERVICE_PROVIDER, &name)
                    .await?
                    .ok_or(Error::StaleEtag)?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    if profile.roles.iter().any(|r| service_role(r).is_err()) {
        // E.g. `admin`, from before services could not hold it: the token
        // would carry it.
        return Err(Error::invalid(
            "name",
            format!(
                "the service principal {} holds roles a service may not ({}); take them away first with identity admin revoke-role",
                profile.id,
                profile.roles.join(" ")
            ),
        ));
    }
    let mut change = ProfileChange::of(profile.clone());
    let roles = change.granting(role);
    change
        .set_roles(&roles, Actor::AdminCli, None)
        .map_err(|d| Error::invalid("role", d))?;
    if change.changes_roles() {
        profile = change.commit(store).await?.ok_or(Error::StaleEtag)?;
    }

    let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    let session = NewSession {
        id: Id::new(),
        profile_id: profile.id,
        created_at: now,
        expires_at,
        refresh_token_hash: refresh::generate().hash,
        origin: Default::default(),
    };
    let issued = SecurityEvent::new(EventName::ServiceTokenIssued)
        .profile(profile.id)
        .session(session.id)
        .role(role)
        .ttl_secs(ttl.as_secs());
    store
        .start_session(&session, None, &issued.audit_row())
        .await?;
    let claims = AccessClaims {
        iss: keys.issuer().to_owned(),
        aud: keys.audience().to_owned(),
        sub: profile.id.to_string(),
        iat: now.timestamp(),
        nbf: now.timestamp(),
        exp: expires_at.timestamp(),
        jti: Id::new().to_string(),
        sid: session.id.to_string(),
        roles: profile.roles.clone(),
        auth_provider: profile.auth_provider.clone(),
        auth_id: profile.auth_id.clone(),
    };
    let token = keys
        .sign(&claims)
        .map_err(|e| Error::Internal(e.to_string()))?;
    issued.emit_committed();
    Ok(ServiceToken {
        token: SecretString::from(token),
        profile,
        session_id: session.id,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::profiles::ProfilePatch;

    fn caller(roles: &[&str]) -> Profile {
        let now = Utc::now();
        Profile {
            id: Id::new(),
            auth_provider: SERVICE_PROVIDER.into(),
            auth_id: "hook".into(),
            email: None,
            display_name: String::new(),
            avatar_url: String::new(),
            locale: String::new(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            revision: 1,
            created_at: now,
            updated_at: now,
            email_verified: false,
        }
    }

    fn new(provider: &str, roles: &[&str]) -> NewProfile {
        NewProfile {
            auth_provider: provider.into(),
            auth_id: "u1".into(),
            patch: ProfilePatch {
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn provisioners_create_only_role_less_external_profiles() {
        let p = caller(&[PROVISIONER_ROLE]);
        assert!(provisioner_may_create(&p, &new("better-auth", &[])));
        assert!(!provisioner_may_create(&p, &new("better-auth", &["admin"])));
        assert!(!provisioner_may_create(&p, &new("local", &[])));
        assert!(!provisioner_may_create(&p, &new("service", &[])));
        for variant in ["Local", "SERVICE", " local ", "sErViCe"] {
            assert!(!provisioner_may_create(&p, &new(variant, &[])), "{variant}");
        }
        assert!(!provisioner_may_create(
            &caller(&[]),
            &new("better-auth", &[])
        ));
    }

    #[test]
    fn service_names_are_plain() {
        assert!(service_name("better-auth.hook_1").is_ok());
        for bad in ["", "Hook", "a b", "ü", &"x".repeat(65)] {
            assert!(service_name(bad).is_err(), "{bad}");
        }
    }
}
