//! `Config::load` as a whole: each refusal names its setting, and the
//! defaults of --dev.

use super::*;
use crate::cli::Command;
use identity_core::rate_limit::{Action, Quota};
use std::time::Duration;

pub(super) fn load(args: &[&str]) -> Result<Config, ConfigError> {
    let mut argv = vec!["identity", "serve"];
    argv.extend_from_slice(args);
    let cli = parse_cli(argv).expect("arguments parse");
    match cli.command {
        Command::Serve(serve) => Config::load(serve.settings, serve.dev),
        _ => unreachable!("serve was parsed"),
    }
}

const STRONG: &str = "--secret-key=q8Vf2kP0xZr7LmN4tY6wB1cD9eH3jS5a";

#[test]
fn production_without_a_key_names_the_key_setting() {
    let err = load(&["--database-url=postgres://db/x", "--allow-plaintext=true"]).unwrap_err();
    assert_eq!(err.setting, "IDENTITY_SIGNING_KEY_FILE");
}

#[test]
fn short_and_placeholder_secrets_are_refused() {
    for secret in [
        "--secret-key=short",
        "--secret-key=changeme",
        "--secret-key=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let err = load(&[
            "--database-url=postgres://db/x",
            "--allow-plaintext=true",
            secret,
        ])
        .unwrap_err();
        assert_eq!(err.setting, "IDENTITY_SECRET_KEY", "{secret}");
    }
}

#[test]
fn production_refuses_sqlite_and_plaintext_unless_allowed() {
    let err = load(&[
        "--database-url=sqlite://x.db",
        "--allow-plaintext=true",
        STRONG,
    ])
    .unwrap_err();
    assert_eq!(err.setting, "IDENTITY_DATABASE_URL");
    assert!(
        load(&[
            "--database-url=sqlite://x.db",
            "--allow-plaintext=true",
            "--allow-sqlite=true",
            STRONG
        ])
        .is_ok()
    );
    let err = load(&["--database-url=postgres://db/x", STRONG]).unwrap_err();
    assert_eq!(err.setting, "IDENTITY_TLS_CERT_FILE");
}

#[test]
fn production_refuses_a_low_bcrypt_cost() {
    let err = load(&[
        "--database-url=postgres://db/x",
        "--allow-plaintext=true",
        STRONG,
        "--bcrypt-cost=10",
    ])
    .unwrap_err();
    assert_eq!(err.setting, "IDENTITY_BCRYPT_COST");
}

