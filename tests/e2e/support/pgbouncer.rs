//! A real PgBouncer (the Debian package, installed by scripts/ensure-tools.sh)
//! in front of the shared PostgreSQL, on an ephemeral port, killed on drop.

use super::{TempDir, TestDb};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One PgBouncer database entry: clients connect to `alias`, PgBouncer to
/// the test database with at most `pool_size` server connections.
pub struct Alias {
    pub alias: &'static str,
    pub pool_mode: &'static str,
    pub pool_size: u32,
}

pub struct PgBouncer {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl PgBouncer {
    /// Starts PgBouncer (`auth_type = trust`) with one entry per alias, all
    /// pointing at `db` on 127.0.0.1:5432.
    pub fn start(db: &TestDb, aliases: &[Alias]) -> PgBouncer {
        let dir = TempDir::new();
        let database = db.pg_name();
        let entries: String = aliases
            .iter()
            .map(|a| {
                format!(
                    "{} = host=127.0.0.1 port=5432 dbname={database} pool_mode={} pool_size={}\n",
                    a.alias, a.pool_mode, a.pool_size
                )
            })
            .collect();
        // A port nobody holds right now (PgBouncer takes no port 0).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let userlist = dir.path().join("userlist.txt");
        std::fs::write(&userlist, "\"postgres\" \"\"\n").unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n{entries}\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\n\
                 max_client_conn = 500\npidfile =\nlogfile =\n",
                userlist.display()
            ),
        )
        .unwrap();
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("pgbouncer");
        let mut command = Command::new(binary);
        // PgBouncer refuses to run as root; CI runs as root.
        if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
            command.args(["-u", "nobody"]);
        }
        let mut child = command
            .arg(&ini)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgbouncer runs (make test installs it)");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "pgbouncer exited ({status}):\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            assert!(Instant::now() < deadline, "pgbouncer did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        PgBouncer {
            child,
            addr,
            logs,
            _dir: dir,
        }
    }

    /// The database URL of `alias` through this PgBouncer.
    pub fn url(&self, db: &TestDb, alias: &str) -> String {
        db.url_via_as(self.addr, alias)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
