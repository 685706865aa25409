//! The signing keys: Ed25519 PEM files, an HS256 secret, or in --dev a key
//! generated under the data folder.

use super::secrets::{read_file_setting, secret_setting};
use super::{ConfigError, Mode, refuse};
use crate::cli::Settings;
use secrecy::SecretString;
use std::path::PathBuf;

/// Where the signing keys come from.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// PEM files; the first signs.
    pub ed25519_files: Vec<PathBuf>,
    /// In --dev without any key: generate one here and keep it.
    pub dev_generated: Option<PathBuf>,
    pub hs256_secret: Option<SecretString>,
}

/// Secrets that must never be accepted: documentation examples and the
/// usual placeholders. Compared case-insensitively.
const PLACEHOLDER_SECRETS: &[&str] = &[
    "secret",
    "changeme",
    "change-me",
    "change_me",
    "password",
    "your-secret-key",
    "your_secret_key",
    "supersecret",
    "mysecret",
    "default",
    "example",
    "test",
    "development",
    "replace-me-with-at-least-32-random-bytes",
];

pub const MIN_SECRET_BYTES: usize = 32;

/// Why an HS256 secret is unacceptable, if it is.
pub fn weak_secret(secret: &str) -> Option<String> {
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDER_SECRETS
        .iter()
        .any(|p| lower == *p || lower.contains("changeme") || lower.contains("replace-me"))
    {
        return Some(
            "is a well-known placeholder; generate one with `openssl rand -base64 48`".into(),
        );
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "is {} bytes; at least {MIN_SECRET_BYTES} are required (`openssl rand -base64 48`)",
            secret.len()
        ));
    }
    let mut distinct: Vec<u8> = secret.bytes().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return Some("has too little variety to be random (`openssl rand -base64 48`)".into());
    }
    None
}

pub(super) fn load(settings: &Settings, mode: Mode) -> Result<KeySettings, ConfigError> {
    let production = mode == Mode::Production;
    let secret_key = secret_setting(
        "IDENTITY_SECRET_KEY",
        "IDENTITY_SECRET_KEY_FILE",
        settings.secret_key.clone(),
        settings.secret_key_file.as_deref(),
    )?;
    let hs256_secret = match secret_key {
        Some(secret) if !secret.is_empty() => {
            if let Some(problem) = weak_secret(&secret) {
                return Err(refuse("IDENTITY_SECRET_KEY", problem));
            }
            Some(SecretString::from(secret))
        }
        _ => None,
    };
    for file in &settings.signing_key_file {
        read_file_setting("IDENTITY_SIGNING_KEY_FILE", file)?;
    }
    let dev_generated =
        (settings.signing_key_file.is_empty() && hs256_secret.is_none() && !production)
            .then(|| settings.data_dir.join("signing-key.pem"));
    if production && settings.signing_key_file.is_empty() && hs256_secret.is_none() {
        return Err(refuse(
            "IDENTITY_SIGNING_KEY_FILE",
            "no signing key: set IDENTITY_SIGNING_KEY_FILE to an Ed25519 PEM (`identity keygen --out key.pem`) or IDENTITY_SECRET_KEY to at least 32 random bytes",
        ));
    }
    Ok(KeySettings {
        ed25519_files: settings.signing_key_file.clone(),
        dev_generated,
        hs256_secret,
    })
}
