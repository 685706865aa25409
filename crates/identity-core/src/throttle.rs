//! Brute-force throttling per account (NIST SP 800-63B §5.2.2).
//!
//! Failures are counted per (account, client) and per account. After a few
//! free failures from one client, each further attempt from it must wait an
//! exponentially growing delay (capped). The account-wide counter only acts
//! at a much higher threshold — a long pause once 100 consecutive failures
//! have happened from anywhere.
//!
//! Both counters apply to unknown devices only. A login that presents a
//! valid device token of the account (OWASP's device cookie) is counted per
//! (account, device) instead, so strangers filling the account-wide counter
//! never lock the owner out of a device he has used before.
//!
//! An attempt is *reserved* before its password is checked: the counters
//! already include it, so parallel guesses cannot all pass a check made
//! before the first of them failed. A success resets the counters; an
//! attempt that was never evaluated (the hasher was busy) is released.
//!
//! Memory is bounded without scanning on the hot path: each table keeps its
//! keys in a queue by age and every reservation prunes a few expired ones.
//! A full table makes room by forgetting the oldest keys that impose nothing
//! yet (fewer failures than the free ones): a flood of made-up accounts is
//! such keys, so it cannot lock everybody out by filling the table, and a
//! key that already delays someone is never dropped. Only a table full of
//! delaying keys refuses new ones.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ThrottlePolicy {
    /// Failures from one client (or device) before delays start.
    pub free_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive failures on one account, from anywhere, before the pause.
    pub account_limit: u32,
    pub account_pause: Duration,
    /// Keys each table holds at most.
    pub capacity: usize,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            free_failures: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            account_limit: 100,
            account_pause: Duration::from_secs(60 * 60),
            capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Expired keys looked at per reservation: more than one, so pruning
/// outpaces insertion.
const PRUNE_STEP: usize = 4;

/// Keys looked at, oldest first, to make room in a full table.
const EVICT_STEP: usize = 64;

/// Counters by key, forgotten `horizon` after their last attempt. Every key
/// is in `queue` exactly once, roughly oldest first.
#[derive(Debug)]
struct Table<K> {
    entries: HashMap<K, Failures>,
    queue: VecDeque<(K, Instant)>,
    horizon: Duration,
    capacity: usize,
    /// Keys with fewer attempts than this impose no wait: a full table may
    /// forget them.
    harmless_below: u32,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(horizon: Duration, capacity: usize, harmless_below: u32) -> Self {
        Table {
            entries: HashMap::new(),
            queue: VecDeque::new(),
            horizon,
            capacity,
            harmless_below,
        }
    }

    /// Forgets up to PRUNE_STEP keys idle for `horizon`; a key seen since it
    /// was queued goes to the back with its newer time.
    fn prune(&mut self, now: Instant) {
        for _ in 0..PRUNE_STEP {
            match self.queue.front() {
                Some((_, at)) if now.saturating_duration_since(*at) >= self.horizon => {}
                _ => return,
            }
            let Some((key, _)) = self.queue.pop_front() else {
                return;
            };
            match self.entries.get(&key) {
                Some(f) if now.saturating_duration_since(f.last) >= self.horizon => {
                    self.entries.remove(&key);
                }
                Some(f) => {
                    let last = f.last;
                    self.queue.push_back((key, last));
                }
                None => {}
            }
        }
    }

    fn get(&self, key: &K) -> Option<Failures> {
        self.entries.get(key).copied()
    }

    fn has_room_for(&self, key: &K) -> bool {
        self.entries.len() < self.capacity || self.entries.contains_key(key)
    }

    /// Room for `key`, forgetting the oldest harmless key if the table is
    /// full; false only when the oldest keys all delay someone.
    fn make_room_for(&mut self, key: &K) -> bool {
        if self.has_room_for(key) {
            return true;
        }
        for _ in 0..EVICT_STEP {
            let Some((old, at)) = self.queue.pop_front() else {
                return false;
            };
            match self.entries.get(&old) {
                Some(f) if f.count < self.harmless_below => {
                    self.entries.remove(&old);
                    return true;
                }
                Some(_) => self.queue.push_back((old, at)),
                None => {}
            }
        }
        false
    }

