//! `identity admin issue-service-token`: prints an access token for a
//! service principal (see `service::service_token`), for bootstrapping
//! only. It signs with the same key settings as the server, so the server
//! accepts the token. And the service-client commands
//! (`service::service_clients`), which need no signing key.

use crate::cli::IssueServiceTokenArgs;
use crate::config::keys;
use identity_core::tokens::TokenKeys;
use identity_store::Store;
use secrecy::ExposeSecret;
use std::time::Duration;

fn keys(args: &IssueServiceTokenArgs) -> anyhow::Result<TokenKeys> {
    let settings = keys::load_for_command(&args.keys, args.dev, &args.data_dir)?;
    keys::load_keys(
        &settings,
        &args.keys.issuer,
        &args.keys.audience,
        Duration::ZERO,
    )
}

/// Prints the token alone on stdout; what it is, on stderr.
pub async fn run(store: &Store, args: IssueServiceTokenArgs) -> anyhow::Result<()> {
    let keys = keys(&args)?;
    // A role may hold `:` (profiles:read, revocations:watch), which a service
    // name may not (`revocations:watch` → `revocations-watch`).
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| args.role.replace(':', "-"));
    let minted = crate::service::service_token::issue(store, &keys, &name, &args.role, args.ttl)
        .await
        .map_err(|e| match e {
            crate::service::Error::Invalid(v) => invalid_flags(&v),
            other => anyhow::anyhow!("{other}"),
        })?;
    println!("{}", minted.token.expose_secret());
    eprintln!(
        "service token for {} (profile {}, auth_provider service, auth_id {}), role {}, session {}, expires {}; revoke it with AuthService.Logout using it as bearer, or by deleting the profile",
        name,
        minted.profile.id,
        minted.profile.auth_id,
        args.role,
        minted.session_id,
        minted.expires_at.to_rfc3339(),
    );
    Ok(())
}

/// `--field description; ...`: the request's fields are the command's flags.
fn invalid_flags(violations: &[identity_core::FieldViolation]) -> anyhow::Error {
    anyhow::anyhow!(
        "{}",
        violations
            .iter()
            .map(|v| format!("--{} {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// [`invalid_flags`] for invalid input, else the error itself.
fn cli_error(e: crate::service::Error) -> anyhow::Error {
    match e {
        crate::service::Error::Invalid(v) => invalid_flags(&v),
        crate::service::Error::AlreadyExists(what) => {
            anyhow::anyhow!("--{what}: a service principal of that name exists; choose another")
        }
        crate::service::Error::NotFound => anyhow::anyhow!("no such service client"),
        crate::service::Error::StaleEtag => {
            anyhow::anyhow!("the client changed meanwhile; run the command again")
        }
        other => anyhow::anyhow!("{other}"),
    }
}

/// Prints the credentials alone on stdout, as an environment file (for
/// `kubectl create secret generic --from-env-file`); what they are, on
/// stderr.
fn print_credentials(credentials: &crate::service::service_clients::Credentials) {
    println!("IDENTITY_CLIENT_ID={}", credentials.client_id);
    println!(
        "IDENTITY_CLIENT_SECRET={}",
        credentials.secret.expose_secret()
    );
}

pub async fn create_client(store: &Store, role: &str, name: Option<&str>) -> anyhow::Result<()> {
    let created = crate::service::service_clients::create(store, role, name)
        .await
        .map_err(cli_error)?;
    print_credentials(&created);
    eprintln!(
        "service client {} for service principal {} (profile {}), role {role}. The secret is shown only now: \
         the service signs in with AuthService.ServiceLogin; rotate with `identity admin rotate-service-client {}`",
        created.client_id, created.profile.auth_id, created.profile.id, created.client_id,
    );
    Ok(())
}

pub async fn rotate_client(store: &Store, client_id: &str) -> anyhow::Result<()> {
    let rotated = crate::service::service_clients::rotate(store, client_id)
        .await
        .map_err(cli_error)?;
    print_credentials(&rotated);
    eprintln!(
        "service client {} has a new secret (shown only now); the old one no longer signs in, and {} live session(s) were revoked",
        rotated.client_id, rotated.sessions_revoked,
    );
    Ok(())
}

pub async fn disable_client(store: &Store, client_id: &str) -> anyhow::Result<()> {
    let (profile, revoked) = crate::service::service_clients::disable(store, client_id)
        .await
        .map_err(cli_error)?;
    println!(
        "service client {client_id} (profile {}) disabled; {revoked} live session(s) revoked",
        profile.id
    );
    Ok(())
}
