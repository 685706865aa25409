"""Network reach and secret handling: nothing open to anywhere by default,
secrets only from Secrets, the migration Job under its own database user."""

from __future__ import annotations

import base64

import helm_python
import pytest
import template
from chart_helpers import Rendered
from test_lint_and_values import schema_error, with_overrides

KUBE_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}


def egress_rules(r: Rendered) -> list[dict]:
    return r.one("NetworkPolicy")["spec"]["egress"]


def ingress_rule(r: Rendered, port: str) -> dict:
    [rule] = [x for x in r.one("NetworkPolicy")["spec"]["ingress"] if x["ports"][0]["port"] == port]
    return rule


# --- egress ------------------------------------------------------------------


def test_every_egress_rule_names_its_destinations(rendered):
    for rule in egress_rules(rendered):
        assert rule.get("to"), f"egress rule open to anywhere: {rule}"
        for peer in rule["to"]:
            assert peer, rule


def test_defaults_reach_only_kube_dns(minimal):
    rules = egress_rules(minimal)
    assert [r["to"] for r in rules] == [[KUBE_DNS]]
    assert {p["port"] for p in rules[0]["ports"]} == {53}


def test_an_enabled_destination_without_to_gets_no_rule_and_a_warning(minimal_values):
    values = with_overrides(
        minimal_values,
        rateLimit__redis__enabled=True,
        otel__enabled=True,
        otel__endpoint="http://collector:4317",
        provider__enabled=True,
        provider__jwksUrl="https://auth.example.com/jwks",
        provider__issuer="https://auth.example.com",
        provider__audience="identity",
    )
    r = Rendered(values)
    ports = {p["port"] for rule in egress_rules(r) for p in rule["ports"]}
    assert ports == {53}
    for dest in ("database", "redis", "otlp", "jwks"):
        assert f"networkPolicy.egress.{dest}.to is empty" in r.notes, dest


@pytest.mark.parametrize(
    "dest, port, feature",
    [
        ("database", 5432, {}),
        ("redis", 6379, {"rateLimit__redis__enabled": True}),
        ("otlp", 4317, {"otel__enabled": True, "otel__endpoint": "http://c:4317"}),
        (
            "jwks",
            443,
            {
                "provider__enabled": True,
                "provider__jwksUrl": "https://a.example.com/jwks",
                "provider__issuer": "https://a.example.com",
                "provider__audience": "identity",
            },
        ),
    ],
)
def test_each_destination_goes_only_where_its_values_say(dest, port, feature, minimal_values):
    peers = [{"ipBlock": {"cidr": "10.9.8.0/24"}}]
    values = with_overrides(minimal_values, **feature, **{f"networkPolicy__egress__{dest}__to": peers})
    r = Rendered(values)
    [rule] = [x for x in egress_rules(r) if port in {p["port"] for p in x["ports"]}]
    assert rule["to"] == peers
    assert f"networkPolicy.egress.{dest}.to is empty" not in r.notes
    # And not while the feature is off.
    if feature:
        off = Rendered(with_overrides(minimal_values, **{f"networkPolicy__egress__{dest}__to": peers}))
        assert port not in {p["port"] for x in egress_rules(off) for p in x["ports"]}


def test_dns_can_point_at_node_local_dns(minimal_values):
    peers = [{"ipBlock": {"cidr": "169.254.20.10/32"}}]
    r = Rendered(with_overrides(minimal_values, networkPolicy__egress__dns__to=peers))
    assert egress_rules(r)[0]["to"] == peers


# --- ingress -----------------------------------------------------------------


def test_grpc_ingress_always_names_its_peers(rendered):
    rule = ingress_rule(rendered, "grpc")
    assert rule["from"] and all(rule["from"])


def test_metrics_ingress_names_a_namespace_and_pods_in_one_peer(full):
    rule = ingress_rule(full, "metrics")
    assert rule["from"]
    for peer in rule["from"]:
        assert set(peer) == {"namespaceSelector", "podSelector"}
        assert peer["namespaceSelector"] and peer["podSelector"]
    assert rule["from"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}


