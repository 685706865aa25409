//! Refresh tokens: 256 bits, opaque to callers, stored only as a SHA-256
//! hash. A fast hash is right here (unlike passwords): the input has full
//! entropy, so there is nothing to brute-force.
//!
//! A session's first token is random; each later one is the [`successor`]
//! of the token it replaces, so that a retried Refresh can answer the same
//! token again without the database keeping it (docs/decisions/0011).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::Mac as _;
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

/// The token that replaces `presented`: HMAC-SHA-256 under the server's
/// successor key (`TokenKeys::refresh_successor_key`). Without the key it
/// is as unpredictable as a random token; with it, the same presented
/// token always gives the same successor, on every replica.
pub fn successor(key: &[u8], presented: &str) -> NewRefreshToken {
    let mut mac = crate::secure::hmac_sha256(key);
    mac.update(presented.as_bytes());
    let token = B64.encode(mac.finalize().into_bytes());
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

    #[test]
    fn a_successor_is_reproducible_only_with_the_key_and_the_token() {
        let presented = generate();
        let presented = presented.token.expose_secret();
        let next = successor(b"key one", presented);
        let again = successor(b"key one", presented);
        assert_eq!(next.token.expose_secret(), again.token.expose_secret());
        assert_eq!(next.hash, hash(next.token.expose_secret()));
        assert_eq!(B64.decode(next.token.expose_secret()).unwrap().len(), 32);
        assert_ne!(next.token.expose_secret(), presented);
        let other_key = successor(b"key two", presented);
        assert_ne!(next.token.expose_secret(), other_key.token.expose_secret());
        let other_token = successor(b"key one", generate().token.expose_secret());
        assert_ne!(
            next.token.expose_secret(),
            other_token.token.expose_secret()
        );
        // The next link differs from both before it.
        let after = successor(b"key one", next.token.expose_secret());
        assert_ne!(after.token.expose_secret(), presented);
        assert_ne!(after.token.expose_secret(), next.token.expose_secret());
    }
}
