//! UpdateProfile: owners change themselves through `me`, only the paths of
//! the update mask change, and a stale etag changes nothing.

use super::*;
use crate::on_both_backends;
use crate::support::{assert_invalid, time};
use prost_types::Timestamp;
use std::collections::HashSet;
use tonic::Code;

on_both_backends!(
    owners_update_themselves_through_me,
    a_stale_made_up_or_absent_etag_aborts_and_changes_nothing,
    immutable_unknown_and_empty_update_masks_are_invalid,
    only_the_masked_paths_change_and_every_update_is_a_new_version,
);

/// The owner's profile before and after a first update (of display_name).
async fn first_update(ann: &Caller) -> (UserProfile, UserProfile) {
    let v0 = ann.get("me").await.unwrap();

    let v1 = ann
        .update(
            UserProfile {
                display_name: "First".into(),
                ..target(&v0)
            },
            &["display_name"],
        )
        .await
        .expect("an update with the current etag");
    assert_ne!(v1.etag, v0.etag);
    assert!(time(&v1.update_time) >= time(&v0.update_time));
    let v1 = ann.get("me").await.unwrap();
    assert_eq!(v1.display_name, "First");
    (v0, v1)
}

/// An update of `current` that carries every field, each with a new value:
/// the mask alone says which may change.
fn everything(current: &UserProfile) -> UserProfile {
    UserProfile {
        id: current.id.clone(),
        etag: current.etag.clone(),
        auth_provider: "evil-idp".into(),
        auth_id: "someone-else".into(),
        email: email("masked"),
        display_name: "Masked".into(),
        avatar_url: "https://cdn.example.com/masked.png".into(),
        locale: "fr".into(),
        roles: vec![],
        create_time: Some(Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        update_time: Some(Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        email_verified: true,
    }
}

async fn owners_update_themselves_through_me(backend: Backend) {
    let mut w = World::start(backend).await;
    let ann_account = w.register("ann").await;
    let ann = w.caller(&ann_account.tokens.access_token);
    let ann_id = ann_account.profile.id.clone();
    let me = ann.get("me").await.expect("GetProfile(me)");

    // Ann updates herself, by `me`.
    let updated = ann
        .update(
            UserProfile {
                id: "me".into(),
                etag: me.etag.clone(),
                display_name: "Ann Updated".into(),
                locale: "en-GB".into(),
                avatar_url: "https://cdn.example.com/ann.png".into(),
                ..Default::default()
            },
            &["display_name", "locale", "avatar_url"],
        )
        .await
        .expect("the owner updates itself");
    assert_eq!(updated.id, ann_id);
    assert_eq!(updated.display_name, "Ann Updated");
    assert_eq!(updated.locale, "en-GB");
    assert_eq!(updated.avatar_url, "https://cdn.example.com/ann.png");
    assert_ne!(updated.etag, me.etag, "the etag changes on update");
    assert!(time(&updated.update_time) >= time(&me.update_time));
    assert_eq!(time(&updated.create_time), time(&me.create_time));
    let reread = ann.get("me").await.unwrap();
    assert_eq!(
        reread.etag, updated.etag,
        "the returned etag is the stored one"
    );
    assert_eq!(reread.display_name, "Ann Updated");
}

async fn a_stale_made_up_or_absent_etag_aborts_and_changes_nothing(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let account = w.register("etag").await;
    let ann = w.caller(&account.tokens.access_token);
    let (v0, v1) = first_update(&ann).await;

    // A stale etag is ABORTED and changes nothing, for the owner and the admin.
    let status = ann
        .update(
            UserProfile {
                display_name: "Second".into(),
                ..target(&v0)
            },
            &["display_name"],
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    for etag in ["made-up", "W/\"1\"", "0", "\"\"", &v1.etag.repeat(2)] {
        let status = ann
            .update(
                UserProfile {
                    id: "me".into(),
                    etag: etag.into(),
                    display_name: "Second".into(),
                    ..Default::default()
                },
                &["display_name"],
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Aborted, "etag {etag:?}: {status:?}");
    }
    let status = admin
        .update(
            UserProfile {
                display_name: "By Admin".into(),
                roles: vec!["support".into()],
                ..target(&v0)
            },
            &["display_name", "roles"],
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    // An absent etag never matches either (ABORTED, or refused as missing).
    let status = ann
        .update(
            UserProfile {
                id: "me".into(),
                display_name: "Second".into(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::Aborted | Code::InvalidArgument),
        "{status:?}"
    );
    assert_eq!(ann.get("me").await.unwrap(), v1, "nothing changed");
}

async fn immutable_unknown_and_empty_update_masks_are_invalid(backend: Backend) {
    let mut w = World::start(backend).await;
    let account = w.register("etag").await;
    let ann = w.caller(&account.tokens.access_token);
    let v1 = ann.get("me").await.unwrap();

    // Immutable, unknown and empty masks are INVALID_ARGUMENT on update_mask.
    let everything = everything(&v1);
    let refused = [
        "id",
        "email_verified",
        "auth_provider",
        "auth_id",
        "create_time",
        "update_time",
        "etag",
        "nickname",
        "password",
        "display_name.first",
        "DISPLAY_NAME",
        "*",
        "",
    ];
    for path in refused {
        for paths in [vec![path], vec!["display_name", path]] {
            let status = ann.update(everything.clone(), &paths).await.unwrap_err();
            assert_invalid(&status, "update_mask", &format!("mask {paths:?}"));
        }
    }
    for request in [
        UpdateProfileRequest {
            profile: Some(everything.clone()),
            update_mask: Some(mask(&[])),
        },
        UpdateProfileRequest {
            profile: Some(everything.clone()),
            update_mask: None,
        },
    ] {
        let status = ann.update_request(request).await.unwrap_err();
        assert_invalid(&status, "update_mask", "empty mask");
    }
    assert_eq!(ann.get("me").await.unwrap(), v1, "nothing changed");
}

async fn only_the_masked_paths_change_and_every_update_is_a_new_version(backend: Backend) {
    let mut w = World::start(backend).await;
    let account = w.register("etag").await;
    let ann = w.caller(&account.tokens.access_token);
    let (v0, v1) = first_update(&ann).await;

    let everything = everything(&v1);

    // Only the masked paths change, even when the message carries more.
    let v2 = ann
        .update(everything.clone(), &["locale"])
        .await
        .expect("mask [locale]");
    let v2_read = ann.get("me").await.unwrap();
    assert_eq!(v2_read.etag, v2.etag);
    assert_eq!(v2_read.locale, "fr");
    assert_eq!(
        UserProfile {
            locale: v1.locale.clone(),
            etag: v1.etag.clone(),
            update_time: v1.update_time,
            ..v2_read.clone()
        },
        v1,
        "only locale (and etag, update_time) changed"
    );
    assert!(time(&v2_read.update_time) >= time(&v1.update_time));

    let v3 = ann
        .update(
            UserProfile {
                id: "me".into(),
                etag: v2_read.etag.clone(),
                ..everything.clone()
            },
            &["display_name", "avatar_url"],
        )
        .await
        .expect("mask [display_name, avatar_url]");
    let v3_read = ann.get("me").await.unwrap();
    assert_eq!(v3_read.etag, v3.etag);
    assert_eq!(v3_read.display_name, "Masked");
    assert_eq!(v3_read.avatar_url, "https://cdn.example.com/masked.png");
    assert_eq!(v3_read.email, v2_read.email, "an owner's login email stays");
    assert_eq!(v3_read.locale, "fr");
    assert_eq!(v3_read.id, v1.id);
    assert_eq!(v3_read.auth_provider, "local");
    assert_eq!(v3_read.auth_id, v1.id);
    assert_eq!(time(&v3_read.create_time), time(&v0.create_time));
    assert!(time(&v3_read.update_time) >= time(&v2_read.update_time));

    // Even an update to the same value is a new version.
    let v4 = ann
        .update(
            UserProfile {
                display_name: "Masked".into(),
                ..target(&v3_read)
            },
            &["display_name"],
        )
        .await
        .expect("same value again");
    let etags: HashSet<&str> = [&v0, &v1, &v2_read, &v3_read, &v4]
        .iter()
        .map(|p| p.etag.as_str())
        .collect();
    assert_eq!(etags.len(), 5, "every successful update makes a new etag");
    assert!(time(&v4.update_time) >= time(&v3_read.update_time));
}
