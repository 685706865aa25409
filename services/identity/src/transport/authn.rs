//! The one authentication layer: every ProfileService call and
//! `AuthService/ChangePassword` pass through it. It verifies the bearer
//! token by the same path as ValidateToken (signature, claims, session) and
//! hands the handler a `Principal`; handlers never parse tokens themselves.

use crate::service::{Auth, Caller, Principal};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Request, Status};

/// Wraps a tonic service; `protected` says which paths need a caller.
#[derive(Clone)]
pub struct RequireBearer<S> {
    inner: S,
    auth: Arc<Auth>,
    protected: fn(&str) -> bool,
}

impl<S> RequireBearer<S> {
    pub fn new(inner: S, auth: Arc<Auth>, protected: fn(&str) -> bool) -> Self {
        RequireBearer {
            inner,
            auth,
            protected,
        }
    }
}

impl<S: NamedService> NamedService for RequireBearer<S> {
    const NAME: &'static str = S::NAME;
}

fn bearer(request: &http::Request<Body>) -> Option<String> {
    super::metadata::bearer_token(request.headers().get("authorization")?.to_str().ok()?)
}

impl<S> tower::Service<http::Request<Body>> for RequireBearer<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was driven to readiness serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !(self.protected)(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let auth = Arc::clone(&self.auth);
        Box::pin(async move {
            let caller = Caller {
                client_addr: request
                    .extensions()
                    .get::<super::client_addr::ClientAddr>()
                    .and_then(|c| c.0)
                    .map(|ip| ip.to_string()),
                ..Caller::default()
            };
            let token = bearer(&request);
            let principal = match auth.authenticate(&caller, token.as_deref()).await {
                Ok(claims) => Principal::from_claims(&claims, caller.client_addr.clone()),
                Err(error) => return Ok(Status::from(error).into_http()),
            };
            match principal {
                Some(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                None => Ok(Status::from(crate::service::Error::Unauthenticated).into_http()),
            }
        })
    }
}

/// The caller the layer authenticated. A handler behind the layer that finds
/// none is misconfigured: fail closed.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::from(crate::service::Error::Unauthenticated))
}
