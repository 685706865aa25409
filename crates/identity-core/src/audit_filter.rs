//! The filter of ListAuditEvents: a small AIP-160 subset, terms joined by
//! `AND`, each a field, an operator and a quoted value:
//!
//! ```text
//! event_name="identity.login.failed" AND profile_id="0191…" AND occur_time>="2026-12-01T00:00:00Z"
//! ```
//!
//! `event_name` and `profile_id` take `=`; `occur_time` takes `>=`, `>`,
//! `<=` and `<` with an RFC 3339 time. Anything else is refused with the
//! reason, never ignored: a filter silently dropped would list more than
//! the caller asked for.

use crate::id::Id;
use chrono::{DateTime, Datelike as _, Utc};

/// Longest filter accepted (a handful of terms fits easily).
pub const MAX_FILTER_BYTES: usize = 512;

/// Longest event name (ours are far shorter).
const MAX_EVENT_NAME_BYTES: usize = 128;

/// What a filter selects; every field narrows, none set selects all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub event_name: Option<String>,
    pub profile_id: Option<Id>,
    /// Inclusive lower bound.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub until: Option<DateTime<Utc>>,
}

impl AuditFilter {
    /// One spelling per filter, for binding page tokens to it: two filters
    /// that select the same rows have the same canonical form.
    pub fn canonical(&self) -> String {
        let mut parts = Vec::new();
        if let Some(name) = &self.event_name {
            parts.push(format!("event_name={name}"));
        }
        if let Some(id) = &self.profile_id {
            parts.push(format!("profile_id={id}"));
        }
        if let Some(since) = &self.since {
            parts.push(format!("since={}", since.timestamp_micros()));
        }
        if let Some(until) = &self.until {
            parts.push(format!("until={}", until.timestamp_micros()));
        }
        parts.join("&")
    }
}

/// Why a filter was refused, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

impl From<FilterError> for crate::error::Invalid {
    fn from(e: FilterError) -> Self {
        e.0.into()
    }
}

fn refuse(why: impl Into<String>) -> FilterError {
    FilterError(why.into())
}

const SUPPORTED: &str = r#"supported: event_name="…", profile_id="…" and occur_time with >=, >, <= or < and an RFC 3339 time, joined by AND"#;

pub fn parse(filter: &str) -> Result<AuditFilter, FilterError> {
    if filter.len() > MAX_FILTER_BYTES {
        return Err(refuse(format!("must be at most {MAX_FILTER_BYTES} bytes")));
    }
    let mut parsed = AuditFilter::default();
    let filter = filter.trim();
    if filter.is_empty() {
        return Ok(parsed);
    }
    for term in split_and(filter)? {
        let (field, op, value) = term_parts(term)?;
        match (field, op) {
            ("event_name", "=") => {
                if value.is_empty()
                    || value.len() > MAX_EVENT_NAME_BYTES
                    || !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
                {
                    return Err(refuse(
                        "event_name must be an event name such as identity.login.failed",
                    ));
                }
                set_once(&mut parsed.event_name, value.to_owned(), "event_name")?;
            }
            ("profile_id", "=") => {
                let id = Id::parse(value)
                    .ok_or_else(|| refuse("profile_id must be a profile id (UUID)"))?;
                set_once(&mut parsed.profile_id, id, "profile_id")?;
            }
            ("occur_time", op) => {
                let at = DateTime::parse_from_rfc3339(value)
                    .map_err(|_| refuse("occur_time must be compared with an RFC 3339 time"))?
                    .with_timezone(&Utc);
                match op {
                    ">=" => set_once(&mut parsed.since, in_range(at)?, "occur_time's lower bound")?,
                    ">" => set_once(
                        &mut parsed.since,
                        in_range(at + chrono::Duration::microseconds(1))?,
                        "occur_time's lower bound",
                    )?,
                    "<" => set_once(&mut parsed.until, in_range(at)?, "occur_time's upper bound")?,
                    "<=" => set_once(
                        &mut parsed.until,
                        in_range(at + chrono::Duration::microseconds(1))?,
                        "occur_time's upper bound",
                    )?,
                    _ => return Err(refuse(SUPPORTED)),
                }
            }
            _ => return Err(refuse(SUPPORTED)),
        }
    }
    Ok(parsed)
}

/// A time bound the stores compare correctly. SQLite keeps times as text,
/// where a bound in year 10000 (the end of 9999 made strict or inclusive)
/// sorts before every row: "after 9999" would list everything, "up to the
/// end of 9999" nothing.
fn in_range(bound: DateTime<Utc>) -> Result<DateTime<Utc>, FilterError> {
    if bound.year() > 9999 {
        return Err(refuse("occur_time must be before the end of year 9999"));
    }
    Ok(bound)
}

