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
    // Zero would turn every watcher away while the server looks healthy.
    for (setting, value) in [
        (
            "IDENTITY_REVOCATION_MAX_WATCHERS_PER_ADDRESS",
            settings.revocation_max_watchers_per_address,
        ),
        (
            "IDENTITY_REVOCATION_MAX_WATCHERS_PER_PRINCIPAL",
            settings.revocation_max_watchers_per_principal,
        ),
    ] {
        if value == 0 {
            return Err(ConfigError {
                setting,
                problem: "is 0, which would refuse every watcher; use 1 or more (above IDENTITY_REVOCATION_MAX_WATCHERS it means that cap)".into(),
            });
        }
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
        // Above the whole cap it would mean the whole cap: a smaller
        // IDENTITY_REVOCATION_MAX_WATCHERS alone need not lower these too.
        revocation_max_watchers_per_address: settings
            .revocation_max_watchers_per_address
            .min(settings.revocation_max_watchers),
        revocation_max_watchers_per_principal: settings
            .revocation_max_watchers_per_principal
            .min(settings.revocation_max_watchers),
        revocation_watch_backlog: settings.revocation_watch_backlog,
        revocation_watch_send_timeout: settings.revocation_watch_send_timeout,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;

    const DEV: [&str; 2] = ["--dev", "--data-dir=/tmp/identity-test"];

    #[test]
    fn per_client_watcher_caps_default_to_16_and_256() {
        let revocation = load(&DEV).unwrap().revocation;
        assert_eq!(revocation.revocation_max_watchers, 4096);
        assert_eq!(revocation.revocation_max_watchers_per_address, 16);
        assert_eq!(revocation.revocation_max_watchers_per_principal, 256);
    }

    #[test]
    fn a_zero_per_client_watcher_cap_is_refused_naming_it() {
        for (arg, setting) in [
            (
                "--revocation-max-watchers-per-address=0",
                "IDENTITY_REVOCATION_MAX_WATCHERS_PER_ADDRESS",
            ),
            (
                "--revocation-max-watchers-per-principal=0",
                "IDENTITY_REVOCATION_MAX_WATCHERS_PER_PRINCIPAL",
            ),
        ] {
            let err = load(&[DEV[0], DEV[1], arg]).unwrap_err();
            assert_eq!(err.setting, setting, "{arg}");
            assert!(err.to_string().contains(setting), "{err}");
        }
    }

    #[test]
    fn per_client_watcher_caps_above_the_server_cap_are_clamped_to_it() {
        let revocation = load(&[
            DEV[0],
            DEV[1],
            "--revocation-max-watchers=8",
            "--revocation-max-watchers-per-address=100",
            "--revocation-max-watchers-per-principal=9",
        ])
        .unwrap()
        .revocation;
        assert_eq!(revocation.revocation_max_watchers_per_address, 8);
        assert_eq!(revocation.revocation_max_watchers_per_principal, 8);
        let revocation = load(&[DEV[0], DEV[1], "--revocation-max-watchers-per-address=3"])
            .unwrap()
            .revocation;
        assert_eq!(revocation.revocation_max_watchers_per_address, 3);
    }
}
