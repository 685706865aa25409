//! The service's nouns: profiles, sessions, audit events and revocation
//! announcements, as every layer sees them (the store maps them to rows).

use crate::id::Id;
use chrono::{DateTime, Utc};

/// A stored profile as the service uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: Id,
    pub auth_provider: String,
    pub auth_id: String,
    pub email: Option<String>,
    pub display_name: String,
    pub avatar_url: String,
    pub locale: String,
    pub roles: Vec<String>,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The external provider said it verified `email`. Always false for
    /// local accounts (nothing here verifies an address) and for an email
    /// changed here since the provider vouched for it.
    pub email_verified: bool,
}

impl Profile {
    /// A profile about to be created: first revision, no roles, nothing
    /// but its identity filled in. Callers fill the rest with struct
    /// update syntax, so a field added here has one default, not five.
    pub fn new(id: Id, auth_provider: &str, auth_id: &str, now: DateTime<Utc>) -> Profile {
        Profile {
            id,
            auth_provider: auth_provider.to_owned(),
            auth_id: auth_id.to_owned(),
            email: None,
            display_name: String::new(),
            avatar_url: String::new(),
            locale: String::new(),
            roles: Vec::new(),
            revision: 1,
            created_at: now,
            updated_at: now,
            email_verified: false,
        }
    }

    /// Opaque to callers; changes on every update.
    pub fn etag(&self) -> String {
        format!("v{}", self.revision)
    }

    /// The revision an etag names, if it is one of ours.
    pub fn revision_of_etag(etag: &str) -> Option<i64> {
        etag.strip_prefix('v')?.parse().ok()
    }
}

pub fn split_roles(roles: &str) -> Vec<String> {
    roles.split_whitespace().map(str::to_owned).collect()
}

pub fn join_roles(roles: &[String]) -> String {
    roles.join(" ")
}

/// A session's lifetime: it ends when revoked or at its absolute expiry.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: Id,
    pub profile_id: Id,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Session {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// A row for the audit trail.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub id: Id,
    pub occurred_at: DateTime<Utc>,
    pub event_name: &'static str,
    pub profile_id: Option<Id>,
    pub session_id: Option<Id>,
    pub client_addr: Option<String>,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(event_name: &'static str) -> Self {
        AuditEvent {
            id: Id::new(),
            occurred_at: Utc::now(),
            event_name,
            profile_id: None,
            session_id: None,
            client_addr: None,
            detail: serde_json::Value::Object(Default::default()),
        }
    }
    pub fn profile(mut self, id: Id) -> Self {
        self.profile_id = Some(id);
        self
    }
    pub fn session(mut self, id: Id) -> Self {
        self.session_id = Some(id);
        self
    }
    pub fn client(mut self, addr: Option<&str>) -> Self {
        self.client_addr = addr.map(str::to_owned);
        self
    }
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if let serde_json::Value::Object(map) = &mut self.detail {
            map.insert(key.to_owned(), value.into());
        }
        self
    }
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
}
