//! The fast token-validation path and revocation across replicas.
//!
//! Validation of an access token used to read its session from the database
//! every time. Here it is answered from memory:
//!
//! - a bounded cache of verified tokens (`identity_core::token_cache`) skips the
//!   JWT parsing and signature check for a token seen before;
//! - the session check is answered by `identity_core::revocations`, which learns
//!   sessions from database reads and revocations from this process at once
//!   and from other replicas through PostgreSQL `LISTEN/NOTIFY` (announced
//!   in the same transaction as every revocation, see `store::notify`).
//!
//! Correctness first. On PostgreSQL, live answers come from memory only
//! while the listener has confirmed within `IDENTITY_REVOCATION_MAX_STALENESS`
//! that it holds every announcement committed before the confirmation (a
//! heartbeat announced on the channel from a second connection and heard on
//! the listening one: `identity_store::listen` keeps the connections, this
//! module applies what they hear). A listener that does not hear its
//! heartbeat (behind PgBouncer transaction pooling, where LISTEN hears
//! nothing) counts as down and says it needs a session-mode connection
//! (`IDENTITY_REVOCATION_LISTEN_URL`). When the listener is down, validation
//! reads the database as before; when it reconnects, every live answer is
//! forgotten. A periodic reconciliation re-checks the sessions held live
//! against the database, so that a revocation made outside the service (or
//! by a replica that does not announce) heals within
//! `IDENTITY_REVOCATION_RECONCILE_INTERVAL`. SQLite has no channel, and
//! `identity admin` writes the same file from another process: there the
//! announcements are rows of a table, written in the same transaction, and
//! `identity_store::announcements` polls it and yields the listener's
//! events, applied and trusted here the same way (docs/decisions/0016).

