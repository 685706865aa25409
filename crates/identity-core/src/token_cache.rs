//! A bounded cache of access tokens whose signature and claims were already
//! verified, keyed by the SHA-256 of the token, each kept until the token's
//! own `exp`. A hit skips the JWT parsing and the signature check; it never
//! skips the revocation check (see [`super::revocations`]).
//!
//! Only successful verifications are cached: refusals are cheap to repeat
//! and an attacker can mint endless distinct bad tokens anyway. The signing
//! keys are fixed for the life of the process, so a cached verification
//! stays true until `exp`.

use super::tokens::AccessClaims;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

const SHARDS: usize = 16;

/// What a verified token says, parsed once.
#[derive(Debug)]
pub struct Verified {
    pub claims: AccessClaims,
    /// `sid`, parsed; `None` when it is not a canonical UUID (refused).
    pub session: Option<Uuid>,
}

impl Verified {
    pub fn new(claims: AccessClaims) -> Self {
        let session = parse_canonical(&claims.sid);
        Verified { claims, session }
    }
}

/// Only the canonical lower-case hyphenated spelling, as `store::Id::parse`.
fn parse_canonical(s: &str) -> Option<Uuid> {
    let uuid = Uuid::try_parse(s).ok()?;
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    (uuid.hyphenated().encode_lower(&mut buf).as_bytes() == s.as_bytes()).then_some(uuid)
}

/// The cache key of a token.
pub type TokenKey = [u8; 32];

pub fn key_of(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

struct Shard {
    entries: HashMap<TokenKey, Arc<Verified>>,
    /// Unix second of the last sweep of expired entries.
    swept_at: i64,
}

pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// Holds at most about `capacity` tokens; 0 turns the cache off.
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        TokenCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::new(),
                        swept_at: 0,
                    })
                })
                .collect(),
            per_shard,
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    fn shard(&self, key: &TokenKey) -> &Mutex<Shard> {
        &self.shards[key[0] as usize % SHARDS]
    }

    /// The verification of this token, if cached and not expired at `now`
    /// (Unix seconds).
    pub fn get(&self, key: &TokenKey, now: i64) -> Option<Arc<Verified>> {
        if !self.enabled() {
            return None;
        }
        let mut shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        match shard.entries.get(key) {
            Some(v) if now < v.claims.exp => Some(Arc::clone(v)),
            Some(_) => {
                shard.entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: TokenKey, verified: Arc<Verified>, now: i64) {
        if !self.enabled() || verified.claims.exp <= now {
            return;
        }
        let mut shard = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&key) {
            // Expired entries go first; the full sweep runs at most once a
            // second per shard so that a cache full of live tokens does not
            // pay a scan on every insert.
            if shard.swept_at != now {
                shard.swept_at = now;
                shard.entries.retain(|_, v| now < v.claims.exp);
            }
            if shard.entries.len() >= self.per_shard {
                // Any entry: the hasher's order is as good as random.
                if let Some(victim) = shard.entries.keys().next().copied() {
                    shard.entries.remove(&victim);
                }
            }
        }
        shard.entries.insert(key, verified);
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

    fn verified(exp: i64, sid: &str) -> Arc<Verified> {
        Arc::new(Verified::new(AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: "s".into(),
            iat: 0,
            nbf: 0,
            exp,
            jti: "j".into(),
            sid: sid.into(),
            roles: vec![],
            scope: String::new(),
            auth_provider: "local".into(),
            auth_id: "s".into(),
        }))
    }

    const SID: &str = "0190a0b2-7c1e-7000-8000-000000000001";

    #[test]
    fn hit_until_expiry_then_miss() {
        let cache = TokenCache::new(10);
        let key = key_of("token");
        cache.insert(key, verified(100, SID), 50);
        assert!(cache.get(&key, 99).is_some());
        assert!(cache.get(&key, 100).is_none());
        assert!(cache.get(&key_of("other"), 50).is_none());
    }

    #[test]
    fn expired_tokens_are_not_inserted() {
        let cache = TokenCache::new(10);
        cache.insert(key_of("t"), verified(100, SID), 100);
        assert!(cache.is_empty());
    }

    #[test]
    fn stays_within_capacity() {
        let cache = TokenCache::new(32);
        for n in 0..1000 {
            cache.insert(key_of(&n.to_string()), verified(1000, SID), 1);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        // The latest insert is always present.
        assert!(cache.get(&key_of("999"), 1).is_some());
    }

    #[test]
    fn expired_entries_make_room_first() {
        let cache = TokenCache::new(SHARDS); // one per shard
        let keys: Vec<_> = (0..200).map(|n| key_of(&n.to_string())).collect();
        let (a, b) = keys
            .iter()
            .enumerate()
            .find_map(|(i, k)| {
                keys[i + 1..]
                    .iter()
                    .find(|o| o[0] as usize % SHARDS == k[0] as usize % SHARDS)
                    .map(|o| (*k, *o))
            })
            .unwrap();
        cache.insert(a, verified(10, SID), 1);
        cache.insert(b, verified(100, SID), 20);
        assert!(cache.get(&b, 20).is_some());
        assert!(cache.get(&a, 5).is_none());
    }

    #[test]
    fn disabled_cache_holds_nothing() {
        let cache = TokenCache::new(0);
        cache.insert(key_of("t"), verified(100, SID), 1);
        assert!(cache.get(&key_of("t"), 1).is_none());
    }

    #[test]
    fn only_the_canonical_session_spelling_parses() {
        assert!(verified(1, SID).session.is_some());
        assert!(verified(1, &SID.to_uppercase()).session.is_none());
        assert!(verified(1, &SID.replace('-', "")).session.is_none());
        assert!(verified(1, "not-a-uuid").session.is_none());
    }
}
