//! Domain values → protobuf messages.

use crate::proto::v1::{Jwk, Session, TokenPair, UserProfile};
use crate::service::IssuedTokens;
use crate::service::auth::ListedSession;
use chrono::{DateTime, Utc};
use identity_store::Profile;
use secrecy::ExposeSecret;

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn profile(p: &Profile) -> UserProfile {
    UserProfile {
        id: p.id.to_string(),
        auth_provider: p.auth_provider.clone(),
        auth_id: p.auth_id.clone(),
        email: p.email.clone().unwrap_or_default(),
        display_name: p.display_name.clone(),
        avatar_url: p.avatar_url.clone(),
        locale: p.locale.clone(),
        roles: p.roles.clone(),
        create_time: Some(timestamp(p.created_at)),
        update_time: Some(timestamp(p.updated_at)),
        etag: p.etag(),
        email_verified: p.email_verified,
    }
}

pub fn tokens(t: IssuedTokens) -> TokenPair {
    TokenPair {
        access_token: t.access_token.expose_secret().to_owned(),
        refresh_token: t.refresh_token.expose_secret().to_owned(),
        token_type: "Bearer".into(),
        access_token_expire_time: Some(timestamp(t.access_expires_at)),
        refresh_token_expire_time: Some(timestamp(t.refresh_expires_at)),
        session_id: t.session_id.to_string(),
    }
}

pub fn jwk(k: &identity_core::tokens::PublicJwk) -> Jwk {
    Jwk {
        kty: k.kty.clone(),
        kid: k.kid.clone(),
        alg: k.alg.clone(),
        r#use: k.use_.clone(),
        crv: k.crv.clone(),
        x: k.x.clone(),
    }
}

/// No token or hash is in a `ListedSession` to begin with; the address is
/// already coarse for non-admins (service::auth::sessions).
pub fn session(s: &ListedSession) -> Session {
    Session {
        session_id: s.id.to_string(),
        create_time: Some(timestamp(s.created_at)),
        last_use_time: Some(timestamp(s.last_used_at)),
        expire_time: Some(timestamp(s.expires_at)),
        client_address: s.client_address.clone().unwrap_or_default(),
        user_agent: s.user_agent.clone().unwrap_or_default(),
        current: s.current,
    }
}

/// A stored audit row as the API shows it. `detail` was written by the
/// service as a JSON object; anything else (a row written by hand) shows
/// as an empty detail rather than failing the whole page.
pub fn audit_event(row: &identity_store::AuditRow) -> crate::proto::v1::AuditEvent {
    let detail = match serde_json::from_str::<serde_json::Value>(&row.detail) {
        Ok(serde_json::Value::Object(map)) => Some(json_struct(map)),
        _ => None,
    };
    crate::proto::v1::AuditEvent {
        id: row.id.to_string(),
        occur_time: Some(timestamp(row.occurred_at)),
        event_name: row.event_name.clone(),
        profile_id: row.profile_id.map(|id| id.to_string()).unwrap_or_default(),
        session_id: row.session_id.map(|id| id.to_string()).unwrap_or_default(),
        client_address: row.client_addr.clone().unwrap_or_default(),
        detail,
    }
}

fn json_struct(map: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, json_value(v))).collect(),
    }
}

fn json_value(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    use serde_json::Value as J;
    let kind = match value {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        J::String(s) => Kind::StringValue(s),
        J::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(json_value).collect(),
        }),
        J::Object(map) => Kind::StructValue(json_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}

pub fn revocation_event(e: &crate::service::watch::FeedEvent) -> crate::proto::v1::RevocationEvent {
    use crate::proto::v1::revocation_event::Event;
    use crate::proto::v1::{
        Heartbeat, ProfileChanged, ProfileSessionsRevoked, Reset, SessionRevoked,
    };
    use crate::service::watch::Change;
    let event = match &e.change {
        Change::SessionRevoked { session, expires } => Event::SessionRevoked(SessionRevoked {
            session_id: session.to_string(),
            expire_time: Some(timestamp(*expires)),
        }),
        Change::ProfileSessionsRevoked {
            profile,
            except,
            at,
            expires,
        } => Event::ProfileSessionsRevoked(ProfileSessionsRevoked {
            profile_id: profile.to_string(),
            except_session_id: except.map(|e| e.to_string()).unwrap_or_default(),
            revoke_time: Some(timestamp(*at)),
            expire_time: Some(timestamp(*expires)),
        }),
        Change::ProfileChanged { profile } => Event::ProfileChanged(ProfileChanged {
            profile_id: profile.to_string(),
        }),
        Change::Heartbeat => Event::Heartbeat(Heartbeat {}),
        Change::Reset => Event::Reset(Reset {}),
    };
    crate::proto::v1::RevocationEvent {
        cursor: e.cursor.clone(),
        event: Some(event),
    }
}