    /// Counts one more attempt; the caller checked `has_room_for`.
    fn bump(&mut self, key: &K, now: Instant) {
        match self.entries.get_mut(key) {
            Some(f) => {
                f.count = f.count.saturating_add(1);
                f.last = now;
            }
            None => {
                self.entries.insert(
                    key.clone(),
                    Failures {
                        count: 1,
                        last: now,
                    },
                );
                self.queue.push_back((key.clone(), now));
            }
        }
    }

    /// Keeps the key (and its place in the queue) with a zero count.
    fn reset(&mut self, key: &K) {
        if let Some(f) = self.entries.get_mut(key) {
            f.count = 0;
        }
    }

    /// Takes an attempt back; a key that only this attempt made is
    /// forgotten (shed attempts must not fill the table for free).
    fn unbump(&mut self, key: &K) {
        if let Some(f) = self.entries.get_mut(key) {
            f.count = f.count.saturating_sub(1);
            if f.count == 0 {
                self.entries.remove(key);
            }
        }
    }

    fn settle(&mut self, key: &K, how: Settle) {
        match how {
            Settle::Succeeded => self.reset(key),
            Settle::Released => self.unbump(key),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// How a reservation ends: `Throttle::succeeded` or `Throttle::release`.
#[derive(Debug, Clone, Copy)]
enum Settle {
    Succeeded,
    Released,
}

/// Who is attempting: a client (already keyed, see `client_key`) or a
/// known device of the account (its token's hash).
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    Unknown { client: &'a str },
    Device { token_hash: &'a str },
}

/// An attempt counted before its password is checked; settle it with
/// `succeeded` or `release`. Left alone, it stands as a failure.
#[derive(Debug)]
#[must_use = "a reservation is a failure unless it is settled"]
pub struct Reservation {
    account: String,
    who: Who,
}

#[derive(Debug)]
enum Who {
    Client(String),
    Device(String),
}

/// Why an attempt must wait, and how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Too many failures from this client on this account.
    Address(Duration),
    /// Too many failures on this account from unknown devices.
    Account(Duration),
    /// Too many failures from this known device.
    Device(Duration),
    /// The table is full of recent attempts: new keys wait.
    Full(Duration),
}

impl Wait {
    pub fn duration(self) -> Duration {
        match self {
            Wait::Address(d) | Wait::Account(d) | Wait::Device(d) | Wait::Full(d) => d,
        }
    }

    pub fn scope(self) -> &'static str {
        match self {
            Wait::Address(_) => "address",
            Wait::Account(_) => "account",
            Wait::Device(_) => "device",
            Wait::Full(_) => "capacity",
        }
    }
}

type Pair = (String, String);

#[derive(Debug)]
pub struct Throttle {
    policy: ThrottlePolicy,
    /// Lock order: accounts, then pairs.
    accounts: Mutex<Table<String>>,
    pairs: Mutex<Table<Pair>>,
    devices: Mutex<Table<Pair>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(ThrottlePolicy::default())
    }
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Throttle {
            accounts: Mutex::new(Table::new(
                policy.account_pause,
                policy.capacity,
                policy.free_failures,
            )),
            pairs: Mutex::new(Table::new(
                policy.max_delay,
                policy.capacity,
                policy.free_failures,
            )),
            devices: Mutex::new(Table::new(
                policy.max_delay,
                policy.capacity,
                policy.free_failures,
            )),
            policy,
        }
    }

    fn pair_delay(&self, failures: u32) -> Duration {
        if failures < self.policy.free_failures {
            return Duration::ZERO;
        }
        let doublings = (failures - self.policy.free_failures).min(20);
        (self.policy.base_delay * 2u32.pow(doublings)).min(self.policy.max_delay)
    }

    /// How long `f` must still wait before another attempt, if at all.
    fn pair_wait(&self, f: Option<Failures>, now: Instant) -> Option<Duration> {
        let f = f?;
        let until = f.last + self.pair_delay(f.count);
        (now < until).then(|| until - now)
    }

