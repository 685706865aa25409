//! Brute-force throttling per account (NIST SP 800-63B §5.2.2).
//!
//! Failures are counted per (account, client address) and per account.
//! After a few free failures from one address, each further attempt from
//! that address must wait an exponentially growing delay (capped). The
//! account-wide counter only acts at a much higher threshold — a long pause
//! once 100 consecutive failures have happened from anywhere — so an
//! attacker elsewhere cannot lock the owner out with a handful of guesses.
//! A success resets both counters.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Failures from one address before delays start.
    pub free_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive failures on one account, from anywhere, before the pause.
    pub account_limit: u32,
    pub account_pause: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            account_limit: 100,
            account_pause: Duration::from_secs(60 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Entries kept before stale ones are pruned (bounds memory under a flood
/// of random account names).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub struct Throttle {
    policy: ThrottlePolicy,
    pairs: Mutex<HashMap<(String, String), Failures>>,
    accounts: Mutex<HashMap<String, Failures>>,
}

/// Why an attempt must wait, and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Too many failures from this address on this account.
    Address(Duration),
    /// Too many failures on this account from everywhere.
    Account(Duration),
}

impl Wait {
    pub fn duration(self) -> Duration {
        match self {
            Wait::Address(d) | Wait::Account(d) => d,
        }
    }
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Throttle {
            policy,
            pairs: Mutex::default(),
            accounts: Mutex::default(),
        }
    }

    fn pair_delay(&self, failures: u32) -> Duration {
        if failures < self.policy.free_failures {
            return Duration::ZERO;
        }
        let doublings = (failures - self.policy.free_failures).min(20);
        (self.policy.base_delay * 2u32.pow(doublings)).min(self.policy.max_delay)
    }

    /// Whether an attempt may be evaluated now.
    pub fn check(&self, account: &str, addr: &str, now: Instant) -> Result<(), Wait> {
        if let Some(f) = self.accounts.lock().expect("throttle lock").get(account)
            && f.count >= self.policy.account_limit
            && now < f.last + self.policy.account_pause
        {
            return Err(Wait::Account(f.last + self.policy.account_pause - now));
        }
        let key = (account.to_owned(), addr.to_owned());
        if let Some(f) = self.pairs.lock().expect("throttle lock").get(&key) {
            let until = f.last + self.pair_delay(f.count);
            if now < until {
                return Err(Wait::Address(until - now));
            }
        }
        Ok(())
    }

    pub fn failed(&self, account: &str, addr: &str, now: Instant) {
        let bump = |f: &mut Failures| {
            f.count = f.count.saturating_add(1);
            f.last = now;
        };
        {
            let mut pairs = self.pairs.lock().expect("throttle lock");
            if pairs.len() >= MAX_ENTRIES {
                let horizon = self.policy.max_delay;
                pairs.retain(|_, f| now.duration_since(f.last) < horizon);
            }
            bump(
                pairs
                    .entry((account.to_owned(), addr.to_owned()))
                    .or_insert(Failures {
                        count: 0,
                        last: now,
                    }),
            );
        }
        let mut accounts = self.accounts.lock().expect("throttle lock");
        if accounts.len() >= MAX_ENTRIES {
            let horizon = self.policy.account_pause;
            accounts.retain(|_, f| now.duration_since(f.last) < horizon);
        }
        bump(accounts.entry(account.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        }));
    }

    pub fn succeeded(&self, account: &str, addr: &str) {
        self.pairs
            .lock()
            .expect("throttle lock")
            .remove(&(account.to_owned(), addr.to_owned()));
        self.accounts.lock().expect("throttle lock").remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_escalate_per_address_after_free_failures() {
        let throttle = Throttle::new(ThrottlePolicy::default());
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(throttle.check("acct", "a", t0).is_ok());
            throttle.failed("acct", "a", t0);
        }
        assert_eq!(
            throttle.check("acct", "a", t0),
            Err(Wait::Address(Duration::from_secs(1)))
        );
        assert!(
            throttle
                .check("acct", "a", t0 + Duration::from_secs(1))
                .is_ok()
        );
        throttle.failed("acct", "a", t0 + Duration::from_secs(1));
        assert_eq!(
            throttle.check("acct", "a", t0 + Duration::from_secs(1)),
            Err(Wait::Address(Duration::from_secs(2)))
        );
    }

    #[test]
    fn another_address_is_not_slowed_and_success_resets() {
        let throttle = Throttle::new(ThrottlePolicy::default());
        let t0 = Instant::now();
        for _ in 0..50 {
            throttle.failed("acct", "attacker", t0);
        }
        assert!(throttle.check("acct", "attacker", t0).is_err());
        assert!(throttle.check("acct", "owner", t0).is_ok());
        throttle.succeeded("acct", "attacker");
        assert!(throttle.check("acct", "attacker", t0).is_ok());
    }

    #[test]
    fn an_account_pauses_after_100_consecutive_failures_from_anywhere() {
        let throttle = Throttle::new(ThrottlePolicy::default());
        let t0 = Instant::now();
        for i in 0..100 {
            throttle.failed("acct", &format!("addr-{i}"), t0);
        }
        assert!(matches!(
            throttle.check("acct", "fresh", t0),
            Err(Wait::Account(_))
        ));
        assert!(
            throttle
                .check("acct", "fresh", t0 + Duration::from_secs(3601))
                .is_ok()
        );
    }
}
