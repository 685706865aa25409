"""The server settings exposed as chart values: ConfigMap wiring, defaults left
to the server, and the schema's refusals (wildcard origins, weak password
scores, malformed quotas, rate limits off)."""

from __future__ import annotations

import os
import re
import subprocess

import helm_python
import pytest
import template
from chart_helpers import Rendered
from test_lint_and_values import schema_error, with_overrides

PROVIDER = {
    "provider__enabled": True,
    "provider__jwksUrl": "https://auth.example.com/api/auth/jwks",
    "provider__issuer": "https://auth.example.com",
}

# Variable -> value in the ConfigMap rendered from helm/identity/ci/full-values.yaml.
FULL_EXPECTED = {
    "IDENTITY_RATE_LIMIT_ENABLED": "true",
    "IDENTITY_RATE_LIMIT_REGISTER": "20/1m",
    "IDENTITY_RATE_LIMIT_REGISTER_ACCOUNT": "3/10m",
    "IDENTITY_RATE_LIMIT_LOGIN": "60/1m",
    "IDENTITY_RATE_LIMIT_LOGIN_ACCOUNT": "200/1h",
    "IDENTITY_RATE_LIMIT_REFRESH": "120/1m",
    "IDENTITY_RATE_LIMIT_VALIDATE": "50000/1m",
    "IDENTITY_RATE_LIMIT_EXCHANGE": "40/1m",
    "IDENTITY_RATE_LIMIT_WATCH": "240/1m",
    "IDENTITY_RATE_LIMIT_IPV6_PREFIX": "56",
    "IDENTITY_TRUSTED_PROXIES": "10.42.0.0/16,fd00:10:42::/48",
    "IDENTITY_TRACE_TRUSTED_PROXIES": "10.42.7.0/24,fd00:10:42:7::/64",
    "IDENTITY_GRPC_WEB_ORIGINS": "https://app.example.com,http://localhost:5173",
    "IDENTITY_PASSWORD_MIN_SCORE": "4",
    "IDENTITY_AUDIT_RETENTION": "180d",
    "IDENTITY_BOOTSTRAP_ADMINS": "admin@example.com,ops@example.org",
    "IDENTITY_MAX_MESSAGE_BYTES": "131072",
    "IDENTITY_MAX_CONCURRENT_STREAMS": "128",
    "IDENTITY_REQUEST_TIMEOUT": "20s",
    "IDENTITY_TOKEN_LEEWAY": "45s",
    "IDENTITY_REFRESH_REUSE_GRACE": "5s",
    "IDENTITY_TLS_RELOAD_INTERVAL": "1m",
    "IDENTITY_TLS_CLIENT_CRL_FILE": "/etc/identity/client-crl/ca.crl",
    "IDENTITY_TLS_CLIENT_ALLOWED_SANS": "spiffe://cluster.local/ns/billing/sa/billing,ledger.billing.svc",
    "IDENTITY_BCRYPT_THREADS": "1",
    "IDENTITY_BCRYPT_QUEUE": "32",
    "IDENTITY_REVOCATION_MAX_STALENESS": "500ms",
    "IDENTITY_REVOCATION_RECONCILE_INTERVAL": "10s",
    "IDENTITY_TOKEN_CACHE_SIZE": "5000",
    "IDENTITY_SESSION_CACHE_SIZE": "0",
    "IDENTITY_PROFILE_CACHE_SIZE": "2000",
    "IDENTITY_RATE_LIMIT_MAX_KEYS": "50000",
    "IDENTITY_SESSION_RETENTION": "14d",
    "IDENTITY_HOUSEKEEPING_INTERVAL": "10m",
    "IDENTITY_HOUSEKEEPING_BATCH_SIZE": "500",
    "IDENTITY_REVOCATION_MAX_WATCHERS": "2048",
    "IDENTITY_REVOCATION_MAX_WATCHERS_PER_ADDRESS": "8",
    "IDENTITY_REVOCATION_MAX_WATCHERS_PER_PRINCIPAL": "64",
    "IDENTITY_DATABASE_TIMEOUT": "2s",
    "IDENTITY_PROVIDER_ALGORITHMS": "EdDSA,ES256",
    "IDENTITY_PROVIDER_LEEWAY": "15s",
    "IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL": "1m",
    "IDENTITY_PROVIDER_JWKS_TIMEOUT": "3s",
    "IDENTITY_PROVIDER_JWKS_MAX_BYTES": "131072",
    "IDENTITY_HTTP_MAX_CONNECTIONS": "512",
    "IDENTITY_HTTP_MAX_CONNECTIONS_PER_ADDRESS": "64",
}

