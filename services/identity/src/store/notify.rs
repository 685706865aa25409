//! Revocation announcements. Every transaction that revokes sessions or
//! changes a profile (roles are privileges) also announces it on the PostgreSQL channel [`CHANNEL`] (`pg_notify`, a bind
//! parameter: delivered at commit, discarded on rollback), so that every
//! replica's in-memory revocation state learns it at once
//! (`service::revocation`). SQLite is one node: nothing is sent there.

use super::types::Id;

/// The LISTEN/NOTIFY channel.
pub const CHANNEL: &str = "identity_revocations";

/// Start of a listener's heartbeat (`heartbeat:<nonce>`), sent on the same
/// channel so that hearing it proves the channel reaches the listener. A
/// heartbeat revokes nothing, whichever replica sent it.
const HEARTBEAT: &str = "heartbeat:";

/// The payload of a heartbeat carrying `nonce`.
pub fn heartbeat_payload(nonce: &str) -> String {
    format!("{HEARTBEAT}{nonce}")
}

/// The nonce of a heartbeat payload (this replica's or another's).
pub fn heartbeat_nonce(payload: &str) -> Option<&str> {
    payload.strip_prefix(HEARTBEAT)
}

/// What a revocation announcement says. Payloads carry only ids the
/// service generated, never input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// One session (logout, refresh-token re-use).
    Session(Id),
    /// Every session of a profile except `except` (password change keeps
    /// the caller's; profile deletion keeps none).
    Profile { profile: Id, except: Option<Id> },
    /// A profile was changed or deleted (its roles may have been taken
    /// away): cached copies must go.
    ProfileChanged(Id),
}

impl Revoked {
    pub fn payload(&self) -> String {
        match self {
            Revoked::Session(id) => format!("session:{id}"),
            Revoked::ProfileChanged(id) => format!("changed:{id}"),
            Revoked::Profile {
                profile,
                except: None,
            } => format!("profile:{profile}"),
            Revoked::Profile {
                profile,
                except: Some(keep),
            } => format!("profile:{profile}:except:{keep}"),
        }
    }

    pub fn parse(payload: &str) -> Option<Revoked> {
        let mut parts = payload.split(':');
        let revoked = match (parts.next()?, Id::parse(parts.next()?)?) {
            ("session", id) => Revoked::Session(id),
            ("changed", id) => Revoked::ProfileChanged(id),
            ("profile", profile) => Revoked::Profile {
                profile,
                except: match parts.next() {
                    None => None,
                    Some("except") => Some(Id::parse(parts.next()?)?),
                    Some(_) => return None,
                },
            },
            _ => return None,
        };
        parts.next().is_none().then_some(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_junk_is_refused() {
        let (a, b) = (Id::new(), Id::new());
        for r in [
            Revoked::Session(a),
            Revoked::ProfileChanged(a),
            Revoked::Profile {
                profile: a,
                except: None,
            },
            Revoked::Profile {
                profile: a,
                except: Some(b),
            },
        ] {
            assert_eq!(Revoked::parse(&r.payload()), Some(r));
            assert!(r.payload().len() < 8000, "NOTIFY payload limit");
        }
        for junk in [
            "",
            "session",
            "session:",
            "session:x",
            &format!("session:{a}:extra"),
            &format!("profile:{a}:except"),
            &format!("profile:{a}:keep:{b}"),
            &format!("user:{a}"),
        ] {
            assert_eq!(Revoked::parse(junk), None, "{junk}");
        }
    }

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
