//! The password policy: weak passwords are refused with the reason, and a
//! raised bcrypt cost rehashes at the next login.

use super::*;

fn violation(status: &tonic::Status) -> (String, String) {
    let bad = status
        .get_details_bad_request()
        .expect("BadRequest details");
    let v = &bad.field_violations[0];
    (v.field.clone(), v.description.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_passwords_are_refused_with_the_reason_and_raised_costs_rehash_at_login() {
    let db = TestDb::new(Backend::Postgres);
    let mut options = ServerOptions::default();
    options
        .env
        .push(("IDENTITY_BCRYPT_COST".into(), "4".into()));
    let server = Server::start_with_options(&db, options);
    let mut auth = server.auth().await;
    let cases = [
        ("password123", "too easy to guess"),
        ("qwertyuiop", "too easy to guess"),
        ("ann.lee-strong-passphrase", "email"),
        ("short", "at least 8 characters"),
        (&*"x7".repeat(37), "72 bytes"),
    ];
    for (password, reason) in cases {
        let status = auth
            .register(RegisterRequest {
                email: "ann.lee@example.com".into(),
                password: password.into(),
                display_name: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{password}");
        let (field, description) = violation(&status);
        assert_eq!(field, "password");
        assert!(description.contains(reason), "{password}: {description}");
    }

    let address = email("rehash");
    let tokens = register(&mut auth, &address).await;
    let weak = bearer(
        &tokens.access_token,
        ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: "password1".into(),
        },
    );
    let status = auth.change_password(weak).await.unwrap_err();
    assert_eq!(violation(&status).0, "new_password");

    let stored_cost = || pg_text(&db, "SELECT substr(password_hash, 1, 7) FROM credentials");
    assert_eq!(stored_cost(), "$2b$04$");
    drop(auth);
    assert!(server.terminate().success());
    let mut options = ServerOptions::default();
    options
        .env
        .push(("IDENTITY_BCRYPT_COST".into(), "5".into()));
    let server = Server::start_with_options(&db, options);
    server
        .auth()
        .await
        .login(login_request(&address, PASSWORD))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            stored_cost() == "$2b$05$"
        })
        .await,
        "the hash is upgraded to the new cost at login"
    );
}
