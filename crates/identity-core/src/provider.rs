//! Tokens from the external provider (Better-Auth): the verification rules
//! of ExchangeToken and the parsing of the provider's JWK set. Pure: the
//! keys arrive from `provider::jwks`, which does the fetching.
//!
//! The rules, in the order they are applied:
//! - at most [`MAX_TOKEN_BYTES`], three base64url parts, a JSON header;
//! - the header's `alg` is on the configured allow-list (EdDSA, ES256,
//!   RS256, PS256 at most: `none` and HMAC are never accepted for a key
//!   set that anyone can download);
//! - `kid` is required and is only ever looked up in the cached key set;
//!   `jku`, `x5u`, `jwk` and `x5c` are ignored, `crit` is refused;
//! - `typ` is absent or `JWT` (any case): an `at+jwt` access token or any
//!   other kind of token signed by a key the provider publishes is refused;
//! - the key found pins the algorithm: the header must name the key's own;
//! - signature, then `iss` equal to the configured issuer, `aud` containing
//!   the configured audience, `exp` required, `nbf` and `iat` honoured, all
//!   with a small leeway;
//! - `sub` is a non-empty string of at most 255 bytes without control
//!   characters (it becomes the profile's `auth_id`).

use super::tokens::{MAX_TOKEN_BYTES, Refusal};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;

/// RFC 8693 token type of a JWT subject token.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Longest `kid` looked up; longer ones are refused unseen.
pub const MAX_KID_BYTES: usize = 256;
/// Keys kept from one JWK set; the rest are ignored.
pub const MAX_KEYS: usize = 64;

/// The algorithms a provider may sign with: asymmetric only.
pub const SUPPORTED_ALGORITHMS: &[&str] = &["EdDSA", "ES256", "RS256", "PS256"];

/// What is wrong with a configured algorithm, a JWK set or one of its keys.
/// The texts reach start-up errors and the log of skipped keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("`none` (unsigned tokens) is never accepted")]
    NoneAlgorithm,
    #[error("`{0}` is refused: an HMAC key from a public JWK set is no secret")]
    HmacAlgorithm(String),
    #[error("`{0}` is not supported; use one or more of {list}", list = SUPPORTED_ALGORITHMS.join(", "))]
    UnsupportedAlgorithm(String),
    #[error("not a JWK set")]
    NotAJwkSet,
    #[error("symmetric key (kty oct)")]
    SymmetricKey,
    #[error("unsupported key type or curve")]
    UnsupportedKeyType,
    #[error("unsupported alg {0:?}")]
    UnsupportedKeyAlgorithm(KeyAlgorithm),
    #[error("alg {0:?} does not match the key type")]
    AlgorithmNotOfKeyType(Algorithm),
    #[error("key type of no allowed algorithm")]
    KeyTypeNotAllowed,
    #[error("RSA key without alg while RS256 and PS256 are both allowed")]
    AmbiguousRsaKey,
    #[error("alg {0:?} is not allowed")]
    AlgorithmNotAllowed(Algorithm),
}

/// Parses an algorithm name of the allow-list. HMAC and `none` are refused
/// with the reason: a JWK set is public, so an HMAC "key" from it is no
/// secret at all.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, ProviderError> {
    match name.trim() {
        "EdDSA" => Ok(Algorithm::EdDSA),
        "ES256" => Ok(Algorithm::ES256),
        "RS256" => Ok(Algorithm::RS256),
        "PS256" => Ok(Algorithm::PS256),
        n if n.eq_ignore_ascii_case("none") => Err(ProviderError::NoneAlgorithm),
        n if n.to_ascii_uppercase().starts_with("HS") => {
            Err(ProviderError::HmacAlgorithm(n.to_owned()))
        }
        n => Err(ProviderError::UnsupportedAlgorithm(n.to_owned())),
    }
}

/// One verification key of the provider, with the one algorithm it is
/// allowed to verify.
#[derive(Clone)]
pub struct ProviderKey {
    pub alg: Algorithm,
    key: DecodingKey,
}

impl std::fmt::Debug for ProviderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A parsed JWK set: the usable keys by `kid`, and why others were skipped.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: HashMap<String, ProviderKey>,
    pub skipped: Vec<String>,
}

