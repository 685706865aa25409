//! AuthService.Register: a local account with a password, its first
//! session, and the bootstrap admin role for a listed email while no admin
//! exists.

use super::{Auth, Caller, IssuedTokens, busy};
use crate::service::Error;
use crate::service::events::{Emit, EventName, SecurityEvent};
use crate::service::profiles::ADMIN_ROLE;
use chrono::{SubsecRound, Utc};
use identity_core::passwords;
use identity_core::rate_limit::Action;
use identity_core::roles::LOCAL_PROVIDER;
use identity_core::{Violations, validation};
use identity_store::{Id, NewAccount, Profile};
use secrecy::{ExposeSecret, SecretString};

impl Auth {
    pub async fn register(
        &self,
        caller: &Caller,
        email: &str,
        password: SecretString,
        display_name: &str,
    ) -> Result<(Profile, IssuedTokens), Error> {
        let mut violations = Violations::new();
        let email = validation::email(email);
        let display_name = validation::display_name(display_name, false);
        // The quota answers before the password's strength is weighed: zxcvbn
        // is CPU that a caller over quota must not get for free.
        self.limit(Action::Register, caller, email.as_deref().ok())
            .await?;
        let inputs = (
            email.as_deref().unwrap_or_default().to_owned(),
            display_name.as_deref().unwrap_or_default().to_owned(),
            self.settings.password_min_score,
        );
        // Off the async workers: a long, varied password takes zxcvbn a while.
        let (password, password_ok) = tokio::task::spawn_blocking(move || {
            let (email, display_name, min_score) = inputs;
            let ok =
                passwords::check_new(password.expose_secret(), &email, &display_name, min_score);
            (password, ok)
        })
        .await
        .map_err(|e| Error::Internal(format!("password strength check: {e}")))?;
        let email = violations.check("email", email);
        violations.check("password", password_ok);
        let display_name = violations.check("display_name", display_name);
        if let Err(e) = violations.into_result() {
            SecurityEvent::new(EventName::RegisterRefused)
                .reason("invalid_input")
                .client(caller.addr())
                .emit(&self.audit);
            return Err(e.into());
        }
        let (email, display_name) = (email.unwrap_or_default(), display_name.unwrap_or_default());
        let listed = self.settings.bootstrap_admins.contains(&email);

        let password_hash = self
            .hasher
            .hash(password, self.hash_deadline(caller))
            .await
            .map_err(busy)?;
        let now = Utc::now().trunc_subsecs(6);
        let id = Id::new();
        let mut profile = Profile {
            email: Some(email.clone()),
            display_name,
            ..Profile::new(id, LOCAL_PROVIDER, &id.to_string(), now)
        };
        let (session, refresh_token) = self.new_session(id, caller, now);
        let registered = SecurityEvent::new(EventName::RegisterSucceeded)
            .profile(id)
            .session(session.id)
            .client(caller.addr());
        // Listed emails become admin only while no admin exists: decided by
        // the store inside the insert's transaction.
        let admin_roles = [ADMIN_ROLE.to_owned()];
        let bootstrap = SecurityEvent::new(EventName::RoleChanged)
            .profile(id)
            .client(caller.addr())
            .roles(&admin_roles)
            .reason("IDENTITY_BOOTSTRAP_ADMINS");
        let account = NewAccount {
            profile: profile.clone(),
            email,
            password_hash,
            session: session.clone(),
            bootstrap_admin: listed.then(|| bootstrap.audit_row()),
        };
        let admin = match self
            .store
            .create_local_account(&account, &[registered.audit_row()])
            .await
        {
            Ok(granted) => granted,
            Err(e) => {
                let e = Error::from(e);
                if matches!(e, Error::AlreadyExists(_)) {
                    SecurityEvent::new(EventName::RegisterRefused)
                        .reason("email_taken")
                        .email_pseudonym(self.keys.pseudonym(&account.email))
                        .client(caller.addr())
                        .emit(&self.audit);
                }
                return Err(e);
            }
        };
        if admin {
            profile.roles.push(ADMIN_ROLE.to_owned());
            bootstrap.emit_committed();
        } else if listed {
            SecurityEvent::new(EventName::RoleRefused)
                .profile(id)
                .roles(&admin_roles)
                .reason("bootstrap_admin_exists")
                .client(caller.addr())
                .emit(&self.audit);
        }
        registered.emit_committed();
        let tokens = self.issue(&profile, session.id, session.expires_at, refresh_token, now)?;
        Ok((profile, tokens))
    }
}