    /// Whether an attempt may be evaluated now; if so, it is counted as a
    /// failure until settled.
    pub fn reserve(
        &self,
        account: &str,
        attempt: Attempt<'_>,
        now: Instant,
    ) -> Result<Reservation, Wait> {
        let full = Wait::Full(self.policy.base_delay);
        match attempt {
            Attempt::Device { token_hash } => {
                let key = (account.to_owned(), token_hash.to_owned());
                let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
                devices.prune(now);
                if let Some(wait) = self.pair_wait(devices.get(&key), now) {
                    return Err(Wait::Device(wait));
                }
                if !devices.make_room_for(&key) {
                    return Err(full);
                }
                devices.bump(&key, now);
                Ok(Reservation {
                    account: key.0,
                    who: Who::Device(key.1),
                })
            }
            Attempt::Unknown { client } => {
                let account = account.to_owned();
                let key = (account.clone(), client.to_owned());
                let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
                let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
                accounts.prune(now);
                pairs.prune(now);
                if let Some(f) = accounts.get(&account)
                    && f.count >= self.policy.account_limit
                    && now < f.last + self.policy.account_pause
                {
                    return Err(Wait::Account(f.last + self.policy.account_pause - now));
                }
                if let Some(wait) = self.pair_wait(pairs.get(&key), now) {
                    return Err(Wait::Address(wait));
                }
                if !accounts.make_room_for(&account) || !pairs.make_room_for(&key) {
                    return Err(full);
                }
                accounts.bump(&account, now);
                pairs.bump(&key, now);
                Ok(Reservation {
                    account,
                    who: Who::Client(key.1),
                })
            }
        }
    }

    /// The password was right: this client's (or device's) counter starts
    /// over, and for an unknown device the account's too. A known device's
    /// success leaves the account-wide counter alone, so the owner's
    /// routine logins never reopen a paused account to strangers.
    pub fn succeeded(&self, reservation: Reservation) {
        self.settle(reservation, Settle::Succeeded);
    }

    /// The password was never checked (e.g. the hasher was busy): the
    /// attempt does not count.
    pub fn release(&self, reservation: Reservation) {
        self.settle(reservation, Settle::Released);
    }

    /// Settles the counters the reservation bumped: the device's, or the
    /// account's and the pair's (in the lock order).
    fn settle(&self, reservation: Reservation, how: Settle) {
        let Reservation { account, who } = reservation;
        match who {
            Who::Device(hash) => self
                .devices
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .settle(&(account, hash), how),
            Who::Client(client) => {
                let mut accounts = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
                let mut pairs = self.pairs.lock().unwrap_or_else(PoisonError::into_inner);
                accounts.settle(&account, how);
                pairs.settle(&(account, client), how);
            }
        }
    }

