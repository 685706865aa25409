//! A misconfigured provider stops the start naming the setting.

use crate::support::better_auth::{AUDIENCE, ISSUER};

#[test]
fn a_misconfigured_provider_stops_start_up_naming_the_setting() {
    for (key, value, setting) in [
        (
            "IDENTITY_PROVIDER_ALGORITHMS",
            "EdDSA,HS256",
            "IDENTITY_PROVIDER_ALGORITHMS",
        ),
        (
            "IDENTITY_PROVIDER_ALGORITHMS",
            "none",
            "IDENTITY_PROVIDER_ALGORITHMS",
        ),
        (
            "IDENTITY_PROVIDER_AUDIENCE",
            "",
            "IDENTITY_PROVIDER_AUDIENCE",
        ),
        ("IDENTITY_PROVIDER_NAME", "Local", "IDENTITY_PROVIDER_NAME"),
        (
            "IDENTITY_PROVIDER_NAME",
            "SERVICE",
            "IDENTITY_PROVIDER_NAME",
        ),
        (
            "IDENTITY_PROVIDER_JWKS_URL",
            "file:///etc/passwd",
            "IDENTITY_PROVIDER_JWKS_URL",
        ),
    ] {
        let (code, stderr) = crate::support::refused_start(&[
            (
                "IDENTITY_PROVIDER_JWKS_URL",
                "http://127.0.0.1:9/api/auth/jwks",
            ),
            ("IDENTITY_PROVIDER_ISSUER", ISSUER),
            ("IDENTITY_PROVIDER_AUDIENCE", AUDIENCE),
            (key, value),
        ]);
        assert_eq!(code, Some(2), "{key}={value}");
        assert!(stderr.contains(setting), "{key}={value}: {stderr}");
    }
}

/// Better-Auth's default audience is its base URL, i.e. every client's:
/// in production a token it issued for any other app would be accepted.
#[test]
fn production_refuses_a_provider_audience_that_is_not_its_own() {
    let base = [
        (
            "IDENTITY_PROVIDER_JWKS_URL",
            "https://auth.example.com/api/auth/jwks",
        ),
        ("IDENTITY_PROVIDER_ISSUER", "https://auth.example.com"),
    ];
    for audience in [None, Some("https://auth.example.com")] {
        let mut env = base.to_vec();
        if let Some(audience) = audience {
            env.push(("IDENTITY_PROVIDER_AUDIENCE", audience));
        }
        let (code, stderr) = crate::support::refused_production_start(&env);
        assert_eq!(code, Some(2), "audience {audience:?}: {stderr}");
        assert!(
            stderr.contains("IDENTITY_PROVIDER_AUDIENCE"),
            "audience {audience:?}: {stderr}"
        );
    }
}
