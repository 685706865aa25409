//! The bench in a tiny mode, as CI runs it: every scenario against the real
//! (debug) binaries and PostgreSQL. Figures are printed, not asserted; what
//! is asserted is that every scenario ran and nothing failed.

use std::process::Command;

#[test]
fn every_scenario_runs_without_errors() {
    // The identity binary belongs to another package: make sure it is built
    // (a no-op under `cargo test --workspace`).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "identity", "--bin", "identity"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cannot build the identity binary");
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_bench"));
    let identity = bench.with_file_name("identity");
    assert!(identity.exists(), "{} missing", identity.display());

    let out = std::env::temp_dir().join(format!("bench-smoke-{}.json", std::process::id()));
    let output = Command::new(bench)
        .args([
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--sessions",
            "40",
            "--samples",
            "5",
            "--bcrypt-cost",
            "4",
            "--connections",
            "2",
            "--concurrency",
            "8",
            "--login-concurrency",
            "2",
            "--flood-logins",
            "10",
        ])
        .arg("--identity-bin")
        .arg(&identity)
        .arg("--echo-bin")
        .arg(env!("CARGO_BIN_EXE_echo-server"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("bench runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "bench failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    let scenarios = report["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    for expected in [
        "echo",
        "validate",
        "validate_mixed",
        "validate_nocache",
        "get_profile",
        "ext_authz_check",
        "refresh",
        "login",
        "validate_quiet_fixed_rate",
        "validate_under_login_flood",
        "revocation_propagation",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    for s in scenarios {
        let errors: u64 = s["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(errors, 0, "{}: {}", s["scenario"], s["errors"]);
        assert!(
            s["ok"].as_u64().unwrap() > 0,
            "{} did nothing",
            s["scenario"]
        );
    }
    for ratio in [
        "validate_over_echo",
        "get_profile_over_echo",
        "ext_authz_check_over_echo",
        "login_over_bcrypt_ceiling",
        "flood_p99_over_quiet_p99",
    ] {
        assert!(
            report["ratios"][ratio].as_f64().is_some(),
            "{ratio} missing"
        );
    }
    assert!(report["propagation"]["p99_ms"].as_f64().is_some());
}
