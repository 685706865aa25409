//! Envoy and Istio external authorization (`envoy.service.auth.v3.
//! Authorization/Check`), called as a mesh proxy calls it: the HTTP
//! request's bearer token is verified like ValidateToken verifies it, the
//! upstream gets identity headers only we set, and a refusal is HTTP 401
//! with an RFC 6750 challenge (docs/decisions/0015-ext-authz.md).

use crate::on_both_backends;
use crate::revocation::replicas;
use crate::support::pki::Ca;
use crate::support::proxy::Proxy;
use crate::support::{
    ADMIN, Backend, MAX_STALENESS, SLACK, Server, ServerOptions, TestDb, claims_of, eddsa_header,
    email, eventually, grpcurl, login, mtls_options, register, register_profile, tls_channel,
};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, HeaderValueOption, SocketAddress,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, OkHttpResponse,
};
use identity::proto::ext_authz::authorization_client::AuthorizationClient;
use identity::proto::v1::{LogoutRequest, ValidateTokenRequest};
use identity_core::tokens::{Ed25519Key, MAX_TOKEN_BYTES, generate_ed25519_pem};
use jsonwebtoken::EncodingKey;
use secrecy::ExposeSecret;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;

const INVALID_TOKEN: &str = "Bearer error=\"invalid_token\"";

/// A Check of an HTTP request with `headers` (names as Envoy sends them).
fn check_request(headers: &[(&str, &str)]) -> CheckRequest {
    http_check(HttpRequest {
        method: "GET".into(),
        path: "/orders".into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..HttpRequest::default()
    })
}

fn http_check(http: HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(http),
                ..Request::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn client(server: &Server) -> AuthorizationClient<Channel> {
    AuthorizationClient::new(server.channel().await)
}

async fn check(client: &mut AuthorizationClient<Channel>, request: CheckRequest) -> CheckResponse {
    client
        .check(request)
        .await
        .expect("Check answers")
        .into_inner()
}

/// The OK answer's headers for the upstream, or a panic naming the answer.
fn allowed(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(
        response.status.as_ref().map(|s| s.code),
        Some(0),
        "{response:?}"
    );
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not allowed: {other:?}"),
    }
}

/// The DENIED answer's HTTP status and `www-authenticate` challenge.
fn denied(response: &CheckResponse) -> (i32, String) {
    assert_eq!(
        response.status.as_ref().map(|s| s.code),
        Some(Code::Unauthenticated as i32),
        "{response:?}"
    );
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not denied: {response:?}");
    };
    let challenge = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "www-authenticate")
        .map(|h| h.value.clone())
        .unwrap_or_default();
    (denied.status.as_ref().map_or(0, |s| s.code), challenge)
}

fn header<'a>(ok: &'a OkHttpResponse, key: &str) -> &'a HeaderValueOption {
    let found: Vec<_> = ok
        .headers
        .iter()
        .filter(|h| h.header.as_ref().is_some_and(|h| h.key == key))
        .collect();
    assert_eq!(found.len(), 1, "one {key} in {ok:?}");
    found[0]
}

on_both_backends!(a_valid_token_is_allowed_with_identity_headers_that_overwrite_the_clients);

