//! Account and privilege takeover, tried as an attacker would: the
//! bootstrap-admin email taken by a stranger, a login with the old password
//! racing ChangePassword, and roles that ValidateToken reports after an
//! admin took them away.

use crate::on_both_backends;
use crate::support::{
    ADMIN, Backend, PASSWORD, Server, ServerOptions, TestDb, bearer, email, login, register,
    register_profile,
};
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use prost_types::FieldMask;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

on_both_backends!(
    a_stranger_registering_the_bootstrap_email_after_the_operator_moved_is_not_admin,
    a_listed_email_registering_while_an_admin_exists_is_not_admin,
    concurrent_registrations_of_listed_emails_make_exactly_one_admin,
    a_login_racing_change_password_never_keeps_a_session,
    a_login_racing_change_email_never_keeps_a_session,
    validate_token_answers_the_roles_the_profile_has_now,
    an_access_token_alone_cannot_change_the_login_email,
    change_email_needs_the_password_and_ends_every_other_session,
    change_email_is_throttled_and_tells_taken_emails_only_to_the_owner,
    self_deletion_needs_the_current_password_and_admins_delete_without_it,
    guesses_through_login_and_change_password_share_one_budget,
);

fn server_with_admins(db: &TestDb, admins: &[&str]) -> Server {
    Server::start_with_options(
        db,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", admins.join(",")),
    )
}

fn is_admin(registered: &RegisterResponse) -> bool {
    registered
        .profile
        .as_ref()
        .expect("a profile")
        .roles
        .iter()
        .any(|r| r == ADMIN)
}

fn access(registered: &RegisterResponse) -> String {
    registered
        .tokens
        .as_ref()
        .expect("tokens")
        .access_token
        .clone()
}

