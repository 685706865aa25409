//! TLS of the gRPC port: certificate and key, and for mTLS the client CA,
//! its revocation lists and the allowed names. Production serves TLS only,
//! unless plaintext is explicitly allowed behind a mesh.

use super::secrets::read_file_setting;
use super::{ConfigError, Mode, refuse};
use crate::cli::Settings;
use crate::transport::tls::TlsFiles;

/// The mTLS name allow-list: DNS names (compared in lower case, no
/// wildcards) or URIs with a scheme (spiffe://...), compared exactly.
fn allowed_sans(entries: &[String]) -> Result<Vec<String>, ConfigError> {
    const SETTING: &str = "IDENTITY_TLS_CLIENT_ALLOWED_SANS";
    entries
        .iter()
        .map(|entry| entry.trim())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            if entry.contains("://") {
                Ok(entry.to_owned())
            } else if entry.contains('*') {
                Err(refuse(
                    SETTING,
                    format!("{entry:?}: wildcards are not supported, list each name"),
                ))
            } else if entry.contains(|c: char| c.is_whitespace() || c == '/') {
                Err(refuse(
                    SETTING,
                    format!("{entry:?} is neither a DNS name nor a URI"),
                ))
            } else {
                Ok(entry.to_ascii_lowercase())
            }
        })
        .collect()
}

pub(super) fn load(settings: &Settings, mode: Mode) -> Result<Option<TlsFiles>, ConfigError> {
    let tls = match (
        settings.tls_cert_file.clone(),
        settings.tls_key_file.clone(),
    ) {
        (Some(cert), Some(key)) => {
            read_file_setting("IDENTITY_TLS_CERT_FILE", &cert)?;
            read_file_setting("IDENTITY_TLS_KEY_FILE", &key)?;
            if let Some(ca) = &settings.tls_client_ca_file {
                read_file_setting("IDENTITY_TLS_CLIENT_CA_FILE", ca)?;
            }
            let client_allowed_sans = allowed_sans(&settings.tls_client_allowed_sans)?;
            if settings.tls_client_ca_file.is_none() {
                if settings.tls_client_crl_file.is_some() {
                    return Err(refuse(
                        "IDENTITY_TLS_CLIENT_CRL_FILE",
                        "is only valid with IDENTITY_TLS_CLIENT_CA_FILE (mTLS)",
                    ));
                }
                if !client_allowed_sans.is_empty() {
                    return Err(refuse(
                        "IDENTITY_TLS_CLIENT_ALLOWED_SANS",
                        "is only valid with IDENTITY_TLS_CLIENT_CA_FILE (mTLS)",
                    ));
                }
            }
            if let Some(crl) = &settings.tls_client_crl_file {
                read_file_setting("IDENTITY_TLS_CLIENT_CRL_FILE", crl)?;
            }
            Some(TlsFiles {
                cert,
                key,
                client_ca: settings.tls_client_ca_file.clone(),
                client_crl: settings.tls_client_crl_file.clone(),
                client_allowed_sans,
            })
        }
        (Some(_), None) => {
            return Err(refuse(
                "IDENTITY_TLS_KEY_FILE",
                "is required with IDENTITY_TLS_CERT_FILE",
            ));
        }
        (None, Some(_)) => {
            return Err(refuse(
                "IDENTITY_TLS_CERT_FILE",
                "is required with IDENTITY_TLS_KEY_FILE",
            ));
        }
        (None, None) => {
            if settings.tls_client_ca_file.is_some() {
                return Err(refuse(
                    "IDENTITY_TLS_CERT_FILE",
                    "is required for mTLS (IDENTITY_TLS_CLIENT_CA_FILE)",
                ));
            }
            if settings.tls_client_crl_file.is_some()
                || settings
                    .tls_client_allowed_sans
                    .iter()
                    .any(|name| !name.trim().is_empty())
            {
                return Err(refuse(
                    "IDENTITY_TLS_CLIENT_CA_FILE",
                    "is required with IDENTITY_TLS_CLIENT_CRL_FILE or IDENTITY_TLS_CLIENT_ALLOWED_SANS",
                ));
            }
            None
        }
    };
    if mode == Mode::Production && tls.is_none() && !settings.allow_plaintext {
        return Err(refuse(
            "IDENTITY_TLS_CERT_FILE",
            "production serves TLS only: set IDENTITY_TLS_CERT_FILE and IDENTITY_TLS_KEY_FILE, or IDENTITY_ALLOW_PLAINTEXT=true behind a mesh that terminates mTLS",
        ));
    }
    Ok(tls)
}
