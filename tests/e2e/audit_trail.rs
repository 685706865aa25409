//! AuditService.ListAuditEvents: the trail the service writes, read over
//! gRPC by admins only, newest first, filtered and paged — and probed the
//! way a curious user would: without the role, with moved and tampered page
//! tokens and with filters the service does not understand.

use crate::on_both_backends;
use crate::support::{
    Auth, Backend, PASSWORD, Server, ServerOptions, TestDb, assert_invalid, bearer, email,
    eventually, login_request, register, scalar,
};
use identity::proto::v1::audit_service_client::AuditServiceClient;
use identity::proto::v1::*;
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

type Audit = AuditServiceClient<Channel>;

async fn list(
    audit: &mut Audit,
    token: &str,
    filter: &str,
    page_size: i32,
    page_token: &str,
) -> Result<ListAuditEventsResponse, tonic::Status> {
    audit
        .list_audit_events(bearer(
            token,
            ListAuditEventsRequest {
                page_size,
                page_token: page_token.to_owned(),
                filter: filter.to_owned(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

/// Every event of `filter`, walking pages of `page_size`.
async fn walk(audit: &mut Audit, token: &str, filter: &str, page_size: i32) -> Vec<AuditEvent> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list(audit, token, filter, page_size, &page_token)
            .await
            .expect("a page");
        assert!(page.events.len() <= page_size as usize);
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        page_token = page.next_page_token;
    }
}

/// A server on `db` whose first account, `auditor`, is its admin (by
/// IDENTITY_BOOTSTRAP_ADMINS): the server, both clients and the admin's
/// tokens.
async fn with_an_admin(db: &TestDb) -> (Server, Auth, Audit, TokenPair) {
    let admin_email = email("auditor");
    let server = Server::start_with_options(
        db,
        ServerOptions::default().env("IDENTITY_BOOTSTRAP_ADMINS", admin_email.clone()),
    );
    let mut auth = server.auth().await;
    let audit = AuditServiceClient::new(server.channel().await);
    let admin = register(&mut auth, &admin_email).await;
    (server, auth, audit, admin)
}

fn micros(event: &AuditEvent) -> i64 {
    let t = event.occur_time.as_ref().expect("a time");
    t.seconds * 1_000_000 + i64::from(t.nanos / 1000)
}

on_both_backends!(
    an_admin_reads_the_trail_newest_first_filtered_and_paged,
    only_admins_read_the_trail_and_it_never_holds_a_secret,
    time_bounds_past_year_9999_are_refused_not_misread,
);

async fn an_admin_reads_the_trail_newest_first_filtered_and_paged(backend: Backend) {
    {
        let db = TestDb::new(backend);
        let (_server, mut auth, mut audit, admin) = with_an_admin(&db).await;
        let admin = admin.access_token;
        let alice_email = email("alice");
        let alice = register(&mut auth, &alice_email).await;
        let alice_id = auth
            .validate_token(ValidateTokenRequest {
                access_token: alice.access_token.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .profile_id;
        for _ in 0..3 {
            let refused = auth
                .login(login_request(&alice_email, "not her password at all"))
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::Unauthenticated);
        }
        let later = chrono::Utc::now();
        auth.login(login_request(&alice_email, PASSWORD))
            .await
            .expect("Alice signs in");
        // Refusals are audited in the background: wait for the rows.
        let written = eventually(Duration::from_secs(5), || async {
            scalar(
                &db,
                "SELECT count(*) FROM audit_events WHERE event_name = 'identity.login.failed'",
            ) == 3
        })
        .await;
        assert!(written, "three failed logins are in the trail");

        // Everything, newest first.
        let all = list(&mut audit, &admin, "", 0, "").await.unwrap();
        assert!(
            all.next_page_token.is_empty(),
            "one default page holds it all"
        );
        let times: Vec<i64> = all.events.iter().map(micros).collect();
        assert!(
            times.windows(2).all(|w| w[0] >= w[1]),
            "newest first: {times:?}"
        );
        assert_eq!(
            all.events.first().map(|e| e.event_name.as_str()),
            Some("identity.login.succeeded")
        );
        assert_eq!(
            all.events.len() as i64,
            scalar(&db, "SELECT count(*) FROM audit_events"),
            "the same rows the service wrote"
        );

        // By name.
        let failed = list(
            &mut audit,
            &admin,
            r#"event_name="identity.login.failed""#,
            0,
            "",
        )
        .await
        .unwrap()
        .events;
        assert_eq!(failed.len(), 3);
        assert!(failed.iter().all(|e| {
            e.event_name == "identity.login.failed"
                && e.profile_id == alice_id
                && e.detail
                    .as_ref()
                    .is_some_and(|d| d.fields.contains_key("reason"))
        }));

        // By profile and time: only Alice's rows since `later`.
        let filter = format!(
            r#"profile_id="{alice_id}" AND occur_time>="{}""#,
            later.to_rfc3339()
        );
        let recent = walk(&mut audit, &admin, &filter, 1).await;
        assert_eq!(
            recent
                .iter()
                .map(|e| e.event_name.as_str())
                .collect::<Vec<_>>(),
            ["identity.login.succeeded"],
            "{recent:?}"
        );
        let before = format!(r#"occur_time<"{}""#, later.to_rfc3339());
        let earlier = walk(&mut audit, &admin, &before, 2).await;
        assert!(earlier.iter().all(|e| micros(e) < later.timestamp_micros()));
        assert_eq!(earlier.len() + 1, all.events.len());

        // Pages of one walk the same rows in the same order as one page.
        let paged = walk(&mut audit, &admin, "", 2).await;
        assert_eq!(
            paged.iter().map(|e| &e.id).collect::<Vec<_>>(),
            all.events.iter().map(|e| &e.id).collect::<Vec<_>>()
        );

        // A page token belongs to its filter; a tampered one to nothing.
        let first = list(&mut audit, &admin, "", 1, "").await.unwrap();
        let moved = list(
            &mut audit,
            &admin,
            r#"event_name="identity.login.failed""#,
            1,
            &first.next_page_token,
        )
        .await
        .unwrap_err();
        assert_invalid(&moved, "page_token", "a token moved to another filter");
        let mut tampered = first.next_page_token.clone().into_bytes();
        tampered[4] ^= 1;
        let tampered = list(
            &mut audit,
            &admin,
            "",
            1,
            &String::from_utf8_lossy(&tampered),
        )
        .await
        .unwrap_err();
        assert_invalid(&tampered, "page_token", "a tampered token");

        // What is not understood is refused, never ignored.
        for bad in [
            "event_name=identity.login.failed",
            r#"detail="x""#,
            r#"event_name="a" OR event_name="b""#,
            r#"occur_time>="yesterday""#,
            r#"profile_id="me""#,
        ] {
            let status = list(&mut audit, &admin, bad, 0, "").await.unwrap_err();
            assert_invalid(&status, "filter", bad);
        }
        let negative = list(&mut audit, &admin, "", -1, "").await.unwrap_err();
        assert_invalid(&negative, "page_size", "a negative page size");
    }
}

/// A strict or inclusive bound at the very end of year 9999 becomes a bound
/// in year 10000, which SQLite (times kept as text) compared as text:
/// "after the end of 9999" listed every row and "up to the end of 9999"
/// none. Such bounds are refused, naming the filter, on both backends; the
/// latest bound still within 9999 selects what it says.
async fn time_bounds_past_year_9999_are_refused_not_misread(backend: Backend) {
    let db = TestDb::new(backend);
    let (_server, mut auth, mut audit, admin) = with_an_admin(&db).await;
    let admin = admin.access_token;
    register(&mut auth, &email("alice")).await;
    let all = walk(&mut audit, &admin, "", 100).await;
    assert!(all.len() >= 2, "{all:?}");

    for past_9999 in [
        r#"occur_time>"9999-12-31T23:59:59.999999999Z""#,
        r#"occur_time<="9999-12-31T23:59:59.999999999Z""#,
        r#"occur_time>"9999-12-31T23:59:59.9999995Z""#,
    ] {
        let status = list(&mut audit, &admin, past_9999, 100, "")
            .await
            .expect_err(past_9999);
        assert_invalid(&status, "filter", past_9999);
    }
    let until_9999 = walk(
        &mut audit,
        &admin,
        r#"occur_time<"9999-12-31T23:59:59Z""#,
        100,
    )
    .await;
    assert!(
        all.iter().all(|e| until_9999.iter().any(|u| u.id == e.id)),
        "{until_9999:?}"
    );
    let after_9999 = walk(
        &mut audit,
        &admin,
        r#"occur_time>="9999-12-31T23:59:59Z""#,
        100,
    )
    .await;
    assert!(after_9999.is_empty(), "{after_9999:?}");
}

async fn only_admins_read_the_trail_and_it_never_holds_a_secret(backend: Backend) {
    {
        let db = TestDb::new(backend);
        let (_server, mut auth, mut audit, admin) = with_an_admin(&db).await;
        let mallory_email = email("mallory");
        let mallory = register(&mut auth, &mallory_email).await;
        let refreshed = auth
            .refresh(RefreshRequest {
                refresh_token: mallory.refresh_token.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .tokens
            .unwrap();

        // A user without the role, and nobody at all.
        let denied = list(&mut audit, &mallory.access_token, "", 0, "")
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        let anonymous = audit
            .list_audit_events(ListAuditEventsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(anonymous.code(), Code::Unauthenticated);
        let recorded = eventually(Duration::from_secs(5), || async {
            scalar(
                &db,
                "SELECT count(*) FROM audit_events WHERE event_name = 'identity.access.denied' \
                 AND detail LIKE '%list_audit_events%'",
            ) == 1
        })
        .await;
        assert!(recorded, "the refusal is itself in the trail");

        let events = walk(&mut audit, &admin.access_token, "", 100).await;
        assert!(events.len() >= 4, "{events:?}");
        let shown = format!("{events:?}");
        for secret in [
            PASSWORD,
            mallory.access_token.as_str(),
            mallory.refresh_token.as_str(),
            refreshed.refresh_token.as_str(),
            admin.refresh_token.as_str(),
            mallory_email.as_str(),
        ] {
            assert!(!shown.contains(secret), "the trail shows {secret}");
        }
    }
}

#[tokio::test]
async fn the_audit_service_is_served_and_reflected() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start(&db);
    let status = crate::support::health(&server, "identity.v1.AuditService").await;
    assert_eq!(status, ServingStatus::Serving);
}
