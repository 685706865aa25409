//! Access tokens: signing keys, JWT issuance and verification, the JWK set.
//!
//! Verification pins the algorithm per key: the header's `kid` selects a key
//! and the key alone decides the algorithm, so `alg: none`, HS256-with-a-
//! public-key and every other confusion fail before any signature check.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::Verifier as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use hmac::Mac;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

/// The `typ` header of our access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// Longer inputs are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The first check of every token verification, before it is parsed or
/// hashed for a cache: empty and oversized tokens cost nothing more.
pub fn check_size(token: &str) -> Result<(), Refusal> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::Malformed);
    }
    Ok(())
}

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The profile id.
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    /// The session id.
    pub sid: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub auth_provider: String,
    pub auth_id: String,
}

/// Why a token was refused. Stays inside the service (traces, audit);
/// callers only ever see `active=false` or a generic UNAUTHENTICATED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed")]
    Malformed,
    #[error("wrong_type")]
    WrongType,
    #[error("unknown_key")]
    UnknownKey,
    #[error("wrong_algorithm")]
    WrongAlgorithm,
    #[error("bad_signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not_yet_valid")]
    NotYetValid,
    #[error("wrong_issuer")]
    WrongIssuer,
    #[error("wrong_audience")]
    WrongAudience,
    #[error("revoked")]
    Revoked,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::WrongType => "wrong_type",
            Refusal::UnknownKey => "unknown_key",
            Refusal::WrongAlgorithm => "wrong_algorithm",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::Revoked => "revoked",
        }
    }
}

/// A public key as published in the JWK set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicJwk {
    pub kty: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub crv: String,
    pub x: String,
}

/// What went wrong with our own keys: loading, generating, signing.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}: not an Ed25519 PKCS#8 PEM private key")]
    BadPem(String),
    #[error("{0}: cannot read: {1}")]
    Io(String, std::io::Error),
    /// The operating system's random source failed.
    #[error("{0}")]
    Random(getrandom::Error),
    #[error("{0}")]
    Encode(ed25519_dalek::pkcs8::Error),
    #[error("no signing key configured")]
    NoSigningKey,
    #[error("{0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// One Ed25519 key loaded from PEM.
pub struct Ed25519Key {
    kid: String,
    seed: SecretSlice<u8>,
    encoding: EncodingKey,
    verifying: ed25519_dalek::VerifyingKey,
    jwk: PublicJwk,
}

