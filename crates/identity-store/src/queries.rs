// Backend-neutral queries, compiled once per backend.
//
// This file is `include!`d by `postgres.rs` and `sqlite.rs`, each of which
// defines `schema` (its own `table!`s), `Conn` (its connection type) and the
// `write_tx!` macro (a plain transaction on PostgreSQL, `BEGIN IMMEDIATE` on
// SQLite so that concurrent writers wait instead of failing). Diesel's query
// builder is typed by backend, so sharing the text is how one set of queries
// serves both without a generic-bound maze. Every value reaches SQL as a bind
// parameter; nothing here formats SQL from input.
//
// The queries are kept by area in `queries/`, included here in turn: text
// pasted into one module per backend, not modules of their own, so they
// share these imports and each other's private helpers (`insert_audit`,
// `insert_session`, `PROFILE_COLUMNS`, ...).

use identity_core::Revoked;
use identity_core::events::{EventName, Field, SecurityEvent};
use super::types::{
    DbId,     join_roles, AuditEvent, AuditRow, CredentialRow, Id, NewAccount, NewSession, Profile,
    ProfileRow, ServiceClient, ServiceClientChange, ServiceClientRow, SessionDetails, SessionRow, SpendOutcome, Session,
    VerifiedLogin,
};
use identity_core::audit_filter::AuditFilter;
use identity_core::roles::ADMIN_ROLE;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel_async::RunQueryDsl;

pub(super) async fn ping(conn: &mut Conn) -> QueryResult<()> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
        .get_result::<i32>(conn)
        .await
        .map(drop)
}

/// A constant tuple of columns of `table`, for `select`: the type of such a
/// tuple is its own value, so this writes the list once instead of twice.
macro_rules! columns {
    ($name:ident = $table:ident($($column:ident),+ $(,)?)) => {
        const $name: ($(schema::$table::$column,)+) = ($(schema::$table::$column,)+);
    };
}

/// The insert values of every `profiles` column that `Profile` holds, then
/// `extra` ones: one list for a profile created here and one provisioned
/// for a provider's account.
macro_rules! profile_values {
    ($p:expr $(, $extra:expr)* $(,)?) => {
        (
            schema::profiles::id.eq(DbId($p.id)),
            schema::profiles::auth_provider.eq(&$p.auth_provider),
            schema::profiles::auth_id.eq(&$p.auth_id),
            schema::profiles::email.eq($p.email.as_deref()),
            schema::profiles::display_name.eq(&$p.display_name),
            schema::profiles::avatar_url.eq(&$p.avatar_url),
            schema::profiles::locale.eq(&$p.locale),
            schema::profiles::roles.eq(join_roles(&$p.roles)),
            schema::profiles::revision.eq($p.revision),
            schema::profiles::created_at.eq($p.created_at),
            schema::profiles::updated_at.eq($p.updated_at),
            $($extra,)*
        )
    };
}

include!("queries/audit.rs");
include!("queries/profiles.rs");
include!("queries/credentials.rs");
include!("queries/sessions.rs");
include!("queries/devices.rs");
include!("queries/provider.rs");
include!("queries/service_clients.rs");
include!("queries/housekeeping.rs");
