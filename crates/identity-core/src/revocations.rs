//! What this replica knows about sessions, so that token validation can
//! answer "is this session still live?" from memory. Correctness first: a
//! revoked session must never validate.
//!
//! The rules that make that hold:
//!
//! - **Revoked is final.** A session seen revoked (or missing) in the
//!   database, or announced revoked by its id, stays refused here; refusing
//!   is always safe, so revoked entries are also used when memory is not
//!   trusted. A profile's revocation names no sessions: it only makes
//!   memory forget the profile's live ones (see `revoke_profile`).
//! - **Active answers need trust.** "Live" is answered from memory only
//!   while the state is trusted: always for the single-node SQLite backend
//!   (every revocation passes through this process), and for PostgreSQL
//!   only while the revocation listener has recently confirmed that it has
//!   received every notification (see `service::revocation`). Otherwise
//!   the caller reads the database, as without this cache.
//! - **No stale insert.** A database read races with revocations committed
//!   meanwhile. Every applied revocation bumps an epoch first; a lookup takes
//!   a ticket (the epoch) before it reads, and its "live" answer is cached
//!   only if no revocation was applied since. Ticket, bump and insert are
//!   ordered by the session's stripe lock (a revocation of a whole profile,
//!   and forgetting, take every stripe), so a revocation is either seen by
//!   the insert or overwrites it. Reads take none of these locks.

use crate::bounded::{Bounded, Stripes};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Live in the database when read; `expires_at` is its absolute end.
    Active { profile: Uuid, expires_at: i64 },
    /// Refused until `until` (ms since the state's origin), after which no
    /// access token of the session can still be unexpired.
    Revoked { until: u64 },
}

/// The answer of [`RevocationState::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Live,
    Revoked,
    /// Not known (or not trusted): read the database.
    Unknown,
}

/// A database read in progress; see [`RevocationState::begin_lookup`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

pub struct RevocationState {
    sessions: Bounded<Uuid, State>,
    /// Held from the epoch check (or bump) to the insert; see the module docs.
    stripes: Stripes<()>,
    epoch: AtomicU64,
    /// Active entries answer only while `now < trusted_until` (ms since
    /// `origin`); `u64::MAX`: always.
    trusted_until: AtomicU64,
    origin: Instant,
    /// How long a revoked session stays remembered: the longest an access
    /// token lives, leeway included.
    revoked_ttl: Duration,
}

