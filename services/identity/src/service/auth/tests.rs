//! Registration, login, refresh, logout and password change, driven
//! through `Auth` itself over SQLite (`service::testing`): no server, no
//! gRPC.

use crate::service::Caller;
use crate::service::Error;
use crate::service::profiles::ADMIN_ROLE;
use crate::service::testing::{NEW_PASSWORD, Options, PASSWORD, Services, caller, secret};
use secrecy::ExposeSecret;
use std::task::Poll;

/// Asserts that `result` failed with `pattern`, showing the error if not.
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        assert!(matches!($result, Err($pattern)), "{:?}", $result.err())
    };
}

/// The fields an `Error::Invalid` names.
fn invalid_fields(error: &Error) -> Vec<&str> {
    match error {
        Error::Invalid(violations) => violations.iter().map(|v| v.field.as_str()).collect(),
        other => panic!("expected invalid input, got {other:?}"),
    }
}

#[tokio::test]
async fn register_then_login_issues_tokens_that_validate() {
    let services = Services::start().await;
    let (profile, registered) = services.register("ada@example.com").await;
    assert_eq!(profile.auth_provider, "local");
    assert_eq!(profile.email.as_deref(), Some("ada@example.com"));

    let claims = services.claims(&registered).await.expect("a valid token");
    assert_eq!(claims.sub, profile.id.to_string());
    assert_eq!(claims.sid, registered.session_id.to_string());

    let logged_in = services
        .login("ada@example.com", PASSWORD)
        .await
        .expect("the registered password logs in");
    assert_ne!(
        logged_in.session_id, registered.session_id,
        "a login starts a session of its own"
    );
    let claims = services.claims(&logged_in).await.expect("a valid token");
    assert_eq!(claims.sub, profile.id.to_string());
    assert_eq!(claims.sid, logged_in.session_id.to_string());
}

#[tokio::test]
async fn registration_names_every_invalid_field() {
    let services = Services::start().await;
    let refused = services
        .auth
        .register(&caller(), "not-an-email", secret("password"), "Ada")
        .await
        .err()
        .expect("refused");
    let fields = invalid_fields(&refused);
    assert!(fields.contains(&"email"), "{fields:?}");
    assert!(fields.contains(&"password"), "{fields:?}");
}

