//! ListAuditEvents: the audit trail for admins, newest first, filtered and
//! paged like ListProfiles (page tokens are MACed and bound to the filter).

use crate::service::Error;
use crate::service::paging::{self, PageSize};
use crate::service::profiles::{Principal, Profiles};
use chrono::{DateTime, SecondsFormat, Utc};
use identity_core::audit_filter::{self, AuditFilter};
use identity_core::tokens::TokenKeys;
use identity_core::{Invalid, Violations, page_token};
use identity_store::{AuditRow, Id, Store};
use std::sync::Arc;

pub struct AuditTrail {
    store: Store,
    keys: Arc<TokenKeys>,
    profiles: Arc<Profiles>,
}

/// The query a page token is bound to: its own namespace, so that a token
/// of ListProfiles never pages the audit trail.
fn query_of(filter: &AuditFilter) -> String {
    format!("audit:{}", filter.canonical())
}

/// Where the previous page ended: the last row's time (exactly as stored)
/// and id, newest-first order.
fn position(row: &AuditRow) -> String {
    format!(
        "{}|{}",
        row.occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        row.id
    )
}

fn parse_position(text: &str) -> Option<(DateTime<Utc>, Id)> {
    let (at, id) = text.split_once('|')?;
    let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    Some((at, Id::parse(id)?))
}

impl AuditTrail {
    pub fn new(store: Store, keys: Arc<TokenKeys>, profiles: Arc<Profiles>) -> Self {
        AuditTrail {
            store,
            keys,
            profiles,
        }
    }

    pub async fn list(
        &self,
        principal: &Principal,
        page_size: i32,
        page_token: &str,
        filter: &str,
    ) -> Result<(Vec<AuditRow>, String), Error> {
        let mut violations = Violations::new();
        let size = PageSize::check(&mut violations, page_size);
        let filter = violations.check("filter", audit_filter::parse(filter).map_err(Invalid::from));
        let key = self.keys.internal_mac_key();
        // The filter is already named if it did not parse; the token
        // cannot be judged then.
        let after = filter.as_ref().and_then(|filter| {
            paging::position(
                &mut violations,
                key,
                page_token,
                &query_of(filter),
                "filter",
                parse_position,
            )
        });
        violations.into_result()?;
        let filter = filter.unwrap_or_default();
        self.profiles
            .require_admin(principal, "list_audit_events")
            .await?;
        let mut rows = self.store.list_audit(&filter, after, size.fetch()).await?;
        let next = size.cut(&mut rows, |row| {
            page_token::encode(key, &position(row), &query_of(&filter))
        });
        Ok((rows, next))
    }
}
