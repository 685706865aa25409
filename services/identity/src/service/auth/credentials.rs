//! A signed-in user's credentials: the password checked again before a
//! sensitive change, ChangeEmail and ChangePassword.

use super::{Auth, Caller, Reauth, busy, throttled};
use crate::service::Error;
use crate::service::events::{Emit, EventName, SecurityEvent};
use crate::service::profiles::Principal;
use identity_core::rate_limit::Action;
use identity_core::throttle::Attempt;
use identity_core::{Violations, passwords, validation};
use identity_store::notify::Revoked;
use secrecy::{ExposeSecret, SecretString};
use std::time::Instant;

impl Auth {
    /// Verifies the signed-in user's current password before a sensitive
    /// change (password, email, deletion): Login's per-address quota and
    /// throttle, keyed by the profile, so a stolen access token is no
    /// password oracle. Answers the verified hash, for the change to compare
    /// under its lock.
    pub async fn reverify(
        &self,
        principal: &Principal,
        purpose: Reauth,
        current: SecretString,
    ) -> Result<String, Error> {
        passwords::check_presented(current.expose_secret())
            .map_err(|d| Error::invalid("current_password", d))?;
        let profile = principal.profile_id;
        let caller = Caller::from(principal);
        let refused = |reason: &'static str| {
            purpose
                .refused_event()
                .profile(profile)
                .session(principal.session_id)
                .client(caller.addr())
                .reason(reason)
                .emit(&self.audit);
        };
        let client = self.client_key(&caller);
        self.limit_keys(Action::Login, &caller, client.as_deref(), None)
            .await?;
        // Accounts from an external provider have no password here.
        let stored = self.store.password_hash_of(profile).await?;
        let attempt = Attempt::Unknown {
            client: client.as_deref().unwrap_or("unknown"),
        };
        // The same counters as Login's for this account: guesses through
        // Login and through re-verification add up to one budget.
        let account = match self
            .fast
            .profile(&self.store, profile)
            .await?
            .and_then(|p| p.email)
        {
            Some(email) => self.keys.pseudonym(&email),
            None => format!("profile:{profile}"),
        };
        let reservation = self
            .throttle
            .reserve(&account, attempt, Instant::now())
            .map_err(|wait| {
                refused("throttled");
                throttled(wait)
            })?;
        let ok = match self
            .hasher
            .verify(current, stored.clone(), self.hash_deadline(&caller))
            .await
        {
            Ok(ok) => ok,
            Err(e) => {
                self.throttle.release(reservation);
                return Err(busy(e));
            }
        };
        let Some(stored) = stored.filter(|_| ok) else {
            // The reservation stands as this failure.
            drop(reservation);
            refused("bad_password");
            return Err(Error::InvalidCredentials);
        };
        self.throttle.succeeded(reservation);
        Ok(stored)
    }

    /// Moves the login to `new_email` after the password was verified again,
    /// and ends every other session: whoever holds them lost the account's
    /// old address.
    pub async fn change_email(
        &self,
        principal: &Principal,
        current: SecretString,
        new_email: &str,
    ) -> Result<(), Error> {
        let mut violations = Violations::new();
        violations.check(
            "current_password",
            passwords::check_presented(current.expose_secret()),
        );
        let new_email = violations.check("new_email", validation::email(new_email));
        violations.into_result()?;
        let new_email = new_email.unwrap_or_default();
        let verified = self
            .reverify(principal, Reauth::ChangeEmail, current)
            .await?;
        let (profile, session) = (principal.profile_id, principal.session_id);
        let event = SecurityEvent::new(EventName::EmailChanged)
            .profile(profile)
            .session(session)
            .client(principal.client_addr.as_deref())
            .email_pseudonym(self.keys.pseudonym(&new_email));
        let changed = self
            .store
            .change_email(profile, &verified, &new_email, session, &event.audit_row())
            .await;
        // Whatever the outcome, this replica's copy may be stale.
        self.fast.revoked(Revoked::ProfileChanged(profile));
        match changed {
            Ok(true) => {}
            // The password changed since it was verified: retry.
            Ok(false) => return Err(Error::StaleEtag),
            Err(e) => {
                return Err(match Error::from(e) {
                    Error::AlreadyExists(_) => Error::AlreadyExists("new_email"),
                    other => other,
                });
            }
        }
        self.fast.revoked(Revoked::Profile {
            profile,
            except: Some(session),
        });
        event.emit_committed();
        Ok(())
    }

    pub async fn change_password(
        &self,
        principal: &Principal,
        current: SecretString,
        new: SecretString,
    ) -> Result<(), Error> {
        let mut violations = Violations::new();
        violations.check(
            "current_password",
            passwords::check_presented(current.expose_secret()),
        );
        let profile_email = self
            .store
            .find_profile(principal.profile_id)
            .await?
            .and_then(|p| p.email)
            .unwrap_or_default();
        violations.check(
            "new_password",
            passwords::check_new(
                new.expose_secret(),
                &profile_email,
                "",
                self.settings.password_min_score,
            ),
        );
        if !current.expose_secret().is_empty() && current.expose_secret() == new.expose_secret() {
            violations.check::<()>(
                "new_password",
                Err("must differ from the current password".into()),
            );
        }
        violations.into_result()?;

        let (profile, session) = (principal.profile_id, principal.session_id);
        let caller = Caller::from(principal);
        let stored = self
            .reverify(principal, Reauth::ChangePassword, current)
            .await?;
        let new_hash = self
            .hasher
            .hash(new, self.hash_deadline(&caller))
            .await
            .map_err(busy)?;
        let event = SecurityEvent::new(EventName::PasswordChanged)
            .profile(profile)
            .session(session)
            .client(caller.addr());
        if !self
            .store
            .change_password(profile, &stored, &new_hash, session, &event.audit_row())
            .await?
        {
            // Changed concurrently by another call: make the caller retry.
            return Err(Error::StaleEtag);
        }
        self.fast.revoked(Revoked::Profile {
            profile,
            except: Some(session),
        });
        event.emit_committed();
        Ok(())
    }
}
