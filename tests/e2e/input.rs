//! Invalid input is INVALID_ARGUMENT naming the field, and stores nothing.

use crate::on_both_backends;
use crate::support::violated_fields;
use crate::support::{Backend, PASSWORD, Server, TestDb, email};
use identity::proto::v1::*;
use tonic::Code;

on_both_backends!(
    non_ascii_passphrases_register_and_log_in,
    each_invalid_field_is_named_and_nothing_is_stored,
    oversized_messages_are_refused_and_the_server_stays_up
);

async fn each_invalid_field_is_named_and_nothing_is_stored(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let good = email("input");
    let register = |email: &str, password: &str, name: &str| RegisterRequest {
        email: email.into(),
        password: password.into(),
        display_name: name.into(),
    };
    let cases = [
        ("empty email", register("", PASSWORD, ""), "email"),
        (
            "malformed email",
            register("not-an-email", PASSWORD, ""),
            "email",
        ),
        (
            "oversized email",
            register(&format!("{}@example.com", "a".repeat(300)), PASSWORD, ""),
            "email",
        ),
        (
            "control character in email",
            register("a\u{7}b@example.com", PASSWORD, ""),
            "email",
        ),
        ("empty password", register(&good, "", ""), "password"),
        ("short password", register(&good, "seven77", ""), "password"),
        (
            "73-byte password",
            register(&good, &"p".repeat(73), ""),
            "password",
        ),
        (
            "control character in password",
            register(&good, "pass\u{0}word123", ""),
            "password",
        ),
        (
            "oversized display name",
            register(&good, PASSWORD, &"n".repeat(101)),
            "display_name",
        ),
        (
            "control character in display name",
            register(&good, PASSWORD, "Ann\u{1b}[31m"),
            "display_name",
        ),
    ];
    for (name, request, field) in cases {
        let status = auth.register(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name}");
        assert_eq!(violated_fields(&status), [field], "{name}");
    }
    let status = auth
        .register(register(&good, &"p".repeat(73), ""))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("72 bytes"),
        "the refusal names the limit: {}",
        status.message()
    );
    assert!(
        !status.message().contains(&"p".repeat(20)),
        "never echoes the password"
    );

    // Several bad fields at once are all named.
    let status = auth
        .register(register("x", "short", "\u{0}"))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["email", "password", "display_name"]
    );

    // None of the refused registrations left anything behind.
    let login = auth
        .login(LoginRequest {
            email: good.clone(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(login.code(), Code::Unauthenticated);
    let tokens = auth
        .register(register(&good, PASSWORD, "Ann"))
        .await
        .expect("the email is still free")
        .into_inner()
        .tokens
        .unwrap();

    // No stored password is longer than 72 bytes, so a longer current
    // password is named, not run through bcrypt, and changes nothing.
    let status = auth
        .change_password(crate::support::bearer(
            &tokens.access_token,
            ChangePasswordRequest {
                current_password: "p".repeat(73),
                new_password: "a different long passphrase".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["current_password"]);

    // Refresh, validate and login inputs are bounded too.
    let status = auth
        .refresh(RefreshRequest {
            refresh_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["refresh_token"]);
    let status = auth
        .refresh(RefreshRequest {
            refresh_token: "x".repeat(1000),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["refresh_token"]);
    auth.login(LoginRequest {
        email: good.clone(),
        password: PASSWORD.into(),
        ..Default::default()
    })
    .await
    .expect("the password did not change");
    let status = auth
        .login(LoginRequest {
            email: good,
            password: "p".repeat(73),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["password"]);
    let inactive = auth
        .validate_token(ValidateTokenRequest {
            access_token: "x".repeat(60_000),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!inactive.active);
}

async fn oversized_messages_are_refused_and_the_server_stays_up(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let huge = RegisterRequest {
        email: email("huge"),
        password: PASSWORD.into(),
        display_name: "x".repeat(1 << 20),
    };
    let status = auth.register(huge).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{status:?}"
    );
    auth.register(RegisterRequest {
        email: email("after"),
        password: PASSWORD.into(),
        display_name: String::new(),
    })
    .await
    .expect("still serving");
}

async fn non_ascii_passphrases_register_and_log_in(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    // Five Cyrillic words with spaces: 30 characters, 56 bytes in UTF-8.
    let passphrase = "морской ветер поёт маяку ночью";
    assert!(passphrase.len() <= 72, "{} bytes", passphrase.len());
    let address = email("unicode");
    auth.register(RegisterRequest {
        email: address.clone(),
        password: passphrase.into(),
        display_name: "Анна".into(),
    })
    .await
    .expect("a non-ASCII passphrase is accepted");
    auth.login(LoginRequest {
        email: address.clone(),
        password: passphrase.into(),
        ..Default::default()
    })
    .await
    .expect("and logs in byte for byte");
    let wrong = auth
        .login(LoginRequest {
            email: address,
            password: passphrase.replace('ё', "е"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        wrong.code(),
        Code::Unauthenticated,
        "no silent folding of characters"
    );
}
