//! Client credentials of services (`identity admin create-service-client`,
//! AuthService.ServiceLogin): a public client id and a secret of 256 random
//! bits, stored only as its SHA-256. A fast hash is enough here, unlike for
//! passwords: nothing with full entropy can be guessed from its hash
//! (docs/decisions/0007-service-client-secrets-hashed-with-sha-256.md).

use crate::error::Invalid;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// Client ids start with this: recognisable in logs and configuration.
pub const CLIENT_ID_PREFIX: &str = "svc_";
/// Secrets start with this, so secret scanners and people can tell one.
pub const SECRET_PREFIX: &str = "idsec_";
/// Presented client ids longer than this are refused before any lookup.
pub const MAX_CLIENT_ID_BYTES: usize = 64;
/// Presented secrets longer than this are refused before hashing.
pub const MAX_SECRET_BYTES: usize = 256;

/// A fresh secret and the hash to store.
pub struct NewSecret {
    pub secret: SecretString,
    pub hash: String,
}

use crate::secure::random;

/// `svc_` and 128 random bits in hex: unique without coordination.
pub fn new_client_id() -> String {
    format!("{CLIENT_ID_PREFIX}{}", hex::encode(random::<16>()))
}

/// 256 random bits, base64url, behind [`SECRET_PREFIX`].
pub fn new_secret() -> NewSecret {
    let mut bytes = random::<32>();
    let secret = format!("{SECRET_PREFIX}{}", B64.encode(bytes));
    bytes.fill(0);
    NewSecret {
        hash: hash(&secret),
        secret: SecretString::from(secret),
    }
}

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The hash compared when the client does not exist, so that an unknown
/// client costs what a wrong secret costs. No secret hashes to it.
pub const UNKNOWN_CLIENT_HASH: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Whether `presented` is the secret of `stored_hash`, in constant time
/// (the comparison of the hashes does not stop at the first difference).
pub fn matches(presented: &SecretString, stored_hash: &str) -> bool {
    let presented = hash(presented.expose_secret());
    bool::from(presented.as_bytes().ct_eq(stored_hash.as_bytes()))
}

/// Checks the form of a presented client id: required, at most
/// [`MAX_CLIENT_ID_BYTES`], printable ASCII. Ids of other shapes are not
/// refused here (they are simply unknown), so the answer says nothing about
/// which ids exist.
pub fn check_client_id(client_id: &str) -> Result<(), Invalid> {
    if client_id.is_empty() {
        return Err("is required".into());
    }
    if client_id.len() > MAX_CLIENT_ID_BYTES {
        return Err(format!("must be at most {MAX_CLIENT_ID_BYTES} bytes").into());
    }
    if !client_id.chars().all(|c| c.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}

pub fn check_secret(secret: &str) -> Result<(), Invalid> {
    if secret.is_empty() {
        return Err("is required".into());
    }
    if secret.len() > MAX_SECRET_BYTES {
        return Err(format!("must be at most {MAX_SECRET_BYTES} bytes").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_carry_256_random_bits_and_only_their_own_hash_matches() {
        let a = new_secret();
        let b = new_secret();
        let raw = a
            .secret
            .expose_secret()
            .strip_prefix(SECRET_PREFIX)
            .unwrap();
        assert_eq!(B64.decode(raw).unwrap().len(), 32);
        assert_ne!(a.secret.expose_secret(), b.secret.expose_secret());
        assert!(matches(&a.secret, &a.hash));
        assert!(!matches(&a.secret, &b.hash));
        assert!(!matches(&a.secret, UNKNOWN_CLIENT_HASH));
        assert!(!a.hash.contains(raw));
    }

    #[test]
    fn client_ids_are_prefixed_distinct_and_pass_their_own_check() {
        let (a, b) = (new_client_id(), new_client_id());
        assert!(a.starts_with(CLIENT_ID_PREFIX) && a != b);
        assert!(check_client_id(&a).is_ok());
        for bad in ["", "a b", &"x".repeat(65), "ü"] {
            assert!(check_client_id(bad).is_err(), "{bad}");
        }
        assert!(check_secret("").is_err());
        assert!(check_secret(&"s".repeat(257)).is_err());
    }
}
