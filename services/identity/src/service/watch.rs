//! The revocation feed behind AuthService.WatchRevocations
//! (docs/decisions/0014-watch-revocations.md).
//!
//! Every revocation the fast path applies — committed here, heard from
//! another replica, or found by reconciliation — is published once, in the
//! order applied, with a sequence number of this process. A watcher sees
//! them live through one shared broadcast ring; the last
//! `IDENTITY_REVOCATION_WATCH_BACKLOG` are also kept for replay, so a
//! watcher that reconnects to the same process with the cursor of the last
//! event it received misses nothing. What cannot be replayed (a cursor of
//! another process, or older than the ring) starts with a reset instead:
//! never a silent gap.
//!
//! Memory is bounded whatever watchers do: the ring is shared (a watcher
//! costs a receiver, not a queue), a watcher that falls a whole ring behind
//! is ended (`Error::WatcherTooSlow`), and the number of watchers is capped
//! in all, per client address and per principal (`slots`).
//! A watcher holds its place only while its client takes what is sent
//! (`service::auth::watch` ends a stream whose messages wait longer than
//! the send timeout), so streams nobody reads cannot keep the cap full.
//!
//! Heartbeats are published only while the fast path trusts its own
//! knowledge (see `service::revocation`): a replica whose listener is down
//! falls silent, so that verifiers fail closed, rather than vouch for
//! revocations it may not have heard of.

pub mod slots;

use crate::service::Error;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use hmac::Mac as _;
use identity_store::Id;
use identity_store::notify::Revoked;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;

pub use slots::{Cap, Holder, Slot, SlotLimits, Slots};

/// What a watcher is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One session ended; no access token of it is unexpired after `expires`.
    SessionRevoked { session: Id, expires: DateTime<Utc> },
    /// Every session of `profile` but `except` ended: tokens of the profile
    /// issued at or before `at` are refused (but `except`'s), until `expires`.
    ProfileSessionsRevoked {
        profile: Id,
        except: Option<Id>,
        at: DateTime<Utc>,
        expires: DateTime<Utc>,
    },
    /// Roles changed or the profile was deleted.
    ProfileChanged { profile: Id },
    /// Nothing new up to the cursor, and this replica's knowledge is current.
    Heartbeat,
    /// Events may have been missed: start over.
    Reset,
}

/// A change and the cursor to resume after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    pub cursor: String,
    pub change: Change,
}

/// Cursors: `c1.` and the base64url of instance (16 bytes), sequence (8,
/// big-endian) and the first 16 bytes of an HMAC-SHA256 over both under a
/// key of this process.
const CURSOR_PREFIX: &str = "c1.";
const CURSOR_BYTES: usize = 16 + 8 + 16;
/// Longer input is not parsed at all.
const MAX_CURSOR_CHARS: usize = 128;
/// IDENTITY_REVOCATION_WATCH_SEND_TIMEOUT's default.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a watcher starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Replay every event after this sequence.
    After(u64),
    /// Cannot replay: reset.
    Reset,
}

/// Published events (not heartbeats) still replayable, oldest first.
struct Ring {
    /// The sequence of the last event published (0: none yet).
    last: u64,
    /// The cursor naming `last`.
    cursor: String,
    events: VecDeque<(u64, Arc<FeedEvent>)>,
}

pub struct Feed {
    instance: [u8; 16],
    key: [u8; 32],
    backlog: usize,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<FeedEvent>>,
    slots: Arc<Slots>,
    /// How long after applying a revocation an access token of it can
    /// still be unexpired (the access-token lifetime plus leeway).
    revoked_ttl: Duration,
    /// How long a watcher's queued messages may wait to be taken.
    send_timeout: Duration,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("backlog", &self.backlog)
            .field("watchers", &self.watchers())
            .finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing at start-up leaves nothing sensible to do;
    // a zero instance id would still only make cursors reset, not cross.
    if getrandom::fill(&mut bytes).is_err() {
        tracing::error!("no randomness for the revocation feed's instance id");
    }
    bytes
}

