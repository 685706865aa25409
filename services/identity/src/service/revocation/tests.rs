use super::*;

fn settings() -> RevocationSettings {
    RevocationSettings {
        revocation_max_staleness: Duration::from_secs(1),
        revocation_reconcile_interval: Duration::from_secs(5),
        token_cache_size: 10,
        session_cache_size: 10,
        revocation_heartbeat: Duration::from_millis(250),
        revocation_max_watchers: 16,
        revocation_max_watchers_per_address: 16,
        revocation_max_watchers_per_principal: 16,
        revocation_watch_backlog: 64,
        revocation_watch_send_timeout: Duration::from_secs(10),
        profile_cache_size: 10,
    }
}

/// A fast path whose listener runs, as `start` leaves it on PostgreSQL,
/// fed by hand instead of by a connection.
fn listening() -> Arc<FastPath> {
    let fast = FastPath::new(&settings(), Duration::from_secs(60));
    fast.listener.running.store(true, Ordering::Relaxed);
    fast
}

const MAX_STALENESS: Duration = Duration::from_secs(1);

/// The resolution of the confirmation time.
const MS: Duration = Duration::from_millis(1);

fn status(fast: &FastPath) -> ListenerStatus {
    fast.listener_status().expect("a listener runs")
}

#[test]
fn without_a_listener_there_is_no_status() {
    let fast = FastPath::new(&settings(), Duration::from_secs(60));
    assert_eq!(fast.listener_status(), None);
}

#[test]
fn the_listener_counts_as_hearing_only_from_its_first_heartbeat_until_it_is_lost() {
    let fast = listening();
    assert!(!status(&fast).hearing, "not before it connected");
    fast.apply(ListenEvent::Up, MAX_STALENESS);
    assert!(!status(&fast).hearing, "connected, but nothing heard yet");

    let sent = Instant::now();
    fast.apply(ListenEvent::Heard { sent, first: true }, MAX_STALENESS);
    assert!(status(&fast).hearing);
    fast.apply(
        ListenEvent::Revoked(Revoked::Session(Id::new())),
        MAX_STALENESS,
    );
    fast.apply(ListenEvent::Unrecognised, MAX_STALENESS);
    assert!(status(&fast).hearing, "announcements change nothing");

    fast.apply(ListenEvent::Down("connection closed".into()), MAX_STALENESS);
    assert!(!status(&fast).hearing);
    fast.apply(ListenEvent::Up, MAX_STALENESS);
    assert!(!status(&fast).hearing, "reconnected, not yet heard");
    fast.apply(
        ListenEvent::Heard {
            sent: Instant::now(),
            first: true,
        },
        MAX_STALENESS,
    );
    assert!(status(&fast).hearing);
    fast.apply(ListenEvent::Unheard, MAX_STALENESS);
    assert!(!status(&fast).hearing);
}

#[test]
fn staleness_counts_from_the_last_heartbeat_heard_and_grows_while_none_is() {
    let fast = listening();
    let created = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    // Before the first heartbeat: since start-up.
    assert!(status(&fast).staleness >= Duration::from_millis(20));

    std::thread::sleep(Duration::from_millis(30));
    let sent = Instant::now();
    fast.apply(ListenEvent::Up, MAX_STALENESS);
    fast.apply(ListenEvent::Heard { sent, first: true }, MAX_STALENESS);
    let fresh = status(&fast).staleness;
    assert!(fresh <= sent.elapsed() + MS, "{fresh:?}");
    // Start-up was at least 50 ms before the heartbeat; the confirmation
    // is kept in whole milliseconds, so allow a little under that.
    assert!(
        fresh + Duration::from_millis(40) <= created.elapsed(),
        "counted from the heartbeat, not from start-up: {fresh:?}"
    );

    // Lost: no confirmation comes, and the staleness says so.
    fast.apply(
        ListenEvent::Down("heartbeat: not heard in time".into()),
        MAX_STALENESS,
    );
    std::thread::sleep(Duration::from_millis(30));
    let lost = status(&fast).staleness;
    assert!(
        lost >= fresh + Duration::from_millis(30),
        "{lost:?} {fresh:?}"
    );

    // A heartbeat sent before the one already heard confirms nothing newer.
    let earlier = sent.checked_sub(Duration::from_millis(10)).unwrap_or(sent);
    fast.apply(
        ListenEvent::Heard {
            sent: earlier,
            first: false,
        },
        MAX_STALENESS,
    );
    assert!(status(&fast).staleness >= lost);

    // Back and heard again: fresh again.
    fast.apply(ListenEvent::Up, MAX_STALENESS);
    let again = Instant::now();
    fast.apply(
        ListenEvent::Heard {
            sent: again,
            first: true,
        },
        MAX_STALENESS,
    );
    assert!(status(&fast).staleness <= again.elapsed() + MS);
}
