//! The one mapping from service errors to gRPC statuses. Messages are
//! generic: they never say which of email or password was wrong and never
//! carry a database error.
//!
//! Every error status this server answers carries a `google.rpc.ErrorInfo`
//! with domain [`ERROR_DOMAIN`] and one of the [`reason`]s, so that callers
//! branch on a stable string rather than on a message or on a code that
//! several causes share (four different bounds answer RESOURCE_EXHAUSTED).
//! Statuses made outside [`From<Error>`] — the codec, tonic's own answers
//! fixed up in `transport`, the request timeout — are built here too.

use crate::service::{Error, Exhausted};
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `google.rpc.ErrorInfo` domain of this service's reasons: a contract
/// (issue 15), not the proto package.
pub const ERROR_DOMAIN: &str = "identity";

/// The one UNAUTHENTICATED text for every credential or token failure
/// (which part was wrong is never said; the reason says what to do).
pub const UNAUTHENTICATED: &str = "missing, invalid or expired credentials";

/// The `google.rpc.ErrorInfo` reasons, in one place. The README's table
/// ("Errors callers can tell apart") lists exactly these, with the code
/// that carries each; a unit test compares the two.
pub mod reason {
    /// INVALID_ARGUMENT: one or more fields were refused (BadRequest names each).
    pub const FIELD_INVALID: &str = "FIELD_INVALID";
    /// INVALID_ARGUMENT: not a well-formed gRPC or protobuf message.
    pub const MALFORMED_REQUEST: &str = "MALFORMED_REQUEST";
    /// UNAUTHENTICATED: email and password, client id and secret, or
    /// `current_password` did not match.
    pub const INVALID_CREDENTIALS: &str = "INVALID_CREDENTIALS";
    /// UNAUTHENTICATED: the bearer, refresh or provider token is missing,
    /// invalid, expired or revoked.
    pub const TOKEN_INVALID: &str = "TOKEN_INVALID";
    /// UNAUTHENTICATED: this provider token was exchanged before.
    pub const TOKEN_ALREADY_EXCHANGED: &str = "TOKEN_ALREADY_EXCHANGED";
    pub const PERMISSION_DENIED: &str = "PERMISSION_DENIED";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const ALREADY_EXISTS: &str = "ALREADY_EXISTS";
    /// ABORTED: the etag is not the stored one.
    pub const ETAG_MISMATCH: &str = "ETAG_MISMATCH";
    /// FAILED_PRECONDITION: this RPC will not do it; the message says which will.
    pub const FAILED_PRECONDITION: &str = "FAILED_PRECONDITION";
    /// FAILED_PRECONDITION: the server is not configured for this RPC.
    pub const NOT_CONFIGURED: &str = "NOT_CONFIGURED";
    /// RESOURCE_EXHAUSTED: a rate limit of the RPC (per address or account).
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// RESOURCE_EXHAUSTED: too many failed password or secret attempts.
    pub const LOGIN_THROTTLED: &str = "LOGIN_THROTTLED";
    /// RESOURCE_EXHAUSTED: password hashing is saturated (load shedding),
    /// or a cap on WatchRevocations streams is reached (the message names
    /// its setting).
    pub const OVERLOADED: &str = "OVERLOADED";
    /// RESOURCE_EXHAUSTED: the request is larger than IDENTITY_MAX_MESSAGE_BYTES.
    pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
    /// UNAVAILABLE: the database (or the provider's keys) cannot be reached.
    pub const UNAVAILABLE: &str = "UNAVAILABLE";
    /// DEADLINE_EXCEEDED: the call ran past IDENTITY_REQUEST_TIMEOUT.
    pub const TIMEOUT: &str = "TIMEOUT";
    /// UNIMPLEMENTED: no such service or method.
    pub const UNIMPLEMENTED: &str = "UNIMPLEMENTED";
    pub const INTERNAL: &str = "INTERNAL";
    /// ABORTED: a WatchRevocations stream fell too far behind; resume at
    /// once from the last cursor received.
    pub const WATCHER_TOO_SLOW: &str = "WATCHER_TOO_SLOW";
}

