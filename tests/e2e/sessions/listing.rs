//! ListSessions: an owner sees its own sessions (coarse addresses, no
//! secret), an admin anyone's; page tokens are bound to their listing.

use super::*;
use crate::on_both_backends;
use crate::support::{Backend, active, assert_invalid, email, scalar, time};
use std::time::Duration;
use tonic::Code;

on_both_backends!(
    owners_see_their_sessions_newest_first_with_coarse_addresses_and_no_secret,
    a_refresh_is_a_use_of_its_session_and_a_validation_is_not,
    admins_see_anyones_sessions_with_full_addresses,
    page_tokens_are_bound_to_their_listing,
    page_sizes_are_bounded,
    ended_sessions_are_not_listed_and_nothing_is_without_a_token,
);

/// An owner signed in from three devices (a phone, then a laptop, then a
/// flooder with a 4 KB user agent), and an admin, on one server.
struct Devices {
    db: TestDb,
    server: Server,
    auth: Auth,
    admin: TokenPair,
    profile: UserProfile,
    phone: TokenPair,
    laptop: TokenPair,
    flooder: TokenPair,
}

impl Devices {
    async fn start(backend: Backend) -> Devices {
        let (db, server, mut auth, admin) = with_admin(backend, "admin-console/1").await;

        let address = email("owner");
        let registered =
            register_from(&mut auth, &address, "203.0.113.77", "Pixel-Phone/1.0").await;
        let profile = registered.profile.unwrap();
        let phone = registered.tokens.unwrap();
        let laptop = login_from(
            &mut auth,
            &address,
            "2001:db8:7:9::42",
            "Laptop-Browser/2.0",
        )
        .await;
        let long_agent = format!("Flooder/{}", "x".repeat(4000));
        let flooder = login_from(&mut auth, &address, "192.0.2.200", &long_agent).await;
        Devices {
            db,
            server,
            auth,
            admin,
            profile,
            phone,
            laptop,
            flooder,
        }
    }
}

async fn owners_see_their_sessions_newest_first_with_coarse_addresses_and_no_secret(
    backend: Backend,
) {
    let Devices {
        db,
        server: _server,
        mut auth,
        profile,
        phone,
        laptop,
        flooder,
        ..
    } = Devices::start(backend).await;
    // The owner sees three sessions, newest first, the current one marked,
    // addresses coarse, and no secret anywhere in the answer.
    let seen = list(
        &mut auth,
        &laptop.access_token,
        ListSessionsRequest::default(),
    )
    .await
    .unwrap();
    let sessions = &seen.sessions;
    assert_eq!(
        ids(sessions),
        [&flooder.session_id, &laptop.session_id, &phone.session_id],
        "newest first"
    );
    assert!(seen.next_page_token.is_empty());
    let current: Vec<_> = sessions.iter().filter(|s| s.current).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].session_id, laptop.session_id);
    assert_eq!(sessions[2].client_address, "203.0.113.0/24");
    assert_eq!(sessions[1].client_address, "2001:db8:7::/48");
    assert_eq!(sessions[0].client_address, "192.0.2.0/24");
    assert!(
        sessions[2].user_agent.starts_with("Pixel-Phone/1.0"),
        "{:?}",
        sessions[2]
    );
    assert!(sessions[1].user_agent.starts_with("Laptop-Browser/2.0"));
    assert!(
        sessions[0].user_agent.len() <= 256 && sessions[0].user_agent.starts_with("Flooder/xxx"),
        "a user agent is stored cut to 256 bytes: {} bytes",
        sessions[0].user_agent.len()
    );
    for s in sessions {
        assert_eq!(
            time(&s.last_use_time),
            time(&s.create_time),
            "never refreshed yet"
        );
        assert!(time(&s.expire_time) > time(&s.create_time));
    }
    let text = format!("{seen:?}");
    for secret in [
        &phone.refresh_token,
        &laptop.refresh_token,
        &flooder.refresh_token,
        &phone.access_token,
    ] {
        assert!(!text.contains(secret.as_str()), "a token in the answer");
    }
    for full in ["203.0.113.77", "2001:db8:7:9::42", "192.0.2.200"] {
        assert!(!text.contains(full), "the owner sees {full} in full");
    }
    let hashes = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             WHERE s.profile_id = '{}'",
            profile.id
        ),
    );
    assert_eq!(
        hashes, 3,
        "the refresh tokens exist, and are not what was shown"
    );
}

