//! Why a token was refused, and why a verifier could not be built.

use identity_core::tokens::{JwkError, Refusal};
use std::time::Duration;

/// Why [`crate::Verifier::verify`] refused a token. Every variant is a
/// refusal: the caller answers 401 / UNAUTHENTICATED (or 503 for
/// [`VerifyError::Stale`] and [`VerifyError::Unavailable`], which are about
/// this service's view of identity, not about the token).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token itself is not acceptable: malformed, forged, of an unknown
    /// key, expired, not yet valid, for another issuer or audience, not an
    /// access token (`typ`). The same checks as the server's.
    #[error("token refused: {0}")]
    Refused(Refusal),
    /// The revocation stream said its session ended (a logout, a revoked
    /// session, every session of the profile revoked).
    #[error("token refused: its session was revoked")]
    Revoked,
    /// identity's `ValidateToken` answered `active=false`.
    #[error("token refused by identity's ValidateToken")]
    Inactive,
    /// No heartbeat arrived on the revocation stream within `max_staleness`:
    /// a revocation may be on its way, so no token is accepted offline
    /// (fail closed). Configure [`crate::Fallback::Remote`] to ask
    /// `ValidateToken` instead.
    #[error("identity's revocation stream is silent (last heartbeat: {last_heartbeat:?} ago)")]
    Stale {
        /// How long ago the last heartbeat arrived; `None`: never.
        last_heartbeat: Option<Duration>,
    },
    /// The token needed identity's word (`ValidateToken`: after a reset, a
    /// role change, or as the fallback) and identity did not answer in time.
    #[error("identity's ValidateToken did not answer: {0}")]
    Unavailable(#[source] Box<tonic::Status>),
    /// Like [`VerifyError::Unavailable`], past the remote timeout.
    #[error("identity's ValidateToken did not answer within {0:?}")]
    Timeout(Duration),
}

impl VerifyError {
    /// True when the token is at fault (answer 401 / UNAUTHENTICATED); false
    /// when this service cannot currently tell (answer 503 / UNAVAILABLE if
    /// that suits the caller better; refusing is the point either way).
    pub fn is_token_refused(&self) -> bool {
        matches!(
            self,
            VerifyError::Refused(_) | VerifyError::Revoked | VerifyError::Inactive
        )
    }
}

/// Why [`crate::VerifierBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `GetJwks` failed or timed out at start.
    #[error("cannot fetch identity's keys (GetJwks): {0}")]
    Jwks(#[source] Box<tonic::Status>),
    /// A published key this version cannot verify with.
    #[error("identity published a key this client cannot use: {0}")]
    Key(#[from] JwkError),
    /// `max_staleness`, the timeouts or the refetch interval is zero.
    #[error("{0} must be more than zero")]
    Zero(&'static str),
}
