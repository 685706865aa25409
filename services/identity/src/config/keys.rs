//! The signing keys: Ed25519 PEM files, an HS256 secret, or in --dev a key
//! generated under the data folder. `identity serve` and `identity admin
//! issue-service-token` take the same arguments (`cli::KeyArgs`) and load the
//! keys with the same [`load_keys`], so the server accepts what the
//! command signs.

use super::secrets::{read_file_setting, secret_setting};
use super::{ConfigError, Mode, refuse};
use crate::cli::KeyArgs;
use anyhow::Context as _;
use identity_core::tokens::{Ed25519Key, TokenKeys, generate_ed25519_pem};
use secrecy::{ExposeSecret, SecretString};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The key `identity serve --dev` generates (and keeps) under its data
/// folder when no key is configured.
const DEV_KEY_FILE: &str = "signing-key.pem";

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

/// IDENTITY_SECRET_KEY (or its file), refused when weak.
fn hs256_secret(args: &KeyArgs) -> Result<Option<SecretString>, ConfigError> {
    let secret_key = secret_setting(
        "IDENTITY_SECRET_KEY",
        "IDENTITY_SECRET_KEY_FILE",
        args.secret_key.clone(),
        args.secret_key_file.as_deref(),
    )?;
    match secret_key {
        Some(secret) if !secret.is_empty() => {
            if let Some(problem) = weak_secret(&secret) {
                return Err(refuse("IDENTITY_SECRET_KEY", problem));
            }
            Ok(Some(SecretString::from(secret)))
        }
        _ => Ok(None),
    }
}

/// The keys of `identity serve`: in --dev without any, one generated under
/// `data_dir`; in production at least one configured.
pub fn load(args: &KeyArgs, mode: Mode, data_dir: &Path) -> Result<KeySettings, ConfigError> {
    let production = mode == Mode::Production;
    let hs256_secret = hs256_secret(args)?;
    for file in &args.signing_key_file {
        read_file_setting("IDENTITY_SIGNING_KEY_FILE", file)?;
    }
    let dev_generated = (args.signing_key_file.is_empty() && hs256_secret.is_none() && !production)
        .then(|| data_dir.join(DEV_KEY_FILE));
    if production && args.signing_key_file.is_empty() && hs256_secret.is_none() {
        return Err(refuse(
            "IDENTITY_SIGNING_KEY_FILE",
            "no signing key: set IDENTITY_SIGNING_KEY_FILE to an Ed25519 PEM (`identity keygen --out key.pem`) or IDENTITY_SECRET_KEY to at least 32 random bytes",
        ));
    }
    Ok(KeySettings {
        ed25519_files: args.signing_key_file.clone(),
        dev_generated,
        hs256_secret,
    })
}

/// The keys of a command that signs as the server does: with `dev`
/// and no key file, the key `identity serve --dev` generated under
/// `data_dir`, which the command reads but never creates.
pub fn load_for_command(
    args: &KeyArgs,
    dev: bool,
    data_dir: &Path,
) -> Result<KeySettings, ConfigError> {
    let hs256_secret = hs256_secret(args)?;
    let mut ed25519_files = args.signing_key_file.clone();
    if ed25519_files.is_empty() && dev {
        ed25519_files.push(data_dir.join(DEV_KEY_FILE));
    }
    if ed25519_files.is_empty() && hs256_secret.is_none() {
        return Err(refuse(
            "IDENTITY_SIGNING_KEY_FILE",
            "no signing key: set IDENTITY_SIGNING_KEY_FILE (or IDENTITY_SECRET_KEY) as for the server, or --dev for the key of `identity serve --dev`",
        ));
    }
    Ok(KeySettings {
        ed25519_files,
        dev_generated: None,
        hs256_secret,
    })
}

/// Reads the keys `settings` name; a `dev_generated` key is generated
/// first if it does not exist yet, and kept so tokens survive a restart.
pub fn load_keys(
    settings: &KeySettings,
    issuer: &str,
    audience: &str,
    leeway: Duration,
) -> anyhow::Result<TokenKeys> {
    let mut ed25519 = Vec::new();
    for file in &settings.ed25519_files {
        let pem = std::fs::read_to_string(file).with_context(|| {
            format!("IDENTITY_SIGNING_KEY_FILE: cannot read {}", file.display())
        })?;
        ed25519.push(
            Ed25519Key::from_pem(&pem, &file.display().to_string())
                .with_context(|| "IDENTITY_SIGNING_KEY_FILE".to_string())?,
        );
    }
    if let Some(path) = &settings.dev_generated {
        if !path.exists() {
            write_private_file(
                path,
                generate_ed25519_pem()
                    .map_err(anyhow::Error::msg)?
                    .expose_secret(),
            )?;
            tracing::warn!(path = %path.display(), "generated a development signing key");
        }
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        ed25519.push(Ed25519Key::from_pem(&pem, &path.display().to_string())?);
    }
    TokenKeys::new(
        ed25519,
        settings.hs256_secret.as_ref(),
        issuer.to_owned(),
        audience.to_owned(),
        leeway,
    )
    .map_err(anyhow::Error::msg)
}

/// Creates a file only its owner can read; never overwrites.
pub fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{AdminCommand, Command, IssueServiceTokenArgs};

    fn issue_args(extra: &[&str]) -> IssueServiceTokenArgs {
        let mut argv = vec![
            "identity",
            "admin",
            "issue-service-token",
            "--role",
            "provisioner",
        ];
        argv.extend_from_slice(extra);
        match crate::config::parse_cli(argv)
            .expect("arguments parse")
            .command
        {
            Command::Admin(admin) => match admin.command {
                AdminCommand::IssueServiceToken(args) => args,
                _ => unreachable!("issue-service-token was parsed"),
            },
            _ => unreachable!("admin was parsed"),
        }
    }

    #[test]
    fn a_command_signs_with_the_key_serve_generated_and_never_creates_one() {
        let dir = std::env::temp_dir().join(format!("identity-keys-{}", uuid::Uuid::new_v4()));
        let data_dir = format!("--data-dir={}", dir.display());
        let args = issue_args(&["--dev", &data_dir]);
        let command = load_for_command(&args.keys, args.dev, &args.data_dir).unwrap();
        let before = load_keys(&command, "identity", "identity", Duration::ZERO).unwrap_err();
        assert!(
            format!("{before:#}").starts_with("IDENTITY_SIGNING_KEY_FILE: cannot read"),
            "{before:#}"
        );
        assert!(!dir.join(DEV_KEY_FILE).exists(), "the command made a key");

        let serve = load(&args.keys, Mode::Dev, &dir).unwrap();
        let served = load_keys(&serve, "identity", "identity", Duration::ZERO).unwrap();
        let signed = load_keys(&command, "identity", "identity", Duration::ZERO).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(signed.signing_kid(), served.signing_kid());
    }

    #[test]
    fn a_command_without_a_key_or_with_a_weak_secret_names_the_setting() {
        let args = issue_args(&[]);
        let err = load_for_command(&args.keys, false, &args.data_dir).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_SIGNING_KEY_FILE");
        let args = issue_args(&["--secret-key=changeme"]);
        let err = load_for_command(&args.keys, false, &args.data_dir).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_SECRET_KEY");
    }
}
