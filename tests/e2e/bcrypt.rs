//! Password hashing shares the host: logins must not starve behind other
//! busy processes (security review, issue 13, item 7).

use crate::support::{Backend, PASSWORD, Server, ServerOptions, TestDb, email, register};
use identity::proto::v1::LoginRequest;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Busy normal-priority processes (a compiler, a neighbour's batch job),
/// killed when dropped.
struct BusyNeighbours(Vec<Child>);

impl BusyNeighbours {
    fn start(count: usize) -> BusyNeighbours {
        BusyNeighbours(
            (0..count)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("sh starts")
                })
                .collect(),
        )
    }
}

impl Drop for BusyNeighbours {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_at_production_cost_finish_within_seconds_next_to_two_busy_processes() {
    let _turn = crate::support::machine_to_myself().await;
    let db = TestDb::new(Backend::Sqlite);
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_BCRYPT_COST", "12"),
    );
    let mut auth = server.auth().await;
    let address = email("neighbours");
    register(&mut auth, &address).await;

    let _busy = BusyNeighbours::start(2);
    for n in 0..4 {
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            auth.login(LoginRequest {
                email: address.clone(),
                password: PASSWORD.into(),
                ..Default::default()
            }),
        )
        .await;
        let Ok(answer) = answer else {
            panic!("login {n} took more than 5 s next to two busy processes");
        };
        answer.unwrap_or_else(|e| panic!("login {n} failed after {:?}: {e}", started.elapsed()));
    }
}

/// A login whose caller gives up before its hash could finish is refused at
/// once (RESOURCE_EXHAUSTED with RetryInfo), not run for nobody: the
/// caller's own `grpc-timeout` reaches the admission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_cannot_finish_before_the_callers_deadline_is_refused_at_once() {
    let db = TestDb::new(Backend::Sqlite);
    // Cost 13: a hash takes well over the 200 ms the caller allows.
    let server = Server::start_with_options(
        &db,
        ServerOptions::default().env("IDENTITY_BCRYPT_COST", "13"),
    );
    let mut auth = server.auth().await;
    let address = email("deadline");
    register(&mut auth, &address).await;
    let login = || LoginRequest {
        email: address.clone(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    let mut hurried = tonic::Request::new(login());
    hurried.set_timeout(Duration::from_millis(200));
    let refused = auth.login(hurried).await.unwrap_err();
    // Not DEADLINE_EXCEEDED: the answer came before the deadline.
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "refused by admission, not left to time out: {refused:?}"
    );
    let mut patient = tonic::Request::new(login());
    patient.set_timeout(Duration::from_secs(30));
    auth.login(patient)
        .await
        .expect("a caller who can wait logs in");
}