use crate::service::Error;
use crate::service::watch::{Feed, SlotLimits};
use futures_util::StreamExt as _;
use identity_core::profile_cache::ProfileCache;
use identity_core::revocations::{Answer, RevocationState};
use identity_core::token_cache::{self, TokenCache, Verified};
use identity_core::tokens::{AccessClaims, Refusal, TokenKeys};
use identity_store::announcements::poll;
use identity_store::listen::{ListenEvent, listen};
use identity_store::notify::Revoked;
use identity_store::{DatabaseUrl, Id, PgUrl, Profile, Store, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Settings of the fast validation path (`config::revocation` reads and
/// checks them).
#[derive(Clone, Debug)]
pub struct RevocationSettings {
    /// Longest a replica answers "live" from memory without having heard
    /// from PostgreSQL's revocation channel.
    pub revocation_max_staleness: Duration,
    /// How often the sessions held in memory are re-checked against the
    /// database.
    pub revocation_reconcile_interval: Duration,
    /// Verified access tokens kept in memory (0: verify every signature).
    pub token_cache_size: usize,
    /// Sessions whose state is kept in memory (0: always the database).
    pub session_cache_size: usize,
    /// Profiles kept in memory (0: always the database).
    pub profile_cache_size: usize,
    /// How often WatchRevocations heartbeats while knowledge is current.
    pub revocation_heartbeat: Duration,
    /// WatchRevocations streams at once.
    pub revocation_max_watchers: usize,
    /// WatchRevocations streams of one client address (at most the above).
    pub revocation_max_watchers_per_address: usize,
    /// WatchRevocations streams of one principal (at most the above).
    pub revocation_max_watchers_per_principal: usize,
    /// Revocations kept for replay, and how far a watcher may fall behind.
    pub revocation_watch_backlog: usize,
    /// How long a watcher's queued messages may wait to be taken.
    pub revocation_watch_send_timeout: Duration,
}

/// Sessions per reconciliation query.
const RECONCILE_CHUNK: usize = 500;

/// Verified tokens and session state in memory; see the module docs.
#[derive(Debug)]
pub struct FastPath {
    tokens: TokenCache,
    sessions: RevocationState,
    profiles: ProfileCache,
    /// Set once what keeps memory true (listener or poller) runs.
    profiles_on: AtomicBool,
    /// Set once the listener (PostgreSQL) or the poller (SQLite) runs: this
    /// process's own revocations then come back through it, and watchers
    /// are told of them there, not also when committed.
    echoed: AtomicBool,
    listener: Listening,
    /// Every revocation applied, for WatchRevocations (`service::watch`).
    feed: Feed,
}

/// What the revocation listener last went through, kept for the metrics
/// (see [`FastPath::listener_status`]).
#[derive(Debug)]
struct Listening {
    /// A listener runs: PostgreSQL, once started.
    running: AtomicBool,
    /// Connected and has heard one of its heartbeats since; false from a
    /// (re)connection until its first heartbeat comes back.
    hearing: AtomicBool,
    /// When the last heartbeat heard was sent, in milliseconds after
    /// `since` (0 before the first).
    confirmed_ms: AtomicU64,
    since: Instant,
}

/// The revocation listener as the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerStatus {
    /// Connected, and has heard its own heartbeat since.
    pub hearing: bool,
    /// How long ago the listener last confirmed that it holds every
    /// announcement (the sending of the last heartbeat it heard; before
    /// the first, the creation of the fast path, at start-up): how old a
    /// revocation by another replica can be that this one has not heard
    /// of. Memory answers only while this is under
    /// `IDENTITY_REVOCATION_MAX_STALENESS`.
    pub staleness: Duration,
}

impl FastPath {
    /// `revoked_ttl`: how long a revoked session must be remembered (the
    /// access-token lifetime plus leeway). Untrusted until [`Self::start`].
    pub fn new(settings: &RevocationSettings, revoked_ttl: Duration) -> Arc<FastPath> {
        Arc::new(FastPath {
            tokens: TokenCache::new(settings.token_cache_size),
            sessions: RevocationState::new(settings.session_cache_size, revoked_ttl),
            profiles: ProfileCache::new(
                settings.profile_cache_size,
                settings.revocation_reconcile_interval,
            ),
            profiles_on: AtomicBool::new(false),
            echoed: AtomicBool::new(false),
            listener: Listening {
                running: AtomicBool::new(false),
                hearing: AtomicBool::new(false),
                confirmed_ms: AtomicU64::new(0),
                since: Instant::now(),
            },
            feed: Feed::new(
                settings.revocation_watch_backlog,
                SlotLimits {
                    server: settings.revocation_max_watchers,
                    per_address: settings.revocation_max_watchers_per_address,
                    per_principal: settings.revocation_max_watchers_per_principal,
                },
                revoked_ttl,
            )
            .with_send_timeout(settings.revocation_watch_send_timeout),
        })
    }

    /// The revocation feed (AuthService.WatchRevocations).
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// The revocation listener's state; `None` where none runs. SQLite has
    /// none: its poller of the announcements table is not a listener, and
    /// its series would read as PostgreSQL's.
    pub fn listener_status(&self) -> Option<ListenerStatus> {
        let listener = &self.listener;
        if !listener.running.load(Ordering::Relaxed) {
            return None;
        }
        let confirmed =
            listener.since + Duration::from_millis(listener.confirmed_ms.load(Ordering::Relaxed));
        Some(ListenerStatus {
            hearing: listener.hearing.load(Ordering::Relaxed),
            staleness: confirmed.elapsed(),
        })
    }

    /// Signature, claims and session of an access token.
    pub async fn verify(
        &self,
        keys: &TokenKeys,
        store: &Store,
        token: &str,
    ) -> Result<Result<AccessClaims, Refusal>, Error> {
        // Before hashing for the cache.
        if let Err(refusal) = identity_core::tokens::check_size(token) {
            return Ok(Err(refusal));
        }
        let now_unix = chrono::Utc::now().timestamp();
        let verified = if self.tokens.enabled() {
            let key = token_cache::key_of(token);
            match self.tokens.get(&key, now_unix) {
                Some(verified) => verified,
                None => {
                    let claims = match keys.verify(token) {
                        Ok(claims) => claims,
                        Err(refusal) => return Ok(Err(refusal)),
                    };
                    let verified = Arc::new(Verified::new(claims));
                    self.tokens.insert(key, Arc::clone(&verified), now_unix);
                    verified
                }
            }
        } else {
            match keys.verify(token) {
                Ok(claims) => Arc::new(Verified::new(claims)),
                Err(refusal) => return Ok(Err(refusal)),
            }
        };
        let Some(sid) = verified.session else {
            return Ok(Err(Refusal::Malformed));
        };
        let claims = &verified.claims;
        match self
            .sessions
            .check(sid, &claims.sub, now_unix, Instant::now())
        {
            Answer::Live => return Ok(Ok(claims.clone())),
            Answer::Revoked => return Ok(Err(Refusal::Revoked)),
            Answer::Unknown => {}
        }
        let ticket = self.sessions.begin_lookup();
        let session = store.find_session(Id(sid)).await?;
        let now = chrono::Utc::now();
        let live = session.filter(|s| s.is_active(now));
        self.sessions.record_lookup(
            ticket,
            sid,
            live.as_ref()
                .map(|s| (s.profile_id.0, s.expires_at.timestamp())),
            Instant::now(),
        );
        match live {
            Some(session) if session.profile_id.to_string() == claims.sub => Ok(Ok(claims.clone())),
            _ => Ok(Err(Refusal::Revoked)),
        }
    }

    /// The stored profile `id`: from memory while the announcements are
    /// trusted, else from the database (see `identity_core::profile_cache`).
    pub async fn profile(&self, store: &Store, id: Id) -> Result<Option<Profile>, StoreError> {
        let on = self.profiles_on.load(Ordering::Relaxed);
        if on
            && self.sessions.trusted(Instant::now())
            && let Some(profile) = self.profiles.get(id, Instant::now())
        {
            return Ok(Some(Profile::clone(&profile)));
        }
        if !on {
            return store.find_profile(id).await;
        }
        let ticket = self.profiles.begin(id);
        let found = store.find_profile(id).await?;
        if let Some(profile) = &found {
            self.profiles
                .put(ticket, Arc::new(profile.clone()), Instant::now());
        }
        Ok(found)
    }

    /// A revocation or profile change this process just committed (or
    /// heard of): in effect from now on, before any announcement comes back.
    pub fn revoked(&self, what: Revoked) {
        self.remember(&what);
        // The announcement committed with it comes back through the
        // listener (PostgreSQL) or the poller (SQLite), and watchers are
        // told then, with every writer's in one order, and once (publishing
        // here as well would tell them twice, and no echo can be told apart
        // from another writer's identical announcement).
        if !self.echoed.load(Ordering::Relaxed) {
            self.feed.revoked(&what);
        }
    }

    /// A revocation heard of or found by reconciliation: into memory, and
    /// to the watchers.
    fn learnt(&self, what: Revoked) {
        self.remember(&what);
        self.feed.revoked(&what);
    }

    fn remember(&self, what: &Revoked) {
        let now = Instant::now();
        // Memory first: a watcher told of it may at once ask this replica,
        // and must hear the same.
        match *what {
            Revoked::Session(id) => self.sessions.revoke_session(id.0, now),
            Revoked::Profile { profile, except } => {
                self.sessions.revoke_profile(profile.0, except.map(|e| e.0))
            }
            Revoked::ProfileChanged(id) => self.profiles.invalidate(id),
        }
    }

    /// Announcements may have been missed: drop every live answer.
    fn forget_live(&self) {
        self.sessions.forget_live();
        self.profiles.clear();
    }

    /// Starts what keeps the memory true: on PostgreSQL the listener on
    /// `listen_url` (default: the database's own URL), on SQLite the poller
    /// of the announcements table; and the reconciliation.
    pub fn start(
        self: &Arc<Self>,
        settings: &RevocationSettings,
        store: &Store,
        database: &DatabaseUrl,
        listen_url: Option<&PgUrl>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let max_staleness = settings.revocation_max_staleness;
        self.profiles_on
            .store(self.profiles.enabled(), Ordering::Relaxed);
        self.echoed.store(true, Ordering::Relaxed);
        match database {
            DatabaseUrl::Postgres(own) => {
                self.listener.running.store(true, Ordering::Relaxed);
                let events = listen(listen_url.unwrap_or(own).clone(), max_staleness);
                tasks.push(tokio::spawn(follow(
                    Arc::clone(self),
                    events,
                    max_staleness,
                )))
            }
            DatabaseUrl::Sqlite(file) => {
                let events = poll(file.clone(), max_staleness);
                tasks.push(tokio::spawn(follow(
                    Arc::clone(self),
                    events,
                    max_staleness,
                )))
            }
        }
        tasks.push(tokio::spawn(reconcile(
            Arc::clone(self),
            store.clone(),
            settings.revocation_reconcile_interval,
        )));
        tasks.push(tokio::spawn(heartbeat(
            Arc::clone(self),
            settings.revocation_heartbeat,
        )));
        tasks
    }
}

/// Applies what the revocation listener (`identity_store::listen`) hears,
/// or the poller (`identity_store::announcements`) reads, for as long as
/// the process runs.
async fn follow(
    fast: Arc<FastPath>,
    events: impl futures_util::Stream<Item = ListenEvent>,
    max_staleness: Duration,
) {
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        fast.apply(event, max_staleness);
    }
}