fn set_once<T>(slot: &mut Option<T>, value: T, what: &str) -> Result<(), FilterError> {
    if slot.is_some() {
        return Err(refuse(format!("{what} is given twice")));
    }
    *slot = Some(value);
    Ok(())
}

/// The terms between ` AND `s outside quotes.
fn split_and(filter: &str) -> Result<Vec<&str>, FilterError> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let bytes = filter.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => quoted = !quoted,
            b' ' if !quoted && filter[i..].starts_with(" AND ") => {
                terms.push(filter[start..i].trim());
                i += " AND ".len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err(refuse("has an unterminated quote"));
    }
    terms.push(filter[start..].trim());
    if terms.iter().any(|t| t.is_empty()) {
        return Err(refuse(SUPPORTED));
    }
    Ok(terms)
}

/// `field op "value"` of one term.
fn term_parts(term: &str) -> Result<(&str, &str, &str), FilterError> {
    let at = term
        .find(['=', '<', '>'])
        .ok_or_else(|| refuse(SUPPORTED))?;
    let field = term[..at].trim();
    let rest = &term[at..];
    let op_len = if rest.starts_with(">=") || rest.starts_with("<=") {
        2
    } else {
        1
    };
    let op = &rest[..op_len];
    let value = rest[op_len..].trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(|| refuse("values must be in double quotes"))?;
    if value.contains('"') {
        return Err(refuse("values must be in double quotes"));
    }
    Ok((field, op, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_filter_selects_everything() {
        assert_eq!(parse("").unwrap(), AuditFilter::default());
        assert_eq!(parse("   ").unwrap(), AuditFilter::default());
    }

    #[test]
    fn terms_combine_with_and_and_times_become_bounds() {
        let id = Id::new();
        let f = parse(&format!(
            r#"event_name="identity.login.failed" AND profile_id="{id}" AND occur_time>="2026-12-01T00:00:00Z" AND occur_time<"2026-12-02T00:00:00+01:00""#
        ))
        .unwrap();
        assert_eq!(f.event_name.as_deref(), Some("identity.login.failed"));
        assert_eq!(f.profile_id, Some(id));
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(f.until.unwrap().to_rfc3339(), "2026-12-01T23:00:00+00:00");
        // A strict bound excludes its own instant.
        let strict = parse(r#"occur_time>"2026-12-01T00:00:00Z""#).unwrap();
        assert!(strict.since.unwrap() > f.since.unwrap());
    }

    #[test]
    fn what_is_not_understood_is_refused_never_ignored() {
        for bad in [
            "event_name",
            r#"event_name=identity.login.failed"#,
            r#"event_name="a b""#,
            r#"event_name="x" OR profile_id="y""#,
            r#"event_name="x" AND"#,
            r#"detail="secret""#,
            r#"profile_id="not-a-uuid""#,
            r#"profile_id>"0191""#,
            r#"occur_time="yesterday""#,
            r#"occur_time>="2026-12-01""#,
            r#"event_name="a" AND event_name="b""#,
            r#"event_name="unterminated"#,
            r#"event_name="x"" AND profile_id="y""#,
            r#"occur_time>"9999-12-31T23:59:59.999999999Z""#,
            r#"occur_time<="9999-12-31T23:59:59.9999995Z""#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&"x".repeat(MAX_FILTER_BYTES + 1)).is_err());
        // The latest bounds within year 9999 stay accepted.
        assert!(parse(r#"occur_time>="9999-12-31T23:59:59.999999Z""#).is_ok());
        assert!(parse(r#"occur_time<="9999-12-31T23:59:59.999998Z""#).is_ok());
    }

    #[test]
    fn equal_filters_have_one_canonical_form_and_different_ones_differ() {
        let a =
            parse(r#"event_name="identity.login.failed" AND occur_time>="2026-12-01T00:00:00Z""#)
                .unwrap();
        let b = parse(
            r#"occur_time>="2026-12-01T01:00:00+01:00"  AND  event_name="identity.login.failed""#,
        )
        .unwrap();
        assert_eq!(a.canonical(), b.canonical());
        let c = parse(r#"event_name="identity.login.succeeded""#).unwrap();
        assert_ne!(a.canonical(), c.canonical());
        assert_ne!(AuditFilter::default().canonical(), c.canonical());
    }
}
