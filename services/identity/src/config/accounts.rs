//! Accounts: who becomes admin on registration, and how strong a new
//! password must be.

use super::{ConfigError, Mode, refuse};
use crate::cli::Settings;

pub(super) fn bootstrap_admins(settings: &Settings) -> Result<Vec<String>, ConfigError> {
    let mut bootstrap_admins = Vec::new();
    for email in settings
        .bootstrap_admins
        .iter()
        .filter(|e| !e.trim().is_empty())
    {
        bootstrap_admins.push(identity_core::validation::email(email).map_err(|problem| {
            refuse("IDENTITY_BOOTSTRAP_ADMINS", format!("an entry {problem}"))
        })?);
    }
    Ok(bootstrap_admins)
}

pub(super) fn password_min_score(settings: &Settings, mode: Mode) -> Result<u8, ConfigError> {
    if settings.password_min_score > 4 {
        return Err(refuse(
            "IDENTITY_PASSWORD_MIN_SCORE",
            "must be between 0 and 4",
        ));
    }
    if mode == Mode::Production && settings.password_min_score < 3 {
        return Err(refuse(
            "IDENTITY_PASSWORD_MIN_SCORE",
            "production requires at least 3",
        ));
    }
    Ok(settings.password_min_score)
}
