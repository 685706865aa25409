//! The fast validation path and revocation across replicas
//! (`service::revocation`): staleness bound, reconciliation, cache sizes.
//! The listener's own URL is read with the database's (`database.rs`).

use super::ConfigError;
use crate::cli::RevocationArgs;
use crate::service::revocation::RevocationSettings;
use std::time::Duration;

/// Validates the settings; each refusal names the variable to fix.
pub fn load(settings: &RevocationArgs) -> Result<RevocationSettings, ConfigError> {
    let range = |setting: &'static str, value: Duration, min_ms: u64, max_s: u64| {
        if value < Duration::from_millis(min_ms) || value > Duration::from_secs(max_s) {
            Err(ConfigError {
                setting,
                problem: format!(
                    "is {}; use {min_ms}ms to {max_s}s",
                    humantime::format_duration(value)
                ),
            })
        } else {
            Ok(())
        }
    };
    range(
        "IDENTITY_REVOCATION_MAX_STALENESS",
        settings.revocation_max_staleness,
        100,
        60,
    )?;
    range(
        "IDENTITY_REVOCATION_RECONCILE_INTERVAL",
        settings.revocation_reconcile_interval,
        100,
        3600,
    )?;
    range(
        "IDENTITY_REVOCATION_HEARTBEAT",
        settings.revocation_heartbeat,
        10,
        60,
    )?;
    // A heartbeat no more often than the staleness bound would let a
    // watcher that keeps to the same bound fail closed between two.
    if settings.revocation_heartbeat >= settings.revocation_max_staleness {
        return Err(ConfigError {
            setting: "IDENTITY_REVOCATION_HEARTBEAT",
            problem: format!(
                "is {}; use less than IDENTITY_REVOCATION_MAX_STALENESS ({})",
                humantime::format_duration(settings.revocation_heartbeat),
                humantime::format_duration(settings.revocation_max_staleness)
            ),
        });
    }
    range(
        "IDENTITY_REVOCATION_WATCH_SEND_TIMEOUT",
        settings.revocation_watch_send_timeout,
        100,
        300,
    )?;
    if !(1..=1_000_000).contains(&settings.revocation_max_watchers) {
        return Err(ConfigError {
            setting: "IDENTITY_REVOCATION_MAX_WATCHERS",
            problem: format!("is {}; use 1 to 1000000", settings.revocation_max_watchers),
        });
    }
    if !(16..=65_536).contains(&settings.revocation_watch_backlog) {
        return Err(ConfigError {
            setting: "IDENTITY_REVOCATION_WATCH_BACKLOG",
            problem: format!("is {}; use 16 to 65536", settings.revocation_watch_backlog),
        });
    }
    // The listener URL may carry a password: `Config` keeps it parsed, with
    // a `Debug` that hides it (`database.rs`), not here.
    Ok(RevocationSettings {
        revocation_max_staleness: settings.revocation_max_staleness,
        revocation_reconcile_interval: settings.revocation_reconcile_interval,
        token_cache_size: settings.token_cache_size,
        session_cache_size: settings.session_cache_size,
        profile_cache_size: settings.profile_cache_size,
        revocation_heartbeat: settings.revocation_heartbeat,
        revocation_max_watchers: settings.revocation_max_watchers,
        revocation_watch_backlog: settings.revocation_watch_backlog,
        revocation_watch_send_timeout: settings.revocation_watch_send_timeout,
    })
}
