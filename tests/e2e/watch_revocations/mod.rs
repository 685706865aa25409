//! AuthService.WatchRevocations over real sockets: every revocation a
//! replica applies — its own and the other replicas' — reaches its
//! watchers, heartbeats say "you have everything" only while the replica
//! itself does, cursors resume or reset but never leave a silent gap, and
//! only services may watch.

mod access;
mod caps;
mod events;
mod rate;
mod resume;
mod slow;

use crate::support::{
    Auth, Backend, Server, ServerOptions, TestDb, bearer, eventually, issue_service_token,
};
use identity::proto::v1::revocation_event::Event;
use identity::proto::v1::*;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A watcher's stream read by a task of its own: events as they arrived.
pub(crate) struct Watcher {
    events: mpsc::UnboundedReceiver<(Instant, Result<RevocationEvent, tonic::Status>)>,
    pub cursor: String,
}

impl Watcher {
    /// Watches `server` with `token` from `resume_after`; panics if refused.
    pub async fn start(server: &Server, token: &str, resume_after: &str) -> Watcher {
        match Watcher::try_start(server, token, resume_after).await {
            Ok(watcher) => watcher,
            Err(status) => panic!("WatchRevocations refused: {status:?}"),
        }
    }

    pub async fn try_start(
        server: &Server,
        token: &str,
        resume_after: &str,
    ) -> Result<Watcher, tonic::Status> {
        Watcher::try_start_on(server.channel().await, Some(token), resume_after).await
    }

    /// Watches over `channel`, with `token` as bearer when given.
    pub async fn try_start_on(
        channel: tonic::transport::Channel,
        token: Option<&str>,
        resume_after: &str,
    ) -> Result<Watcher, tonic::Status> {
        let request = WatchRevocationsRequest {
            resume_after: resume_after.to_owned(),
        };
        let request = match token {
            Some(token) => bearer(token, request),
            None => tonic::Request::new(request),
        };
        let mut stream = Auth::new(channel)
            .watch_revocations(request)
            .await?
            .into_inner();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let next = stream.message().await;
                let now = Instant::now();
                match next {
                    Ok(Some(event)) => {
                        if tx.send((now, Ok(event))).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        let _ = tx.send((now, Err(status)));
                        return;
                    }
                }
            }
        });
        Ok(Watcher {
            events,
            cursor: String::new(),
        })
    }

    /// The next message (event or the status that ended the stream), with
    /// when it arrived; `None` past `within`.
    pub async fn next_within(
        &mut self,
        within: Duration,
    ) -> Option<(Instant, Result<RevocationEvent, tonic::Status>)> {
        let next = tokio::time::timeout(within, self.events.recv())
            .await
            .ok()??;
        if let Ok(event) = &next.1 {
            self.cursor = event.cursor.clone();
        }
        Some(next)
    }

    /// The next event that is not a heartbeat, within `within`.
    pub async fn next_change(&mut self, within: Duration) -> Option<(Instant, Event)> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, event) = self.next_within(left).await?;
            match event {
                Ok(RevocationEvent {
                    event: Some(Event::Heartbeat(_)),
                    ..
                }) => continue,
                Ok(RevocationEvent {
                    event: Some(event), ..
                }) => return Some((at, event)),
                Ok(RevocationEvent { event: None, .. }) => panic!("an event without a kind"),
                Err(status) => panic!("the stream ended: {status:?}"),
            }
        }
    }

    /// The next non-heartbeat event, which must come within `within`.
    pub async fn expect_change(&mut self, within: Duration) -> Event {
        match self.next_change(within).await {
            Some((_, event)) => event,
            None => panic!("no event within {within:?}"),
        }
    }

    /// The status that ends the stream, skipping events; within `within`.
    pub async fn end_within(&mut self, within: Duration) -> Option<tonic::Status> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await? {
                (_, Ok(_)) => continue,
                (_, Err(status)) => return Some(status),
            }
        }
    }
}

/// A server on `backend` with `options`, and a watcher's service token.
pub(crate) fn watched(backend: Backend, options: ServerOptions) -> (TestDb, Server, String) {
    let db = TestDb::new(backend);
    let server = Server::start_with_options(&db, options);
    let token = issue_service_token(&db, "revocations:watch");
    (db, server, token)
}

/// A plaintext channel to `server` whose connections come from `local`
/// (any 127.0.0.0/8 address is this machine's loopback).
pub(crate) async fn channel_from(server: &Server, local: &str) -> tonic::transport::Channel {
    use std::net::{IpAddr, SocketAddr};
    let (addr, local): (SocketAddr, IpAddr) = (server.addr, local.parse().unwrap());
    tonic::transport::Endpoint::from_shared(server.url())
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: http::Uri| async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(local, 0))?;
            socket.connect(addr).await.map(hyper_util::rt::TokioIo::new)
        }))
        .await
        .unwrap_or_else(|e| panic!("connects from {local}: {e}"))
}

/// A `revocations:watch` token of a service principal of its own, `name`.
pub(crate) fn watch_token_named(db: &TestDb, name: &str) -> String {
    let (ok, stdout, stderr) = crate::support::admin_command(
        db,
        &[
            "issue-service-token",
            "--role",
            "revocations:watch",
            "--name",
            name,
            "--ttl",
            "10m",
            "--dev",
        ],
    );
    assert!(ok, "{stderr}");
    stdout.trim().to_owned()
}

/// A test's AuthService client on `server`.
pub(crate) async fn client(server: &Server) -> Auth {
    server.auth().await
}

/// How many `identity.rate_limited` events the server logged for `rpc`
/// (`watch_revocations`: a watcher cap; `watch`: the rate limit on opens)
/// with `scope`.
pub(crate) fn refusals_logged(server: &Server, rpc: &str, scope: &str) -> usize {
    server
        .logs()
        .lines()
        .filter(|line| {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
                return false;
            };
            let fields = json.get("fields").unwrap_or(&json);
            let field = |name: &str| {
                fields
                    .get(name)
                    .or_else(|| json.get(name))
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            field("event.name").as_deref() == Some("identity.rate_limited")
                && field("rpc").as_deref() == Some(rpc)
                && field("scope").as_deref() == Some(scope)
        })
        .count()
}

/// Whether the server logged at least one such refusal (the log line is
/// read by another thread: it may land a moment after the answer).
pub(crate) async fn logged_refusal(server: &Server, rpc: &str, scope: &str) -> bool {
    eventually(Duration::from_secs(5), || async {
        refusals_logged(server, rpc, scope) > 0
    })
    .await
}
