//! The revocation listener: PostgreSQL `LISTEN` on [`CHANNEL`] as a stream
//! of [`ListenEvent`]s, for as long as the stream is polled. What the
//! events mean for memory (trust, distrust, forget) is decided by whoever
//! consumes them (`service::revocation` in the service); this module only
//! keeps the connections and says what it heard.
//!
//! Hearing is proven, not assumed (docs/decisions/0008): a second
//! connection (another session, like another replica) announces
//! `heartbeat:<nonce>` on the channel, and when that nonce arrives on the
//! listening connection, every announcement committed before it was sent
//! has arrived too (PostgreSQL delivers a channel's notifications to each
//! listener in commit order). Merely querying the listening connection
//! proves nothing behind a transaction pooler, where the query runs on
//! whichever server connection is free while the LISTEN stays on another;
//! the listener's own `pg_notify` would not do either: it can come back
//! whenever the pooler hands the listener the server connection that ran
//! the LISTEN, while notifications sent to it when idle are dropped.

use crate::PgUrl;
use crate::notify::{CHANNEL, Revoked, heartbeat_nonce, heartbeat_payload};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection as _};
use futures_util::{Stream, StreamExt as _};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the listener heard or went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEvent {
    /// LISTEN is established. Announcements sent while nobody listened are
    /// lost: whatever was learnt from them before must be forgotten.
    Up,
    /// An announcement of a revocation or profile change.
    Revoked(Revoked),
    /// An announcement this version does not understand (a newer replica's,
    /// or a hand-written one): it may have revoked anything.
    Unrecognised,
    /// One of this listener's heartbeats came back: every announcement
    /// committed before `sent` has been delivered. `first`: the first one
    /// on this connection.
    Heard { sent: Instant, first: bool },
    /// The connection failed (why, without SQL or input); the listener
    /// reconnects after a back-off.
    Down(String),
    /// Connected, but the first heartbeat did not come back within the
    /// staleness bound although it was sent: the channel does not reach
    /// the listening connection (transaction pooling). Reconnects like
    /// [`ListenEvent::Down`].
    Unheard,
}

/// Listens on the revocation channel of the database at `url`, with a
/// heartbeat every quarter of `max_staleness`: a heartbeat not heard within
/// `max_staleness` ends the connection. The stream never ends; after
/// [`ListenEvent::Down`] or [`ListenEvent::Unheard`] it reconnects after
/// 100 ms, doubling up to 5 s (back to 100 ms after a connection that
/// lasted over 10 s). `url` needs a session of its own: a direct connection
/// or a session-mode pool.
pub fn listen(url: PgUrl, max_staleness: Duration) -> impl Stream<Item = ListenEvent> + Send {
    let listener = Listener {
        url,
        max_staleness,
        backoff: Duration::from_millis(100),
        state: State::Waiting(Duration::ZERO),
    };
    futures_util::stream::unfold(listener, |mut listener| async move {
        let event = listener.next().await;
        Some((event, listener))
    })
}

struct Listener {
    url: PgUrl,
    max_staleness: Duration,
    /// The wait before the next reconnection.
    backoff: Duration,
    state: State,
}

enum State {
    /// Connects after this wait.
    Waiting(Duration),
    Listening(Box<Session>),
}

impl Listener {
    async fn next(&mut self) -> ListenEvent {
        match &mut self.state {
            State::Waiting(wait) => {
                if !wait.is_zero() {
                    tokio::time::sleep(*wait).await;
                }
                let started = Instant::now();
                match Session::open(&self.url, self.max_staleness, started).await {
                    Ok(session) => {
                        self.state = State::Listening(Box::new(session));
                        ListenEvent::Up
                    }
                    Err(down) => self.ended(started, down),
                }
            }
            State::Listening(session) => match session.next(self.max_staleness).await {
                Ok(event) => event,
                Err(down) => {
                    let started = session.started;
                    self.ended(started, down)
                }
            },
        }
    }

