//! `identity admin grant-role|revoke-role` against a running server's
//! database: one more way to change a profile, under the same rules.

use crate::on_both_backends;
use crate::support::{Backend, Server, ServerOptions, TestDb};
use std::time::{Duration, Instant};

on_both_backends!(
    admin_role_changes_bump_the_revision_never_move_updated_at_back_and_never_make_a_service_admin
);

/// A time another replica's clock (running ahead) could have written.
const AHEAD: &str = "2100-01-01 00:00:00+00:00";
const AHEAD_SECS: i64 = 4_102_444_800;

/// `identity admin grant-role|revoke-role` is one more way to change a
/// profile, so it follows the rules of UpdateProfile: a new revision (every
/// etag read before it is stale), an `updated_at` that never goes back, and
/// never `admin` for a service principal, however its provider is spelled.
async fn admin_role_changes_bump_the_revision_never_move_updated_at_back_and_never_make_a_service_admin(
    backend: Backend,
) {
    use crate::support::{admin_command as admin, bearer, execute, register, violated_fields};
    use identity::proto::v1::profile_service_client::ProfileServiceClient;
    use identity::proto::v1::*;
    let db = TestDb::new(backend);
    let ops = crate::support::email("ops");
    let server = Server::start_with(
        &db.url,
        db.dir.path(),
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", ops.clone()),
    );
    let mut auth = server.auth().await;
    let admin_token = register(&mut auth, &ops).await.access_token;
    let ann = crate::support::email("ann");
    let token = register(&mut auth, &ann).await.access_token;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    let me = || {
        let mut profiles = profiles.clone();
        let token = token.clone();
        async move {
            profiles
                .get_profile(bearer(&token, GetProfileRequest { id: "me".into() }))
                .await
                .expect("the owner reads the profile")
                .into_inner()
        }
    };
    let read = me().await;
    execute(
        &db,
        &format!(
            "UPDATE profiles SET updated_at = '{AHEAD}' WHERE id = '{}'",
            read.id
        ),
    );

    let mut etags = vec![read.etag.clone()];
    for (command, has_role) in [("grant-role", true), ("revoke-role", false)] {
        let (ok, _, stderr) = admin(&db, &[command, &ann, "editor"]);
        assert!(ok, "{command}: {stderr}");
        // The server learns of a change made by another process through
        // its announcement (PostgreSQL's channel, SQLite's table).
        let deadline = Instant::now() + Duration::from_secs(10);
        let changed = loop {
            let now = me().await;
            if !etags.contains(&now.etag) {
                break now;
            }
            assert!(
                Instant::now() < deadline,
                "{command} must change the etag: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            changed.roles.iter().any(|r| r == "editor"),
            has_role,
            "{command}"
        );
        let updated = changed.update_time.unwrap().seconds;
        assert!(
            updated >= AHEAD_SECS,
            "{command} moved updated_at back to {updated} (stored: {AHEAD})"
        );
        etags.push(changed.etag);
    }
    let stale = profiles
        .update_profile(bearer(
            &token,
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    display_name: "Ann".into(),
                    ..read.clone()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["display_name".into()],
                }),
            },
        ))
        .await
        .expect_err("an etag read before the role changes is stale");
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");
    assert_eq!(
        crate::support::scalar(
            &db,
            &format!(
                "SELECT count(*) FROM audit_events WHERE event_name = 'identity.role.changed' \
                 AND profile_id = '{}' AND detail LIKE '%identity admin%'",
                read.id
            ),
        ),
        2,
        "each change is audited with its actor"
    );

    // Service principals: the one created for a client, and one whose
    // provider is another spelling of `service` (written behind the API).
    let (ok, _, stderr) = admin(
        &db,
        &[
            "create-service-client",
            "--role",
            "provisioner",
            "--name",
            "hook",
        ],
    );
    assert!(ok, "{stderr}");
    let hook = profiles
        .lookup_profile(bearer(
            &admin_token,
            LookupProfileRequest {
                auth_provider: "service".into(),
                auth_id: "hook".into(),
            },
        ))
        .await
        .expect("the admin finds the principal")
        .into_inner();
    let spelled = uuid::Uuid::new_v4().to_string();
    execute(
        &db,
        &format!(
            "INSERT INTO profiles (id, auth_provider, auth_id, roles, revision, created_at, updated_at) \
             VALUES ('{spelled}', 'Service', 'sneaky', '', 1, '{AHEAD}', '{AHEAD}')"
        ),
    );
    for principal in [hook.id.as_str(), spelled.as_str()] {
        let (ok, _, stderr) = admin(&db, &["grant-role", principal, "admin"]);
        assert!(!ok, "grant-role {principal} admin succeeded");
        assert!(stderr.contains("admin is for people"), "{stderr}");
        assert_eq!(
            crate::support::scalar(
                &db,
                &format!(
                    "SELECT count(*) FROM profiles WHERE id = '{principal}' AND roles LIKE '%admin%'"
                ),
            ),
            0,
            "{principal} holds no admin"
        );
    }
    let (ok, _, stderr) = admin(
        &db,
        &[
            "issue-service-token",
            "--name",
            "hook",
            "--role",
            "admin",
            "--dev",
        ],
    );
    assert!(!ok, "a service token with admin was issued");
    assert!(stderr.contains("admin is for people"), "{stderr}");
    let refused = profiles
        .update_profile(bearer(
            &admin_token,
            UpdateProfileRequest {
                profile: Some(UserProfile {
                    roles: vec!["admin".into(), "provisioner".into()],
                    ..hook.clone()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["roles".into()],
                }),
            },
        ))
        .await
        .expect_err("UpdateProfile never makes a service admin");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert_eq!(violated_fields(&refused), ["profile.roles"]);
}
