//! Housekeeping: ended sessions (expired or revoked) and their refresh
//! tokens are deleted once they are older than the retention. Until then
//! they stay for the audit trail and so that a replayed refresh token is
//! still recognised; a live session's spent tokens are never deleted,
//! since re-use detection revokes the session when one comes back.

use identity_store::Store;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HousekeepingSettings {
    /// How long an ended session is kept.
    pub session_retention: Duration,
    /// Time between two runs.
    pub interval: Duration,
    /// Sessions deleted per transaction: short transactions keep writers
    /// (SQLite has one at a time) from waiting behind a large purge.
    pub batch_size: usize,
}

/// Runs housekeeping every `interval` for as long as the process runs.
pub async fn run(store: Store, settings: HousekeepingSettings) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        purge_ended_sessions(&store, &settings).await;
    }
}

/// Deletes, batch by batch, every session that ended before the retention.
async fn purge_ended_sessions(store: &Store, settings: &HousekeepingSettings) {
    let retention =
        chrono::Duration::from_std(settings.session_retention).unwrap_or(chrono::Duration::MAX);
    let Some(ended_before) = chrono::Utc::now().checked_sub_signed(retention) else {
        return;
    };
    let limit = i64::try_from(settings.batch_size).unwrap_or(i64::MAX);
    let metrics = crate::telemetry::metrics::metrics();
    let (mut sessions, mut tokens, mut batches) = (0, 0, 0);
    loop {
        match store.purge_ended_sessions(ended_before, limit).await {
            Ok((0, _)) => break,
            Ok((s, t)) => {
                metrics.purged("sessions", s);
                metrics.purged("refresh_tokens", t);
                sessions += s;
                tokens += t;
                batches += 1;
                if s < settings.batch_size {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "housekeeping of ended sessions failed");
                break;
            }
        }
        // Between batches, other work on the runtime and the database first.
        tokio::task::yield_now().await;
    }
    if batches > 0 {
        tracing::info!(
            sessions,
            refresh_tokens = tokens,
            batches,
            "ended sessions past retention deleted"
        );
    }
}
