//! What bounds the work one caller can cause: bcrypt (cost, threads,
//! queue) and the rate limits (quotas, shared counters in Redis, the IPv6
//! prefix that names one client, the keys each limiter holds).

use super::secrets::secret_setting;
use super::{ConfigError, Mode, refuse};
use crate::cli::Settings;
use crate::infra::limits::LimitSettings;
use identity_core::rate_limit::{Action, Quota};
use secrecy::SecretString;
use std::collections::HashMap;

pub const PRODUCTION_MIN_BCRYPT_COST: u32 = 12;

/// The password hashing section of [`super::Config`].
pub(super) struct Bcrypt {
    pub cost: u32,
    pub threads: usize,
    pub queue: usize,
}

pub(super) fn bcrypt(settings: &Settings, mode: Mode) -> Result<Bcrypt, ConfigError> {
    let production = mode == Mode::Production;
    let bcrypt_cost = settings
        .bcrypt_cost
        .unwrap_or(if production { 12 } else { 10 });
    if !(4..=31).contains(&bcrypt_cost) {
        return Err(refuse("IDENTITY_BCRYPT_COST", "must be between 4 and 31"));
    }
    if production && bcrypt_cost < PRODUCTION_MIN_BCRYPT_COST {
        return Err(refuse(
            "IDENTITY_BCRYPT_COST",
            format!("is {bcrypt_cost}; production requires at least {PRODUCTION_MIN_BCRYPT_COST}"),
        ));
    }
    let bcrypt_threads = settings
        .bcrypt_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    if bcrypt_threads == 0 {
        return Err(refuse("IDENTITY_BCRYPT_THREADS", "must be at least 1"));
    }
    Ok(Bcrypt {
        cost: bcrypt_cost,
        threads: bcrypt_threads,
        queue: settings.bcrypt_queue,
    })
}

pub(super) fn rate_limits(settings: &Settings, mode: Mode) -> Result<LimitSettings, ConfigError> {
    let production = mode == Mode::Production;
    if production && !settings.rate_limit_enabled {
        return Err(refuse(
            "IDENTITY_RATE_LIMIT_ENABLED",
            "rate limits can be switched off only with --dev (load tests); remove the setting",
        ));
    }
    let quota =
        |setting: &'static str, text: &str| Quota::parse(text).map_err(|p| refuse(setting, p));
    let per_address = HashMap::from([
        (
            Action::Register,
            quota(
                "IDENTITY_RATE_LIMIT_REGISTER",
                &settings.rate_limit_register,
            )?,
        ),
        (
            Action::Login,
            quota("IDENTITY_RATE_LIMIT_LOGIN", &settings.rate_limit_login)?,
        ),
        (
            Action::Refresh,
            quota("IDENTITY_RATE_LIMIT_REFRESH", &settings.rate_limit_refresh)?,
        ),
        (
            Action::Validate,
            quota(
                "IDENTITY_RATE_LIMIT_VALIDATE",
                &settings.rate_limit_validate,
            )?,
        ),
        (
            Action::Exchange,
            quota(
                "IDENTITY_RATE_LIMIT_EXCHANGE",
                &settings.rate_limit_exchange,
            )?,
        ),
        (
            Action::Watch,
            quota("IDENTITY_RATE_LIMIT_WATCH", &settings.rate_limit_watch)?,
        ),
    ]);
    let per_account = HashMap::from([
        (
            Action::Register,
            quota(
                "IDENTITY_RATE_LIMIT_REGISTER_ACCOUNT",
                &settings.rate_limit_register_account,
            )?,
        ),
        (
            Action::Login,
            quota(
                "IDENTITY_RATE_LIMIT_LOGIN_ACCOUNT",
                &settings.rate_limit_login_account,
            )?,
        ),
    ]);
    let redis_url = secret_setting(
        "IDENTITY_RATE_LIMIT_REDIS_URL",
        "IDENTITY_RATE_LIMIT_REDIS_URL_FILE",
        settings.rate_limit_redis_url.clone(),
        settings.rate_limit_redis_url_file.as_deref(),
    )?;
    let redis_url = match redis_url.filter(|u| !u.trim().is_empty()) {
        Some(url)
            if url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://") =>
        {
            if url.contains("#insecure") {
                return Err(refuse(
                    "IDENTITY_RATE_LIMIT_REDIS_URL",
                    "#insecure (no certificate check) is refused; name the CA with IDENTITY_RATE_LIMIT_REDIS_CA_FILE",
                ));
            }
            Some(url)
        }
        Some(_) => {
            return Err(refuse(
                "IDENTITY_RATE_LIMIT_REDIS_URL",
                "must start with redis:// or rediss:// (TLS)",
            ));
        }
        None => None,
    };
    let redis_ca_pem = match &settings.rate_limit_redis_ca_file {
        None => None,
        Some(path) => {
            const SETTING: &str = "IDENTITY_RATE_LIMIT_REDIS_CA_FILE";
            if !redis_url
                .as_deref()
                .is_some_and(|u| u.starts_with("rediss://"))
            {
                return Err(refuse(
                    SETTING,
                    "needs a rediss:// IDENTITY_RATE_LIMIT_REDIS_URL",
                ));
            }
            let bundle =
                identity_store::pem::read_certificates(path).map_err(|e| refuse(SETTING, e))?;
            Some(bundle.pem)
        }
    };
    let redis_url = redis_url.map(SecretString::from);
    if !(32..=128).contains(&settings.rate_limit_ipv6_prefix) {
        return Err(refuse(
            "IDENTITY_RATE_LIMIT_IPV6_PREFIX",
            "must be between 32 and 128 (bits of an IPv6 address that name one client)",
        ));
    }
    if settings.rate_limit_max_keys == 0 {
        return Err(refuse("IDENTITY_RATE_LIMIT_MAX_KEYS", "must be at least 1"));
    }
    Ok(LimitSettings {
        enabled: settings.rate_limit_enabled,
        per_address,
        per_account,
        redis_url,
        redis_ca_pem,
        max_keys: settings.rate_limit_max_keys,
    })
}
