//! Instructions per operation of the three caches (BENCHMARKS.md, "Cache
//! operations"; docs/decisions/0010-caches.md has the figures and the
//! comparison with the caches they replaced). Instruction counts, not
//! time: they repeat to within a fraction of a per cent on a busy machine.
//!
//! ```sh
//! cargo build --release -p identity-core --example cache_ops
//! valgrind --tool=callgrind --toggle-collect='*run_measured*' \
//!     target/release/examples/cache_ops CACHE MIX [OPS]
//! ```
//!
//! CACHE: `token`, `session`, `profile`, or `none` (the loop, the clocks and
//! the op stream alone: subtract it). MIX: `hits` (gets of a hot set of
//! 1000 keys in a cache holding only them) or `churn` (the cache full at
//! its default capacity; 1 % of ops bring a new key into the hot set, like
//! a login, and for sessions and profiles 0.1 % invalidate one, like a
//! logout or a role change). Only `run_measured` is counted: dividing its
//! instructions by OPS (default 200000) gives the cost of one operation,
//! the "database read" of a miss excluded.

use chrono::Utc;
use identity_core::id::Id;
use identity_core::model::Profile;
use identity_core::profile_cache::ProfileCache;
use identity_core::revocations::{Answer, RevocationState};
use identity_core::token_cache::{self, TokenCache, TokenKey, Verified};
use identity_core::tokens::AccessClaims;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const HOT: usize = 1000;

#[derive(Clone, Copy)]
enum Op {
    Get(usize),
    Invalidate(usize),
}

/// The op stream, keys numbered from `first` (those below are the cold
/// keys that fill the cache); returns it and the number of keys used. A
/// revoked session is not used again: its slot goes to a new one.
fn ops(n: usize, first: usize, churn: bool, which: &str) -> (Vec<Op>, usize) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut hot: Vec<usize> = (first..first + HOT).collect();
    let mut next = first + HOT;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = (x >> 32) as usize % HOT;
        match x % 1000 {
            r if churn && r < 10 => {
                hot[slot] = next;
                next += 1;
                out.push(Op::Get(hot[slot]));
            }
            10 if churn && which != "token" => {
                out.push(Op::Invalidate(hot[slot]));
                if which == "session" {
                    hot[slot] = next;
                    next += 1;
                }
            }
            _ => out.push(Op::Get(hot[slot])),
        }
    }
    (out, next)
}

trait Cache {
    /// A lookup as the service makes it and, on a miss, the store of what
    /// the source said. True on a hit.
    fn get_or_load(&self, k: usize, now_unix: i64, now: Instant) -> bool;
    fn invalidate(&self, k: usize, now: Instant);
}

#[inline(never)]
fn run_measured(cache: &dyn Cache, ops: &[Op]) -> usize {
    let mut hits = 0;
    for op in ops {
        // The service reads both clocks on every validation anyway.
        let (now_unix, now) = (Utc::now().timestamp(), Instant::now());
        match *op {
            Op::Get(k) => hits += cache.get_or_load(k, now_unix, now) as usize,
            Op::Invalidate(k) => cache.invalidate(k, now),
        }
    }
    hits
}

struct Nothing;
impl Cache for Nothing {
    fn get_or_load(&self, k: usize, now_unix: i64, now: Instant) -> bool {
        black_box((k, now_unix, now));
        true
    }
    fn invalidate(&self, k: usize, now: Instant) {
        black_box((k, now));
    }
}

struct Tokens(TokenCache, Vec<TokenKey>, Vec<Arc<Verified>>);
impl Cache for Tokens {
    fn get_or_load(&self, k: usize, now_unix: i64, _: Instant) -> bool {
        match self.0.get(&self.1[k], now_unix) {
            Some(v) => black_box(v).session.is_some(),
            None => {
                self.0.insert(self.1[k], Arc::clone(&self.2[k]), now_unix);
                false
            }
        }
    }
    fn invalidate(&self, _: usize, _: Instant) {}
}