impl FastPath {
    /// One event of the revocation listener.
    fn apply(&self, event: ListenEvent, max_staleness: Duration) {
        match event {
            ListenEvent::Up => {
                // Announcements sent while nobody listened are lost: start afresh.
                self.forget_live();
                // And so must watchers: what was committed while nobody
                // listened (before the first connection too: this
                // replica's own revocations reach watchers through the
                // channel) was never published.
                self.feed.reset();
                // Connected, not yet heard: nothing is confirmed on this
                // connection until its first heartbeat comes back.
                self.listener.hearing.store(false, Ordering::Relaxed);
                tracing::info!(
                    event.name = "identity.revocation.listener_up",
                    "listening for revocations"
                );
            }
            ListenEvent::Revoked(what) => self.learnt(what),
            ListenEvent::Unrecognised => {
                // Not ours to understand: assume the worst.
                tracing::warn!(
                    event.name = "identity.revocation.unknown_announcement",
                    "unrecognised revocation announcement: forgetting every live session"
                );
                self.forget_live();
                // And so must watchers: it may have revoked anything.
                self.feed.reset();
            }
            ListenEvent::Heard { sent, first } => {
                self.sessions.trust_until(sent + max_staleness);
                let confirmed = sent.saturating_duration_since(self.listener.since);
                self.listener.confirmed_ms.fetch_max(
                    u64::try_from(confirmed.as_millis()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                self.listener.hearing.store(true, Ordering::Relaxed);
                if first {
                    tracing::info!(
                        event.name = "identity.revocation.heartbeat_heard",
                        "the revocation listener hears the channel: validations answered from memory"
                    );
                }
            }
            ListenEvent::Down(error) => {
                self.sessions.distrust();
                self.listener.hearing.store(false, Ordering::Relaxed);
                tracing::warn!(
                    event.name = "identity.revocation.listener_down",
                    error = %error,
                    "revocation listener lost: validating against the database until it is back"
                );
            }
            ListenEvent::Unheard => {
                self.sessions.distrust();
                self.listener.hearing.store(false, Ordering::Relaxed);
                tracing::error!(
                    event.name = "identity.revocation.listener_unheard",
                    "the revocation listener did not hear its own heartbeat within \
                     IDENTITY_REVOCATION_MAX_STALENESS although its connections work: announcements \
                     of other replicas do not reach it, as behind PgBouncer in transaction pooling \
                     mode. The listener needs a session-mode connection (a direct connection to \
                     PostgreSQL or a PgBouncer session pool): set IDENTITY_REVOCATION_LISTEN_URL \
                     to one. Validating against the database until then"
                );
            }
        }
    }
}

/// Tells watchers, every `interval`, that they have everything — only while
/// this replica's own knowledge is trusted (the listener confirmed it hears
/// every replica within the staleness bound; always on SQLite). Silence
/// otherwise is the point: a watcher then fails closed after its bound
/// instead of believing a replica that is itself behind.
async fn heartbeat(fast: Arc<FastPath>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if fast.sessions.trusted(Instant::now()) {
            fast.feed.heartbeat();
        }
    }
}

/// Re-checks the sessions held live against the database, every `interval`.
async fn reconcile(fast: Arc<FastPath>, store: Store, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let held = fast.sessions.live_sessions();
        let mut revoked = 0usize;
        for chunk in held.chunks(RECONCILE_CHUNK) {
            let ids: Vec<Id> = chunk.iter().copied().map(Id).collect();
            match store.live_sessions_among(&ids).await {
                Ok(live) => {
                    let live: HashSet<Id> = live.into_iter().collect();
                    for id in ids.into_iter().filter(|id| !live.contains(id)) {
                        // Announced by nobody: watchers hear of it here.
                        fast.learnt(Revoked::Session(id));
                        revoked += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "revocation reconciliation failed; retrying next round");
                    break;
                }
            }
        }
        if revoked > 0 {
            tracing::info!(
                event.name = "identity.revocation.reconciled",
                sessions = revoked,
                "sessions found ended by reconciliation"
            );
        }
    }
}

#[cfg(test)]
mod tests;
