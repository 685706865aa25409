//! The audit trail for events that describe no stored change (refusals):
//! written off the request path, so a flood of refusals can neither slow
//! RPCs nor exhaust memory. Events that do describe a change are written in
//! that change's transaction instead.
//!
//! Anyone can cause refusals without an account, from as many addresses as
//! they have, so refusals must not compete with the rows an investigation
//! needs. Hence two paths: security-relevant events (failed logins, denied
//! access, roles, sessions) have a queue of their own that refusals never
//! enter; refused tokens and registrations are counted per minute, address
//! and reason in a bounded map and written as one row carrying
//! `detail.count` when the minute closes (or at shutdown). Whatever the
//! flood, they add at most `refusal_keys` (+ a few overflow buckets) rows a
//! minute.
//!
//! A signed-in caller can cause security events too, one refused access per
//! call. Each profile may put [`PROFILE_BUDGET_PER_MINUTE`] of those a minute
//! into the reserved queue; past that its refusals are counted like the
//! anonymous ones (one row per minute, address and action), so that one
//! account cannot push other users' rows out of the queue.

use crate::telemetry::metrics::metrics;
use chrono::{DateTime, Utc};
use identity_core::events::EventName;
use identity_store::{AuditEvent, Id, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Events that callers without an account can cause at will, before any
/// rate limit applies: aggregated.
const AGGREGATED: &[&str] = &[
    EventName::TokenRefused.as_str(),
    EventName::RegisterRefused.as_str(),
    EventName::ExchangeRefused.as_str(),
];

/// Security events that a signed-in caller causes at will: each profile has
/// a budget of rows a minute in the reserved queue, then they are counted.
const BUDGETED: &[&str] = &[EventName::AccessDenied.as_str()];

/// Rows a minute one profile may put into the reserved queue through
/// [`BUDGETED`] events: far above what a person or a well-behaved service
/// triggers, far below what a script does.
pub const PROFILE_BUDGET_PER_MINUTE: u32 = 30;

/// Profiles whose budget is tracked in one minute; past that, every new
/// profile's budgeted events are counted straight away.
const BUDGET_KEYS: usize = 10_000;

/// The address of the bucket that takes refusals once the map is full.
pub const OTHER_ADDRESSES: &str = "(other addresses)";

/// Overflow buckets beyond `refusal_keys` (one per event and detail, which
/// are few); anything past that is only counted as dropped.
const OVERFLOW_KEYS: usize = 64;

#[derive(Clone)]
pub struct AuditSink {
    shared: Arc<Shared>,
}

struct Shared {
    queue: mpsc::Sender<AuditEvent>,
    refusals: Mutex<Refusals>,
    budgets: Mutex<Budgets>,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl AuditSink {
    /// Starts the writer task (inside the Tokio runtime): `capacity` queued
    /// security events, `refusal_keys` aggregated rows at a time.
    pub fn start(store: Store, capacity: usize, refusal_keys: usize) -> AuditSink {
        let (queue, rx) = mpsc::channel::<AuditEvent>(capacity.max(1));
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            queue,
            refusals: Mutex::new(Refusals::new(refusal_keys)),
            budgets: Mutex::new(Budgets::default()),
            stop,
            writer: Mutex::new(None),
        });
        let writer = tokio::spawn(write(store, Arc::clone(&shared), rx, stopped));
        if let Ok(mut slot) = shared.writer.lock() {
            *slot = Some(writer);
        }
        AuditSink { shared }
    }

    pub fn record(&self, mut event: AuditEvent) {
        let over_budget = BUDGETED.contains(&event.event_name)
            && !self
                .shared
                .budgets
                .lock()
                .is_ok_and(|mut budgets| budgets.spend(&event));
        if over_budget {
            // Counted per action, not per target: varying the target must
            // not buy one row per call.
            if let Some(detail) = event.detail.as_object_mut() {
                detail.remove("target");
            }
        }
        if over_budget || AGGREGATED.contains(&event.event_name) {
            let added = match self.shared.refusals.lock() {
                Ok(mut refusals) => refusals.add(event),
                Err(_) => Added::Dropped,
            };
            match added {
                Added::NewRow => {}
                Added::Counted => {
                    metrics().audit_aggregated.inc();
                }
                Added::Dropped => {
                    metrics().audit_dropped.inc();
                }
            }
        } else if self.shared.queue.try_send(event).is_err() {
            metrics().audit_dropped.inc();
        }
    }

    /// Writes what is queued and every aggregate, also of the running
    /// minute, then stops the writer (at shutdown, after the last call).
    pub async fn close(&self) {
        let _ = self.shared.stop.send(true);
        let writer = self.shared.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer
            && let Err(e) = writer.await
        {
            tracing::warn!(error = %e, "audit writer failed");
        }
    }
}

