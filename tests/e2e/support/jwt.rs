//! Reading and forging JWTs the way an attacker holding one would.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, Header};

/// The claims of a JWT, read without checking anything.
pub fn claims_of(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

/// The header of this service's access tokens, signed by key `kid`.
pub fn eddsa_header(kid: &str) -> Header {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    header.typ = Some("at+jwt".into());
    header
}

/// A new Ed25519 signing key written to `dir/name` (for
/// IDENTITY_SIGNING_KEY_FILE); its path and `kid`.
pub fn write_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let pem = identity_core::tokens::generate_ed25519_pem().unwrap();
    let path = dir.join(name);
    std::fs::write(&path, secrecy::ExposeSecret::expose_secret(&pem)).unwrap();
    let kid = identity_core::tokens::Ed25519Key::from_pem(
        secrecy::ExposeSecret::expose_secret(&pem),
        name,
    )
    .unwrap()
    .kid()
    .to_owned();
    (path, kid)
}
