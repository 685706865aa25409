//! Access tokens verified by other ecosystems' libraries against the HTTP
//! JWKS, as the services that call this one verify them: Node's `jose`
//! (createRemoteJWKSet) and Python's PyJWT (PyJWKClient), each with the
//! issuer, audience and `typ` checked; and tampered tokens refused by both.

use crate::support::better_auth::{ensure_installed, provider_dir};
use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::path::PathBuf;
use std::process::Command;

/// A verifier: its program and script, run as `VERIFIER JWKS_URL ISSUER
/// AUDIENCE TOKEN`.
struct Verifier {
    name: &'static str,
    program: PathBuf,
    script: PathBuf,
}

impl Verifier {
    fn jose() -> Verifier {
        ensure_installed();
        Verifier {
            name: "jose",
            program: "node".into(),
            script: provider_dir().join("verify-jwks.mjs"),
        }
    }

    /// `make test` installs PyJWT into .venv (scripts/venv.sh).
    fn pyjwt() -> Verifier {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/venv.sh (make test does)",
            python.display()
        );
        Verifier {
            name: "PyJWT",
            program: python,
            script: root.join("tests/e2e/well_known/verify_jwks.py"),
        }
    }

    /// `Ok(claims)` or `Err(refusal)`, as the script reported it.
    fn verify(
        &self,
        jwks_url: &str,
        issuer: &str,
        audience: &str,
        token: &str,
    ) -> Result<serde_json::Value, String> {
        let output = Command::new(&self.program)
            .arg(&self.script)
            .args([jwks_url, issuer, audience, token])
            .output()
            .unwrap_or_else(|e| panic!("{} runs: {e}", self.program.display()));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let answer: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
            panic!(
                "{}: no JSON answer; stdout {stdout:?}, stderr {:?}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            )
        });
        if output.status.success() {
            Ok(answer)
        } else {
            Err(answer["refused"].to_string())
        }
    }
}

/// The token with its payload rewritten by `edit`, the signature kept.
fn with_claims(token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = claims_of(token);
    edit(&mut claims);
    let payload = B64.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// The token with one character in the middle of its signature changed.
fn with_bad_signature(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut signature: Vec<char> = signature.chars().collect();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == 'A' { 'B' } else { 'A' };
    format!("{signed}.{}", signature.into_iter().collect::<String>())
}

async fn tokens_verify_against_the_http_jwks(verifier: Verifier, backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .well_known()
            .env("IDENTITY_ISSUER", "https://identity.example.test")
            .env("IDENTITY_AUDIENCE", "orders-service"),
    );
    // Verifiers are given the issuer and the JWKS URL. The discovery
    // document names https://identity.example.test/.well-known/jwks.json
    // (the issuer's), a proxy's address the test does not run, so the
    // test hands them the listener's own.
    let jwks_url = format!("http://{}{JWKS_PATH}", server.well_known_addr());
    let (issuer, audience) = ("https://identity.example.test", "orders-service");
    let mut auth = server.auth().await;
    let registered = register_profile(&mut auth, "ann@example.com").await;
    let profile_id = registered.profile.unwrap().id;
    let access = login(&mut auth, "ann@example.com").await.access_token;

    let answer = verifier
        .verify(&jwks_url, issuer, audience, &access)
        .unwrap_or_else(|refused| panic!("{} refused a real token: {refused}", verifier.name));
    assert_eq!(
        answer["claims"]["sub"],
        profile_id.as_str(),
        "{}",
        verifier.name
    );
    assert_eq!(answer["header"]["typ"], "at+jwt");
    assert_eq!(answer["header"]["alg"], "EdDSA");

    let refusals = [
        (
            "a changed signature",
            with_bad_signature(&access),
            issuer,
            audience,
        ),
        (
            "a granted admin role",
            with_claims(&access, |c| c["roles"] = serde_json::json!(["admin"])),
            issuer,
            audience,
        ),
        (
            "another subject",
            with_claims(&access, |c| c["sub"] = serde_json::json!("someone-else")),
            issuer,
            audience,
        ),
        (
            "another issuer expected",
            access.clone(),
            "https://evil.example",
            audience,
        ),
        (
            "another audience expected",
            access.clone(),
            issuer,
            "billing-service",
        ),
    ];
    for (case, token, issuer, audience) in refusals {
        assert!(
            verifier
                .verify(&jwks_url, issuer, audience, &token)
                .is_err(),
            "{} accepted {case}",
            verifier.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_verify_with_node_jose_against_the_http_jwks_and_tampered_ones_do_not() {
    tokens_verify_against_the_http_jwks(Verifier::jose(), Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_verify_with_pyjwt_against_the_http_jwks_and_tampered_ones_do_not() {
    tokens_verify_against_the_http_jwks(Verifier::pyjwt(), Backend::Sqlite).await;
}