/// The algorithm a JWK may verify: its `alg` when it names one, else the
/// only one its key type allows. RSA keys without `alg` are usable only
/// when exactly one RSA algorithm is allowed.
fn key_algorithm(jwk: &Jwk, allowed: &[Algorithm]) -> Result<Algorithm, ProviderError> {
    let implied: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            vec![Algorithm::ES256]
        }
        AlgorithmParameters::RSA(_) => vec![Algorithm::RS256, Algorithm::PS256],
        AlgorithmParameters::OctetKey(_) => return Err(ProviderError::SymmetricKey),
        _ => return Err(ProviderError::UnsupportedKeyType),
    };
    let alg = match jwk.common.key_algorithm {
        Some(named) => {
            let alg = match named {
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                other => return Err(ProviderError::UnsupportedKeyAlgorithm(other)),
            };
            if !implied.contains(&alg) {
                return Err(ProviderError::AlgorithmNotOfKeyType(alg));
            }
            alg
        }
        None => {
            let candidates: Vec<_> = implied
                .into_iter()
                .filter(|a| allowed.contains(a))
                .collect();
            match candidates.as_slice() {
                [one] => *one,
                [] => return Err(ProviderError::KeyTypeNotAllowed),
                _ => return Err(ProviderError::AmbiguousRsaKey),
            }
        }
    };
    if !allowed.contains(&alg) {
        return Err(ProviderError::AlgorithmNotAllowed(alg));
    }
    Ok(alg)
}

/// Parses a JWK set (`{"keys": [...]}`), keeping the signature keys of
/// allowed algorithms. One odd key never spoils the others; a body that is
/// not a JWK set at all is an error.
pub fn parse_jwks(body: &[u8], allowed: &[Algorithm]) -> Result<KeySet, ProviderError> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|_| ProviderError::NotAJwkSet)?;
    let mut out = KeySet::default();
    for (index, value) in set.keys.into_iter().enumerate() {
        if out.keys.len() >= MAX_KEYS {
            out.skipped
                .push(format!("keys beyond the first {MAX_KEYS}"));
            break;
        }
        let kid = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map(str::to_owned)
            .unwrap_or_default();
        let label = if kid.is_empty() {
            format!("key #{index}")
        } else {
            format!("kid {kid}")
        };
        if kid.is_empty() || kid.len() > MAX_KID_BYTES {
            out.skipped.push(format!("{label}: no usable kid"));
            continue;
        }
        if value.get("d").is_some() {
            // A private key published by mistake: its public half would
            // still verify, but such a provider is broken; say so loudly.
            out.skipped
                .push(format!("{label}: carries private key material"));
            continue;
        }
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(_) => {
                out.skipped.push(format!("{label}: not a JWK"));
                continue;
            }
        };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            out.skipped.push(format!("{label}: not a signature key"));
            continue;
        }
        let alg = match key_algorithm(&jwk, allowed) {
            Ok(alg) => alg,
            Err(why) => {
                out.skipped.push(format!("{label}: {why}"));
                continue;
            }
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => {
                out.keys.insert(kid, ProviderKey { alg, key });
            }
            Err(_) => out.skipped.push(format!("{label}: malformed key material")),
        }
    }
    Ok(out)
}

/// What the header says, checked before any key is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHead {
    pub kid: String,
    pub alg: Algorithm,
}

/// Reads the header of a provider token and applies the checks that need
/// no key: size, shape, algorithm allow-list, no `crit`, `typ` a plain
/// JWT, `kid` present.
pub fn inspect(token: &str, allowed: &[Algorithm]) -> Result<TokenHead, Refusal> {
    #[derive(Deserialize)]
    struct RawHeader {
        alg: Option<String>,
        kid: Option<serde_json::Value>,
        crit: Option<serde_json::Value>,
        typ: Option<serde_json::Value>,
    }
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let header = B64.decode(header).map_err(|_| Refusal::Malformed)?;
    let header: RawHeader = serde_json::from_slice(&header).map_err(|_| Refusal::Malformed)?;
    let alg = header
        .alg
        .as_deref()
        .and_then(|a| parse_algorithm(a).ok())
        .filter(|a| allowed.contains(a))
        .ok_or(Refusal::WrongAlgorithm)?;
    if header.crit.is_some() {
        return Err(Refusal::Malformed);
    }
    // A provider signs more than sign-ins with the same key (RFC 9068 access
    // tokens, logout tokens, ...): only a plain JWT is a sign-in here.
    match header.typ {
        None => {}
        Some(serde_json::Value::String(typ)) if typ.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(Refusal::WrongType),
    }
    let kid = match header.kid {
        Some(serde_json::Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => {
            kid
        }
        _ => return Err(Refusal::UnknownKey),
    };
    Ok(TokenHead { kid, alg })
}

/// What ExchangeToken must match.
#[derive(Debug, Clone)]
pub struct Rules {
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
    pub algorithms: Vec<Algorithm>,
}

/// The claims ExchangeToken uses. Email and name are the provider's word,
/// unverified here; they fill the profile, never grant anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderClaims {
    pub sub: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// `email_verified` (OIDC) or `emailVerified` (Better-Auth); false
    /// unless the provider says true.
    pub email_verified: bool,
    /// The token's id, when it has one (Better-Auth's have none).
    pub jti: Option<String>,
    /// Seconds since the epoch.
    pub exp: i64,
}

