//! The SQLite counterpart of [`crate::listen`]: the announcements table
//! (`revocation_announcements`, appended to in the same transaction as
//! every revocation and profile change, see `sqlite.rs`) read as a stream
//! of the same [`ListenEvent`]s, so that the service applies them, trusts
//! and distrusts exactly as on PostgreSQL (docs/decisions/0016).
//!
//! SQLite has no channel, and `identity admin` writes the file from another
//! process; a poll of the rows after the last one read, every quarter of
//! `max_staleness`, on a connection of its own, does what LISTEN does. What
//! a poll proves is plain: its read began after `sent`, so every
//! announcement committed before `sent` is in it (one writer at a time: ids
//! grow in commit order, and AUTOINCREMENT never reuses one), which is the
//! meaning of [`ListenEvent::Heard`].

use crate::SqliteUrl;
use crate::listen::ListenEvent;
use crate::notify::Revoked;
use crate::sqlite::{Conn, announced as a};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use diesel_async::{AsyncConnection as _, SimpleAsyncConnection as _};
use futures_util::Stream;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Rows read per query; a longer backlog is read in several before the
/// poll counts as heard.
const BATCH: i64 = 1000;

/// How long announcements are kept. A poller more than this behind would
/// miss pruned rows, but one is never that far behind: a poll that does
/// not answer within `max_staleness` (at most 60 s) ends the connection,
/// and a new one starts from the end of the table and forgets (`Up`).
const KEEP: Duration = Duration::from_secs(600);

/// How often the poller prunes what is older than [`KEEP`].
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Polls the announcements of the SQLite file at `url` every quarter of
/// `max_staleness`; a poll that fails or does not answer within
/// `max_staleness` ends the connection. The stream never ends: after
/// [`ListenEvent::Down`] it reconnects after 100 ms, doubling up to 5 s
/// (back to 100 ms after a connection that lasted over 10 s). It never
/// yields [`ListenEvent::Unheard`]: a file has no pooler in between.
pub fn poll(url: SqliteUrl, max_staleness: Duration) -> impl Stream<Item = ListenEvent> + Send {
    let poller = Poller {
        url,
        max_staleness,
        backoff: Duration::from_millis(100),
        state: State::Waiting(Duration::ZERO),
        events: VecDeque::new(),
    };
    futures_util::stream::unfold(poller, |mut poller| async move {
        let event = poller.next().await;
        Some((event, poller))
    })
}

struct Poller {
    url: SqliteUrl,
    max_staleness: Duration,
    backoff: Duration,
    state: State,
    /// Read and not yet handed out, oldest first.
    events: VecDeque<ListenEvent>,
}

