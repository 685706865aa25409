//! The provider's JWK set: fetched over HTTP(S), cached, refreshed.
//!
//! - Fetched at start; a failure is logged, never fatal.
//! - Kept for the response's `Cache-Control: max-age` (clamped to
//!   [`MIN_TTL`]..[`MAX_TTL`], [`DEFAULT_TTL`] without one), then refreshed
//!   in the background. While the provider is down the last good keys stay
//!   in use, and refreshes are retried with a growing delay.
//! - A `kid` that is not cached triggers a refetch, but at most one per
//!   `min_refresh_interval`, whatever the number of callers: fetches are
//!   single-flight (one mutex) and rate-limited, so a flood of tokens with
//!   random kids costs the provider at most one request per interval.
//! - That slot alone would let one forged token per interval, sent just
//!   before a genuine rotation, keep the new key out for a whole interval.
//!   So a kid refused as unknown is remembered (a few hundred at most), and
//!   when it comes back while the slot is spent it may use a second slot,
//!   also one per interval. A genuine new kid comes back (every token the
//!   provider now signs carries it), so it is fetched at its second use;
//!   a flood of fresh random kids never reaches that slot. The cost stays
//!   bounded: at most two unknown-kid fetches per interval, whatever the
//!   traffic. (No rule can tell a forged kid from a genuine one before the
//!   fetch: an attacker repeating kids can spend both slots, and then a
//!   rotation waits at most one interval, as before.)
//! - Cached keys are trusted for at most `max_stale` after the last
//!   successful fetch: a provider that stays unreachable cannot keep a key
//!   it has retired (perhaps because it leaked) trusted for ever.
//! - Bounded: a timeout covers connect, headers and body; the body is read
//!   up to `max_bytes`; redirects are not followed; the `kid` is only ever a
//!   map key, never part of a URL.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use identity_core::provider::{KeySet, ProviderKey, parse_jwks};
use jsonwebtoken::Algorithm;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, Notify, watch};
use tokio::time::Instant;

pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
pub const MIN_TTL: Duration = Duration::from_secs(60);
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Longest wait between retries while the provider is unreachable.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// How a `kid` lookup ended.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(Arc<ProviderKey>),
    /// Not in the provider's current key set (or a refetch was not due).
    Unknown,
    /// Not cached, and the provider could not be asked.
    Unavailable,
}

/// Why a fetch failed (for logs only).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
    #[error("HTTP status {0}")]
    Status(http::StatusCode),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Invalid(identity_core::provider::ProviderError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Start,
    Expired,
    Retry,
    UnknownKid,
    /// A kid refused as unknown before came back.
    UnknownKidAgain,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Expired => "ttl_expired",
            Reason::Retry => "retry",
            Reason::UnknownKid => "unknown_kid",
            Reason::UnknownKidAgain => "unknown_kid_again",
        }
    }
}

struct State {
    keys: Arc<HashMap<String, Arc<ProviderKey>>>,
    /// When the cached set should be refreshed.
    refresh_at: Instant,
    last_attempt: Option<Instant>,
    last_ok: bool,
    failures: u32,
    /// The last successful fetch: keys older than `max_stale` are not used.
    fetched_at: Option<Instant>,
    /// The last fetch through the second slot (kids seen before).
    last_again: Option<Instant>,
    /// Kids refused as unknown lately, oldest first.
    refused: VecDeque<String>,
}

/// Kids remembered as refused; beyond it the oldest is forgotten.
const MAX_REFUSED_KIDS: usize = 256;

/// Settings of the cache.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub url: http::Uri,
    pub algorithms: Vec<Algorithm>,
    pub min_refresh_interval: Duration,
    pub timeout: Duration,
    pub max_bytes: usize,
    pub max_stale: Duration,
}

pub struct JwksCache {
    settings: JwksSettings,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    state: RwLock<State>,
    /// Held for the whole of a fetch: fetches are single-flight.
    fetch: Arc<Mutex<()>>,
    reachable: watch::Sender<Option<bool>>,
    rescheduled: Notify,
}

