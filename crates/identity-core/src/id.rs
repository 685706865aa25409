//! Ids of profiles, sessions and audit rows.

use std::fmt;
use uuid::Uuid;

/// A UUID in its one canonical spelling. The store maps it to PostgreSQL's
/// `uuid` and to canonical text in SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub Uuid);

impl Id {
    /// Time-ordered (UUIDv7): new rows sort after old ones, which keeps
    /// primary-key indexes compact.
    pub fn new() -> Self {
        Id(Uuid::now_v7())
    }
    pub fn parse(s: &str) -> Option<Self> {
        // Only the canonical hyphenated form: one spelling per id keeps
        // SQLite text comparison identical to PostgreSQL's uuid ordering.
        let uuid = Uuid::try_parse(s).ok()?;
        (uuid.hyphenated().to_string() == s.to_ascii_lowercase()).then_some(Id(uuid))
    }
}

impl Default for Id {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}
