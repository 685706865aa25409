//! DeleteProfile: owners delete themselves with the current etag, admins
//! anyone; a deleted profile's sessions and login end with it.

use super::*;
use crate::on_both_backends;
use tonic::Code;

on_both_backends!(
    owners_delete_themselves_and_admins_delete_anyone_with_or_without_an_etag,
    a_stale_or_made_up_etag_refuses_a_delete,
    deleting_a_profile_ends_its_sessions_and_its_login,
    an_admin_deleting_a_profile_ends_its_sessions_and_its_login,
);

async fn owners_delete_themselves_and_admins_delete_anyone_with_or_without_an_etag(
    backend: Backend,
) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let ann_account = w.register("ann").await;
    let bob_account = w.register("bob").await;
    let ann = w.caller(&ann_account.tokens.access_token);
    let ann_id = ann_account.profile.id.clone();
    let bob_id = bob_account.profile.id.clone();
    let ann_now = ann.get("me").await.unwrap();
    let bob_now = admin.get(&bob_id).await.unwrap();
    let created = admin
        .create(external("test-idp", "ext-1"))
        .await
        .expect("the admin creates a profile");

    // Owners and admins delete.
    ann.delete(&ann_id, &ann_now.etag)
        .await
        .expect("the owner deletes itself");
    assert_eq!(admin.get(&ann_id).await.unwrap_err().code(), Code::NotFound);
    admin
        .delete(&bob_id, &bob_now.etag)
        .await
        .expect("the admin deletes another user");
    assert_eq!(admin.get(&bob_id).await.unwrap_err().code(), Code::NotFound);
    admin
        .delete(&created.id, "")
        .await
        .expect("the admin deletes without an etag");
    assert_eq!(
        admin.lookup("test-idp", "ext-1").await.unwrap_err().code(),
        Code::NotFound
    );
}

async fn a_stale_or_made_up_etag_refuses_a_delete(backend: Backend) {
    let mut w = World::start(backend).await;
    let doomed = w.register("doomed").await;
    let owner = w.caller(&doomed.tokens.access_token);
    let v0 = owner.get("me").await.unwrap();
    let v1 = owner
        .update(
            UserProfile {
                display_name: "Still Here".into(),
                ..target(&v0)
            },
            &["display_name"],
        )
        .await
        .unwrap();

    // A stale or made-up etag refuses the delete.
    for etag in [v0.etag.as_str(), "made-up"] {
        let status = owner.delete(&v0.id, etag).await.unwrap_err();
        assert_eq!(status.code(), Code::Aborted, "etag {etag:?}: {status:?}");
    }
    assert_eq!(owner.get("me").await.unwrap().etag, v1.etag, "still there");
}

async fn deleting_a_profile_ends_its_sessions_and_its_login(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let doomed = w.register("doomed").await;
    let second = w
        .login(&doomed.email, &doomed.password)
        .await
        .expect("a second session");
    let owner = w.caller(&doomed.tokens.access_token);
    let v0 = owner.get("me").await.unwrap();

    owner
        .delete(&v0.id, &v0.etag)
        .await
        .expect("the owner deletes itself with the current etag");

    for (session, tokens) in [("registration", &doomed.tokens), ("login", &second)] {
        assert!(
            !w.validate(&tokens.access_token).await.active,
            "{session}: the access token is inactive"
        );
        let status = w.refresh(&tokens.refresh_token).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "{session}: {status:?}"
        );
    }
    let status = w.login(&doomed.email, &doomed.password).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(admin.get(&v0.id).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        admin.lookup("local", &v0.id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        admin.delete(&v0.id, "").await.unwrap_err().code(),
        Code::NotFound
    );
    let status = owner.get("me").await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        !admin.list_all(0, "").await.iter().any(|p| p.id == v0.id),
        "the deleted profile is not listed"
    );

    // Its local credential went with it: the email is free again, for a new
    // account with a new id.
    let again = register_account(&mut w.auth, &doomed.email, "Reborn").await;
    assert_ne!(again.profile.id, v0.id);
    assert!(!w.validate(&second.access_token).await.active);
}

async fn an_admin_deleting_a_profile_ends_its_sessions_and_its_login(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();

    // An admin deleting someone else (no etag) has the same effect.
    let bob = w.register("bob").await;
    admin
        .delete(&bob.profile.id, "")
        .await
        .expect("the admin deletes bob");
    assert!(!w.validate(&bob.tokens.access_token).await.active);
    let status = w.refresh(&bob.tokens.refresh_token).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = w.login(&bob.email, &bob.password).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        w.validate(&w.admin.tokens.access_token.clone())
            .await
            .active
    );
}
