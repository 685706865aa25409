//! Service clients (client credentials) as an attacker would try them: a
//! leaked secret after rotation, a disabled client's token on another
//! replica, guessing secrets, asking for `admin`, long-lived tokens. The
//! admin commands run as the real binary, against the test's database,
//! after a server has migrated it.

mod privileges;
mod profiles_read;
mod secrets;

use crate::support::better_auth::{BetterAuth, BetterAuthOptions};
use crate::support::{
    Auth, Backend, Credentials, MAX_STALENESS, SLACK, Server, ServerOptions, TestDb, active,
    admin_command, bearer, claims_of, credentials, forwarded_for, scalar,
};
use crate::support::{refused_within, violated_fields};
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tonic::Code;
use tonic_types::StatusExt;

pub(crate) fn create_client(db: &TestDb, role: &str) -> Credentials {
    let (ok, stdout, stderr) = admin_command(db, &["create-service-client", "--role", role]);
    assert!(ok, "{stderr}");
    credentials(&stdout)
}

async fn service_login(
    auth: &mut Auth,
    id: &str,
    secret: &str,
) -> Result<ServiceLoginResponse, tonic::Status> {
    auth.service_login(ServiceLoginRequest {
        client_id: id.into(),
        client_secret: secret.into(),
    })
    .await
    .map(tonic::Response::into_inner)
}