/// Fails only for a crypto provider without TLS 1.2 and 1.3, which ring is
/// not; the error stops the start rather than a panic.
fn tls_connector(timeout: Duration) -> Result<HttpsConnector<HttpConnector>, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    // ring only: tonic already uses it, and rustls refuses to pick between
    // two compiled-in providers.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match builder.with_provider_and_native_roots(Arc::clone(&provider)) {
        Ok(builder) => builder,
        Err(e) => {
            tracing::debug!(error = %e, "no system CA certificates; using the Mozilla roots");
            hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_webpki_roots(provider)?
        }
    };
    Ok(builder.https_or_http().enable_http1().wrap_connector(http))
}

/// `max-age` of a Cache-Control header (`no-store`/`no-cache` count as 0).
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut age = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        for directive in value.to_str().ok()?.split(',') {
            let directive = directive.trim().to_ascii_lowercase();
            if directive == "no-store" || directive == "no-cache" {
                return Some(Duration::ZERO);
            }
            if let Some(secs) = directive.strip_prefix("max-age=") {
                age = secs.trim_matches('"').parse().ok().map(Duration::from_secs);
            }
        }
    }
    age
}

fn ttl_of(headers: &http::HeaderMap) -> Duration {
    max_age(headers).map_or(DEFAULT_TTL, |age| age.clamp(MIN_TTL, MAX_TTL))
}

impl JwksCache {
    pub fn new(settings: JwksSettings) -> Result<Arc<JwksCache>, rustls::Error> {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(tls_connector(settings.timeout)?);
        let (reachable, _) = watch::channel(None);
        Ok(Arc::new(JwksCache {
            settings,
            client,
            state: RwLock::new(State {
                keys: Arc::new(HashMap::new()),
                refresh_at: Instant::now(),
                last_attempt: None,
                last_ok: false,
                failures: 0,
                fetched_at: None,
                last_again: None,
                refused: VecDeque::new(),
            }),
            fetch: Arc::new(Mutex::new(())),
            reachable,
            rescheduled: Notify::new(),
        }))
    }

    /// Whether the last fetch reached the provider (`None` before the first).
    pub fn reachable(&self) -> watch::Receiver<Option<bool>> {
        self.reachable.subscribe()
    }

