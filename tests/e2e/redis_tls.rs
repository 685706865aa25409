//! Redis over TLS (`rediss://`): replicas share one rate limit through a
//! TLS-only Redis whose certificate is checked against
//! IDENTITY_RATE_LIMIT_REDIS_CA_FILE; with a certificate from another CA
//! nothing is sent and the replicas fall back to local limits, saying so.

use crate::support::pki::{Ca, Leaf};
use crate::support::{Backend, PASSWORD, Server, ServerOptions, TempDir, TestDb, email, register};
use identity::proto::v1::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;

/// A redis-server that speaks TLS only, on loopback.
struct TlsRedis {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl TlsRedis {
    fn start(leaf: &Leaf) -> TlsRedis {
        let dir = TempDir::new();
        let (cert, key) = (dir.path().join("redis.crt"), dir.path().join("redis.key"));
        std::fs::write(&cert, &leaf.cert_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string(), "--tls-auth-clients", "no"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsRedis {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn login_code(
    auth: &mut identity::proto::v1::auth_service_client::AuthServiceClient<
        tonic::transport::Channel,
    >,
    address: &str,
) -> Code {
    match auth
        .login(LoginRequest {
            email: address.into(),
            password: PASSWORD.into(),
            ..Default::default()
        })
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_limit_through_a_tls_redis_whose_certificate_is_checked() {
    let _turn = crate::support::machine_to_myself().await;
    let ca = Ca::new("redis CA");
    let redis = TlsRedis::start(&ca.server());
    let files = TempDir::new();
    let bundle = files.path().join("redis-ca.pem");
    std::fs::write(&bundle, &ca.pem).unwrap();
    let url = format!("rediss://localhost:{}/0", redis.port);
    let options = |ca_file: &std::path::Path| {
        ServerOptions::default()
            .env("IDENTITY_RATE_LIMIT_ENABLED", "true")
            .env("IDENTITY_RATE_LIMIT_LOGIN", "4/1m")
            .env("IDENTITY_RATE_LIMIT_REDIS_URL", url.clone())
            .env(
                "IDENTITY_RATE_LIMIT_REDIS_CA_FILE",
                ca_file.display().to_string(),
            )
    };

    let db = TestDb::new(Backend::Postgres);
    let a = Server::start_with_options(&db, options(&bundle));
    let b = Server::start_with_options(&db, options(&bundle));
    let (mut on_a, mut on_b) = (a.auth().await, b.auth().await);
    let address = email("redis-tls");
    register(&mut on_a, &address).await;
    for round in 0..4 {
        let auth = if round % 2 == 0 { &mut on_a } else { &mut on_b };
        assert_eq!(
            login_code(auth, &address).await,
            Code::Ok,
            "4 calls fit the quota"
        );
    }
    for auth in [&mut on_a, &mut on_b] {
        assert_eq!(
            login_code(auth, &address).await,
            Code::ResourceExhausted,
            "the fifth call on either replica is over one limit kept in Redis"
        );
    }
    for server in [&a, &b] {
        assert!(
            !server.logs().contains("identity.rate_limit.degraded"),
            "{}",
            server.logs()
        );
    }
    drop((a, b));

    // A Redis whose certificate does not chain to the named CA is not used.
    let other = Ca::new("someone else's CA");
    let wrong = files.path().join("other-ca.pem");
    std::fs::write(&wrong, &other.pem).unwrap();
    let db = TestDb::new(Backend::Postgres);
    let c = Server::start_with_options(&db, options(&wrong));
    let mut on_c = c.auth().await;
    let address = email("redis-tls-wrong-ca");
    register(&mut on_c, &address).await;
    assert_eq!(
        login_code(&mut on_c, &address).await,
        Code::Ok,
        "local limits serve"
    );
    assert!(
        crate::support::eventually(Duration::from_secs(10), || async {
            c.logs().contains("identity.rate_limit.degraded")
        })
        .await,
        "the fallback to local limits is logged:\n{}",
        c.logs()
    );
}

#[test]
fn redis_tls_settings_that_would_skip_the_check_stop_the_start() {
    let dir = TempDir::new();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, Ca::new("x").pem).unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for (url, ca_file, setting) in [
        (
            "rediss://localhost:6380/0#insecure",
            None,
            "IDENTITY_RATE_LIMIT_REDIS_URL",
        ),
        (
            "redis://localhost:6379/0",
            Some(&ca),
            "IDENTITY_RATE_LIMIT_REDIS_CA_FILE",
        ),
        (
            "rediss://localhost:6380/0",
            Some(&empty),
            "IDENTITY_RATE_LIMIT_REDIS_CA_FILE",
        ),
    ] {
        let ca_file = ca_file.map(|p| p.display().to_string());
        let mut env = vec![("IDENTITY_RATE_LIMIT_REDIS_URL", url)];
        if let Some(ca_file) = &ca_file {
            env.push(("IDENTITY_RATE_LIMIT_REDIS_CA_FILE", ca_file));
        }
        let (code, stderr) = crate::support::refused_start(&env);
        assert_eq!(code, Some(2), "{url}: {stderr}");
        assert!(stderr.contains(setting), "{url}: {stderr}");
    }
}