impl Feed {
    /// `backlog`: events replayable and how far a watcher may fall behind;
    /// `limits`: streams at once, in all and per client.
    pub fn new(backlog: usize, limits: SlotLimits, revoked_ttl: Duration) -> Feed {
        let backlog = backlog.max(1);
        let (live, _) = broadcast::channel(backlog);
        let mut feed = Feed {
            instance: random(),
            key: random(),
            backlog,
            ring: Mutex::new(Ring {
                last: 0,
                cursor: String::new(),
                events: VecDeque::with_capacity(backlog),
            }),
            live,
            slots: Slots::new(limits),
            revoked_ttl,
            send_timeout: DEFAULT_SEND_TIMEOUT,
        };
        let first = feed.cursor(0);
        feed.ring
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .cursor = first;
        feed
    }

    /// How long a watcher's queued messages may wait for its client.
    pub fn with_send_timeout(mut self, send_timeout: Duration) -> Feed {
        self.send_timeout = send_timeout;
        self
    }

    pub fn send_timeout(&self) -> Duration {
        self.send_timeout
    }

    fn ring(&self) -> MutexGuard<'_, Ring> {
        // Nothing in the ring can be left half-written by a panic.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Watchers streaming now.
    pub fn watchers(&self) -> usize {
        self.slots.held()
    }

    /// A place for a new watcher of `holder`, or the cap it met: taken
    /// before [`Self::subscribe`], by whoever can tell the refusal.
    pub fn slot(&self, holder: Holder) -> Result<Slot, Cap> {
        self.slots.acquire(holder)
    }