/// Why a poller's connection ended (its text goes into
/// [`ListenEvent::Down`]: no SQL, no input).
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("open: {0}")]
    Open(#[from] diesel::ConnectionError),
    #[error("{0}: {1}")]
    Query(&'static str, diesel::result::Error),
    #[error("{0}: timed out")]
    TimedOut(&'static str),
}

enum State {
    Waiting(Duration),
    Polling(Box<Session>),
}

struct Session {
    conn: Conn,
    /// The last id read.
    last: i64,
    started: Instant,
    heard: bool,
    next_poll: tokio::time::Instant,
    next_prune: Instant,
}

impl Poller {
    async fn next(&mut self) -> ListenEvent {
        loop {
            if let Some(event) = self.events.pop_front() {
                return event;
            }
            let result = match &mut self.state {
                State::Waiting(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(*wait).await;
                    }
                    let started = Instant::now();
                    match Session::open(&self.url, self.max_staleness, started).await {
                        Ok(session) => {
                            self.state = State::Polling(Box::new(session));
                            return ListenEvent::Up;
                        }
                        Err(down) => Err((started, down)),
                    }
                }
                State::Polling(session) => session
                    .poll(self.max_staleness, &mut self.events)
                    .await
                    .map_err(|down| (session.started, down)),
            };
            if let Err((started, down)) = result {
                if started.elapsed() > Duration::from_secs(10) {
                    self.backoff = Duration::from_millis(100);
                }
                self.state = State::Waiting(self.backoff);
                self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                return ListenEvent::Down(down.to_string());
            }
        }
    }
}

impl Session {
    async fn open(
        url: &SqliteUrl,
        max_staleness: Duration,
        started: Instant,
    ) -> Result<Self, Ended> {
        let open = async {
            let mut conn = Conn::establish(url.path()).await?;
            // A reader of a WAL file waits for no writer; the pruning
            // writes, and must not hold up the polls for long.
            conn.batch_execute("PRAGMA busy_timeout = 100;")
                .await
                .map_err(|e| Ended::Query("open", e))?;
            // Announcements made before this connection are of no use: the
            // memory they would update is forgotten on `Up`.
            let last = a::table
                .select(diesel::dsl::max(a::id))
                .first::<Option<i64>>(&mut conn)
                .await
                .map_err(|e| Ended::Query("announcements", e))?
                .unwrap_or(0);
            Ok::<_, Ended>((conn, last))
        };
        let (conn, last) = tokio::time::timeout(max_staleness * 5, open)
            .await
            .map_err(|_| Ended::TimedOut("open"))??;
        Ok(Session {
            conn,
            last,
            started,
            heard: false,
            next_poll: tokio::time::Instant::now(),
            next_prune: Instant::now() + PRUNE_EVERY,
        })
    }

    /// Waits for the next poll and queues what it read, then
    /// [`ListenEvent::Heard`]; `Err` with why the connection ended.
    async fn poll(
        &mut self,
        max_staleness: Duration,
        events: &mut VecDeque<ListenEvent>,
    ) -> Result<(), Ended> {
        let period = (max_staleness / 4).max(Duration::from_millis(20));
        tokio::time::sleep_until(self.next_poll).await;
        let sent = Instant::now();
        self.next_poll = tokio::time::Instant::from_std(sent + period);
        loop {
            let read = a::table
                .filter(a::id.gt(self.last))
                .order(a::id)
                .select((a::id, a::payload))
                .limit(BATCH)
                .load::<(i64, String)>(&mut self.conn);
            let rows = tokio::time::timeout(max_staleness, read)
                .await
                .map_err(|_| Ended::TimedOut("poll"))?
                .map_err(|e| Ended::Query("poll", e))?;
            let full = rows.len() as i64 == BATCH;
            for (id, payload) in rows {
                self.last = id;
                events.push_back(match Revoked::parse(&payload) {
                    Some(what) => ListenEvent::Revoked(what),
                    None => ListenEvent::Unrecognised,
                });
            }
            if !full {
                break;
            }
        }
        // Every read began after `sent`: everything committed before it is in.
        events.push_back(ListenEvent::Heard {
            sent,
            first: !self.heard,
        });
        self.heard = true;
        if Instant::now() >= self.next_prune {
            self.next_prune = Instant::now() + PRUNE_EVERY;
            self.prune().await;
        }
        Ok(())
    }

    /// Deletes what is older than [`KEEP`]; a failure (the file is busy)
    /// waits for the next round.
    async fn prune(&mut self) {
        let before = chrono::Utc::now().timestamp_millis()
            - i64::try_from(KEEP.as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = diesel::delete(a::table.filter(a::announced_at.lt(before)))
            .execute(&mut self.conn)
            .await
        {
            tracing::debug!(error = %e, "pruning revocation announcements failed; retrying later");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DatabaseUrl, Store};
    use futures_util::StreamExt as _;
    use identity_core::Id;

    async fn next(events: &mut (impl Stream<Item = ListenEvent> + Unpin)) -> ListenEvent {
        tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream never ends")
    }

    /// Appends `payload` as another process would (its own connection).
    async fn announce(url: &SqliteUrl, payload: &str) {
        let mut conn = Conn::establish(url.path()).await.expect("opens the file");
        diesel::insert_into(a::table)
            .values((
                a::payload.eq(payload),
                a::announced_at.eq(chrono::Utc::now().timestamp_millis()),
            ))
            .execute(&mut conn)
            .await
            .expect("appends");
    }

    #[tokio::test]
    async fn announcements_of_another_connection_arrive_in_order_before_the_next_heard() {
        let dir = std::env::temp_dir().join(format!("identity-announcements-{}", Id::new()));
        let url = DatabaseUrl::parse(&format!("sqlite://{}", dir.join("a.db").display()))
            .expect("a SQLite URL");
        Store::migrate(&url).await.expect("migrations");
        let DatabaseUrl::Sqlite(file) = url else {
            unreachable!("parsed from sqlite://")
        };
        // Announced before the poller connects: forgotten with `Up`.
        announce(&file, &Revoked::Session(Id::new()).payload()).await;

        let mut events = std::pin::pin!(poll(file.clone(), Duration::from_millis(400)));
        assert_eq!(next(&mut events).await, ListenEvent::Up);
        assert!(matches!(
            next(&mut events).await,
            ListenEvent::Heard { first: true, .. }
        ));

        let (one, two) = (
            Revoked::Session(Id::new()),
            Revoked::ProfileChanged(Id::new()),
        );
        let before = Instant::now();
        announce(&file, &one.payload()).await;
        announce(&file, &two.payload()).await;
        announce(&file, "revoke-everything:please").await;
        let mut seen = Vec::new();
        let heard = loop {
            match next(&mut events).await {
                ListenEvent::Heard { sent, first } => {
                    assert!(!first);
                    if sent > before {
                        break sent;
                    }
                }
                other => seen.push(other),
            }
        };
        assert_eq!(
            seen,
            [
                ListenEvent::Revoked(one),
                ListenEvent::Revoked(two),
                ListenEvent::Unrecognised
            ]
        );
        assert!(heard.duration_since(before) < Duration::from_millis(400));
        let _ = std::fs::remove_dir_all(dir);
    }
}
