//! Places of WatchRevocations streams: at most
//! `IDENTITY_REVOCATION_MAX_WATCHERS` in all, and under it at most
//! `IDENTITY_REVOCATION_MAX_WATCHERS_PER_ADDRESS` for one client address
//! and `IDENTITY_REVOCATION_MAX_WATCHERS_PER_PRINCIPAL` for one principal
//! (docs/decisions/0019-watcher-caps-per-address-and-principal.md).
//!
//! A watcher that keeps reading holds its place for as long as it likes
//! (the send timeout only ends streams nobody reads), so without the
//! per-client caps one holder of a watch credential could take them all.
//! The three counts live under one lock and are checked together: a
//! watcher refused by one cap never holds, even for a moment, a place
//! under another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The three caps, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    /// Streams at once, whoever holds them.
    pub server: usize,
    /// Streams of one client address (an IPv6 prefix counts as one).
    pub per_address: usize,
    /// Streams of one principal, from any number of addresses.
    pub per_principal: usize,
}

/// Which cap turned a watcher away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Server,
    Address,
    Principal,
}

impl Cap {
    /// The setting that sets it: said to the refused client and operators.
    pub const fn setting(self) -> &'static str {
        match self {
            Cap::Server => "IDENTITY_REVOCATION_MAX_WATCHERS",
            Cap::Address => "IDENTITY_REVOCATION_MAX_WATCHERS_PER_ADDRESS",
            Cap::Principal => "IDENTITY_REVOCATION_MAX_WATCHERS_PER_PRINCIPAL",
        }
    }

    /// The `scope` of the `identity.rate_limited` event.
    pub const fn scope(self) -> &'static str {
        match self {
            Cap::Server => "server",
            Cap::Address => "address",
            Cap::Principal => "principal",
        }
    }
}

/// Whom a watcher is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The client's address key (as rate limits key it); `None` when the
    /// server cannot tell (no TCP peer), which only the other caps bound.
    pub address: Option<String>,
    /// The principal: `token:` and the bearer's subject, or `certificate:`
    /// and the client certificate's identity.
    pub principal: String,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    addresses: HashMap<String, usize>,
    principals: HashMap<String, usize>,
}

/// Every watcher's place; shared by the feed and the places it gave out.
#[derive(Debug)]
pub struct Slots {
    limits: SlotLimits,
    counts: Mutex<Counts>,
}

/// One watcher's place under all three caps, given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    holder: Holder,
}

/// One count more for `key`, unless it holds `max` already.
fn fits(map: &HashMap<String, usize>, key: &str, max: usize) -> bool {
    map.get(key).copied().unwrap_or(0) < max
}

/// One count fewer for `key`; the key goes once nothing is counted, so the
/// maps hold only clients that hold places (at most the server cap's worth).
fn release(map: &mut HashMap<String, usize>, key: &str) {
    if let Some(count) = map.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            map.remove(key);
        }
    }
}

