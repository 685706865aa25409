use super::*;
use crate::tokens::{Ed25519Key, generate_ed25519_pem};
use jsonwebtoken::{EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::json;

const ISS: &str = "https://auth.example";
const AUD: &str = "identity";

struct Provider {
    kid: String,
    encoding: EncodingKey,
    jwks: serde_json::Value,
}

fn provider() -> Provider {
    let pem = generate_ed25519_pem().unwrap();
    let key = Ed25519Key::from_pem(pem.expose_secret(), "t").unwrap();
    let kid = format!("k-{}", &key.kid()[..8]);
    let signing = {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem.expose_secret()).unwrap()
    };
    let x = B64.encode(signing.verifying_key().as_bytes());
    Provider {
        jwks: json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": x, "kid": kid}]}),
        kid,
        encoding: EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()).unwrap(),
    }
}

fn rules() -> Rules {
    Rules {
        issuer: ISS.into(),
        audience: AUD.into(),
        leeway: Duration::from_secs(5),
        algorithms: vec![Algorithm::EdDSA],
    }
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn sign(p: &Provider, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(p.kid.clone());
    header.typ = None;
    jsonwebtoken::encode(&header, &claims, &p.encoding).unwrap()
}

fn good(now: i64) -> serde_json::Value {
    json!({"sub": "user_1", "iss": ISS, "aud": AUD, "iat": now, "exp": now + 900,
           "email": "Ann@Example.COM", "name": "Ann"})
}

fn check(p: &Provider, token: &str) -> Result<ProviderClaims, Refusal> {
    let set = parse_jwks(p.jwks.to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    let head = inspect(token, &[Algorithm::EdDSA])?;
    let key = set.keys.get(&head.kid).ok_or(Refusal::UnknownKey)?;
    verify(token, &head, key, &rules(), now())
}

#[test]
fn a_good_token_verifies_and_yields_its_claims() {
    let p = provider();
    let claims = check(&p, &sign(&p, good(now()))).unwrap();
    assert_eq!(claims.sub, "user_1");
    assert_eq!(
        profile_fields(&claims),
        (Some("Ann@example.com".into()), Some("Ann".into()))
    );
}

#[test]
fn claim_failures_have_their_reasons() {
    let p = provider();
    let n = now();
    let cases = [
        (json!({"exp": n - 60, "iat": n - 1000}), Refusal::Expired),
        (json!({"aud": "other"}), Refusal::WrongAudience),
        (json!({"aud": ["other", "more"]}), Refusal::WrongAudience),
        (json!({"iss": "https://evil.example"}), Refusal::WrongIssuer),
        (json!({"nbf": n + 600}), Refusal::NotYetValid),
        (json!({"iat": n + 600}), Refusal::NotYetValid),
        (json!({"sub": ""}), Refusal::Malformed),
        (json!({"sub": 42}), Refusal::Malformed),
    ];
    for (patch, expected) in cases {
        let mut claims = good(n);
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        assert_eq!(check(&p, &sign(&p, claims)), Err(expected), "{patch}");
    }
    let mut claims = good(n);
    claims.as_object_mut().unwrap().remove("exp");
    assert!(check(&p, &sign(&p, claims)).is_err());
    let mut claims = good(n);
    claims["aud"] = json!([AUD, "other"]);
    assert!(check(&p, &sign(&p, claims)).is_ok(), "aud containing ours");
}

#[test]
fn header_tricks_are_refused_before_any_key_is_used() {
    let p = provider();
    let token = sign(&p, good(now()));
    let (_, rest) = token.split_once('.').unwrap();
    let with_header = |h: serde_json::Value| format!("{}.{rest}", B64.encode(h.to_string()));
    let cases = [
        (
            json!({"alg": "none", "kid": p.kid}),
            Refusal::WrongAlgorithm,
        ),
        (
            json!({"alg": "HS256", "kid": p.kid}),
            Refusal::WrongAlgorithm,
        ),
        (
            json!({"alg": "ES256", "kid": p.kid}),
            Refusal::WrongAlgorithm,
        ),
        (json!({"alg": "EdDSA"}), Refusal::UnknownKey),
        (json!({"alg": "EdDSA", "kid": 7}), Refusal::UnknownKey),
        (
            json!({"alg": "EdDSA", "kid": p.kid, "crit": ["exp"]}),
            Refusal::Malformed,
        ),
    ];
    for (header, expected) in cases {
        assert_eq!(
            check(&p, &with_header(header.clone())),
            Err(expected),
            "{header}"
        );
    }
    // jku/x5u are ignored: the token still verifies by its kid only.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(p.kid.clone());
    header.jku = Some("https://evil.example/jwks".into());
    header.x5u = Some("https://evil.example/x509".into());
    let token = jsonwebtoken::encode(&header, &good(now()), &p.encoding).unwrap();
    assert!(check(&p, &token).is_ok());
    assert_eq!(check(&p, "a.b"), Err(Refusal::Malformed));
    assert_eq!(
        check(&p, &"x".repeat(MAX_TOKEN_BYTES + 1)),
        Err(Refusal::Malformed)
    );
}

#[test]
fn only_a_plain_jwt_typ_is_accepted() {
    let p = provider();
    let token_with = |typ: Option<&str>| {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(p.kid.clone());
        header.typ = typ.map(str::to_owned);
        jsonwebtoken::encode(&header, &good(now()), &p.encoding).unwrap()
    };
    for typ in [None, Some("JWT"), Some("jwt"), Some("Jwt")] {
        assert!(check(&p, &token_with(typ)).is_ok(), "{typ:?}");
    }
    // This service's own access tokens (RFC 9068), and any other kind of
    // token the provider's key might sign, are no sign-in.
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "logout+jwt",
        "JWS",
        "",
    ] {
        assert_eq!(
            check(&p, &token_with(Some(typ))),
            Err(Refusal::WrongType),
            "{typ}"
        );
    }
    let (_, rest) = token_with(None)
        .split_once('.')
        .map(|(h, r)| (h.to_owned(), r.to_owned()))
        .unwrap();
    let header = json!({"alg": "EdDSA", "kid": p.kid, "typ": 1});
    assert_eq!(
        check(&p, &format!("{}.{rest}", B64.encode(header.to_string()))),
        Err(Refusal::WrongType)
    );
}

#[test]
fn tampered_payloads_and_foreign_keys_fail_the_signature() {
    let p = provider();
    let token = sign(&p, good(now()));
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = good(now());
    claims["sub"] = json!("someone_else");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(check(&p, &forged), Err(Refusal::BadSignature));
    // Same kid, other key.
    let mut other = provider();
    other.kid = p.kid.clone();
    assert_eq!(
        check(&p, &sign(&other, good(now()))),
        Err(Refusal::BadSignature)
    );
}

#[test]
fn jwks_parsing_keeps_only_usable_signature_keys() {
    let body = json!({"keys": [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "enc", "use": "enc"},
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "priv", "d": "x"},
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ok"},
        {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "es",
         "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        {"what": "ever"}
    ]});
    let set = parse_jwks(body.to_string().as_bytes(), &[Algorithm::EdDSA]).unwrap();
    assert_eq!(set.keys.keys().collect::<Vec<_>>(), ["ok"]);
    assert_eq!(set.skipped.len(), 6, "{:?}", set.skipped);
    let set = parse_jwks(
        body.to_string().as_bytes(),
        &[Algorithm::EdDSA, Algorithm::ES256],
    )
    .unwrap();
    assert_eq!(set.keys.get("es").unwrap().alg, Algorithm::ES256);
    assert!(parse_jwks(b"<html>", &[Algorithm::EdDSA]).is_err());
}

#[test]
fn hmac_and_none_never_enter_the_allow_list() {
    for name in ["none", "NONE", "HS256", "hs512"] {
        assert!(parse_algorithm(name).is_err(), "{name}");
    }
    assert_eq!(parse_algorithm("PS256").unwrap(), Algorithm::PS256);
    assert!(parse_algorithm("ES512").is_err());
}
