//! Revocation announcements. Every transaction that revokes sessions or
//! changes a profile (roles are privileges) also announces it on the PostgreSQL channel [`CHANNEL`] (`pg_notify`, a bind
//! parameter: delivered at commit, discarded on rollback), so that every
//! replica's in-memory revocation state learns it at once (heard by
//! [`crate::listen`]). SQLite is one node: nothing is sent there.

pub use identity_core::Revoked;

/// The LISTEN/NOTIFY channel.
pub const CHANNEL: &str = "identity_revocations";

/// Start of a listener's heartbeat (`heartbeat:<nonce>`), sent on the same
/// channel so that hearing it proves the channel reaches the listener. A
/// heartbeat revokes nothing, whichever replica sent it.
const HEARTBEAT: &str = "heartbeat:";

/// The payload of a heartbeat carrying `nonce`.
pub(crate) fn heartbeat_payload(nonce: &str) -> String {
    format!("{HEARTBEAT}{nonce}")
}

/// The nonce of a heartbeat payload (this replica's or another's).
pub(crate) fn heartbeat_nonce(payload: &str) -> Option<&str> {
    payload.strip_prefix(HEARTBEAT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity_core::Id;

    #[test]
    fn heartbeats_are_told_apart_from_revocations() {
        let payload = heartbeat_payload("0123abcd");
        assert_eq!(heartbeat_nonce(&payload), Some("0123abcd"));
        assert_eq!(Revoked::parse(&payload), None);
        assert!(payload.len() < 8000, "NOTIFY payload limit");
        let a = Id::new();
        for revocation in [
            format!("session:{a}"),
            format!("profile:{a}"),
            "beat:x".into(),
        ] {
            assert_eq!(heartbeat_nonce(&revocation), None, "{revocation}");
        }
    }
}
