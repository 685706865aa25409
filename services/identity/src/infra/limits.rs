//! Rate limits on the authentication RPCs, per client address and per
//! account. Local counters (governor, GCRA) always exist; with a Redis URL
//! the counters live in Redis so that every replica enforces one global
//! limit. When Redis cannot be reached the service keeps limiting with the
//! local counters, logs it, and reports Redis unreachable on a watch
//! channel (which `server.rs` turns into `identity.rate_limit` NOT_SERVING
//! in the health service) — it never fails open.

use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock};
use identity_core::rate_limit::{Action, KeyStore, Quota};
use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Health service name for the shared rate-limit backend.
pub const HEALTH_NAME: &str = "identity.rate_limit";

/// How often counters of keys that went quiet are dropped. Between two
/// runs each limiter holds at most its `max_keys`.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub enabled: bool,
    pub per_address: HashMap<Action, Quota>,
    pub per_account: HashMap<Action, Quota>,
    pub redis_url: Option<SecretString>,
    /// Root certificates (PEM) for a `rediss://` URL; None: the system's.
    pub redis_ca_pem: Option<Vec<u8>>,
    /// Keys (addresses, account pseudonyms) each local limiter holds at
    /// most; beyond it new keys share one counter (identity_core::rate_limit).
    pub max_keys: usize,
}

/// Which counter refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Address,
    Account,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub scope: Scope,
    pub retry_after: Duration,
}

struct Local {
    quota: Quota,
    limiter: RateLimiter<String, KeyStore, DefaultClock>,
}

impl Local {
    fn new(quota: Quota, max_keys: usize) -> Result<Local, LimitsError> {
        let burst = NonZeroU32::new(quota.count).unwrap_or(NonZeroU32::MIN);
        // `Quota::interval` is at least a nanosecond, which governor takes.
        let governor_quota = governor::Quota::with_period(quota.interval())
            .ok_or(LimitsError::ZeroInterval(quota))?
            .allow_burst(burst);
        Ok(Local {
            quota,
            limiter: RateLimiter::new(
                governor_quota,
                KeyStore::new(max_keys),
                DefaultClock::default(),
            ),
        })
    }

    fn check(&self, key: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// GCRA in one atomic script: the stored value is the "theoretical arrival
/// time" in ms of Redis' own clock (so replicas' clocks never matter); every
/// key gets a TTL. Returns 0 when allowed, else the ms to wait.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local tau = (burst - 1) * interval
if tat - now > tau then
  return tat - now - tau
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + 1000)
return 0
";

struct Shared {
    connection: ConnectionManager,
    script: redis::Script,
    degraded: AtomicBool,
    reachable: watch::Sender<Option<bool>>,
}

impl Shared {
    /// `None` when Redis did not answer in time: use the local counter.
    async fn check(&self, key: &str, quota: &Quota) -> Option<Result<(), Duration>> {
        if self.degraded.load(Ordering::Relaxed) {
            return None;
        }
        let interval = quota.interval().as_millis().max(1) as u64;
        let mut connection = self.connection.clone();
        let mut invocation = self.script.prepare_invoke();
        invocation.key(key).arg(interval).arg(quota.count);
        let call = invocation.invoke_async::<u64>(&mut connection);
        match tokio::time::timeout(Duration::from_millis(250), call).await {
            Ok(Ok(0)) => Some(Ok(())),
            Ok(Ok(wait_ms)) => Some(Err(Duration::from_millis(wait_ms))),
            Ok(Err(e)) => {
                self.degrade(&e.to_string());
                None
            }
            Err(_) => {
                self.degrade("timed out");
                None
            }
        }
    }

    fn degrade(&self, why: &str) {
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                event.name = "identity.rate_limit.degraded",
                error = %why,
                "Redis unreachable: rate limits continue with this replica's local counters"
            );
            self.reachable.send_replace(Some(false));
        }
    }

    /// Probes a degraded backend until it answers again.
    async fn watch(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if !self.degraded.load(Ordering::Relaxed) {
                continue;
            }
            let mut connection = self.connection.clone();
            let command = redis::cmd("PING");
            let ping = command.query_async::<String>(&mut connection);
            if matches!(
                tokio::time::timeout(Duration::from_millis(500), ping).await,
                Ok(Ok(_))
            ) {
                self.degraded.store(false, Ordering::Relaxed);
                tracing::info!(
                    event.name = "identity.rate_limit.restored",
                    "Redis reachable again: global rate limits restored"
                );
                self.reachable.send_replace(Some(true));
            }
        }
    }
}

