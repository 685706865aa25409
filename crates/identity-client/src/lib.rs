//! Verifies identity's access tokens offline, in another Rust service.
//!
//! A [`Verifier`] checks a token exactly as identity does — the same code
//! (`identity_core::tokens::VerifyingKeys`): the key its `kid` names
//! decides the algorithm; `typ: at+jwt`, `iss`, `aud`, `exp`, `nbf` and
//! `iat` with the same leeway — using the keys of `GetJwks`, fetched again
//! when a token names a new one (one fetch at a time, at most one per
//! interval). It follows `WatchRevocations` to refuse tokens of revoked
//! sessions and to stop reporting roles a profile no longer holds, and it
//! fails closed: without a heartbeat for `max_staleness` it refuses
//! ([`VerifyError::Stale`]) or, with [`Fallback::Remote`], asks
//! `ValidateToken`. [`VerifierLayer`] guards a tonic or axum server with
//! it. See README.md.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod error;
mod keys;
mod knowledge;
mod layer;
mod principal;
mod proto;
mod verifier;
mod watch;

pub use error::{BuildError, VerifyError};
pub use identity_core::tokens::Refusal;
pub use layer::{RequireBearer, VerifierLayer};
pub use principal::Principal;
pub use verifier::{Fallback, Verifier, VerifierBuilder};
