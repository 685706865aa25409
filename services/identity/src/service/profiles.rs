//! ProfileService use cases and their authorization rules.
//!
//! Owners read, change and delete their own profile; the `admin` role may do
//! anything; only admins change roles, create profiles, list, or touch other
//! users. A non-admin asking about someone else gets NOT_FOUND, exactly as
//! for a profile that does not exist, so ids cannot be probed
//! (docs/decisions/0004).

use crate::service::Error;
use crate::service::audit::AuditSink;
use crate::service::auth::{Auth, Reauth};
use crate::service::events::{Actor, Emit, EventName, SecurityEvent};
use crate::service::paging::{self, PageSize};
use crate::service::profile_change::ProfileChange;
use crate::service::revocation::FastPath;
use chrono::{SubsecRound, Utc};
use identity_core::roles::{LOCAL_PROVIDER, RESERVED_PROVIDER_NAMES, is_reserved_provider};
use identity_core::tokens::{AccessClaims, TokenKeys};
use identity_core::{Violations, page_token, validation};
use identity_store::notify::Revoked;
use identity_store::{Id, Profile, Store};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

pub use identity_core::roles::ADMIN_ROLE;

/// The authenticated caller, from a fully verified access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub profile_id: Id,
    pub session_id: Id,
    pub client_addr: Option<String>,
}

impl Principal {
    pub fn from_claims(claims: &AccessClaims, client_addr: Option<String>) -> Option<Principal> {
        Some(Principal {
            profile_id: Id::parse(&claims.sub)?,
            session_id: Id::parse(&claims.sid)?,
            client_addr,
        })
    }
}

/// New values for an update; only the paths in the mask are read.
#[derive(Debug, Clone, Default)]
pub struct ProfilePatch {
    pub email: String,
    pub display_name: String,
    pub avatar_url: String,
    pub locale: String,
    pub roles: Vec<String>,
}

/// A profile to create (admin).
#[derive(Debug, Clone, Default)]
pub struct NewProfile {
    pub auth_provider: String,
    pub auth_id: String,
    pub patch: ProfilePatch,
}

pub const MUTABLE_PATHS: &[&str] = &["display_name", "avatar_url", "locale", "email", "roles"];

pub struct Profiles {
    store: Store,
    keys: Arc<TokenKeys>,
    audit: AuditSink,
    reauth: Arc<Auth>,
    fast: Arc<FastPath>,
}

fn now() -> chrono::DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// `me` or a canonical UUID.
fn target(principal: &Principal, id: &str, field: &str) -> Result<Id, Error> {
    if id == "me" {
        return Ok(principal.profile_id);
    }
    Id::parse(id).ok_or_else(|| Error::invalid(field, "must be a profile id (UUID) or `me`"))
}

