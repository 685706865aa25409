//! A tower layer for tonic and axum servers: `authorization: Bearer <token>`
//! verified by a [`Verifier`], the [`Principal`] put into the request's
//! extensions, everything else refused before the service sees it
//! (UNAUTHENTICATED for gRPC, 401 for plain HTTP).

use crate::{Principal, Verifier};
use http::{HeaderValue, Request, Response, StatusCode, header};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tower::{Layer, Service};

/// Guards every request of the wrapped service with a [`Verifier`].
///
/// ```no_run
/// # async fn f(verifier: identity_client::Verifier) {
/// use identity_client::VerifierLayer;
/// let (_, health) = tonic_health::server::health_reporter();
/// tonic::transport::Server::builder()
///     .layer(VerifierLayer::new(verifier))
///     .add_service(health)
///     .serve("127.0.0.1:8080".parse().unwrap())
///     .await
///     .unwrap();
/// # }
/// ```
///
/// Handlers read the caller with `request.extensions().get::<Principal>()`.
#[derive(Debug, Clone)]
pub struct VerifierLayer {
    verifier: Verifier,
}

impl VerifierLayer {
    pub fn new(verifier: Verifier) -> Self {
        VerifierLayer { verifier }
    }
}

impl<S> Layer<S> for VerifierLayer {
    type Service = RequireBearer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireBearer {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`VerifierLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct RequireBearer<S> {
    inner: S,
    verifier: Verifier,
}

/// The bearer token of `authorization` (the scheme in any case, as HTTP
/// says); `None` when absent or not a bearer.
fn bearer<B>(request: &Request<B>) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The refusal: a trailers-only UNAUTHENTICATED for gRPC, 401 otherwise.
/// The message is the same for every reason, like identity's own.
fn refusal(grpc: bool) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    if !grpc {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    let headers = response.headers_mut();
    if grpc {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("16"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("invalid%20or%20missing%20bearer%20token"),
        );
    } else {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Answers tonic's body type whatever the inner service's is: tonic and
/// axum servers both take it, and a refusal needs a body of its own.
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireBearer<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let grpc = is_grpc(&request);
            let Some(token) = bearer(&request).map(str::to_owned) else {
                return Ok(refusal(grpc));
            };
            let principal: Principal = match verifier.verify(&token).await {
                Ok(principal) => principal,
                Err(error) => {
                    tracing::debug!(%error, "bearer token refused");
                    return Ok(refusal(grpc));
                }
            };
            request.extensions_mut().insert(principal);
            Ok(inner.call(request).await?.map(Body::new))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> Request<()> {
        Request::builder()
            .header("authorization", value)
            .body(())
            .unwrap()
    }

    #[test]
    fn only_a_non_empty_bearer_credential_is_taken() {
        assert_eq!(bearer(&with_authorization("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with_authorization("bearer abc")), Some("abc"));
        assert_eq!(bearer(&with_authorization("Basic abc")), None);
        assert_eq!(bearer(&with_authorization("Bearer ")), None);
        assert_eq!(bearer(&with_authorization("Bearerabc")), None);
        assert_eq!(bearer(&Request::new(())), None);
    }

    #[test]
    fn refusals_are_unauthenticated_for_grpc_and_401_for_http() {
        let grpc = refusal(true);
        assert_eq!(grpc.status(), StatusCode::OK);
        assert_eq!(grpc.headers()["grpc-status"], "16");
        let http = refusal(false);
        assert_eq!(http.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(http.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
