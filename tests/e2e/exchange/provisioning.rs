//! Provisioning by the provider's sign-up hook, with a provisioner service
//! token: role-less external profiles only, never a reserved provider name.

use super::*;
use crate::support::better_auth::BetterAuthOptions;
use crate::support::{bearer, issue_service_token, register};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_up_hook_provisions_profiles_with_a_provisioner_token() {
    let db = TestDb::new(Backend::Postgres);
    let admin_email = email("admin");
    let plain = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", admin_email.clone()),
    );
    let mut auth = plain.auth().await;
    // Without a provider, ExchangeToken is off.
    let status = exchange(&mut auth, "a.b.c").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("IDENTITY_PROVIDER_JWKS_URL"),
        "{status:?}"
    );

    let service_token = issue_service_token(&db, "provisioner");
    assert_eq!(service_token.split('.').count(), 3, "a JWT on stdout alone");

    // The service token is an ordinary, valid access token of role provisioner.
    let validated = auth
        .validate_token(ValidateTokenRequest {
            access_token: service_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(validated.active);
    assert_eq!(validated.auth_provider, "service");
    assert_eq!(validated.roles, ["provisioner"]);

    // It may create role-less external profiles, nothing more.
    let mut client = profiles(&plain).await;
    let create = |profile: UserProfile| {
        bearer(
            &service_token,
            CreateProfileRequest {
                profile: Some(profile),
            },
        )
    };
    for (case, profile) in [
        (
            "roles",
            UserProfile {
                auth_provider: "better-auth".into(),
                auth_id: "sneaky".into(),
                roles: vec!["admin".into()],
                ..Default::default()
            },
        ),
        (
            "local provider",
            UserProfile {
                auth_provider: "local".into(),
                auth_id: "x".into(),
                ..Default::default()
            },
        ),
        (
            "service provider",
            UserProfile {
                auth_provider: "service".into(),
                auth_id: "x".into(),
                ..Default::default()
            },
        ),
    ] {
        let status = client.create_profile(create(profile)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{case}: {status:?}");
    }
    let status = client
        .list_profiles(bearer(&service_token, ListProfilesRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Better-Auth's databaseHooks.user.create.after calls CreateProfile.
    let provider = BetterAuth::start_with(
        BetterAuthOptions::default()
            .env("BA_IDENTITY_URL", plain.url())
            .env("BA_IDENTITY_TOKEN", service_token.clone()),
    );
    let user = signed_up(&provider, "Hooked User").await;
    let admin = register(&mut auth, &admin_email).await.access_token;
    let mut hooked = None;
    for _ in 0..50 {
        match client
            .lookup_profile(bearer(
                &admin,
                LookupProfileRequest {
                    auth_provider: "better-auth".into(),
                    auth_id: user.id.clone(),
                },
            ))
            .await
        {
            Ok(found) => {
                hooked = Some(found.into_inner());
                break;
            }
            Err(s) if s.code() == Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(s) => panic!("{s:?}"),
        }
    }
    let hooked = hooked.unwrap_or_else(|| {
        panic!(
            "the hook created no profile; provider logs:\n{}",
            provider.logs()
        )
    });
    assert_eq!(hooked.email, user.email);
    assert_eq!(hooked.display_name, "Hooked User");
    drop(plain);

    // Restarted with the provider configured, the user's exchange finds the
    // hook's profile. The token is minted first: Better-Auth makes its
    // signing key on first use, and the server's start-up JWKS fetch should
    // see it rather than wait out the refetch interval.
    let token = provider.token(&user).await;
    let server = identity(&db, &provider, "1s");
    let mut auth = server.auth().await;
    let done = exchange(&mut auth, &token)
        .await
        .unwrap_or_else(|e| panic!("exchange after the hook: {e:?}\n{}", server.logs()));
    assert!(!done.created, "the hook created it already");
    assert_eq!(done.profile.unwrap().id, hooked.id);

    // Logout with the service token as bearer revokes it.
    auth.logout(bearer(&service_token, LogoutRequest::default()))
        .await
        .unwrap();
    let status = profiles(&server)
        .await
        .create_profile(bearer(
            &service_token,
            CreateProfileRequest {
                profile: Some(UserProfile {
                    auth_provider: "better-auth".into(),
                    auth_id: "after-revocation".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// `Local` or `SERVICE` is not `local` to this service, but it is to a
/// reader, a dashboard or a consumer that compares without case: a
/// provisioner (or a provider configuration) must not mint such profiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_provider_names_are_reserved_in_any_case() {
    let db = TestDb::new(Backend::Sqlite);
    let admin_email = email("admin");
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", admin_email.clone()),
    );
    let provisioner = issue_service_token(&db, "provisioner");
    let admin = register(&mut server.auth().await, &admin_email)
        .await
        .access_token;
    let mut client = profiles(&server).await;
    for name in ["Local", "SERVICE", " local", "lOcAl"] {
        let profile = || UserProfile {
            auth_provider: name.into(),
            auth_id: "x".into(),
            ..Default::default()
        };
        let status = client
            .create_profile(bearer(
                &provisioner,
                CreateProfileRequest {
                    profile: Some(profile()),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "provisioner {name:?}: {status:?}"
        );
        let status = client
            .create_profile(bearer(
                &admin,
                CreateProfileRequest {
                    profile: Some(profile()),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "admin {name:?}: {status:?}"
        );
        assert!(
            status.message().contains("profile.auth_provider"),
            "{status:?}"
        );
    }
    client
        .create_profile(bearer(
            &provisioner,
            CreateProfileRequest {
                profile: Some(UserProfile {
                    auth_provider: "better-auth".into(),
                    auth_id: "fine".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("an external provider's profile");
}
