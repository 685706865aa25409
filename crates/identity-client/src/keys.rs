//! identity's published keys, refetched when a token names a key not seen
//! yet: one fetch at a time (callers that arrive during a fetch wait for its
//! result) and at most one per `min_interval`, so tokens with made-up
//! `kid`s cannot make this service hammer identity.
//!
//! Each key set comes with a bounded cache of the tokens it verified
//! (`identity_core::token_cache`, keyed by the token's SHA-256, kept until
//! its `exp`), so a token seen again skips the JWT parsing and the
//! signature. The cache lives and dies with its key set: once identity
//! publishes other keys (a rotation, a removed key, a reset), every token is
//! verified again against them. It caches signatures and claims only; the
//! revocation state and the staleness bound are consulted on every call
//! (`Verifier::verify`).

use crate::principal::now_unix;
use identity_core::token_cache::{self, TokenCache, Verified};
use identity_core::tokens::{JwkError, PublicJwk, Refusal, VerifyingKeys, check_size};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// One `GetJwks` call.
pub(crate) type Fetching =
    Pin<Box<dyn Future<Output = Result<Vec<PublicJwk>, tonic::Status>> + Send>>;

/// Fetches the JWK set (`GetJwks`); a function so tests can count calls.
pub(crate) type Fetch = Arc<dyn Fn() -> Fetching + Send + Sync>;

/// The rules every key set is built under (issuer, audience, leeway).
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
}

struct Current {
    keys: Arc<VerifyingKeys>,
    /// Tokens `keys` verified; replaced with the keys.
    verified: Arc<TokenCache>,
    /// Bumped by every fetch, so a caller that waited for the lock sees
    /// that someone else fetched meanwhile.
    generation: u64,
}

/// A key set as one caller uses it.
struct Snapshot {
    keys: Arc<VerifyingKeys>,
    verified: Arc<TokenCache>,
    generation: u64,
}

pub(crate) struct KeyCache {
    current: RwLock<Current>,
    /// Held for the duration of a fetch: the single flight.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
    rules: Rules,
    fetch: Fetch,
    /// Capacity of each key set's cache of verified tokens (0: none).
    cache_size: usize,
}

impl KeyCache {
    pub(crate) fn new(
        jwks: &[PublicJwk],
        rules: Rules,
        min_interval: Duration,
        fetch: Fetch,
        cache_size: usize,
    ) -> Result<Self, JwkError> {
        let keys = VerifyingKeys::from_jwks(
            jwks,
            rules.issuer.clone(),
            rules.audience.clone(),
            rules.leeway,
        )?;
        Ok(KeyCache {
            current: RwLock::new(Current {
                keys: Arc::new(keys),
                verified: Arc::new(TokenCache::new(cache_size)),
                generation: 0,
            }),
            fetching: tokio::sync::Mutex::new(Some(Instant::now())),
            min_interval,
            rules,
            fetch,
            cache_size,
        })
    }

    fn snapshot(&self) -> Snapshot {
        let c = match self.current.read() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        Snapshot {
            keys: Arc::clone(&c.keys),
            verified: Arc::clone(&c.verified),
            generation: c.generation,
        }
    }

    /// Verifies `token` with the keys known now, fetching them again (at
    /// most once per interval, one fetch at a time) when its key is unknown.
    pub(crate) async fn verify(&self, token: &str) -> Result<Arc<Verified>, Refusal> {
        // Before hashing for the cache: an oversized token costs nothing.
        check_size(token)?;
        let now = now_unix();
        let current = self.snapshot();
        let key = current
            .verified
            .enabled()
            .then(|| token_cache::key_of(token));
        if let Some(key) = &key
            && let Some(hit) = current.verified.get(key, now)
        {
            return Ok(hit);
        }
        let (claims, verified_by) = match current.keys.verify(token) {
            Err(Refusal::UnknownKey) => {
                self.refetch(current.generation, false).await;
                let again = self.snapshot();
                (again.keys.verify(token)?, again.verified)
            }
            other => (other?, current.verified),
        };
        let verified = Arc::new(Verified::new(claims));
        if let Some(key) = key {
            // Into the cache of the keys that verified it: if they were
            // replaced meanwhile, the entry goes with them.
            verified_by.insert(key, Arc::clone(&verified), now);
        }
        Ok(verified)
    }

