// The tables, written once for both backends.
//
// This file is `include!`d inside the `schema` module of `postgres.rs` and
// of `sqlite.rs`, each of which first names the two column types that
// differ: `IdSql` (PostgreSQL's `uuid`; SQLite has no such type, so an id is
// its text form) and `TimeSql` (PostgreSQL's `timestamptz`; SQLite keeps
// the time as text). Every other column has the same type on both.

diesel::table! {
    use diesel::sql_types::*;
    use super::{IdSql, TimeSql};

    profiles (id) {
        id -> IdSql,
        auth_provider -> Text,
        auth_id -> Text,
        email -> Nullable<Text>,
        display_name -> Text,
        avatar_url -> Text,
        locale -> Text,
        roles -> Text,
        revision -> BigInt,
        created_at -> TimeSql,
        updated_at -> TimeSql,
        provider_synced_revision -> Nullable<BigInt>,
        provider_verified_email -> Nullable<Text>,
    }
}
diesel::table! {
    use diesel::sql_types::*;
    use super::{IdSql, TimeSql};

    credentials (profile_id) {
        profile_id -> IdSql,
        email -> Text,
        password_hash -> Text,
        created_at -> TimeSql,
        updated_at -> TimeSql,
    }
}
diesel::table! {
    use diesel::sql_types::*;
    use super::{IdSql, TimeSql};

    sessions (id) {
        id -> IdSql,
        profile_id -> IdSql,
        created_at -> TimeSql,
        expires_at -> TimeSql,
        revoked_at -> Nullable<TimeSql>,
        revoke_reason -> Nullable<Text>,
        client_addr -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        last_used_at -> Nullable<TimeSql>,
    }
}
diesel::table! {
    use diesel::sql_types::*;
    use super::{IdSql, TimeSql};

    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> IdSql,
        created_at -> TimeSql,
        spent_at -> Nullable<TimeSql>,
    }
}
diesel::table! {
    use diesel::sql_types::*;
    use super::{IdSql, TimeSql};

    audit_events (id) {
        id -> IdSql,
        occurred_at -> TimeSql,
        event_name -> Text,
        profile_id -> Nullable<IdSql>,
        session_id -> Nullable<IdSql>,
        client_addr -> Nullable<Text>,
        detail -> Text,
    }
}
diesel::table! {
    use diesel::sql_types::*;
    use super::{IdSql, TimeSql};

    device_tokens (token_hash) {
        token_hash -> Text,
        profile_id -> IdSql,
        created_at -> TimeSql,
        last_used_at -> TimeSql,
    }
}
diesel::table! {
    use diesel::sql_types::*;
    use super::{IdSql, TimeSql};

    exchanged_provider_tokens (token_key) {
        token_key -> Text,
        expires_at -> BigInt,
    }
}
diesel::table! {
    use diesel::sql_types::*;
    use super::{IdSql, TimeSql};

    service_clients (client_id) {
        client_id -> Text,
        profile_id -> IdSql,
        secret_hash -> Text,
        roles -> Text,
        created_at -> TimeSql,
        rotated_at -> Nullable<TimeSql>,
        disabled_at -> Nullable<TimeSql>,
    }
}
diesel::joinable!(credentials -> profiles (profile_id));
diesel::joinable!(service_clients -> profiles (profile_id));
diesel::joinable!(sessions -> profiles (profile_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(device_tokens -> credentials (profile_id));
diesel::allow_tables_to_appear_in_same_query!(
    profiles,
    credentials,
    sessions,
    refresh_tokens,
    audit_events,
    device_tokens,
    service_clients
);