NETWORK_SCHEMA_REFUSALS = {
    "grpc-open-to-all": ({"networkPolicy__ingress__from": []}, "/networkPolicy/ingress/from"),
    "grpc-empty-peer": ({"networkPolicy__ingress__from": [{}]}, "/networkPolicy/ingress/from/0"),
    "metrics-open-to-all": ({"networkPolicy__metrics__from": []}, "/networkPolicy/metrics/from"),
    "metrics-any-namespace": (
        {"networkPolicy__metrics__from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"a": "b"}}}]},
        "/networkPolicy/metrics/from/0/namespaceSelector",
    ),
    "metrics-any-pod": (
        {
            "networkPolicy__metrics__from": [
                {"namespaceSelector": {"matchLabels": {"a": "b"}}, "podSelector": {"matchLabels": {}}}
            ]
        },
        "/networkPolicy/metrics/from/0/podSelector",
    ),
    "metrics-pods-only": (
        {"networkPolicy__metrics__from": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}]},
        "/networkPolicy/metrics/from/0",
    ),
    "metrics-namespace-only": (
        {"networkPolicy__metrics__from": [{"namespaceSelector": {"matchLabels": {"a": "b"}}}]},
        "/networkPolicy/metrics/from/0",
    ),
    "metrics-ip-block": (
        {"networkPolicy__metrics__from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]},
        "/networkPolicy/metrics/from/0",
    ),
    "egress-empty-peer": ({"networkPolicy__egress__database__to": [{}]}, "/networkPolicy/egress/database/to/0"),
}


@pytest.mark.parametrize("case", NETWORK_SCHEMA_REFUSALS, ids=list(NETWORK_SCHEMA_REFUSALS))
def test_schema_refuses_network_openings(case, minimal_values):
    overrides, where = NETWORK_SCHEMA_REFUSALS[case]
    values = with_overrides(minimal_values, metrics__enabled=True, **overrides)
    assert where in schema_error(values)
    with pytest.raises(helm_python.HelmValuesError):
        template.render_raw(values)


# --- secrets only from Secrets -------------------------------------------------

SECRET_ENV = [
    "IDENTITY_DATABASE_URL",
    "IDENTITY_DATABASE_URL_FILE",
    "IDENTITY_SECRET_KEY",
    "IDENTITY_SECRET_KEY_FILE",
    "IDENTITY_RATE_LIMIT_REDIS_URL",
    "IDENTITY_RATE_LIMIT_REDIS_URL_FILE",
    "IDENTITY_REVOCATION_LISTEN_URL",
    "IDENTITY_REVOCATION_LISTEN_URL_FILE",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
]


@pytest.mark.parametrize("name", SECRET_ENV)
def test_schema_refuses_secret_settings_in_extra_env(name, minimal_values):
    values = with_overrides(minimal_values, config__extraEnv={name: "authorization=Bearer s3cr3t"})
    assert f"invalid propertyName '{name}'" in schema_error(values)
    with pytest.raises(helm_python.HelmValuesError):
        template.render_raw(values)


def test_schema_still_accepts_ordinary_extra_env(minimal_values):
    values = with_overrides(
        minimal_values, config__extraEnv={"IDENTITY_DATABASE_POOL_SIZE": "8", "OTEL_EXPORTER_OTLP_TIMEOUT": "5000"}
    )
    data = Rendered(values).configmap_data()
    assert data["IDENTITY_DATABASE_POOL_SIZE"] == "8"


def test_the_revocation_listen_url_comes_from_the_secret_only_when_set(minimal, minimal_values, hs256_values):
    def env(r: Rendered) -> dict:
        c = r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e for e in c["env"]}

    assert "IDENTITY_REVOCATION_LISTEN_URL" not in env(minimal)
    existing = with_overrides(minimal_values, secrets__keys__revocationListenUrl="listener-url")
    assert env(Rendered(existing))["IDENTITY_REVOCATION_LISTEN_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "identity-secrets", "key": "listener-url"}
    }
    url = "postgres://identity:hs-db-password@postgres-direct:5432/identity"
    made = Rendered(with_overrides(hs256_values, secrets__create__revocationListenUrl=url))
    ref = env(made)["IDENTITY_REVOCATION_LISTEN_URL"]["valueFrom"]["secretKeyRef"]
    secret = [s for s in made.of_kind("Secret") if s["metadata"]["name"] == ref["name"]][0]
    assert base64.b64decode(secret["data"][ref["key"]]).decode() == url
    assert url not in str(made.configmap_data())