/// Sessions `sids[k]` of profiles `profiles[k]` (`subs[k]` spelled out).
struct Sessions(RevocationState, Vec<Uuid>, Vec<Uuid>, Vec<String>, i64);
impl Cache for Sessions {
    fn get_or_load(&self, k: usize, now_unix: i64, now: Instant) -> bool {
        match self.0.check(self.1[k], &self.3[k], now_unix, now) {
            Answer::Live | Answer::Revoked => true,
            Answer::Unknown => {
                let ticket = self.0.begin_lookup();
                let live = Some((self.2[k], self.4));
                self.0.record_lookup(ticket, self.1[k], live, now);
                false
            }
        }
    }
    fn invalidate(&self, k: usize, now: Instant) {
        self.0.revoke_session(self.1[k], now);
    }
}

struct Profiles(ProfileCache, Vec<Arc<Profile>>);
impl Cache for Profiles {
    fn get_or_load(&self, k: usize, _: i64, now: Instant) -> bool {
        let p = &self.1[k];
        match self.0.get(p.id, now) {
            Some(found) => black_box(found).revision == 1,
            None => {
                let ticket = self.0.begin(p.id);
                self.0.put(ticket, Arc::clone(p), now);
                false
            }
        }
    }
    fn invalidate(&self, k: usize, _: Instant) {
        self.0.invalidate(self.1[k].id);
    }
}

fn claims(exp: i64) -> AccessClaims {
    AccessClaims {
        iss: "https://identity.example".into(),
        aud: "example".into(),
        sub: Uuid::now_v7().to_string(),
        iat: exp - 900,
        nbf: exp - 900,
        exp,
        jti: Uuid::now_v7().to_string(),
        sid: Uuid::now_v7().to_string(),
        roles: vec!["user".into()],
        auth_provider: "local".into(),
        auth_id: "user".into(),
    }
}

fn profile(i: usize) -> Arc<Profile> {
    Arc::new(Profile {
        id: Id::new(),
        auth_provider: "local".into(),
        auth_id: format!("user-{i}"),
        email: Some(format!("user-{i}@example.com")),
        display_name: format!("User {i}"),
        avatar_url: String::new(),
        locale: "en".into(),
        roles: vec!["user".into()],
        revision: 1,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        email_verified: false,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "cache_ops token|session|profile|none hits|churn [OPS]";
    let (Some(which), Some(mix)) = (args.get(1), args.get(2)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let churn = mix == "churn";
    // The service's defaults (IDENTITY_*_CACHE_SIZE).
    let capacity = match which.as_str() {
        "token" => 20_000,
        "session" => 100_000,
        "profile" => 10_000,
        _ => 0,
    };
    let (ops, keys) = ops(n, capacity, churn, which);
    let exp = Utc::now().timestamp() + 3600;
    let cache: Box<dyn Cache> = match which.as_str() {
        "token" => Box::new(Tokens(
            TokenCache::new(capacity),
            (0..keys)
                .map(|i| token_cache::key_of(&format!("t{i}")))
                .collect(),
            (0..keys)
                .map(|_| Arc::new(Verified::new(claims(exp))))
                .collect(),
        )),
        "session" => {
            let state = RevocationState::new(capacity, Duration::from_secs(960));
            state.trust_always();
            let profiles: Vec<Uuid> = (0..keys).map(|_| Uuid::now_v7()).collect();
            let subs = profiles
                .iter()
                .map(|p| p.hyphenated().to_string())
                .collect();
            let sids = (0..keys).map(|_| Uuid::now_v7()).collect();
            Box::new(Sessions(state, sids, profiles, subs, exp + 30 * 86400))
        }
        // Nothing expires while valgrind runs (the check costs the same);
        // the service's interval is 5 s.
        "profile" => Box::new(Profiles(
            ProfileCache::new(capacity, Duration::from_secs(3600)),
            (0..keys).map(profile).collect(),
        )),
        "none" => Box::new(Nothing),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let (now_unix, now) = (Utc::now().timestamp(), Instant::now());
    let first = if churn { 0 } else { capacity };
    for k in first..capacity + HOT {
        cache.get_or_load(k, now_unix, now);
    }
    let hits = run_measured(cache.as_ref(), &ops);
    let gets = ops.iter().filter(|op| matches!(op, Op::Get(_))).count();
    println!(
        "{which} {mix}: {n} ops, {gets} gets, {hits} hits ({:.2} %)",
        100.0 * hits as f64 / gets as f64
    );
}
