//! Certificate bundles named by settings (a TLS certificate chain, a CA
//! for clients, PostgreSQL, Redis or the OTLP collector): read and parsed
//! in one way everywhere. Errors give the path and the reason, never the
//! contents; the caller puts the setting's name in front.

use std::path::{Path, PathBuf};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject as _};

/// A PEM file with at least one certificate: its bytes (for libraries that
/// take PEM) and the parsed certificates (public material: Debug is fine).
#[derive(Debug)]
pub struct Bundle {
    pub pem: Vec<u8>,
    pub certificates: Vec<CertificateDer<'static>>,
}

/// Why a bundle could not be used: its path and the reason. The reason is
/// part of the text (and not a `source`), so a chain printed with `{:#}`
/// says it once.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{}: {reason}", path.display())]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Parse { path: PathBuf, reason: pem::Error },
    #[error("{}: no certificate in it", path.display())]
    Empty { path: PathBuf },
}

pub fn read_certificates(path: &Path) -> Result<Bundle, BundleError> {
    let pem = std::fs::read(path).map_err(|reason| BundleError::Read {
        path: path.to_owned(),
        reason,
    })?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| BundleError::Parse {
            path: path.to_owned(),
            reason,
        })?;
    if certificates.is_empty() {
        return Err(BundleError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Bundle { pem, certificates })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_empty_or_broken_bundle_is_named_by_its_path() {
        let dir = std::env::temp_dir().join(format!("pem-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        assert!(
            read_certificates(&missing)
                .unwrap_err()
                .to_string()
                .contains("missing.pem")
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(
            read_certificates(&empty)
                .unwrap_err()
                .to_string()
                .contains("no certificate")
        );
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(read_certificates(&broken).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
