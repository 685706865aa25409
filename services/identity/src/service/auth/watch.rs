//! WatchRevocations: who may watch, and a stream that ends when the
//! watcher's own credentials do (docs/decisions/0014).
//!
//! A watcher is a service: a principal holding `revocations:watch` (read
//! from the stored profile, like every role), or a peer whose client
//! certificate the mTLS handshake admitted (chained to
//! IDENTITY_TLS_CLIENT_CA_FILE, not in a CRL, a SAN on the allow-list).
//! A bearer's stream ends when its token expires, when its session or its
//! profile's sessions are revoked (UNAUTHENTICATED), and when the role is
//! taken away or the profile deleted (PERMISSION_DENIED /
//! UNAUTHENTICATED): a watcher is held to the rules a unary call would be,
//! not to those of the moment it connected.

use super::{Auth, Caller};
use crate::service::Error;
use crate::service::profiles::Principal;
use crate::service::revocation::FastPath;
use crate::service::watch::{Change, FeedEvent, Watch};
use identity_core::roles::may_watch_revocations;
use identity_store::{Id, Store};
use std::sync::Arc;

/// How a watcher proved who it is.
#[derive(Debug, Clone, Copy)]
pub enum Watcher<'a> {
    /// A client certificate the mTLS handshake verified.
    Certificate,
    /// `authorization: Bearer` (absent: `None`).
    Bearer(Option<&'a str>),
}

/// The bearer behind a stream, re-checked as the stream goes.
struct Holder {
    profile: Id,
    session: Id,
    expires: tokio::time::Instant,
    store: Store,
    fast: Arc<FastPath>,
}

/// A watcher's stream of revocation events.
pub struct Watching {
    watch: Watch,
    holder: Option<Holder>,
    /// Said after the event that caused it was delivered.
    ending: Option<Error>,
    ended: bool,
}

impl Auth {
    /// Authorizes `watcher` and subscribes it to the revocation feed after
    /// `resume_after` (empty: from now, starting with a reset).
    pub async fn watch_revocations(
        &self,
        caller: &Caller,
        watcher: Watcher<'_>,
        resume_after: &str,
    ) -> Result<Watching, Error> {
        let holder = match watcher {
            Watcher::Certificate => None,
            Watcher::Bearer(token) => {
                let claims = self.authenticate(caller, token).await?;
                let principal = Principal::from_claims(&claims, caller.client_addr.clone())
                    .ok_or(Error::Unauthenticated)?;
                let profile = self
                    .fast
                    .profile(&self.store, principal.profile_id)
                    .await?
                    .ok_or(Error::Unauthenticated)?;
                if !may_watch_revocations(&profile.auth_provider, &profile.roles) {
                    crate::service::events::access_denied(
                        &self.audit,
                        profile.id,
                        caller.client_addr.as_deref(),
                        "watch_revocations",
                        None,
                    );
                    return Err(Error::PermissionDenied);
                }
                let left = u64::try_from(claims.exp - chrono::Utc::now().timestamp()).unwrap_or(0);
                Some(Holder {
                    profile: principal.profile_id,
                    session: principal.session_id,
                    expires: tokio::time::Instant::now() + std::time::Duration::from_secs(left),
                    store: self.store.clone(),
                    fast: Arc::clone(&self.fast),
                })
            }
        };
        let watch = self.fast.feed().subscribe(resume_after)?;
        Ok(Watching {
            watch,
            holder,
            ending: None,
            ended: false,
        })
    }
}

impl Watching {
    /// The next event, or why the stream ends (after which `None`).
    pub async fn next(&mut self) -> Option<Result<Arc<FeedEvent>, Error>> {
        if self.ended {
            return None;
        }
        if let Some(end) = self.ending.take() {
            self.ended = true;
            return Some(Err(end));
        }
        let next = match &self.holder {
            None => self.watch.next().await,
            Some(holder) => tokio::select! {
                next = self.watch.next() => next,
                () = tokio::time::sleep_until(holder.expires) => Some(Err(Error::Unauthenticated)),
            },
        };
        match &next {
            Some(Ok(event)) => {
                if let Some(holder) = &self.holder {
                    self.ending = holder.ended_by(event).await;
                }
            }
            Some(Err(_)) | None => self.ended = true,
        }
        next
    }
}

impl Holder {
    /// Whether `event` ends this bearer's right to watch.
    async fn ended_by(&self, event: &FeedEvent) -> Option<Error> {
        match event.change {
            Change::SessionRevoked { session, .. } if session == self.session => {
                Some(Error::Unauthenticated)
            }
            Change::ProfileSessionsRevoked {
                profile, except, ..
            } if profile == self.profile && except != Some(self.session) => {
                Some(Error::Unauthenticated)
            }
            // Memory forgot the profile before the event was published, so
            // this reads what is stored now.
            Change::ProfileChanged { profile } if profile == self.profile => {
                match self.fast.profile(&self.store, profile).await {
                    Ok(Some(p)) if may_watch_revocations(&p.auth_provider, &p.roles) => None,
                    Ok(Some(_)) => Some(Error::PermissionDenied),
                    Ok(None) => Some(Error::Unauthenticated),
                    // Unsure whether the role is still held: fail closed.
                    Err(e) => Some(Error::from(e)),
                }
            }
            // Announcements may have been missed (the listener reconnected,
            // or one was not understood), among them this bearer's own
            // revocation or role change: read both as stored now.
            Change::Reset => self.still_allowed().await,
            _ => None,
        }
    }

    /// Why the bearer may not watch any more, as the database says now;
    /// `None` while its session is live and its profile holds the role.
    async fn still_allowed(&self) -> Option<Error> {
        match self.store.find_session(self.session).await {
            Ok(Some(s)) if s.is_active(chrono::Utc::now()) && s.profile_id == self.profile => {}
            Ok(_) => return Some(Error::Unauthenticated),
            Err(e) => return Some(Error::from(e)),
        }
        match self.store.find_profile(self.profile).await {
            Ok(Some(p)) if may_watch_revocations(&p.auth_provider, &p.roles) => None,
            Ok(Some(_)) => Some(Error::PermissionDenied),
            Ok(None) => Some(Error::Unauthenticated),
            Err(e) => Some(Error::from(e)),
        }
    }
}
