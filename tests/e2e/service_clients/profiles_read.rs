//! `profiles:read`: the least-privilege role of a service that shows other
//! users' profiles. It reads any profile (GetProfile, LookupProfile) and
//! does nothing else; no person can be given it.

use super::*;
use crate::support::{email, issue_service_token, random_id, register, register_profile};
use identity::proto::v1::audit_service_client::AuditServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profiles_read_service_reads_any_profile_and_nothing_else() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let ann = register_profile(&mut auth, &email("ann")).await;
    let ann_profile = ann.profile.clone().expect("a profile");
    let ann_token = ann.tokens.expect("tokens").access_token;
    let reader = issue_service_token(&db, "profiles:read");
    let mut profiles = ProfileServiceClient::new(server.channel().await);

    let read = profiles
        .get_profile(bearer(
            &reader,
            GetProfileRequest {
                id: ann_profile.id.clone(),
            },
        ))
        .await
        .expect("GetProfile of another user's profile")
        .into_inner();
    assert_eq!(read.email, ann_profile.email);
    let looked_up = profiles
        .lookup_profile(bearer(
            &reader,
            LookupProfileRequest {
                auth_provider: "local".into(),
                auth_id: ann_profile.auth_id.clone(),
            },
        ))
        .await
        .expect("LookupProfile of another user's profile")
        .into_inner();
    assert_eq!(looked_up.id, ann_profile.id);
    // What does not exist is still NOT_FOUND.
    let missing = profiles
        .get_profile(bearer(&reader, GetProfileRequest { id: random_id() }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    let denied = |status: tonic::Status, case: &str| {
        assert_eq!(status.code(), Code::PermissionDenied, "{case}: {status:?}");
        assert_eq!(
            status.get_details_error_info().unwrap().reason,
            "PERMISSION_DENIED",
            "{case}"
        );
    };
    denied(
        profiles
            .list_profiles(bearer(&reader, ListProfilesRequest::default()))
            .await
            .unwrap_err(),
        "ListProfiles",
    );
    denied(
        profiles
            .update_profile(bearer(
                &reader,
                UpdateProfileRequest {
                    profile: Some(UserProfile {
                        display_name: "Mallory".into(),
                        ..read.clone()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["display_name".into()],
                    }),
                },
            ))
            .await
            .unwrap_err(),
        "UpdateProfile",
    );
    denied(
        profiles
            .delete_profile(bearer(
                &reader,
                DeleteProfileRequest {
                    id: ann_profile.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err(),
        "DeleteProfile",
    );
    let mut reader_auth = server.auth().await;
    denied(
        reader_auth
            .list_sessions(bearer(
                &reader,
                ListSessionsRequest {
                    profile_id: ann_profile.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err(),
        "ListSessions of another profile",
    );
    denied(
        AuditServiceClient::new(server.channel().await)
            .list_audit_events(bearer(&reader, ListAuditEventsRequest::default()))
            .await
            .unwrap_err(),
        "ListAuditEvents",
    );
    // Nothing changed, and Ann's session is still hers.
    assert!(active(&mut auth, &ann_token).await);
    let after = profiles
        .get_profile(bearer(&ann_token, GetProfileRequest { id: "me".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.etag, ann_profile.etag);

    // A service client may hold the role too.
    let (ok, _, stderr) = admin_command(&db, &["create-service-client", "--role", "profiles:read"]);
    assert!(ok, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_person_can_be_given_a_service_role() {
    let db = TestDb::new(Backend::Postgres);
    let ops = email("ops");
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", ops.clone()),
    );
    let mut auth = server.auth().await;
    let admin_token = register(&mut auth, &ops).await.access_token;
    let bob = register_profile(&mut auth, &email("bob")).await;
    let bob_profile = bob.profile.expect("a profile");
    let bob_token = bob.tokens.expect("tokens").access_token;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let grant = |token: &str, roles: &[&str]| {
        bearer(
            token,
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                    ..bob_profile.clone()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["roles".into()],
                }),
            },
        )
    };
    // The user asks for it: only admins change roles.
    let status = profiles
        .update_profile(grant(&bob_token, &["profiles:read"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Not even an admin can give a person a service role.
    for role in ["profiles:read", "provisioner"] {
        let status = profiles
            .update_profile(grant(&admin_token, &[role]))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{role}: {status:?}");
        assert_eq!(violated_fields(&status), ["profile.roles"], "{role}");
    }
    let (ok, _, stderr) = admin_command(&db, &["grant-role", &bob_profile.id, "profiles:read"]);
    assert!(!ok, "grant-role gave a person profiles:read");
    assert!(stderr.contains("service role"), "{stderr}");
    // Bob still reads only his own profile; the admin's is NOT_FOUND.
    let admin_id = profiles
        .get_profile(bearer(&admin_token, GetProfileRequest { id: "me".into() }))
        .await
        .unwrap()
        .into_inner()
        .id;
    let status = profiles
        .get_profile(bearer(&bob_token, GetProfileRequest { id: admin_id }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}
