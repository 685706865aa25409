//! The one path of a security event (`identity_core::events`): a JSON log
//! line with target `identity::security` and its `event.name`, which the
//! OpenTelemetry layer also records as an event of the current span; the
//! metric `identity_security_events_total{event}`; and its audit row.
//!
//! Where the row goes depends on what the event describes:
//! - a stored change: the store writes [`SecurityEvent::audit_row`] in the
//!   change's transaction, and [`Emit::emit_committed`] runs once it
//!   committed;
//! - anything else: [`Emit::emit`] queues the row (`service::audit`, with
//!   its budgets and aggregation), or [`Emit::emit_awaited`] writes it
//!   before the answer for the refusals an investigation needs even when
//!   the process dies right after.

use crate::service::audit::AuditSink;
use crate::telemetry::metrics::metrics;
use identity_core::events::Field;
use identity_store::{Store, StoreError};

pub use identity_core::events::{Actor, EventName, SecurityEvent, Subject};

pub trait Emit {
    /// Logs the event, counts it and queues its audit row (unless its name
    /// has none: `EventName::has_audit_row`).
    fn emit(self, audit: &AuditSink);

    /// Logs and counts an event whose audit row the store wrote in the
    /// transaction of the change it describes.
    fn emit_committed(self);

    /// Logs and counts the event, then writes its audit row now.
    fn emit_awaited(self, store: &Store) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl Emit for SecurityEvent {
    fn emit(self, audit: &AuditSink) {
        announce(&self);
        if self.name().has_audit_row() {
            audit.record(self.audit_row());
        }
    }

    fn emit_committed(self) {
        announce(&self);
    }

    fn emit_awaited(self, store: &Store) -> impl Future<Output = Result<(), StoreError>> + Send {
        announce(&self);
        async move {
            if self.name().has_audit_row() {
                store.record_audit(&self.audit_row()).await?;
            }
            Ok(())
        }
    }
}

fn announce(event: &SecurityEvent) {
    log(event);
    metrics().security_event(event.name().as_str());
}

/// One log line. Field names of a tracing event are fixed where it is
/// written, so every field of the vocabulary is listed here (absent ones
/// are left out of the line); a test checks that none is missing.
fn log(event: &SecurityEvent) {
    let text = |field| event.text(field);
    let number = |field| event.number(field);
    let flag = |field| event.flag(field);
    tracing::info!(
        target: "identity::security",
        {
            event.name = event.name().as_str(),
            profile.id = event.profile_id().map(tracing::field::display),
            session.id = event.session_id().map(tracing::field::display),
            client.address = event.client_address(),
            reason = text(Field::Reason),
            scope = text(Field::Scope),
            rpc = text(Field::Rpc),
            retry_after_ms = number(Field::RetryAfterMs),
            token.kind = text(Field::TokenKind),
            subject = text(Field::Subject),
            email_pseudonym = text(Field::EmailPseudonym),
            purpose = text(Field::Purpose),
            roles = text(Field::Roles),
            role = text(Field::Role),
            actor = text(Field::Actor),
            action = text(Field::Action),
            denied.target = text(Field::Target),
            count = number(Field::Count),
            auth.provider = text(Field::Provider),
            created = flag(Field::Created),
            client_id = text(Field::ClientId),
            ttl_secs = number(Field::TtlSecs),
            sessions_revoked = number(Field::SessionsRevoked),
            kept_current = flag(Field::KeptCurrent),
            paths = text(Field::Paths),
            dev_mode = flag(Field::DevMode),
            rate_limits = flag(Field::RateLimits),
        },
        "{}",
        event.name().as_str()
    );
}

/// A refused authorization is a security event (ASVS 16.3.2), though the
/// caller may only see NOT_FOUND: the log line and the audit row of every
/// refusal, for profiles and sessions alike.
pub fn access_denied(
    audit: &AuditSink,
    caller: identity_core::Id,
    client_addr: Option<&str>,
    action: &'static str,
    target: Option<String>,
) {
    let mut event = SecurityEvent::new(EventName::AccessDenied)
        .profile(caller)
        .client(client_addr)
        .action(action);
    if let Some(target) = target.filter(|t| !t.is_empty()) {
        event = event.target(target);
    }
    event.emit(audit);
}

#[cfg(test)]
mod tests;
