//! Tokens the provider did not sign for this service are refused alike:
//! another instance's, forged, tampered, stale, algorithm confusion, an
//! access token of a shared key, and algorithms not on the allow-list.

use super::*;
use crate::support::better_auth::{BetterAuthOptions, JWT_TYPE};
use crate::support::{claims_of, register};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_forged_and_stale_provider_tokens_are_refused_alike() {
    let provider = BetterAuth::start();
    // Same issuer and audience strings, its own keys.
    let impostor = BetterAuth::start();
    let db = TestDb::new(Backend::Sqlite);
    let server = identity(&db, &provider, "200ms");
    let mut auth = server.auth().await;
    provider_serving(&server).await;

    let user = signed_up(&provider, "Target").await;
    let genuine = provider.token(&user).await;
    let kid = decode_part(genuine.split('.').next().unwrap())["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let n = now();

    // A user of the other instance whose id is the target's: its signature
    // cannot verify here.
    let other = signed_up(&impostor, "Impostor").await;
    assert_refused(
        exchange(&mut auth, &impostor.token(&other).await).await,
        "other instance",
    );
    assert_refused(
        exchange(
            &mut auth,
            &impostor
                .sign(json!({"sub": user.id, "email": user.email}))
                .await,
        )
        .await,
        "other instance, target's sub",
    );

    // Signed by the real provider key, wrong in one claim each.
    let stale = [
        (
            "expired",
            json!({"sub": user.id, "iat": n - 7200, "exp": n - 3600}),
        ),
        (
            "wrong audience",
            json!({"sub": user.id, "aud": "someone-else"}),
        ),
        (
            "wrong issuer",
            json!({"sub": user.id, "iss": "https://evil.example"}),
        ),
        ("not yet valid", json!({"sub": user.id, "nbf": n + 3600})),
        (
            "issued in the future",
            json!({"sub": user.id, "iat": n + 3600}),
        ),
        ("no subject", json!({"email": user.email})),
    ];
    for (case, payload) in stale {
        assert_refused(
            exchange(&mut auth, &provider.sign(payload).await).await,
            case,
        );
    }

    // Tampered payload: the target's token claiming someone else.
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut claims = decode_part(parts[1]);
    claims["sub"] = json!("someone-else");
    let tampered = format!("{}.{}.{}", parts[0], encode_part(&claims), parts[2]);
    assert_refused(exchange(&mut auth, &tampered).await, "tampered payload");

    // alg none, with and without a signature.
    let none = encode_part(&json!({"alg": "none", "kid": kid}));
    assert_refused(
        exchange(&mut auth, &format!("{none}.{}.", parts[1])).await,
        "alg none",
    );
    assert_refused(
        exchange(&mut auth, &format!("{none}.{}.{}", parts[1], parts[2])).await,
        "alg none with a signature",
    );

    // HS256 "signed" with the provider's public key (algorithm confusion),
    // as raw bytes and as the published JWK text.
    let jwks = provider.jwks().await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()
        .clone();
    let x = B64.decode(jwk["x"].as_str().unwrap()).unwrap();
    for secret in [
        x.clone(),
        jwk.to_string().into_bytes(),
        jwk["x"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let forged = jsonwebtoken::encode(
            &header,
            &claims_of(&genuine),
            &EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_refused(
            exchange(&mut auth, &forged).await,
            "HS256 with the public key",
        );
    }

    // A key header pointing elsewhere changes nothing: only kid is looked up.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("not-published".into());
    header.jku = Some(impostor.jwks_url());
    let pem = generate_ed25519_pem().unwrap();
    let jku = jsonwebtoken::encode(
        &header,
        &claims_of(&genuine),
        &EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()).unwrap(),
    )
    .unwrap();
    assert_refused(exchange(&mut auth, &jku).await, "jku to the impostor");

    // Malformed input: INVALID_ARGUMENT naming the field.
    for (token, token_type, field) in [
        ("", JWT_TYPE, "subject_token"),
        (
            genuine.as_str(),
            "urn:ietf:params:oauth:token-type:saml2",
            "subject_token_type",
        ),
    ] {
        let status = auth
            .exchange_token(ExchangeTokenRequest {
                subject_token: token.into(),
                subject_token_type: token_type.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(field), "{status:?}");
    }
    assert_refused(exchange(&mut auth, "not.a.jwt").await, "garbage");

    // Nothing above created the target's profile; the genuine token does.
    let created = exchange(&mut auth, &genuine)
        .await
        .expect("the genuine token");
    assert!(created.created, "no refused token created a profile");
    assert_eq!(created.profile.unwrap().auth_id, user.id);

    // The reasons are in the security log, the tokens are not.
    let logs = server.logs();
    for reason in [
        "bad_signature",
        "expired",
        "wrong_audience",
        "wrong_issuer",
        "not_yet_valid",
        "wrong_algorithm",
        "unknown_key",
    ] {
        assert!(
            logs.lines()
                .any(|l| l.contains("identity.exchange.refused") && l.contains(reason)),
            "no refusal logged for {reason}:\n{logs}"
        );
    }
    assert!(!logs.contains(&genuine) && !logs.contains(&tampered));
}

/// Serves `body` as JSON to every HTTP/1.1 request; its port.
async fn static_json_server(body: String) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// A provider that signs with the key this service signs its own access
/// tokens with (a shared key, or a provider issuing RFC 9068 access tokens
/// beside its sign-in JWTs): an `at+jwt` is no sign-in, whatever it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_signed_by_the_providers_key_is_no_sign_in() {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let db = TestDb::new(Backend::Sqlite);
    let pem = generate_ed25519_pem().unwrap();
    let key_file = db.dir.path().join("shared-key.pem");
    std::fs::write(&key_file, pem.expose_secret()).unwrap();
    let kid = identity_core::tokens::Ed25519Key::from_pem(pem.expose_secret(), "shared")
        .unwrap()
        .kid()
        .to_owned();
    let public = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.expose_secret())
        .unwrap()
        .verifying_key();
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                                "kid": kid, "x": B64.encode(public.as_bytes())}]});
    let port = static_json_server(jwks.to_string()).await;
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_SIGNING_KEY_FILE", key_file.display().to_string())
            .env("IDENTITY_ISSUER", ISSUER)
            .env("IDENTITY_AUDIENCE", AUDIENCE)
            .env(
                "IDENTITY_PROVIDER_JWKS_URL",
                format!("http://127.0.0.1:{port}/jwks"),
            )
            .env("IDENTITY_PROVIDER_ISSUER", ISSUER)
            .env("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE)
            .env("IDENTITY_PROVIDER_JWKS_TIMEOUT", "2s"),
    );
    provider_serving(&server).await;
    let mut auth = server.auth().await;
    let access = register(&mut auth, &email("shared")).await.access_token;
    assert_eq!(
        decode_part(access.split('.').next().unwrap())["typ"],
        "at+jwt"
    );
    assert_refused(exchange(&mut auth, &access).await, "an at+jwt access token");

    // The same key and claims as a plain JWT is a sign-in: the refusal above
    // is the `typ`, nothing else.
    let n = now();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid);
    let claims = json!({"sub": claims_of(&access)["sub"], "iss": ISSUER, "aud": AUDIENCE,
                        "iat": n, "exp": n + 600});
    let plain = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()).unwrap(),
    )
    .unwrap();
    exchange(&mut auth, &plain)
        .await
        .expect("a plain JWT of the provider's key");
    assert!(
        eventually(Duration::from_secs(5), || async {
            server
                .logs()
                .lines()
                .any(|l| l.contains("identity.exchange.refused") && l.contains("wrong_type"))
        })
        .await,
        "the refusal's reason is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_rs256_and_ps256_providers_work_only_when_allowed() {
    for alg in ["ES256", "RS256", "PS256"] {
        let provider = BetterAuth::start_with(BetterAuthOptions::default().env("BA_ALG", alg));
        let user = signed_up(&provider, alg).await;
        let jwt = provider.token(&user).await;
        assert_eq!(decode_part(jwt.split('.').next().unwrap())["alg"], alg);

        let db = TestDb::new(Backend::Sqlite);
        let allowed = identity_with(
            &db,
            &provider,
            "1s",
            ServerOptions::default().env("IDENTITY_PROVIDER_ALGORITHMS", format!("EdDSA,{alg}")),
        );
        let done = exchange(&mut allowed.auth().await, &jwt)
            .await
            .unwrap_or_else(|s| panic!("{alg} allowed: {s:?}\n{}", allowed.logs()));
        assert_eq!(done.profile.unwrap().auth_id, user.id);
        drop(allowed);

        // The default allow-list is EdDSA alone.
        let db = TestDb::new(Backend::Sqlite);
        let default = identity(&db, &provider, "1s");
        assert_refused(exchange(&mut default.auth().await, &jwt).await, alg);
    }
}