impl Slots {
    /// A per-client cap above the server's would mean the server's: it is
    /// clamped, so that a smaller `IDENTITY_REVOCATION_MAX_WATCHERS` alone
    /// need not lower the others too.
    pub fn new(limits: SlotLimits) -> Arc<Slots> {
        Arc::new(Slots {
            limits: SlotLimits {
                server: limits.server,
                per_address: limits.per_address.min(limits.server),
                per_principal: limits.per_principal.min(limits.server),
            },
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Counters only, changed in one step each: a panic elsewhere
        // cannot leave them half-written.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn limits(&self) -> SlotLimits {
        self.limits
    }

    /// Places held now.
    pub fn held(&self) -> usize {
        self.counts().total
    }

    /// A place for `holder`, or the cap it met. The client's own caps are
    /// named first: they say the refusal is its own doing.
    pub fn acquire(self: &Arc<Self>, holder: Holder) -> Result<Slot, Cap> {
        let mut counts = self.counts();
        if let Some(address) = &holder.address
            && !fits(&counts.addresses, address, self.limits.per_address)
        {
            return Err(Cap::Address);
        }
        if !fits(
            &counts.principals,
            &holder.principal,
            self.limits.per_principal,
        ) {
            return Err(Cap::Principal);
        }
        if counts.total >= self.limits.server {
            return Err(Cap::Server);
        }
        counts.total += 1;
        if let Some(address) = &holder.address {
            *counts.addresses.entry(address.clone()).or_insert(0) += 1;
        }
        *counts
            .principals
            .entry(holder.principal.clone())
            .or_insert(0) += 1;
        drop(counts);
        Ok(Slot {
            slots: Arc::clone(self),
            holder,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(address) = &self.holder.address {
            release(&mut counts.addresses, address);
        }
        release(&mut counts.principals, &self.holder.principal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(address: &str, principal: &str) -> Holder {
        Holder {
            address: Some(address.to_owned()),
            principal: principal.to_owned(),
        }
    }

    fn slots(server: usize, per_address: usize, per_principal: usize) -> Arc<Slots> {
        Slots::new(SlotLimits {
            server,
            per_address,
            per_principal,
        })
    }

    #[test]
    fn one_address_is_held_to_its_cap_and_another_is_not() {
        let slots = slots(10, 2, 10);
        let held: Vec<Slot> = (0..2)
            .map(|i| {
                slots
                    .acquire(holder("192.0.2.1", &format!("p{i}")))
                    .unwrap()
            })
            .collect();
        assert_eq!(
            slots.acquire(holder("192.0.2.1", "p9")).unwrap_err(),
            Cap::Address
        );
        assert!(slots.acquire(holder("192.0.2.2", "p9")).is_ok());
        assert_eq!(held.len(), 2);
    }

    #[test]
    fn one_principal_is_held_to_its_cap_from_any_address() {
        let slots = slots(10, 10, 2);
        let _a = slots.acquire(holder("192.0.2.1", "p")).unwrap();
        let _b = slots.acquire(holder("192.0.2.2", "p")).unwrap();
        assert_eq!(
            slots.acquire(holder("192.0.2.3", "p")).unwrap_err(),
            Cap::Principal
        );
        assert!(slots.acquire(holder("192.0.2.3", "q")).is_ok());
    }

    #[test]
    fn the_server_cap_holds_whoever_asks_and_a_refusal_takes_nothing() {
        let slots = slots(2, 5, 5);
        let _a = slots.acquire(holder("192.0.2.1", "p")).unwrap();
        let _b = slots.acquire(holder("192.0.2.2", "q")).unwrap();
        assert_eq!(
            slots.acquire(holder("192.0.2.3", "r")).unwrap_err(),
            Cap::Server
        );
        assert_eq!(slots.held(), 2);
        let counts = slots.counts();
        assert!(!counts.addresses.contains_key("192.0.2.3"));
        assert!(!counts.principals.contains_key("r"));
    }

    #[test]
    fn a_dropped_slot_frees_all_three_counts_and_forgets_idle_keys() {
        let slots = slots(3, 1, 1);
        let first = slots.acquire(holder("192.0.2.1", "p")).unwrap();
        assert!(slots.acquire(holder("192.0.2.1", "p")).is_err());
        drop(first);
        assert_eq!(slots.held(), 0);
        {
            let counts = slots.counts();
            assert!(counts.addresses.is_empty() && counts.principals.is_empty());
        }
        assert!(slots.acquire(holder("192.0.2.1", "p")).is_ok());
    }

    #[test]
    fn an_unknown_address_is_bounded_by_the_other_caps_only() {
        let slots = slots(5, 1, 2);
        let unknown = |p: &str| Holder {
            address: None,
            principal: p.to_owned(),
        };
        let _a = slots.acquire(unknown("p")).unwrap();
        let _b = slots.acquire(unknown("p")).unwrap();
        assert_eq!(slots.acquire(unknown("p")).unwrap_err(), Cap::Principal);
    }

    #[test]
    fn per_client_caps_above_the_server_cap_mean_the_server_cap() {
        let slots = slots(4, 16, 256);
        assert_eq!(
            slots.limits(),
            SlotLimits {
                server: 4,
                per_address: 4,
                per_principal: 4
            }
        );
    }
}
