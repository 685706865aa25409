//! Bad input is INVALID_ARGUMENT naming each bad field, and changes
//! nothing; the limits themselves are accepted and stored as sent.

use super::*;
use crate::on_both_backends;
use crate::support::{assert_invalid, violated_fields};
use std::collections::HashSet;
use tonic::Code;

on_both_backends!(
    a_malformed_profile_id_is_invalid_naming_the_field,
    each_invalid_profile_field_is_named_and_nothing_changes,
    values_at_the_limits_are_accepted_and_stored_as_sent,
    roles_are_short_lowercase_names,
    create_profile_names_a_missing_or_oversized_provider_or_auth_id,
);

/// An https URL of exactly `total` bytes.
fn long_https(total: usize) -> String {
    let base = "https://cdn.example.com/";
    format!("{base}{}", "a".repeat(total - base.len()))
}

async fn a_malformed_profile_id_is_invalid_naming_the_field(backend: Backend) {
    let mut w = World::start(backend).await;
    let ann_account = w.register("ann").await;
    let ann = w.caller(&ann_account.tokens.access_token);

    // A malformed id is a client error naming the field.
    for bad in [
        "not-a-uuid",
        "'; DROP TABLE profiles; --",
        "../admin",
        "ME ",
    ] {
        let status = ann.get(bad).await.unwrap_err();
        assert_invalid(&status, "id", &format!("GetProfile({bad:?})"));
    }
}

