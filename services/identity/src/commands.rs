//! The subcommands other than `serve`, and logging set-up.

use crate::cli::{AuditCommand, HealthcheckArgs, KeygenArgs};
use anyhow::Context as _;
use identity_core::tokens::{Ed25519Key, generate_ed25519_pem};
use identity_store::{Id, PoolSettings, Store};
use secrecy::ExposeSecret;
use std::time::Duration;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let pem = generate_ed25519_pem()?;
    let kid = Ed25519Key::from_pem(pem.expose_secret(), "generated")?
        .kid()
        .to_owned();
    match args.out {
        Some(path) => {
            crate::config::keys::write_private_file(&path, pem.expose_secret())?;
            eprintln!("wrote Ed25519 signing key {} (kid {kid})", path.display());
        }
        None => {
            print!("{}", pem.expose_secret());
            eprintln!("kid {kid}");
        }
    }
    Ok(())
}

/// Exit status 0 when SERVING, 1 otherwise.
pub async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<bool> {
    let channel = tonic::transport::Endpoint::from_shared(args.addr.clone())
        .context("IDENTITY_HEALTHCHECK_ADDR")?
        .connect_timeout(args.timeout)
        .timeout(args.timeout)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", args.addr))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service,
        })
        .await
        .context("health check failed")?;
    let status = response.into_inner().status();
    println!("{}", status.as_str_name());
    Ok(status == ServingStatus::Serving)
}

pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let url = crate::config::database_url_setting(database_url)?;
    let applied = Store::migrate(&url)
        .await
        .context("IDENTITY_DATABASE_URL: migrations failed")?;
    if applied.is_empty() {
        println!("database is up to date");
    }
    for version in applied {
        println!("applied {version}");
    }
    Ok(())
}

/// The store of a one-off command: one connection is all it uses.
fn command_store(database_url: &str) -> anyhow::Result<Store> {
    let url = crate::config::database_url_setting(database_url)?;
    Store::open(
        &url,
        &PoolSettings {
            max_size: 1,
            timeout: Duration::from_secs(5),
        },
    )
    .context("IDENTITY_DATABASE_URL")
}

pub async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Tail {
            database_url,
            since,
            profile,
            limit,
        } => {
            let profile = match profile {
                Some(p) => Some(Id::parse(&p).context("--profile must be a profile id (UUID)")?),
                None => None,
            };
            let store = command_store(&database_url)?;
            let since = chrono::Utc::now()
                - chrono::Duration::from_std(since).unwrap_or(chrono::Duration::days(1));
            for row in store.recent_audit(since, profile, limit).await? {
                let line = serde_json::json!({
                    "id": row.id.to_string(),
                    "time": row.occurred_at.to_rfc3339(),
                    "event.name": row.event_name,
                    "profile.id": row.profile_id.map(|p| p.to_string()),
                    "session.id": row.session_id.map(|s| s.to_string()),
                    "client.address": row.client_addr,
                    "detail": serde_json::from_str::<serde_json::Value>(&row.detail).unwrap_or_default(),
                });
                println!("{line}");
            }
            Ok(())
        }
    }
}

/// `identity admin grant-role|revoke-role USER ROLE`: the bootstrap path to
/// a first admin without any default credential.
pub async fn admin(args: crate::cli::AdminArgs) -> anyhow::Result<()> {
    use crate::cli::AdminCommand;
    use crate::service::events::Actor;
    use crate::service::profile_change::ProfileChange;
    let url = args
        .database_url
        .context("IDENTITY_DATABASE_URL is required")?;
    let store = command_store(&url)?;
    let (user, role, grant) = match args.command {
        AdminCommand::GrantRole { user, role } => (user, role, true),
        AdminCommand::RevokeRole { user, role } => (user, role, false),
        AdminCommand::IssueServiceToken(args) => {
            return crate::admin_token::run(&store, args).await;
        }
        AdminCommand::CreateServiceClient { role, name } => {
            return crate::admin_token::create_client(&store, &role, name.as_deref()).await;
        }
        AdminCommand::RotateServiceClient { client_id } => {
            return crate::admin_token::rotate_client(&store, &client_id).await;
        }
        AdminCommand::DisableServiceClient { client_id } => {
            return crate::admin_token::disable_client(&store, &client_id).await;
        }
    };
    identity_core::validation::roles(std::slice::from_ref(&role))
        .map_err(|e| anyhow::anyhow!("role: {e}"))?;
    let profile = match Id::parse(&user) {
        Some(id) => store.find_profile(id).await?,
        None => {
            let email =
                identity_core::validation::email(&user).map_err(|e| anyhow::anyhow!("user {e}"))?;
            store.find_profile_by_login_email(&email).await?
        }
    }
    .context("no such user (give a profile id or a local account's email)")?;
    if grant && profile.auth_provider == crate::service::service_token::SERVICE_PROVIDER {
        crate::service::service_token::service_role(&role)
            .map_err(|e| anyhow::anyhow!("{}: a service principal's role {e}", profile.id))?;
    }
    let mut change = ProfileChange::of(profile);
    let roles = if grant {
        change.granting(&role)
    } else {
        change.revoking(&role)
    };
    let id = change.current().id;
    change
        .set_roles(&roles, Actor::AdminCli, None)
        .map_err(|e| anyhow::anyhow!("{id}: {e}"))?;
    if !change.changes_roles() {
        println!(
            "{id}: roles unchanged ({})",
            change.current().roles.join(" ")
        );
        return Ok(());
    }
    let next = change
        .commit(&store)
        .await?
        .context("the profile changed meanwhile; run the command again")?;
    println!("{id}: roles now {}", next.roles.join(" "));
    Ok(())
}
