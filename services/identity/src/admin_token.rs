//! `identity admin issue-service-token`: prints an access token for a
//! service principal (see `service::service_token`), for bootstrapping
//! only. It signs with the same key settings as the server, so the server
//! accepts the token. And the service-client commands
//! (`service::service_clients`), which need no signing key.

use anyhow::Context as _;
use clap::Args;
use identity_core::tokens::{Ed25519Key, TokenKeys};
use identity_store::Store;
use secrecy::{ExposeSecret, SecretString};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct IssueServiceTokenArgs {
    /// Role of the token: `provisioner` (may create role-less profiles of
    /// external providers). Never `admin`: admins are people
    /// (IDENTITY_BOOTSTRAP_ADMINS, grant-role).
    #[arg(long)]
    pub role: String,
    /// Lifetime of the token (1m to 24h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Name of the service principal (its profile's auth_id, auth_provider
    /// `service`) [default: the role].
    #[arg(long)]
    pub name: Option<String>,
    /// The server's signing keys (the first signs), as for `identity serve`.
    #[arg(long, env = "IDENTITY_SIGNING_KEY_FILE", value_delimiter = ',')]
    pub signing_key_file: Vec<PathBuf>,
    /// The server's HS256 secret, when it signs with one.
    #[arg(long, env = "IDENTITY_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// `iss` of the token: the server's IDENTITY_ISSUER.
    #[arg(long, env = "IDENTITY_ISSUER", default_value = "identity")]
    pub issuer: String,
    /// `aud` of the token: the server's IDENTITY_AUDIENCE.
    #[arg(long, env = "IDENTITY_AUDIENCE", default_value = "identity")]
    pub audience: String,
    /// Use the key that `identity serve --dev` generated under the data folder.
    #[arg(long)]
    pub dev: bool,
    /// Data folder of `identity serve --dev` (with --dev).
    #[arg(long, env = "IDENTITY_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
}

fn keys(args: &IssueServiceTokenArgs) -> anyhow::Result<TokenKeys> {
    let mut files = args.signing_key_file.clone();
    if files.is_empty() && args.dev {
        files.push(args.data_dir.join("signing-key.pem"));
    }
    let mut ed25519 = Vec::new();
    for file in &files {
        let pem = std::fs::read_to_string(file).with_context(|| {
            format!("IDENTITY_SIGNING_KEY_FILE: cannot read {}", file.display())
        })?;
        ed25519.push(Ed25519Key::from_pem(&pem, &file.display().to_string())?);
    }
    let secret = match args.secret_key.as_deref().filter(|s| !s.is_empty()) {
        Some(secret) => {
            if let Some(problem) = crate::config::weak_secret(secret) {
                anyhow::bail!("IDENTITY_SECRET_KEY: {problem}");
            }
            Some(SecretString::from(secret.to_owned()))
        }
        None => None,
    };
    anyhow::ensure!(
        !ed25519.is_empty() || secret.is_some(),
        "no signing key: set IDENTITY_SIGNING_KEY_FILE (or IDENTITY_SECRET_KEY) as for the server, or --dev for the key of `identity serve --dev`"
    );
    TokenKeys::new(
        ed25519,
        secret.as_ref(),
        args.issuer.clone(),
        args.audience.clone(),
        Duration::ZERO,
    )
    .map_err(anyhow::Error::from)
}

/// Prints the token alone on stdout; what it is, on stderr.
pub async fn run(store: &Store, args: IssueServiceTokenArgs) -> anyhow::Result<()> {
    let keys = keys(&args)?;
    let name = args.name.clone().unwrap_or_else(|| args.role.clone());
    let minted = crate::service::service_token::issue(store, &keys, &name, &args.role, args.ttl)
        .await
        .map_err(|e| match e {
            crate::service::Error::Invalid(v) => anyhow::anyhow!(
                "{}",
                v.iter()
                    .map(|v| format!("--{} {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
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

/// `--field description; ...` for invalid input, else the error itself.
fn cli_error(e: crate::service::Error) -> anyhow::Error {
    match e {
        crate::service::Error::Invalid(v) => anyhow::anyhow!(
            "{}",
            v.iter()
                .map(|v| format!("--{} {}", v.field, v.description))
                .collect::<Vec<_>>()
                .join("; ")
        ),
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
