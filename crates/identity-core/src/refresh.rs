//! Refresh tokens: 256 random bits, opaque to callers, stored only as a
//! SHA-256 hash. A fast hash is right here (unlike passwords): the input
//! has full entropy, so there is nothing to brute-force.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Presented tokens longer than this are refused without hashing.
pub const MAX_REFRESH_TOKEN_BYTES: usize = 256;

/// A fresh token and the hash to store.
pub struct NewRefreshToken {
    pub token: SecretString,
    pub hash: String,
}

pub fn generate() -> NewRefreshToken {
    let mut bytes: [u8; 32] = crate::secure::random();
    let token = B64.encode(bytes);
    bytes.fill(0);
    NewRefreshToken {
        hash: hash(&token),
        token: SecretString::from(token),
    }
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn hash_secret(token: &SecretString) -> String {
    hash(token.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_distinct() {
        let a = generate();
        let b = generate();
        assert_eq!(B64.decode(a.token.expose_secret()).unwrap().len(), 32);
        assert_ne!(a.token.expose_secret(), b.token.expose_secret());
        assert_eq!(a.hash, hash(a.token.expose_secret()));
        assert_ne!(a.hash, *a.token.expose_secret());
    }
}