async fn a_valid_token_is_allowed_with_identity_headers_that_overwrite_the_clients(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let admin = email("ext-authz-admin");
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", admin.clone()),
    );
    let mut auth = server.auth().await;
    let registered = register_profile(&mut auth, &admin).await;
    let tokens = registered.tokens.expect("tokens");
    let claims = claims_of(&tokens.access_token);
    let mut authz = client(&server).await;

    // A client that dresses its request up as someone else's.
    let response = check(
        &mut authz,
        check_request(&[
            ("authorization", &bearer(&tokens.access_token)),
            ("x-identity-subject", "someone-else"),
            ("x-identity-session", "someone-elses-session"),
            ("x-identity-roles", "superuser"),
            ("x-identity-tenant", "other-tenant"),
            ("x-identity-admin", "true"),
        ]),
    )
    .await;
    let ok = allowed(&response);
    let expected = [
        (
            "x-identity-subject",
            claims["sub"].as_str().unwrap().to_owned(),
        ),
        (
            "x-identity-session",
            claims["sid"].as_str().unwrap().to_owned(),
        ),
        ("x-identity-roles", ADMIN.to_owned()),
    ];
    assert_eq!(ok.headers.len(), expected.len(), "{ok:?}");
    for (key, value) in expected {
        let option = header(ok, key);
        assert_eq!(option.header.as_ref().unwrap().value, value, "{key}");
        // Replaces the client's value rather than adding a second one.
        assert_eq!(
            option.append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            "{key}"
        );
        #[allow(deprecated)]
        let append = option.append.as_ref().map(|a| a.value);
        assert_ne!(append, Some(true), "{key}");
    }
    assert_eq!(
        ok.headers_to_remove,
        ["x-identity-admin", "x-identity-tenant"]
    );
    assert_eq!(
        registered.profile.expect("profile").id,
        claims["sub"].as_str().unwrap()
    );

    // The roles are the profile's now, as ValidateToken answers them.
    let validated = auth
        .validate_token(ValidateTokenRequest {
            access_token: tokens.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        header(ok, "x-identity-roles")
            .header
            .as_ref()
            .unwrap()
            .value,
        validated.roles.join(",")
    );

    // No roles: the header is still set (empty), so a client's cannot stay.
    let plain = register(&mut auth, &email("ext-authz-plain")).await;
    let response = check(
        &mut authz,
        check_request(&[
            ("authorization", &bearer(&plain.access_token)),
            ("x-identity-roles", ADMIN),
        ]),
    )
    .await;
    assert_eq!(
        header(allowed(&response), "x-identity-roles")
            .header
            .as_ref()
            .unwrap()
            .value,
        ""
    );
}

on_both_backends!(expired_forged_and_revoked_tokens_are_denied_401_with_invalid_token);