    fn tag(&self, instance: &[u8], seq: u64) -> [u8; 16] {
        let mut mac = identity_core::secure::hmac_sha256(&self.key);
        mac.update(b"identity/revocation-cursor/");
        mac.update(instance);
        mac.update(&seq.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    fn cursor(&self, seq: u64) -> String {
        let mut bytes = Vec::with_capacity(CURSOR_BYTES);
        bytes.extend_from_slice(&self.instance);
        bytes.extend_from_slice(&seq.to_be_bytes());
        bytes.extend_from_slice(&self.tag(&self.instance, seq));
        format!("{CURSOR_PREFIX}{}", B64.encode(bytes))
    }

    /// Where a watcher presenting `cursor` starts; the error describes what
    /// is wrong with a cursor this service did not write (or was altered).
    fn start(&self, cursor: &str, ring: &Ring) -> Result<Start, &'static str> {
        if cursor.is_empty() {
            return Ok(Start::Reset);
        }
        let malformed = "is not a cursor of this service (pass the cursor of a received event)";
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(malformed);
        }
        let bytes = cursor
            .strip_prefix(CURSOR_PREFIX)
            .and_then(|b| B64.decode(b).ok())
            .filter(|b| b.len() == CURSOR_BYTES)
            .ok_or(malformed)?;
        let (instance, rest) = bytes.split_at(16);
        let (seq, tag) = rest.split_at(8);
        let seq = u64::from_be_bytes(seq.try_into().map_err(|_| malformed)?);
        if instance != self.instance {
            // Another replica's, or an earlier run's: its key is not ours
            // to check, and its sequence means nothing here.
            return Ok(Start::Reset);
        }
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            &self.tag(instance, seq)[..],
            tag,
        )) || seq > ring.last
        {
            return Err(malformed);
        }
        let oldest = ring.events.front().map_or(ring.last + 1, |(s, _)| *s);
        if seq + 1 < oldest {
            return Ok(Start::Reset);
        }
        Ok(Start::After(seq))
    }

    /// Publishes one event under the ring's lock, so that a watcher
    /// subscribing meanwhile sees it either replayed or live, never both
    /// nor neither.
    fn publish(&self, change: Change) {
        let mut ring = self.ring();
        ring.last += 1;
        let seq = ring.last;
        let event = Arc::new(FeedEvent {
            cursor: self.cursor(seq),
            change,
        });
        ring.cursor = event.cursor.clone();
        if ring.events.len() == self.backlog {
            ring.events.pop_front();
        }
        ring.events.push_back((seq, Arc::clone(&event)));
        // No receiver is no error: nobody watches.
        let _ = self.live.send(event);
    }

    /// A revocation the fast path applied.
    pub fn revoked(&self, what: &Revoked) {
        let now = Utc::now();
        let expires =
            now + chrono::Duration::from_std(self.revoked_ttl).unwrap_or(chrono::Duration::MAX);
        self.publish(match *what {
            Revoked::Session(session) => Change::SessionRevoked { session, expires },
            Revoked::Profile { profile, except } => Change::ProfileSessionsRevoked {
                profile,
                except,
                at: now,
                expires,
            },
            Revoked::ProfileChanged(profile) => Change::ProfileChanged { profile },
        });
    }

    /// Announcements may have been lost (the listener reconnected, or heard
    /// one it does not understand): every watcher must start over.
    pub fn reset(&self) {
        self.publish(Change::Reset);
    }

    /// "Nothing new up to here". Only for a fast path that trusts its
    /// knowledge now.
    pub fn heartbeat(&self) {
        let ring = self.ring();
        let _ = self.live.send(Arc::new(FeedEvent {
            cursor: ring.cursor.clone(),
            change: Change::Heartbeat,
        }));
    }

    /// A new watcher in `slot` (see [`Self::slot`]) resuming after
    /// `resume_after` (empty: from now). A cursor this service did not
    /// write: `Invalid` naming `resume_after` (and the slot is freed).
    pub fn subscribe(&self, slot: Slot, resume_after: &str) -> Result<Watch, Error> {
        let ring = self.ring();
        let start = self
            .start(resume_after, &ring)
            .map_err(|d| Error::invalid("resume_after", d))?;
        let live = self.live.subscribe();
        let pending: VecDeque<Arc<FeedEvent>> = match start {
            Start::Reset => VecDeque::from([Arc::new(FeedEvent {
                cursor: ring.cursor.clone(),
                change: Change::Reset,
            })]),
            Start::After(seq) => ring
                .events
                .iter()
                .filter(|(s, _)| *s > seq)
                .map(|(_, e)| Arc::clone(e))
                .collect(),
        };
        Ok(Watch {
            pending,
            live,
            _slot: slot,
        })
    }
}

/// One watcher's view of the feed: what is to be replayed, then live.
pub struct Watch {
    pending: VecDeque<Arc<FeedEvent>>,
    live: broadcast::Receiver<Arc<FeedEvent>>,
    _slot: Slot,
}

