//! The security-event vocabulary: every event's stable name, the fields an
//! event may carry, and the audit row it makes.
//!
//! A [`SecurityEvent`] is built once and then becomes everything the
//! service says about it: the log line and span event, the metric, and the
//! audit row (the service crate's `service::events` emits it; a store
//! transaction writes [`SecurityEvent::audit_row`] when the event describes
//! the change it commits). So an event's name and fields are written in one
//! place, and the log and the audit trail cannot drift apart.
//!
//! Fields name profiles and sessions by id and unknown accounts by a keyed
//! pseudonym of the email, never by email, password or token: enumerated
//! fields take `&'static str`, so caller input cannot reach them, and free
//! text that looks like an email or a token is replaced by [`REDACTED`]
//! before it is kept.

use crate::id::Id;
use crate::model::AuditEvent;
use chrono::{DateTime, Utc};
use std::borrow::Cow;

macro_rules! event_names {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// The stable `event.name` of each security event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventName {
            $($(#[$doc])* $variant,)*
        }

        impl EventName {
            pub const ALL: &'static [EventName] = &[$(EventName::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventName::$variant => $name,)*
                }
            }
        }
    };
}

event_names! {
    RegisterSucceeded = "identity.register.succeeded",
    RegisterRefused = "identity.register.refused",
    LoginSucceeded = "identity.login.succeeded",
    LoginFailed = "identity.login.failed",
    /// A log line and a metric only: floods hit limits most, and their rows
    /// would crowd out the ones an investigation needs.
    RateLimited = "identity.rate_limited",
    TokenRefused = "identity.token.refused",
    RefreshReused = "identity.refresh.reused",
    /// A spent refresh token came back within IDENTITY_REFRESH_REUSE_GRACE
    /// while its successor was unused: answered again, session kept.
    RefreshRetried = "identity.refresh.retried",
    SessionRevoked = "identity.session.revoked",
    SessionRevokedAll = "identity.session.revoked_all",
    PasswordChanged = "identity.password.changed",
    PasswordChangeRefused = "identity.password.change_refused",
    EmailChanged = "identity.email.changed",
    ReauthenticationFailed = "identity.reauthentication.failed",
    RoleChanged = "identity.role.changed",
    RoleRefused = "identity.role.refused",
    AccessDenied = "identity.access.denied",
    ProfileCreated = "identity.profile.created",
    ProfileUpdated = "identity.profile.updated",
    ProfileDeleted = "identity.profile.deleted",
    ExchangeSucceeded = "identity.exchange.succeeded",
    ExchangeRefused = "identity.exchange.refused",
    ServiceTokenIssued = "identity.service_token.issued",
    ServiceClientCreated = "identity.service_client.created",
    ServiceClientRotated = "identity.service_client.rotated",
    ServiceClientDisabled = "identity.service_client.disabled",
    ServiceLoginSucceeded = "identity.service_login.succeeded",
    ServiceLoginFailed = "identity.service_login.failed",
    ConfigInsecure = "identity.config.insecure",
}

impl EventName {
    /// Whether the event has an audit row at all.
    pub const fn has_audit_row(self) -> bool {
        !matches!(self, EventName::RateLimited)
    }
}

impl std::fmt::Display for EventName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! fields {
    ($($(#[$doc:meta])* $variant:ident = $key:literal $(log $log:literal)?,)*) => {
        /// A field an event may carry besides its profile, session and
        /// client address (which are columns of the audit row).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Field {
            $($(#[$doc])* $variant,)*
        }

        impl Field {
            pub const ALL: &'static [Field] = &[$(Field::$variant,)*];

            /// Its key in the audit row's `detail`.
            pub const fn key(self) -> &'static str {
                match self {
                    $(Field::$variant => $key,)*
                }
            }

            /// Its attribute in the log line and the span event: the audit
            /// key unless the OpenTelemetry convention names it otherwise.
            pub const fn log_key(self) -> &'static str {
                match self {
                    $(Field::$variant => fields!(@log $key $($log)?),)*
                }
            }
        }
    };
    (@log $key:literal) => { $key };
    (@log $key:literal $log:literal) => { $log };
}

fields! {
    Reason = "reason",
    Scope = "scope",
    Rpc = "rpc",
    RetryAfterMs = "retry_after_ms",
    TokenKind = "token.kind",
    /// The account a login was for: a profile id or `email:<pseudonym>`.
    Subject = "subject",
    EmailPseudonym = "email_pseudonym",
    Purpose = "purpose",
    Roles = "roles",
    Role = "role",
    Actor = "actor",
    Action = "action",
    /// Logged as `denied.target`: JSON log lines already carry `target`,
    /// the module that wrote them, and a second key of that name would
    /// shadow one of the two in most log pipelines.
    Target = "target" log "denied.target",
    Count = "count",
    Provider = "provider" log "auth.provider",
    Created = "created",
    ClientId = "client_id",
    TtlSecs = "ttl_secs",
    SessionsRevoked = "sessions_revoked",
    KeptCurrent = "kept_current",
    Paths = "paths",
    DevMode = "dev_mode",
    RateLimits = "rate_limits",
}

/// What a field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Text(Cow<'static, str>),
    Number(u64),
    Flag(bool),
}