/// Why the limiter could not be built (the server refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("IDENTITY_RATE_LIMIT_REDIS_URL: {0}")]
    Redis(redis::RedisError),
    #[error("rate limit {0}: no time between calls")]
    ZeroInterval(Quota),
}

pub struct Limiter {
    enabled: bool,
    address: HashMap<Action, Local>,
    account: HashMap<Action, Local>,
    shared: Option<Arc<Shared>>,
}

impl Limiter {
    pub fn new(settings: &LimitSettings) -> Result<Limiter, LimitsError> {
        let address = settings
            .per_address
            .iter()
            .map(|(a, q)| Ok((*a, Local::new(*q, settings.max_keys)?)))
            .collect::<Result<_, LimitsError>>()?;
        let account = settings
            .per_account
            .iter()
            .map(|(a, q)| Ok((*a, Local::new(*q, settings.max_keys)?)))
            .collect::<Result<_, LimitsError>>()?;
        let shared = match (&settings.redis_url, settings.enabled) {
            (Some(url), true) => {
                let client = match &settings.redis_ca_pem {
                    Some(pem) => redis::Client::build_with_tls(
                        url.expose_secret(),
                        redis::TlsCertificates {
                            client_tls: None,
                            root_cert: Some(pem.clone()),
                        },
                    ),
                    None => redis::Client::open(url.expose_secret()),
                }
                .map_err(LimitsError::Redis)?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_millis(500)))
                    .set_response_timeout(Some(Duration::from_millis(250)))
                    .set_number_of_retries(1);
                let connection = ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(LimitsError::Redis)?;
                let shared = Arc::new(Shared {
                    connection,
                    script: redis::Script::new(GCRA),
                    degraded: AtomicBool::new(false),
                    reachable: watch::Sender::new(Some(true)),
                });
                tokio::spawn(Arc::clone(&shared).watch());
                Some(shared)
            }
            _ => None,
        };
        Ok(Limiter {
            enabled: settings.enabled,
            address,
            account,
            shared,
        })
    }

    fn locals(&self) -> impl Iterator<Item = &Local> {
        self.address.values().chain(self.account.values())
    }

    /// Whether the shared Redis answers (`None` without one); `server.rs`
    /// follows it with the [`HEALTH_NAME`] health status.
    pub fn reachable(&self) -> Option<watch::Receiver<Option<bool>>> {
        self.shared
            .as_ref()
            .map(|shared| shared.reachable.subscribe())
    }

    /// Drops the counters of keys that went quiet (indistinguishable from
    /// a fresh counter) and gives their memory back.
    pub fn prune(&self) {
        for local in self.locals() {
            local.limiter.retain_recent();
            local.limiter.shrink_to_fit();
        }
    }

    /// Counters held in memory, all limiters together (a gauge).
    pub fn tracked_keys(&self) -> usize {
        self.locals().map(|local| local.limiter.len()).sum()
    }

    async fn check_one(
        &self,
        local: Option<&Local>,
        action: Action,
        scope: &str,
        value: &str,
    ) -> Result<(), Duration> {
        let Some(local) = local else { return Ok(()) };
        let key = format!("identity:rl:{}:{scope}:{value}", action.as_str());
        if let Some(shared) = &self.shared
            && let Some(answer) = shared.check(&key, &local.quota).await
        {
            return answer;
        }
        local.check(&key)
    }

    /// `account` must already be a pseudonym: emails never become keys.
    pub async fn check(
        &self,
        action: Action,
        addr: Option<&str>,
        account: Option<&str>,
    ) -> Result<(), Limited> {
        if !self.enabled {
            return Ok(());
        }
        if let Some(addr) = addr {
            self.check_one(self.address.get(&action), action, "addr", addr)
                .await
                .map_err(|retry_after| Limited {
                    scope: Scope::Address,
                    retry_after,
                })?;
        }
        if let Some(account) = account {
            self.check_one(self.account.get(&action), action, "acct", account)
                .await
                .map_err(|retry_after| Limited {
                    scope: Scope::Account,
                    retry_after,
                })?;
        }
        Ok(())
    }
}

/// Prunes `limiter` every `PRUNE_INTERVAL`, for as long as the process
/// runs. Without Redis (or while it is unreachable) every address and
/// account seen gets a counter here.
pub async fn prune_periodically(limiter: Arc<Limiter>) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        limiter.prune();
    }
}
