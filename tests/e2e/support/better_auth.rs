//! A real Better-Auth server (tests/provider/server.mjs on Node) on an
//! ephemeral 127.0.0.1 port, and a small HTTP client for its API: sign-up,
//! sign-in, GET /api/auth/token, and the test-only routes that count JWKS
//! requests, rotate the signing key and sign arbitrary payloads.

use super::{Auth, ServerOptions};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use identity::proto::v1::{ExchangeTokenRequest, ExchangeTokenResponse};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tonic::Status;

/// The issuer and audience the tests configure on both sides.
pub const ISSUER: &str = "https://better-auth.identity.test";
pub const AUDIENCE: &str = "identity-e2e";
/// The subject token type of a provider's sign-in JWT.
pub const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/provider")
}

/// `make test` runs `npm ci` there (scripts/ensure-tools.sh); a bare
/// `cargo test` does it here once. Also jose, for the tests that verify
/// tokens against the HTTP JWKS (tests/e2e/well_known/).
pub fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = provider_dir();
        if dir.join("node_modules/better-auth/package.json").exists()
            && dir.join("node_modules/jose/package.json").exists()
            && dir
                .join("node_modules/better-sqlite3/build/Release")
                .exists()
        {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .env("npm_config_build_from_source", "true")
            .current_dir(&dir)
            .status()
            .expect("npm runs (Node 20 and npm are required for the provider tests)");
        assert!(status.success(), "npm ci in tests/provider failed");
    });
}

/// How to start a Better-Auth server: environment for server.mjs.
#[derive(Clone)]
pub struct BetterAuthOptions {
    pub env: Vec<(String, String)>,
}

impl Default for BetterAuthOptions {
    fn default() -> Self {
        BetterAuthOptions {
            env: vec![
                ("BA_ISSUER".into(), ISSUER.into()),
                ("BA_AUDIENCE".into(), AUDIENCE.into()),
            ],
        }
    }
}

impl BetterAuthOptions {
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.into()));
        self
    }
}

/// A running Better-Auth, killed on drop.
pub struct BetterAuth {
    child: Option<Child>,
    pub base_url: String,
    pub logs: Arc<Mutex<Vec<String>>>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Tokens [`BetterAuth::token`] returned so far.
    issued: Mutex<std::collections::HashSet<String>>,
}

/// A signed-up user: its Better-Auth id and a bearer session token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub email: String,
    pub session: String,
}

impl BetterAuth {
    pub fn start() -> BetterAuth {
        BetterAuth::start_with(BetterAuthOptions::default())
    }

    pub fn start_with(options: BetterAuthOptions) -> BetterAuth {
        ensure_installed();
        let mut command = Command::new("node");
        command
            .arg("server.mjs")
            .current_dir(provider_dir())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NODE_ENV", "test");
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node starts tests/provider/server.mjs");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            let mut first = true;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if first {
                    first = false;
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "Better-Auth did not start; output:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        let started: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("Better-Auth's first line is JSON: {line}"));
        let port = started["port"].as_u64().expect("port in the first line");
        BetterAuth {
            child: Some(child),
            base_url: format!("http://127.0.0.1:{port}"),
            logs,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            issued: Mutex::new(Default::default()),
        }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/api/auth/jwks", self.base_url)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Kills the server (the provider goes down).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One HTTP request; the status, the headers and the JSON body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (http::StatusCode, http::HeaderMap, Value) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url));
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(json.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let response = tokio::time::timeout(
            Duration::from_secs(30),
            self.client.request(request.body(body).unwrap()),
        )
        .await
        .expect("Better-Auth answers within 30s")
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, json)
    }

    async fn expect_ok(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (http::HeaderMap, Value) {
        let (status, headers, json) = self.request(method, path, bearer, body).await;
        assert_eq!(
            status,
            http::StatusCode::OK,
            "{method} {path}: {json}\n{}",
            self.logs()
        );
        (headers, json)
    }

    /// POST /api/auth/sign-up/email, then POST /api/auth/sign-in/email: the
    /// bearer plugin returns the session token in `set-auth-token`.
    pub async fn sign_up(&self, email: &str, password: &str, name: &str) -> User {
        let (_, json) = self
            .expect_ok(
                "POST",
                "/api/auth/sign-up/email",
                None,
                Some(json!({"email": email, "password": password, "name": name})),
            )
            .await;
        let id = json["user"]["id"].as_str().expect("user id").to_owned();
        let session = self.sign_in(email, password).await;
        User {
            id,
            email: email.to_owned(),
            session,
        }
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> String {
        let (headers, _) = self
            .expect_ok(
                "POST",
                "/api/auth/sign-in/email",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        headers
            .get("set-auth-token")
            .and_then(|v| v.to_str().ok())
            .expect("the bearer plugin answers set-auth-token")
            .to_owned()
    }

    /// GET /api/auth/token: the JWT that ExchangeToken takes, never one
    /// returned before. Better-Auth's tokens have no `jti` and a `iat` in
    /// seconds, so two requests within a second get the same token, which
    /// ExchangeToken accepts only once; this waits for the next second.
    pub async fn token(&self, user: &User) -> String {
        loop {
            let (_, json) = self
                .expect_ok("GET", "/api/auth/token", Some(&user.session), None)
                .await;
            let token = json["token"].as_str().expect("token").to_owned();
            if self.issued.lock().unwrap().insert(token.clone()) {
                return token;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// POST /api/auth/update-user: changes the user's name there.
    pub async fn rename(&self, user: &User, name: &str) {
        self.expect_ok(
            "POST",
            "/api/auth/update-user",
            Some(&user.session),
            Some(json!({"name": name})),
        )
        .await;
    }

    /// How many times /api/auth/jwks was served.
    pub async fn jwks_hits(&self) -> u64 {
        let (_, json) = self.expect_ok("GET", "/test/stats", None, None).await;
        json["jwks"].as_u64().unwrap()
    }

    /// Mints a new signing key; later tokens are signed with it.
    pub async fn rotate(&self) -> String {
        let (_, json) = self.expect_ok("POST", "/test/rotate", None, None).await;
        json["kid"].as_str().unwrap().to_owned()
    }

    /// Signs `payload` with the provider's current key (iss, aud and exp
    /// default to the configured ones unless the payload sets them).
    pub async fn sign(&self, payload: Value) -> String {
        let (_, json) = self
            .expect_ok(
                "POST",
                "/test/sign",
                None,
                Some(json!({ "payload": payload })),
            )
            .await;
        json["token"].as_str().unwrap().to_owned()
    }

    /// The published keys.
    pub async fn jwks(&self) -> Value {
        self.expect_ok("GET", "/api/auth/jwks", None, None).await.1
    }
}

impl Drop for BetterAuth {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `options` with identity trusting `provider`'s keys, issuer and audience
/// (a short JWKS timeout: the provider is on loopback).
pub fn trusting(provider: &BetterAuth, options: ServerOptions) -> ServerOptions {
    options
        .env("IDENTITY_PROVIDER_JWKS_URL", provider.jwks_url())
        .env("IDENTITY_PROVIDER_ISSUER", ISSUER)
        .env("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE)
        .env("IDENTITY_PROVIDER_JWKS_TIMEOUT", "2s")
}

/// ExchangeToken of a provider JWT.
pub async fn exchange(auth: &mut Auth, token: &str) -> Result<ExchangeTokenResponse, Status> {
    auth.exchange_token(ExchangeTokenRequest {
        subject_token: token.to_owned(),
        subject_token_type: JWT_TYPE.into(),
    })
    .await
    .map(|r| r.into_inner())
}
