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
use std::fmt;
use uuid::Uuid;

/// A UUID that maps to PostgreSQL's `uuid` and to canonical text in SQLite,
/// so that one Rust row type serves both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = sql_types::Uuid)]
#[diesel(sql_type = sql_types::Text)]
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

impl ToSql<sql_types::Uuid, Pg> for Id {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <Uuid as ToSql<sql_types::Uuid, Pg>>::to_sql(&self.0, out)
    }
}

impl FromSql<sql_types::Uuid, Pg> for Id {
    fn from_sql(bytes: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        <Uuid as FromSql<sql_types::Uuid, Pg>>::from_sql(bytes).map(Id)
    }
}

impl ToSql<sql_types::Text, Sqlite> for Id {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(self.0.hyphenated().to_string());
        Ok(serialize::IsNull::No)
    }
}

impl FromSql<sql_types::Text, Sqlite> for Id {
    fn from_sql(bytes: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<sql_types::Text, Sqlite>>::from_sql(bytes)?;
        Ok(Id(Uuid::try_parse(&text)?))
    }
}

/// A `profiles` row.
#[derive(Debug, Clone, Queryable)]
pub struct ProfileRow {
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

/// A stored profile as the service uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: Id,
    pub auth_provider: String,
    pub auth_id: String,
    pub email: Option<String>,
    pub display_name: String,
    pub avatar_url: String,
    pub locale: String,
    pub roles: Vec<String>,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The external provider said it verified `email`. Always false for
    /// local accounts (nothing here verifies an address) and for an email
    /// changed here since the provider vouched for it.
    pub email_verified: bool,
}

impl Profile {
    /// Opaque to callers; changes on every update.
    pub fn etag(&self) -> String {
        format!("v{}", self.revision)
    }
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

impl Profile {
    /// The revision an etag names, if it is one of ours.
    pub fn revision_of_etag(etag: &str) -> Option<i64> {
        etag.strip_prefix('v')?.parse().ok()
    }
}

pub fn split_roles(roles: &str) -> Vec<String> {
    roles.split_whitespace().map(str::to_owned).collect()
}

pub fn join_roles(roles: &[String]) -> String {
    roles.join(" ")
}

/// A `sessions` row.
#[derive(Debug, Clone, Queryable)]
pub struct SessionRow {
    pub id: Id,
    pub profile_id: Id,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl SessionRow {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
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
    pub id: Id,
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
        session: SessionRow,
        profile: Box<Profile>,
    },
    /// The token had been spent before: the whole session is now revoked.
    Reused { session_id: Id, profile_id: Id },
    /// The session had ended (revoked or past its absolute lifetime).
    SessionEnded,
    /// No such token.
    Unknown,
}

/// A row for the audit trail.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub id: Id,
    pub occurred_at: DateTime<Utc>,
    pub event_name: &'static str,
    pub profile_id: Option<Id>,
    pub session_id: Option<Id>,
    pub client_addr: Option<String>,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(event_name: &'static str) -> Self {
        AuditEvent {
            id: Id::new(),
            occurred_at: Utc::now(),
            event_name,
            profile_id: None,
            session_id: None,
            client_addr: None,
            detail: serde_json::Value::Object(Default::default()),
        }
    }
    pub fn profile(mut self, id: Id) -> Self {
        self.profile_id = Some(id);
        self
    }
    pub fn session(mut self, id: Id) -> Self {
        self.session_id = Some(id);
        self
    }
    pub fn client(mut self, addr: Option<&str>) -> Self {
        self.client_addr = addr.map(str::to_owned);
        self
    }
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if let serde_json::Value::Object(map) = &mut self.detail {
            map.insert(key.to_owned(), value.into());
        }
        self
    }
}

/// An audit row as read back.
#[derive(Debug, Clone, Queryable)]
pub struct AuditRow {
    pub id: Id,
    pub occurred_at: DateTime<Utc>,
    pub event_name: String,
    pub profile_id: Option<Id>,
    pub session_id: Option<Id>,
    pub client_addr: Option<String>,
    pub detail: String,
}

/// A `service_clients` row: a service's client credentials (the secret
/// only as its SHA-256).
#[derive(Debug, Clone, Queryable)]
pub struct ServiceClientRow {
    pub client_id: String,
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