def test_otlp_headers_come_from_a_secret(full, minimal_values):
    c = full.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == {
        "name": "OTEL_EXPORTER_OTLP_HEADERS",
        "valueFrom": {"secretKeyRef": {"name": "otlp-credentials", "key": "headers"}},
    }
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in full.configmap_data()
    # Not without telemetry, nor without a Secret.
    values = with_overrides(minimal_values, otel__enabled=True, otel__endpoint="http://c:4317")
    c = Rendered(values).one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in {e["name"] for e in c["env"]}


# --- the migration Job's own database user -------------------------------------


def job_db_ref(r: Rendered) -> dict:
    env = r.one("Job", component="migrate")["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e for e in env}["IDENTITY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]


def server_db_ref(r: Rendered) -> dict:
    env = r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e for e in env}["IDENTITY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]


def test_migrations_use_their_own_secret_key(minimal):
    assert job_db_ref(minimal) == {"name": "identity-secrets", "key": "migration-database-url"}
    assert server_db_ref(minimal) == {"name": "identity-secrets", "key": "database-url"}


@pytest.mark.parametrize("which", ["full", "hs256"])
def test_the_migration_url_is_only_in_the_hook_secret(which, request):
    r = request.getfixturevalue(which)
    ref = job_db_ref(r)
    [hook] = [s for s in r.of_kind("Secret") if s["metadata"]["name"] == ref["name"]]
    assert "helm.sh/hook" in hook["metadata"]["annotations"]
    owner_url = r.values["secrets"]["create"]["migrationDatabaseUrl"]
    assert base64.b64decode(hook["data"][ref["key"]]).decode() == owner_url
    assert ref != server_db_ref(r)
    # The server's Secret and pods never see the owner's URL.
    for s in r.of_kind("Secret"):
        if s is not hook:
            assert base64.b64encode(owner_url.encode()).decode() not in s["data"].values()
    assert owner_url not in str(r.one("Deployment"))


MIGRATION_REFUSALS = {
    "no-migration-secret": ({"migrations__existingSecret": ""}, "migrations need their own database user"),
    "server-url-reused": (
        {"migrations__databaseUrlKey": "database-url"},
        "migrations.databaseUrlKey names the server's own database URL",
    ),
}


@pytest.mark.parametrize("case", MIGRATION_REFUSALS, ids=list(MIGRATION_REFUSALS))
def test_migrations_refuse_the_servers_database_user(case, minimal_values):
    overrides, expected = MIGRATION_REFUSALS[case]
    with pytest.raises(helm_python.HelmRenderError) as err:
        template.render_raw(with_overrides(minimal_values, **overrides))
    assert expected in str(err.value)


def test_chart_made_migration_url_must_differ_from_the_servers(hs256_values):
    same = with_overrides(
        hs256_values, secrets__create__migrationDatabaseUrl=hs256_values["secrets"]["create"]["databaseUrl"]
    )
    with pytest.raises(helm_python.HelmRenderError) as err:
        template.render_raw(same)
    assert "must not be the server's user" in str(err.value)
    missing = with_overrides(hs256_values, secrets__create__migrationDatabaseUrl="")
    with pytest.raises(helm_python.HelmRenderError) as err:
        template.render_raw(missing)
    assert "secrets.create.migrationDatabaseUrl" in str(err.value)


def test_without_migrations_no_migration_user_is_needed(minimal_values):
    r = Rendered(with_overrides(minimal_values, migrations__enabled=False, migrations__existingSecret=""))
    assert not r.of_kind("Job")