async fn write(
    store: Store,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<AuditEvent>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stopped.borrow_and_update() {
        tokio::select! {
            _ = stopped.changed() => break,
            event = rx.recv() => match event {
                Some(event) => write_one(&store, &event).await,
                None => break,
            },
            _ = tick.tick() => {
                let closed = take(&shared, Some(minute_of(Utc::now())));
                write_all(&store, closed).await;
            }
        }
    }
    while let Ok(event) = rx.try_recv() {
        write_one(&store, &event).await;
    }
    write_all(&store, take(&shared, None)).await;
}

fn take(shared: &Shared, before: Option<i64>) -> Vec<AuditEvent> {
    match shared.refusals.lock() {
        Ok(mut refusals) => refusals.take(before),
        Err(_) => Vec::new(),
    }
}

async fn write_all(store: &Store, events: Vec<AuditEvent>) {
    for event in events {
        write_one(store, &event).await;
    }
}

async fn write_one(store: &Store, event: &AuditEvent) {
    if let Err(e) = store.record_audit(event).await {
        metrics().audit_dropped.inc();
        tracing::warn!(error = %e, event = event.event_name, "audit row not written");
    }
}

fn minute_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(60)
}

#[derive(Debug, PartialEq, Eq)]
enum Added {
    /// The first of its kind this minute: it will be a row.
    NewRow,
    /// Counted into a row already held.
    Counted,
    /// Not even an overflow bucket was left.
    Dropped,
}

/// How many budgeted events each profile spent in the current minute.
#[derive(Default)]
struct Budgets {
    minute: i64,
    spent: HashMap<Id, u32>,
}

impl Budgets {
    /// True when `event` may still go to the reserved queue.
    fn spend(&mut self, event: &AuditEvent) -> bool {
        let Some(profile) = event.profile_id else {
            return true;
        };
        let minute = minute_of(event.occurred_at);
        if minute != self.minute {
            self.minute = minute;
            self.spent.clear();
        }
        if !self.spent.contains_key(&profile) && self.spent.len() >= BUDGET_KEYS {
            return false;
        }
        let spent = self.spent.entry(profile).or_default();
        *spent += 1;
        *spent <= PROFILE_BUDGET_PER_MINUTE
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    minute: i64,
    event_name: &'static str,
    profile_id: Option<Id>,
    client_addr: Option<String>,
    /// The detail as JSON text (keys sorted): token kind and reason.
    detail: String,
}

struct Tally {
    first: AuditEvent,
    count: u64,
    last: DateTime<Utc>,
}

/// Refusals counted per minute, address, event and detail; at most
/// `keys` rows (plus a few overflow buckets) held at once.
struct Refusals {
    keys: usize,
    tallies: HashMap<Key, Tally>,
}

impl Refusals {
    fn new(keys: usize) -> Refusals {
        Refusals {
            keys: keys.max(1),
            tallies: HashMap::new(),
        }
    }

    fn add(&mut self, mut event: AuditEvent) -> Added {
        let mut key = Key {
            minute: minute_of(event.occurred_at),
            event_name: event.event_name,
            profile_id: event.profile_id,
            client_addr: event.client_addr.clone(),
            detail: event.detail.to_string(),
        };
        if !self.tallies.contains_key(&key) && self.tallies.len() >= self.keys {
            // Full: one more address or account must not mean one more row.
            key.client_addr = Some(OTHER_ADDRESSES.to_owned());
            key.profile_id = None;
            event.client_addr = key.client_addr.clone();
            event.profile_id = None;
            if !self.tallies.contains_key(&key) && self.tallies.len() >= self.keys + OVERFLOW_KEYS {
                return Added::Dropped;
            }
        }
        match self.tallies.get_mut(&key) {
            Some(tally) => {
                tally.count += 1;
                tally.last = tally.last.max(event.occurred_at);
                Added::Counted
            }
            None => {
                let last = event.occurred_at;
                self.tallies.insert(
                    key,
                    Tally {
                        first: event,
                        count: 1,
                        last,
                    },
                );
                Added::NewRow
            }
        }
    }