impl Ed25519Key {
    pub fn from_pem(pem: &str, origin: &str) -> Result<Self, KeyError> {
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|_| KeyError::BadPem(origin.to_owned()))?;
        let x = B64.encode(signing.verifying_key().as_bytes());
        // RFC 7638 thumbprint: stable, derived from the key, reveals nothing.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = B64.encode(Sha256::digest(thumbprint_input.as_bytes()));
        let encoding = EncodingKey::from_ed_pem(pem.as_bytes())
            .map_err(|_| KeyError::BadPem(origin.to_owned()))?;
        Ok(Ed25519Key {
            jwk: PublicJwk {
                kty: "OKP".into(),
                kid: kid.clone(),
                alg: "EdDSA".into(),
                use_: "sig".into(),
                crv: "Ed25519".into(),
                x,
            },
            kid,
            seed: SecretSlice::from(signing.to_bytes().to_vec()),
            encoding,
            verifying: signing.verifying_key(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The verifying half of [`TokenKeys`]: what checks a token, and nothing
/// that signs one. The server builds it from its own keys, a verifier in
/// another service (the `identity-client` crate) from the published JWK set,
/// so both apply exactly the same rules.
pub struct VerifyingKeys {
    keys: HashMap<String, VerifyKey>,
    issuer: String,
    audience: String,
    leeway: Duration,
}

impl std::fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKeys")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// A published key this version cannot use to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// Only Ed25519 (`kty` OKP, `crv` Ed25519, `alg` EdDSA) is published;
    /// anything else is refused rather than guessed at, since the key
    /// alone decides the algorithm.
    #[error("key {kid}: not an Ed25519 signing key (kty {kty}, crv {crv}, alg {alg})")]
    Unsupported {
        kid: String,
        kty: String,
        crv: String,
        alg: String,
    },
    #[error("key {0}: x is not a base64url Ed25519 public key")]
    BadKey(String),
    #[error("a key without a kid")]
    NoKid,
}

impl VerifyingKeys {
    /// The keys of a published JWK set (`GetJwks`). The algorithm of each
    /// key is pinned here, from the key's type, never from a token.
    pub fn from_jwks(
        jwks: &[PublicJwk],
        issuer: String,
        audience: String,
        leeway: Duration,
    ) -> Result<Self, JwkError> {
        let mut keys = HashMap::new();
        for jwk in jwks {
            if jwk.kid.is_empty() {
                return Err(JwkError::NoKid);
            }
            let eddsa = jwk.kty == "OKP"
                && jwk.crv == "Ed25519"
                && (jwk.alg.is_empty() || jwk.alg == "EdDSA")
                && (jwk.use_.is_empty() || jwk.use_ == "sig");
            if !eddsa {
                return Err(JwkError::Unsupported {
                    kid: jwk.kid.clone(),
                    kty: jwk.kty.clone(),
                    crv: jwk.crv.clone(),
                    alg: jwk.alg.clone(),
                });
            }
            // Decoded (and its point decompressed) once here, not per token.
            let key = B64
                .decode(&jwk.x)
                .ok()
                .and_then(|bytes| <[u8; ed25519_dalek::PUBLIC_KEY_LENGTH]>::try_from(bytes).ok())
                .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
                .ok_or_else(|| JwkError::BadKey(jwk.kid.clone()))?;
            keys.insert(jwk.kid.clone(), VerifyKey::Ed25519(key));
        }
        Ok(VerifyingKeys {
            keys,
            issuer,
            audience,
            leeway,
        })
    }

    /// Whether a key of this id verifies.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The clock skew allowed on `exp`, `nbf` and `iat`.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Checks everything a token carries by itself. Revocation is the
    /// caller's next step (it needs the session store).
    ///
    /// The steps are jsonwebtoken's `decode` done once each (decision
    /// 0020): the header and the claims are parsed once, and the key is
    /// the one decoded when the set was loaded, so a token never seen
    /// before costs one signature check and little else.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, Refusal> {
        check_size(token)?;
        let mut parts = token.split('.');
        let (Some(encoded_header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refusal::Malformed);
        };
        let header: JoseHeader = decode_part(encoded_header)?;
        // RFC 7515 4.1.11: an extension the verifier must understand; none is.
        if header.crit.is_some() {
            return Err(Refusal::Malformed);
        }
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(Refusal::WrongType);
        }
        let kid = header.kid.as_deref().ok_or(Refusal::UnknownKey)?;
        let key = self.keys.get(kid).ok_or(Refusal::UnknownKey)?;
        // The key decides the algorithm; the header only has to agree.
        if header.alg != key.algorithm_name() {
            return Err(Refusal::WrongAlgorithm);
        }
        let signature = B64.decode(signature).map_err(|_| Refusal::Malformed)?;
        // The signing input: header and payload with the dot between them.
        let signed = &token.as_bytes()[..encoded_header.len() + 1 + payload.len()];
        key.check(signed, &signature)?;
        let claims: AccessClaims = decode_part(payload)?;
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let leeway = self.leeway.as_secs() as i64;
        if claims.exp < now - leeway {
            return Err(Refusal::Expired);
        }
        if claims.nbf > now + leeway || claims.iat > now + leeway {
            return Err(Refusal::NotYetValid);
        }
        if claims.iss != self.issuer {
            return Err(Refusal::WrongIssuer);
        }
        if claims.aud != self.audience {
            return Err(Refusal::WrongAudience);
        }
        Ok(claims)
    }
}

/// The header fields verification reads; the rest are ignored, as
/// jsonwebtoken did.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

/// A base64url JSON part of a token. Anything that does not decode, or
/// lacks a required field, is malformed.
fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, Refusal> {
    let json = B64.decode(part).map_err(|_| Refusal::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| Refusal::Malformed)
}

/// Generates a new Ed25519 private key as PKCS#8 PEM (`identity keygen`).
pub fn generate_ed25519_pem() -> Result<SecretString, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(KeyError::Random)?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    seed.fill(0);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(KeyError::Encode)?;
    Ok(SecretString::from(pem.to_string()))
}

