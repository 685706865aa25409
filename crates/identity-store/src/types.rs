//! Rows and values shared by both backends.

use chrono::{DateTime, Utc};
use diesel::Queryable;
use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::Pg;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types;
use diesel::sqlite::Sqlite;
pub use identity_core::{
    AuditEvent, Id, Profile, Session,
    model::{join_roles, split_roles},
};
use uuid::Uuid;

/// An [`Id`] as the database sees it: PostgreSQL's `uuid`, canonical text
/// in SQLite, so that one Rust row type serves both backends. (A wrapper
/// because diesel's traits cannot be implemented on the core's type here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = sql_types::Uuid)]
#[diesel(sql_type = sql_types::Text)]
pub struct DbId(pub Id);

impl From<DbId> for Id {
    fn from(id: DbId) -> Id {
        id.0
    }
}

impl From<Id> for DbId {
    fn from(id: Id) -> DbId {
        DbId(id)
    }
}

impl ToSql<sql_types::Uuid, Pg> for DbId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <Uuid as ToSql<sql_types::Uuid, Pg>>::to_sql(&self.0.0, out)
    }
}

impl FromSql<sql_types::Uuid, Pg> for DbId {
    fn from_sql(bytes: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <Uuid as FromSql<sql_types::Uuid, Pg>>::from_sql(bytes).map(|u| DbId(Id(u)))
    }
}

impl ToSql<sql_types::Text, Sqlite> for DbId {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.to_string());
        Ok(serialize::IsNull::No)
    }
}

impl FromSql<sql_types::Text, Sqlite> for DbId {
    fn from_sql(bytes: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<sql_types::Text, Sqlite>>::from_sql(bytes)?;
        Ok(DbId(Id(Uuid::try_parse(&text)?)))
    }
}

/// A nullable [`DbId`] column.
#[derive(Debug, Clone, Copy, FromSqlRow)]
pub struct MaybeDbId(Option<Id>);

impl From<MaybeDbId> for Option<Id> {
    fn from(id: MaybeDbId) -> Option<Id> {
        id.0
    }
}

/// For both backends at once: a nullable column of whatever type [`DbId`]
/// reads there (`uuid` on PostgreSQL, text on SQLite).
impl<ST, DB> FromSql<sql_types::Nullable<ST>, DB> for MaybeDbId
where
    DB: Backend,
    DbId: FromSql<ST, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        <DbId as FromSql<ST, DB>>::from_sql(bytes).map(|id| MaybeDbId(Some(id.0)))
    }

    fn from_nullable_sql(bytes: Option<DB::RawValue<'_>>) -> deserialize::Result<Self> {
        match bytes {
            Some(bytes) => <Self as FromSql<sql_types::Nullable<ST>, DB>>::from_sql(bytes),
            None => Ok(MaybeDbId(None)),
        }
    }
}

/// A `profiles` row.
#[derive(Debug, Clone, Queryable)]
pub struct ProfileRow {
    #[diesel(deserialize_as = DbId)]
    pub id: Id,
    pub auth_provider: String,
    pub auth_id: String,
    pub email: Option<String>,
    pub display_name: String,
    pub avatar_url: String,
    pub locale: String,
    pub roles: String,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The email the provider last said it verified.
    pub provider_verified_email: Option<String>,
}