# Rendered only when their value is given; otherwise the server's default applies.
OPTIONAL = [
    "IDENTITY_RATE_LIMIT_REGISTER",
    "IDENTITY_RATE_LIMIT_REGISTER_ACCOUNT",
    "IDENTITY_RATE_LIMIT_LOGIN",
    "IDENTITY_RATE_LIMIT_LOGIN_ACCOUNT",
    "IDENTITY_RATE_LIMIT_REFRESH",
    "IDENTITY_RATE_LIMIT_VALIDATE",
    "IDENTITY_RATE_LIMIT_EXCHANGE",
    "IDENTITY_RATE_LIMIT_WATCH",
    "IDENTITY_RATE_LIMIT_IPV6_PREFIX",
    "IDENTITY_TRUSTED_PROXIES",
    "IDENTITY_TRACE_TRUSTED_PROXIES",
    "IDENTITY_GRPC_WEB_ORIGINS",
    "IDENTITY_BOOTSTRAP_ADMINS",
    "IDENTITY_MAX_MESSAGE_BYTES",
    "IDENTITY_MAX_CONCURRENT_STREAMS",
    "IDENTITY_REQUEST_TIMEOUT",
    "IDENTITY_TOKEN_LEEWAY",
    "IDENTITY_REFRESH_REUSE_GRACE",
    "IDENTITY_TLS_RELOAD_INTERVAL",
    "IDENTITY_TLS_CLIENT_CRL_FILE",
    "IDENTITY_TLS_CLIENT_ALLOWED_SANS",
    "IDENTITY_BCRYPT_THREADS",
    "IDENTITY_BCRYPT_QUEUE",
    "IDENTITY_REVOCATION_MAX_STALENESS",
    "IDENTITY_REVOCATION_RECONCILE_INTERVAL",
    "IDENTITY_TOKEN_CACHE_SIZE",
    "IDENTITY_SESSION_CACHE_SIZE",
    "IDENTITY_PROFILE_CACHE_SIZE",
    "IDENTITY_DATABASE_TIMEOUT",
    "IDENTITY_RATE_LIMIT_MAX_KEYS",
    "IDENTITY_SESSION_RETENTION",
    "IDENTITY_HOUSEKEEPING_INTERVAL",
    "IDENTITY_HOUSEKEEPING_BATCH_SIZE",
    "IDENTITY_REVOCATION_MAX_WATCHERS",
    "IDENTITY_REVOCATION_MAX_WATCHERS_PER_ADDRESS",
    "IDENTITY_REVOCATION_MAX_WATCHERS_PER_PRINCIPAL",
    "IDENTITY_HTTP_MAX_CONNECTIONS",
    "IDENTITY_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
]
PROVIDER_OPTIONAL = [
    "IDENTITY_PROVIDER_ALGORITHMS",
    "IDENTITY_PROVIDER_LEEWAY",
    "IDENTITY_PROVIDER_JWKS_MIN_REFRESH_INTERVAL",
    "IDENTITY_PROVIDER_JWKS_TIMEOUT",
    "IDENTITY_PROVIDER_JWKS_MAX_BYTES",
]


# --- wiring ------------------------------------------------------------------


@pytest.mark.parametrize("name", FULL_EXPECTED)
def test_each_setting_is_rendered_with_its_value(name, full):
    assert full.configmap_data().get(name) == FULL_EXPECTED[name]


@pytest.mark.parametrize("name", OPTIONAL + PROVIDER_OPTIONAL)
def test_unset_optional_settings_are_not_rendered(name, minimal):
    assert name not in minimal.configmap_data()


def test_defaults_rendered_by_the_chart(minimal):
    data = minimal.configmap_data()
    assert data["IDENTITY_RATE_LIMIT_ENABLED"] == "true"
    assert data["IDENTITY_PASSWORD_MIN_SCORE"] == "3"
    assert data["IDENTITY_AUDIT_RETENTION"] == "90d"


def test_provider_extras_are_omitted_when_unset(minimal_values):
    data = Rendered(with_overrides(minimal_values, **PROVIDER)).configmap_data()
    assert data["IDENTITY_PROVIDER_JWKS_URL"] == PROVIDER["provider__jwksUrl"]
    for name in PROVIDER_OPTIONAL:
        assert name not in data, name


