//! The bench in a tiny mode, as CI runs it: every scenario against the real
//! (debug) binaries and PostgreSQL. Figures are printed, not asserted; what
//! is asserted is that every scenario ran and nothing failed.

use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// One bench at a time: run side by side on two cores, the debug servers
/// of one starve the other's tiny windows (a refresh window with no call
/// completed).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs the bench with `args` against the debug identity binary (built
/// first: it belongs to another package) and writes its report to a file
/// of its own; the report and what it printed. Fails the test when the
/// bench fails.
fn run_bench(what: &str, args: &[&str]) -> (serde_json::Value, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "identity", "--bin", "identity"])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cannot build the identity binary");
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_bench"));
    let identity = bench.with_file_name("identity");
    assert!(identity.exists(), "{} missing", identity.display());
    let out = std::env::temp_dir().join(format!("bench-{what}-{}.json", std::process::id()));
    let output = Command::new(bench)
        .args(args)
        .arg("--identity-bin")
        .arg(&identity)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    (report, stdout)
}

#[test]
fn every_scenario_runs_without_errors() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let echo = env!("CARGO_BIN_EXE_echo-server");
    let (report, _) = run_bench(
        "smoke",
        &[
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
            // h2load (when installed) at debug speed: few calls per window.
            "--h2load-connections",
            "2",
            "--h2load-streams",
            "4",
            "--echo-bin",
            echo,
        ],
    );
    let scenarios = report["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    // Better-Auth needs node, its node_modules and h2load: measured when
    // they are here, else skipped with the reason (printed, not failed).
    let better_auth = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/provider/node_modules/better-auth/package.json")
        .exists()
        && ["node", "h2load"].iter().all(|tool| {
            Command::new(tool)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if better_auth {
        for expected in ["better_auth_get_session", "validate_beside_get_session"] {
            assert!(names.contains(&expected), "{expected} missing: {names:?}");
        }
        assert!(
            report["ratios"]["better_auth_get_session_over_validate"]
                .as_f64()
                .is_some()
        );
    } else {
        let reason = report["skipped"]["better_auth_get_session"]
            .as_str()
            .unwrap_or_else(|| panic!("neither measured nor skipped: {report}"));
        println!("better_auth_get_session skipped: {reason}");
    }
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
        "client_verify_cached",
        "client_verify_first_seen",
        "revocation_to_client",
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
        assert!(
            matches!(s["generator"].as_str(), Some("h2load" | "rust")),
            "{}: generator {}",
            s["scenario"],
            s["generator"]
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

/// `bench --soak` in a tiny mode: a 20 s soak sampled every 5 s, zero
/// errors (the bench itself fails on any), the table and the trend printed.
#[test]
fn a_short_soak_runs_without_errors_and_judges_its_trend() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (report, stdout) = run_bench(
        "soak",
        &[
            "--soak",
            "20s",
            "--soak-interval",
            "5s",
            // Debug binaries: a rate they keep up with.
            "--soak-rate",
            "50",
            "--sessions",
            "40",
            "--connections",
            "2",
            "--concurrency",
            "8",
        ],
    );
    let samples = report["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 4, "{samples:?}");
    for s in samples {
        assert_eq!(s["errors"].as_u64(), Some(0), "{s}");
        assert!(s["ok"].as_u64().unwrap() > 0, "{s}");
        assert!(s["rss_mb"].as_f64().is_some(), "{s}");
        assert!(s["open_files"].as_u64().is_some(), "{s}");
        assert!(s["pool_idle"].as_f64().is_some(), "{s}");
    }
    assert_eq!(report["trends"].as_array().unwrap().len(), 2);
    assert!(stdout.contains("trend (least squares"), "{stdout}");
    // Caches full within the first minute unless --soak-default-caches.
    assert_eq!(report["cache_cap"].as_u64(), Some(2000), "{report}");
    assert!(stdout.contains("caches capped at 2000"), "{stdout}");
}

/// `bench --scale 2000` with tiny windows: seeded to 2000 and to 10,000
/// profiles, every scenario measured at both sizes without errors (an
/// ExchangeToken provisioning a new user among them), every hot query's
/// plan an index lookup, and the RSS of a server whose caches were filled
/// past their caps (small caps: the defaults' 120,000 validations would
/// take minutes on the debug binary).
#[test]
fn a_small_scale_run_measures_both_sizes_and_every_hot_query_uses_an_index() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (report, stdout) = run_bench(
        "scale",
        &[
            "--scale",
            "2000",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--sessions",
            "20",
            "--connections",
            "2",
            "--concurrency",
            "4",
            "--cache-caps",
            "200,1000,100",
        ],
    );
    assert_eq!(report["sizes"], serde_json::json!([2000, 10000]));
    let scenarios = report["scenarios"].as_object().unwrap();
    for name in [
        "login",
        "get_profile_uncached",
        "list_profiles_first_page",
        "list_profiles_deep_page",
        "refresh",
        "validate_nocache",
        "exchange_token_new_user",
    ] {
        let sizes = scenarios[name].as_array().unwrap();
        assert_eq!(sizes.len(), 2, "{name}");
        for s in sizes {
            assert!(s["ok"].as_u64().unwrap() > 0, "{name} did nothing: {s}");
        }
    }
    let provisioned = report["exchange_provisioned"].as_array().unwrap();
    assert!(
        provisioned.iter().all(|n| n.as_u64().unwrap() > 0),
        "{provisioned:?}"
    );
    let rss = &report["cache_rss"];
    assert_eq!(rss["errors"], serde_json::json!({}), "{rss}");
    // 1.2 × max(200 tokens, 1000 sessions), 1.2 × 100 profiles.
    assert_eq!(rss["sessions_validated"], 1200, "{rss}");
    assert_eq!(rss["profiles_read"], 120, "{rss}");
    assert!(rss["peak_rss_mb"].as_f64().is_some(), "{rss}");
    assert!(stdout.contains("RSS at the cache caps"), "{stdout}");
    assert!(stdout.contains("exchange_token_new_user"), "{stdout}");
    let plans = report["explain"].as_object().unwrap();
    assert_eq!(plans.len(), 8, "{plans:?}");
    for (query, plan) in plans {
        assert!(
            plan.as_str().unwrap().contains("Index"),
            "{query}: no index in\n{plan}"
        );
    }
}
