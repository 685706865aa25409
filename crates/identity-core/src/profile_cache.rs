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

use crate::{id::Id, model::Profile};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// Proof of when a database read began; see [`ProfileCache::put`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    epoch: u64,
    /// The entry's age counts from here, not from when the answer came:
    /// the row may have changed (by SQL, unannounced) while the read waited.
    began: Instant,
}

struct Shard {
    /// Bumped by every invalidation of this shard.
    epoch: u64,
    entries: HashMap<Id, (Arc<Profile>, Instant)>,
}

pub struct ProfileCache {
    capacity_per_shard: usize,
    ttl: Duration,
    shards: Vec<Mutex<Shard>>,
}

/// Sizes only: the entries hold emails.
impl std::fmt::Debug for ProfileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileCache")
            .field("capacity_per_shard", &self.capacity_per_shard)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ProfileCache {
    /// `capacity` 0 disables the cache: every read goes to the database.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        ProfileCache {
            capacity_per_shard: capacity.div_ceil(SHARDS),
            ttl,
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        epoch: 0,
                        entries: HashMap::new(),
                    })
                })
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity_per_shard > 0
    }

    fn shard(&self, id: Id) -> std::sync::MutexGuard<'_, Shard> {
        // UUIDv7 starts with a timestamp: take the random tail.
        self.shards[id.0.as_bytes()[15] as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: Id, now: Instant) -> Option<Arc<Profile>> {
        if !self.enabled() {
            return None;
        }
        let shard = self.shard(id);
        let (profile, stored) = shard.entries.get(&id)?;
        (now.saturating_duration_since(*stored) < self.ttl).then(|| Arc::clone(profile))
    }

    /// Call before reading `id` from the database.
    pub fn begin(&self, id: Id) -> Ticket {
        Ticket {
            epoch: self.shard(id).epoch,
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
        let capacity = self.capacity_per_shard;
        let mut shard = self.shard(profile.id);
        if shard.epoch != ticket.epoch {
            return;
        }
        if shard.entries.len() >= capacity && !shard.entries.contains_key(&profile.id) {
            shard
                .entries
                .retain(|_, (_, stored)| now.saturating_duration_since(*stored) < ttl);
            if shard.entries.len() >= capacity {
                // Full of fresh entries: drop one rather than grow.
                if let Some(victim) = shard.entries.keys().next().copied() {
                    shard.entries.remove(&victim);
                }
            }
        }
        shard.entries.insert(profile.id, (profile, stamp));
    }

    /// The profile changed or is gone.
    pub fn invalidate(&self, id: Id) {
        let mut shard = self.shard(id);
        shard.epoch += 1;
        shard.entries.remove(&id);
    }

    /// Forget everything (announcements may have been missed).
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            shard.epoch += 1;
            shard.entries.clear();
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).entries.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
}
