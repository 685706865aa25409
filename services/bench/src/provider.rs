//! A tiny external identity provider run by the bench itself, so that
//! `bench --scale` can measure ExchangeToken without Node or Better-Auth:
//! an HTTP/1.1 listener on 127.0.0.1:0 serving a JWK set of one Ed25519 key
//! (`GET /jwks`, what Better-Auth serves at /api/auth/jwks), and a signer
//! of provider tokens (EdDSA JWTs) with the claims ExchangeToken checks.
//!
//! Every token names a subject never seen before, so each exchange
//! provisions a new profile: the scenario measures sign-up through the
//! provider, not a returning user.

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::ExposeSecret as _;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `iss` of the fixture's tokens, and what the server is told to expect.
pub const ISSUER: &str = "https://provider.bench.invalid";
/// `aud`: a value of the service's own, as production requires (not the
/// issuer, Better-Auth's default audience).
pub const AUDIENCE: &str = "identity-bench";
/// Life of a provider token: a few minutes, as Better-Auth's 15m default.
const TOKEN_TTL_SECS: u64 = 300;

/// Signs provider tokens; cheap to share between load workers.
pub struct Signer {
    kid: String,
    key: EncodingKey,
    issued: AtomicU64,
}

impl Signer {
    /// A provider JWT for a subject never used before: unique `sub` (the
    /// profile's `auth_id`), `jti`, email and name, so that the exchange
    /// creates a profile.
    pub fn token(&self) -> anyhow::Result<String> {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let sub = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        // Better-Auth's tokens carry `typ: JWT`; the server refuses any
        // other type (an access token signed by the same key, say).
        header.typ = Some("JWT".into());
        let claims = json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": sub,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "exp": now + TOKEN_TTL_SECS,
            "email": format!("{sub}@provider.bench.invalid"),
            "emailVerified": true,
            "name": format!("Provider User {n}"),
        });
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

/// The running fixture; its listener stops on drop.
pub struct Provider {
    pub addr: SocketAddr,
    pub signer: Arc<Signer>,
    served: Arc<AtomicU64>,
    listener: tokio::task::JoinHandle<()>,
}

impl Provider {
    /// A fresh key and its JWK set served on an ephemeral loopback port.
    pub async fn start() -> anyhow::Result<Provider> {
        let pem = identity_core::tokens::generate_ed25519_pem()?;
        let pem = pem.expose_secret();
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .context("the generated provider key does not parse")?;
        let x = B64.encode(signing.verifying_key().as_bytes());
        let kid = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let jwks = Bytes::from(
            json!({"keys": [{
                "kty": "OKP", "crv": "Ed25519", "x": x,
                "kid": kid, "alg": "EdDSA", "use": "sig",
            }]})
            .to_string(),
        );
        let key = EncodingKey::from_ed_pem(pem.as_bytes())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&served);
        let task = tokio::spawn(async move {
            // A failed accept (out of descriptors, say) ends the fixture;
            // the server then reports the provider unreachable, which the
            // scenario counts as errors.
            while let Ok((stream, _)) = listener.accept().await {
                let (jwks, counter) = (jwks.clone(), Arc::clone(&counter));
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<_>| {
                        let (jwks, counter) = (jwks.clone(), Arc::clone(&counter));
                        async move { Ok::<_, Infallible>(answer(&request, jwks, &counter)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Provider {
            addr,
            signer: Arc::new(Signer {
                kid,
                key,
                issued: AtomicU64::new(0),
            }),
            served,
            listener: task,
        })
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// The settings that make an identity server trust this provider.
    pub fn server_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("IDENTITY_PROVIDER_JWKS_URL", self.jwks_url()),
            ("IDENTITY_PROVIDER_ISSUER", ISSUER.to_owned()),
            ("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE.to_owned()),
        ]
    }

    /// How many times the JWK set was fetched (the server caches it: a
    /// handful per run, however many exchanges).
    pub fn jwks_served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn answer<B>(
    request: &hyper::Request<B>,
    jwks: Bytes,
    served: &AtomicU64,
) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::new()));
    if request.method() == http::Method::GET && request.uri().path() == "/jwks" {
        served.fetch_add(1, Ordering::Relaxed);
        *response.body_mut() = Full::new(jwks);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    } else {
        *response.status_mut() = http::StatusCode::NOT_FOUND;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture's tokens pass the server's own rules (the same function
    /// ExchangeToken calls) against the key set it serves.
    #[tokio::test]
    async fn its_tokens_verify_against_its_key_set() {
        let provider = Provider::start().await.expect("starts");
        let jwks = fetch(provider.addr, "/jwks").await;
        assert!(jwks.starts_with("HTTP/1.1 200"), "{jwks}");
        assert!(
            fetch(provider.addr, "/other")
                .await
                .starts_with("HTTP/1.1 404")
        );
        let body = jwks.split_once("\r\n\r\n").expect("a body").1;
        let keys = identity_core::provider::parse_jwks(body.as_bytes(), &[Algorithm::EdDSA])
            .expect("a JWK set");
        assert!(keys.skipped.is_empty(), "{:?}", keys.skipped);
        let (a, b) = (
            provider.signer.token().expect("signs"),
            provider.signer.token().expect("signs"),
        );
        let head = identity_core::provider::inspect(&a, &[Algorithm::EdDSA]).expect("header");
        let key = keys.keys.get(&head.kid).expect("its kid is served");
        let rules = identity_core::provider::Rules {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            leeway: std::time::Duration::from_secs(30),
            algorithms: vec![Algorithm::EdDSA],
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        let claims = identity_core::provider::verify(&a, &head, key, &rules, now).expect("valid");
        let other = identity_core::provider::verify(&b, &head, key, &rules, now).expect("valid");
        assert_ne!(claims.sub, other.sub, "a new subject each time");
        assert!(claims.email.is_some() && claims.email_verified);
        assert_eq!(provider.jwks_served(), 1);
    }

    async fn fetch(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("writes");
        let mut text = String::new();
        stream.read_to_string(&mut text).await.expect("reads");
        text
    }
}