def test_provider_extras_need_the_provider(minimal_values):
    values = with_overrides(
        minimal_values,
        provider__algorithms=["RS256"],
        provider__leeway="10s",
        provider__jwksMaxBytes=4096,
    )
    data = Rendered(values).configmap_data()
    assert not [k for k in data if k.startswith("IDENTITY_PROVIDER_")]


def test_only_the_quotas_given_are_rendered(minimal_values):
    values = with_overrides(minimal_values, rateLimit__quotas={"login": "5/1m", "validate": ""})
    data = Rendered(values).configmap_data()
    quotas = {k: v for k, v in data.items() if k.startswith("IDENTITY_RATE_LIMIT_")}
    assert quotas == {"IDENTITY_RATE_LIMIT_ENABLED": "true", "IDENTITY_RATE_LIMIT_LOGIN": "5/1m"}


def test_zero_is_rendered_not_dropped(minimal_values):
    # 0 is a value (no bcrypt job may wait), unlike null.
    data = Rendered(with_overrides(minimal_values, config__bcryptQueue=0)).configmap_data()
    assert data["IDENTITY_BCRYPT_QUEUE"] == "0"


def test_large_integers_keep_every_digit(minimal_values):
    values = with_overrides(
        minimal_values,
        config__maxConcurrentStreams=4294967295,
        config__maxMessageBytes=16777216,
        **PROVIDER,
        provider__jwksMaxBytes=10485760,
    )
    data = Rendered(values).configmap_data()
    assert data["IDENTITY_MAX_CONCURRENT_STREAMS"] == "4294967295"
    assert data["IDENTITY_MAX_MESSAGE_BYTES"] == "16777216"
    assert data["IDENTITY_PROVIDER_JWKS_MAX_BYTES"] == "10485760"


def test_a_single_list_entry_has_no_separator(minimal_values):
    values = with_overrides(
        minimal_values,
        config__trustedProxies=["192.0.2.10"],
        config__grpcWebOrigins=["https://app.example.com"],
        config__bootstrapAdmins=["root@example.com"],
    )
    data = Rendered(values).configmap_data()
    assert data["IDENTITY_TRUSTED_PROXIES"] == "192.0.2.10"
    assert data["IDENTITY_GRPC_WEB_ORIGINS"] == "https://app.example.com"
    assert data["IDENTITY_BOOTSTRAP_ADMINS"] == "root@example.com"


def test_a_null_default_leaves_the_setting_to_the_server(minimal_values):
    # `--set config.passwordMinScore=null` deletes the key: nothing is
    # rendered (the server's default, 3, applies) rather than "0".
    values = with_overrides(minimal_values, config__passwordMinScore=None, config__auditRetention=None)
    data = Rendered(values).configmap_data()
    assert "IDENTITY_PASSWORD_MIN_SCORE" not in data
    assert "IDENTITY_AUDIT_RETENTION" not in data


MTLS = {
    # With TLS the JWKS URL must be https:// too (test_well_known.py).
    "config__issuer": "https://identity.example.com",
    "tls__enabled": True,
    "tls__existingSecret": "identity-tls",
    "tls__clientCA__enabled": True,
}


def test_the_client_crl_is_mounted_where_the_setting_names_it(full, minimal_values):
    spec = full.one("Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    assert full.configmap_data()["IDENTITY_TLS_CLIENT_CRL_FILE"] == mounts["client-crl"] + "/ca.crl"
    # Defaults to the client CA's Secret, key ca.crl; no subPath, so updates reach the pod.
    assert vols["client-crl"]["secret"]["secretName"] == "identity-client-ca"
    assert vols["client-crl"]["secret"]["items"] == [{"key": "ca.crl", "path": "ca.crl"}]
    assert not [m for m in spec["containers"][0]["volumeMounts"] if m.get("subPath")]

    values = with_overrides(
        minimal_values, **MTLS, tls__clientCA__crl__enabled=True, tls__clientCA__crl__existingSecret="crls"
    )
    vols = {v["name"]: v for v in Rendered(values).one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert vols["client-crl"]["secret"]["secretName"] == "crls"


def test_mtls_without_crl_or_names_renders_neither(minimal_values):
    rendered = Rendered(with_overrides(minimal_values, **MTLS))
    data = rendered.configmap_data()
    assert data["IDENTITY_TLS_CLIENT_CA_FILE"]
    assert "IDENTITY_TLS_CLIENT_CRL_FILE" not in data
    assert "IDENTITY_TLS_CLIENT_ALLOWED_SANS" not in data
    volumes = rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
    assert "client-crl" not in {v["name"] for v in volumes}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls__clientCA__crl__enabled": True}, "tls.clientCA.crl.enabled needs tls.clientCA.enabled"),
        ({"tls__clientCA__allowedSANs": ["billing.svc"]}, "tls.clientCA.allowedSANs needs tls.clientCA.enabled"),
    ],
)
def test_crl_and_allowed_sans_need_mtls(overrides, message, minimal_values):
    values = with_overrides(minimal_values, tls__enabled=True, tls__existingSecret="identity-tls", **overrides)
    with pytest.raises(helm_python.HelmRenderError) as err:
        template.render_raw(values)
    assert message in str(err.value)