async fn update_profile(
    profiles: &mut ProfileServiceClient<Channel>,
    token: &str,
    profile: UserProfile,
    paths: &[&str],
) -> Result<UserProfile, tonic::Status> {
    profiles
        .update_profile(bearer(
            token,
            UpdateProfileRequest {
                profile: Some(profile),
                update_mask: Some(FieldMask {
                    paths: paths.iter().map(|p| (*p).to_owned()).collect(),
                }),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn can_list_profiles(profiles: &mut ProfileServiceClient<Channel>, token: &str) -> Code {
    match profiles
        .list_profiles(bearer(token, ListProfilesRequest::default()))
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

async fn a_stranger_registering_the_bootstrap_email_after_the_operator_moved_is_not_admin(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let ops = email("ops");
    let server = server_with_admins(&db, &[&ops]);
    let mut auth = server.auth().await;
    let mut profiles = ProfileServiceClient::new(server.channel().await);

    let operator = register_profile(&mut auth, &ops).await;
    assert!(is_admin(&operator), "the operator is the first admin");
    let profile = operator.profile.clone().unwrap();
    let moved = update_profile(
        &mut profiles,
        &access(&operator),
        UserProfile {
            id: profile.id.clone(),
            etag: profile.etag.clone(),
            email: email("ops-new"),
            ..Default::default()
        },
        &["email"],
    )
    .await
    .expect("an admin moves to a new email");
    assert_ne!(moved.email, ops);

    // The listed address is free again: a stranger takes it.
    let stranger = register_profile(&mut auth, &ops).await;
    assert!(
        !is_admin(&stranger),
        "a listed email registered while an admin exists must not be admin"
    );
    assert_eq!(
        can_list_profiles(&mut profiles, &access(&stranger)).await,
        Code::PermissionDenied,
        "the stranger cannot list profiles"
    );
    assert_eq!(
        can_list_profiles(&mut profiles, &access(&operator)).await,
        Code::Ok,
        "the operator still can"
    );
}

async fn a_listed_email_registering_while_an_admin_exists_is_not_admin(backend: Backend) {
    let db = TestDb::new(backend);
    let (first, second) = (email("ops-a"), email("ops-b"));
    let server = server_with_admins(&db, &[&first, &second]);
    let mut auth = server.auth().await;
    assert!(is_admin(&register_profile(&mut auth, &first).await));
    assert!(
        !is_admin(&register_profile(&mut auth, &second).await),
        "only the first listed email to register becomes admin; grant-role adds more"
    );
}

async fn concurrent_registrations_of_listed_emails_make_exactly_one_admin(backend: Backend) {
    let db = TestDb::new(backend);
    let listed: Vec<String> = (0..8).map(|i| email(&format!("ops{i}"))).collect();
    let refs: Vec<&str> = listed.iter().map(String::as_str).collect();
    let server = server_with_admins(&db, &refs);
    let channel = server.channel().await;
    let racers = listed.iter().cloned().map(|address| {
        let mut auth = AuthServiceClient::new(channel.clone());
        tokio::spawn(async move { register_profile(&mut auth, &address).await })
    });
    let mut admins = 0;
    for racer in racers.collect::<Vec<_>>() {
        if is_admin(&racer.await.unwrap()) {
            admins += 1;
        }
    }
    assert_eq!(admins, 1, "racing listed emails make exactly one admin");
}

/// What the owner changes while the attacker logs in with the old login.
#[derive(Clone, Copy)]
enum Change {
    Password,
    Email,
}

/// The attacker knows the old password and logs in again and again while
/// the owner changes it. Whatever the interleaving, once ChangePassword has
/// answered no session made with the old password may still work.
async fn a_login_racing_change_password_never_keeps_a_session(backend: Backend) {
    logins_racing(backend, Change::Password).await
}

/// The same with ChangeEmail: a login by the old email that was verified
/// before the change must not outlive it ("every other session ends").
async fn a_login_racing_change_email_never_keeps_a_session(backend: Backend) {
    logins_racing(backend, Change::Email).await
}

async fn logins_racing(backend: Backend, what: Change) {
    let db = TestDb::new(backend);
    let server = Server::start_with_options(
        &db, // A real cost, so that verification takes long enough to race.
        ServerOptions::default()
            .env("IDENTITY_BCRYPT_COST", "10")
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32"),
    );
    let channel = server.channel().await;
    let mut owner = AuthServiceClient::new(channel.clone());
    let mut attacker_sessions = Vec::new();
    // At least 3 rounds, and more (up to 8) until some login has won the
    // race: on a loaded machine the change may finish before any started.
    for round in 0..8 {
        if round >= 3 && !attacker_sessions.is_empty() {
            break;
        }
        let address = email(&format!("racer{round}"));
        let owner_tokens = register(&mut owner, &address).await;
        let change = {
            let mut owner = owner.clone();
            let token = owner_tokens.access_token.clone();
            tokio::spawn(async move {
                match what {
                    Change::Password => owner
                        .change_password(bearer(
                            &token,
                            ChangePasswordRequest {
                                current_password: PASSWORD.into(),
                                new_password: "a brand new passphrase for round".into(),
                            },
                        ))
                        .await
                        .map(drop),
                    Change::Email => change_email(&mut owner, &token, PASSWORD, &email("moved"))
                        .await
                        .map(drop),
                }
            })
        };
        let logins: Vec<_> = (0..12u64)
            .map(|i| {
                let mut attacker = AuthServiceClient::new(channel.clone());
                let address = address.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(i * 25)).await;
                    // From elsewhere: the attacker's attempts in flight
                    // must not throttle the owner's own change.
                    attacker
                        .login(crate::support::forwarded_for(
                            "203.0.113.9",
                            LoginRequest {
                                email: address,
                                password: PASSWORD.into(),
                                ..Default::default()
                            },
                        ))
                        .await
                })
            })
            .collect();
        change.await.unwrap().expect("the owner's change succeeds");
        for attempt in logins {
            if let Ok(answer) = attempt.await.unwrap() {
                attacker_sessions.push(answer.into_inner().tokens.expect("tokens"));
            }
        }
        // The change is in force: the old login no longer works.
        let late = owner
            .login(LoginRequest {
                email: address.clone(),
                password: PASSWORD.into(),
                ..Default::default()
            })
            .await;
        assert!(late.is_err(), "the old login is refused after the change");
    }
    assert!(
        !attacker_sessions.is_empty(),
        "some logins ran before the change: the race was run, not skipped"
    );
    let mut auth = AuthServiceClient::new(channel);
    for tokens in &attacker_sessions {
        assert!(
            !crate::support::active(&mut auth, &tokens.access_token).await,
            "a session made with the old login outlived the change"
        );
        let refreshed = auth
            .refresh(RefreshRequest {
                refresh_token: tokens.refresh_token.clone(),
            })
            .await;
        assert_eq!(
            refreshed.map(|_| ()).unwrap_err().code(),
            Code::Unauthenticated,
            "a session made with the old login refreshes after the change"
        );
    }
}

async fn validate_token_answers_the_roles_the_profile_has_now(backend: Backend) {
    let db = TestDb::new(backend);
    let ops = email("ops");
    let server = server_with_admins(&db, &[&ops]);
    let mut auth = server.auth().await;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let operator = register_profile(&mut auth, &ops).await;
    let admin_token = access(&operator);

    let ann_email = email("ann");
    let ann = register_profile(&mut auth, &ann_email).await;
    let ann_profile = ann.profile.clone().unwrap();
    let granted = update_profile(
        &mut profiles,
        &admin_token,
        UserProfile {
            id: ann_profile.id.clone(),
            etag: ann_profile.etag.clone(),
            roles: vec!["billing".into()],
            ..Default::default()
        },
        &["roles"],
    )
    .await
    .expect("the admin grants a role");
    let ann_token = login(&mut auth, &ann_email).await.access_token;
    let roles = |answer: ValidateTokenResponse| {
        assert!(answer.active);
        answer.roles
    };
    let validate = |token: String| {
        let mut auth = auth.clone();
        async move {
            auth.validate_token(ValidateTokenRequest {
                access_token: token,
            })
            .await
            .expect("ValidateToken answers")
            .into_inner()
        }
    };
    assert_eq!(roles(validate(ann_token.clone()).await), ["billing"]);

    update_profile(
        &mut profiles,
        &admin_token,
        UserProfile {
            id: granted.id.clone(),
            etag: granted.etag.clone(),
            roles: vec![],
            ..Default::default()
        },
        &["roles"],
    )
    .await
    .expect("the admin takes the role away");
    assert_eq!(
        roles(validate(ann_token).await),
        Vec::<String>::new(),
        "ValidateToken must not report a role the profile no longer has"
    );
}

async fn change_email(
    auth: &mut AuthServiceClient<Channel>,
    token: &str,
    current_password: &str,
    new_email: &str,
) -> Result<(), tonic::Status> {
    auth.change_email(bearer(
        token,
        ChangeEmailRequest {
            current_password: current_password.into(),
            new_email: new_email.into(),
        },
    ))
    .await
    .map(drop)
}

async fn logs_in(auth: &mut AuthServiceClient<Channel>, address: &str) -> bool {
    auth.login(LoginRequest {
        email: address.to_owned(),
        password: PASSWORD.into(),
        ..Default::default()
    })
    .await
    .is_ok()
}

/// A stolen access token must not be enough to take the account over by
/// moving its login to the attacker's address (nor to probe which
/// addresses are taken).
async fn an_access_token_alone_cannot_change_the_login_email(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let victim_email = email("victim");
    let victim = register_profile(&mut auth, &victim_email).await;
    let taken = email("taken");
    register_profile(&mut auth, &taken).await;
    let stolen = access(&victim);
    let profile = victim.profile.clone().unwrap();
    for target in [email("attacker"), taken] {
        let refused = update_profile(
            &mut profiles,
            &stolen,
            UserProfile {
                id: profile.id.clone(),
                etag: profile.etag.clone(),
                email: target,
                ..Default::default()
            },
            &["email"],
        )
        .await
        .expect_err("UpdateProfile must not rename the login");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused.message().contains("ChangeEmail"),
            "the answer names the way that works: {refused:?}"
        );
    }
    assert!(
        logs_in(&mut auth, &victim_email).await,
        "the login is unchanged"
    );
}

async fn change_email_needs_the_password_and_ends_every_other_session(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let old = email("mover");
    let first = register(&mut auth, &old).await;
    let second = login(&mut auth, &old).await;
    let new = email("moved");

    let wrong = change_email(&mut auth, &second.access_token, "not the password", &new)
        .await
        .expect_err("a wrong password changes nothing");
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let invalid = change_email(&mut auth, &second.access_token, PASSWORD, "not an email")
        .await
        .expect_err("a malformed email is refused");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(invalid.message().contains("new_email"), "{invalid:?}");

    change_email(&mut auth, &second.access_token, PASSWORD, &new)
        .await
        .expect("the owner changes the email with the password");
    assert!(logs_in(&mut auth, &new).await, "the new email logs in");
    assert!(
        !logs_in(&mut auth, &old).await,
        "the old email no longer does"
    );
    assert!(
        crate::support::active(&mut auth, &second.access_token).await,
        "the session that changed the email stays"
    );
    assert!(
        !crate::support::active(&mut auth, &first.access_token).await,
        "every other session ends"
    );
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let me = profiles
        .get_profile(bearer(
            &second.access_token,
            GetProfileRequest { id: "me".into() },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.email, new, "the profile shows the new email");
    assert!(
        server.logs().contains("\"identity.email.changed\""),
        "the change is a security event"
    );
}

async fn change_email_is_throttled_and_tells_taken_emails_only_to_the_owner(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let owner = email("owner");
    let token = register(&mut auth, &owner).await.access_token;
    let taken = email("taken");
    register_profile(&mut auth, &taken).await;

    // Guessing the password through ChangeEmail: like Login, a few free
    // failures, then RESOURCE_EXHAUSTED with RetryInfo. A taken address is
    // never revealed without the password.
    let mut codes = Vec::new();
    for _ in 0..12 {
        let status = change_email(&mut auth, &token, "wrong guess", &taken)
            .await
            .expect_err("a wrong password never succeeds");
        assert_ne!(status.code(), Code::AlreadyExists, "{status:?}");
        if status.code() == Code::ResourceExhausted {
            use tonic_types::StatusExt as _;
            assert!(status.get_details_retry_info().is_some(), "{status:?}");
        }
        codes.push(status.code());
    }
    assert!(
        codes.contains(&Code::ResourceExhausted),
        "12 wrong passwords in a row are throttled: {codes:?}"
    );
}

async fn self_deletion_needs_the_current_password_and_admins_delete_without_it(backend: Backend) {
    let db = TestDb::new(backend);
    let ops = email("ops");
    let server = server_with_admins(&db, &[&ops]);
    let mut auth = server.auth().await;
    let profiles = ProfileServiceClient::new(server.channel().await);
    let admin = register_profile(&mut auth, &ops).await;
    let delete = |token: String, id: String, current_password: &str| {
        let mut profiles = profiles.clone();
        let current_password = current_password.to_owned();
        async move {
            profiles
                .delete_profile(bearer(
                    &token,
                    DeleteProfileRequest {
                        id,
                        etag: String::new(),
                        current_password,
                    },
                ))
                .await
                .map(drop)
        }
    };

    let ann = register_profile(&mut auth, &email("ann")).await;
    let ann_id = ann.profile.clone().unwrap().id;
    let missing = delete(access(&ann), "me".into(), "").await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");
    assert!(
        missing.message().contains("current_password"),
        "{missing:?}"
    );
    let wrong = delete(access(&ann), "me".into(), "not the password")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated, "{wrong:?}");
    delete(access(&ann), "me".into(), PASSWORD)
        .await
        .expect("the owner deletes the account with the password");
    assert_eq!(
        profiles
            .clone()
            .get_profile(bearer(&access(&admin), GetProfileRequest { id: ann_id }))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let bob = register_profile(&mut auth, &email("bob")).await;
    delete(access(&admin), bob.profile.unwrap().id, "")
        .await
        .expect("an admin deletes a profile without its password");
}

/// With a stolen access token, an attacker must not double his guesses by
/// alternating Login and ChangePassword: one account, one budget.
async fn guesses_through_login_and_change_password_share_one_budget(backend: Backend) {
    let db = TestDb::new(backend);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let owner = email("budget");
    let stolen = register(&mut auth, &owner).await.access_token;
    for n in 0..5 {
        let refused = auth
            .login(LoginRequest {
                email: owner.clone(),
                password: format!("login guess {n}"),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "free guess {n}");
    }
    let sixth = auth
        .change_password(bearer(
            &stolen,
            ChangePasswordRequest {
                current_password: "the sixth guess".into(),
                new_password: "an attacker's new passphrase".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        sixth.code(),
        Code::ResourceExhausted,
        "the sixth guess waits, whichever RPC it comes through: {sixth:?}"
    );
}
