//! ProfileService's authorization rules, driven through `Profiles` over
//! SQLite (`service::testing`): owners act on their own profile, admins on
//! anyone's, and someone else's profile is NOT_FOUND to a non-admin.

use super::{NewProfile, ProfilePatch};
use crate::service::audit_trail::AuditTrail;
use crate::service::testing::{Options, PASSWORD, Services, secret};
use crate::service::{Error, Principal};
use identity_store::{Id, Profile};
use std::sync::Arc;

/// An admin (bootstrapped), a user and the user's access token.
struct World {
    services: Services,
    admin: Principal,
    user: Principal,
    user_profile: Profile,
    user_tokens: crate::service::IssuedTokens,
}

async fn world() -> World {
    let services = Services::with(Options {
        bootstrap_admins: vec!["root@example.com".into()],
        ..Options::default()
    })
    .await;
    let (_, admin_tokens) = services.register("root@example.com").await;
    let (user_profile, user_tokens) = services.register("ada@example.com").await;
    World {
        admin: services.principal(&admin_tokens).await,
        user: services.principal(&user_tokens).await,
        user_profile,
        user_tokens,
        services,
    }
}

fn mask(paths: &[&str]) -> Vec<String> {
    paths.iter().map(|p| (*p).to_owned()).collect()
}

fn roles(roles: &[&str]) -> ProfilePatch {
    ProfilePatch {
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..ProfilePatch::default()
    }
}

#[tokio::test]
async fn a_non_admin_cannot_list_profiles() {
    let w = world().await;
    let listed = w.services.profiles.list(&w.user, 0, "", "").await;
    assert!(
        matches!(listed, Err(Error::PermissionDenied)),
        "{:?}",
        listed.err()
    );
    let (rows, next) = w
        .services
        .profiles
        .list(&w.admin, 0, "", "")
        .await
        .expect("an admin lists");
    assert_eq!(rows.len(), 2);
    assert!(next.is_empty());
}

#[tokio::test]
async fn someone_elses_profile_is_not_found_for_a_non_admin() {
    let w = world().await;
    let profiles = &w.services.profiles;
    let others = w.admin.profile_id.to_string();
    let nobody = Id::new().to_string();
    for id in [&others, &nobody] {
        let got = profiles.get(&w.user, id).await;
        assert!(matches!(got, Err(Error::NotFound)), "{:?}", got.err());
    }
    let updated = profiles
        .update(
            &w.user,
            &others,
            "v1",
            ProfilePatch {
                display_name: "Mallory".into(),
                ..ProfilePatch::default()
            },
            &mask(&["display_name"]),
        )
        .await;
    assert!(
        matches!(updated, Err(Error::NotFound)),
        "{:?}",
        updated.err()
    );
    let own = profiles.get(&w.user, "me").await.expect("own profile");
    assert_eq!(own.id, w.user.profile_id);
    let seen = profiles
        .get(&w.admin, &w.user.profile_id.to_string())
        .await
        .expect("an admin reads anyone");
    assert_eq!(seen.email.as_deref(), Some("ada@example.com"));
}

#[tokio::test]
async fn a_non_admin_cannot_change_roles_not_even_its_own() {
    let w = world().await;
    let refused = w
        .services
        .profiles
        .update(&w.user, "me", "v1", roles(&["admin"]), &mask(&["roles"]))
        .await;
    assert!(
        matches!(refused, Err(Error::PermissionDenied)),
        "{:?}",
        refused.err()
    );
    let stored = w.services.profiles.get(&w.user, "me").await.unwrap();
    assert!(stored.roles.is_empty());
    assert_eq!(stored.revision, 1);
}

#[tokio::test]
async fn an_admin_grants_a_role_that_validation_reports_at_once() {
    let w = world().await;
    let id = w.user_profile.id.to_string();
    let updated = w
        .services
        .profiles
        .update(&w.admin, &id, "v1", roles(&["editor"]), &mask(&["roles"]))
        .await
        .expect("an admin changes roles");
    assert_eq!(updated.roles, ["editor"]);
    let claims = w.services.claims(&w.user_tokens).await.unwrap();
    assert_eq!(
        claims.roles,
        ["editor"],
        "the roles held now, not those signed into the token"
    );
}

