//! The access and refresh tokens: lifetimes, clock skew, `iss` and `aud`.

use super::{ConfigError, refuse};
use crate::cli::Settings;
use std::time::Duration;

pub(super) fn check(settings: &Settings) -> Result<(), ConfigError> {
    let minute = Duration::from_secs(60);
    if settings.access_token_ttl < minute || settings.access_token_ttl > 24 * 60 * minute {
        return Err(refuse(
            "IDENTITY_ACCESS_TOKEN_TTL",
            "must be between 1m and 24h",
        ));
    }
    if settings.refresh_token_ttl < settings.access_token_ttl {
        return Err(refuse(
            "IDENTITY_REFRESH_TOKEN_TTL",
            "must be at least IDENTITY_ACCESS_TOKEN_TTL",
        ));
    }
    // How long a spent refresh token counts as a retry (docs/decisions/0011):
    // the longer, the longer a thief's replay goes unnoticed, so it is
    // capped at a minute, enough for any client's retry.
    if settings.refresh_reuse_grace > minute {
        return Err(refuse(
            "IDENTITY_REFRESH_REUSE_GRACE",
            "must be at most 1m (0s turns the retry grace off)",
        ));
    }
    if settings.token_leeway > 5 * minute {
        return Err(refuse("IDENTITY_TOKEN_LEEWAY", "must be at most 5m"));
    }
    if settings.keys.issuer.trim().is_empty() {
        return Err(refuse("IDENTITY_ISSUER", "must not be empty"));
    }
    if settings.keys.audience.trim().is_empty() {
        return Err(refuse("IDENTITY_AUDIENCE", "must not be empty"));
    }
    Ok(())
}