/// Every reason with the code that carries it: what the README documents.
pub const REASONS: &[(Code, &str)] = &[
    (Code::InvalidArgument, reason::FIELD_INVALID),
    (Code::InvalidArgument, reason::MALFORMED_REQUEST),
    (Code::Unauthenticated, reason::INVALID_CREDENTIALS),
    (Code::Unauthenticated, reason::TOKEN_INVALID),
    (Code::Unauthenticated, reason::TOKEN_ALREADY_EXCHANGED),
    (Code::PermissionDenied, reason::PERMISSION_DENIED),
    (Code::NotFound, reason::NOT_FOUND),
    (Code::AlreadyExists, reason::ALREADY_EXISTS),
    (Code::Aborted, reason::ETAG_MISMATCH),
    (Code::Aborted, reason::WATCHER_TOO_SLOW),
    (Code::FailedPrecondition, reason::FAILED_PRECONDITION),
    (Code::FailedPrecondition, reason::NOT_CONFIGURED),
    (Code::ResourceExhausted, reason::RATE_LIMITED),
    (Code::ResourceExhausted, reason::LOGIN_THROTTLED),
    (Code::ResourceExhausted, reason::OVERLOADED),
    (Code::ResourceExhausted, reason::MESSAGE_TOO_LARGE),
    (Code::Unavailable, reason::UNAVAILABLE),
    (Code::DeadlineExceeded, reason::TIMEOUT),
    (Code::Unimplemented, reason::UNIMPLEMENTED),
    (Code::Internal, reason::INTERNAL),
];

/// The reason of a status this server did not build itself (tonic's or a
/// library service's, seen by the fix-up layer): by its code.
pub fn reason_for_code(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => reason::MALFORMED_REQUEST,
        Code::Unauthenticated => reason::TOKEN_INVALID,
        Code::PermissionDenied => reason::PERMISSION_DENIED,
        Code::NotFound => reason::NOT_FOUND,
        Code::AlreadyExists => reason::ALREADY_EXISTS,
        Code::ResourceExhausted => reason::OVERLOADED,
        Code::Unavailable => reason::UNAVAILABLE,
        Code::DeadlineExceeded | Code::Cancelled => reason::TIMEOUT,
        Code::Unimplemented => reason::UNIMPLEMENTED,
        Code::FailedPrecondition => reason::FAILED_PRECONDITION,
        Code::Aborted => reason::ETAG_MISMATCH,
        _ => reason::INTERNAL,
    }
}

/// The reason `error` is answered with.
pub fn reason_of(error: &Error) -> &'static str {
    match error {
        Error::Invalid(_) => reason::FIELD_INVALID,
        Error::InvalidCredentials => reason::INVALID_CREDENTIALS,
        Error::Unauthenticated => reason::TOKEN_INVALID,
        Error::TokenAlreadyExchanged => reason::TOKEN_ALREADY_EXCHANGED,
        Error::PermissionDenied => reason::PERMISSION_DENIED,
        Error::NotFound => reason::NOT_FOUND,
        Error::AlreadyExists(_) => reason::ALREADY_EXISTS,
        Error::StaleEtag => reason::ETAG_MISMATCH,
        Error::FailedPrecondition(_) => reason::FAILED_PRECONDITION,
        Error::Busy { cause, .. } => match cause {
            Exhausted::RateLimited => reason::RATE_LIMITED,
            Exhausted::Throttled => reason::LOGIN_THROTTLED,
            Exhausted::Overloaded | Exhausted::Watchers(_) => reason::OVERLOADED,
        },
        Error::Unavailable => reason::UNAVAILABLE,
        Error::NotEnabled(_) => reason::NOT_CONFIGURED,
        Error::WatcherTooSlow => reason::WATCHER_TOO_SLOW,
        Error::Internal(_) => reason::INTERNAL,
    }
}

/// A status carrying `details` plus the ErrorInfo of `reason`.
pub fn status(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    mut details: ErrorDetails,
) -> Status {
    details.set_error_info(reason, ERROR_DOMAIN, HashMap::<String, String>::new());
    Status::with_error_details(code, message, details)
}

