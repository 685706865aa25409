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
        // On every authenticated call: compared on the stack, no allocation.
        let uuid = Uuid::try_parse(s).ok()?;
        let mut canonical = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let canonical = uuid.hyphenated().encode_lower(&mut canonical);
        canonical.eq_ignore_ascii_case(s).then_some(Id(uuid))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_hyphenated_spelling_of_an_id_parses() {
        let id = Id::new();
        let text = id.to_string();
        assert_eq!(Id::parse(&text), Some(id));
        assert_eq!(Id::parse(&text.to_ascii_uppercase()), Some(id));
        for other in [
            id.0.simple().to_string(),
            id.0.braced().to_string(),
            id.0.urn().to_string(),
            format!(" {text}"),
            format!("{text} "),
            text[..35].to_owned(),
            String::new(),
        ] {
            assert_eq!(Id::parse(&other), None, "{other:?}");
        }
    }
}
