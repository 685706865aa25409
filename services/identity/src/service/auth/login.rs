//! AuthService.Login: the password check behind Login's quotas and
//! throttle, known devices, and the hash upgrade after a successful login.

use super::{
    Auth, Caller, LoggedIn, MAX_DEVICE_TOKEN_BYTES, MAX_DEVICES_PER_PROFILE, busy, throttled,
};
use crate::service::Error;
use crate::service::events::{Emit, EventName, SecurityEvent, Subject};
use chrono::Utc;
use identity_core::passwords;
use identity_core::rate_limit::Action;
use identity_core::throttle::Attempt;
use identity_core::{Violations, refresh, validation};
use identity_store::{Id, VerifiedLogin};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Instant;

impl Auth {
    pub async fn login(
        &self,
        caller: &Caller,
        email: &str,
        password: SecretString,
        device_token: &str,
    ) -> Result<LoggedIn, Error> {
        let mut violations = Violations::new();
        let email = violations.check("email", validation::email(email));
        violations.check(
            "password",
            passwords::check_presented(password.expose_secret()),
        );
        if device_token.len() > MAX_DEVICE_TOKEN_BYTES {
            violations.check::<()>(
                "device_token",
                Err(format!("must be at most {MAX_DEVICE_TOKEN_BYTES} bytes").into()),
            );
        }
        violations.into_result()?;
        let email = email.unwrap_or_default();
        let client = self.client_key(caller);
        self.limit_keys(Action::Login, caller, client.as_deref(), None)
            .await?;
        let throttle_key = self.keys.pseudonym(&email);
        // A device this account has logged in from before is exempt from the
        // account-wide limits that any stranger can exhaust.
        let device_hash = (!device_token.is_empty()).then(|| refresh::hash(device_token));
        let known_device = match &device_hash {
            Some(hash) => self.store.is_device_of(hash, &email).await?,
            None => false,
        };
        let attempt = match &device_hash {
            Some(token_hash) if known_device => Attempt::Device { token_hash },
            _ => {
                self.limit_keys(Action::Login, caller, None, Some(&email))
                    .await?;
                Attempt::Unknown {
                    client: client.as_deref().unwrap_or("unknown"),
                }
            }
        };
        let reservation = match self
            .throttle
            .reserve(&throttle_key, attempt, Instant::now())
        {
            Ok(reservation) => reservation,
            Err(wait) => {
                crate::telemetry::metrics::metrics().login_failed("throttled");
                SecurityEvent::new(EventName::LoginFailed)
                    .reason("throttled")
                    .scope(wait.scope())
                    .subject(Subject::Email(throttle_key.clone()))
                    .email_pseudonym(throttle_key)
                    .client(caller.addr())
                    .emit(&self.audit);
                return Err(throttled(wait));
            }
        };

        let (account, ok) = match self.check_password(caller, &email, password.clone()).await {
            Ok(checked) => checked,
            Err(e) => {
                // Never evaluated: not a failure of the owner's account.
                self.throttle.release(reservation);
                return Err(e);
            }
        };
        let account = match account {
            Some(account) if ok => account,
            account => {
                let failed = SecurityEvent::new(EventName::LoginFailed).client(caller.addr());
                let (reason, failed) = match &account {
                    None => {
                        let pseudonym = self.keys.pseudonym(&email);
                        let failed = failed
                            .subject(Subject::Email(pseudonym.clone()))
                            .email_pseudonym(pseudonym);
                        ("unknown_account", failed)
                    }
                    Some(a) => {
                        let id = a.profile.id;
                        (
                            "bad_password",
                            failed.subject(Subject::Profile(id)).profile(id),
                        )
                    }
                };
                crate::telemetry::metrics::metrics().login_failed(reason);
                // The reservation stands as this failure.
                drop(reservation);
                failed.reason(reason).emit_awaited(&self.store).await?;
                return Err(Error::InvalidCredentials);
            }
        };

        self.throttle.succeeded(reservation);
        let (profile, verified_hash) = (account.profile, account.password_hash);
        let verified = VerifiedLogin {
            email: &email,
            password_hash: &verified_hash,
        };
        let now = Utc::now();
        let (session, refresh_token) = self.new_session(profile.id, caller, now);
        let logged_in = SecurityEvent::new(EventName::LoginSucceeded)
            .profile(profile.id)
            .session(session.id)
            .client(caller.addr());
        if !self
            .store
            .start_session(&session, Some(&verified), &logged_in.audit_row())
            .await?
        {
            // The password changed between verification and now: what was
            // verified is no longer the credential.
            SecurityEvent::new(EventName::LoginFailed)
                .reason("credential_changed")
                .subject(Subject::Profile(profile.id))
                .profile(profile.id)
                .client(caller.addr())
                .emit(&self.audit);
            crate::telemetry::metrics::metrics().login_failed("credential_changed");
            return Err(Error::InvalidCredentials);
        }
        logged_in.emit_committed();
        let tokens = self.issue(&profile, session.id, session.expires_at, refresh_token, now)?;
        let device_token = self
            .remember_device(profile.id, device_token, known_device, &verified)
            .await?;
        if self.hasher.needs_rehash(&verified_hash) {
            let verified_hash = verified_hash.clone();
            // The cost setting rose since this hash was made: upgrade it now
            // that we hold the plaintext. Best effort, off the response path,
            // and after the session and the device token exist (the upgrade
            // changes the hash they are checked against).
            let (store, hasher, id) = (self.store.clone(), Arc::clone(&self.hasher), profile.id);
            tokio::spawn(async move {
                if let Ok(new_hash) = hasher.hash(password, None).await {
                    match store
                        .upgrade_password_hash(id, &verified_hash, &new_hash)
                        .await
                    {
                        Ok(true) => {
                            tracing::info!(profile.id = %id, cost = hasher.cost(), "password rehashed at the configured cost")
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(profile.id = %id, error = %e, "password rehash failed")
                        }
                    }
                }
            });
        }
        Ok(LoggedIn {
            tokens,
            device_token,
        })
    }

    /// Reads the credential of `email` and checks `password` against it (or
    /// against a dummy hash: unknown emails take as long).
    async fn check_password(
        &self,
        caller: &Caller,
        email: &str,
        password: SecretString,
    ) -> Result<(Option<identity_store::CredentialRow>, bool), Error> {
        let account = self.store.find_credential(email).await?;
        let stored_hash = account.as_ref().map(|a| a.password_hash.clone());
        let ok = self
            .hasher
            .verify(password, stored_hash, self.hash_deadline(caller))
            .await
            .map_err(busy)?;
        Ok((account, ok))
    }

    /// The device token to hand back: the presented one while it is still
    /// valid, else a new one (stored hashed, tied to the profile).
    async fn remember_device(
        &self,
        profile: Id,
        presented: &str,
        known: bool,
        verified: &VerifiedLogin<'_>,
    ) -> Result<SecretString, Error> {
        let now = Utc::now();
        if known
            && self
                .store
                .touch_device_token(&refresh::hash(presented), now)
                .await?
        {
            return Ok(SecretString::from(presented.to_owned()));
        }
        let fresh = refresh::generate();
        if !self
            .store
            .add_device_token(&fresh.hash, profile, verified, now, MAX_DEVICES_PER_PROFILE)
            .await?
        {
            // The password changed since it was verified: the session just
            // started is revoked with the others, and no device is known.
            return Err(Error::InvalidCredentials);
        }
        Ok(fresh.token)
    }
}