/// A request message that did not decode (the codec's answer).
pub fn malformed(message: impl Into<String>) -> Status {
    status(
        Code::InvalidArgument,
        message,
        reason::MALFORMED_REQUEST,
        ErrorDetails::new(),
    )
}

/// The answer to a call that ran past the server's request timeout.
pub fn timeout() -> Status {
    status(
        Code::DeadlineExceeded,
        "the call took longer than the server allows; retry later",
        reason::TIMEOUT,
        ErrorDetails::new(),
    )
}

/// The `grpc-status-details-bin` value (a `google.rpc.Status`, base64
/// without padding, as the gRPC spec sends it) of a status with `code`,
/// `message` and the ErrorInfo of `reason`: for answers tonic built, whose
/// headers the fix-up layer completes.
pub fn details_header(code: Code, message: &str, reason: &str) -> Option<http::HeaderValue> {
    use base64::Engine as _;
    let status = self::status(code, message.to_owned(), reason, ErrorDetails::new());
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(status.details());
    http::HeaderValue::from_str(&encoded).ok()
}

impl From<Error> for Status {
    fn from(error: Error) -> Status {
        let reason = reason_of(&error);
        match error {
            Error::Invalid(violations) => {
                let summary = violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                status(
                    Code::InvalidArgument,
                    format!("invalid request: {summary}"),
                    reason,
                    details,
                )
            }
            Error::InvalidCredentials | Error::Unauthenticated => status(
                Code::Unauthenticated,
                UNAUTHENTICATED,
                reason,
                ErrorDetails::new(),
            ),
            // Said plainly: only the token's holder can learn it, and a
            // legitimate client must know to get a fresh provider token
            // rather than retry this one.
            Error::TokenAlreadyExchanged => status(
                Code::Unauthenticated,
                "this provider token was already exchanged; get a fresh one from the provider",
                reason,
                ErrorDetails::new(),
            ),
            Error::PermissionDenied => status(
                Code::PermissionDenied,
                "permission denied",
                reason,
                ErrorDetails::new(),
            ),
            Error::NotFound => status(Code::NotFound, "not found", reason, ErrorDetails::new()),
            Error::AlreadyExists(what) => status(
                Code::AlreadyExists,
                format!("{what} already in use"),
                reason,
                ErrorDetails::new(),
            ),
            Error::StaleEtag => status(
                Code::Aborted,
                "the resource changed since it was read; read it again and retry",
                reason,
                ErrorDetails::new(),
            ),
            Error::FailedPrecondition(what) => {
                status(Code::FailedPrecondition, what, reason, ErrorDetails::new())
            }
            // Which cap, by its setting: a verifier's operator learns
            // whether to spread its watchers or ask for a higher cap.
            Error::Busy {
                retry_after,
                cause: Exhausted::Watchers(cap),
            } => status(
                Code::ResourceExhausted,
                format!(
                    "too many WatchRevocations streams: {} reached; close one or retry later",
                    cap.setting()
                ),
                reason,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            Error::Busy { retry_after, .. } => status(
                Code::ResourceExhausted,
                "too many requests; retry later",
                reason,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            // ABORTED: retrying at once (resuming from the last cursor) is
            // right, unlike RESOURCE_EXHAUSTED's back-off.
            Error::WatcherTooSlow => status(
                Code::Aborted,
                "this watcher fell too far behind; resume from the last cursor received",
                reason,
                ErrorDetails::new(),
            ),
            Error::Unavailable => status(
                Code::Unavailable,
                "service temporarily unavailable; retry later",
                reason,
                ErrorDetails::new(),
            ),
            // The RPC exists; this server is configured without it.
            Error::NotEnabled(what) => status(
                Code::FailedPrecondition,
                format!("{what} is not configured on this server (set IDENTITY_PROVIDER_JWKS_URL)"),
                reason,
                ErrorDetails::new(),
            ),
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                status(
                    Code::Internal,
                    "internal error",
                    reason,
                    ErrorDetails::new(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests;
