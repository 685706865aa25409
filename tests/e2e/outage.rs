//! The database goes away and comes back: health follows it, RPCs answer
//! UNAVAILABLE meanwhile, and no acknowledged registration is lost.

use crate::support::proxy::Proxy;
use crate::support::{
    Backend, PASSWORD, Server, ServerOptions, TestDb, email, eventually, health, register,
};
use identity::proto::v1::*;
use std::time::Duration;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_turns_health_off_and_back_on_without_losing_registrations() {
    let db = TestDb::new(Backend::Postgres);
    // Migrate directly, then point the server at the proxy.
    identity_store::Store::migrate(&db.url.parse().unwrap())
        .await
        .unwrap();
    let upstream: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = Proxy::start(upstream).await;
    let server = Server::start_with(
        &db.url_via(proxy.addr),
        db.dir.path(),
        ServerOptions::default().env("IDENTITY_MIGRATE_ON_START", "false"),
    );
    let mut auth = server.auth().await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            health(&server, "").await == ServingStatus::Serving
        })
        .await
    );

    let mut acknowledged = Vec::new();
    for _ in 0..3 {
        let address = email("before");
        register(&mut auth, &address).await;
        acknowledged.push(address);
    }

    proxy.cut();
    assert!(
        eventually(Duration::from_secs(10), || async {
            health(&server, "").await == ServingStatus::NotServing
        })
        .await,
        "health must go NOT_SERVING while the database is unreachable"
    );
    for _ in 0..3 {
        let address = email("during");
        match auth
            .register(RegisterRequest {
                email: address.clone(),
                password: PASSWORD.into(),
                display_name: String::new(),
            })
            .await
        {
            Ok(_) => acknowledged.push(address),
            Err(status) => assert_eq!(status.code(), Code::Unavailable, "{status:?}"),
        }
    }
    let status = auth
        .login(LoginRequest {
            email: acknowledged[0].clone(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        !status.message().to_lowercase().contains("postgres"),
        "no database detail: {}",
        status.message()
    );

    proxy.restore();
    assert!(
        eventually(Duration::from_secs(15), || async {
            health(&server, "").await == ServingStatus::Serving
        })
        .await,
        "health must return to SERVING without a restart"
    );
    for address in acknowledged {
        let mut ok = false;
        for _ in 0..20 {
            match auth
                .login(LoginRequest {
                    email: address.clone(),
                    password: PASSWORD.into(),
                    ..Default::default()
                })
                .await
            {
                Ok(_) => {
                    ok = true;
                    break;
                }
                Err(s) if s.code() == Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(s) => panic!("{address}: {s:?}"),
            }
        }
        assert!(ok, "acknowledged registration {address} was lost");
    }
}