#[test]
fn the_ipv6_prefix_is_bounded() {
    for bad in [
        "--rate-limit-ipv6-prefix=31",
        "--rate-limit-ipv6-prefix=129",
    ] {
        let err = load(&["--dev", "--data-dir=/tmp/identity-test", bad]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_RATE_LIMIT_IPV6_PREFIX", "{bad}");
    }
    let config = load(&["--dev", "--data-dir=/tmp/identity-test"]).unwrap();
    assert_eq!(config.rate_limit_ipv6_prefix, 64);
}

#[test]
fn housekeeping_and_limiter_sizes_are_checked_and_named() {
    let config = load(&["--dev", "--data-dir=/tmp/identity-test"]).unwrap();
    assert_eq!(
        config.housekeeping.session_retention,
        Duration::from_secs(7 * 24 * 3600)
    );
    assert_eq!(config.housekeeping.interval, Duration::from_secs(300));
    assert_eq!(config.housekeeping.batch_size, 1000);
    assert_eq!(config.limits.max_keys, 100_000);
    for (arg, setting) in [
        (
            "--housekeeping-batch-size=0",
            "IDENTITY_HOUSEKEEPING_BATCH_SIZE",
        ),
        (
            "--housekeeping-batch-size=100001",
            "IDENTITY_HOUSEKEEPING_BATCH_SIZE",
        ),
        (
            "--housekeeping-interval=0s",
            "IDENTITY_HOUSEKEEPING_INTERVAL",
        ),
        ("--rate-limit-max-keys=0", "IDENTITY_RATE_LIMIT_MAX_KEYS"),
    ] {
        let err = load(&["--dev", "--data-dir=/tmp/identity-test", arg]).unwrap_err();
        assert_eq!(err.setting, setting, "{arg}");
    }
}

#[test]
fn a_malformed_watch_quota_names_its_setting() {
    let config = load(&["--dev", "--data-dir=/tmp/identity-test"]).unwrap();
    assert_eq!(
        config.limits.per_address.get(&Action::Watch),
        Some(&Quota {
            count: 120,
            period: Duration::from_secs(60)
        })
    );
    for bad in ["120", "0/1m", "many/1m", "120/soon", "120/0s"] {
        let arg = format!("--rate-limit-watch={bad}");
        let err = load(&["--dev", "--data-dir=/tmp/identity-test", &arg]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_RATE_LIMIT_WATCH", "{bad}");
        assert!(err.to_string().contains(bad), "{bad}: {err}");
    }
    let config = load(&[
        "--dev",
        "--data-dir=/tmp/identity-test",
        "--rate-limit-watch=10/30s",
    ])
    .unwrap();
    assert_eq!(
        config.limits.per_address[&Action::Watch].interval(),
        Duration::from_secs(3)
    );
}

#[test]
fn dev_mode_needs_nothing() {
    let config = load(&["--dev", "--data-dir=/tmp/identity-test"]).unwrap();
    assert_eq!(config.backend, Backend::Sqlite);
    assert!(config.keys.dev_generated.is_some());
    assert_eq!(config.listen_addr.to_string(), "127.0.0.1:50051");
    assert_eq!(config.access_token_ttl, Duration::from_secs(1800));
}

#[test]
fn debug_output_never_shows_secrets() {
    let secret = "q8Vf2kP0xZr7LmN4tY6wB1cD9eH3jS5a";
    let config = load(&[
        "--database-url=postgres://user:hunter2pass@db/x",
        "--allow-plaintext=true",
        STRONG,
    ])
    .unwrap();
    let printed = format!("{config:?}");
    assert!(!printed.contains(secret), "{printed}");
    assert!(!printed.contains("hunter2pass"), "{printed}");
}

#[test]
fn the_revocation_listen_url_is_a_secret_of_postgres_only() {
    let base = [
        "--database-url=postgres://pool@bouncer:6432/x",
        "--allow-plaintext=true",
        STRONG,
    ];
    let config = load(&base).unwrap();
    assert_eq!(
        config.revocation_listen_url(),
        "postgres://pool@bouncer:6432/x"
    );

    let path = std::env::temp_dir().join(format!("identity-listen-{}", uuid::Uuid::new_v4()));
    std::fs::write(&path, "postgres://listener:hunter3pass@db:5432/x\n").unwrap();
    let file = format!("--revocation-listen-url-file={}", path.display());
    let config = load(&[&base[..], &[file.as_str()]].concat());
    let _ = std::fs::remove_file(&path);
    let config = config.unwrap();
    assert_eq!(
        config.revocation_listen_url(),
        "postgres://listener:hunter3pass@db:5432/x"
    );
    assert_eq!(config.database_url(), "postgres://pool@bouncer:6432/x");
    let printed = format!("{config:?}");
    assert!(!printed.contains("hunter3pass"), "{printed}");

    for wrong in [
        "--revocation-listen-url=sqlite://x.db",
        "--revocation-listen-url=postgres://db/x?sslmode=verify-ca",
    ] {
        let err = load(&[&base[..], &[wrong]].concat()).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_REVOCATION_LISTEN_URL", "{wrong}");
    }
    let err = load(&[
        "--dev",
        "--data-dir=/tmp/identity-test",
        "--revocation-listen-url=postgres://db/x",
    ])
    .unwrap_err();
    assert_eq!(err.setting, "IDENTITY_REVOCATION_LISTEN_URL");
}

#[test]
fn trace_trusted_proxies_are_addresses_or_cidrs() {
    let config = load(&[
        "--dev",
        "--trace-trusted-proxies=10.0.0.0/8, 192.0.2.7,,fd00::/8",
    ])
    .unwrap();
    let expected: Vec<ipnet::IpNet> = ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(config.trace_trusted_proxies, expected);
    assert!(config.trusted_proxies.is_empty(), "a setting of its own");
    for bad in ["ingress-nginx", "10.0.0.0/33"] {
        let err = load(&["--dev", &format!("--trace-trusted-proxies={bad}")]).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_TRACE_TRUSTED_PROXIES", "{bad}");
        assert!(err.problem.contains(bad), "{err}");
    }
}

#[test]
fn a_toml_file_supplies_defaults_and_rejects_unknown_keys() {
    let dir = std::env::temp_dir().join(format!("identity-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        "issuer = \"https://id.example\"\naccess_token_ttl = \"10m\"\n",
    )
    .unwrap();
    let config = load(&["--dev", &format!("--config={}", file.display())]).unwrap();
    assert_eq!(config.issuer, "https://id.example");
    assert_eq!(config.access_token_ttl, Duration::from_secs(600));
    std::fs::write(&file, "isuer = \"typo\"\n").unwrap();
    let err = parse_cli([
        "identity",
        "serve",
        "--dev",
        &format!("--config={}", file.display()),
    ])
    .err()
    .unwrap();
    assert!(err.to_string().contains("isuer"));
}

#[test]
fn client_crl_and_allowed_sans_need_the_client_ca_and_are_named_when_wrong() {
    let dir = std::env::temp_dir().join(format!("identity-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["tls.crt", "tls.key", "ca.pem", "crl.pem"] {
        std::fs::write(dir.join(name), "").unwrap();
    }
    let arg = |flag: &str, file: &str| format!("--{flag}={}", dir.join(file).display());
    let (cert, key, ca, crl) = (
        arg("tls-cert-file", "tls.crt"),
        arg("tls-key-file", "tls.key"),
        arg("tls-client-ca-file", "ca.pem"),
        arg("tls-client-crl-file", "crl.pem"),
    );
    let base = ["--dev", "--data-dir=/tmp/identity-test"];
    let with = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        load(&args)
    };
    let sans = "--tls-client-allowed-sans=billing.internal,spiffe://example.org/sa/billing";

    let err = with(&[&cert, &key, &crl]).unwrap_err();
    assert_eq!(err.setting, "IDENTITY_TLS_CLIENT_CRL_FILE");
    let err = with(&[&cert, &key, sans]).unwrap_err();
    assert_eq!(err.setting, "IDENTITY_TLS_CLIENT_ALLOWED_SANS");
    let err = with(&[&crl]).unwrap_err();
    assert_eq!(err.setting, "IDENTITY_TLS_CLIENT_CA_FILE");
    let missing = arg("tls-client-crl-file", "missing.pem");
    let err = with(&[&cert, &key, &ca, &missing]).unwrap_err();
    assert_eq!(err.setting, "IDENTITY_TLS_CLIENT_CRL_FILE");
    let err = with(&[&cert, &key, &ca, "--tls-client-allowed-sans=*.internal"]).unwrap_err();
    assert_eq!(err.setting, "IDENTITY_TLS_CLIENT_ALLOWED_SANS");

    let config = with(&[
        &cert,
        &key,
        &ca,
        &crl,
        "--tls-client-allowed-sans= Billing.Internal ,spiffe://example.org/sa/billing,",
    ])
    .unwrap();
    let tls = config.tls.unwrap();
    assert!(tls.client_crl.is_some());
    assert_eq!(
        tls.client_allowed_sans,
        ["billing.internal", "spiffe://example.org/sa/billing"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_refresh_reuse_grace_is_at_most_a_minute() {
    let dev = ["--dev", "--data-dir=/tmp/identity-test"];
    let config = load(&dev).unwrap();
    assert_eq!(config.refresh_reuse_grace, Duration::from_secs(10));
    for (arg, grace) in [("0s", 0), ("1m", 60)] {
        let config = load(&[dev[0], dev[1], &format!("--refresh-reuse-grace={arg}")]).unwrap();
        assert_eq!(config.refresh_reuse_grace, Duration::from_secs(grace));
    }
    let err = load(&[dev[0], dev[1], "--refresh-reuse-grace=61s"]).unwrap_err();
    assert_eq!(err.setting, "IDENTITY_REFRESH_REUSE_GRACE");
}

/// Threat model T1.58: behind Istio's inbound capture every caller reaches
/// the server from 127.0.0.6, so a list holding that address trusts the
/// whole mesh. Refused in --dev too, under either setting and however it
/// is written; loopback addresses that are not it (a proxy in the same
/// pod) stay allowed.
#[test]
fn a_proxy_list_holding_istios_inbound_address_is_refused() {
    for setting in ["IDENTITY_TRUSTED_PROXIES", "IDENTITY_TRACE_TRUSTED_PROXIES"] {
        let flag = setting
            .trim_start_matches("IDENTITY_")
            .to_lowercase()
            .replace('_', "-");
        for bad in [
            "127.0.0.6",
            "127.0.0.6/32",
            "127.0.0.4/30",
            "127.0.0.0/8",
            "0.0.0.0/0",
            "::ffff:127.0.0.6",
            "::ffff:127.0.0.0/104",
            "::/0",
        ] {
            // Listed after a harmless entry: every entry is checked.
            let err = load(&["--dev", &format!("--{flag}=10.0.0.0/8,{bad}")]).unwrap_err();
            assert_eq!(err.setting, setting, "{bad}");
            for words in [bad, "127.0.0.6", "Istio", "docs/deploy-helm.md"] {
                assert!(err.problem.contains(words), "{bad}: {err}");
            }
        }
        for fine in [
            "127.0.0.1/32",
            "127.0.0.1",
            "127.0.0.7",
            "::1",
            "10.0.0.0/8",
        ] {
            let config = load(&["--dev", &format!("--{flag}={fine}")])
                .unwrap_or_else(|err| panic!("{fine}: {err}"));
            let listed = match setting {
                "IDENTITY_TRUSTED_PROXIES" => &config.trusted_proxies,
                _ => &config.trace_trusted_proxies,
            };
            assert_eq!(listed.len(), 1, "{fine}");
        }
    }
}
