//! The Sessions API: ListSessions, RevokeSession and RevokeAllSessions.
//!
//! Authorization follows ProfileService (docs/decisions/0004): owners see
//! and end their own sessions, admins anyone's, and another user's session
//! or profile is NOT_FOUND exactly like one that does not exist. A caller
//! holding `provisioner` may end every session of a profile of an external
//! provider, named by (auth_provider, auth_id): the provider's user-delete
//! and ban hooks (docs/decisions/0009). Every revocation is audited and
//! announced in its transaction, so every replica refuses at once.

use super::Auth;
use crate::service::Error;
use crate::service::events::{Actor, Emit, EventName, SecurityEvent};
use crate::service::paging::{self, PageSize};
use crate::service::profiles::Principal;
use crate::service::service_token::PROVISIONER_ROLE;
use chrono::{DateTime, Utc};
use identity_core::client_key::coarse_address;
use identity_core::roles::is_reserved_provider;
use identity_core::{Invalid, Violations, page_token, validation};
use identity_store::notify::Revoked;
use identity_store::{Id, Profile};

/// A live session as ListSessions answers it: no token, no hash, and the
/// client address full only for admins.
#[derive(Debug, Clone)]
pub struct ListedSession {
    pub id: Id,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

/// Whose sessions RevokeAllSessions ends, as the request names them.
#[derive(Debug, Clone, Copy)]
pub struct RevokeAll<'a> {
    pub profile_id: &'a str,
    pub auth_provider: &'a str,
    pub auth_id: &'a str,
    pub keep_current: bool,
}

/// Empty or `me` for the caller, else a canonical profile id.
fn profile_target(principal: &Principal, id: &str) -> Result<Id, Invalid> {
    if id.is_empty() || id == "me" {
        return Ok(principal.profile_id);
    }
    Id::parse(id).ok_or_else(|| "must be a profile id (UUID), `me` or empty".into())
}

fn has_role(profile: &Profile, role: &str) -> bool {
    profile.roles.iter().any(|r| r == role)
}

fn is_admin(profile: &Profile) -> bool {
    identity_core::roles::acts_as_admin(&profile.auth_provider, &profile.roles)
}

/// The page-token query: a token walks one profile's sessions only.
fn page_query(profile: Id) -> String {
    format!("sessions:profile={profile}")
}

impl Auth {
    /// The caller's profile as stored now (roles are privileges; read like
    /// every authorization check, docs/decisions/0005).
    async fn caller_profile(&self, principal: &Principal) -> Result<Profile, Error> {
        self.fast
            .profile(&self.store, principal.profile_id)
            .await?
            .ok_or(Error::Unauthenticated)
    }

    fn sessions_denied(
        &self,
        caller: &Profile,
        principal: &Principal,
        action: &'static str,
        target: Option<String>,
    ) {
        crate::service::events::access_denied(
            &self.audit,
            caller.id,
            principal.client_addr.as_deref(),
            action,
            target,
        );
    }

    /// `target` if the caller may act on its sessions: its own, or any
    /// existing profile for an admin; NOT_FOUND otherwise.
    async fn sessions_owner(
        &self,
        principal: &Principal,
        caller: &Profile,
        target: Id,
        action: &'static str,
    ) -> Result<Id, Error> {
        if target == caller.id {
            return Ok(target);
        }
        if !is_admin(caller) {
            self.sessions_denied(caller, principal, action, Some(target.to_string()));
            // A profiles:read service knows the profile exists: hiding it
            // behind NOT_FOUND would only mislead.
            let reader =
                identity_core::roles::reads_every_profile(&caller.auth_provider, &caller.roles);
            return Err(if reader {
                Error::PermissionDenied
            } else {
                Error::NotFound
            });
        }
        match self.fast.profile(&self.store, target).await? {
            Some(_) => Ok(target),
            None => Err(Error::NotFound),
        }
    }

    pub async fn list_sessions(
        &self,
        principal: &Principal,
        profile_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<ListedSession>, String), Error> {
        let mut violations = Violations::new();
        let size = PageSize::check(&mut violations, page_size);
        let target = violations.check("profile_id", profile_target(principal, profile_id));
        let key = self.keys.internal_mac_key();
        // Without a valid target the token cannot be judged.
        let before = target.and_then(|target| {
            paging::position(
                &mut violations,
                key,
                page_token,
                &page_query(target),
                "query",
                Id::parse,
            )
        });
        violations.into_result()?;
        let target = target.unwrap_or(principal.profile_id);
        let caller = self.caller_profile(principal).await?;
        let target = self
            .sessions_owner(principal, &caller, target, "list_sessions")
            .await?;
        let admin = is_admin(&caller);
        let mut rows = self
            .store
            .list_sessions(target, before, size.fetch())
            .await?;
        let next = size.cut(&mut rows, |s| {
            page_token::encode(key, &s.id.to_string(), &page_query(target))
        });
        let listed = rows
            .into_iter()
            .map(|s| ListedSession {
                id: s.id,
                created_at: s.created_at,
                last_used_at: s.last_used_at.unwrap_or(s.created_at),
                expires_at: s.expires_at,
                client_address: match s.client_addr {
                    Some(addr) if admin => Some(addr),
                    Some(addr) => coarse_address(&addr),
                    None => None,
                },
                user_agent: s.user_agent,
                current: s.id == principal.session_id,
            })
            .collect();
        Ok((listed, next))
    }

