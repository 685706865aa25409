//! The one way a stored profile is changed: UpdateProfile, a service token
//! that needs a role, and `identity admin grant-role|revoke-role` all build
//! a [`ProfileChange`] and commit it.
//!
//! Roles are privileges, so the rules live here once: role names as
//! `validation::roles` accepts them, never `admin` for a service principal
//! (`identity_core::roles`), one `identity.role.changed` event when they
//! differ. A commit is one new revision (so every etag read before it goes
//! stale) whose `updated_at` never goes back, even when another replica's
//! clock ran ahead; the store announces it to every replica in the same
//! transaction that writes the audit rows.

use crate::service::events::{Actor, Emit, EventName, SecurityEvent};
use chrono::{DateTime, SubsecRound, Utc};
use identity_core::{Invalid, roles, validation};
use identity_store::{Profile, Store, StoreError};

pub struct ProfileChange {
    current: Profile,
    /// The profile as it will be stored; use cases edit its other fields.
    pub next: Profile,
    events: Vec<SecurityEvent>,
}

impl ProfileChange {
    /// A change of `current`, the row as stored now (never a cached copy:
    /// its revision is what the commit compares).
    pub fn of(current: Profile) -> ProfileChange {
        ProfileChange {
            next: current.clone(),
            current,
            events: Vec::new(),
        }
    }

    pub fn current(&self) -> &Profile {
        &self.current
    }

    /// Makes `roles` the profile's roles, by the rules every path shares;
    /// what is wrong with them otherwise. Records `identity.role.changed`
    /// when they differ from the stored ones.
    pub fn set_roles(
        &mut self,
        roles: &[String],
        actor: Actor,
        client: Option<&str>,
    ) -> Result<(), Invalid> {
        let roles = validation::roles(roles)?;
        roles::check_for_provider(&self.current.auth_provider, &roles)?;
        self.events
            .retain(|event| event.name() != EventName::RoleChanged);
        if roles != self.current.roles {
            self.events.push(
                SecurityEvent::new(EventName::RoleChanged)
                    .profile(self.current.id)
                    .client(client)
                    .actor(actor)
                    .roles(&roles),
            );
        }
        self.next.roles = roles;
        Ok(())
    }

    /// The stored roles with `role` added.
    pub fn granting(&self, role: &str) -> Vec<String> {
        let mut roles = self.current.roles.clone();
        roles.push(role.to_owned());
        roles
    }

    /// The stored roles without `role`.
    pub fn revoking(&self, role: &str) -> Vec<String> {
        let mut roles = self.current.roles.clone();
        roles.retain(|r| r != role);
        roles
    }

    pub fn changes_roles(&self) -> bool {
        self.next.roles != self.current.roles
    }

    /// Another event the commit audits and then emits (e.g.
    /// `identity.profile.updated`).
    pub fn record(&mut self, event: SecurityEvent) {
        self.events.push(event);
    }

    /// Writes the change as the revision after the stored one, with the
    /// audit row of every event, in one transaction; then emits the events.
    /// `None` when the profile changed or went away since it was read.
    pub async fn commit(self, store: &Store) -> Result<Option<Profile>, StoreError> {
        self.commit_at(store, Utc::now()).await
    }

    async fn commit_at(
        mut self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Option<Profile>, StoreError> {
        self.next.revision = self.current.revision + 1;
        self.next.updated_at = next_updated_at(&self.current, now);
        let rows: Vec<_> = self.events.iter().map(SecurityEvent::audit_row).collect();
        if !store
            .update_profile(&self.next, self.current.revision, &rows)
            .await?
        {
            return Ok(None);
        }
        for event in self.events {
            event.emit_committed();
        }
        Ok(Some(self.next))
    }
}

/// `now` as stored (microseconds), but never before the stored time.
fn next_updated_at(current: &Profile, now: DateTime<Utc>) -> DateTime<Utc> {
    now.trunc_subsecs(6).max(current.updated_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity_core::Id;
    use identity_core::roles::{ADMIN_ROLE, SERVICE_PROVIDER};

    fn profile(provider: &str, roles: &[&str]) -> Profile {
        let now = Utc::now().trunc_subsecs(6);
        Profile {
            id: Id::new(),
            auth_provider: provider.into(),
            auth_id: "x".into(),
            email: None,
            display_name: String::new(),
            avatar_url: String::new(),
            locale: String::new(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            revision: 7,
            created_at: now,
            updated_at: now,
            email_verified: false,
        }
    }

    #[test]
    fn no_path_gives_a_service_principal_admin_however_it_is_spelled() {
        for provider in [SERVICE_PROVIDER, "Service", " SERVICE "] {
            let mut change = ProfileChange::of(profile(provider, &["provisioner"]));
            let admin = change.granting(ADMIN_ROLE);
            assert!(change.set_roles(&admin, Actor::AdminCli, None).is_err());
            assert!(!change.changes_roles(), "{provider}");
        }
        // Taking admin away from one that holds it (from an older version)
        // stays possible.
        let mut change = ProfileChange::of(profile(SERVICE_PROVIDER, &[ADMIN_ROLE]));
        let without = change.revoking(ADMIN_ROLE);
        change.set_roles(&without, Actor::AdminCli, None).unwrap();
        assert!(change.next.roles.is_empty());
    }

    #[test]
    fn roles_are_kept_sorted_once_and_only_a_real_change_is_an_event() {
        let mut change = ProfileChange::of(profile("local", &["b"]));
        let roles = change.granting("a");
        change
            .set_roles(&[roles, vec!["b".into()]].concat(), Actor::AdminCli, None)
            .unwrap();
        assert_eq!(change.next.roles, ["a", "b"]);
        assert_eq!(change.events.len(), 1);
        assert_eq!(change.events[0].audit_row().detail["roles"], "a b");
        assert_eq!(
            change.events[0].audit_row().detail["actor"],
            "identity admin"
        );
        let same = change.current().roles.clone();
        change.set_roles(&same, Actor::AdminCli, None).unwrap();
        assert!(!change.changes_roles());
        assert!(change.events.is_empty());
        assert!(
            change
                .set_roles(&["Bad Role".into()], Actor::AdminCli, None)
                .is_err()
        );
    }

    #[test]
    fn updated_at_never_goes_back_even_when_the_stored_time_is_ahead() {
        let mut ahead = profile("local", &[]);
        ahead.updated_at += chrono::Duration::hours(1);
        let now = Utc::now();
        assert_eq!(next_updated_at(&ahead, now), ahead.updated_at);
        let behind = profile("local", &[]);
        let later = behind.updated_at + chrono::Duration::nanoseconds(1_500);
        assert_eq!(
            next_updated_at(&behind, later),
            behind.updated_at + chrono::Duration::microseconds(1)
        );
    }
}