impl From<&Value> for serde_json::Value {
    fn from(value: &Value) -> Self {
        match value {
            Value::Text(text) => serde_json::Value::from(text.as_ref()),
            Value::Number(n) => serde_json::Value::from(*n),
            Value::Flag(b) => serde_json::Value::from(*b),
        }
    }
}

/// What free text that looks like an email or a token is kept as.
pub const REDACTED: &str = "[redacted]";

/// Whether `text` looks like something no event may carry: an email, a
/// JWT, a service client's secret, or a refresh or device token (256
/// random bits in unpadded base64url: 43 characters, which no id,
/// pseudonym or client id is).
pub fn looks_secret(text: &str) -> bool {
    let base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    // A JWT's header is base64url JSON, so it starts with `eyJ` (`{"`).
    let jwt = |word: &str| word.starts_with("eyJ") && word.contains('.');
    text.contains('@')
        || text.contains(crate::service_client::SECRET_PREFIX)
        || text.split(|c: char| !base64url(c) && c != '.').any(jwt)
        || text
            .split(|c: char| !base64url(c))
            .any(|word| word.len() >= 43 && word.bytes().any(|b| b.is_ascii_uppercase()))
}

fn clean(text: impl Into<String>) -> Cow<'static, str> {
    let text = text.into();
    if looks_secret(&text) {
        Cow::Borrowed(REDACTED)
    } else {
        Cow::Owned(text)
    }
}

/// Who made a change (the `actor` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A signed-in caller, by profile id.
    Profile(Id),
    /// `identity admin …` on the command line.
    AdminCli,
    /// ExchangeToken provisioning or syncing an external account.
    ExchangeToken,
}

impl Actor {
    fn text(self) -> Cow<'static, str> {
        match self {
            Actor::Profile(id) => Cow::Owned(id.to_string()),
            Actor::AdminCli => Cow::Borrowed("identity admin"),
            Actor::ExchangeToken => Cow::Borrowed("ExchangeToken"),
        }
    }
}

/// The account a login was for (the `subject` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Profile(Id),
    /// No such account: named by the keyed pseudonym of the email.
    Email(String),
}

/// One security event: its name, whom and what it concerns, and its
/// fields. Build it, then emit it (service crate) or hand its
/// [`audit_row`](Self::audit_row) to the transaction it describes and emit
/// it once that committed.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityEvent {
    name: EventName,
    at: DateTime<Utc>,
    profile: Option<Id>,
    session: Option<Id>,
    client: Option<Cow<'static, str>>,
    fields: Vec<(Field, Value)>,
}

impl SecurityEvent {
    pub fn new(name: EventName) -> SecurityEvent {
        SecurityEvent {
            name,
            at: Utc::now(),
            profile: None,
            session: None,
            client: None,
            fields: Vec::new(),
        }
    }

    pub fn name(&self) -> EventName {
        self.name
    }

    pub fn profile_id(&self) -> Option<Id> {
        self.profile
    }

    pub fn session_id(&self) -> Option<Id> {
        self.session
    }

