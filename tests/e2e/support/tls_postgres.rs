//! A private PostgreSQL cluster that accepts TLS connections only, for the
//! database-TLS tests (the shared server on 5432 speaks plaintext). Started
//! with the machine's PostgreSQL binaries, as the `postgres` user when the
//! tests run as root (PostgreSQL refuses to run as root).

use super::TempDir;
use super::pki::Leaf;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::Command;

pub struct TlsPostgres {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
}

fn as_postgres(program: PathBuf) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn chown_to_postgres(path: &std::path::Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(path);
                c
            },
            "chown",
        );
    }
}

impl TlsPostgres {
    /// A cluster on 127.0.0.1 presenting `leaf` (issued for `localhost`).
    pub fn start(leaf: &Leaf) -> TlsPostgres {
        let bindir = Command::new("pg_config").arg("--bindir").output().unwrap();
        let bin = PathBuf::from(String::from_utf8_lossy(&bindir.stdout).trim());
        let dir = TempDir::new();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        chown_to_postgres(dir.path());
        let data = dir.path().join("data");
        let mut initdb = as_postgres(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"]);
        run(initdb, "initdb");

        std::fs::write(data.join("server.crt"), &leaf.cert_pem).unwrap();
        std::fs::write(data.join("server.key"), &leaf.key_pem).unwrap();
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nssl = on\n\
             ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             unix_socket_directories = '{}'\nfsync = off\n",
            dir.path().display()
        ));
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        // TLS or nothing over TCP.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        chown_to_postgres(dir.path());
        let mut start = as_postgres(bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .args(["-w", "-t", "30", "start"]);
        run(start, "pg_ctl start");
        TlsPostgres { dir, bin, port }
    }

    /// `postgres://postgres@localhost:PORT/postgres` followed by `params`.
    pub fn url(&self, params: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres{params}",
            self.port
        )
    }

    /// A folder the `identity` server may use as its data directory.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let mut stop = as_postgres(self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
    }
}
