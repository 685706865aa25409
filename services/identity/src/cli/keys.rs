//! The signing keys, `iss` and `aud`: shared by `identity serve` and
//! `identity admin issue-service-token`, which signs as the server does.

use clap::Args;
use std::path::PathBuf;

/// The key arguments as given; `config::keys::load` (serve) or
/// `config::keys::load_for_command` validate them. No `Debug`: they hold a
/// secret.
#[derive(Args, Clone)]
pub struct KeyArgs {
    /// Ed25519 private keys (PKCS#8 PEM files, comma-separated): the first
    /// signs, all verify and are published by GetJwks (key rotation).
    #[arg(long, env = "IDENTITY_SIGNING_KEY_FILE", value_delimiter = ',')]
    pub signing_key_file: Vec<PathBuf>,

    /// HS256 secret (at least 32 bytes). Signs only when no Ed25519 key is
    /// set; otherwise it only verifies (for migrating off HS256).
    #[arg(long, env = "IDENTITY_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// File holding IDENTITY_SECRET_KEY; a trailing newline is ignored.
    #[arg(long, env = "IDENTITY_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// `iss` of issued access tokens, required on verification.
    #[arg(long, env = "IDENTITY_ISSUER", default_value = "identity")]
    pub issuer: String,

    /// `aud` of issued access tokens, required on verification.
    #[arg(long, env = "IDENTITY_AUDIENCE", default_value = "identity")]
    pub audience: String,
}
