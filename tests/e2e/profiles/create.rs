//! CreateProfile: admins create profiles whose id, times and etag are the
//! server's; a (provider, auth_id) pair makes one profile, however many
//! race for it.

use super::*;
use crate::on_both_backends;
use crate::support::{random_id, time};
use prost_types::Timestamp;
use tonic::Code;

on_both_backends!(
    admins_create_profiles_whose_id_times_and_etag_are_the_servers,
    concurrent_creates_for_one_pair_make_exactly_one_profile,
);

async fn admins_create_profiles_whose_id_times_and_etag_are_the_servers(backend: Backend) {
    let w = World::start(backend).await;
    let admin = w.admin();

    // The admin creates profiles; id, times and etag are the server's.
    let forged_id = random_id();
    let created = admin
        .create(UserProfile {
            id: forged_id.clone(),
            etag: "forged-etag".into(),
            create_time: Some(Timestamp {
                seconds: 946_684_800,
                nanos: 0,
            }),
            update_time: Some(Timestamp {
                seconds: 946_684_800,
                nanos: 0,
            }),
            roles: vec!["reader".into()],
            avatar_url: "https://cdn.example.com/ext.png".into(),
            ..external("test-idp", "ext-1")
        })
        .await
        .expect("the admin creates a profile");
    assert_ne!(created.id, forged_id, "the server assigns the id");
    assert!(uuid::Uuid::parse_str(&created.id).is_ok(), "{}", created.id);
    assert_ne!(created.etag, "forged-etag");
    assert!(!created.etag.is_empty());
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - time(&created.create_time).0).abs() < 300,
        "create_time is the server's: {:?}",
        created.create_time
    );
    assert_eq!(
        (created.auth_provider.as_str(), created.auth_id.as_str()),
        ("test-idp", "ext-1")
    );
    assert_eq!(created.roles, ["reader"]);
    assert_eq!(created.avatar_url, "https://cdn.example.com/ext.png");
    let read = admin.get(&created.id).await.unwrap();
    assert_eq!(
        read.etag, created.etag,
        "the returned etag is the stored one"
    );
    assert_eq!(admin.lookup("test-idp", "ext-1").await.unwrap(), read);
}

async fn concurrent_creates_for_one_pair_make_exactly_one_profile(backend: Backend) {
    let w = World::start(backend).await;
    let admin = w.admin();

    // Two pairs, ten attempts each, all at once.
    let pairs = ["shared-1", "shared-2"];
    let attempts = (0..20).map(|i| {
        let admin = admin.clone();
        let auth_id = pairs[i % 2];
        async move {
            let result = admin
                .create(UserProfile {
                    display_name: format!("Racer {i}"),
                    ..external("race-idp", auth_id)
                })
                .await;
            (auth_id, result)
        }
    });
    let results = futures::future::join_all(attempts).await;
    for pair in pairs {
        let mine: Vec<&Result<UserProfile, Status>> = results
            .iter()
            .filter(|(auth_id, _)| *auth_id == pair)
            .map(|(_, result)| result)
            .collect();
        let winners: Vec<&UserProfile> = mine.iter().filter_map(|r| r.as_ref().ok()).collect();
        let exists = mine
            .iter()
            .filter(|r| matches!(r, Err(s) if s.code() == Code::AlreadyExists))
            .count();
        assert_eq!((winners.len(), exists), (1, 9), "{pair}: {mine:?}");
        let found = admin.lookup("race-idp", pair).await.unwrap();
        assert_eq!(found.id, winners[0].id, "{pair}");
        assert_eq!(
            found.display_name, winners[0].display_name,
            "{pair}: the winner's data"
        );
    }

    // Later attempts find the pair taken too; the same auth_id under another
    // provider is a different pair.
    let status = admin
        .create(external("race-idp", "shared-1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let other = admin
        .create(external("other-idp", "shared-1"))
        .await
        .expect("another provider may use the same auth_id");
    assert_ne!(
        other.id,
        admin.lookup("race-idp", "shared-1").await.unwrap().id
    );
    // A local account's pair is taken by its registration.
    let status = admin
        .create(external("local", &w.admin.profile.id))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::AlreadyExists | Code::InvalidArgument),
        "{status:?}"
    );
    assert_eq!(
        admin.lookup("local", &w.admin.profile.id).await.unwrap().id,
        w.admin.profile.id
    );

    let listed = admin.list_all(0, r#"auth_provider="race-idp""#).await;
    assert_eq!(listed.len(), 2, "{listed:?}");

    // Two concurrent creates, the smallest race.
    let (a, b) = tokio::join!(
        admin.create(external("race-idp", "pair-of-two")),
        admin.create(external("race-idp", "pair-of-two")),
    );
    let codes = [&a, &b].map(|r| r.as_ref().map(|_| ()).map_err(|s| s.code()));
    assert!(
        codes == [Ok(()), Err(Code::AlreadyExists)] || codes == [Err(Code::AlreadyExists), Ok(())],
        "{a:?} {b:?}"
    );
}