impl std::fmt::Debug for RevocationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationState")
            .field("capacity", &self.sessions.capacity())
            .field("epoch", &self.epoch.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn profile_matches(profile: &Uuid, sub: &str) -> bool {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    profile.hyphenated().encode_lower(&mut buf).as_bytes() == sub.as_bytes()
}

impl RevocationState {
    /// Remembers at most about `capacity` sessions (0: nothing, every
    /// check reads the database). Starts untrusted.
    pub fn new(capacity: usize, revoked_ttl: Duration) -> Self {
        RevocationState {
            sessions: Bounded::new(capacity),
            stripes: Stripes::new(),
            epoch: AtomicU64::new(0),
            trusted_until: AtomicU64::new(0),
            origin: Instant::now(),
            revoked_ttl,
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Memory is authoritative (single node: every revocation passes here).
    pub fn trust_always(&self) {
        self.trusted_until.store(u64::MAX, Ordering::SeqCst);
    }

    /// Trust live answers until `until` (never shortens a longer trust).
    pub fn trust_until(&self, until: Instant) {
        self.trusted_until
            .fetch_max(self.millis(until), Ordering::SeqCst);
    }

    /// Stop trusting live answers at once.
    pub fn distrust(&self) {
        self.trusted_until.store(0, Ordering::SeqCst);
    }

    pub fn trusted(&self, now: Instant) -> bool {
        self.millis(now) < self.trusted_until.load(Ordering::SeqCst)
    }

    /// Is session `sid` of profile `sub` live at `now_unix` (seconds)?
    pub fn check(&self, sid: Uuid, sub: &str, now_unix: i64, now: Instant) -> Answer {
        if !self.sessions.enabled() {
            return Answer::Unknown;
        }
        match self.sessions.get(&sid) {
            Some(State::Revoked { .. }) => Answer::Revoked,
            // Every token of a session names its profile: a mismatch is a
            // forgery or a bug, refused like the database check refuses it.
            Some(State::Active { profile, .. }) if !profile_matches(&profile, sub) => {
                Answer::Revoked
            }
            Some(State::Active { expires_at, .. }) if expires_at <= now_unix => Answer::Revoked,
            Some(State::Active { .. }) if self.trusted(now) => Answer::Live,
            _ => Answer::Unknown,
        }
    }

    /// Take before reading a session from the database.
    pub fn begin_lookup(&self) -> Ticket {
        Ticket(self.epoch.load(Ordering::SeqCst))
    }

    /// Records what the database said: `Some((profile, expires_at))` for a
    /// live session, `None` for a revoked, expired or missing one.
    pub fn record_lookup(
        &self,
        ticket: Ticket,
        sid: Uuid,
        live: Option<(Uuid, i64)>,
        now: Instant,
    ) {
        if !self.sessions.enabled() {
            return;
        }
        let _stripe = self.stripes.of(&sid);
        let state = match live {
            Some((profile, expires_at)) => {
                // Checked under the lock that revocations take: either the
                // revocation already bumped the epoch, or it will overwrite.
                if self.epoch.load(Ordering::SeqCst) != ticket.0
                    || matches!(self.sessions.peek(&sid), Some(State::Revoked { .. }))
                {
                    return;
                }
                State::Active {
                    profile,
                    expires_at,
                }
            }
            None => State::Revoked {
                until: self.millis(now + self.revoked_ttl),
            },
        };
        self.store(sid, state, now);
    }

    /// Stores under the stripe lock the caller holds. When full, expired
    /// entries make room first; losing any entry is safe: the next check
    /// reads the database.
    fn store(&self, sid: Uuid, state: State, now: Instant) {
        let (now_ms, now_unix) = (self.millis(now), chrono::Utc::now().timestamp());
        self.sessions
            .insert(sid, state, now_ms / 1000, |s| match *s {
                State::Revoked { until } => now_ms < until,
                State::Active { expires_at, .. } => now_unix < expires_at,
            });
    }

    /// Session `sid` was revoked (here or announced by another replica).
    pub fn revoke_session(&self, sid: Uuid, now: Instant) {
        let _stripe = self.stripes.of(&sid);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if !self.sessions.enabled() {
            return;
        }
        let until = self.millis(now + self.revoked_ttl);
        self.store(sid, State::Revoked { until }, now);
    }

    /// Every session of `profile` but `except` was revoked. Its live
    /// entries are forgotten, not marked revoked: the announcement does not
    /// say which sessions it ended, and it may arrive (as the echo of this
    /// replica's own, or from another) after the user signed in again, a
    /// session the database holds live. Forgetting is as safe: the epoch
    /// bump keeps any lookup begun before it from storing "live", and
    /// every later check reads the database, which has the revocation.
    /// Sessions not in memory need nothing for the same reason.
    pub fn revoke_profile(&self, profile: Uuid, except: Option<Uuid>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        // Every stripe, so that no lookup that checked the epoch before the
        // bump can store a live answer behind the sweep.
        let _stripes = self.stripes.all();
        let ended: Vec<Uuid> = self
            .sessions
            .entries()
            .filter(|(sid, state)| {
                matches!(state, State::Active { profile: p, .. } if *p == profile)
                    && Some(*sid) != except
            })
            .map(|(sid, _)| sid)
            .collect();
        for sid in ended {
            self.sessions
                .remove_if(&sid, |s| matches!(s, State::Active { .. }));
        }
    }

    /// Drops every live answer (e.g. notifications may have been missed).
    pub fn forget_live(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let _stripes = self.stripes.all();
        self.sessions.retain(|s| matches!(s, State::Revoked { .. }));
    }

    /// Sessions held as live, for reconciliation against the database.
    pub fn live_sessions(&self) -> Vec<Uuid> {
        self.sessions
            .entries()
            .filter(|(_, s)| matches!(s, State::Active { .. }))
            .map(|(id, _)| id)
            .collect()
    }

    crate::bounded::sizes!(
        /// Number of sessions remembered (live and revoked).
        sessions
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn ids() -> (Uuid, Uuid) {
        (Uuid::now_v7(), Uuid::now_v7())
    }

    fn sub(profile: Uuid) -> String {
        profile.hyphenated().to_string()
    }

    fn trusted() -> RevocationState {
        let state = RevocationState::new(1000, TTL);
        state.trust_always();
        state
    }

    fn learn_live(state: &RevocationState, sid: Uuid, profile: Uuid) {
        let ticket = state.begin_lookup();
        state.record_lookup(ticket, sid, Some((profile, i64::MAX)), Instant::now());
    }

    #[test]
    fn unknown_until_learned_then_live() {
        let state = trusted();
        let (sid, profile) = ids();
        let now = Instant::now();
        assert_eq!(state.check(sid, &sub(profile), 0, now), Answer::Unknown);
        learn_live(&state, sid, profile);
        assert_eq!(state.check(sid, &sub(profile), 0, now), Answer::Live);
    }

    #[test]
    fn revoked_session_is_refused_at_once() {
        let state = trusted();
        let (sid, profile) = ids();
        learn_live(&state, sid, profile);
        state.revoke_session(sid, Instant::now());
        assert_eq!(
            state.check(sid, &sub(profile), 0, Instant::now()),
            Answer::Revoked
        );
    }

    #[test]
    fn lookup_racing_a_revocation_is_not_cached() {
        let state = trusted();
        let (sid, profile) = ids();
        // The read started (and saw the session live) before the revocation
        // was applied; its answer arrives after.
        let ticket = state.begin_lookup();
        state.revoke_profile(profile, None); // not in memory yet
        state.record_lookup(ticket, sid, Some((profile, i64::MAX)), Instant::now());
        assert_eq!(
            state.check(sid, &sub(profile), 0, Instant::now()),
            Answer::Unknown
        );
    }

    #[test]
    fn live_answer_never_overwrites_revoked() {
        let state = trusted();
        let (sid, profile) = ids();
        state.revoke_session(sid, Instant::now());
        let ticket = state.begin_lookup();
        state.record_lookup(ticket, sid, Some((profile, i64::MAX)), Instant::now());
        assert_eq!(
            state.check(sid, &sub(profile), 0, Instant::now()),
            Answer::Revoked
        );
    }

    #[test]
    fn profile_revocation_spares_the_kept_session() {
        let state = trusted();
        let (a, b) = ids();
        let profile = Uuid::now_v7();
        learn_live(&state, a, profile);
        learn_live(&state, b, profile);
        state.revoke_profile(profile, Some(b));
        let now = Instant::now();
        assert_eq!(state.check(a, &sub(profile), 0, now), Answer::Unknown);
        assert_eq!(state.check(b, &sub(profile), 0, now), Answer::Live);
    }

    /// ChangePassword applies its revocation at once, and again when its
    /// announcement comes back (or reaches another replica) up to a
    /// quarter of a second later. A user who signs in between must not
    /// find the new session refused by the late copy: the database says
    /// live, so the late copy may make memory ask again, never refuse.
    #[test]
    fn a_late_announcement_never_refuses_a_session_begun_after_the_revocation() {
        let state = trusted();
        let (old, new) = ids();
        let profile = Uuid::now_v7();
        learn_live(&state, old, profile);
        state.revoke_profile(profile, None);
        learn_live(&state, new, profile); // signed in after; the database says live
        state.revoke_profile(profile, None); // the late copy
        let now = Instant::now();
        assert_ne!(state.check(new, &sub(profile), 0, now), Answer::Revoked);
        assert_ne!(state.check(old, &sub(profile), 0, now), Answer::Live);
    }

    #[test]
    fn live_answers_need_trust_revoked_ones_do_not() {
        let state = RevocationState::new(1000, TTL);
        let (sid, profile) = ids();
        let (gone, _) = ids();
        learn_live(&state, sid, profile);
        state.revoke_session(gone, Instant::now());
        let now = Instant::now();
        assert_eq!(state.check(sid, &sub(profile), 0, now), Answer::Unknown);
        assert_eq!(state.check(gone, &sub(profile), 0, now), Answer::Revoked);
        state.trust_until(now + Duration::from_secs(1));
        assert_eq!(state.check(sid, &sub(profile), 0, now), Answer::Live);
        assert_eq!(
            state.check(sid, &sub(profile), 0, now + Duration::from_secs(2)),
            Answer::Unknown
        );
        state.trust_until(now + Duration::from_secs(5));
        state.distrust();
        assert_eq!(state.check(sid, &sub(profile), 0, now), Answer::Unknown);
    }

    #[test]
    fn wrong_profile_and_expired_sessions_are_refused() {
        let state = trusted();
        let (sid, profile) = ids();
        let ticket = state.begin_lookup();
        state.record_lookup(ticket, sid, Some((profile, 100)), Instant::now());
        let now = Instant::now();
        assert_eq!(state.check(sid, &sub(profile), 99, now), Answer::Live);
        assert_eq!(state.check(sid, &sub(profile), 100, now), Answer::Revoked);
        assert_eq!(
            state.check(sid, &sub(Uuid::now_v7()), 99, now),
            Answer::Revoked
        );
        assert_eq!(
            state.check(sid, &sub(profile).to_uppercase(), 99, now),
            Answer::Revoked
        );
    }

    #[test]
    fn forgetting_keeps_revocations() {
        let state = trusted();
        let (sid, profile) = ids();
        let (gone, _) = ids();
        learn_live(&state, sid, profile);
        state.revoke_session(gone, Instant::now());
        state.forget_live();
        let now = Instant::now();
        assert_eq!(state.check(sid, &sub(profile), 0, now), Answer::Unknown);
        assert_eq!(state.check(gone, &sub(profile), 0, now), Answer::Revoked);
        assert!(state.live_sessions().is_empty());
    }

    #[test]
    fn bounded() {
        let state = RevocationState::new(64, TTL);
        state.trust_always();
        let profile = Uuid::now_v7();
        for _ in 0..10_000 {
            learn_live(&state, Uuid::now_v7(), profile);
            state.revoke_session(Uuid::now_v7(), Instant::now());
        }
        assert!(state.len() <= 64, "{}", state.len());
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let state = RevocationState::new(0, TTL);
        state.trust_always();
        let (sid, profile) = ids();
        learn_live(&state, sid, profile);
        state.revoke_session(sid, Instant::now());
        assert_eq!(
            state.check(sid, &sub(profile), 0, Instant::now()),
            Answer::Unknown
        );
    }

    /// Lookups of one profile's sessions, all begun before `revocation`
    /// and stored while it runs on another thread. Other sessions' entries
    /// make its sweep long enough to race.
    fn lookups_racing(
        revocation: impl Fn(&RevocationState, Uuid) + Sync,
    ) -> (RevocationState, Uuid, Vec<Uuid>) {
        let state = trusted();
        for _ in 0..800 {
            state.revoke_session(Uuid::now_v7(), Instant::now());
        }
        let start = std::sync::Barrier::new(2);
        let profile = Uuid::now_v7();
        let sids: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
        let tickets: Vec<Ticket> = sids.iter().map(|_| state.begin_lookup()).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                for (sid, ticket) in sids.iter().zip(&tickets) {
                    let live = Some((profile, i64::MAX));
                    state.record_lookup(*ticket, *sid, live, Instant::now());
                }
            });
            s.spawn(|| {
                start.wait();
                revocation(&state, profile)
            });
        });
        (state, profile, sids)
    }

    /// The race an attacker would need: a validation that read the session
    /// as live just before "log out everywhere" stores that answer just
    /// after it. Whichever way the threads interleave, none may answer
    /// live afterwards.
    #[test]
    fn no_lookup_begun_before_a_profile_revocation_outlives_it() {
        for _ in 0..100 {
            let (state, profile, sids) =
                lookups_racing(|state, profile| state.revoke_profile(profile, None));
            for sid in &sids {
                assert_ne!(
                    state.check(*sid, &sub(profile), 0, Instant::now()),
                    Answer::Live
                );
            }
        }
    }

    /// The same race against forgetting (announcements were missed).
    #[test]
    fn no_lookup_begun_before_forgetting_outlives_it() {
        for _ in 0..100 {
            let (state, _, _) = lookups_racing(|state, _| state.forget_live());
            assert!(state.live_sessions().is_empty());
        }
    }
}
