//! The external provider (ExchangeToken): its settings
//! (`cli::ProviderSettings`) validated into `provider::ProviderConfig`.
//! Without IDENTITY_PROVIDER_JWKS_URL the exchange is off and nothing else
//! here is read.

use super::{ConfigError, refuse};
use crate::cli::ProviderSettings;
use crate::provider::settings::ProviderConfig;
use identity_core::provider::parse_algorithm;
use identity_core::roles::is_reserved_provider;
use std::time::Duration;

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `Ok(None)` when no provider is configured (ExchangeToken is off).
pub fn load(
    settings: &ProviderSettings,
    production: bool,
) -> Result<Option<ProviderConfig>, ConfigError> {
    const URL: &str = "IDENTITY_PROVIDER_JWKS_URL";
    let Some(url) = settings
        .provider_jwks_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        if settings.provider_issuer.is_some() || settings.provider_audience.is_some() {
            return Err(refuse(
                URL,
                "is required when IDENTITY_PROVIDER_ISSUER or IDENTITY_PROVIDER_AUDIENCE is set",
            ));
        }
        return Ok(None);
    };
    let jwks_url: http::Uri = url
        .parse()
        .map_err(|_| refuse(URL, "is not a URL (https://auth.example.com/api/auth/jwks)"))?;
    let host = jwks_url
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| refuse(URL, "needs a host"))?;
    if jwks_url
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Err(refuse(URL, "must not carry credentials"));
    }
    match jwks_url.scheme_str() {
        Some("https") => {}
        Some("http") => {
            if production && !is_loopback(host) && !settings.provider_allow_http {
                return Err(refuse(
                    URL,
                    "is plain http: keys fetched without TLS can be swapped in transit; use https:// or set IDENTITY_PROVIDER_ALLOW_HTTP=true inside a mesh that encrypts",
                ));
            }
        }
        _ => return Err(refuse(URL, "must be an https:// (or http://) URL")),
    }

    let issuer = settings
        .provider_issuer
        .as_deref()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| {
            refuse(
                "IDENTITY_PROVIDER_ISSUER",
                "is required with IDENTITY_PROVIDER_JWKS_URL (Better-Auth: jwt.issuer, by default its base URL)",
            )
        })?
        .to_owned();
    const AUDIENCE: &str = "IDENTITY_PROVIDER_AUDIENCE";
    // Better-Auth's own default: audience = issuer = its base URL. Such
    // a token is meant for every client of the provider, so production
    // insists on an audience of this service's own.
    let audience = match settings.provider_audience.as_deref().map(str::trim) {
        None if production => {
            return Err(refuse(
                AUDIENCE,
                "is required in production: set Better-Auth's jwt.audience to a value of this service's own (not its base URL) and the same here",
            ));
        }
        None => issuer.clone(),
        Some("") => {
            return Err(refuse(
                "IDENTITY_PROVIDER_AUDIENCE",
                "must not be empty (unset, it is IDENTITY_PROVIDER_ISSUER, as in Better-Auth)",
            ));
        }
        Some(audience) if production && audience == issuer => {
            return Err(refuse(
                AUDIENCE,
                "must differ from IDENTITY_PROVIDER_ISSUER in production: the issuer is Better-Auth's default audience, shared by every client of the provider",
            ));
        }
        Some(audience) => audience.to_owned(),
    };

    let name = identity_core::validation::auth_field(settings.provider_name.trim())
        .map_err(|p| refuse("IDENTITY_PROVIDER_NAME", p))?;
    if is_reserved_provider(&name) {
        return Err(refuse(
            "IDENTITY_PROVIDER_NAME",
            format!("`{name}` is reserved for the service's own accounts"),
        ));
    }

    let mut algorithms = Vec::new();
    for name in settings
        .provider_algorithms
        .iter()
        .filter(|a| !a.trim().is_empty())
    {
        let alg = parse_algorithm(name).map_err(|p| refuse("IDENTITY_PROVIDER_ALGORITHMS", p))?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        return Err(refuse(
            "IDENTITY_PROVIDER_ALGORITHMS",
            "must name at least one of EdDSA, ES256, RS256, PS256",
        ));
    }

    if settings.provider_leeway > Duration::from_secs(300) {
        return Err(refuse("IDENTITY_PROVIDER_LEEWAY", "must be at most 5m"));
    }
    let interval = settings.provider_jwks_min_refresh_interval;
    if interval < Duration::from_millis(100) || interval > Duration::from_secs(3600) {
        return Err(refuse(
            "IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL",
            "must be between 100ms and 1h",
        ));
    }
    let timeout = settings.provider_jwks_timeout;
    if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(60) {
        return Err(refuse(
            "IDENTITY_PROVIDER_JWKS_TIMEOUT",
            "must be between 100ms and 60s",
        ));
    }
    let max_bytes = settings.provider_jwks_max_bytes;
    if !(1024..=10 * 1024 * 1024).contains(&max_bytes) {
        return Err(refuse(
            "IDENTITY_PROVIDER_JWKS_MAX_BYTES",
            "must be between 1024 and 10485760",
        ));
    }

    let session_ttl = settings.provider_session_ttl;
    if session_ttl < Duration::from_secs(1) || session_ttl > Duration::from_secs(90 * 86400) {
        return Err(refuse(
            "IDENTITY_PROVIDER_SESSION_TTL",
            "must be between 1s and 90days",
        ));
    }
    let max_stale = settings.provider_jwks_max_stale;
    if max_stale < Duration::from_secs(60) || max_stale > Duration::from_secs(30 * 86400) {
        return Err(refuse(
            "IDENTITY_PROVIDER_JWKS_MAX_STALE",
            "must be between 1m and 30days",
        ));
    }

    Ok(Some(ProviderConfig {
        jwks_url,
        issuer,
        audience,
        name,
        algorithms,
        leeway: settings.provider_leeway,
        min_refresh_interval: interval,
        timeout,
        max_bytes,
        session_ttl,
        max_stale,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cli;
    use jsonwebtoken::Algorithm;

    fn load(args: &[&str], dev: bool) -> Result<Option<ProviderConfig>, ConfigError> {
        let mut argv = vec!["identity", "serve"];
        argv.extend_from_slice(args);
        let cli = parse_cli(argv).expect("arguments parse");
        match cli.command {
            crate::cli::Command::Serve(serve) => super::load(&serve.settings.provider, !dev),
            _ => unreachable!(),
        }
    }

    const GOOD: [&str; 3] = [
        "--provider-jwks-url=https://auth.example.com/api/auth/jwks",
        "--provider-issuer=https://auth.example.com",
        "--provider-audience=identity",
    ];

    #[test]
    fn without_a_jwks_url_the_exchange_is_off() {
        assert!(load(&[], false).unwrap().is_none());
        let err = load(&["--provider-issuer=https://a"], false).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_PROVIDER_JWKS_URL");
    }

    #[test]
    fn defaults_are_eddsa_better_auth_and_a_30s_refresh_interval() {
        let config = load(&GOOD, false).unwrap().unwrap();
        assert_eq!(config.algorithms, [Algorithm::EdDSA]);
        assert_eq!(config.name, "better-auth");
        assert_eq!(config.min_refresh_interval, Duration::from_secs(30));
        assert_eq!(config.leeway, Duration::from_secs(30));
    }

    #[test]
    fn each_bad_setting_is_named() {
        let cases: &[(&str, &str)] = &[
            ("--provider-algorithms=none", "IDENTITY_PROVIDER_ALGORITHMS"),
            (
                "--provider-algorithms=EdDSA,HS256",
                "IDENTITY_PROVIDER_ALGORITHMS",
            ),
            ("--provider-name=local", "IDENTITY_PROVIDER_NAME"),
            ("--provider-name=Local", "IDENTITY_PROVIDER_NAME"),
            ("--provider-name=SERVICE", "IDENTITY_PROVIDER_NAME"),
            ("--provider-session-ttl=0s", "IDENTITY_PROVIDER_SESSION_TTL"),
            (
                "--provider-jwks-max-stale=1s",
                "IDENTITY_PROVIDER_JWKS_MAX_STALE",
            ),
            ("--provider-leeway=10m", "IDENTITY_PROVIDER_LEEWAY"),
            (
                "--provider-jwks-min-refresh-interval=0s",
                "IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL",
            ),
            (
                "--provider-jwks-timeout=5m",
                "IDENTITY_PROVIDER_JWKS_TIMEOUT",
            ),
            (
                "--provider-jwks-max-bytes=10",
                "IDENTITY_PROVIDER_JWKS_MAX_BYTES",
            ),
            (
                "--provider-jwks-url=ftp://x/jwks",
                "IDENTITY_PROVIDER_JWKS_URL",
            ),
            (
                "--provider-jwks-url=https://user:pw@x/jwks",
                "IDENTITY_PROVIDER_JWKS_URL",
            ),
        ];
        for (arg, setting) in cases {
            let mut args = GOOD.to_vec();
            if arg.starts_with("--provider-jwks-url=") {
                args[0] = arg;
            } else {
                args.push(arg);
            }
            let err = load(&args, false).unwrap_err();
            assert_eq!(err.setting, *setting, "{arg}: {err}");
        }
        let err = load(&[GOOD[0], GOOD[2]], false).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_PROVIDER_ISSUER");
        let config = load(&[GOOD[0], GOOD[1]], true).unwrap().unwrap();
        assert_eq!(
            config.audience, config.issuer,
            "Better-Auth's default, --dev only"
        );
    }

    #[test]
    fn production_needs_an_audience_of_its_own() {
        let err = load(&[GOOD[0], GOOD[1]], false).unwrap_err();
        assert_eq!(err.setting, "IDENTITY_PROVIDER_AUDIENCE", "unset");
        let same = "--provider-audience=https://auth.example.com";
        let err = load(&[GOOD[0], GOOD[1], same], false).unwrap_err();
        assert_eq!(
            err.setting, "IDENTITY_PROVIDER_AUDIENCE",
            "equal to the issuer"
        );
        assert!(
            load(&[GOOD[0], GOOD[1], same], true).is_ok(),
            "--dev allows it"
        );
        let config = load(&GOOD, false).unwrap().unwrap();
        assert_eq!(config.session_ttl, Duration::from_secs(12 * 3600));
        assert_eq!(config.max_stale, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn plain_http_only_on_loopback_in_dev_or_when_allowed() {
        let http = "--provider-jwks-url=http://auth.internal/api/auth/jwks";
        let with = |url: &str, extra: &[&str], dev: bool| {
            let mut args = vec![url, GOOD[1], GOOD[2]];
            args.extend_from_slice(extra);
            load(&args, dev)
        };
        assert!(with(http, &[], false).is_err());
        assert!(with(http, &[], true).is_ok());
        assert!(with(http, &["--provider-allow-http=true"], false).is_ok());
        assert!(
            with(
                "--provider-jwks-url=http://127.0.0.1:3000/api/auth/jwks",
                &[],
                false
            )
            .is_ok()
        );
    }
}
