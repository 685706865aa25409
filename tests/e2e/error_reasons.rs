//! Every error a caller can meet carries a `google.rpc.ErrorInfo` in the
//! domain `identity` whose reason tells the causes apart (README, "Errors
//! callers can tell apart"): each is provoked here over a real socket.

use crate::support::proxy::Proxy;
use crate::support::*;
use http::{HeaderValue, Method};
use identity::proto::v1::audit_service_client::AuditServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use std::time::Duration;
use tonic::Code;
use tonic_types::StatusExt as _;

/// `status` has `code` and the ErrorInfo of `reason` in domain `identity`.
#[track_caller]
fn assert_reason(status: &tonic::Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{reason}: {status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("{reason}: no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "identity", "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_names_its_reason_in_the_identity_domain() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_MAX_MESSAGE_BYTES", "4096"),
    );
    let channel = server.channel().await;
    let mut auth = server.auth().await;
    let mut profiles = ProfileServiceClient::new(channel.clone());
    let address = email("reasons");
    let tokens = register(&mut auth, &address).await;

    // FIELD_INVALID: ValidateToken without a token names the field.
    let status = auth
        .validate_token(ValidateTokenRequest {
            access_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_invalid(&status, "access_token", "empty access_token");
    assert_reason(&status, Code::InvalidArgument, "FIELD_INVALID");

    // MALFORMED_REQUEST: from the codec (a string of invalid UTF-8) and
    // from tonic itself (a truncated frame), fixed up on the way out.
    for (_case, body) in [
        ("invalid UTF-8", frame(&[0x0a, 0x01, 0xff])),
        ("truncated frame", frame(b"\x0a\x05ab")[..6].to_vec()),
    ] {
        let answer = raw_call(
            &channel,
            Method::POST,
            "/identity.v1.AuthService/Login",
            &[],
            body,
        )
        .await
        .unwrap();
        assert_reason(&answer.status(), Code::InvalidArgument, "MALFORMED_REQUEST");
    }

    // MESSAGE_TOO_LARGE: tonic's limit, answered RESOURCE_EXHAUSTED.
    let status = auth
        .register(RegisterRequest {
            email: email("large"),
            password: PASSWORD.into(),
            display_name: "x".repeat(8192),
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::ResourceExhausted, "MESSAGE_TOO_LARGE");

    // UNIMPLEMENTED: tonic's answer to a method nobody serves.
    let answer = raw_call(
        &channel,
        Method::POST,
        "/identity.v1.AuthService/NoSuchMethod",
        &[("content-type", HeaderValue::from_static("application/grpc"))],
        frame(b""),
    )
    .await
    .unwrap();
    assert_reason(&answer.status(), Code::Unimplemented, "UNIMPLEMENTED");

    // INVALID_CREDENTIALS: a wrong password (the same text as any token).
    let status = auth
        .login(login_request(&address, "wrong password entirely"))
        .await
        .unwrap_err();
    assert_reason(&status, Code::Unauthenticated, "INVALID_CREDENTIALS");
    let wrong_password_text = status.message().to_owned();

    // TOKEN_INVALID: from the authentication layer (no bearer, a forged
    // one) and from Refresh.
    let status = profiles
        .get_profile(GetProfileRequest { id: "me".into() })
        .await
        .unwrap_err();
    assert_reason(&status, Code::Unauthenticated, "TOKEN_INVALID");
    assert_eq!(
        status.message(),
        wrong_password_text,
        "one UNAUTHENTICATED text"
    );
    let status = profiles
        .get_profile(bearer("not.a.token", GetProfileRequest { id: "me".into() }))
        .await
        .unwrap_err();
    assert_reason(&status, Code::Unauthenticated, "TOKEN_INVALID");
    let status = auth
        .refresh(RefreshRequest {
            refresh_token: "unknown".into(),
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::Unauthenticated, "TOKEN_INVALID");

    // PERMISSION_DENIED: ListProfiles and ListAuditEvents without admin.
    let status = profiles
        .list_profiles(bearer(&tokens.access_token, ListProfilesRequest::default()))
        .await
        .unwrap_err();
    assert_reason(&status, Code::PermissionDenied, "PERMISSION_DENIED");
    let status = AuditServiceClient::new(channel.clone())
        .list_audit_events(bearer(
            &tokens.access_token,
            ListAuditEventsRequest::default(),
        ))
        .await
        .unwrap_err();
    assert_reason(&status, Code::PermissionDenied, "PERMISSION_DENIED");

    // NOT_FOUND.
    let status = profiles
        .get_profile(bearer(
            &tokens.access_token,
            GetProfileRequest { id: random_id() },
        ))
        .await
        .unwrap_err();
    assert_reason(&status, Code::NotFound, "NOT_FOUND");

    // ALREADY_EXISTS: the email is taken.
    let status = auth
        .register(RegisterRequest {
            email: address.clone(),
            password: PASSWORD.into(),
            display_name: String::new(),
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::AlreadyExists, "ALREADY_EXISTS");

    // ETAG_MISMATCH and FAILED_PRECONDITION: UpdateProfile.
    let me = profiles
        .get_profile(bearer(
            &tokens.access_token,
            GetProfileRequest { id: "me".into() },
        ))
        .await
        .unwrap()
        .into_inner();
    let update = |profile: UserProfile, path: &str| {
        bearer(
            &tokens.access_token,
            UpdateProfileRequest {
                profile: Some(profile),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec![path.into()],
                }),
            },
        )
    };
    let stale = UserProfile {
        display_name: "Ann".into(),
        etag: "v999".into(),
        ..me.clone()
    };
    let status = profiles
        .update_profile(update(stale, "display_name"))
        .await
        .unwrap_err();
    assert_reason(&status, Code::Aborted, "ETAG_MISMATCH");
    let renamed = UserProfile {
        email: email("renamed"),
        ..me.clone()
    };
    let status = profiles
        .update_profile(update(renamed, "email"))
        .await
        .unwrap_err();
    assert_reason(&status, Code::FailedPrecondition, "FAILED_PRECONDITION");

    // NOT_CONFIGURED: ExchangeToken on a server without a provider.
    let status = auth
        .exchange_token(ExchangeTokenRequest {
            subject_token: "a.b.c".into(),
            subject_token_type: "urn:ietf:params:oauth:token-type:jwt".into(),
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::FailedPrecondition, "NOT_CONFIGURED");

    // LOGIN_THROTTLED: past the five free failures of one client (one is
    // spent above).
    let mut throttled = None;
    for _ in 0..7 {
        match auth
            .login(login_request(&address, "wrong password entirely"))
            .await
        {
            Err(status) if status.code() == Code::ResourceExhausted => {
                throttled = Some(status);
                break;
            }
            Err(status) => assert_reason(&status, Code::Unauthenticated, "INVALID_CREDENTIALS"),
            Ok(_) => panic!("a wrong password signed in"),
        }
    }
    let status = throttled.expect("the sixth failure is throttled");
    assert_reason(&status, Code::ResourceExhausted, "LOGIN_THROTTLED");
    assert!(status.get_details_retry_info().is_some(), "{status:?}");
    // The health service's own NOT_FOUND (a library's answer) too: a
    // server without a provider does not register `identity.provider`.
    let status = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "identity.provider".into(),
        })
        .await
        .unwrap_err();
    assert_reason(&status, Code::NotFound, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_load_shedding_answer_reasons_of_their_own() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_VALIDATE", "3/1m")
            .env("IDENTITY_BCRYPT_COST", "13"),
    );
    let mut auth = server.auth().await;
    let address = email("exhausted");
    register(&mut auth, &address).await;

    // RATE_LIMITED: the fourth ValidateToken within the minute.
    let mut limited = None;
    for _ in 0..4 {
        if let Err(status) = auth
            .validate_token(ValidateTokenRequest {
                access_token: "x".into(),
            })
            .await
        {
            limited = Some(status);
        }
    }
    let status = limited.expect("the validate quota of 3 a minute is met");
    assert_reason(&status, Code::ResourceExhausted, "RATE_LIMITED");
    assert!(status.get_details_retry_info().is_some(), "{status:?}");

    // OVERLOADED: a hash that cannot finish before the caller's deadline
    // (cost 13 takes about half a second) is shed at once, well before it.
    let mut request = tonic::Request::new(login_request(&address, PASSWORD));
    request.set_timeout(Duration::from_millis(200));
    let status = auth.login(request).await.unwrap_err();
    assert_reason(&status, Code::ResourceExhausted, "OVERLOADED");
    assert!(status.get_details_retry_info().is_some(), "{status:?}");

    // LOGIN_THROTTLED and MESSAGE_TOO_LARGE: in the test above (cost 13
    // hashes outlast the throttle's first delays).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_unavailable_with_its_reason() {
    let db = TestDb::new(Backend::Postgres);
    identity_store::Store::migrate(&db.url.parse().unwrap())
        .await
        .unwrap();
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let server = Server::start_with(
        &db.url_via(proxy.addr),
        db.dir.path(),
        ServerOptions::default().env("IDENTITY_MIGRATE_ON_START", "false"),
    );
    let mut auth = server.auth().await;
    proxy.cut();
    let status = auth
        .login(login_request(&email("outage"), PASSWORD))
        .await
        .unwrap_err();
    assert_reason(&status, Code::Unavailable, "UNAVAILABLE");
}
