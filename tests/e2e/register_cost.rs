//! What a Register costs an attacker once over its quota: the limiter
//! answers before the password's strength is estimated (zxcvbn is CPU work
//! an attacker could otherwise buy with every refused call).

use crate::support::{Backend, PASSWORD, Server, ServerOptions, TestDb, email};
use identity::proto::v1::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_register_quota_no_password_is_evaluated() {
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_REGISTER", "3/1m"),
    );
    let mut auth = server.auth().await;
    let register = |email: String, password: String| RegisterRequest {
        email,
        password,
        display_name: String::new(),
    };
    let weak = || "password1234".to_owned();
    // Within the quota a weak password is named.
    let status = auth
        .register(register(email("weak"), weak()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("password"), "{status:?}");
    for _ in 0..2 {
        auth.register(register(email("fine"), PASSWORD.into()))
            .await
            .expect("within the quota");
    }
    // Over it, the limiter answers whatever the password: the weak one is
    // not named, and the longest, most varied one is not weighed.
    let expensive: String = "aZ9$éq🦀Lw3!".repeat(8).chars().take(40).collect();
    let expensive = expensive
        .char_indices()
        .take_while(|(i, c)| i + c.len_utf8() <= 72)
        .map(|(_, c)| c)
        .collect::<String>();
    for password in [weak(), expensive] {
        let status = auth
            .register(register(email("over"), password))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "the quota answers first: {status:?}"
        );
    }
    // Log lines are read by another thread: they may land a moment late.
    let rate_limited = || {
        server
            .logs()
            .lines()
            .filter(|l| l.contains("identity.rate_limited") && l.contains("register"))
            .count()
    };
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(5), || async {
            rate_limited() == 2
        })
        .await,
        "{}",
        server.logs()
    );
    let logs = server.logs();
    let refused = logs
        .lines()
        .filter(|l| l.contains("identity.register.refused"))
        .count();
    assert_eq!(
        refused, 1,
        "only the call within the quota was weighed:\n{logs}"
    );
}