impl From<ProfileRow> for Profile {
    fn from(row: ProfileRow) -> Self {
        let email_verified =
            row.email.is_some() && row.email.as_deref() == row.provider_verified_email.as_deref();
        Profile {
            email_verified,
            id: row.id,
            auth_provider: row.auth_provider,
            auth_id: row.auth_id,
            email: row.email,
            display_name: row.display_name,
            avatar_url: row.avatar_url,
            locale: row.locale,
            roles: split_roles(&row.roles),
            revision: row.revision,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A `sessions` row.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct SessionRow {
    #[diesel(deserialize_as = DbId)]
    pub id: Id,
    #[diesel(deserialize_as = DbId)]
    pub profile_id: Id,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<SessionRow> for Session {
    fn from(r: SessionRow) -> Session {
        Session {
            id: r.id,
            profile_id: r.profile_id,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// What login needs to know about a local account.
#[derive(Debug, Clone)]
pub struct CredentialRow {
    pub profile: Profile,
    pub password_hash: String,
}

/// A session to start, with its first refresh token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Id,
    pub profile_id: Id,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub refresh_token_hash: String,
    /// Where the sign-in came from (ListSessions shows it).
    pub origin: SessionOrigin,
}

/// What a sign-in said about its client: the address the service resolved
/// and its `user-agent` metadata (bounded, see `service::auth`). Both are
/// what the client claimed, shown to the owner and admins as a reminder,
/// never used to decide anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionOrigin {
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
}

/// A live session as ListSessions reads it.
#[derive(Debug, Clone, Queryable)]
pub struct SessionDetails {
    #[diesel(deserialize_as = DbId)]
    pub id: Id,
    #[diesel(deserialize_as = DbId)]
    pub profile_id: Id,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    /// The last Refresh; `None` until the first one (or for sessions older
    /// than the column).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A new local account: its profile, its credential and its first session.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub profile: Profile,
    pub email: String,
    pub password_hash: String,
    pub session: NewSession,
    /// Set when the email is a bootstrap admin's: the role granted, with
    /// this audit row, if and only if no profile holds it at insert time.
    pub bootstrap_admin: Option<AuditEvent>,
}

/// The login a password was verified for: the email it was found by and
/// the hash it matched. What it starts (a session, a device token) is
/// stored only while both are still the credential's.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedLogin<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
}

/// What happened when a refresh token was presented.
#[derive(Debug, Clone)]
pub enum SpendOutcome {
    /// The token was live: it is now spent and its successor is stored.
    Rotated {
        session: Session,
        profile: Box<Profile>,
    },
    /// The token had been spent within the re-use grace and its successor
    /// (the hash the caller passed) is still unspent in the same session:
    /// what a client retrying a Refresh whose answer it lost looks like (a
    /// thief within the grace looks the same: docs/decisions/0011). Nothing
    /// was revoked and no token stored, only the session's last use moved;
    /// the caller answers the same successor again. `event`
    /// (`identity.refresh.retried`) was audited in the same transaction:
    /// inside the grace a thief's replay looks like a retry, and this row
    /// is its trace.
    Retried {
        session: Session,
        profile: Box<Profile>,
        event: identity_core::events::SecurityEvent,
    },
    /// The token had been spent before and this was no retry: the whole
    /// session is now revoked, and `event` (`identity.refresh.reused`) was
    /// audited with it.
    Reused {
        session_id: Id,
        event: identity_core::events::SecurityEvent,
    },
    /// The session had ended (revoked or past its absolute lifetime).
    SessionEnded,
    /// No such token.
    Unknown,
}

/// An audit row as read back.
#[derive(Debug, Clone, Queryable)]
pub struct AuditRow {
    #[diesel(deserialize_as = DbId)]
    pub id: Id,
    pub occurred_at: DateTime<Utc>,
    pub event_name: String,
    #[diesel(deserialize_as = MaybeDbId)]
    pub profile_id: Option<Id>,
    #[diesel(deserialize_as = MaybeDbId)]
    pub session_id: Option<Id>,
    pub client_addr: Option<String>,
    pub detail: String,
}

/// A `service_clients` row: a service's client credentials (the secret
/// only as its SHA-256).
#[derive(Debug, Clone, Queryable)]
pub struct ServiceClientRow {
    pub client_id: String,
    #[diesel(deserialize_as = DbId)]
    pub profile_id: Id,
    pub secret_hash: String,
    pub roles: String,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A service client and the service principal it acts as.
#[derive(Debug, Clone)]
pub struct ServiceClient {
    pub row: ServiceClientRow,
    pub profile: Profile,
}

/// What `Store::change_service_client` does to an enabled client.
#[derive(Debug, Clone, Copy)]
pub enum ServiceClientChange<'a> {
    /// A new secret (its hash); the old one stops working.
    Rotate { new_hash: &'a str },
    /// For good: no more logins.
    Disable,
}
