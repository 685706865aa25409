//! Rate-limit quotas: "N/period" (e.g. `30/1m`), enforced as a generic cell
//! rate (GCRA): N calls at once, then one every period/N.

use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u32,
    pub period: Duration,
}

/// Why a quota's text was refused; each names the text as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuotaError {
    #[error("`{0}`: expected COUNT/PERIOD, e.g. 30/1m")]
    Shape(String),
    #[error("`{0}`: COUNT must be a whole number")]
    Count(String),
    #[error("`{text}`: {reason}")]
    Period {
        text: String,
        reason: humantime::DurationError,
    },
    #[error("`{0}`: COUNT and PERIOD must be positive")]
    NotPositive(String),
}

impl Quota {
    pub fn parse(text: &str) -> Result<Quota, QuotaError> {
        let (count, period) = text
            .split_once('/')
            .ok_or_else(|| QuotaError::Shape(text.to_owned()))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| QuotaError::Count(text.to_owned()))?;
        let period =
            humantime::parse_duration(period.trim()).map_err(|reason| QuotaError::Period {
                text: text.to_owned(),
                reason,
            })?;
        if count == 0 || period.is_zero() {
            return Err(QuotaError::NotPositive(text.to_owned()));
        }
        Ok(Quota { count, period })
    }

    /// Time between two calls at the sustained rate.
    pub fn interval(&self) -> Duration {
        (self.period / self.count).max(Duration::from_nanos(1))
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            humantime::format_duration(self.period)
        )
    }
}

/// The rate-limited operations, each with its own quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Register,
    Login,
    Refresh,
    Validate,
    Exchange,
    /// Opening a WatchRevocations stream: counted before the watcher is
    /// authorized, whose check costs database work.
    Watch,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Register,
        Action::Login,
        Action::Refresh,
        Action::Validate,
        Action::Exchange,
        Action::Watch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Login => "login",
            Action::Refresh => "refresh",
            Action::Validate => "validate",
            Action::Exchange => "exchange",
            Action::Watch => "watch",
        }
    }
}

/// The key that new keys share once a store is full. Real keys are never
/// empty.
const OVERFLOW: &str = "";

/// Counters per key (address, account pseudonym) for governor, holding at
/// most `max_keys` of them. Once full, every key it does not hold yet
/// shares one overflow counter: a flood of new keys is limited together,
/// and never evicts — so never resets — a counter that is already held.
/// Counters of keys that went quiet are dropped by `retain_recent` (the
/// limiter's, run periodically), which frees room again.
#[derive(Debug)]
pub struct KeyStore {
    counters: Mutex<HashMap<String, Nanos>>,
    max_keys: usize,
}

impl KeyStore {
    pub fn new(max_keys: usize) -> KeyStore {
        KeyStore {
            counters: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Nanos>> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl StateStore for KeyStore {
    type Key = String;

    fn measure_and_replace<T, F, E>(&self, key: &String, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut counters = self.lock();
        if let Some(state) = counters.get_mut(key) {
            let (answer, next) = f(Some(*state))?;
            *state = next;
            return Ok(answer);
        }
        let key = if counters.len() >= self.max_keys {
            OVERFLOW
        } else {
            key.as_str()
        };
        let (answer, next) = f(counters.get(key).copied())?;
        counters.insert(key.to_owned(), next);
        Ok(answer)
    }
}

impl ShrinkableKeyedStateStore<String> for KeyStore {
    fn retain_recent(&self, drop_below: Nanos) {
        self.lock().retain(|_, state| *state > drop_below);
    }

    fn shrink_to_fit(&self) {
        self.lock().shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::num::NonZeroU32;

    fn limiter(
        max_keys: usize,
        clock: &FakeRelativeClock,
    ) -> governor::RateLimiter<
        String,
        KeyStore,
        FakeRelativeClock,
        governor::middleware::NoOpMiddleware<Nanos>,
    > {
        let quota = governor::Quota::with_period(Duration::from_secs(1))
            .unwrap()
            .allow_burst(NonZeroU32::new(2).unwrap());
        governor::RateLimiter::new(quota, KeyStore::new(max_keys), clock.clone())
    }

    #[test]
    fn a_flood_of_new_keys_never_resets_a_held_key() {
        let clock = FakeRelativeClock::default();
        let limiter = limiter(3, &clock);
        let victim = "attacker".to_owned();
        assert!(limiter.check_key(&victim).is_ok());
        assert!(limiter.check_key(&victim).is_ok());
        assert!(limiter.check_key(&victim).is_err());
        for n in 0..10_000 {
            let _ = limiter.check_key(&format!("new-{n}"));
        }
        // Held, still limited; the store did not grow past its cap (and
        // the overflow counter).
        assert!(limiter.check_key(&victim).is_err());
        assert!(limiter.len() <= 4, "{}", limiter.len());
        // New keys share the overflow counter, which is spent.
        assert!(limiter.check_key(&"another".to_owned()).is_err());
    }

    #[test]
    fn quiet_keys_are_pruned_and_their_room_is_reused() {
        let clock = FakeRelativeClock::default();
        let limiter = limiter(2, &clock);
        for key in ["a", "b", "c", "d"] {
            assert!(limiter.check_key(&key.to_owned()).is_ok());
        }
        assert_eq!(limiter.len(), 3);
        // Not yet: the counters still remember the calls.
        limiter.retain_recent();
        assert_eq!(limiter.len(), 3);
        // The overflow counter took two calls: quiet for good after 3 s.
        clock.advance(Duration::from_secs(3));
        limiter.retain_recent();
        limiter.shrink_to_fit();
        assert_eq!(limiter.len(), 0);
        assert!(limiter.check_key(&"e".to_owned()).is_ok());
        assert!(limiter.check_key(&"e".to_owned()).is_ok());
        assert!(limiter.check_key(&"e".to_owned()).is_err());
    }

    #[test]
    fn quotas_parse_and_refuse_nonsense() {
        assert_eq!(
            Quota::parse("30/1m").unwrap(),
            Quota {
                count: 30,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(
            Quota::parse("4/2s").unwrap().interval(),
            Duration::from_millis(500)
        );
        for bad in ["", "30", "0/1m", "x/1m", "5/0s", "5/soon"] {
            assert!(Quota::parse(bad).is_err(), "{bad}");
        }
    }
}
