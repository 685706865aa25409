//! What the three caches (verified tokens, session state, profiles) are
//! built on: `quick_cache`'s concurrent map with a size bound and a
//! scan-resistant eviction policy, plus expiry that each cache defines on
//! its own values, and the striped locks that keep their ordering rules
//! (docs/decisions/0010-caches.md says why this crate and not moka or the
//! hand-sharded maps it replaces).
//!
//! quick_cache has no time-to-live: an entry carries its own deadline and
//! each cache checks it on every read, against the caller's clock, so an
//! expired entry is never served however long it stays in memory.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// A map that holds at most about `capacity` entries (0: nothing at all).
pub(crate) struct Bounded<K, V> {
    map: Option<quick_cache::sync::Cache<K, V>>,
    capacity: usize,
    /// The caller's second of the last sweep of expired entries.
    swept_at: AtomicU64,
}

impl<K: Eq + Hash + Clone, V: Clone> Bounded<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Bounded {
            map: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
            capacity,
            swept_at: AtomicU64::new(u64::MAX),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn enabled(&self) -> bool {
        self.map.is_some()
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.map.as_ref()?.get(key)
    }

    /// As [`Self::get`], without counting as a use for eviction.
    pub(crate) fn peek(&self, key: &K) -> Option<V> {
        self.map.as_ref()?.peek(key)
    }

    /// Stores `value`. When the cache is full, the entries that `live`
    /// refuses go first: a full sweep, at most once per `second` so that a
    /// cache full of live entries does not pay a scan on every insert.
    /// Past that, the eviction policy picks; losing an entry only costs the
    /// caller a read of the source.
    pub(crate) fn insert(&self, key: K, value: V, second: u64, live: impl Fn(&V) -> bool) {
        let Some(map) = &self.map else { return };
        if self.swept_at.load(Ordering::Relaxed) != second
            && map.len() >= self.capacity
            && self.swept_at.swap(second, Ordering::Relaxed) != second
        {
            map.retain(|_, v| live(v));
        }
        map.insert(key, value);
    }

    pub(crate) fn remove(&self, key: &K) {
        if let Some(map) = &self.map {
            map.remove(key);
        }
    }

    /// Removes `key` only if `f` says so of the value held now.
    pub(crate) fn remove_if(&self, key: &K, f: impl FnOnce(&V) -> bool) {
        if let Some(map) = &self.map {
            map.remove_if(key, f);
        }
    }

    pub(crate) fn retain(&self, keep: impl Fn(&V) -> bool) {
        if let Some(map) = &self.map {
            map.retain(|_, v| keep(v));
        }
    }

    pub(crate) fn clear(&self) {
        if let Some(map) = &self.map {
            map.clear();
        }
    }

    /// Every entry, cloned; see `quick_cache::sync::Cache::iter` for what a
    /// concurrent writer may add or remove meanwhile.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.map.iter().flat_map(|map| map.iter())
    }

    pub(crate) fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |map| map.len())
    }
}

/// The `len` and `is_empty` of a cache that keeps its entries in the
/// [`Bounded`] field `$field` (attributes, such as a doc comment, go on
/// `len`).
macro_rules! sizes {
    ($(#[$attr:meta])* $field:ident) => {
        $(#[$attr])*
        pub fn len(&self) -> usize {
            self.$field.len()
        }

        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    };
}
pub(crate) use sizes;

const STRIPES: usize = 16;

/// Locks of ours beside the map, for the rules that must order a check
/// against an insert ("a read that raced an invalidation is not stored"):
/// quick_cache's own shard locks are not reachable from outside.
pub(crate) struct Stripes<T>(Box<[Mutex<T>]>);

impl<T: Default> Stripes<T> {
    pub(crate) fn new() -> Self {
        Stripes((0..STRIPES).map(|_| Mutex::default()).collect())
    }

    pub(crate) fn of(&self, id: &Uuid) -> MutexGuard<'_, T> {
        // UUIDv7 starts with a timestamp: take the random tail.
        self.0[id.as_bytes()[15] as usize % STRIPES]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Every stripe, always taken in the same order.
    pub(crate) fn all(&self) -> Vec<MutexGuard<'_, T>> {
        self.0
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_swept_before_the_policy_evicts_a_live_one() {
        let map: Bounded<u32, u64> = Bounded::new(2);
        map.insert(1, 10, 1, |_| true);
        map.insert(2, 100, 1, |_| true);
        // Second 20: entry 1 (deadline 10) is dead and goes, not 2.
        map.insert(3, 100, 20, |&deadline| 20 < deadline);
        assert_eq!(map.peek(&1), None);
        assert_eq!(map.peek(&2), Some(100));
        assert_eq!(map.peek(&3), Some(100));
    }

    #[test]
    fn zero_capacity_holds_nothing() {
        let map: Bounded<u32, u32> = Bounded::new(0);
        map.insert(1, 1, 0, |_| true);
        assert!(!map.enabled());
        assert_eq!(map.get(&1), None);
        assert_eq!(map.len(), 0);
    }
}
