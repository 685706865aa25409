//! Service clients: the client credentials a service signs in with
//! (AuthService.ServiceLogin), managed by `identity admin
//! create-service-client`, `rotate-service-client` and
//! `disable-service-client`.
//!
//! Each client acts as a service principal of its own (a profile with
//! `auth_provider` = `service`), created with it and holding its role. So
//! its sessions are that profile's: rotating or disabling the client revokes
//! them in the same transaction, announced to every replica like any other
//! revocation (`store::notify`). Services never hold `admin`.

use crate::service::Error;
use crate::service::events::{Actor, Emit, EventName, SecurityEvent};
use crate::service::service_token::{new_principal, service_name, service_role};
use chrono::{SubsecRound, Utc};
use identity_core::service_client::{self, NewSecret};
use identity_core::validation;
use identity_store::{
    Profile, ServiceClient, ServiceClientChange, ServiceClientRow, Store, StoreError,
};
use secrecy::SecretString;

/// A client just created or rotated: its secret is shown this once.
pub struct Credentials {
    pub client_id: String,
    pub secret: SecretString,
    pub profile: Profile,
    /// Sessions revoked on the way (rotation).
    pub sessions_revoked: usize,
}

/// Creates a client with role `role`, acting as a new service principal
/// named `name` (default: the client id).
pub async fn create(store: &Store, role: &str, name: Option<&str>) -> Result<Credentials, Error> {
    service_role(role).map_err(|d| Error::invalid("role", d))?;
    validation::roles(&[role.to_owned()]).map_err(|d| Error::invalid("role", d))?;
    let client_id = service_client::new_client_id();
    let name = service_name(name.unwrap_or(&client_id)).map_err(|d| Error::invalid("name", d))?;
    let now = Utc::now().trunc_subsecs(6);
    let (profile, created) = new_principal(&name, role, now);
    let NewSecret { secret, hash } = service_client::new_secret();
    let row = ServiceClientRow {
        client_id: client_id.clone(),
        profile_id: profile.id,
        secret_hash: hash,
        roles: role.to_owned(),
        created_at: now,
        rotated_at: None,
        disabled_at: None,
    };
    let events = [
        created,
        SecurityEvent::new(EventName::ServiceClientCreated)
            .profile(profile.id)
            .actor(Actor::AdminCli)
            .client_id(&client_id)
            .roles(&profile.roles),
    ];
    let rows = events.each_ref().map(SecurityEvent::audit_row);
    match store.create_service_client(&profile, &row, &rows).await {
        Ok(()) => {}
        Err(StoreError::Conflict("auth_id")) => return Err(Error::AlreadyExists("name")),
        Err(e) => return Err(e.into()),
    }
    for event in events {
        event.emit_committed();
    }
    Ok(Credentials {
        client_id,
        secret,
        profile,
        sessions_revoked: 0,
    })
}

/// The enabled client `client_id`, else NOT_FOUND.
async fn enabled(store: &Store, client_id: &str) -> Result<ServiceClient, Error> {
    service_client::check_client_id(client_id).map_err(|d| Error::invalid("client_id", d))?;
    match store.find_service_client(client_id).await? {
        Some(client) if client.row.disabled_at.is_none() => Ok(client),
        Some(_) => Err(Error::FailedPrecondition(
            "the client is disabled (for good: create a new one)",
        )),
        None => Err(Error::NotFound),
    }
}

/// Gives the client a new secret: the old one stops working and every
/// session it started is revoked, on every replica.
pub async fn rotate(store: &Store, client_id: &str) -> Result<Credentials, Error> {
    let client = enabled(store, client_id).await?;
    let NewSecret { secret, hash } = service_client::new_secret();
    let event = SecurityEvent::new(EventName::ServiceClientRotated)
        .profile(client.profile.id)
        .actor(Actor::AdminCli)
        .client_id(client_id);
    let revoked = store
        .change_service_client(
            client_id,
            ServiceClientChange::Rotate { new_hash: &hash },
            &event.audit_row(),
        )
        .await?
        .ok_or(Error::StaleEtag)?;
    event.sessions_revoked(revoked as u64).emit_committed();
    Ok(Credentials {
        client_id: client_id.to_owned(),
        secret,
        profile: client.profile,
        sessions_revoked: revoked,
    })
}

/// Disables the client for good and revokes every session it started, on
/// every replica; answers the principal and the sessions revoked.
pub async fn disable(store: &Store, client_id: &str) -> Result<(Profile, usize), Error> {
    let client = enabled(store, client_id).await?;
    let event = SecurityEvent::new(EventName::ServiceClientDisabled)
        .profile(client.profile.id)
        .actor(Actor::AdminCli)
        .client_id(client_id);
    let revoked = store
        .change_service_client(client_id, ServiceClientChange::Disable, &event.audit_row())
        .await?
        .ok_or(Error::StaleEtag)?;
    event.sessions_revoked(revoked as u64).emit_committed();
    Ok((client.profile, revoked))
}
