//! Certificate bundles named by settings (a TLS certificate chain, a CA
//! for clients, PostgreSQL, Redis or the OTLP collector): read and parsed
//! in one way everywhere. Errors give the path and the reason, never the
//! contents; the caller puts the setting's name in front.

use std::path::Path;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;

/// A PEM file with at least one certificate: its bytes (for libraries that
/// take PEM) and the parsed certificates (public material: Debug is fine).
#[derive(Debug)]
pub struct Bundle {
    pub pem: Vec<u8>,
    pub certificates: Vec<CertificateDer<'static>>,
}

pub fn read_certificates(path: &Path) -> Result<Bundle, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown}: {e}"))?;
    if certificates.is_empty() {
        return Err(format!("{shown}: no certificate in it"));
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
                .contains("missing.pem")
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(
            read_certificates(&empty)
                .unwrap_err()
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
