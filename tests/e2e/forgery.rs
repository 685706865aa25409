//! Forged and tampered access tokens are inactive, each for its own reason.

use crate::on_both_backends;
use crate::support::{
    Backend, Server, ServerOptions, TestDb, claims_of, eddsa_header, email, register, write_key,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use identity::proto::v1::*;
use identity_core::tokens::{Ed25519Key, generate_ed25519_pem};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret;
use serde_json::json;

on_both_backends!(forged_expired_and_misaddressed_tokens_are_all_inactive);

fn sign(header: &Header, claims: &serde_json::Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

async fn forged_expired_and_misaddressed_tokens_are_all_inactive(backend: Backend) {
    let db = TestDb::new(backend);
    let pem = generate_ed25519_pem().unwrap();
    let key_file = db.dir.path().join("signing.pem");
    std::fs::write(&key_file, pem.expose_secret()).unwrap();
    let kid = Ed25519Key::from_pem(pem.expose_secret(), "test")
        .unwrap()
        .kid()
        .to_owned();
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_SIGNING_KEY_FILE", key_file.display().to_string()),
    );
    let mut auth = server.auth().await;
    let tokens = register(&mut auth, &email("forge")).await;
    let real = claims_of(&tokens.access_token);
    let now = chrono::Utc::now().timestamp();
    let with = |patch: serde_json::Value| {
        let mut claims = real.clone();
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    let key = EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()).unwrap();
    let mut cases: Vec<(&str, String)> = Vec::new();

    // Control: correctly made with the configured key, so the refusals below
    // are about what each case changes and nothing else.
    let control = sign(&eddsa_header(&kid), &with(json!({"jti": "control"})), &key);

    let mut flipped = tokens.access_token.clone().into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    cases.push((
        "flipped signature byte",
        String::from_utf8(flipped).unwrap(),
    ));

    let none_header = B64.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string());
    let payload = B64.encode(real.to_string());
    cases.push(("alg none", format!("{none_header}.{payload}.")));

    let jwks = auth
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let public = jwks
        .iter()
        .find(|k| k.kid == kid)
        .expect("our key is published");
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    hs_header.typ = Some("at+jwt".into());
    let raw_public = B64.decode(&public.x).unwrap();
    cases.push((
        "HS256 keyed with the raw public key",
        sign(&hs_header, &real, &EncodingKey::from_secret(&raw_public)),
    ));
    cases.push((
        "HS256 keyed with the JWK x",
        sign(
            &hs_header,
            &real,
            &EncodingKey::from_secret(public.x.as_bytes()),
        ),
    ));

    cases.push((
        "expired",
        sign(
            &eddsa_header(&kid),
            &with(json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})),
            &key,
        ),
    ));
    cases.push((
        "not yet valid",
        sign(
            &eddsa_header(&kid),
            &with(json!({"nbf": now + 3600, "exp": now + 7200})),
            &key,
        ),
    ));
    cases.push((
        "issued in the future",
        sign(&eddsa_header(&kid), &with(json!({"iat": now + 3600})), &key),
    ));
    cases.push((
        "wrong audience",
        sign(
            &eddsa_header(&kid),
            &with(json!({"aud": "someone-else"})),
            &key,
        ),
    ));
    cases.push((
        "wrong issuer",
        sign(
            &eddsa_header(&kid),
            &with(json!({"iss": "https://evil.example"})),
            &key,
        ),
    ));

    let other = generate_ed25519_pem().unwrap();
    let other_kid = Ed25519Key::from_pem(other.expose_secret(), "other")
        .unwrap()
        .kid()
        .to_owned();
    let other_key = EncodingKey::from_ed_pem(other.expose_secret().as_bytes()).unwrap();
    cases.push((
        "unknown kid",
        sign(&eddsa_header(&other_kid), &real, &other_key),
    ));
    cases.push((
        "another key under our kid",
        sign(&eddsa_header(&kid), &real, &other_key),
    ));

    let mut no_typ = eddsa_header(&kid);
    no_typ.typ = None;
    cases.push(("missing typ", sign(&no_typ, &real, &key)));
    let mut id_token_typ = eddsa_header(&kid);
    id_token_typ.typ = Some("JWT".into());
    cases.push((
        "typ JWT instead of at+jwt",
        sign(&id_token_typ, &real, &key),
    ));
    let mut no_kid = eddsa_header(&kid);
    no_kid.kid = None;
    cases.push(("missing kid", sign(&no_kid, &real, &key)));
    cases.push(("not a JWT", "not.a.jwt".into()));
    // An empty token is no forgery but the caller's mistake: named.
    let empty = auth
        .validate_token(ValidateTokenRequest {
            access_token: String::new(),
        })
        .await
        .unwrap_err();
    crate::support::assert_invalid(&empty, "access_token", "empty access_token");

    let valid = auth
        .validate_token(ValidateTokenRequest {
            access_token: control,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(valid.active, "the control token must validate");
    assert_eq!(valid.jti, "control");

    for (name, token) in cases {
        let answer = auth
            .validate_token(ValidateTokenRequest {
                access_token: token,
            })
            .await
            .unwrap_or_else(|s| panic!("{name}: ValidateToken must answer, got {s:?}"))
            .into_inner();
        assert!(!answer.active, "{name}: accepted");
        assert_eq!(
            answer,
            ValidateTokenResponse::default(),
            "{name}: inactive answers carry no claims"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_rotate_without_refusing_live_tokens() {
    let db = TestDb::new(Backend::Postgres);
    let (old_key, old_kid) = write_key(db.dir.path(), "old.pem");
    let (new_key, new_kid) = write_key(db.dir.path(), "new.pem");
    let with_keys = |keys: String| {
        Server::start_with_options(
            &db,
            ServerOptions::default().env("IDENTITY_SIGNING_KEY_FILE", keys),
        )
    };
    let kid_of = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();

    // Step 0: only the old key.
    let server = with_keys(old_key.display().to_string());
    let mut auth = server.auth().await;
    let old_token = register(&mut auth, &email("rotate")).await.access_token;
    assert_eq!(kid_of(&old_token), old_kid);
    assert!(server.terminate().success());

    // Step 1: the new key first (it signs), the old one still verifies.
    let server = with_keys(format!("{},{}", new_key.display(), old_key.display()));
    let mut auth = server.auth().await;
    let kids: Vec<String> = auth
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(
        kids,
        [new_kid.clone(), old_kid.clone()],
        "both keys are published, the signing key first"
    );
    let validate = |auth: &mut identity::proto::v1::auth_service_client::AuthServiceClient<
        tonic::transport::Channel,
    >,
                    token: &str| {
        let mut auth = auth.clone();
        let token = token.to_owned();
        async move {
            auth.validate_token(ValidateTokenRequest {
                access_token: token,
            })
            .await
            .unwrap()
            .into_inner()
            .active
        }
    };
    assert!(
        validate(&mut auth, &old_token).await,
        "tokens of the old key stay valid during rotation"
    );
    let new_token = register(&mut auth, &email("rotated")).await.access_token;
    assert_eq!(
        kid_of(&new_token),
        new_kid,
        "new tokens are signed with the new key"
    );
    assert!(server.terminate().success());

    // Step 2: the old key retired.
    let server = with_keys(new_key.display().to_string());
    let mut auth = server.auth().await;
    assert!(
        !validate(&mut auth, &old_token).await,
        "the retired key's tokens are refused"
    );
    assert!(validate(&mut auth, &new_token).await);
}