    /// The connection attempt begun at `started` ended with `down`.
    fn ended(&mut self, started: Instant, down: ListenEvent) -> ListenEvent {
        if started.elapsed() > Duration::from_secs(10) {
            self.backoff = Duration::from_millis(100);
        }
        self.state = State::Waiting(self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
        down
    }
}

/// One listening connection and its heartbeat sender.
struct Session {
    listening: AsyncPgConnection,
    sender: AsyncPgConnection,
    /// When the connection attempt began.
    started: Instant,
    /// Heartbeats sent and not yet heard, oldest first.
    pending: VecDeque<(String, Instant)>,
    heard: bool,
    next_heartbeat: tokio::time::Instant,
}

enum Wake {
    Notified(Option<diesel::QueryResult<diesel::pg::PgNotification>>),
    Heartbeat,
}

impl Session {
    async fn open(
        url: &PgUrl,
        max_staleness: Duration,
        started: Instant,
    ) -> Result<Self, ListenEvent> {
        let limit = max_staleness.max(Duration::from_secs(1));
        let connect =
            async || match tokio::time::timeout(limit * 5, crate::pg_tls::establish(url)).await {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(e)) => Err(ListenEvent::Down(format!("connect: {e}"))),
                Err(_) => Err(ListenEvent::Down("connect: timed out".into())),
            };
        let mut listening = connect().await?;
        let sender = connect().await?;
        // CHANNEL is a constant identifier, not input.
        if let Err(e) = listening.batch_execute(&format!("LISTEN {CHANNEL}")).await {
            return Err(ListenEvent::Down(format!("LISTEN: {e}")));
        }
        Ok(Session {
            listening,
            sender,
            started,
            pending: VecDeque::new(),
            heard: false,
            next_heartbeat: tokio::time::Instant::now(),
        })
    }