impl Watch {
    /// The next event; `Err(WatcherTooSlow)` once this watcher fell a
    /// whole ring behind (it resumes from its last cursor, or resets);
    /// `None` when the feed is gone (shutdown).
    pub async fn next(&mut self) -> Option<Result<Arc<FeedEvent>, Error>> {
        if let Some(event) = self.pending.pop_front() {
            return Some(Ok(event));
        }
        match self.live.recv().await {
            Ok(event) => Some(Ok(event)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Err(Error::WatcherTooSlow)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn feed(backlog: usize, max_watchers: usize) -> Feed {
        let limits = SlotLimits {
            server: max_watchers,
            per_address: max_watchers,
            per_principal: max_watchers,
        };
        Feed::new(backlog, limits, TTL)
    }

    fn subscribe(feed: &Feed, resume_after: &str) -> Result<Watch, Error> {
        let slot = feed
            .slot(Holder {
                address: None,
                principal: "token:test".into(),
            })
            .map_err(|cap| Error::Internal(cap.setting().into()))?;
        feed.subscribe(slot, resume_after)
    }

    async fn next(watch: &mut Watch) -> FeedEvent {
        FeedEvent::clone(&watch.next().await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn a_fresh_watch_starts_with_a_reset_then_sees_what_is_published() {
        let feed = feed(16, 10);
        let mut watch = subscribe(&feed, "").unwrap();
        assert_eq!(next(&mut watch).await.change, Change::Reset);
        let id = Id::new();
        feed.revoked(&Revoked::Session(id));
        let event = next(&mut watch).await;
        assert!(matches!(event.change, Change::SessionRevoked { session, .. } if session == id));
        feed.heartbeat();
        assert_eq!(next(&mut watch).await.cursor, event.cursor);
    }

    #[tokio::test]
    async fn resuming_replays_what_was_missed_and_an_old_cursor_resets() {
        let feed = feed(16, 10);
        feed.revoked(&Revoked::ProfileChanged(Id::new()));
        let first = feed.ring().cursor.clone();
        let ids: Vec<Id> = (0..3).map(|_| Id::new()).collect();
        for id in &ids {
            feed.revoked(&Revoked::Session(*id));
        }
        let mut watch = subscribe(&feed, &first).unwrap();
        for id in &ids {
            let event = next(&mut watch).await;
            assert!(
                matches!(event.change, Change::SessionRevoked { session, .. } if session == *id)
            );
        }
        for _ in 0..20 {
            feed.revoked(&Revoked::Session(Id::new()));
        }
        let mut late = subscribe(&feed, &first).unwrap();
        assert_eq!(next(&mut late).await.change, Change::Reset);
    }

    #[test]
    fn a_cursor_of_another_process_resets_and_an_altered_one_is_refused() {
        let (ours, theirs) = (feed(16, 10), feed(16, 10));
        theirs.revoked(&Revoked::Session(Id::new()));
        let foreign = theirs.ring().cursor.clone();
        let ring = ours.ring();
        assert_eq!(ours.start(&foreign, &ring), Ok(Start::Reset));
        let own = ring.cursor.clone();
        assert_eq!(ours.start(&own, &ring), Ok(Start::After(0)));
        // The same instance and a sequence not yet reached, with a tag of
        // its own making: refused, not trusted.
        let mut bytes = B64.decode(&own[CURSOR_PREFIX.len()..]).unwrap();
        bytes[23] = 5;
        let edited = format!("{CURSOR_PREFIX}{}", B64.encode(&bytes));
        for bad in [
            edited.as_str(),
            "c1.",
            "c1.!!!",
            "c2.AAAA",
            "hello",
            &own[..own.len() - 1],
            &"c1.".repeat(60),
        ] {
            assert!(ours.start(bad, &ring).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_watcher_that_falls_a_ring_behind_is_ended_and_others_go_on() {
        let feed = feed(16, 10);
        let mut slow = subscribe(&feed, "").unwrap();
        let mut quick = subscribe(&feed, "").unwrap();
        assert_eq!(next(&mut quick).await.change, Change::Reset);
        for _ in 0..40 {
            feed.heartbeat();
            assert_eq!(next(&mut quick).await.change, Change::Heartbeat);
        }
        assert_eq!(next(&mut slow).await.change, Change::Reset);
        assert!(matches!(
            slow.next().await,
            Some(Err(Error::WatcherTooSlow))
        ));
    }

    #[test]
    fn watchers_beyond_the_cap_are_turned_away() {
        let feed = feed(16, 2);
        let (_a, _b) = (subscribe(&feed, "").unwrap(), subscribe(&feed, "").unwrap());
        assert!(matches!(subscribe(&feed, ""), Err(Error::Internal(_))));
        let other = Holder {
            address: Some("192.0.2.9".into()),
            principal: "token:other".into(),
        };
        assert_eq!(feed.slot(other).unwrap_err(), Cap::Server);
        assert_eq!(feed.watchers(), 2);
        drop(_a);
        assert!(subscribe(&feed, "").is_ok());
    }
}
