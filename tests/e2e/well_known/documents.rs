//! What the listener answers: the same keys as GetJwks, a discovery
//! document built from configuration, entity tags, and refusals.

use crate::support::*;
use identity::proto::v1::GetJwksRequest;
use secrecy::ExposeSecret as _;

fn assert_secure_json(answer: &HttpAnswer, case: &str) {
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{case}"
    );
    assert_eq!(
        answer.header("x-content-type-options"),
        Some("nosniff"),
        "{case}"
    );
    assert_eq!(answer.header("server"), None, "no banner: {case}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_jwks_is_the_get_jwks_set_and_discovery_names_it_from_configuration() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .well_known()
            .env("IDENTITY_ISSUER", "identity-e2e-issuer"),
    );
    let addr = server.well_known_addr();

    let grpc = server
        .auth()
        .await
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.keys.len(), 1, "--dev generates one Ed25519 key");
    let answer = get(addr, JWKS_PATH).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_secure_json(&answer, "jwks");
    assert_eq!(answer.header("cache-control"), Some("public, max-age=300"));
    assert!(answer.header("etag").is_some_and(|e| e.starts_with('"')));
    let http: Vec<serde_json::Value> = answer.json()["keys"].as_array().unwrap().clone();
    let expected: Vec<serde_json::Value> = grpc
        .keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "kty": k.kty, "kid": k.kid, "alg": k.alg, "use": k.r#use, "crv": k.crv, "x": k.x,
            })
        })
        .collect();
    assert_eq!(http, expected, "exactly GetJwks's keys and fields");
    assert!(!answer.body.contains("\"d\""), "public keys only");

    let discovery = get(addr, DISCOVERY_PATH).await;
    assert_eq!(discovery.status, 200, "{discovery:?}");
    assert_secure_json(&discovery, "discovery");
    assert_eq!(
        discovery.header("cache-control"),
        Some("public, max-age=300")
    );
    let jwks_uri = format!("http://{addr}{JWKS_PATH}");
    assert_eq!(
        discovery.json(),
        serde_json::json!({ "issuer": "identity-e2e-issuer", "jwks_uri": jwks_uri }),
        "only what is true of this service"
    );

    // Host header injection: the documents never echo the request's host.
    for headers in [
        &["Host: attacker.example"][..],
        &["X-Forwarded-Host: attacker.example"][..],
    ] {
        let raw = format!(
            "GET {DISCOVERY_PATH} HTTP/1.1\r\n{}\r\n\r\n",
            headers.join("\r\n")
        );
        let answer = HttpAnswer::parse(&exchange(addr, raw.as_bytes()).await);
        assert_eq!(answer.body, discovery.body, "{headers:?}");
    }
    let absolute = format!(
        "GET http://attacker.example{DISCOVERY_PATH} HTTP/1.1\r\nHost: attacker.example\r\n\r\n"
    );
    let answer = HttpAnswer::parse(&exchange(addr, absolute.as_bytes()).await);
    assert_eq!(answer.body, discovery.body, "absolute-form target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_answer_304_and_other_paths_and_methods_are_refused() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(&db, ServerOptions::default().well_known());
    let addr = server.well_known_addr();

    for path in [JWKS_PATH, DISCOVERY_PATH] {
        let first = get(addr, path).await;
        let etag = first.header("etag").unwrap().to_owned();
        let again = get(addr, path).await;
        assert_eq!(again.header("etag"), Some(etag.as_str()), "stable: {path}");
        for if_none_match in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"other\", {etag}"),
            "*".to_owned(),
        ] {
            let header = format!("If-None-Match: {if_none_match}");
            let answer = request(addr, "GET", path, &[&header]).await;
            assert_eq!(answer.status, 304, "{path} {if_none_match}");
            assert_eq!(answer.body, "", "{path} {if_none_match}");
            assert_eq!(answer.header("etag"), Some(etag.as_str()));
            assert_eq!(answer.header("cache-control"), Some("public, max-age=300"));
        }
        let answer = request(addr, "GET", path, &["If-None-Match: \"stale\""]).await;
        assert_eq!(answer.status, 200, "a stale tag gets the document: {path}");
        assert_eq!(answer.body, first.body);

        let head = request(addr, "HEAD", path, &[]).await;
        assert_eq!(head.status, 200, "{path}");
        assert_eq!(head.body, "", "HEAD has no body: {path}");
        assert_eq!(head.header("etag"), Some(etag.as_str()));

        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let answer = request(addr, method, path, &["Content-Length: 0"]).await;
            assert_eq!(answer.status, 405, "{method} {path}");
            assert_eq!(answer.header("allow"), Some("GET, HEAD"), "{method} {path}");
            assert_secure_json(&answer, method);
            assert_eq!(answer.header("cache-control"), Some("no-store"));
        }
    }
    for path in [
        "/",
        "/metrics",
        "/.well-known/",
        "/.well-known/jwks.json/",
        "/.well-known/JWKS.json",
        "/.well-known/jwks.json/../openid-configuration",
        "/identity.v1.AuthService/GetJwks",
    ] {
        let answer = get(addr, path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_secure_json(&answer, path);
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
    }
    let answer = get(addr, &format!("{JWKS_PATH}?refresh=1")).await;
    assert_eq!(answer.status, 200, "a query does not change the resource");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_public_url_names_jwks_uri_and_hs256_publishes_an_empty_set() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .well_known()
            .env("IDENTITY_SECRET_KEY", "q8Vf2kP0xZr7LmN4tY6wB1cD9eH3jS5a")
            .env("IDENTITY_ISSUER", "https://identity.example.test/tenant")
            .env(
                "IDENTITY_HTTP_PUBLIC_URL",
                "https://keys.example.test/base/",
            ),
    );
    let addr = server.well_known_addr();
    let grpc = server
        .auth()
        .await
        .get_jwks(GetJwksRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(grpc.keys.is_empty(), "an HS256 secret is never published");
    let answer = get(addr, JWKS_PATH).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json(), serde_json::json!({ "keys": [] }));
    assert_eq!(
        get(addr, DISCOVERY_PATH).await.json(),
        serde_json::json!({
            "issuer": "https://identity.example.test/tenant",
            "jwks_uri": "https://keys.example.test/base/.well-known/jwks.json",
        })
    );

    // Without IDENTITY_HTTP_PUBLIC_URL an issuer that is a URL is the base.
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .well_known()
            .env("IDENTITY_ISSUER", "https://identity.example.test/tenant"),
    );
    assert_eq!(
        get(server.well_known_addr(), DISCOVERY_PATH).await.json()["jwks_uri"],
        "https://identity.example.test/tenant/.well-known/jwks.json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etag_changes_when_the_keys_rotate() {
    // Keys are read at start: a rotation is a restart with the new list
    // (docs/deploy-helm.md), so the old tag must not be answered 304 by the
    // restarted server.
    let db = TestDb::new(Backend::Sqlite);
    let write_key = |name: &str| {
        let pem = identity_core::tokens::generate_ed25519_pem().unwrap();
        let path = db.dir.path().join(name);
        std::fs::write(&path, pem.expose_secret()).unwrap();
        path.display().to_string()
    };
    let (old, new) = (write_key("old.pem"), write_key("new.pem"));
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .well_known()
            .env("IDENTITY_SIGNING_KEY_FILE", &old),
    );
    let before = get(server.well_known_addr(), JWKS_PATH).await;
    assert_eq!(before.json()["keys"].as_array().unwrap().len(), 1);
    let etag = before.header("etag").unwrap().to_owned();
    drop(server);

    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .well_known()
            .env("IDENTITY_SIGNING_KEY_FILE", format!("{new},{old}")),
    );
    let addr = server.well_known_addr();
    let header = format!("If-None-Match: {etag}");
    let after = request(addr, "GET", JWKS_PATH, &[&header]).await;
    assert_eq!(after.status, 200, "the old tag is stale: {after:?}");
    assert_ne!(after.header("etag"), Some(etag.as_str()));
    let keys = after.json()["keys"].as_array().unwrap().clone();
    assert_eq!(
        keys.len(),
        2,
        "the new key signs, the old one still verifies"
    );
    assert_eq!(keys[1], before.json()["keys"][0]);
}