    fn cached(&self, kid: &str) -> Option<Arc<ProviderKey>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let fresh = state
            .fetched_at
            .is_some_and(|at| at.elapsed() <= self.settings.max_stale);
        if fresh {
            state.keys.get(kid).cloned()
        } else {
            None
        }
    }

    /// Notes `kid` as refused; true when it was refused before.
    fn refused_before(&self, kid: &str) -> bool {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.refused.iter().any(|k| k == kid) {
            return true;
        }
        if state.refused.len() >= MAX_REFUSED_KIDS {
            state.refused.pop_front();
        }
        state.refused.push_back(kid.to_owned());
        false
    }

    /// The key for `kid`, refetching the set once if it is unknown and a
    /// refetch is due.
    pub async fn key(self: &Arc<Self>, kid: &str) -> Lookup {
        if let Some(key) = self.cached(kid) {
            return Lookup::Found(key);
        }
        let flight = Arc::clone(&self.fetch).lock_owned().await;
        // Someone else's fetch may have brought it while we waited.
        if let Some(key) = self.cached(kid) {
            return Lookup::Found(key);
        }
        let interval = self.settings.min_refresh_interval;
        let (last_attempt, last_again, last_ok) = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            (state.last_attempt, state.last_again, state.last_ok)
        };
        let due = |at: Option<Instant>| at.is_none_or(|at| at.elapsed() >= interval);
        let mut reason = Reason::UnknownKid;
        if !due(last_attempt) {
            // The first slot is spent: only a kid refused before may use
            // the second one (see the module comment).
            if self.refused_before(kid) && due(last_again) {
                reason = Reason::UnknownKidAgain;
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                state.last_again = Some(Instant::now());
            } else {
                return if last_ok {
                    Lookup::Unknown
                } else {
                    Lookup::Unavailable
                };
            }
        }
        // The fetch runs as a task of its own that holds the lock until it
        // is done: a caller that goes away (cancelled RPC) can neither cut
        // it short nor let the next caller start another one.
        let this = Arc::clone(self);
        let fetched = tokio::spawn(async move {
            let _flight = flight;
            this.fetch_locked(reason).await.is_ok()
        })
        .await
        .unwrap_or(false);
        if fetched {
            self.cached(kid).map_or_else(
                || {
                    self.refused_before(kid);
                    Lookup::Unknown
                },
                Lookup::Found,
            )
        } else {
            Lookup::Unavailable
        }
    }

    /// One fetch; the caller holds `self.fetch`.
    async fn fetch_locked(&self, reason: Reason) -> Result<(), FetchError> {
        crate::telemetry::metrics::metrics().jwks_refetches.inc();
        let started = Instant::now();
        let result = tokio::time::timeout(self.settings.timeout, self.download())
            .await
            .unwrap_or(Err(FetchError::Timeout(self.settings.timeout)));
        let result = result.and_then(|(body, ttl)| {
            parse_jwks(&body, &self.settings.algorithms)
                .map(|set| (set, ttl))
                .map_err(FetchError::Invalid)
        });
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.last_attempt = Some(Instant::now());
        match result {
            Ok((KeySet { keys, skipped }, ttl)) => {
                let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
                kids.sort_unstable();
                tracing::info!(
                    event.name = "identity.provider.jwks_fetched",
                    reason = reason.as_str(),
                    keys = keys.len(),
                    kids = %kids.join(","),
                    skipped = %skipped.join("; "),
                    ttl_secs = ttl.as_secs(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "provider JWKS fetched"
                );
                if keys.is_empty() {
                    tracing::warn!(
                        event.name = "identity.provider.jwks_empty",
                        "the provider's JWK set has no usable key (check IDENTITY_PROVIDER_ALGORITHMS)"
                    );
                }
                state.keys = Arc::new(keys.into_iter().map(|(k, v)| (k, Arc::new(v))).collect());
                state.refresh_at = Instant::now() + ttl;
                state.last_ok = true;
                state.failures = 0;
                state.fetched_at = Some(Instant::now());
                drop(state);
                self.reachable.send_replace(Some(true));
                Ok(())
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let retry = self
                    .settings
                    .min_refresh_interval
                    .max(Duration::from_secs(1))
                    .saturating_mul(1 << state.failures.min(10).saturating_sub(1))
                    .min(MAX_RETRY);
                state.refresh_at = Instant::now() + retry;
                state.last_ok = false;
                let cached = state.keys.len();
                drop(state);
                tracing::warn!(
                    event.name = "identity.provider.jwks_unavailable",
                    reason = reason.as_str(),
                    error = %error,
                    cached_keys = cached,
                    retry_in_ms = retry.as_millis() as u64,
                    "provider JWKS fetch failed; cached keys stay in use"
                );
                self.reachable.send_replace(Some(false));
                if matches!(reason, Reason::UnknownKid | Reason::UnknownKidAgain) {
                    self.rescheduled.notify_one();
                }
                Err(error)
            }
        }
    }

    async fn download(&self) -> Result<(Bytes, Duration), FetchError> {
        let request = http::Request::get(self.settings.url.clone())
            .header(
                http::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .header(
                http::header::USER_AGENT,
                concat!("identity/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Request(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| FetchError::Request(error_chain(&e)))?;
        if response.status() != http::StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let max = self.settings.max_bytes;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(FetchError::TooLarge(max));
        }
        let ttl = ttl_of(response.headers());
        let body = Limited::new(response.into_body(), max)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FetchError::TooLarge(max)
                } else {
                    FetchError::Request(e.to_string())
                }
            })?
            .to_bytes();
        Ok((body, ttl))
    }

    /// Fetches at once, then keeps the set fresh: at the end of each TTL,
    /// and with a growing delay while the provider is unreachable. Runs
    /// until aborted.
    pub async fn run(self: Arc<Self>) {
        let mut reason = Reason::Start;
        loop {
            {
                let _flight = self.fetch.lock().await;
                let due = {
                    let state = self.state.read().unwrap_or_else(|e| e.into_inner());
                    state.last_attempt.is_none() || Instant::now() >= state.refresh_at
                };
                if due {
                    let _ = self.fetch_locked(reason).await;
                }
            }
            let (refresh_at, ok) = {
                let state = self.state.read().unwrap_or_else(|e| e.into_inner());
                (state.refresh_at, state.last_ok)
            };
            reason = if ok { Reason::Expired } else { Reason::Retry };
            // A failed unknown-kid refetch brings the next retry forward.
            tokio::select! {
                () = tokio::time::sleep_until(refresh_at) => {}
                () = self.rescheduled.notified() => {}
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
