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
//! - Bounded: a timeout covers connect, headers and body; the body is read
//!   up to `max_bytes`; redirects are not followed; the `kid` is only ever a
//!   map key, never part of a URL.

use crate::domain::provider::{KeySet, ProviderKey, parse_jwks};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Algorithm;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Start,
    Expired,
    Retry,
    UnknownKid,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Expired => "ttl_expired",
            Reason::Retry => "retry",
            Reason::UnknownKid => "unknown_kid",
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
}

/// Settings of the cache.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub url: http::Uri,
    pub algorithms: Vec<Algorithm>,
    pub min_refresh_interval: Duration,
    pub timeout: Duration,
    pub max_bytes: usize,
}

pub struct JwksCache {
    settings: JwksSettings,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    state: RwLock<State>,
    /// Held for the whole of a fetch: fetches are single-flight.
    fetch: Mutex<()>,
    fetches: AtomicU64,
    reachable: watch::Sender<Option<bool>>,
    rescheduled: Notify,
}

fn tls_connector(timeout: Duration) -> HttpsConnector<HttpConnector> {
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
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(provider)
                .expect("ring supports rustls' safe default protocol versions")
        }
    };
    builder.https_or_http().enable_http1().wrap_connector(http)
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
    pub fn new(settings: JwksSettings) -> Arc<JwksCache> {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1)
            .build(tls_connector(settings.timeout));
        let (reachable, _) = watch::channel(None);
        Arc::new(JwksCache {
            settings,
            client,
            state: RwLock::new(State {
                keys: Arc::new(HashMap::new()),
                refresh_at: Instant::now(),
                last_attempt: None,
                last_ok: false,
                failures: 0,
            }),
            fetch: Mutex::new(()),
            fetches: AtomicU64::new(0),
            reachable,
            rescheduled: Notify::new(),
        })
    }

    /// Whether the last fetch reached the provider (`None` before the first).
    pub fn reachable(&self) -> watch::Receiver<Option<bool>> {
        self.reachable.subscribe()
    }

    /// Fetches made so far (successful or not).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn cached(&self, kid: &str) -> Option<Arc<ProviderKey>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.keys.get(kid).cloned()
    }

    /// The key for `kid`, refetching the set once if it is unknown and a
    /// refetch is due.
    pub async fn key(&self, kid: &str) -> Lookup {
        if let Some(key) = self.cached(kid) {
            return Lookup::Found(key);
        }
        let _flight = self.fetch.lock().await;
        // Someone else's fetch may have brought it while we waited.
        if let Some(key) = self.cached(kid) {
            return Lookup::Found(key);
        }
        let (last_attempt, last_ok) = {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            (state.last_attempt, state.last_ok)
        };
        if let Some(at) = last_attempt
            && at.elapsed() < self.settings.min_refresh_interval
        {
            return if last_ok {
                Lookup::Unknown
            } else {
                Lookup::Unavailable
            };
        }
        match self.fetch_locked(Reason::UnknownKid).await {
            Ok(()) => self.cached(kid).map_or(Lookup::Unknown, Lookup::Found),
            Err(_) => Lookup::Unavailable,
        }
    }

    /// One fetch; the caller holds `self.fetch`.
    async fn fetch_locked(&self, reason: Reason) -> Result<(), FetchError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
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
                if reason == Reason::UnknownKid {
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
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, value.parse().unwrap());
        h
    }

    #[test]
    fn cache_control_sets_the_ttl_within_bounds() {
        assert_eq!(ttl_of(&http::HeaderMap::new()), DEFAULT_TTL);
        assert_eq!(
            ttl_of(&headers("public, max-age=600")),
            Duration::from_secs(600)
        );
        assert_eq!(ttl_of(&headers("max-age=5")), MIN_TTL);
        assert_eq!(ttl_of(&headers("max-age=99999999")), MAX_TTL);
        assert_eq!(ttl_of(&headers("no-store")), MIN_TTL);
        assert_eq!(ttl_of(&headers("max-age=oops")), DEFAULT_TTL);
    }
}