@pytest.mark.parametrize("name", ["IDENTITY_RATE_LIMIT_ENABLED", "IDENTITY_PASSWORD_MIN_SCORE"])
def test_extra_env_cannot_override_a_chart_setting(name, minimal_values):
    values = with_overrides(minimal_values, config__extraEnv={name: "false" if "ENABLED" in name else "0"})
    with pytest.raises(helm_python.HelmRenderError) as err:
        template.render_raw(values)
    assert f"config.extraEnv.{name} is set by the chart" in str(err.value)


# --- schema ------------------------------------------------------------------

SCHEMA_REFUSALS = {
    "rate-limits-off": ({"rateLimit__enabled": False}, "/rateLimit/enabled"),
    "wildcard-origin": ({"config__grpcWebOrigins": ["*"]}, "/config/grpcWebOrigins/0"),
    "wildcard-subdomain-origin": ({"config__grpcWebOrigins": ["https://*.example.com"]}, "/config/grpcWebOrigins/0"),
    "origin-with-path": ({"config__grpcWebOrigins": ["https://app.example.com/login"]}, "/config/grpcWebOrigins/0"),
    "origin-trailing-slash": ({"config__grpcWebOrigins": ["https://app.example.com/"]}, "/config/grpcWebOrigins/0"),
    "origin-without-scheme": ({"config__grpcWebOrigins": ["app.example.com"]}, "/config/grpcWebOrigins/0"),
    "origin-other-scheme": ({"config__grpcWebOrigins": ["ftp://app.example.com"]}, "/config/grpcWebOrigins/0"),
    "origin-uppercase": ({"config__grpcWebOrigins": ["https://App.example.com"]}, "/config/grpcWebOrigins/0"),
    "origin-default-port": ({"config__grpcWebOrigins": ["https://app.example.com:443"]}, "/config/grpcWebOrigins/0"),
    "origin-null": ({"config__grpcWebOrigins": ["null"]}, "/config/grpcWebOrigins/0"),
    "origins-as-string": ({"config__grpcWebOrigins": "https://a.example.com"}, "/config/grpcWebOrigins"),
    "min-score-2": ({"config__passwordMinScore": 2}, "/config/passwordMinScore"),
    "min-score-5": ({"config__passwordMinScore": 5}, "/config/passwordMinScore"),
    "min-score-string": ({"config__passwordMinScore": "3"}, "/config/passwordMinScore"),
    "quota-no-period": ({"rateLimit__quotas__login": "30"}, "/rateLimit/quotas/login"),
    "quota-no-count": ({"rateLimit__quotas__login": "/1m"}, "/rateLimit/quotas/login"),
    "quota-zero-count": ({"rateLimit__quotas__login": "0/1m"}, "/rateLimit/quotas/login"),
    "quota-zero-period": ({"rateLimit__quotas__register": "10/0s"}, "/rateLimit/quotas/register"),
    "quota-unitless-period": ({"rateLimit__quotas__refresh": "10/60"}, "/rateLimit/quotas/refresh"),
    "quota-words": ({"rateLimit__quotas__validate": "many per minute"}, "/rateLimit/quotas/validate"),
    "quota-spaces": ({"rateLimit__quotas__exchange": "30 / 1m"}, "/rateLimit/quotas/exchange"),
    "quota-watch-unitless": ({"rateLimit__quotas__watch": "120/60"}, "/rateLimit/quotas/watch"),
    "quota-unknown-action": ({"rateLimit__quotas__logout": "10/1m"}, "logout"),
    "proxy-not-cidr": ({"config__trustedProxies": ["ingress-nginx"]}, "/config/trustedProxies/0"),
    "proxy-bad-prefix": ({"config__trustedProxies": ["10.0.0.0/33"]}, "/config/trustedProxies/0"),
    "proxy-bad-octet": ({"config__trustedProxies": ["300.0.0.1"]}, "/config/trustedProxies/0"),
    "proxies-comma-joined": ({"config__trustedProxies": ["10.0.0.0/8,192.168.0.0/16"]}, "/config/trustedProxies/0"),
    # Istio's inbound passthrough address: every mesh caller (threat model T1.58).
    "proxy-istio-inbound": ({"config__trustedProxies": ["10.0.0.0/8", "127.0.0.6"]}, "/config/trustedProxies/1"),
    "proxy-istio-inbound-32": ({"config__trustedProxies": ["127.0.0.6/32"]}, "/config/trustedProxies/0"),
    "proxy-loopback-8": ({"config__trustedProxies": ["127.0.0.0/8"]}, "/config/trustedProxies/0"),
    "proxy-everyone": ({"config__trustedProxies": ["0.0.0.0/0"]}, "/config/trustedProxies/0"),
    "proxy-istio-inbound-mapped": ({"config__trustedProxies": ["::ffff:127.0.0.6"]}, "/config/trustedProxies/0"),
    "trace-proxy-istio-inbound": ({"config__traceTrustedProxies": ["127.0.0.6"]}, "/config/traceTrustedProxies/0"),
    "trace-proxy-not-cidr": ({"config__traceTrustedProxies": ["otel-gateway"]}, "/config/traceTrustedProxies/0"),
    "trace-proxies-comma-joined": (
        {"config__traceTrustedProxies": ["10.0.0.0/8,192.168.0.0/16"]},
        "/config/traceTrustedProxies/0",
    ),
    "admin-not-email": ({"config__bootstrapAdmins": ["admin"]}, "/config/bootstrapAdmins/0"),
    "admins-comma-joined": ({"config__bootstrapAdmins": ["a@example.com,b@example.com"]}, "/config/bootstrapAdmins/0"),
    "bad-retention": ({"config__auditRetention": "forever"}, "/config/auditRetention"),
    "bad-leeway": ({"config__tokenLeeway": "30"}, "/config/tokenLeeway"),
    "bad-reuse-grace": ({"config__refreshReuseGrace": "10"}, "/config/refreshReuseGrace"),
    "reuse-grace-in-hours": ({"config__refreshReuseGrace": "1h"}, "/config/refreshReuseGrace"),
    "bad-request-timeout": ({"config__requestTimeout": 30}, "/config/requestTimeout"),
    "tiny-messages": ({"config__maxMessageBytes": 512}, "/config/maxMessageBytes"),
    "zero-streams": ({"config__maxConcurrentStreams": 0}, "/config/maxConcurrentStreams"),
    "zero-bcrypt-threads": ({"config__bcryptThreads": 0}, "/config/bcryptThreads"),
    "ipv6-prefix-too-short": ({"rateLimit__ipv6Prefix": 16}, "/rateLimit/ipv6Prefix"),
    "ipv6-prefix-too-long": ({"rateLimit__ipv6Prefix": 129}, "/rateLimit/ipv6Prefix"),
    "negative-bcrypt-queue": ({"config__bcryptQueue": -1}, "/config/bcryptQueue"),
    "bad-staleness": ({"config__revocationMaxStaleness": "1 second"}, "/config/revocationMaxStaleness"),
    "negative-profile-cache": ({"config__profileCacheSize": -1}, "/config/profileCacheSize"),
    "zero-watchers": ({"config__revocationMaxWatchers": 0}, "/config/revocationMaxWatchers"),
    "zero-watchers-per-address": (
        {"config__revocationMaxWatchersPerAddress": 0},
        "/config/revocationMaxWatchersPerAddress",
    ),
    "zero-watchers-per-principal": (
        {"config__revocationMaxWatchersPerPrincipal": 0},
        "/config/revocationMaxWatchersPerPrincipal",
    ),
    "provider-hmac": ({"provider__algorithms": ["HS256"]}, "/provider/algorithms/0"),
    "provider-none": ({"provider__algorithms": ["none"]}, "/provider/algorithms/0"),
    "provider-algorithms-string": ({"provider__algorithms": "EdDSA,RS256"}, "/provider/algorithms"),
    "provider-bad-leeway": ({"provider__leeway": "a bit"}, "/provider/leeway"),
    "provider-bad-timeout": ({"provider__jwksTimeout": "5"}, "/provider/jwksTimeout"),
    "provider-bad-refresh": ({"provider__jwksMinRefreshInterval": "1 minute"}, "/provider/jwksMinRefreshInterval"),
    "provider-huge-jwks": ({"provider__jwksMaxBytes": 10485761}, "/provider/jwksMaxBytes"),
    "provider-tiny-jwks": ({"provider__jwksMaxBytes": 100}, "/provider/jwksMaxBytes"),
    "san-wildcard": ({"tls__clientCA__allowedSANs": ["*.billing.svc"]}, "/tls/clientCA/allowedSANs/0"),
    "sans-comma-joined": ({"tls__clientCA__allowedSANs": ["a.svc,b.svc"]}, "/tls/clientCA/allowedSANs/0"),
    "san-with-space": ({"tls__clientCA__allowedSANs": ["billing svc"]}, "/tls/clientCA/allowedSANs/0"),
    "sans-as-string": ({"tls__clientCA__allowedSANs": "billing.svc"}, "/tls/clientCA/allowedSANs"),
}


