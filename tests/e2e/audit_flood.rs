//! Flooding the audit trail as an attacker would: without any account, from
//! many addresses at once, with refused tokens and rate-limited calls — while
//! a legitimate user's refused accesses must still all reach the trail.

use crate::support::{
    Backend, Server, ServerOptions, TestDb, bearer, email, eventually, forwarded_for, register,
    scalar,
};
use identity::proto::v1::auth_service_client::AuthServiceClient;
use identity::proto::v1::profile_service_client::ProfileServiceClient;
use identity::proto::v1::*;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tonic::Code;

/// Client addresses the attacker spreads over (through the trusted proxy).
const ADDRESSES: u64 = 24;
const TASKS: u64 = 32;
const FLOOD: Duration = Duration::from_secs(10);
const DENIALS: usize = 20;

/// A request with a random bearer token, forwarded for `from`.
fn stranger<T>(from: &str, message: T) -> tonic::Request<T> {
    let token = format!(
        "{}.{}.{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut request = bearer(&token, message);
    request.metadata_mut().insert(
        "x-forwarded-for",
        from.parse().expect("an address is a valid header value"),
    );
    request
}

/// What the attacker saw: token refusals and refused registrations (each of
/// which the server logs and audits) and rate-limited calls.
#[derive(Default)]
struct Seen {
    refused: i64,
    invalid: i64,
    limited: i64,
}

async fn flood(channel: tonic::transport::Channel, task: u64, until: Instant) -> Seen {
    let mut auth = AuthServiceClient::new(channel.clone());
    let mut profiles = ProfileServiceClient::new(channel);
    let mut seen = Seen::default();
    let mut n = task;
    while Instant::now() < until {
        let from = format!("198.51.100.{}", n % ADDRESSES + 1);
        if n.is_multiple_of(3) {
            let answer = auth
                .validate_token(forwarded_for(
                    &from,
                    ValidateTokenRequest {
                        access_token: "x".into(),
                    },
                ))
                .await;
            match answer {
                Ok(r) => {
                    assert!(!r.into_inner().active, "\"x\" is no token");
                    seen.refused += 1;
                }
                Err(s) if s.code() == Code::ResourceExhausted => seen.limited += 1,
                Err(s) => panic!("ValidateToken: unexpected {:?}: {}", s.code(), s.message()),
            }
        } else if n % 3 == 1 {
            let answer = auth
                .register(forwarded_for(
                    &from,
                    RegisterRequest {
                        email: "not an email".into(),
                        password: "short".into(),
                        display_name: String::new(),
                    },
                ))
                .await
                .expect_err("an invalid registration is refused");
            // Register's quota answers before the input is weighed.
            match answer.code() {
                Code::InvalidArgument => seen.invalid += 1,
                Code::ResourceExhausted => seen.limited += 1,
                other => panic!("Register: unexpected {other:?}: {}", answer.message()),
            }
        } else {
            let answer = profiles
                .get_profile(stranger(
                    &from,
                    GetProfileRequest {
                        id: uuid::Uuid::new_v4().to_string(),
                    },
                ))
                .await
                .expect_err("a random bearer token gets nothing");
            assert_eq!(answer.code(), Code::Unauthenticated, "{}", answer.message());
            seen.refused += 1;
        }
        n += TASKS;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_tokens_from_many_addresses_leaves_a_bounded_trail_and_every_denied_access()
 {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_TRUSTED_PROXIES", "127.0.0.1/32")
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_VALIDATE", "30/1m"),
    );
    let mut auth = server.auth().await;
    let owner = register(&mut auth, &email("owner")).await;
    let neighbour = register(&mut auth, &email("neighbour")).await;
    let neighbour_id = auth
        .validate_token(ValidateTokenRequest {
            access_token: neighbour.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .profile_id;
    let owner_id = auth
        .validate_token(ValidateTokenRequest {
            access_token: owner.access_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .profile_id;
    let before = scalar(&db, "SELECT count(*) FROM audit_events");

    let until = Instant::now() + FLOOD;
    let mut attackers = JoinSet::new();
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(server.channel().await);
    }
    for task in 0..TASKS {
        let channel = channels[(task % 4) as usize].clone();
        attackers.spawn(flood(channel, task, until));
    }

    // The legitimate user, racing the flood from its own address.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    for _ in 0..DENIALS {
        let status = profiles
            .get_profile(bearer(
                &owner.access_token,
                GetProfileRequest {
                    id: neighbour_id.clone(),
                },
            ))
            .await
            .expect_err("another user's profile is not the owner's to read");
        assert_eq!(status.code(), Code::NotFound, "{}", status.message());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let mut seen = Seen::default();
    while let Some(result) = attackers.join_next().await {
        let part = result.expect("an attacker task");
        seen.refused += part.refused;
        seen.invalid += part.invalid;
        seen.limited += part.limited;
    }
    assert!(
        seen.refused > 0 && seen.invalid > 0 && seen.limited > 0,
        "the flood ran"
    );

    let denied_sql = format!(
        "SELECT count(*) FROM audit_events WHERE event_name = 'identity.access.denied' \
         AND profile_id = '{owner_id}'"
    );
    let all_denials = eventually(Duration::from_secs(30), || async {
        scalar(&db, &denied_sql) == DENIALS as i64
    })
    .await;
    assert!(
        all_denials,
        "only {} of the owner's {DENIALS} refused accesses were audited during the flood \
         ({} refused tokens, {} rate-limited calls)",
        scalar(&db, &denied_sql),
        seen.refused,
        seen.limited
    );

    // A graceful stop writes what was still being counted.
    assert!(server.terminate().success(), "the server stops cleanly");
    let grown = scalar(&db, "SELECT count(*) FROM audit_events") - before;
    // One row per address, reason (a refused token, a refused registration)
    // and minute (a 10 s flood spans at most two), plus the owner's denials
    // and slack for the start.
    let bound = (ADDRESSES as i64 + 1) * 2 * 2 + DENIALS as i64 + 20;
    assert!(
        grown <= bound,
        "{grown} audit rows for {} refused tokens, {} refused registrations and {} \
         rate-limited calls; at most {bound} expected",
        seen.refused,
        seen.invalid,
        seen.limited
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.rate_limited'"
        ),
        0,
        "rate-limited calls are a log event and a metric, not audit rows"
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT coalesce(sum((detail::jsonb ->> 'count')::bigint), 0) FROM audit_events \
             WHERE event_name = 'identity.token.refused'"
        ),
        seen.refused,
        "the aggregated rows count every refused token"
    );
    assert_eq!(
        scalar(
            &db,
            "SELECT coalesce(sum((detail::jsonb ->> 'count')::bigint), 0) FROM audit_events \
             WHERE event_name = 'identity.register.refused'"
        ),
        seen.invalid,
        "and every refused registration"
    );
}

/// Refused accesses one signed-in attacker causes in the flood below.
const SIGNED_IN_TASKS: usize = 8;
const SIGNED_IN_FLOOD: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_user_flooding_refused_accesses_cannot_push_other_users_denials_out() {
    let db = TestDb::new(Backend::Postgres);
    let server = Server::start(&db);
    let mut auth = server.auth().await;
    let attacker = register(&mut auth, &email("attacker")).await;
    let owner = register(&mut auth, &email("owner")).await;
    let neighbour = register(&mut auth, &email("neighbour")).await;
    let id_of = |token: String| {
        let mut auth = auth.clone();
        async move {
            auth.validate_token(ValidateTokenRequest {
                access_token: token,
            })
            .await
            .unwrap()
            .into_inner()
            .profile_id
        }
    };
    let attacker_id = id_of(attacker.access_token.clone()).await;
    let owner_id = id_of(owner.access_token.clone()).await;
    let neighbour_id = id_of(neighbour.access_token.clone()).await;

    let until = Instant::now() + SIGNED_IN_FLOOD;
    let mut flooders = JoinSet::new();
    for _ in 0..SIGNED_IN_TASKS {
        let mut profiles = ProfileServiceClient::new(server.channel().await);
        let token = attacker.access_token.clone();
        flooders.spawn(async move {
            let mut refused = 0i64;
            while Instant::now() < until {
                // Another id each time, as a script probing for profiles would.
                let status = profiles
                    .get_profile(bearer(
                        &token,
                        GetProfileRequest {
                            id: uuid::Uuid::new_v4().to_string(),
                        },
                    ))
                    .await
                    .expect_err("nobody else's profile is the attacker's to read");
                assert_eq!(status.code(), Code::NotFound, "{}", status.message());
                refused += 1;
            }
            refused
        });
    }
    let mut profiles = ProfileServiceClient::new(server.channel().await);
    for _ in 0..DENIALS {
        let status = profiles
            .get_profile(bearer(
                &owner.access_token,
                GetProfileRequest {
                    id: neighbour_id.clone(),
                },
            ))
            .await
            .expect_err("another user's profile is not the owner's to read");
        assert_eq!(status.code(), Code::NotFound, "{}", status.message());
        tokio::time::sleep(SIGNED_IN_FLOOD / (DENIALS as u32 * 2)).await;
    }
    let mut refused = 0;
    while let Some(part) = flooders.join_next().await {
        refused += part.expect("a flooding task");
    }
    assert!(
        refused > 5 * i64::from(identity::service::audit::PROFILE_BUDGET_PER_MINUTE),
        "the flood ran ({refused} refused accesses)"
    );
    assert!(server.terminate().success(), "the server stops cleanly");

    let owner_rows = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.access.denied' \
             AND profile_id = '{owner_id}'"
        ),
    );
    assert_eq!(
        owner_rows, DENIALS as i64,
        "every refused access of the owner has its row"
    );
    let attacker_rows = scalar(
        &db,
        &format!(
            "SELECT count(*) FROM audit_events WHERE event_name = 'identity.access.denied' \
             AND profile_id = '{attacker_id}'"
        ),
    );
    // A 4 s flood spans at most two minutes: the budget of each, plus one
    // counted row for each.
    let bound = 2 * (i64::from(identity::service::audit::PROFILE_BUDGET_PER_MINUTE) + 1);
    assert!(
        attacker_rows <= bound,
        "{attacker_rows} rows for the attacker's {refused} refused accesses; at most {bound}"
    );
    assert_eq!(
        scalar(
            &db,
            &format!(
                "SELECT coalesce(sum(coalesce((detail::jsonb ->> 'count')::bigint, 1)), 0) \
                 FROM audit_events WHERE event_name = 'identity.access.denied' \
                 AND profile_id = '{attacker_id}'"
            ),
        ),
        refused,
        "yet every one of them is counted"
    );
}