/// A verifying key, with the algorithm it is pinned to.
enum VerifyKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Hs256(SecretSlice<u8>),
}

impl VerifyKey {
    fn algorithm_name(&self) -> &'static str {
        match self {
            VerifyKey::Ed25519(_) => "EdDSA",
            VerifyKey::Hs256(_) => "HS256",
        }
    }

    /// The signature over `signed` (the token up to its last dot).
    fn check(&self, signed: &[u8], signature: &[u8]) -> Result<(), Refusal> {
        match self {
            VerifyKey::Ed25519(key) => {
                let signature = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| Refusal::BadSignature)?;
                // `verify`, as jsonwebtoken called it: RFC 8032 with a
                // canonical `s`.
                key.verify(signed, &signature)
                    .map_err(|_| Refusal::BadSignature)
            }
            VerifyKey::Hs256(secret) => {
                let mut mac = crate::secure::hmac_sha256(secret.expose_secret());
                mac.update(signed);
                // Constant time.
                mac.verify_slice(signature)
                    .map_err(|_| Refusal::BadSignature)
            }
        }
    }
}

/// Everything that signs and verifies our access tokens.
pub struct TokenKeys {
    signing_kid: String,
    signing_alg: Algorithm,
    signing_key: EncodingKey,
    verifying: VerifyingKeys,
    jwks: Vec<PublicJwk>,
    /// Keys the audit trail's pseudonyms (hashes of unknown emails).
    audit_key: SecretSlice<u8>,
    page_key: SecretSlice<u8>,
    /// Keys refresh-token successors (`refresh::successor`).
    successor_key: SecretSlice<u8>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing_kid", &self.signing_kid)
            .field("signing_alg", &self.signing_alg)
            .field(
                "verify_kids",
                &self.verifying.keys.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn hs256_kid(secret: &[u8]) -> String {
    let mut mac = crate::secure::hmac_sha256(secret);
    mac.update(b"identity/kid");
    format!("hs256-{}", hex::encode(&mac.finalize().into_bytes()[..8]))
}

impl TokenKeys {
    /// `ed25519`: the first key signs, all verify (rotation). `hs256`: signs
    /// when there is no Ed25519 key, otherwise only verifies (migration).
    pub fn new(
        ed25519: Vec<Ed25519Key>,
        hs256: Option<&SecretString>,
        issuer: String,
        audience: String,
        leeway: Duration,
    ) -> Result<Self, KeyError> {
        let mut verify = HashMap::new();
        let mut jwks = Vec::new();
        let mut signing: Option<(String, Algorithm, EncodingKey)> = None;
        let mut audit_material = Vec::new();
        for key in ed25519 {
            if signing.is_none() {
                signing = Some((key.kid.clone(), Algorithm::EdDSA, key.encoding.clone()));
                audit_material = key.seed.expose_secret().to_vec();
            }
            verify.insert(key.kid.clone(), VerifyKey::Ed25519(key.verifying));
            jwks.push(key.jwk);
        }
        if let Some(secret) = hs256 {
            let bytes = secret.expose_secret().as_bytes();
            let kid = hs256_kid(bytes);
            if signing.is_none() {
                signing = Some((
                    kid.clone(),
                    Algorithm::HS256,
                    EncodingKey::from_secret(bytes),
                ));
                audit_material = bytes.to_vec();
            }
            // Never published: an HMAC key is a secret.
            verify.insert(kid, VerifyKey::Hs256(SecretSlice::from(bytes.to_vec())));
        }
        let (signing_kid, signing_alg, signing_key) = signing.ok_or(KeyError::NoSigningKey)?;
        let derive = |purpose: &[u8]| {
            let mut mac = crate::secure::hmac_sha256(&audit_material);
            mac.update(purpose);
            SecretSlice::from(mac.finalize().into_bytes().to_vec())
        };
        let audit_key = derive(b"identity/audit-pseudonym");
        // Its own key, not the audit one: pseudonyms end up in logs, and a
        // pseudonym of the right text must never be a successor's MAC.
        let successor_key = derive(b"identity/refresh-successor");
        // Page tokens too: a MAC made for one purpose is never valid for another.
        let page_key = derive(b"identity/page-token");
        audit_material.fill(0);
        Ok(TokenKeys {
            signing_kid,
            signing_alg,
            signing_key,
            verifying: VerifyingKeys {
                keys: verify,
                issuer,
                audience,
                leeway,
            },
            jwks,
            audit_key,
            page_key,
            successor_key,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.verifying.issuer
    }

    pub fn audience(&self) -> &str {
        &self.verifying.audience
    }

    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    pub fn jwks(&self) -> &[PublicJwk] {
        &self.jwks
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, KeyError> {
        let mut header = Header::new(self.signing_alg);
        header.kid = Some(self.signing_kid.clone());
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        jsonwebtoken::encode(&header, claims, &self.signing_key).map_err(KeyError::Sign)
    }

    /// Checks everything a token carries by itself. Revocation is the
    /// caller's next step (it needs the session store).
    pub fn verify(&self, token: &str) -> Result<AccessClaims, Refusal> {
        self.verifying.verify(token)
    }

    /// The key of the page tokens' MACs, derived from the signing key
    /// material so that every replica shares it, and for this purpose only
    /// (not the pseudonyms' key: those are logged).
    pub fn internal_mac_key(&self) -> &[u8] {
        self.page_key.expose_secret()
    }

    /// The key of refresh-token successors, derived from the signing key
    /// material like [`Self::internal_mac_key`] (so every replica computes
    /// the same successor) but for this purpose only.
    pub fn refresh_successor_key(&self) -> &[u8] {
        self.successor_key.expose_secret()
    }

    /// A stable pseudonym for an identifier that must not be logged (an
    /// unknown email): keyed, so it cannot be reversed by guessing.
    pub fn pseudonym(&self, value: &str) -> String {
        let mut mac = crate::secure::hmac_sha256(self.audit_key.expose_secret());
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        let pem = generate_ed25519_pem().unwrap();
        let key = Ed25519Key::from_pem(pem.expose_secret(), "test").unwrap();
        TokenKeys::new(
            vec![key],
            None,
            "iss".into(),
            "aud".into(),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "iss".into(),
            aud: "aud".into(),
            sub: "s".into(),
            iat: now,
            nbf: now,
            exp: now + 60,
            jti: "j".into(),
            sid: "sid".into(),
            roles: vec![],
            auth_provider: "local".into(),
            auth_id: "s".into(),
        }
    }

    #[test]
    fn signed_token_verifies_and_round_trips_claims() {
        let keys = keys();
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let token = keys.sign(&claims(now)).unwrap();
        assert_eq!(keys.verify(&token).unwrap(), claims(now));
    }

    #[test]
    fn token_from_another_key_is_unknown_key() {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let token = keys().sign(&claims(now)).unwrap();
        assert_eq!(keys().verify(&token), Err(Refusal::UnknownKey));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint_and_is_published() {
        let keys = keys();
        assert_eq!(keys.jwks().len(), 1);
        assert_eq!(keys.jwks()[0].kid, keys.signing_kid());
        assert_eq!(keys.signing_kid().len(), 43);
    }

    fn from_jwks(keys: &TokenKeys) -> VerifyingKeys {
        VerifyingKeys::from_jwks(
            keys.jwks(),
            "iss".into(),
            "aud".into(),
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[test]
    fn the_published_key_set_verifies_exactly_as_the_signer_does() {
        let keys = keys();
        let published = from_jwks(&keys);
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let token = keys.sign(&claims(now)).unwrap();
        assert_eq!(published.verify(&token).unwrap(), claims(now));
        assert!(published.has_kid(keys.signing_kid()));
        let expired = keys
            .sign(&AccessClaims {
                exp: now - 10,
                ..claims(now - 100)
            })
            .unwrap();
        assert_eq!(published.verify(&expired), Err(Refusal::Expired));
        let early = keys
            .sign(&AccessClaims {
                nbf: now + 60,
                ..claims(now)
            })
            .unwrap();
        assert_eq!(published.verify(&early), Err(Refusal::NotYetValid));
        let elsewhere = keys
            .sign(&AccessClaims {
                aud: "other".into(),
                ..claims(now)
            })
            .unwrap();
        assert_eq!(published.verify(&elsewhere), Err(Refusal::WrongAudience));
        let other_key = keys_with_secret().sign(&claims(now)).unwrap();
        assert_eq!(published.verify(&other_key), Err(Refusal::UnknownKey));
    }

    /// A token put together by hand, the way a forger would: any header,
    /// any claims, any signature.
    fn forge(header: &str, claims: &AccessClaims, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let signed = format!(
            "{}.{}",
            B64.encode(header),
            B64.encode(serde_json::to_vec(claims).unwrap())
        );
        let signature = B64.encode(sign(signed.as_bytes()));
        format!("{signed}.{signature}")
    }

    #[test]
    fn forged_headers_and_signatures_are_refused_before_any_claim_is_believed() {
        use ed25519_dalek::Signer as _;
        let pem = generate_ed25519_pem().unwrap();
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.expose_secret()).unwrap();
        let key = Ed25519Key::from_pem(pem.expose_secret(), "test").unwrap();
        let kid = key.kid().to_owned();
        let keys = TokenKeys::new(
            vec![key],
            None,
            "iss".into(),
            "aud".into(),
            Duration::from_secs(5),
        )
        .unwrap();
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let good = claims(now);
        let ours = |m: &[u8]| signing.sign(m).to_bytes().to_vec();
        let header = |alg: &str, extra: &str| {
            format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"{extra}}}"#)
        };
        // The forger's tools work: the same recipe with our key verifies.
        assert_eq!(
            keys.verify(&forge(&header("EdDSA", ""), &good, ours)),
            Ok(good.clone())
        );

        let none = forge(&header("none", ""), &good, |_| Vec::new());
        assert_eq!(keys.verify(&none), Err(Refusal::WrongAlgorithm));
        // HS256 keyed with the published public key (algorithm confusion).
        let public = keys.jwks()[0].x.clone();
        let confused = forge(&header("HS256", ""), &good, |m| {
            let mut mac = crate::secure::hmac_sha256(public.as_bytes());
            mac.update(m);
            mac.finalize().into_bytes().to_vec()
        });
        assert_eq!(keys.verify(&confused), Err(Refusal::WrongAlgorithm));
        let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let theirs = forge(&header("EdDSA", ""), &good, |m| {
            stranger.sign(m).to_bytes().to_vec()
        });
        assert_eq!(keys.verify(&theirs), Err(Refusal::BadSignature));
        // Our signature over other claims: an admin role spliced in.
        let signed = forge(&header("EdDSA", ""), &good, ours);
        let admin = AccessClaims {
            roles: vec!["admin".into()],
            ..good.clone()
        };
        let spliced = forge(&header("EdDSA", ""), &admin, |_| Vec::new());
        let spliced = format!(
            "{}{}",
            spliced.trim_end_matches('.'),
            &signed[signed.rfind('.').unwrap()..]
        );
        assert_eq!(keys.verify(&spliced), Err(Refusal::BadSignature));
        let critical = forge(&header("EdDSA", r#","crit":["exp"]"#), &good, ours);
        assert_eq!(keys.verify(&critical), Err(Refusal::Malformed));
        assert_eq!(keys.verify(&format!("{signed}.x")), Err(Refusal::Malformed));
        let (input, _) = signed.rsplit_once('.').unwrap();
        let short = format!("{input}.{}", B64.encode([1u8; 63]));
        assert_eq!(keys.verify(&short), Err(Refusal::BadSignature));
        let untyped = forge(&format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#), &good, ours);
        assert_eq!(keys.verify(&untyped), Err(Refusal::WrongType));
    }

    #[test]
    fn hs256_tokens_verify_under_their_secret_only() {
        let keys = keys_with_secret();
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let token = keys.sign(&claims(now)).unwrap();
        assert_eq!(keys.verify(&token), Ok(claims(now)));
        let (signed, _) = token.rsplit_once('.').unwrap();
        let other = format!("{signed}.{}", B64.encode([0u8; 32]));
        assert_eq!(keys.verify(&other), Err(Refusal::BadSignature));
    }

    #[test]
    fn a_published_key_of_another_kind_is_refused_not_guessed_at() {
        let mut jwk = keys().jwks()[0].clone();
        jwk.kty = "RSA".into();
        let err = VerifyingKeys::from_jwks(&[jwk], "i".into(), "a".into(), Duration::ZERO);
        assert!(matches!(err, Err(JwkError::Unsupported { .. })), "{err:?}");
        let mut jwk = keys().jwks()[0].clone();
        jwk.x = "c2hvcnQ".into();
        let err = VerifyingKeys::from_jwks(&[jwk], "i".into(), "a".into(), Duration::ZERO);
        assert!(matches!(err, Err(JwkError::BadKey(_))), "{err:?}");
    }

    fn keys_with_secret() -> TokenKeys {
        TokenKeys::new(
            vec![],
            Some(&SecretString::from("z".repeat(40))),
            "iss".into(),
            "aud".into(),
            Duration::ZERO,
        )
        .unwrap()
    }

    #[test]
    fn hs256_secret_is_never_published() {
        let secret = SecretString::from("x".repeat(40));
        let keys = TokenKeys::new(
            vec![],
            Some(&secret),
            "i".into(),
            "a".into(),
            Duration::ZERO,
        )
        .unwrap();
        assert!(keys.jwks().is_empty());
        assert!(keys.signing_kid().starts_with("hs256-"));
    }

    #[test]
    fn pseudonyms_are_stable_and_keyed() {
        let a = keys();
        let b = keys();
        assert_eq!(a.pseudonym("x@example.com"), a.pseudonym("x@example.com"));
        assert_ne!(a.pseudonym("x@example.com"), b.pseudonym("x@example.com"));
    }

    #[test]
    fn the_successor_key_is_shared_by_replicas_and_used_for_nothing_else() {
        let secret = SecretString::from("y".repeat(40));
        let replica = || {
            TokenKeys::new(
                vec![],
                Some(&secret),
                "i".into(),
                "a".into(),
                Duration::ZERO,
            )
            .unwrap()
        };
        let (one, two) = (replica(), replica());
        assert_eq!(one.refresh_successor_key(), two.refresh_successor_key());
        assert_eq!(one.refresh_successor_key().len(), 32);
        assert_ne!(one.refresh_successor_key(), one.internal_mac_key());
        assert_ne!(
            one.pseudonym("x"),
            hex::encode(
                &{
                    let mut mac = crate::secure::hmac_sha256(one.internal_mac_key());
                    mac.update(b"x");
                    mac.finalize().into_bytes()
                }[..16]
            ),
            "page tokens are not MACed under the pseudonyms' key"
        );
        assert_ne!(keys().refresh_successor_key(), one.refresh_successor_key());
    }
}
