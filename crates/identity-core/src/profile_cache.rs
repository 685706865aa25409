//! A bounded cache of profiles read from the database, so that an
//! authenticated call (GetProfile "me", every authorization check) does not
//! cost a database round trip each time.
//!
//! Roles decide authorization, so a stale entry would be a privilege bug.
//! The rules (docs/decisions/0005):
//!
//! - every profile write, here or on another replica, invalidates the
//!   entry: this process at once, other replicas through the same
//!   announcements and trust bound as session revocations
//!   (`service::revocation`), and the caller answers from here only while
//!   that trust holds;
//! - an entry lives at most `ttl` (the reconciliation interval), which
//!   bounds what a write made outside the service (SQL) can leave behind;
//! - a read that raced an invalidation is not stored: [`ProfileCache::begin`]
//!   hands out the epoch, and [`ProfileCache::put`] refuses a stale one.

use crate::bounded::{Bounded, Stripes};
use crate::{id::Id, model::Profile};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Proof of when a database read began; see [`ProfileCache::put`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
    /// The entry's age counts from here, not from when the answer came:
    /// the row may have changed (by SQL, unannounced) while the read waited.
    began: Instant,
}

pub struct ProfileCache {
    ttl: Duration,
    entries: Bounded<Id, (Arc<Profile>, Instant)>,
    /// Each stripe's epoch, bumped by every invalidation of an id in it.
    /// A put checks it and stores, and an invalidation bumps it and
    /// removes, under the stripe's lock: a put either lands before the
    /// removal or sees the bump.
    epochs: Stripes<u64>,
    /// The origin of the seconds that pace the sweep of expired entries.
    origin: Instant,
}

/// Sizes only: the entries hold emails.
impl std::fmt::Debug for ProfileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileCache")
            .field("capacity", &self.entries.capacity())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ProfileCache {
    /// `capacity` 0 disables the cache: every read goes to the database.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        ProfileCache {
            ttl,
            entries: Bounded::new(capacity),
            epochs: Stripes::new(),
            origin: Instant::now(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.entries.enabled()
    }

    pub fn get(&self, id: Id, now: Instant) -> Option<Arc<Profile>> {
        let (profile, stored) = self.entries.get(&id)?;
        (now.saturating_duration_since(stored) < self.ttl).then_some(profile)
    }

    /// Call before reading `id` from the database.
    pub fn begin(&self, id: Id) -> Ticket {
        Ticket {
            epoch: *self.epochs.of(&id.0),
            began: Instant::now(),
        }
    }

    /// Stores what a read begun with `ticket` found, unless an invalidation
    /// came in between (then the read may predate the change).
    pub fn put(&self, ticket: Ticket, profile: Arc<Profile>, now: Instant) {
        let stamp = ticket.began.min(now);
        if !self.enabled() {
            return;
        }
        let ttl = self.ttl;
        let epoch = self.epochs.of(&profile.id.0);
        if *epoch != ticket.epoch {
            return;
        }
        let second = now.saturating_duration_since(self.origin).as_secs();
        self.entries
            .insert(profile.id, (profile, stamp), second, |(_, stored)| {
                now.saturating_duration_since(*stored) < ttl
            });
        // Only now may an invalidation of this stripe go ahead.
        drop(epoch);
    }

    /// The profile changed or is gone.
    pub fn invalidate(&self, id: Id) {
        let mut epoch = self.epochs.of(&id.0);
        *epoch += 1;
        self.entries.remove(&id);
    }

    /// Forget everything (announcements may have been missed).
    pub fn clear(&self) {
        let mut epochs = self.epochs.all();
        for epoch in epochs.iter_mut() {
            **epoch += 1;
        }
        self.entries.clear();
    }

    crate::bounded::sizes!(entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn profile(roles: &[&str]) -> Arc<Profile> {
        Arc::new(Profile {
            id: Id::new(),
            auth_provider: "local".into(),
            auth_id: "a".into(),
            email: None,
            display_name: String::new(),
            avatar_url: String::new(),
            locale: String::new(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            revision: 1,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            email_verified: false,
        })
    }

    #[test]
    fn a_stored_profile_is_served_until_its_ttl() {
        let cache = ProfileCache::new(100, Duration::from_secs(5));
        let p = profile(&["admin"]);
        let now = Instant::now();
        cache.put(cache.begin(p.id), Arc::clone(&p), now);
        assert_eq!(cache.get(p.id, now).unwrap().roles, vec!["admin"]);
        assert!(cache.get(p.id, now + Duration::from_secs(5)).is_none());
    }

    #[test]
    fn an_invalidated_profile_is_read_again() {
        let cache = ProfileCache::new(100, Duration::from_secs(5));
        let p = profile(&["admin"]);
        let now = Instant::now();
        cache.put(cache.begin(p.id), Arc::clone(&p), now);
        cache.invalidate(p.id);
        assert!(cache.get(p.id, now).is_none());
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_stored() {
        let cache = ProfileCache::new(100, Duration::from_secs(5));
        let p = profile(&["admin"]);
        let ticket = cache.begin(p.id);
        // The role is revoked while the read is in flight.
        cache.invalidate(p.id);
        cache.put(ticket, Arc::clone(&p), Instant::now());
        assert!(cache.get(p.id, Instant::now()).is_none());
        cache.put(cache.begin(p.id), Arc::clone(&p), Instant::now());
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity_and_zero_disables_it() {
        let cache = ProfileCache::new(32, Duration::from_secs(5));
        let now = Instant::now();
        for _ in 0..1000 {
            let p = profile(&[]);
            cache.put(cache.begin(p.id), p, now);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        let off = ProfileCache::new(0, Duration::from_secs(5));
        let p = profile(&[]);
        off.put(off.begin(p.id), Arc::clone(&p), now);
        assert!(off.get(p.id, now).is_none());
    }

    /// A role is taken away while reads of the old row are in flight on
    /// other threads: once the invalidation (or a clear) has returned, no
    /// read that began before it may be served.
    #[test]
    fn no_read_begun_before_an_invalidation_is_served_after_it() {
        for clear in [false, true] {
            for _ in 0..100 {
                let cache = ProfileCache::new(1000, Duration::from_secs(5));
                let ps: Vec<_> = (0..100).map(|_| profile(&["admin"])).collect();
                let tickets: Vec<Ticket> = ps.iter().map(|p| cache.begin(p.id)).collect();
                let start = std::sync::Barrier::new(2);
                std::thread::scope(|s| {
                    s.spawn(|| {
                        start.wait();
                        for (p, ticket) in ps.iter().zip(&tickets) {
                            cache.put(*ticket, Arc::clone(p), Instant::now());
                        }
                    });
                    s.spawn(|| {
                        start.wait();
                        if clear {
                            cache.clear();
                        } else {
                            for p in &ps {
                                cache.invalidate(p.id);
                            }
                        }
                    });
                });
                for p in &ps {
                    assert!(cache.get(p.id, Instant::now()).is_none());
                }
            }
        }
    }
}