async fn expired_forged_and_revoked_tokens_are_denied_401_with_invalid_token(backend: Backend) {
    // A known signing key, so that an expired token can be made properly.
    let db = TestDb::new(backend);
    let pem = generate_ed25519_pem().unwrap();
    let key_file = db.dir.path().join("signing.pem");
    std::fs::write(&key_file, pem.expose_secret()).unwrap();
    let kid = Ed25519Key::from_pem(pem.expose_secret(), "test")
        .unwrap()
        .kid()
        .to_owned();
    let key = EncodingKey::from_ed_pem(pem.expose_secret().as_bytes()).unwrap();
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_SIGNING_KEY_FILE", key_file.display().to_string()),
    );
    let mut auth = server.auth().await;
    let address = email("ext-authz-refused");
    let tokens = register(&mut auth, &address).await;
    let mut authz = client(&server).await;

    let now = chrono::Utc::now().timestamp();
    let mut claims = claims_of(&tokens.access_token);
    // Control: made like the expired token, but current: it is allowed, so
    // the expired one is denied for its expiry alone.
    claims["jti"] = json!(format!("control-{}", uuid::Uuid::new_v4()));
    let control = jsonwebtoken::encode(&eddsa_header(&kid), &claims, &key).unwrap();
    allowed(
        &check(
            &mut authz,
            check_request(&[("authorization", &bearer(&control))]),
        )
        .await,
    );
    claims["jti"] = json!(format!("expired-{}", uuid::Uuid::new_v4()));
    claims["iat"] = json!(now - 7200);
    claims["nbf"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let expired = jsonwebtoken::encode(&eddsa_header(&kid), &claims, &key).unwrap();

    let mut flipped = tokens.access_token.clone().into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(flipped).unwrap();

    let second = login(&mut auth, &address).await;
    auth.logout(LogoutRequest {
        refresh_token: second.refresh_token.clone(),
    })
    .await
    .unwrap();

    for (case, token, reason) in [
        ("expired", &expired, "expired"),
        ("forged", &forged, "bad_signature"),
        ("revoked", &second.access_token, "revoked"),
    ] {
        let response = check(
            &mut authz,
            check_request(&[("authorization", &bearer(token))]),
        )
        .await;
        assert_eq!(denied(&response), (401, INVALID_TOKEN.to_owned()), "{case}");
        // ValidateToken's security event, with ValidateToken's reason.
        assert!(
            eventually(Duration::from_secs(5), || async {
                server.logs().lines().any(|line| {
                    line.contains("identity.token.refused")
                        && line.contains(&format!("\"{reason}\""))
                })
            })
            .await,
            "{case}: no identity.token.refused event with reason {reason}:\n{}",
            server.logs()
        );
    }
    // The session that was not logged out is still allowed.
    allowed(
        &check(
            &mut authz,
            check_request(&[("authorization", &bearer(&tokens.access_token))]),
        )
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_on_one_replica_is_denied_by_check_on_the_other_within_the_bound() {
    let db = TestDb::new(Backend::Postgres);
    let (a, b) = replicas(&db, || {
        ServerOptions::default()
            .env("IDENTITY_REVOCATION_MAX_STALENESS", "1s")
            // Only the announcements may carry the revocation here.
            .env("IDENTITY_REVOCATION_RECONCILE_INTERVAL", "1h")
    });
    let mut on_a = a.auth().await;
    let tokens = register(&mut on_a, &email("ext-authz-replicas")).await;
    let mut authz_b = client(&b).await;
    let request = || check_request(&[("authorization", &bearer(&tokens.access_token))]);
    // B has verified (and cached) the session before A revokes it.
    allowed(&check(&mut authz_b, request()).await);

    on_a.logout(LogoutRequest {
        refresh_token: tokens.refresh_token.clone(),
    })
    .await
    .unwrap();
    let since = Instant::now();
    loop {
        let response = check(&mut authz_b, request()).await;
        if matches!(
            response.http_response,
            Some(HttpResponse::DeniedResponse(_))
        ) {
            assert_eq!(denied(&response), (401, INVALID_TOKEN.to_owned()));
            break;
        }
        assert!(
            since.elapsed() < MAX_STALENESS + SLACK,
            "B still allows a session A revoked {:?} ago",
            since.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_malformed_and_oversized_authorization_is_denied_without_the_store() {
    let db = TestDb::new(Backend::Postgres);
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let server = Server::start_with(
        &db.url_via(proxy.addr),
        db.dir.path(),
        ServerOptions::default(),
    );
    let mut auth = server.auth().await;
    register(&mut auth, &email("ext-authz-no-store")).await;
    let mut authz = client(&server).await;
    // From here on the database is unreachable: an answer that needed it
    // would be UNAVAILABLE, not a denial.
    proxy.cut();

    let response = check(&mut authz, check_request(&[("accept", "*/*")])).await;
    // No credentials: a challenge without an error code (RFC 6750 §3.1).
    assert_eq!(denied(&response), (401, "Bearer".to_owned()));

    let oversized = bearer(&"a".repeat(MAX_TOKEN_BYTES + 1));
    for (case, value) in [
        ("another scheme", "Basic dXNlcjpwYXNz"),
        ("no token", "Bearer"),
        ("no scheme", "eyJhbGciOiJFZERTQSJ9.e30.c2ln"),
        ("non-ASCII", "Bearer tökén"),
        ("a control character", "Bearer abc\u{1}def"),
        ("oversized", &oversized),
    ] {
        let response = check(&mut authz, check_request(&[("authorization", value)])).await;
        assert_eq!(denied(&response), (401, INVALID_TOKEN.to_owned()), "{case}");
    }
    // Two authorization lines (Envoy's encode_raw_headers form).
    let line = |value: &str| HeaderValue {
        key: "authorization".into(),
        value: String::new(),
        raw_value: value.as_bytes().to_vec(),
    };
    let response = check(
        &mut authz,
        http_check(HttpRequest {
            header_map: Some(HeaderMap {
                headers: vec![line("Bearer abc"), line("Bearer def")],
            }),
            ..HttpRequest::default()
        }),
    )
    .await;
    assert_eq!(
        denied(&response),
        (401, INVALID_TOKEN.to_owned()),
        "two lines"
    );

    // None of them reached token verification: no refusal was recorded.
    // Control: a bearer token that is not a JWT does reach it, and is
    // refused there (by its form, still without the store).
    assert!(!server.logs().contains("identity.token.refused"));
    let response = check(
        &mut authz,
        check_request(&[("authorization", "Bearer not-a-jwt")]),
    )
    .await;
    assert_eq!(denied(&response), (401, INVALID_TOKEN.to_owned()));
    assert!(
        eventually(Duration::from_secs(5), || async {
            server.logs().contains("identity.token.refused")
        })
        .await,
        "the control reached verification"
    );
}

/// A Check whose `attributes.source` says the client is `addr`.
fn from_client(addr: &str, token: &str) -> CheckRequest {
    let mut request = check_request(&[("authorization", &bearer(token))]);
    if let Some(attributes) = request.attributes.as_mut() {
        attributes.source = Some(Peer {
            address: Some(Address {
                address: Some(AddressKind::SocketAddress(SocketAddress {
                    address: addr.into(),
                    ..SocketAddress::default()
                })),
            }),
            ..Peer::default()
        });
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_caller_is_limited_like_validate_token_and_a_trusted_proxy_is_not() {
    let limited = || {
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_VALIDATE", "3/1h")
    };

    // Not a listed proxy: Check is ValidateToken under another name, and
    // shares its budget (its claim of a client address is not believed).
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(&db, limited());
    let mut authz = client(&server).await;
    let mut auth = server.auth().await;
    auth.validate_token(ValidateTokenRequest {
        access_token: "not-a-jwt".into(),
    })
    .await
    .unwrap();
    for n in 0..2 {
        let response = check(
            &mut authz,
            from_client(&format!("203.0.113.{n}"), "not-a-jwt"),
        )
        .await;
        denied(&response);
    }
    let status = authz
        .check(from_client("203.0.113.9", "not-a-jwt"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        eventually(Duration::from_secs(5), || async {
            server
                .logs()
                .lines()
                .any(|line| line.contains("identity.token.refused") && line.contains("127.0.0.1"))
        })
        .await,
        "the refusals name the caller's own address:\n{}",
        server.logs()
    );
    assert!(
        !server.logs().contains("203.0.113."),
        "a forged source reached the logs"
    );

    // A listed proxy speaks for the whole mesh: no per-address limit, and
    // the refusals name the client it reports.
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        limited().env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32"),
    );
    let mut authz = client(&server).await;
    for _ in 0..10 {
        let response = check(&mut authz, from_client("198.51.100.7", "not-a-jwt")).await;
        denied(&response);
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            server.logs().lines().any(|line| {
                line.contains("identity.token.refused") && line.contains("198.51.100.7")
            })
        })
        .await,
        "the refusal names the proxy's client:\n{}",
        server.logs()
    );
}

/// Threat model T1.58: with identity's port captured by Istio's inbound
/// sidecar every caller arrives from 127.0.0.6, so a proxy list that holds
/// it (here through the whole loopback /8) would exempt every mesh workload
/// from the per-address limit and believe its `attributes.source`. The
/// server refuses to start, naming the setting, the reason and the fix.
#[test]
fn a_proxy_list_holding_istios_inbound_address_refuses_to_start() {
    // Each in its own thread: a server that accepts the list serves until
    // refused_start gives up after 60 s.
    let runs: Vec<_> = ["IDENTITY_TRUSTED_PROXIES", "IDENTITY_TRACE_TRUSTED_PROXIES"]
        .into_iter()
        .map(|setting| {
            std::thread::spawn(move || {
                let env = [(setting, "127.0.0.0/8")];
                (setting, crate::support::refused_start(&env))
            })
        })
        .collect();
    for run in runs {
        let (setting, (code, text)) = run.join().unwrap();
        assert_eq!(code, Some(2), "{setting}: {text}");
        for words in [
            "refusing to start",
            setting,
            "127.0.0.0/8",
            "127.0.0.6",
            "every mesh caller would be trusted",
            "docs/deploy-helm.md",
        ] {
            assert!(text.contains(words), "{setting}: no `{words}` in {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mtls_caller_not_listed_as_a_proxy_is_limited_and_named_by_its_own_address() {
    // A client certificate proves who the caller is, not that it is a
    // proxy: it gets the same per-address budget as anyone, and its word
    // on "my client is 203.0.113.n" is not written into security events.
    let db = TestDb::new(Backend::Sqlite);
    let (ca, clients_ca) = (Ca::new("server CA"), Ca::new("clients CA"));
    let server = Server::start_with_options(
        &db,
        mtls_options(&db, &ca, &clients_ca)
            .await
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_VALIDATE", "3/1h"),
    );
    let caller = clients_ca.client("some-service");
    let channel = tls_channel(
        server.addr,
        &ca.pem,
        Some((&caller.cert_pem, &caller.key_pem)),
    )
    .await
    .unwrap();
    let mut authz = AuthorizationClient::new(channel);

    // A new forged client address on every call: were it believed, each
    // would have a budget of its own.
    let mut limited_after = None;
    for n in 0..20 {
        match authz
            .check(from_client(&format!("203.0.113.{n}"), "not-a-jwt"))
            .await
        {
            Ok(response) => {
                denied(response.get_ref());
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                limited_after = Some(n);
                break;
            }
        }
    }
    assert_eq!(limited_after, Some(3), "limited by its own address");
    assert!(
        eventually(Duration::from_secs(5), || async {
            server
                .logs()
                .lines()
                .any(|line| line.contains("identity.token.refused") && line.contains("127.0.0.1"))
        })
        .await,
        "the refusals name the caller's own address:\n{}",
        server.logs()
    );
    assert!(
        !server.logs().contains("203.0.113."),
        "a forged source reached the logs:\n{}",
        server.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_calls_check_through_reflection() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let tokens = register(&mut auth, &email("ext-authz-grpcurl")).await;
    let addr = server.addr.to_string();
    let run = |args: &[&str]| {
        let output = Command::new(grpcurl()).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "grpcurl {args:?}: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        text
    };
    let services = run(&["-plaintext", &addr, "list"]);
    assert!(
        services
            .lines()
            .any(|l| l == "envoy.service.auth.v3.Authorization"),
        "{services}"
    );
    let described = run(&[
        "-plaintext",
        &addr,
        "describe",
        "envoy.service.auth.v3.CheckRequest",
    ]);
    assert!(
        described.contains("AttributeContext attributes"),
        "{described}"
    );

    let body = json!({
        "attributes": {"request": {"http": {"headers": {
            "authorization": bearer(&tokens.access_token),
            "x-identity-subject": "someone-else",
        }}}}
    })
    .to_string();
    let answer = run(&[
        "-plaintext",
        "-d",
        &body,
        &addr,
        "envoy.service.auth.v3.Authorization/Check",
    ]);
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let subject = answer["okResponse"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["header"]["key"] == "x-identity-subject")
        .map(|h| h["header"]["value"].clone());
    assert_eq!(
        subject,
        Some(claims_of(&tokens.access_token)["sub"].clone()),
        "{answer}"
    );
}