/// Parses `auth_provider="name"`, the one filter ListProfiles understands.
fn parse_filter(filter: &str) -> Result<Option<String>, Error> {
    let filter = filter.trim();
    if filter.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("filter", r#"supported: auth_provider="<name>""#);
    let (key, value) = filter.split_once('=').ok_or_else(invalid)?;
    let value = value.trim();
    if key.trim() != "auth_provider"
        || value.len() < 2
        || !value.starts_with('"')
        || !value.ends_with('"')
    {
        return Err(invalid());
    }
    let name = &value[1..value.len() - 1];
    validation::auth_field(name).map_err(|d| Error::invalid("filter", d))?;
    Ok(Some(name.to_owned()))
}

impl Profiles {
    /// `reauth` verifies the password of owners deleting their account;
    /// `fast` is the validation memory that changes and deletions must
    /// update (the one of `Auth`).
    pub fn new(
        store: Store,
        keys: Arc<TokenKeys>,
        audit: AuditSink,
        reauth: Arc<Auth>,
        fast: Arc<FastPath>,
    ) -> Self {
        Profiles {
            store,
            keys,
            audit,
            reauth,
            fast,
        }
    }

    fn denied(
        &self,
        caller: &Profile,
        action: &'static str,
        target: Option<Id>,
        principal: &Principal,
    ) {
        crate::service::events::access_denied(
            &self.audit,
            caller.id,
            principal.client_addr.as_deref(),
            action,
            target.map(|t| t.to_string()),
        );
    }

    /// Roles are read from the stored profile, not the token, so a revoked
    /// admin role takes effect at once on this replica and within the
    /// revocation bound on the others, rather than when the token expires
    /// (the cache follows the same announcements; docs/decisions/0005).
    async fn caller(&self, principal: &Principal) -> Result<Profile, Error> {
        self.fast
            .profile(&self.store, principal.profile_id)
            .await?
            .ok_or(Error::Unauthenticated)
    }

    /// Succeeds for an admin; anyone else is refused (and recorded) as
    /// attempting `action`.
    pub async fn require_admin(
        &self,
        principal: &Principal,
        action: &'static str,
    ) -> Result<(), Error> {
        let caller = self.caller(principal).await?;
        if Self::is_admin(&caller) {
            return Ok(());
        }
        self.denied(&caller, action, None, principal);
        Err(Error::PermissionDenied)
    }

    fn is_admin(profile: &Profile) -> bool {
        identity_core::roles::acts_as_admin(&profile.auth_provider, &profile.roles)
    }

    fn reads_every_profile(profile: &Profile) -> bool {
        identity_core::roles::reads_every_profile(&profile.auth_provider, &profile.roles)
    }

    /// The profile if the caller may see it (`action` "get") or change it;
    /// NOT_FOUND otherwise, except for a `profiles:read` service, which
    /// knows every profile exists: PERMISSION_DENIED for anything but reading.
    async fn visible(
        &self,
        principal: &Principal,
        caller: &Profile,
        id: Id,
        action: &'static str,
    ) -> Result<Profile, Error> {
        if caller.id == id {
            return Ok(caller.clone());
        }
        let reader = Self::reads_every_profile(caller);
        let allowed = Self::is_admin(caller) || (reader && action == "get");
        if !allowed {
            self.denied(caller, action, Some(id), principal);
            return Err(if reader {
                Error::PermissionDenied
            } else {
                Error::NotFound
            });
        }
        self.fast
            .profile(&self.store, id)
            .await?
            .ok_or(Error::NotFound)
    }

    /// The row as stored now, never a cached copy: what a write compares
    /// its etag with.
    async fn stored(&self, id: Id) -> Result<Profile, Error> {
        self.store.find_profile(id).await?.ok_or(Error::NotFound)
    }

    pub async fn get(&self, principal: &Principal, id: &str) -> Result<Profile, Error> {
        let id = target(principal, id, "id")?;
        let caller = self.caller(principal).await?;
        self.visible(principal, &caller, id, "get").await
    }

    pub async fn lookup(
        &self,
        principal: &Principal,
        provider: &str,
        auth_id: &str,
    ) -> Result<Profile, Error> {
        let mut violations = Violations::new();
        let provider = violations.check("auth_provider", validation::auth_field(provider));
        let auth_id = violations.check("auth_id", validation::auth_field(auth_id));
        violations.into_result()?;
        let caller = self.caller(principal).await?;
        let found = self
            .store
            .find_profile_by_auth(&provider.unwrap_or_default(), &auth_id.unwrap_or_default())
            .await?
            .ok_or(Error::NotFound)?;
        if found.id == caller.id || Self::is_admin(&caller) || Self::reads_every_profile(&caller) {
            Ok(found)
        } else {
            self.denied(&caller, "lookup", Some(found.id), principal);
            Err(Error::NotFound)
        }
    }

    fn validate_patch(
        violations: &mut Violations,
        patch: &ProfilePatch,
        paths: &[&str],
    ) -> ProfilePatch {
        let mut clean = ProfilePatch::default();
        for path in paths {
            let field = format!("profile.{path}");
            match *path {
                "display_name" => {
                    clean.display_name = violations
                        .check(&field, validation::display_name(&patch.display_name, true))
                        .unwrap_or_default()
                }
                "avatar_url" => {
                    clean.avatar_url = violations
                        .check(&field, validation::avatar_url(&patch.avatar_url))
                        .unwrap_or_default()
                }
                "locale" => {
                    clean.locale = violations
                        .check(&field, validation::locale(&patch.locale))
                        .unwrap_or_default()
                }
                "email" => {
                    clean.email = if patch.email.is_empty() {
                        String::new()
                    } else {
                        violations
                            .check(&field, validation::email(&patch.email))
                            .unwrap_or_default()
                    }
                }
                "roles" => {
                    clean.roles = violations
                        .check(&field, validation::roles(&patch.roles))
                        .unwrap_or_default()
                }
                _ => {}
            }
        }
        clean
    }

    pub async fn create(&self, principal: &Principal, new: NewProfile) -> Result<Profile, Error> {
        let caller = self.caller(principal).await?;
        if !Self::is_admin(&caller) && !super::service_token::provisioner_may_create(&caller, &new)
        {
            self.denied(&caller, "create", None, principal);
            return Err(Error::PermissionDenied);
        }
        let mut violations = Violations::new();
        let provider = violations.check(
            "profile.auth_provider",
            validation::auth_field(&new.auth_provider),
        );
        if provider
            .as_deref()
            .is_some_and(|p| is_reserved_provider(p) && !RESERVED_PROVIDER_NAMES.contains(&p))
        {
            violations.check::<()>(
                "profile.auth_provider",
                Err("is another spelling of a reserved name (`local`, `service`)".into()),
            );
        }
        let auth_id = violations.check("profile.auth_id", validation::auth_field(&new.auth_id));
        let mut paths = vec!["avatar_url", "locale", "email", "roles"];
        if !new.patch.display_name.is_empty() {
            paths.push("display_name");
        }
        let clean = Self::validate_patch(&mut violations, &new.patch, &paths);
        violations.check(
            "profile.roles",
            identity_core::roles::check_for_provider(&new.auth_provider, &clean.roles),
        );
        violations.into_result()?;
        let now = now();
        let profile = Profile {
            email: (!clean.email.is_empty()).then_some(clean.email),
            display_name: clean.display_name,
            avatar_url: clean.avatar_url,
            locale: clean.locale,
            roles: clean.roles,
            ..Profile::new(
                Id::new(),
                &provider.unwrap_or_default(),
                &auth_id.unwrap_or_default(),
                now,
            )
        };
        let event = SecurityEvent::new(EventName::ProfileCreated)
            .profile(profile.id)
            .actor(Actor::Profile(caller.id))
            .client(principal.client_addr.as_deref());
        self.store
            .create_profile(&profile, &event.audit_row())
            .await
            .map_err(|e| match Error::from(e) {
                Error::AlreadyExists(_) => Error::AlreadyExists("auth_provider and auth_id"),
                other => other,
            })?;
        event.emit_committed();
        Ok(profile)
    }

    pub async fn update(
        &self,
        principal: &Principal,
        id: &str,
        etag: &str,
        patch: ProfilePatch,
        mask: &[String],
    ) -> Result<Profile, Error> {
        let id = target(principal, id, "profile.id")?;
        let mut violations = Violations::new();
        if mask.is_empty() {
            violations.check::<()>("update_mask", Err("must name at least one path".into()));
        }
        let mut paths: Vec<&str> = Vec::new();
        for path in mask {
            match MUTABLE_PATHS.iter().find(|p| **p == path.as_str()) {
                Some(p) if !paths.contains(p) => paths.push(p),
                Some(_) => {}
                None => {
                    violations.check::<()>(
                        "update_mask",
                        Err(format!(
                            "`{path}` cannot be updated; updatable: {}",
                            MUTABLE_PATHS.join(", ")
                        )
                        .into()),
                    );
                }
            }
        }
        let expected = if etag.is_empty() {
            violations.check::<()>(
                "profile.etag",
                Err("is required (from the last read)".into()),
            );
            None
        } else {
            Profile::revision_of_etag(etag)
        };
        let clean = Self::validate_patch(&mut violations, &patch, &paths);
        violations.into_result()?;

        let caller = self.caller(principal).await?;
        self.visible(principal, &caller, id, "update").await?;
        let mut change = ProfileChange::of(self.stored(id).await?);
        let current = change.current().clone();
        let admin = Self::is_admin(&caller);
        if paths.contains(&"roles") && !admin {
            self.denied(&caller, "change_roles", Some(id), principal);
            return Err(Error::PermissionDenied);
        }
        // A local profile's email is its login: renaming it with an access
        // token alone would hand the account to whoever stole the token (and
        // ALREADY_EXISTS would enumerate accounts). Owners use ChangeEmail.
        if paths.contains(&"email") && !admin && current.auth_provider == LOCAL_PROVIDER {
            return Err(Error::FailedPrecondition(
                "the login email of a password account changes only through \
                 AuthService.ChangeEmail, with the current password",
            ));
        }
        let client = principal.client_addr.as_deref();
        if paths.contains(&"roles") {
            change
                .set_roles(&clean.roles, Actor::Profile(caller.id), client)
                .map_err(|d| Error::invalid("profile.roles", d))?;
        }
        if expected != Some(current.revision) {
            return Err(Error::StaleEtag);
        }
        let next = &mut change.next;
        for path in &paths {
            match *path {
                "display_name" => next.display_name = clean.display_name.clone(),
                "avatar_url" => next.avatar_url = clean.avatar_url.clone(),
                "locale" => next.locale = clean.locale.clone(),
                "email" => {
                    next.email = (!clean.email.is_empty()).then(|| clean.email.clone());
                    // As stored: the provider vouched for the old address only.
                    next.email_verified &= next.email == current.email;
                }
                // Set above, by the rules of every role change.
                _ => {}
            }
        }
        change.record(
            SecurityEvent::new(EventName::ProfileUpdated)
                .profile(current.id)
                .actor(Actor::Profile(caller.id))
                .paths(&paths)
                .client(client),
        );
        let updated = change.commit(&self.store).await;
        // Whatever the outcome (a lost race, an error after an ambiguous
        // commit), this replica's copy may be stale: drop it first.
        self.fast.revoked(Revoked::ProfileChanged(current.id));
        updated?.ok_or(Error::StaleEtag)
    }

    pub async fn delete(
        &self,
        principal: &Principal,
        id: &str,
        etag: &str,
        current_password: SecretString,
    ) -> Result<(), Error> {
        let id = target(principal, id, "id")?;
        let caller = self.caller(principal).await?;
        self.visible(principal, &caller, id, "delete").await?;
        let current = self.stored(id).await?;
        // A stolen access token must not be enough to destroy a password
        // account; admins deleting profiles (their own included) need none.
        if id == caller.id && !Self::is_admin(&caller) && current.auth_provider == LOCAL_PROVIDER {
            if current_password.expose_secret().is_empty() {
                return Err(Error::invalid(
                    "current_password",
                    "is required to delete your own account",
                ));
            }
            self.reauth
                .reverify(principal, Reauth::DeleteAccount, current_password)
                .await?;
        }
        let expected = if etag.is_empty() {
            None
        } else {
            match Profile::revision_of_etag(etag) {
                Some(r) if r == current.revision => Some(r),
                _ => return Err(Error::StaleEtag),
            }
        };
        let event = SecurityEvent::new(EventName::ProfileDeleted)
            .profile(id)
            .actor(Actor::Profile(caller.id))
            .client(principal.client_addr.as_deref());
        let deleted = self
            .store
            .delete_profile(id, expected, &event.audit_row())
            .await;
        self.fast.revoked(Revoked::ProfileChanged(id));
        if !deleted? {
            return Err(if expected.is_some() {
                Error::StaleEtag
            } else {
                Error::NotFound
            });
        }
        self.fast.revoked(Revoked::Profile {
            profile: id,
            except: None,
        });
        event.emit_committed();
        Ok(())
    }

    pub async fn list(
        &self,
        principal: &Principal,
        page_size: i32,
        page_token: &str,
        filter: &str,
    ) -> Result<(Vec<Profile>, String), Error> {
        let mut violations = Violations::new();
        let size = PageSize::check(&mut violations, page_size);
        let provider = match parse_filter(filter) {
            Ok(p) => p,
            Err(Error::Invalid(v)) => {
                for fv in v {
                    violations.check::<()>(&fv.field, Err(fv.description.into()));
                }
                None
            }
            Err(e) => return Err(e),
        };
        let query = provider
            .as_deref()
            .map_or(String::new(), |p| format!("auth_provider={p}"));
        let key = self.keys.internal_mac_key();
        let after = paging::position(&mut violations, key, page_token, &query, "query", Id::parse);
        violations.into_result()?;
        let caller = self.caller(principal).await?;
        if !Self::is_admin(&caller) {
            self.denied(&caller, "list", None, principal);
            return Err(Error::PermissionDenied);
        }
        let mut rows = self
            .store
            .list_profiles(after, provider.as_deref(), size.fetch())
            .await?;
        let next = size.cut(&mut rows, |p| {
            page_token::encode(key, &p.id.to_string(), &query)
        });
        Ok((rows, next))
    }
}

#[cfg(test)]
mod tests;