    /// Keys held (accounts, pairs, devices), for tests and gauges.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.accounts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            self.pairs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            self.devices
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(client: &str) -> Attempt<'_> {
        Attempt::Unknown { client }
    }

    fn fail(throttle: &Throttle, account: &str, attempt: Attempt<'_>, at: Instant) {
        let _failed = throttle
            .reserve(account, attempt, at)
            .expect("not throttled");
    }

    #[test]
    fn delays_escalate_per_address_after_free_failures() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            fail(&throttle, "acct", unknown("a"), t0);
        }
        assert_eq!(
            throttle.reserve("acct", unknown("a"), t0).unwrap_err(),
            Wait::Address(Duration::from_secs(1))
        );
        let t1 = t0 + Duration::from_secs(1);
        fail(&throttle, "acct", unknown("a"), t1);
        assert_eq!(
            throttle.reserve("acct", unknown("a"), t1).unwrap_err(),
            Wait::Address(Duration::from_secs(2))
        );
    }

    #[test]
    fn reservations_in_flight_count_before_any_of_them_fails() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        // Nothing is settled yet: all are still "in bcrypt".
        let in_flight: Vec<_> = (0..20)
            .filter_map(|_| throttle.reserve("acct", unknown("a"), t0).ok())
            .collect();
        assert_eq!(in_flight.len(), 5);
    }

    #[test]
    fn a_released_attempt_does_not_count_and_success_resets() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            let r = throttle.reserve("acct", unknown("a"), t0).unwrap();
            throttle.release(r);
        }
        for _ in 0..4 {
            fail(&throttle, "acct", unknown("a"), t0);
        }
        let r = throttle.reserve("acct", unknown("a"), t0).unwrap();
        throttle.succeeded(r);
        for _ in 0..5 {
            fail(&throttle, "acct", unknown("a"), t0);
        }
    }

    #[test]
    fn another_address_is_not_slowed() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..50 {
            let _ = throttle.reserve("acct", unknown("attacker"), t0);
        }
        assert!(throttle.reserve("acct", unknown("attacker"), t0).is_err());
        assert!(throttle.reserve("acct", unknown("owner"), t0).is_ok());
    }

    #[test]
    fn the_account_pause_stops_unknown_devices_but_not_a_known_one() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for i in 0..100 {
            fail(&throttle, "acct", unknown(&format!("addr-{i}")), t0);
        }
        assert!(matches!(
            throttle.reserve("acct", unknown("fresh"), t0),
            Err(Wait::Account(_))
        ));
        let device = Attempt::Device { token_hash: "h" };
        let r = throttle.reserve("acct", device, t0).expect("known device");
        throttle.succeeded(r);
        assert!(
            throttle.reserve("acct", unknown("fresh"), t0).is_err(),
            "the owner's device login does not reopen the account"
        );
        assert!(
            throttle
                .reserve("acct", unknown("fresh"), t0 + Duration::from_secs(3601))
                .is_ok()
        );
    }

    #[test]
    fn a_known_device_has_its_own_throttle() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        let device = Attempt::Device { token_hash: "h" };
        for _ in 0..5 {
            fail(&throttle, "acct", device, t0);
        }
        assert!(matches!(
            throttle.reserve("acct", device, t0),
            Err(Wait::Device(_))
        ));
        assert!(throttle.reserve("acct", unknown("a"), t0).is_ok());
    }

    #[test]
    fn tables_are_bounded_and_overflow_never_resets_a_live_key() {
        let policy = ThrottlePolicy {
            capacity: 10,
            ..ThrottlePolicy::default()
        };
        let throttle = Throttle::new(policy);
        let t0 = Instant::now();
        for _ in 0..5 {
            fail(&throttle, "victim", unknown("attacker"), t0);
        }
        for i in 0..9 {
            fail(&throttle, &format!("acct-{i}"), unknown("flood"), t0);
        }
        assert_eq!(throttle.sizes().0, 10);
        // A flood of made-up accounts must not lock everybody out: a full
        // table forgets the oldest keys that delay nobody yet.
        for i in 0..50 {
            let r = throttle
                .reserve(&format!("new-{i}"), unknown("flood"), t0)
                .expect("a full table of harmless keys makes room");
            throttle.release(r);
        }
        assert!(throttle.sizes().0 <= 10 && throttle.sizes().1 <= 10);
        assert!(
            matches!(
                throttle.reserve("victim", unknown("attacker"), t0),
                Err(Wait::Address(_))
            ),
            "the flood did not wipe the attacker's counter"
        );
        // Only a table whose keys all delay someone refuses a new key.
        let tight = Throttle::new(ThrottlePolicy {
            capacity: 2,
            ..ThrottlePolicy::default()
        });
        for account in ["a", "b"] {
            for _ in 0..5 {
                fail(&tight, account, unknown("attacker"), t0);
            }
        }
        assert_eq!(
            tight.reserve("c", unknown("other"), t0).unwrap_err(),
            Wait::Full(Duration::from_secs(1)),
            "delaying keys are never dropped to make room"
        );
        // Keys idle past the horizon are pruned a few per reservation:
        // no scan of the whole table.
        let later = t0 + Duration::from_secs(3601);
        for i in 0..10 {
            let r = throttle
                .reserve(&format!("late-{i}"), unknown("x"), later)
                .expect("room again as old keys expire");
            throttle.succeeded(r);
        }
        assert!(throttle.sizes().0 <= 10 && throttle.sizes().1 <= 10);
    }
}
