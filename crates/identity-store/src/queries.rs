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
use super::types::{
    DbId,     join_roles, AuditEvent, AuditRow, CredentialRow, Id, NewAccount, NewSession, Profile,
    ProfileRow, ServiceClient, ServiceClientChange, ServiceClientRow, SessionDetails, SessionRow, SpendOutcome, Session,
    VerifiedLogin,
};
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

include!("queries/audit.rs");
include!("queries/profiles.rs");
include!("queries/credentials.rs");
include!("queries/sessions.rs");
include!("queries/devices.rs");
include!("queries/provider.rs");
include!("queries/service_clients.rs");
include!("queries/housekeeping.rs");
