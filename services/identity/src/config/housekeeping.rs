//! Housekeeping of ended sessions (`service::housekeeping`).

use super::{ConfigError, refuse};
use crate::cli::Settings;
use crate::service::housekeeping::HousekeepingSettings;

pub(super) fn load(settings: &Settings) -> Result<HousekeepingSettings, ConfigError> {
    if settings.housekeeping_interval.is_zero() {
        return Err(refuse(
            "IDENTITY_HOUSEKEEPING_INTERVAL",
            "must be longer than zero",
        ));
    }
    if !(1..=100_000).contains(&settings.housekeeping_batch_size) {
        return Err(refuse(
            "IDENTITY_HOUSEKEEPING_BATCH_SIZE",
            "must be between 1 and 100000",
        ));
    }
    Ok(HousekeepingSettings {
        session_retention: settings.session_retention,
        interval: settings.housekeeping_interval,
        batch_size: settings.housekeeping_batch_size,
    })
}
