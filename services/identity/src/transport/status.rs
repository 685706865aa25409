//! The one mapping from service errors to gRPC statuses. Messages are
//! generic: they never say which of email or password was wrong and never
//! carry a database error.

use crate::service::Error;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `google.rpc.ErrorInfo` reason of a replayed provider token.
pub const TOKEN_ALREADY_EXCHANGED: &str = "TOKEN_ALREADY_EXCHANGED";
/// `google.rpc.ErrorInfo` reason of a WatchRevocations stream ended for
/// falling behind.
pub const WATCHER_TOO_SLOW: &str = "WATCHER_TOO_SLOW";
/// `google.rpc.ErrorInfo` domain of this service's reasons.
pub const ERROR_DOMAIN: &str = "identity.v1";

impl From<Error> for Status {
    fn from(error: Error) -> Status {
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
                Status::with_error_details(
                    Code::InvalidArgument,
                    format!("invalid request: {summary}"),
                    details,
                )
            }
            Error::InvalidCredentials => Status::unauthenticated("invalid email or password"),
            Error::Unauthenticated => {
                Status::unauthenticated("missing, invalid or expired credentials")
            }
            // Said plainly: only the token's holder can learn it, and a
            // legitimate client must know to get a fresh provider token
            // rather than retry this one.
            Error::TokenAlreadyExchanged => Status::with_error_details(
                Code::Unauthenticated,
                "this provider token was already exchanged; get a fresh one from the provider",
                ErrorDetails::with_error_info(
                    TOKEN_ALREADY_EXCHANGED,
                    ERROR_DOMAIN,
                    std::collections::HashMap::<String, String>::new(),
                ),
            ),
            Error::PermissionDenied => Status::permission_denied("permission denied"),
            Error::NotFound => Status::not_found("not found"),
            Error::AlreadyExists(what) => Status::already_exists(format!("{what} already in use")),
            Error::StaleEtag => {
                Status::aborted("the resource changed since it was read; read it again and retry")
            }
            Error::FailedPrecondition(what) => Status::failed_precondition(what),
            Error::Busy { retry_after } => Status::with_error_details(
                Code::ResourceExhausted,
                "too many requests; retry later",
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            // ABORTED: retrying at once (resuming from the last cursor) is
            // right, unlike RESOURCE_EXHAUSTED's back-off.
            Error::WatcherTooSlow => Status::with_error_details(
                Code::Aborted,
                "this watcher fell too far behind; resume from the last cursor received",
                ErrorDetails::with_error_info(
                    WATCHER_TOO_SLOW,
                    ERROR_DOMAIN,
                    std::collections::HashMap::<String, String>::new(),
                ),
            ),
            Error::Unavailable => {
                Status::unavailable("service temporarily unavailable; retry later")
            }
            // The RPC exists; this server is configured without it.
            Error::NotEnabled(what) => Status::failed_precondition(format!(
                "{what} is not configured on this server (set IDENTITY_PROVIDER_JWKS_URL)"
            )),
            Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity_core::FieldViolation;

    #[test]
    fn invalid_input_names_each_field_in_bad_request_details() {
        let status = Status::from(Error::Invalid(vec![
            FieldViolation {
                field: "email".into(),
                description: "is required".into(),
            },
            FieldViolation {
                field: "password".into(),
                description: "too short".into(),
            },
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<_> = status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["email", "password"]);
    }

    #[test]
    fn internal_errors_do_not_leak_their_detail() {
        let status = Status::from(Error::Internal(
            "relation \"profiles\" does not exist".into(),
        ));
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn a_replayed_provider_token_says_so_in_error_info() {
        let status = Status::from(Error::TokenAlreadyExchanged);
        assert_eq!(status.code(), Code::Unauthenticated);
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, TOKEN_ALREADY_EXCHANGED);
        assert_eq!(info.domain, ERROR_DOMAIN);
    }

    #[test]
    fn shed_calls_carry_retry_info() {
        let status = Status::from(Error::Busy {
            retry_after: std::time::Duration::from_secs(2),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status.get_details_retry_info().unwrap().retry_delay,
            Some(std::time::Duration::from_secs(2))
        );
    }
}