    pub async fn revoke_one_session(
        &self,
        principal: &Principal,
        session_id: &str,
    ) -> Result<(), Error> {
        let id = validation::required(session_id, 64)
            .map_err(|d| Error::invalid("session_id", d))
            .and_then(|s| {
                Id::parse(s)
                    .ok_or_else(|| Error::invalid("session_id", "must be a session id (UUID)"))
            })?;
        let caller = self.caller_profile(principal).await?;
        let admin = is_admin(&caller);
        let session = self.store.find_session(id).await?.ok_or(Error::NotFound)?;
        let own = session.profile_id == caller.id;
        if !own && !admin {
            self.sessions_denied(&caller, principal, "revoke_session", Some(id.to_string()));
            return Err(Error::NotFound);
        }
        let reason = if own {
            "revoked_by_owner"
        } else {
            "revoked_by_admin"
        };
        let event = SecurityEvent::new(EventName::SessionRevoked)
            .profile(session.profile_id)
            .session(id)
            .reason(reason)
            .actor(Actor::Profile(caller.id))
            .client(principal.client_addr.as_deref());
        let revoked = self
            .store
            .revoke_session(id, reason, &event.audit_row())
            .await?;
        self.fast.revoked(Revoked::Session(id));
        if revoked {
            event.emit_committed();
        }
        Ok(())
    }

    /// Ends every session of the named profile (but the caller's own with
    /// `keep_current`); the number ended.
    pub async fn revoke_all_sessions(
        &self,
        principal: &Principal,
        request: RevokeAll<'_>,
    ) -> Result<usize, Error> {
        let by_account = !request.auth_provider.is_empty() || !request.auth_id.is_empty();
        let caller;
        let target = if by_account {
            let mut violations = Violations::new();
            if !request.profile_id.is_empty() {
                violations.check::<()>(
                    "profile_id",
                    Err(
                        "name the profile by profile_id or by (auth_provider, auth_id), not both"
                            .into(),
                    ),
                );
            }
            let provider = violations.check(
                "auth_provider",
                validation::auth_field(request.auth_provider),
            );
            let auth_id = violations.check("auth_id", validation::auth_field(request.auth_id));
            violations.into_result()?;
            let (provider, auth_id) = (provider.unwrap_or_default(), auth_id.unwrap_or_default());
            caller = self.caller_profile(principal).await?;
            // Decided before any lookup, so the answer says nothing about
            // which accounts exist: forbidden whatever the target (0004).
            let allowed = is_admin(&caller)
                || (has_role(&caller, PROVISIONER_ROLE) && !is_reserved_provider(&provider));
            if !allowed {
                self.sessions_denied(
                    &caller,
                    principal,
                    "revoke_all_sessions",
                    Some(format!("auth_provider:{provider}")),
                );
                return Err(Error::PermissionDenied);
            }
            self.store
                .find_profile_by_auth(&provider, &auth_id)
                .await?
                .ok_or(Error::NotFound)?
                .id
        } else {
            let target = profile_target(principal, request.profile_id)
                .map_err(|d| Error::invalid("profile_id", d))?;
            caller = self.caller_profile(principal).await?;
            self.sessions_owner(principal, &caller, target, "revoke_all_sessions")
                .await?
        };
        let reason = if target == caller.id {
            "revoked_by_owner"
        } else if is_admin(&caller) {
            "revoked_by_admin"
        } else {
            "revoked_by_provisioner"
        };
        let except = (request.keep_current && target == caller.id).then_some(principal.session_id);
        let event = SecurityEvent::new(EventName::SessionRevokedAll)
            .profile(target)
            .reason(reason)
            .actor(Actor::Profile(caller.id))
            .kept_current(except.is_some())
            .client(principal.client_addr.as_deref());
        // The store adds the count to the row: only it knows the number.
        let revoked = self
            .store
            .revoke_all_sessions(target, except, reason, &event.audit_row())
            .await?;
        self.fast.revoked(Revoked::Profile {
            profile: target,
            except,
        });
        if revoked > 0 {
            event.count(revoked as u64).emit_committed();
        }
        Ok(revoked)
    }
}
