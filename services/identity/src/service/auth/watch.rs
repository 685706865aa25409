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
//!
//! Each stream is fed by a task of its own through a short queue, so that
//! these checks run whether or not the client reads: HTTP/2 flow control
//! lets a client stop the transport from ever asking for the next message,
//! and a stream checked only when it is asked would keep its place in
//! `IDENTITY_REVOCATION_MAX_WATCHERS` for as long as its connection lives.
//! Messages that wait longer than IDENTITY_REVOCATION_WATCH_SEND_TIMEOUT to
//! be taken end the stream as too slow (`WATCHER_TOO_SLOW`), freeing its
//! place at once; the client hears why once it reads again.
//!
//! A client that does read keeps its places, so each watcher is also
//! charged to its client address and its principal, each capped under
//! the server's cap (`service::watch::slots`, decision 0019). The place is
//! taken only once the watcher is authorized: nobody without the watch
//! credential can take one.
//!
//! The caps bound the streams held, not how fast they are opened: opens
//! are rate-limited per client address (IDENTITY_RATE_LIMIT_WATCH,
//! decision 0022) before anything else, the database reads of the
//! authorization included.

use super::{Auth, Caller};
use crate::service::profiles::Principal;
use crate::service::revocation::FastPath;
use crate::service::watch::{Change, FeedEvent, Holder as SlotHolder, Watch};
use crate::service::{Error, Exhausted};
use identity_core::rate_limit::Action;
use identity_core::roles::may_watch_revocations;
use identity_store::{Id, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Messages queued for one stream: a few, so that a client that stopped
/// reading is noticed soon after HTTP/2's window is full.
const QUEUED: usize = 8;

/// How a watcher proved who it is.
#[derive(Debug, Clone, Copy)]
pub enum Watcher<'a> {
    /// A client certificate the mTLS handshake verified, by its identity
    /// (`transport::tls::certificate_identity`).
    Certificate(&'a str),
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

/// A watcher's stream of revocation events, as the transport takes them.
pub struct Delivery {
    queued: mpsc::Receiver<Arc<FeedEvent>>,
    /// Why the stream ended, said after everything queued before it.
    end: Option<oneshot::Receiver<Error>>,
}

impl Delivery {
    /// The next event, or why the stream ends (after which `None`).
    pub async fn next(&mut self) -> Option<Result<Arc<FeedEvent>, Error>> {
        if let Some(event) = self.queued.recv().await {
            return Some(Ok(event));
        }
        let end = self.end.take()?;
        end.await.ok().map(Err)
    }
}

/// A watcher's stream of revocation events, re-checked as it goes.
struct Watching {
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
    ) -> Result<Delivery, Error> {
        // Before the authorization, which reads the database: opening and
        // closing streams in a loop, with or without the credential, would
        // otherwise cost a few transactions each (decision 0022).
        self.limit(Action::Watch, caller, None).await?;
        let (holder, principal) = match watcher {
            Watcher::Certificate(identity) => (None, format!("certificate:{identity}")),
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
                // The subject, not the session: every token of one service
                // principal (or client id) shares its cap.
                let charged = format!("token:{}", principal.profile_id);
                let holder = Holder {
                    profile: principal.profile_id,
                    session: principal.session_id,
                    expires: tokio::time::Instant::now() + std::time::Duration::from_secs(left),
                    store: self.store.clone(),
                    fast: Arc::clone(&self.fast),
                };
                (Some(holder), charged)
            }
        };
        let feed = self.fast.feed();
        let slot = feed
            .slot(SlotHolder {
                address: self.client_key(caller),
                principal,
            })
            .map_err(|cap| {
                let retry_after = Duration::from_secs(1);
                self.refused_by_limit(
                    caller,
                    "watch_revocations",
                    cap.scope(),
                    retry_after,
                    Exhausted::Watchers(cap),
                )
            })?;
        let watch = feed.subscribe(slot, resume_after)?;
        Ok(Watching {
            watch,
            holder,
            ending: None,
            ended: false,
        }
        .deliver(feed.send_timeout()))
    }
}

impl Watching {
    /// Feeds the stream from a task of its own, which ends (and frees the
    /// watcher's place) when the client is gone, when the stream ends, or
    /// when a message waits `send_timeout` for the client to take it.
    fn deliver(mut self, send_timeout: Duration) -> Delivery {
        let (tx, queued) = mpsc::channel(QUEUED);
        let (end_tx, end) = oneshot::channel();
        tokio::spawn(async move {
            let end = loop {
                let next = tokio::select! {
                    next = self.next() => next,
                    () = tx.closed() => return,
                };
                match next {
                    Some(Ok(event)) => {
                        match tokio::time::timeout(send_timeout, tx.send(event)).await {
                            Ok(Ok(())) => {}
                            // The client is gone.
                            Ok(Err(_)) => return,
                            Err(_) => {
                                tracing::info!(
                                    timeout = ?send_timeout,
                                    "a revocation watcher took nothing within the send timeout; its stream is ended"
                                );
                                break Error::WatcherTooSlow;
                            }
                        }
                    }
                    Some(Err(end)) => break end,
                    None => return,
                }
            };
            // The place is freed now, not when the client reads the end.
            drop(self);
            let _ = end_tx.send(end);
        });
        Delivery {
            queued,
            end: Some(end),
        }
    }

    /// The next event, or why the stream ends (after which `None`).
    async fn next(&mut self) -> Option<Result<Arc<FeedEvent>, Error>> {
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