    /// The next event on this connection, or `Err` with why it ended.
    async fn next(&mut self, max_staleness: Duration) -> Result<ListenEvent, ListenEvent> {
        let period = (max_staleness / 4).max(Duration::from_millis(20));
        loop {
            let wake = {
                // A view of the connection's queue: made anew each round,
                // nothing is lost with it.
                let mut notifications = std::pin::pin!(self.listening.notifications_stream());
                tokio::select! {
                    item = notifications.next() => Wake::Notified(item),
                    () = tokio::time::sleep_until(self.next_heartbeat) => Wake::Heartbeat,
                }
            };
            match wake {
                Wake::Notified(Some(Ok(n))) => {
                    if let Some(nonce) = heartbeat_nonce(&n.payload) {
                        let Some(at) = self.pending.iter().position(|(sent, _)| sent == nonce)
                        else {
                            continue; // another replica's: revokes nothing
                        };
                        let sent = self.pending[at].1;
                        self.pending.drain(..=at);
                        let first = !self.heard;
                        self.heard = true;
                        return Ok(ListenEvent::Heard { sent, first });
                    }
                    return Ok(match Revoked::parse(&n.payload) {
                        Some(what) => ListenEvent::Revoked(what),
                        None => ListenEvent::Unrecognised,
                    });
                }
                Wake::Notified(Some(Err(e))) => {
                    return Err(ListenEvent::Down(format!("notifications: {e}")));
                }
                Wake::Notified(None) => {
                    return Err(ListenEvent::Down("notifications: connection closed".into()));
                }
                Wake::Heartbeat => {
                    if self
                        .pending
                        .front()
                        .is_some_and(|(_, sent)| sent.elapsed() > max_staleness)
                    {
                        // A listener that never heard one is not merely slow.
                        return Err(if self.heard {
                            ListenEvent::Down("heartbeat: not heard in time".into())
                        } else {
                            ListenEvent::Unheard
                        });
                    }
                    let nonce = uuid::Uuid::new_v4().simple().to_string();
                    let sent = Instant::now();
                    self.pending.push_back((nonce.clone(), sent));
                    // The simple query protocol (no prepared statement): it
                    // works through any pooler, so only the LISTEN side can
                    // fail. The payload is generated here, not input.
                    let notify = format!(
                        "SELECT pg_notify('{CHANNEL}', '{}')",
                        heartbeat_payload(&nonce)
                    );
                    match tokio::time::timeout(max_staleness, self.sender.batch_execute(&notify))
                        .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(ListenEvent::Down(format!("heartbeat: {e}"))),
                        Err(_) => return Err(ListenEvent::Down("heartbeat: timed out".into())),
                    }
                    self.next_heartbeat = tokio::time::Instant::from_std(sent + period);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;
    use identity_core::Id;
    use std::pin::pin;

    /// The shared PostgreSQL server of the tests (as in tests/e2e).
    fn pg_admin_url() -> String {
        std::env::var("IDENTITY_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    async fn next(events: &mut (impl Stream<Item = ListenEvent> + Unpin)) -> ListenEvent {
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream never ends")
    }

    fn pg(url: &str) -> PgUrl {
        PgUrl::parse(url).expect("a PostgreSQL URL")
    }

    /// Runs `test` against a database of its own (the channel is per
    /// database: other tests' announcements stay out).
    async fn on_own_database<F: Future<Output = ()>>(test: impl FnOnce(PgUrl) -> F) {
        let admin = pg_admin_url();
        let mut conn = crate::pg_tls::establish(&pg(&admin))
            .await
            .expect("PostgreSQL at IDENTITY_TEST_PG_URL");
        let name = format!("identity_listen_{}", uuid::Uuid::new_v4().simple());
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("CREATE DATABASE");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let outcome = std::panic::AssertUnwindSafe(test(pg(&format!("{base}/{name}"))))
            .catch_unwind()
            .await;
        conn.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .expect("DROP DATABASE");
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    #[tokio::test]
    async fn own_heartbeats_are_heard_and_announcements_are_told_apart() {
        on_own_database(async |url| {
            let staleness = Duration::from_millis(400);
            let mut events = pin!(listen(url.clone(), staleness));
            assert_eq!(next(&mut events).await, ListenEvent::Up);
            let up = Instant::now();
            match next(&mut events).await {
                ListenEvent::Heard { sent, first } => {
                    assert!(first, "the first heartbeat of the connection");
                    assert!(sent >= up - staleness && sent <= Instant::now());
                }
                other => panic!("expected the first heartbeat, got {other:?}"),
            }

            // Another session (another replica) announces a revocation, a
            // heartbeat of its own and something unknown, in one
            // transaction: they arrive together and in this order.
            let revoked = Revoked::Session(Id::new());
            let mut other = crate::pg_tls::establish(&url).await.expect("connect");
            other
                .batch_execute(&format!(
                    "SELECT pg_notify('{CHANNEL}', '{}'); \
                     SELECT pg_notify('{CHANNEL}', '{}'); \
                     SELECT pg_notify('{CHANNEL}', 'revoke-everything:please')",
                    revoked.payload(),
                    heartbeat_payload("another-replicas-nonce"),
                ))
                .await
                .expect("NOTIFY");
            let mut heard_later = 0;
            loop {
                match next(&mut events).await {
                    ListenEvent::Heard { first, .. } => {
                        assert!(!first, "one first heartbeat per connection");
                        heard_later += 1;
                    }
                    ListenEvent::Revoked(what) => {
                        assert_eq!(what, revoked);
                        break;
                    }
                    other => panic!("expected the revocation, got {other:?}"),
                }
            }
            // Another replica's heartbeat is nothing to this listener: the
            // very next event is the unknown announcement.
            assert_eq!(next(&mut events).await, ListenEvent::Unrecognised);
            // And the heartbeat goes on.
            while heard_later < 2 {
                match next(&mut events).await {
                    ListenEvent::Heard { first: false, .. } => heard_later += 1,
                    other => panic!("expected a heartbeat, got {other:?}"),
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_listener_that_cannot_connect_says_so_and_backs_off() {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut events = pin!(listen(
            pg(&format!("postgres://postgres@127.0.0.1:{port}/none")),
            Duration::from_millis(100),
        ));
        let mut downs = Vec::new();
        for _ in 0..4 {
            match next(&mut events).await {
                ListenEvent::Down(reason) => assert!(reason.starts_with("connect: "), "{reason}"),
                other => panic!("expected the listener down, got {other:?}"),
            }
            downs.push(Instant::now());
        }
        for (i, expected_ms) in [100, 200, 400].into_iter().enumerate() {
            let waited = downs[i + 1] - downs[i];
            assert!(
                waited >= Duration::from_millis(expected_ms),
                "retry {i} after {waited:?}, not {expected_ms} ms"
            );
        }
    }
}
