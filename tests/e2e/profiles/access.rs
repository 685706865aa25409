//! Who reaches which profile: owners themselves, admins anyone, and another
//! user's profile looks exactly like one that does not exist.

use super::*;
use crate::on_both_backends;
use crate::support::{assert_same_as_missing, random_id};
use std::collections::HashSet;
use tonic::Code;

on_both_backends!(
    only_listed_emails_register_as_admins,
    owners_read_themselves_by_id_as_me_and_by_lookup,
    another_users_profile_looks_exactly_like_a_missing_one,
    listing_and_creating_profiles_are_admin_only,
    an_owner_cannot_grant_itself_admin,
    admins_read_look_up_list_and_change_any_profile,
);

async fn only_listed_emails_register_as_admins(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin_token = w.admin.tokens.access_token.clone();
    let claims = w.validate(&admin_token).await;
    assert!(
        claims.roles.iter().any(|r| r == ADMIN),
        "the bootstrap admin's tokens carry the role: {claims:?}"
    );

    let ann_account = w.register("ann").await;
    assert!(
        !has_role(&ann_account.profile, ADMIN),
        "only listed emails become admins"
    );
    let ann_token = ann_account.tokens.access_token.clone();
    assert!(
        !w.validate(&ann_token)
            .await
            .roles
            .iter()
            .any(|r| r == ADMIN)
    );
}

async fn owners_read_themselves_by_id_as_me_and_by_lookup(backend: Backend) {
    let mut w = World::start(backend).await;
    let ann_account = w.register("ann").await;
    let ann = w.caller(&ann_account.tokens.access_token);
    let ann_id = ann_account.profile.id.clone();

    // The owner reads itself by id, as `me`, and by (local, id).
    let me = ann.get("me").await.expect("GetProfile(me)");
    assert_eq!(me.id, ann_id);
    assert_eq!(me.auth_provider, "local");
    assert_eq!(me.auth_id, ann_id, "a local account's auth_id is its id");
    assert_eq!(me.email, ann_account.email);
    assert!(!me.etag.is_empty(), "profiles carry an etag");
    assert_eq!(ann.get(&ann_id).await.unwrap(), me);
    assert_eq!(ann.lookup("local", &ann_id).await.unwrap(), me);
}

async fn another_users_profile_looks_exactly_like_a_missing_one(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let ann_account = w.register("ann").await;
    let bob_account = w.register("bob").await;
    let ann = w.caller(&ann_account.tokens.access_token);
    let bob_id = bob_account.profile.id.clone();

    // Bob's profile, as the admin sees it before Ann tries anything.
    let bob_before = admin.get(&bob_id).await.expect("admin reads bob");

    // Ann cannot see Bob, and cannot tell Bob from nobody.
    assert_same_as_missing(
        ann.get(&bob_id).await.unwrap_err(),
        ann.get(&random_id()).await.unwrap_err(),
        "GetProfile",
    );
    assert_same_as_missing(
        ann.lookup("local", &bob_id).await.unwrap_err(),
        ann.lookup("local", &random_id()).await.unwrap_err(),
        "LookupProfile",
    );
    let hijack = |id: &str| UserProfile {
        id: id.to_owned(),
        etag: bob_before.etag.clone(),
        display_name: "Hijacked".into(),
        email: email("hijack"),
        ..Default::default()
    };
    assert_same_as_missing(
        ann.update(hijack(&bob_id), &["display_name"])
            .await
            .unwrap_err(),
        ann.update(hijack(&random_id()), &["display_name"])
            .await
            .unwrap_err(),
        "UpdateProfile(display_name)",
    );
    assert_same_as_missing(
        ann.update(hijack(&bob_id), &["email"]).await.unwrap_err(),
        ann.update(hijack(&random_id()), &["email"])
            .await
            .unwrap_err(),
        "UpdateProfile(email)",
    );
    assert_same_as_missing(
        ann.delete(&bob_id, &bob_before.etag).await.unwrap_err(),
        ann.delete(&random_id(), &bob_before.etag)
            .await
            .unwrap_err(),
        "DeleteProfile with etag",
    );
    assert_same_as_missing(
        ann.delete(&bob_id, "").await.unwrap_err(),
        ann.delete(&random_id(), "").await.unwrap_err(),
        "DeleteProfile without etag",
    );
    assert_eq!(
        admin.get(&bob_id).await.expect("bob survived"),
        bob_before,
        "nothing Ann tried changed Bob"
    );
}

async fn listing_and_creating_profiles_are_admin_only(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let ann_account = w.register("ann").await;
    let ann = w.caller(&ann_account.tokens.access_token);

    // Listing and creating are admin-only.
    let status = ann.list(0, "", "").await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = ann
        .list(10, "", r#"auth_provider="local""#)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = ann
        .create(external("test-idp", "made-by-ann"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        admin
            .lookup("test-idp", "made-by-ann")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

async fn an_owner_cannot_grant_itself_admin(backend: Backend) {
    let mut w = World::start(backend).await;
    let ann_account = w.register("ann").await;
    let ann_token = ann_account.tokens.access_token.clone();
    let ann = w.caller(&ann_token);
    let me = ann.get("me").await.expect("GetProfile(me)");

    // Ann cannot grant herself admin, alone or hidden behind another path.
    for paths in [&["roles"][..], &["display_name", "roles"][..]] {
        let grab = UserProfile {
            display_name: "Ann The Admin".into(),
            roles: vec![ADMIN.into()],
            ..target(&me)
        };
        let status = ann.update(grab.clone(), paths).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{paths:?}: {status:?}"
        );
        let status = ann
            .update(
                UserProfile {
                    id: "me".into(),
                    ..grab
                },
                paths,
            )
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{paths:?}: {status:?}"
        );
    }
    assert_eq!(
        ann.get("me").await.unwrap(),
        me,
        "the refusals changed nothing"
    );
    assert!(
        !w.validate(&ann_token)
            .await
            .roles
            .iter()
            .any(|r| r == ADMIN)
    );
}

async fn admins_read_look_up_list_and_change_any_profile(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let ann_account = w.register("ann").await;
    let bob_account = w.register("bob").await;
    let ann = w.caller(&ann_account.tokens.access_token);
    let ann_id = ann_account.profile.id.clone();
    let bob_id = bob_account.profile.id.clone();
    let ann_now = ann.get("me").await.expect("GetProfile(me)");
    let bob_before = admin.get(&bob_id).await.expect("admin reads bob");

    // The admin reads, looks up, lists and changes anyone.
    assert_eq!(admin.get(&ann_id).await.unwrap(), ann_now);
    assert_eq!(admin.lookup("local", &bob_id).await.unwrap(), bob_before);
    let listed: HashSet<String> = admin
        .list_all(0, "")
        .await
        .into_iter()
        .map(|p| p.id)
        .collect();
    for id in [&w.admin.profile.id, &ann_id, &bob_id] {
        assert!(listed.contains(id), "the admin's listing misses {id}");
    }
    let bob_email = email("bob.renamed");
    let bob_after = admin
        .update(
            UserProfile {
                display_name: "Bob By Admin".into(),
                email: bob_email.clone(),
                roles: vec!["support".into(), "billing".into()],
                ..target(&bob_before)
            },
            &["display_name", "email", "roles"],
        )
        .await
        .expect("the admin updates another user");
    assert_eq!(bob_after.display_name, "Bob By Admin");
    assert_eq!(bob_after.email, bob_email);
    assert_eq!(sorted(bob_after.roles.clone()), ["billing", "support"]);
    assert_ne!(bob_after.etag, bob_before.etag);
}
