//! A throw-away certificate authority for TLS and mTLS tests (rcgen).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, RevokedCertParams, SanType, SerialNumber,
    date_time_ymd,
};

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// What a CRL names to revoke it.
    pub serial: u64,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca {
            pem: issuer.pem(),
            issuer,
        }
    }

    fn leaf(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        self.sign(params, names.first().copied().unwrap_or("client"), purpose)
    }

    fn sign(
        &self,
        mut params: CertificateParams,
        common_name: &str,
        purpose: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        // Below 2^63 so the DER integer stays positive as rcgen writes it.
        let serial = (uuid::Uuid::new_v4().as_u128() as u64) >> 1;
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![purpose];
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        }
    }

    /// A client certificate with these subject alternative names (DNS
    /// names and URIs such as SPIFFE IDs) and a common name of its own.
    pub fn client_with(&self, common_name: &str, dns: &[&str], uris: &[&str]) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = dns
            .iter()
            .map(|name| SanType::DnsName((*name).try_into().unwrap()))
            .chain(
                uris.iter()
                    .map(|uri| SanType::URI((*uri).try_into().unwrap())),
            )
            .collect();
        self.sign(params, common_name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A CRL (PEM) from this CA revoking the given serials.
    pub fn crl(&self, revoked: &[u64]) -> String {
        CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(2100, 1, 1),
            crl_number: SerialNumber::from(uuid::Uuid::new_v4().as_u128() as u64 >> 1),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.issuer)
        .unwrap()
        .pem()
        .unwrap()
    }

    pub fn server(&self) -> Leaf {
        self.leaf(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth)
    }

    pub fn client(&self, name: &str) -> Leaf {
        self.leaf(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}
