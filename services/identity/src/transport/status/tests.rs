use super::*;
use identity_core::FieldViolation;
use std::collections::BTreeSet;
use std::time::Duration;

/// One value of every `Error` variant. The match below has no wildcard: a
/// new variant does not compile until it is listed here, and then the
/// tests below hold it to the documented reasons.
fn every_error() -> Vec<Error> {
    let all = vec![
        Error::Invalid(vec![FieldViolation {
            field: "email".into(),
            description: "is required".into(),
        }]),
        Error::InvalidCredentials,
        Error::Unauthenticated,
        Error::TokenAlreadyExchanged,
        Error::PermissionDenied,
        Error::NotFound,
        Error::AlreadyExists("email"),
        Error::StaleEtag,
        Error::FailedPrecondition("use ChangeEmail"),
        Error::Busy {
            retry_after: Duration::from_secs(1),
            cause: Exhausted::RateLimited,
        },
        Error::Busy {
            retry_after: Duration::from_secs(1),
            cause: Exhausted::Throttled,
        },
        Error::Busy {
            retry_after: Duration::from_secs(1),
            cause: Exhausted::Overloaded,
        },
        Error::Busy {
            retry_after: Duration::from_secs(1),
            cause: Exhausted::Watchers(crate::service::watch::Cap::Address),
        },
        Error::Unavailable,
        Error::NotEnabled("ExchangeToken"),
        Error::WatcherTooSlow,
        Error::Internal("boom".into()),
    ];
    for error in &all {
        match error {
            Error::Invalid(_)
            | Error::InvalidCredentials
            | Error::Unauthenticated
            | Error::TokenAlreadyExchanged
            | Error::PermissionDenied
            | Error::NotFound
            | Error::AlreadyExists(_)
            | Error::StaleEtag
            | Error::FailedPrecondition(_)
            | Error::Unavailable
            | Error::NotEnabled(_)
            | Error::WatcherTooSlow
            | Error::Internal(_) => {}
            Error::Busy { cause, .. } => match cause {
                Exhausted::RateLimited
                | Exhausted::Throttled
                | Exhausted::Overloaded
                | Exhausted::Watchers(_) => {}
            },
        }
    }
    all
}

/// The (code, reason) rows of the README's table of error reasons.
fn documented_reasons() -> BTreeSet<(String, String)> {
    let readme = include_str!("../../../../../README.md");
    let start = readme
        .find("<!-- error-reasons -->")
        .expect("the README marks its table of error reasons");
    readme[start..]
        .lines()
        .skip(1)
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').to_owned();
            (unquote(cells[1]), unquote(cells[2]))
        })
        .collect()
}

fn code_name(code: Code) -> String {
    // Code's Debug is CamelCase (`ResourceExhausted`); the README uses the
    // canonical upper snake case of the gRPC spec.
    let mut name = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

#[test]
fn the_readme_documents_exactly_the_reasons_the_server_answers() {
    let answered: BTreeSet<(String, String)> = REASONS
        .iter()
        .map(|(code, reason)| (code_name(*code), (*reason).to_owned()))
        .collect();
    assert_eq!(documented_reasons(), answered);
}

#[test]
fn every_error_carries_a_documented_reason_in_the_identity_domain() {
    let documented: BTreeSet<(i32, &str)> = REASONS.iter().map(|(c, r)| (*c as i32, *r)).collect();
    for error in every_error() {
        let case = format!("{error:?}");
        let status = Status::from(error);
        let info = status
            .get_details_error_info()
            .unwrap_or_else(|| panic!("{case}: no ErrorInfo"));
        assert_eq!(info.domain, "identity", "{case}");
        assert!(
            documented.contains(&(status.code() as i32, info.reason.as_str())),
            "{case}: {:?} {} is not in the README's table",
            status.code(),
            info.reason
        );
    }
}

#[test]
fn the_four_causes_of_resource_exhausted_are_told_apart() {
    let mut reasons: BTreeSet<String> = every_error()
        .into_iter()
        .map(Status::from)
        .filter(|s| s.code() == Code::ResourceExhausted)
        .map(|s| s.get_details_error_info().unwrap().reason)
        .collect();
    reasons.insert(reason_for_code(Code::ResourceExhausted).to_owned());
    let too_large = details_header(Code::ResourceExhausted, "x", reason::MESSAGE_TOO_LARGE);
    assert!(too_large.is_some());
    reasons.insert(reason::MESSAGE_TOO_LARGE.to_owned());
    assert_eq!(
        reasons,
        BTreeSet::from(
            [
                "RATE_LIMITED",
                "LOGIN_THROTTLED",
                "OVERLOADED",
                "MESSAGE_TOO_LARGE"
            ]
            .map(String::from)
        )
    );
}

#[test]
fn statuses_built_outside_the_mapping_carry_documented_reasons() {
    let documented: BTreeSet<(i32, &str)> = REASONS.iter().map(|(c, r)| (*c as i32, *r)).collect();
    for status in [malformed("LoginRequest.email: invalid string"), timeout()] {
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert!(documented.contains(&(status.code() as i32, info.reason.as_str())));
    }
    for code in [
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ] {
        let reason = reason_for_code(code);
        assert!(
            REASONS.iter().any(|(_, r)| *r == reason),
            "{code:?} falls back to the undocumented {reason}"
        );
    }
}

#[test]
fn the_details_header_decodes_to_error_info() {
    use base64::Engine as _;
    let header = details_header(Code::Unimplemented, "no such method", reason::UNIMPLEMENTED)
        .expect("a header value");
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(header.as_bytes())
        .unwrap();
    let status = Status::with_details(Code::Unimplemented, "no such method", bytes.into());
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.reason, "UNIMPLEMENTED");
    assert_eq!(info.domain, "identity");
}

#[test]
fn one_unauthenticated_text_for_every_credential_failure() {
    for error in [Error::InvalidCredentials, Error::Unauthenticated] {
        assert_eq!(Status::from(error).message(), UNAUTHENTICATED);
    }
}

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
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        reason::FIELD_INVALID
    );
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
    assert_eq!(info.reason, reason::TOKEN_ALREADY_EXCHANGED);
    assert_eq!(info.domain, ERROR_DOMAIN);
}

#[test]
fn shed_calls_carry_retry_info() {
    let status = Status::from(Error::Busy {
        retry_after: Duration::from_secs(2),
        cause: Exhausted::Overloaded,
    });
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(
        status.get_details_retry_info().unwrap().retry_delay,
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "OVERLOADED"
    );
}

#[test]
fn a_watcher_turned_away_is_told_which_cap_by_its_setting() {
    use crate::service::watch::Cap;
    for cap in [Cap::Server, Cap::Address, Cap::Principal] {
        let status = Status::from(Error::Busy {
            retry_after: Duration::from_secs(1),
            cause: Exhausted::Watchers(cap),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains(cap.setting()), "{status:?}");
        let info = status.get_details_error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("OVERLOADED", ERROR_DOMAIN)
        );
        assert!(status.get_details_retry_info().is_some());
    }
    // Each names its own: none is a prefix of another's message by accident.
    let message = |cap| {
        Status::from(Error::Busy {
            retry_after: Duration::from_secs(1),
            cause: Exhausted::Watchers(cap),
        })
        .message()
        .to_owned()
    };
    assert!(!message(Cap::Server).contains("_PER_"));
}