async fn each_invalid_profile_field_is_named_and_nothing_changes(backend: Backend) {
    let mut w = World::start(backend).await;
    let account = w.register("valid").await;
    let ann = w.caller(&account.tokens.access_token);
    let current = ann.get("me").await.unwrap();

    let refused: Vec<(&str, &str, UserProfile)> = vec![
        (
            "empty display name",
            "display_name",
            UserProfile {
                display_name: String::new(),
                ..Default::default()
            },
        ),
        (
            "101 characters",
            "display_name",
            UserProfile {
                display_name: "n".repeat(101),
                ..Default::default()
            },
        ),
        (
            "101 two-byte characters",
            "display_name",
            UserProfile {
                display_name: "é".repeat(101),
                ..Default::default()
            },
        ),
        (
            "escape sequence",
            "display_name",
            UserProfile {
                display_name: "Ann\u{1b}[31m".into(),
                ..Default::default()
            },
        ),
        (
            "tab",
            "display_name",
            UserProfile {
                display_name: "Ann\tLee".into(),
                ..Default::default()
            },
        ),
        (
            "newline",
            "display_name",
            UserProfile {
                display_name: "Ann\nLee".into(),
                ..Default::default()
            },
        ),
        (
            "NUL",
            "display_name",
            UserProfile {
                display_name: "Ann\u{0}".into(),
                ..Default::default()
            },
        ),
        (
            "http avatar",
            "avatar_url",
            UserProfile {
                avatar_url: "http://cdn.example.com/a.png".into(),
                ..Default::default()
            },
        ),
        (
            "relative avatar",
            "avatar_url",
            UserProfile {
                avatar_url: "/a.png".into(),
                ..Default::default()
            },
        ),
        (
            "scheme-relative avatar",
            "avatar_url",
            UserProfile {
                avatar_url: "//cdn.example.com/a.png".into(),
                ..Default::default()
            },
        ),
        (
            "no host",
            "avatar_url",
            UserProfile {
                avatar_url: "https://".into(),
                ..Default::default()
            },
        ),
        (
            "javascript avatar",
            "avatar_url",
            UserProfile {
                avatar_url: "javascript:alert(1)".into(),
                ..Default::default()
            },
        ),
        (
            "data avatar",
            "avatar_url",
            UserProfile {
                avatar_url: "data:image/png;base64,AAAA".into(),
                ..Default::default()
            },
        ),
        (
            "2049-byte avatar",
            "avatar_url",
            UserProfile {
                avatar_url: long_https(2049),
                ..Default::default()
            },
        ),
        (
            "english!",
            "locale",
            UserProfile {
                locale: "english!".into(),
                ..Default::default()
            },
        ),
        (
            "single letter locale",
            "locale",
            UserProfile {
                locale: "e".into(),
                ..Default::default()
            },
        ),
        (
            "underscore locale",
            "locale",
            UserProfile {
                locale: "en_GB".into(),
                ..Default::default()
            },
        ),
        (
            "trailing hyphen",
            "locale",
            UserProfile {
                locale: "en-".into(),
                ..Default::default()
            },
        ),
        (
            "not an email",
            "email",
            UserProfile {
                email: "not-an-email".into(),
                ..Default::default()
            },
        ),
        (
            "no domain",
            "email",
            UserProfile {
                email: "ann@".into(),
                ..Default::default()
            },
        ),
        (
            "no local part",
            "email",
            UserProfile {
                email: "@example.com".into(),
                ..Default::default()
            },
        ),
        (
            "space in email",
            "email",
            UserProfile {
                email: "ann lee@example.com".into(),
                ..Default::default()
            },
        ),
    ];
    for (case, field, values) in refused {
        let status = ann
            .update(
                UserProfile {
                    id: "me".into(),
                    etag: current.etag.clone(),
                    ..values
                },
                &[field],
            )
            .await
            .unwrap_err();
        assert_invalid(&status, &format!("profile.{field}"), case);
    }
    assert_eq!(ann.get("me").await.unwrap(), current, "nothing changed");

    // Several bad fields are all named.
    let status = ann
        .update(
            UserProfile {
                display_name: String::new(),
                avatar_url: "http://x.example/".into(),
                locale: "e".into(),
                ..target(&current)
            },
            &["display_name", "avatar_url", "locale"],
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let named: HashSet<String> = violated_fields(&status).into_iter().collect();
    let expected: HashSet<String> = [
        "profile.display_name",
        "profile.avatar_url",
        "profile.locale",
    ]
    .map(String::from)
    .into();
    assert_eq!(named, expected, "{status:?}");
}

async fn values_at_the_limits_are_accepted_and_stored_as_sent(backend: Backend) {
    let mut w = World::start(backend).await;
    let account = w.register("valid").await;
    let ann = w.caller(&account.tokens.access_token);
    let mut current = ann.get("me").await.unwrap();

    // The limits themselves are allowed.
    let accepted = [
        (
            "100 two-byte characters",
            "display_name",
            UserProfile {
                display_name: "é".repeat(100),
                ..Default::default()
            },
        ),
        (
            "2048-byte avatar",
            "avatar_url",
            UserProfile {
                avatar_url: long_https(2048),
                ..Default::default()
            },
        ),
        (
            "en",
            "locale",
            UserProfile {
                locale: "en".into(),
                ..Default::default()
            },
        ),
        (
            "en-GB",
            "locale",
            UserProfile {
                locale: "en-GB".into(),
                ..Default::default()
            },
        ),
        (
            "zh-Hant-TW",
            "locale",
            UserProfile {
                locale: "zh-Hant-TW".into(),
                ..Default::default()
            },
        ),
    ];
    for (case, field, values) in accepted {
        let sent = values.clone();
        let updated = ann
            .update(
                UserProfile {
                    id: "me".into(),
                    etag: current.etag.clone(),
                    ..values
                },
                &[field],
            )
            .await
            .unwrap_or_else(|s| panic!("{case}: refused: {s:?}"));
        current = ann.get("me").await.unwrap();
        assert_eq!(current.etag, updated.etag, "{case}");
        let (got, want) = match field {
            "display_name" => (&current.display_name, &sent.display_name),
            "avatar_url" => (&current.avatar_url, &sent.avatar_url),
            _ => (&current.locale, &sent.locale),
        };
        assert_same_bytes(got, want, case);
    }
}

async fn roles_are_short_lowercase_names(backend: Backend) {
    let mut w = World::start(backend).await;
    let admin = w.admin();
    let account = w.register("valid").await;
    let profile = admin.get(&account.profile.id).await.unwrap();

    // Roles (admin only): lowercase names of a-z, 0-9, _ and -, 1-32 long.
    let too_long = "r".repeat(33);
    for (case, roles) in [
        ("upper case", vec!["Admin"]),
        ("space", vec!["has space"]),
        ("empty", vec![""]),
        ("33 characters", vec![too_long.as_str()]),
        ("one bad among good", vec!["support", "BAD"]),
        ("punctuation", vec!["admin;"]),
        ("non-ascii", vec!["ädmin"]),
    ] {
        let status = admin
            .update(
                UserProfile {
                    roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                    ..target(&profile)
                },
                &["roles"],
            )
            .await
            .unwrap_err();
        assert_invalid(&status, "profile.roles", case);
    }
    let good = vec![
        "support".to_owned(),
        "billing_ops".to_owned(),
        "team-7".to_owned(),
        "r".repeat(32),
    ];
    let updated = admin
        .update(
            UserProfile {
                roles: good.clone(),
                ..target(&profile)
            },
            &["roles"],
        )
        .await
        .expect("valid roles");
    assert_eq!(sorted(updated.roles), sorted(good.clone()));
    assert_eq!(
        sorted(admin.get(&profile.id).await.unwrap().roles),
        sorted(good)
    );
}

async fn create_profile_names_a_missing_or_oversized_provider_or_auth_id(backend: Backend) {
    let w = World::start(backend).await;
    let admin = w.admin();

    // CreateProfile: the pair is required and bounded, violations named.
    let max = "p".repeat(255);
    let over = "p".repeat(256);
    for (case, provider, auth_id, field) in [
        ("empty provider", "", "some-id", "profile.auth_provider"),
        ("empty auth_id", "test-idp", "", "profile.auth_id"),
        (
            "256-byte provider",
            over.as_str(),
            "some-id",
            "profile.auth_provider",
        ),
        (
            "256-byte auth_id",
            "test-idp",
            over.as_str(),
            "profile.auth_id",
        ),
    ] {
        let status = admin.create(external(provider, auth_id)).await.unwrap_err();
        assert_invalid(&status, field, case);
    }
    let status = admin
        .create(UserProfile {
            locale: "english!".into(),
            ..external("", "")
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let named: HashSet<String> = violated_fields(&status).into_iter().collect();
    for field in ["profile.auth_provider", "profile.auth_id", "profile.locale"] {
        assert!(named.contains(field), "{field} not named: {status:?}");
    }
    let created = admin
        .create(external(&max, &max))
        .await
        .expect("255 bytes are allowed");
    assert_eq!(admin.lookup(&max, &max).await.unwrap().id, created.id);
    assert!(
        admin
            .list_all(0, r#"auth_provider="test-idp""#)
            .await
            .is_empty(),
        "the refused creates stored nothing"
    );
}