async fn a_refresh_is_a_use_of_its_session_and_a_validation_is_not(backend: Backend) {
    let Devices {
        db: _db,
        server: _server,
        mut auth,
        phone,
        laptop,
        ..
    } = Devices::start(backend).await;
    // Refresh moves last use; the session keeps its id and place.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rotated = auth
        .refresh(RefreshRequest {
            refresh_token: phone.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    assert_eq!(rotated.session_id, phone.session_id);
    let after = list_own(&mut auth, &laptop.access_token).await;
    let refreshed = after
        .iter()
        .find(|s| s.session_id == phone.session_id)
        .unwrap();
    assert!(
        time(&refreshed.last_use_time) > time(&refreshed.create_time),
        "Refresh is a use: {refreshed:?}"
    );
    // Validation is not (the hot path does not write).
    assert!(active(&mut auth, &laptop.access_token).await);
    let laptop_row = after
        .iter()
        .find(|s| s.session_id == laptop.session_id)
        .unwrap();
    assert_eq!(
        time(&laptop_row.last_use_time),
        time(&laptop_row.create_time)
    );
}

async fn admins_see_anyones_sessions_with_full_addresses(backend: Backend) {
    let Devices {
        db: _db,
        server: _server,
        mut auth,
        admin,
        profile,
        ..
    } = Devices::start(backend).await;
    // The admin names the profile and sees the addresses in full.
    let by_admin = list(
        &mut auth,
        &admin.access_token,
        ListSessionsRequest {
            profile_id: profile.id.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("an admin lists anyone's sessions");
    let addresses: Vec<_> = by_admin
        .sessions
        .iter()
        .map(|s| s.client_address.as_str())
        .collect();
    assert_eq!(
        addresses,
        ["192.0.2.200", "2001:db8:7:9::42", "203.0.113.77"]
    );
    assert!(
        by_admin.sessions.iter().all(|s| !s.current),
        "none is the admin's"
    );
}

async fn page_tokens_are_bound_to_their_listing(backend: Backend) {
    let Devices {
        db: _db,
        server: _server,
        mut auth,
        admin,
        profile,
        laptop,
        ..
    } = Devices::start(backend).await;
    let sessions = &list_own(&mut auth, &laptop.access_token).await;
    // Paged walk, one per page; every page token is bound to its profile.
    let mut walked = Vec::new();
    let mut token = String::new();
    let mut tokens = Vec::new();
    loop {
        let page = list(
            &mut auth,
            &laptop.access_token,
            ListSessionsRequest {
                page_size: 1,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(page.sessions.len() <= 1);
        walked.extend(page.sessions.into_iter().map(|s| s.session_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        tokens.push(token.clone());
    }
    assert_eq!(walked, ids(sessions), "the walk sees each session once");
    let owners_token = tokens[0].clone();

    // Tampered: one character changed, the MAC fails.
    let mut tampered = owners_token.clone().into_bytes();
    tampered[4] = if tampered[4] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    // Moved: the owner's token used for another profile's listing (the
    // admin's own), by the admin naming the owner's profile differently,
    // and by another user for their own listing.
    let other = email("other");
    let other_tokens = register_from(&mut auth, &other, "198.51.100.9", "x")
        .await
        .tokens
        .unwrap();
    let attempts = [
        (
            "tampered",
            &laptop.access_token,
            String::new(),
            tampered.clone(),
        ),
        (
            "junk",
            &laptop.access_token,
            String::new(),
            "not-a-token".to_owned(),
        ),
        (
            "admin, own listing",
            &admin.access_token,
            String::new(),
            owners_token.clone(),
        ),
        (
            "admin, as `me`",
            &admin.access_token,
            "me".to_owned(),
            owners_token.clone(),
        ),
        (
            "another user",
            &other_tokens.access_token,
            String::new(),
            owners_token.clone(),
        ),
    ];
    for (case, who, profile_id, page_token) in attempts {
        let status = list(
            &mut auth,
            who,
            ListSessionsRequest {
                profile_id,
                page_size: 1,
                page_token,
            },
        )
        .await
        .unwrap_err();
        assert_invalid(&status, "page_token", case);
    }
    // The owner's token does serve the admin naming the owner's profile:
    // it is bound to the listing, not to who asks.
    let next = list(
        &mut auth,
        &admin.access_token,
        ListSessionsRequest {
            profile_id: profile.id.clone(),
            page_size: 1,
            page_token: owners_token,
        },
    )
    .await
    .expect("same profile, same query");
    assert_eq!(ids(&next.sessions), [laptop.session_id.as_str()]);
}

async fn page_sizes_are_bounded(backend: Backend) {
    let Devices {
        db: _db,
        server: _server,
        mut auth,
        laptop,
        ..
    } = Devices::start(backend).await;
    // Page sizes: negative is invalid, huge is clamped.
    let status = list(
        &mut auth,
        &laptop.access_token,
        ListSessionsRequest {
            page_size: -1,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid(&status, "page_size", "negative page size");
    let huge = list(
        &mut auth,
        &laptop.access_token,
        ListSessionsRequest {
            page_size: i32::MAX,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(huge.sessions.len(), 3);
}

async fn ended_sessions_are_not_listed_and_nothing_is_without_a_token(backend: Backend) {
    let Devices {
        db: _db,
        server: _server,
        mut auth,
        phone,
        laptop,
        flooder,
        ..
    } = Devices::start(backend).await;
    // Ended sessions are not listed.
    auth.logout(LogoutRequest {
        refresh_token: flooder.refresh_token.clone(),
    })
    .await
    .unwrap();
    let left = list_own(&mut auth, &laptop.access_token).await;
    assert_eq!(ids(&left), [&laptop.session_id, &phone.session_id]);

    // Without a token, nothing.
    let status = auth
        .list_sessions(ListSessionsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}
