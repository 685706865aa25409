//! The audit trail for events that describe no stored change (refusals,
//! rate limiting): written off the request path through a bounded queue, so
//! a flood of refusals can neither slow RPCs nor exhaust memory. Events that
//! do describe a change are written in that change's transaction instead.

use crate::store::{AuditEvent, Store};
use crate::telemetry::metrics::metrics;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Clone)]
pub struct AuditSink {
    queue: mpsc::Sender<AuditEvent>,
}

impl AuditSink {
    /// Starts the writer task (inside the Tokio runtime).
    pub fn start(store: Store, capacity: usize) -> AuditSink {
        let (queue, mut rx) = mpsc::channel::<AuditEvent>(capacity.max(1));
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let Err(e) = store.record_audit(&event).await {
                    metrics().audit_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, event = event.event_name, "audit row not written");
                }
            }
        });
        AuditSink { queue }
    }

    pub fn record(&self, event: AuditEvent) {
        if self.queue.try_send(event).is_err() {
            metrics().audit_dropped.fetch_add(1, Ordering::Relaxed);
        }
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