#[tokio::test]
async fn a_taken_email_cannot_register_again() {
    let services = Services::start().await;
    services.register("ada@example.com").await;
    let again = services
        .auth
        .register(&caller(), "ada@EXAMPLE.com", secret(NEW_PASSWORD), "Other")
        .await;
    assert!(
        matches!(again, Err(Error::AlreadyExists("email"))),
        "{:?}",
        again.err()
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_counts_toward_the_throttle() {
    let services = Services::start().await;
    services.register("ada@example.com").await;
    // The free failures of one client (identity_core::throttle).
    for _ in 0..5 {
        let wrong = services.login("ada@example.com", NEW_PASSWORD).await;
        assert_err!(wrong, Error::InvalidCredentials);
    }
    let throttled = services.login("ada@example.com", PASSWORD).await;
    match throttled {
        Err(Error::Busy {
            retry_after,
            cause: crate::service::Exhausted::Throttled,
        }) => assert!(!retry_after.is_zero()),
        other => panic!(
            "even the right password must wait now, got {:?}",
            other.err()
        ),
    }
    // Counted per client: the owner elsewhere is not locked out.
    let elsewhere = Caller {
        client_addr: Some("198.51.100.7".into()),
        ..Caller::default()
    };
    services
        .auth
        .login(&elsewhere, "ada@example.com", secret(PASSWORD), "")
        .await
        .expect("another address logs in");
}

#[tokio::test]
async fn an_unknown_email_is_refused_like_a_wrong_password() {
    let services = Services::start().await;
    let unknown = services.login("nobody@example.com", PASSWORD).await;
    assert_err!(unknown, Error::InvalidCredentials);
}

#[tokio::test]
async fn change_password_revokes_every_other_session() {
    let services = Services::start().await;
    let (_, current) = services.register("ada@example.com").await;
    let other = services.login("ada@example.com", PASSWORD).await.unwrap();
    let owner = services.principal(&current).await;

    services
        .auth
        .change_password(&owner, secret(PASSWORD), secret(NEW_PASSWORD))
        .await
        .expect("password changed");

    assert!(
        services.claims(&other).await.is_none(),
        "the other session's access token is refused at once"
    );
    let refreshed = services.refresh(other.refresh_token.expose_secret()).await;
    assert_err!(refreshed, Error::Unauthenticated);
    assert!(
        services.claims(&current).await.is_some(),
        "the session that changed the password goes on"
    );
    let old = services.login("ada@example.com", PASSWORD).await;
    assert_err!(old, Error::InvalidCredentials);
    services
        .login("ada@example.com", NEW_PASSWORD)
        .await
        .expect("the new password logs in");
}

#[tokio::test]
async fn change_password_with_a_wrong_current_password_changes_nothing() {
    let services = Services::start().await;
    let (_, current) = services.register("ada@example.com").await;
    let other = services.login("ada@example.com", PASSWORD).await.unwrap();
    let owner = services.principal(&current).await;

    let refused = services
        .auth
        .change_password(
            &owner,
            secret("not-the-password-at-all"),
            secret(NEW_PASSWORD),
        )
        .await;
    assert_err!(refused, Error::InvalidCredentials);
    assert!(services.claims(&other).await.is_some());
    services
        .login("ada@example.com", PASSWORD)
        .await
        .expect("the password is unchanged");
}

/// A login reads the credential and verifies the password, then starts its
/// session. A password change committed in between must win: the login is
/// refused, not given a session on the strength of the old password after
/// every session was revoked. The login is held between the two steps by
/// not polling it while its verification waits on the bcrypt pool's one
/// thread, behind a slow job put there first.
#[tokio::test]
async fn a_login_verified_before_change_password_never_keeps_a_session() {
    let services = Services::with(Options {
        bcrypt_threads: 1,
        ..Options::default()
    })
    .await;
    let slow = tokio::task::spawn_blocking(|| bcrypt::hash("slow", 10).unwrap())
        .await
        .unwrap();
    // A test thread descheduled for longer than the slow job misses the
    // moment; each miss is retried with a fresh account.
    for attempt in 0..3 {
        let email = format!("ada{attempt}@example.com");
        let (_, current) = services.register(&email).await;
        let owner = services.principal(&current).await;

        let mut slow_job = Box::pin(services.hasher.verify(
            secret("slow"),
            Some(slow.clone()),
            None,
        ));
        assert!(futures::poll!(slow_job.as_mut()).is_pending());
        let mut login = Box::pin(services.login(&email, PASSWORD));
        let held = loop {
            match futures::poll!(login.as_mut()) {
                Poll::Ready(_) => break false,
                Poll::Pending if services.hasher.queued() >= 2 => break true,
                Poll::Pending => tokio::task::yield_now().await,
            }
        };
        if !held {
            continue;
        }

        services
            .auth
            .change_password(&owner, secret(PASSWORD), secret(NEW_PASSWORD))
            .await
            .expect("password changed while the login was verifying");
        let login = login.await;
        assert!(
            matches!(login, Err(Error::InvalidCredentials)),
            "a login verified against the old password must not succeed: {:?}",
            login.map(|t| t.session_id)
        );
        let (sessions, _) = services
            .auth
            .list_sessions(&owner, "me", 0, "")
            .await
            .expect("sessions listed");
        let live: Vec<_> = sessions.iter().map(|s| s.id).collect();
        assert_eq!(
            live,
            vec![owner.session_id],
            "only the session that changed the password is live"
        );
        return;
    }
    panic!("the login's verification was never caught waiting on the bcrypt pool");
}

#[tokio::test]
async fn refresh_rotates_and_the_successor_works() {
    let services = Services::start().await;
    let (profile, first) = services.register("ada@example.com").await;

    let second = services
        .refresh(first.refresh_token.expose_secret())
        .await
        .expect("refreshed");
    assert_ne!(
        second.refresh_token.expose_secret(),
        first.refresh_token.expose_secret(),
        "each refresh hands out a new refresh token"
    );
    assert_eq!(second.session_id, first.session_id);
    let claims = services.claims(&second).await.expect("a valid token");
    assert_eq!(claims.sub, profile.id.to_string());
    assert_eq!(claims.sid, first.session_id.to_string());

    let third = services
        .refresh(second.refresh_token.expose_secret())
        .await
        .expect("the successor refreshes");
    assert_eq!(third.session_id, first.session_id);
}

#[tokio::test]
async fn a_refresh_retried_within_the_grace_answers_the_same_successor() {
    let services = Services::start().await;
    let (_, first) = services.register("ada@example.com").await;
    let spent = first.refresh_token.expose_secret();

    let answered = services.refresh(spent).await.expect("refreshed");
    // The answer was lost; the client retries with the token it still has.
    let retried = services.refresh(spent).await.expect("retried");
    assert_eq!(
        retried.refresh_token.expose_secret(),
        answered.refresh_token.expose_secret(),
        "a retry gets the successor the lost answer carried"
    );
    assert!(
        services.claims(&retried).await.is_some(),
        "and a working access token"
    );
    services
        .refresh(retried.refresh_token.expose_secret())
        .await
        .expect("the session lives on");
}

#[tokio::test]
async fn a_spent_token_presented_after_its_successor_was_used_ends_the_session() {
    let services = Services::start().await;
    let (_, first) = services.register("ada@example.com").await;
    let spent = first.refresh_token.expose_secret();
    let second = services.refresh(spent).await.expect("refreshed");
    let third = services
        .refresh(second.refresh_token.expose_secret())
        .await
        .expect("the successor refreshes");

    // Inside the grace, but the successor is spent: only a thief or a
    // broken client holds the old token now.
    let replay = services.refresh(spent).await;
    assert_err!(replay, Error::Unauthenticated);
    assert!(
        services.claims(&third).await.is_none(),
        "the whole session ended"
    );
}

#[tokio::test]
async fn with_no_grace_the_first_replay_ends_the_session() {
    let services = Services::with(Options {
        refresh_reuse_grace: std::time::Duration::ZERO,
        ..Options::default()
    })
    .await;
    let (_, first) = services.register("ada@example.com").await;
    let spent = first.refresh_token.expose_secret();
    let second = services.refresh(spent).await.expect("refreshed");
    let replay = services.refresh(spent).await;
    assert_err!(replay, Error::Unauthenticated);
    assert!(
        services.claims(&second).await.is_none(),
        "the whole session ended"
    );
}

#[tokio::test]
async fn an_unknown_or_missing_refresh_token_is_refused() {
    let services = Services::start().await;
    let unknown = services.refresh("an-unknown-refresh-token").await;
    assert_err!(unknown, Error::Unauthenticated);
    let missing = services.refresh("").await.err().unwrap();
    assert_eq!(invalid_fields(&missing), ["refresh_token"]);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let services = Services::start().await;
    let (_, tokens) = services.register("ada@example.com").await;
    let other = services.login("ada@example.com", PASSWORD).await.unwrap();

    services
        .auth
        .logout(&caller(), tokens.refresh_token.expose_secret(), None)
        .await
        .expect("logged out");
    assert!(services.claims(&tokens).await.is_none());
    let refreshed = services.refresh(tokens.refresh_token.expose_secret()).await;
    assert_err!(refreshed, Error::Unauthenticated);
    assert!(
        services.claims(&other).await.is_some(),
        "only that session ends"
    );
}

#[tokio::test]
async fn logout_with_only_the_access_token_ends_its_session() {
    let services = Services::start().await;
    let (_, tokens) = services.register("ada@example.com").await;
    services
        .auth
        .logout(&caller(), "", Some(tokens.access_token.expose_secret()))
        .await
        .expect("logged out");
    assert!(services.claims(&tokens).await.is_none());
    // Unknown refresh tokens succeed quietly (RFC 7009).
    services
        .auth
        .logout(&caller(), "an-unknown-refresh-token", None)
        .await
        .expect("nothing to end is no error");
}

#[tokio::test]
async fn bootstrap_admin_only_while_no_admin_exists() {
    let services = Services::with(Options {
        bootstrap_admins: vec!["root@example.com".into(), "second@example.com".into()],
        ..Options::default()
    })
    .await;
    let (stranger, _) = services.register("ada@example.com").await;
    assert!(stranger.roles.is_empty(), "an unlisted email is no admin");

    let (root, tokens) = services.register("root@example.com").await;
    assert_eq!(root.roles, [ADMIN_ROLE]);
    let claims = services.claims(&tokens).await.unwrap();
    assert_eq!(claims.roles, [ADMIN_ROLE]);

    let (second, tokens) = services.register("second@example.com").await;
    assert!(
        second.roles.is_empty(),
        "listed, but an admin exists already: {:?}",
        second.roles
    );
    assert!(services.claims(&tokens).await.unwrap().roles.is_empty());
}
