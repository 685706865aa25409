//! Who a verified token speaks for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The caller a verified access token names, as the layer puts it into a
/// request's extensions (`request.extensions().get::<Principal>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: the profile id.
    pub subject: String,
    /// The profile id (the same as `subject`; named for readers).
    pub profile_id: String,
    /// The session (`sid`) the token belongs to.
    pub session_id: String,
    /// The roles the profile holds, as far as the revocation stream tells:
    /// the token's `roles` claim until a change of the profile is announced,
    /// then the roles `ValidateToken` reports.
    pub roles: Vec<String>,
    /// `local`, `service` or the external provider's name.
    pub auth_provider: String,
    /// The account id at the provider.
    pub auth_id: String,
    /// When the token expires (`exp`).
    pub expire_time: SystemTime,
}

impl Principal {
    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

pub(crate) fn unix_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