    /// Fetches the keys unless (for a token's unknown kid) someone fetched
    /// since `seen` or the last fetch is too recent. `force` is for
    /// identity's own word (`reset`, `key_set_changed`), which no caller of
    /// ours controls: it always fetches once more, since a fetch that was
    /// already in flight may have read the keys from before the change.
    pub(crate) async fn refetch(&self, seen: u64, force: bool) {
        let mut last = self.fetching.lock().await;
        if !force
            && (self.snapshot().generation != seen
                || last.is_some_and(|at| at.elapsed() < self.min_interval))
        {
            return;
        }
        *last = Some(Instant::now());
        match (self.fetch)().await {
            Ok(jwks) => match VerifyingKeys::from_jwks(
                &jwks,
                self.rules.issuer.clone(),
                self.rules.audience.clone(),
                self.rules.leeway,
            ) {
                Ok(keys) => {
                    let mut current = match self.current.write() {
                        Ok(c) => c,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    current.keys = Arc::new(keys);
                    current.verified = Arc::new(TokenCache::new(self.cache_size));
                    current.generation += 1;
                }
                Err(error) => {
                    tracing::warn!(%error, "identity published an unusable key set; keeping the old one")
                }
            },
            Err(status) => tracing::warn!(%status, "GetJwks failed; keeping the old key set"),
        }
    }

    /// Fetches now (identity said the keys changed).
    pub(crate) async fn refresh(&self) {
        self.refetch(0, true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity_core::tokens::{AccessClaims, Ed25519Key, TokenKeys, generate_ed25519_pem};
    use secrecy::ExposeSecret as _;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn signer() -> TokenKeys {
        let pem = generate_ed25519_pem().unwrap();
        let key = Ed25519Key::from_pem(pem.expose_secret(), "test").unwrap();
        TokenKeys::new(
            vec![key],
            None,
            "identity".into(),
            "identity".into(),
            Duration::from_secs(30),
        )
        .unwrap()
    }

    fn rules() -> Rules {
        Rules {
            issuer: "identity".into(),
            audience: "identity".into(),
            leeway: Duration::from_secs(30),
        }
    }

    fn token(keys: &TokenKeys) -> String {
        let now = crate::principal::now_unix();
        keys.sign(&AccessClaims {
            iss: "identity".into(),
            aud: "identity".into(),
            sub: "p".into(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: "j".into(),
            sid: "s".into(),
            roles: vec![],
            auth_provider: "local".into(),
            auth_id: "p".into(),
        })
        .unwrap()
    }

    /// A fetch that answers `jwks` after 100 ms, counting its calls.
    fn counting(jwks: Vec<PublicJwk>, calls: Arc<AtomicUsize>) -> Fetch {
        Arc::new(move || {
            let jwks = jwks.clone();
            let calls = Arc::clone(&calls);
            let fetching: Fetching = Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(jwks)
            });
            fetching
        })
    }

    /// Short, so the tests run in real time (no paused clock: that would
    /// rebuild tokio and everything above it with test-util).
    const INTERVAL: Duration = Duration::from_millis(400);

    #[tokio::test]
    async fn a_new_key_is_fetched_once_for_many_concurrent_tokens() {
        let (old, new) = (signer(), signer());
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(
            KeyCache::new(
                old.jwks(),
                rules(),
                INTERVAL,
                counting([new.jwks(), old.jwks()].concat(), Arc::clone(&calls)),
                100,
            )
            .unwrap(),
        );
        // Past the interval since the start-up fetch.
        tokio::time::sleep(INTERVAL).await;
        let fresh = token(&new);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let cache = Arc::clone(&cache);
                let token = fresh.clone();
                tokio::spawn(async move { cache.verify(&token).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok(), "every caller gets the new key");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one fetch for all of them");
        assert!(cache.verify(&token(&old)).await.is_ok());
    }

    #[tokio::test]
    async fn unknown_kids_refetch_at_most_once_per_interval() {
        let (known, stranger) = (signer(), signer());
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = KeyCache::new(
            known.jwks(),
            rules(),
            INTERVAL,
            counting(known.jwks().to_vec(), Arc::clone(&calls)),
            100,
        )
        .unwrap();
        let forged = token(&stranger);
        for _ in 0..50 {
            assert_eq!(
                cache.verify(&forged).await.map(drop),
                Err(Refusal::UnknownKey)
            );
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "the start-up fetch is recent"
        );
        tokio::time::sleep(INTERVAL).await;
        for _ in 0..50 {
            assert_eq!(
                cache.verify(&forged).await.map(drop),
                Err(Refusal::UnknownKey)
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one fetch per interval");
        tokio::time::sleep(INTERVAL).await;
        assert_eq!(
            cache.verify(&forged).await.map(drop),
            Err(Refusal::UnknownKey)
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // identity's own word is not rate-limited.
        cache.refresh().await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_token_seen_again_is_not_verified_again_while_its_keys_stand() {
        let keys = signer();
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = KeyCache::new(
            keys.jwks(),
            rules(),
            INTERVAL,
            counting(keys.jwks().to_vec(), Arc::clone(&calls)),
            100,
        )
        .unwrap();
        let token = token(&keys);
        let first = cache.verify(&token).await.unwrap();
        let again = cache.verify(&token).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the second call is a hit");
        let mut forged = token.clone();
        forged.pop();
        assert!(
            cache.verify(&forged).await.is_err(),
            "another string is another entry"
        );
    }

    #[tokio::test]
    async fn a_cached_verification_does_not_outlive_the_key_that_made_it() {
        // The attacker holds a token of a key identity has since withdrawn
        // (leaked, rotated out): the cache must not keep vouching for it.
        let (withdrawn, kept) = (signer(), signer());
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = KeyCache::new(
            &[withdrawn.jwks(), kept.jwks()].concat(),
            rules(),
            INTERVAL,
            counting(kept.jwks().to_vec(), Arc::clone(&calls)),
            100,
        )
        .unwrap();
        let stolen = token(&withdrawn);
        for _ in 0..3 {
            assert!(cache.verify(&stolen).await.is_ok(), "cached meanwhile");
        }
        // identity says its keys changed (key_set_changed or a reset).
        cache.refresh().await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            cache.verify(&stolen).await.map(drop),
            Err(Refusal::UnknownKey),
            "refused once its key is gone"
        );
        assert!(cache.verify(&token(&kept)).await.is_ok());
    }
    /// identity withdraws a key and says so (key_set_changed) while a fetch
    /// that a token with an unknown kid started is still in flight: that
    /// fetch's answer predates the withdrawal.
    #[tokio::test]
    async fn a_key_withdrawn_while_a_fetch_is_in_flight_is_refused_after_the_notice() {
        let (withdrawn, kept, stranger) = (signer(), signer(), signer());
        let calls = Arc::new(AtomicUsize::new(0));
        let before = [withdrawn.jwks(), kept.jwks()].concat();
        let after = kept.jwks().to_vec();
        let fetch: Fetch = {
            let calls = Arc::clone(&calls);
            Arc::new(move || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let jwks = if n == 0 {
                    before.clone()
                } else {
                    after.clone()
                };
                let fetching: Fetching = Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(jwks)
                });
                fetching
            })
        };
        let cache = Arc::new(
            KeyCache::new(
                &[withdrawn.jwks(), kept.jwks()].concat(),
                rules(),
                INTERVAL,
                fetch,
                100,
            )
            .unwrap(),
        );
        let stolen = token(&withdrawn);
        assert!(
            cache.verify(&stolen).await.is_ok(),
            "valid before withdrawal, now cached"
        );
        tokio::time::sleep(INTERVAL).await;
        // Anyone sends a token with an unknown kid: a fetch starts.
        let probe = {
            let cache = Arc::clone(&cache);
            let t = token(&stranger);
            tokio::spawn(async move { cache.verify(&t).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        // identity withdraws the key now and announces it (key_set_changed).
        cache.refresh().await;
        let _ = probe.await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the notice fetched again");
        assert_eq!(
            cache.verify(&stolen).await.map(drop),
            Err(Refusal::UnknownKey),
            "the withdrawn key's token must be refused after key_set_changed"
        );
    }
}
