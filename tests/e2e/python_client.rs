//! The README's Python example ("Calling identity from your service"), run
//! as pasted: stubs generated with grpcio-tools exactly as the README says,
//! then the block fenced ```python python-client against a dev server.

use crate::support::{Backend, Server, TempDir, TestDb, email};
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The code of the README block fenced as ```python python-client.
fn readme_example() -> String {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("```python python-client\n")
        .expect("README has the Python client example");
    let body = &readme[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("\n```").expect("the block ends")].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_python_client_works_as_pasted() {
    // make test installs grpcio, grpcio-tools and grpcio-status into .venv
    // (requirements-dev.txt).
    let python = root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "run `make tools`: {} is missing",
        python.display()
    );
    let stubs = TempDir::new();
    let protos: Vec<PathBuf> = std::fs::read_dir(root().join("proto/identity/v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .map(|p| p.strip_prefix(root()).unwrap().to_owned())
        .collect();
    let generated = Command::new(&python)
        .current_dir(root())
        .args(["-m", "grpc_tools.protoc", "-I", "proto"])
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .args(&protos)
        .output()
        .expect("python runs");
    assert!(
        generated.status.success(),
        "stubs: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let example = stubs.path().join("example.py");
    std::fs::write(&example, readme_example()).unwrap();

    let db = TestDb::new(Backend::Postgres);
    let server = Server::start(&db);
    let address = email("python");
    let output = Command::new(&python)
        .arg(&example)
        .env("PYTHONPATH", stubs.path())
        .env("IDENTITY_ADDR", server.addr.to_string())
        .env("DEMO_EMAIL", &address)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("email {address}")), "{stdout}");
    assert!(
        stdout.contains("refused INVALID_ARGUMENT FIELD_INVALID"),
        "{stdout}"
    );
}