/// Why a provider token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyFailure {
    Refused(Refusal),
    /// The token needs a key that is not cached and the provider cannot be
    /// asked right now.
    Unavailable,
}

/// The future of [`TokenVerifier::verify`].
pub type Verifying<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<ProviderClaims, VerifyFailure>> + Send + 'a>>;

/// Verifies provider tokens against the provider's keys. ExchangeToken
/// (`service::exchange`) asks through this; the service's `provider`
/// module implements it with the JWK set it fetches. Defined here so that
/// neither of the two has to import the other.
pub trait TokenVerifier: Send + Sync {
    fn verify<'a>(&'a self, token: &'a str) -> Verifying<'a>;
}

/// Verifies a token whose header passed [`inspect`] with the key its `kid`
/// named. `now` is seconds since the epoch.
pub fn verify(
    token: &str,
    head: &TokenHead,
    key: &ProviderKey,
    rules: &Rules,
    now: i64,
) -> Result<ProviderClaims, Refusal> {
    #[derive(Deserialize)]
    struct Raw {
        sub: serde_json::Value,
        iat: Option<serde_json::Value>,
        exp: serde_json::Value,
        jti: Option<serde_json::Value>,
        email: Option<serde_json::Value>,
        name: Option<serde_json::Value>,
        email_verified: Option<serde_json::Value>,
        #[serde(rename = "emailVerified")]
        email_verified_camel: Option<serde_json::Value>,
    }
    if head.alg != key.alg {
        return Err(Refusal::WrongAlgorithm);
    }
    let mut validation = Validation::new(key.alg);
    validation.set_issuer(&[&rules.issuer]);
    validation.set_audience(&[&rules.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = rules.leeway.as_secs();
    let data =
        jsonwebtoken::decode::<Raw>(token, &key.key, &validation).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => Refusal::BadSignature,
            ErrorKind::ExpiredSignature => Refusal::Expired,
            ErrorKind::ImmatureSignature => Refusal::NotYetValid,
            ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
            ErrorKind::InvalidAudience => Refusal::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) if c == "aud" => Refusal::WrongAudience,
            ErrorKind::MissingRequiredClaim(c) if c == "iss" => Refusal::WrongIssuer,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                Refusal::WrongAlgorithm
            }
            _ => Refusal::Malformed,
        })?;
    let claims = data.claims;
    if let Some(iat) = claims.iat {
        let iat = iat.as_f64().ok_or(Refusal::Malformed)?;
        if iat > (now + rules.leeway.as_secs() as i64) as f64 {
            return Err(Refusal::NotYetValid);
        }
    }
    let sub = match claims.sub {
        serde_json::Value::String(sub) => sub,
        _ => return Err(Refusal::Malformed),
    };
    super::validation::auth_field(&sub).map_err(|_| Refusal::Malformed)?;
    let text = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s),
        _ => None,
    };
    let exp = claims.exp.as_f64().ok_or(Refusal::Malformed)? as i64;
    let email_verified = claims
        .email_verified
        .or(claims.email_verified_camel)
        .is_some_and(|v| v == serde_json::Value::Bool(true));
    Ok(ProviderClaims {
        sub,
        email: text(claims.email),
        name: text(claims.name),
        email_verified,
        jti: text(claims.jti),
        exp,
    })
}

/// The profile fields a provider's claims may fill: a well-formed email
/// and a display name cut to the profile's limits; `None` where the claim
/// is absent or unusable (the stored value then stays as it is).
pub fn profile_fields(claims: &ProviderClaims) -> (Option<String>, Option<String>) {
    let email = claims
        .email
        .as_deref()
        .and_then(|e| super::validation::email(e).ok());
    let name = claims.name.as_deref().and_then(|name| {
        let name: String = name
            .chars()
            .filter(|c| !c.is_control())
            .take(super::validation::MAX_DISPLAY_NAME_CHARS)
            .collect();
        super::validation::display_name(&name, false)
            .ok()
            .filter(|n| !n.is_empty())
    });
    (email, name)
}

#[cfg(test)]
mod tests;
