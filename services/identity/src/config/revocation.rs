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
    // The listener URL may carry a password: `Config` keeps it parsed, with
    // a `Debug` that hides it (`database.rs`), not here.
    Ok(RevocationSettings {
        revocation_max_staleness: settings.revocation_max_staleness,
        revocation_reconcile_interval: settings.revocation_reconcile_interval,
        token_cache_size: settings.token_cache_size,
        session_cache_size: settings.session_cache_size,
        profile_cache_size: settings.profile_cache_size,
    })
}