#[tokio::test]
async fn an_owner_updates_its_profile_only_with_the_current_etag() {
    let w = world().await;
    let profiles = &w.services.profiles;
    let patch = |name: &str| ProfilePatch {
        display_name: name.into(),
        locale: "de-CH".into(),
        ..ProfilePatch::default()
    };
    let paths = mask(&["display_name", "locale"]);
    let updated = profiles
        .update(&w.user, "me", "v1", patch("Ada L."), &paths)
        .await
        .expect("updated");
    assert_eq!(updated.display_name, "Ada L.");
    assert_eq!(updated.locale, "de-CH");
    assert_eq!(updated.etag(), "v2");

    let stale = profiles
        .update(&w.user, "me", "v1", patch("Lost update"), &paths)
        .await;
    assert!(matches!(stale, Err(Error::StaleEtag)), "{:?}", stale.err());

    let Err(Error::Invalid(violations)) = profiles
        .update(&w.user, "me", "", patch("x"), &mask(&["created_at"]))
        .await
    else {
        panic!("an unknown path and a missing etag are invalid input");
    };
    let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
    assert!(fields.contains(&"update_mask"), "{fields:?}");
    assert!(fields.contains(&"profile.etag"), "{fields:?}");
}

#[tokio::test]
async fn a_password_accounts_login_email_is_not_changed_by_update_profile() {
    let w = world().await;
    let refused = w
        .services
        .profiles
        .update(
            &w.user,
            "me",
            "v1",
            ProfilePatch {
                email: "mallory@example.com".into(),
                ..ProfilePatch::default()
            },
            &mask(&["email"]),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::FailedPrecondition(_))),
        "{:?}",
        refused.err()
    );
    w.services
        .login("ada@example.com", PASSWORD)
        .await
        .expect("the login email is unchanged");
}

#[tokio::test]
async fn deleting_ones_own_password_account_needs_the_password() {
    let w = world().await;
    let profiles = &w.services.profiles;
    let Err(Error::Invalid(violations)) = profiles.delete(&w.user, "me", "", secret("")).await
    else {
        panic!("the current password is required");
    };
    assert_eq!(violations[0].field, "current_password");
    let wrong = profiles
        .delete(&w.user, "me", "", secret("not-the-password-at-all"))
        .await;
    assert!(
        matches!(wrong, Err(Error::InvalidCredentials)),
        "{:?}",
        wrong.err()
    );

    profiles
        .delete(&w.user, "me", "v1", secret(PASSWORD))
        .await
        .expect("deleted");
    assert!(
        w.services.claims(&w.user_tokens).await.is_none(),
        "the deleted account's sessions end with it"
    );
    let login = w.services.login("ada@example.com", PASSWORD).await;
    assert!(
        matches!(login, Err(Error::InvalidCredentials)),
        "{:?}",
        login.err()
    );
}

#[tokio::test]
async fn only_admins_create_profiles_and_each_external_identity_once() {
    let w = world().await;
    let profiles = &w.services.profiles;
    let new = || NewProfile {
        auth_provider: "better-auth".into(),
        auth_id: "user-1".into(),
        patch: ProfilePatch {
            display_name: "Grace".into(),
            ..ProfilePatch::default()
        },
    };
    let refused = profiles.create(&w.user, new()).await;
    assert!(
        matches!(refused, Err(Error::PermissionDenied)),
        "{:?}",
        refused.err()
    );
    let created = profiles.create(&w.admin, new()).await.expect("created");
    assert_eq!(created.auth_id, "user-1");
    let again = profiles.create(&w.admin, new()).await;
    assert!(
        matches!(
            again,
            Err(Error::AlreadyExists("auth_provider and auth_id"))
        ),
        "{:?}",
        again.err()
    );
}

#[tokio::test]
async fn only_admins_read_the_audit_trail() {
    let w = world().await;
    let trail = AuditTrail::new(
        w.services.store.clone(),
        Arc::clone(&w.services.keys),
        Arc::clone(&w.services.profiles),
    );
    let refused = trail.list(&w.user, 0, "", "").await;
    assert!(
        matches!(refused, Err(Error::PermissionDenied)),
        "{:?}",
        refused.err()
    );
    let filter = format!(
        r#"event_name="identity.register.succeeded" AND profile_id="{}""#,
        w.user.profile_id
    );
    let (rows, _) = trail
        .list(&w.admin, 0, "", &filter)
        .await
        .expect("an admin reads the trail");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].session_id, Some(w.user.session_id));
}