    /// The rows of the minutes before `before` (all with `None`), removed.
    fn take(&mut self, before: Option<i64>) -> Vec<AuditEvent> {
        let closed: Vec<Key> = self
            .tallies
            .keys()
            .filter(|k| before.is_none_or(|b| k.minute < b))
            .cloned()
            .collect();
        let mut rows: Vec<AuditEvent> = closed
            .iter()
            .filter_map(|k| self.tallies.remove(k))
            .map(|tally| {
                tally
                    .first
                    .detail("count", tally.count)
                    .detail("last_at", tally.last.to_rfc3339())
            })
            .collect();
        rows.sort_by_key(|row| row.occurred_at);
        rows
    }
}

/// Deletes audit rows older than `retention`, hourly.
pub async fn enforce_retention(store: Store, retention: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(90));
        match store.delete_audit_before(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "audit rows past retention deleted"),
            Err(e) => tracing::warn!(error = %e, "audit retention failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(at: DateTime<Utc>, from: &str, reason: &str) -> AuditEvent {
        let mut event = AuditEvent::new("identity.token.refused")
            .client(Some(from))
            .detail("token.kind", "access")
            .detail("reason", reason);
        event.occurred_at = at;
        event
    }

    fn minute(m: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(m * 60 + 5, 0).expect("a time")
    }

    #[test]
    fn repeated_refusals_become_one_row_per_address_reason_and_minute_with_a_count() {
        let mut refusals = Refusals::new(100);
        for _ in 0..50 {
            refusals.add(refused(minute(1), "198.51.100.1", "malformed"));
            refusals.add(refused(minute(1), "198.51.100.2", "malformed"));
            refusals.add(refused(minute(1), "198.51.100.1", "expired"));
            refusals.add(refused(minute(2), "198.51.100.1", "malformed"));
        }
        let closed = refusals.take(Some(2));
        assert_eq!(closed.len(), 3, "minute 2 is still open");
        assert!(closed.iter().all(|row| row.detail["count"] == 50));
        let rest = refusals.take(None);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].detail["reason"], "malformed");
        assert_eq!(rest[0].detail["count"], 50);
        assert!(refusals.take(None).is_empty());
    }

    fn denied(at: DateTime<Utc>, profile: Id) -> AuditEvent {
        let mut event = AuditEvent::new("identity.access.denied").profile(profile);
        event.occurred_at = at;
        event
    }

    #[test]
    fn each_profile_has_its_own_budget_of_queued_refusals_a_minute() {
        let mut budgets = Budgets::default();
        let (flooder, bystander) = (Id::new(), Id::new());
        for _ in 0..PROFILE_BUDGET_PER_MINUTE {
            assert!(budgets.spend(&denied(minute(1), flooder)));
        }
        assert!(!budgets.spend(&denied(minute(1), flooder)));
        assert!(budgets.spend(&denied(minute(1), bystander)));
        assert!(budgets.spend(&denied(minute(2), flooder)), "a new minute");
    }

    #[test]
    fn a_full_map_folds_new_addresses_into_one_bucket_instead_of_growing() {
        let mut refusals = Refusals::new(10);
        for n in 0..10_000 {
            let from = format!("10.0.{}.{}", n / 256, n % 256);
            assert_ne!(
                refusals.add(refused(minute(1), &from, "malformed")),
                Added::Dropped
            );
        }
        assert_eq!(refusals.tallies.len(), 11);
        let rows = refusals.take(None);
        let other = rows
            .iter()
            .find(|row| row.client_addr.as_deref() == Some(OTHER_ADDRESSES))
            .expect("an overflow bucket");
        assert_eq!(other.detail["count"], 10_000 - 10);
        let total: u64 = rows
            .iter()
            .map(|row| row.detail["count"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(total, 10_000, "every refusal is counted");
    }
}
