//! The page size of the List use cases (profiles, sessions, audit events):
//! one rule for what a request may ask and how a page is cut.

use identity_core::{Violations, page_token};

pub const DEFAULT_PAGE_SIZE: i32 = 50;
pub const MAX_PAGE_SIZE: i32 = 100;

/// A request's `page_size`: 0 asks for the default, more than the maximum
/// gets the maximum, a negative one is refused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PageSize(i32);

impl PageSize {
    /// Names `page_size` in `violations` if it is negative (the caller
    /// returns them before the size is used).
    pub(crate) fn check(violations: &mut Violations, page_size: i32) -> PageSize {
        if page_size < 0 {
            violations.check::<()>("page_size", Err("must not be negative".into()));
        }
        PageSize(match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        })
    }

    /// How many rows to fetch: one extra row says whether another page
    /// follows.
    pub(crate) fn fetch(self) -> i64 {
        i64::from(self.0) + 1
    }

    /// Cuts `rows` (fetched with [`Self::fetch`]) to one page and returns
    /// the token of the next: `token` of the last row kept, or empty when
    /// this page is the last.
    pub(crate) fn cut<T>(self, rows: &mut Vec<T>, token: impl FnOnce(&T) -> String) -> String {
        let size = usize::try_from(self.0).unwrap_or_default();
        if rows.len() > size {
            rows.truncate(size);
            rows.last().map(token).unwrap_or_default()
        } else {
            String::new()
        }
    }
}

/// Where a page starts: the position `token` names if it is a page token
/// of `query` (MACed under `key`) that `parse` reads, none for an empty
/// token; anything else names `page_token` in `violations` (`of`: what a
/// token must belong to, as the message says it).
pub(crate) fn position<T>(
    violations: &mut Violations,
    key: &[u8],
    token: &str,
    query: &str,
    of: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Option<T> {
    if token.is_empty() {
        return None;
    }
    let position = page_token::decode(key, token, query).and_then(|text| parse(&text));
    if position.is_none() {
        violations.check::<()>(
            "page_token",
            Err(format!("is not a page token of this {of}").into()),
        );
    }
    position
}
