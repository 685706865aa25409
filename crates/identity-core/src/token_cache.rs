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
use crate::bounded::Bounded;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use uuid::Uuid;

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

pub struct TokenCache {
    entries: Bounded<TokenKey, Arc<Verified>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.entries.capacity())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// Holds at most about `capacity` tokens; 0 turns the cache off.
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            entries: Bounded::new(capacity),
        }
    }

    pub fn enabled(&self) -> bool {
        self.entries.enabled()
    }

    /// The verification of this token, if cached and not expired at `now`
    /// (Unix seconds).
    pub fn get(&self, key: &TokenKey, now: i64) -> Option<Arc<Verified>> {
        match self.entries.get(key) {
            Some(v) if now < v.claims.exp => Some(v),
            Some(_) => {
                self.entries.remove_if(key, |v| v.claims.exp <= now);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: TokenKey, verified: Arc<Verified>, now: i64) {
        if !self.enabled() || verified.claims.exp <= now {
            return;
        }
        self.entries
            .insert(key, verified, now as u64, |v| now < v.claims.exp);
    }

    crate::bounded::sizes!(entries);
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
        let cache = TokenCache::new(2);
        let (a, c, b) = (key_of("a"), key_of("c"), key_of("b"));
        cache.insert(a, verified(10, SID), 1);
        cache.insert(c, verified(100, SID), 1);
        cache.insert(b, verified(100, SID), 20);
        assert!(cache.get(&b, 20).is_some());
        assert!(cache.get(&a, 5).is_none());
        // The live one stayed: the expired one made the room.
        assert!(cache.get(&c, 20).is_some());
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