@pytest.mark.parametrize("case", SCHEMA_REFUSALS, ids=list(SCHEMA_REFUSALS))
def test_schema_refuses(case, minimal_values):
    overrides, where = SCHEMA_REFUSALS[case]
    values = with_overrides(minimal_values, **overrides)
    assert where in schema_error(values)
    # And so does a render (what `helm install` does).
    with pytest.raises(helm_python.HelmValuesError):
        template.render_raw(values)


SCHEMA_ACCEPTS = {
    "origin-with-port": {"config__grpcWebOrigins": ["https://app.example.com:8443", "http://localhost:5173"]},
    "origin-ipv6": {"config__grpcWebOrigins": ["http://[::1]:8080"]},
    "origin-ipv4": {"config__grpcWebOrigins": ["http://127.0.0.1:3000"]},
    "proxy-addresses": {
        "config__trustedProxies": ["10.0.0.0/8", "192.0.2.7", "::1", "127.0.0.1", "2001:db8::/32", "128.0.0.0/1"]
    },
    "score-4": {"config__passwordMinScore": 4},
    "quotas": {
        "rateLimit__quotas": {
            "register": "1/1s",
            "registerAccount": "5/10m",
            "login": "30/1m",
            "loginAccount": "100/1h",
            "refresh": "60/1m",
            "validate": "100000/1m",
            "exchange": "2/500ms",
            "watch": "120/1m",
        }
    },
    "provider-all-algorithms": {"provider__algorithms": ["EdDSA", "ES256", "RS256", "PS256"]},
    "null-integers": {"config__maxMessageBytes": None, "provider__jwksMaxBytes": None},
    "allowed-sans": {
        **MTLS,
        "tls__clientCA__allowedSANs": ["spiffe://example.org/ns/prod/sa/billing", "ledger.internal", "Billing-1.svc"],
    },
}