    pub fn client_address(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// The fields in the order they were set.
    pub fn fields(&self) -> &[(Field, Value)] {
        &self.fields
    }

    pub fn get(&self, field: Field) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v)
    }

    pub fn text(&self, field: Field) -> Option<&str> {
        match self.get(field) {
            Some(Value::Text(text)) => Some(text),
            _ => None,
        }
    }

    pub fn number(&self, field: Field) -> Option<u64> {
        match self.get(field) {
            Some(Value::Number(n)) => Some(*n),
            _ => None,
        }
    }

    pub fn flag(&self, field: Field) -> Option<bool> {
        match self.get(field) {
            Some(Value::Flag(b)) => Some(*b),
            _ => None,
        }
    }

    pub fn profile(mut self, id: Id) -> Self {
        self.profile = Some(id);
        self
    }

    pub fn session(mut self, id: Id) -> Self {
        self.session = Some(id);
        self
    }

    pub fn client(mut self, address: Option<&str>) -> Self {
        self.client = address.map(clean);
        self
    }

    fn set(mut self, field: Field, value: Value) -> Self {
        match self.fields.iter_mut().find(|(f, _)| *f == field) {
            Some((_, old)) => *old = value,
            None => self.fields.push((field, value)),
        }
        self
    }

    fn fixed(self, field: Field, text: &'static str) -> Self {
        self.set(field, Value::Text(Cow::Borrowed(text)))
    }

    fn free(self, field: Field, text: impl Into<String>) -> Self {
        self.set(field, Value::Text(clean(text)))
    }

    pub fn reason(self, reason: &'static str) -> Self {
        self.fixed(Field::Reason, reason)
    }

    pub fn scope(self, scope: &'static str) -> Self {
        self.fixed(Field::Scope, scope)
    }

    pub fn rpc(self, rpc: &'static str) -> Self {
        self.fixed(Field::Rpc, rpc)
    }

    pub fn token_kind(self, kind: &'static str) -> Self {
        self.fixed(Field::TokenKind, kind)
    }

    pub fn purpose(self, purpose: &'static str) -> Self {
        self.fixed(Field::Purpose, purpose)
    }

    pub fn action(self, action: &'static str) -> Self {
        self.fixed(Field::Action, action)
    }

    pub fn retry_after_ms(self, ms: u64) -> Self {
        self.set(Field::RetryAfterMs, Value::Number(ms))
    }

    pub fn count(self, n: u64) -> Self {
        self.set(Field::Count, Value::Number(n))
    }

    pub fn ttl_secs(self, secs: u64) -> Self {
        self.set(Field::TtlSecs, Value::Number(secs))
    }

    pub fn sessions_revoked(self, n: u64) -> Self {
        self.set(Field::SessionsRevoked, Value::Number(n))
    }

    pub fn created(self, created: bool) -> Self {
        self.set(Field::Created, Value::Flag(created))
    }

    pub fn kept_current(self, kept: bool) -> Self {
        self.set(Field::KeptCurrent, Value::Flag(kept))
    }

    pub fn dev_mode(self, on: bool) -> Self {
        self.set(Field::DevMode, Value::Flag(on))
    }

    pub fn rate_limits(self, on: bool) -> Self {
        self.set(Field::RateLimits, Value::Flag(on))
    }

    pub fn actor(self, actor: Actor) -> Self {
        self.set(Field::Actor, Value::Text(actor.text()))
    }

    pub fn subject(self, subject: Subject) -> Self {
        match subject {
            Subject::Profile(id) => self.free(Field::Subject, id.to_string()),
            Subject::Email(pseudonym) => self.free(Field::Subject, format!("email:{pseudonym}")),
        }
    }

    /// The keyed pseudonym of an email (`TokenKeys::pseudonym`), never the
    /// email.
    pub fn email_pseudonym(self, pseudonym: impl Into<String>) -> Self {
        self.free(Field::EmailPseudonym, pseudonym)
    }

    /// Role names, space-separated as stored.
    pub fn roles(self, roles: &[String]) -> Self {
        self.free(Field::Roles, roles.join(" "))
    }

    pub fn role(self, role: &str) -> Self {
        self.free(Field::Role, role)
    }

    /// What a refused action was aimed at: an id, or `auth_provider:<name>`.
    pub fn target(self, target: impl Into<String>) -> Self {
        self.free(Field::Target, target)
    }

    pub fn provider(self, provider: &str) -> Self {
        self.free(Field::Provider, provider)
    }

    pub fn client_id(self, client_id: &str) -> Self {
        self.free(Field::ClientId, client_id)
    }

    /// The profile fields an update changed, comma-separated.
    pub fn paths(self, paths: &[&str]) -> Self {
        self.free(Field::Paths, paths.join(","))
    }

    /// The audit row of this event: its profile, session and client address
    /// as columns, every other field in `detail`. For a store transaction
    /// that writes the row with the change; the audit queue takes it too.
    pub fn audit_row(&self) -> AuditEvent {
        let mut row = AuditEvent::new(self.name.as_str());
        row.occurred_at = self.at;
        row.profile_id = self.profile;
        row.session_id = self.session;
        row.client_addr = self.client.as_deref().map(str::to_owned);
        for (field, value) in &self.fields {
            row = row.detail(field.key(), serde_json::Value::from(value));
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_distinct() {
        let mut names: Vec<&str> = EventName::ALL.iter().map(|n| n.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EventName::ALL.len());
        assert!(names.iter().all(|n| n.starts_with("identity.")));
        for keys in [
            Field::ALL.iter().map(|f| f.key()).collect::<Vec<_>>(),
            Field::ALL.iter().map(|f| f.log_key()).collect(),
        ] {
            let mut sorted = keys.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), keys.len(), "{keys:?}");
            for reserved in ["event.name", "profile.id", "session.id", "client.address"] {
                assert!(!keys.contains(&reserved), "{reserved} is a column");
            }
        }
    }

    #[test]
    fn no_log_key_is_one_the_json_log_line_writes_itself() {
        // tracing-subscriber's JSON lines carry these beside the fields;
        // a field of the same name would shadow one of the two.
        for written in [
            "timestamp",
            "level",
            "target",
            "message",
            "fields",
            "span",
            "spans",
        ] {
            for field in Field::ALL {
                assert_ne!(field.log_key(), written, "{field:?}");
            }
        }
    }

    #[test]
    fn no_field_is_meant_for_an_email_password_or_token() {
        for field in Field::ALL {
            for key in [field.key(), field.log_key()] {
                let words: Vec<&str> = key.split(['.', '_']).collect();
                for forbidden in ["email", "password", "secret", "token", "hash"] {
                    // A pseudonym of the email, and the kind of a token.
                    let named = words.contains(&forbidden)
                        && !matches!(field, Field::EmailPseudonym | Field::TokenKind);
                    assert!(!named, "{key}");
                }
            }
        }
    }

    #[test]
    fn the_audit_row_carries_every_field_once_with_columns_apart() {
        let (profile, session) = (Id::new(), Id::new());
        let event = SecurityEvent::new(EventName::LoginFailed)
            .profile(profile)
            .session(session)
            .client(Some("198.51.100.7"))
            .reason("bad_password")
            .reason("throttled")
            .scope("address")
            .count(3)
            .created(false)
            .provider("better-auth")
            .actor(Actor::AdminCli);
        let row = event.audit_row();
        assert_eq!(row.event_name, "identity.login.failed");
        assert_eq!(row.profile_id, Some(profile));
        assert_eq!(row.session_id, Some(session));
        assert_eq!(row.client_addr.as_deref(), Some("198.51.100.7"));
        assert_eq!(
            row.detail,
            serde_json::json!({
                "reason": "throttled",
                "scope": "address",
                "count": 3,
                "created": false,
                "provider": "better-auth",
                "actor": "identity admin",
            })
        );
        assert_eq!(row.occurred_at, event.at);
    }

    #[test]
    fn free_text_never_keeps_an_email_or_a_token() {
        let refresh = crate::refresh::generate();
        let secret = crate::service_client::new_secret();
        let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxIn0.c2ln";
        use secrecy::ExposeSecret as _;
        let attempts = [
            "ann@example.com",
            jwt,
            refresh.token.expose_secret(),
            secret.secret.expose_secret(),
        ];
        for attempt in attempts {
            let event = SecurityEvent::new(EventName::AccessDenied)
                .client(Some(attempt))
                .target(format!("auth_provider:{attempt}"))
                .email_pseudonym(attempt)
                .subject(Subject::Email(attempt.to_owned()))
                .roles(&[attempt.to_owned()])
                .role(attempt)
                .provider(attempt)
                .client_id(attempt)
                .paths(&[attempt]);
            let row = event.audit_row();
            let kept = format!("{event:?} {} {:?}", row.detail, row.client_addr);
            assert!(!kept.contains(attempt), "{attempt} kept: {kept}");
            assert!(kept.contains(REDACTED));
        }
        // What events do carry stays as it is.
        use crate::tokens::{Ed25519Key, TokenKeys, generate_ed25519_pem};
        let pem = generate_ed25519_pem().unwrap();
        let key = Ed25519Key::from_pem(pem.expose_secret(), "test").unwrap();
        let keys = TokenKeys::new(
            vec![key],
            None,
            "iss".into(),
            "aud".into(),
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let ordinary = [
            Id::new().to_string(),
            keys.pseudonym("ann@example.com"),
            crate::service_client::new_client_id(),
            "2001:db8::1".to_owned(),
            "admin provisioner".to_owned(),
            "auth_provider:better-auth".to_owned(),
            "auth_provider:HeyJoe.example".to_owned(),
        ];
        for text in ordinary {
            assert!(!looks_secret(&text), "{text}");
        }
    }
}