@pytest.mark.parametrize("case", SCHEMA_ACCEPTS, ids=list(SCHEMA_ACCEPTS))
def test_schema_accepts(case, minimal_values):
    values = with_overrides(minimal_values, **SCHEMA_ACCEPTS[case])
    with helm_python.Chart.load(template.CHART) as chart:
        chart.validate_schema(values)
    template.render_raw(values)


# --- against the binary ------------------------------------------------------

BINARY = template.REPO / "target" / "debug" / "identity"


@pytest.fixture(scope="module")
def serve_help() -> str:
    if not os.access(BINARY, os.X_OK):
        pytest.skip(f"{BINARY} is not built")
    out = subprocess.run([BINARY, "serve", "--help"], capture_output=True, text=True, timeout=30, check=True)
    return " ".join(out.stdout.split())


def test_every_rendered_identity_variable_is_a_server_setting(full, serve_help):
    known = set(re.findall(r"\[env: (IDENTITY_[A-Z0-9_]+)", serve_help))
    rendered = {k for k in full.configmap_data() if k.startswith("IDENTITY_")}
    rendered -= set(full.values["config"].get("extraEnv", {}))
    assert rendered - known == set()


def test_documented_server_defaults_match_the_binary(serve_help):
    doc = (template.REPO / "docs" / "deploy-helm.md").read_text()
    rows = re.findall(r"\(server: `([^`]+)`\).*\(`(IDENTITY_[A-Z0-9_]+)`\)", doc)
    assert len(rows) >= 19
    for default, name in rows:
        m = re.search(rf"\[env: {name}=\] \[default: ([^\]]+)\]", serve_help)
        assert m, f"{name}: no default in `identity serve --help`"
        assert m.group(1) == default, f"{name}: docs say {default}, the server {m.group(1)}"
