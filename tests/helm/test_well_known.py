"""The /.well-known/ HTTP port (JWK set and discovery document): exposed on
the pod, the Service and the NetworkPolicy like the gRPC port, its jwks_uri
base from the values (never a plain-http one next to TLS), and off entirely
when wellKnown.enabled=false."""

from __future__ import annotations

import helm_python
import pytest
import template
from chart_helpers import Rendered
from test_lint_and_values import schema_error, with_overrides


def http_ingress(r: Rendered) -> dict | None:
    rules = [x for x in r.one("NetworkPolicy")["spec"]["ingress"] if x["ports"][0]["port"] == "http"]
    assert len(rules) <= 1
    return rules[0] if rules else None


def container_ports(r: Rendered) -> dict[str, int]:
    container = r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_the_port_is_on_by_default_on_the_pod_and_the_service(minimal):
    assert container_ports(minimal)["http"] == 8080
    [port] = [p for p in minimal.one("Service")["spec"]["ports"] if p["name"] == "http"]
    assert port == {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
    data = minimal.configmap_data()
    assert data["IDENTITY_HTTP_LISTEN_ADDR"] == "0.0.0.0:8080"
    assert "IDENTITY_HTTP_MAX_CONNECTIONS" not in data, "the server's default"


def test_jwks_uri_defaults_to_the_in_cluster_service_unless_the_issuer_is_https(minimal, full, minimal_values):
    # minimal: issuer `identity`, TLS off (plaintext allowed): the Service.
    data = minimal.configmap_data()
    assert data["IDENTITY_HTTP_PUBLIC_URL"] == f"http://identity.{template.NAMESPACE}.svc:8080"
    # full: issuer https://identity.example.com — the server derives it.
    assert "IDENTITY_HTTP_PUBLIC_URL" not in full.configmap_data()
    assert full.configmap_data()["IDENTITY_HTTP_MAX_CONNECTIONS"] == "512"
    values = with_overrides(minimal_values, wellKnown__publicUrl="https://keys.example.com/identity")
    assert Rendered(values).configmap_data()["IDENTITY_HTTP_PUBLIC_URL"] == "https://keys.example.com/identity"


def test_the_port_admits_the_grpc_peers_and_the_extra_ones_only(minimal, full):
    grpc = [x for x in minimal.one("NetworkPolicy")["spec"]["ingress"] if x["ports"][0]["port"] == "grpc"][0]
    rule = http_ingress(minimal)
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == grpc["from"]
    rule = http_ingress(full)
    assert rule["from"] == full.values["networkPolicy"]["ingress"]["from"] + full.values["networkPolicy"]["wellKnown"]["from"]
    for peer in rule["from"]:
        assert peer, "an empty peer admits everyone"


def test_disabled_means_no_port_no_rule_and_no_setting(minimal_values):
    r = Rendered(with_overrides(minimal_values, wellKnown__enabled=False))
    assert "http" not in container_ports(r)
    assert "http" not in {p["name"] for p in r.one("Service")["spec"]["ports"]}
    assert http_ingress(r) is None
    assert not {k for k in r.configmap_data() if k.startswith("IDENTITY_HTTP_")}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"wellKnown__publicUrl": "http://identity.example.com"},
        {"config__issuer": "http://identity.example.com"},
    ],
    ids=["default-service-url", "http-public-url", "http-issuer"],
)
def test_tls_refuses_a_plain_http_jwks_uri_naming_the_value(overrides, minimal_values):
    values = with_overrides(minimal_values, tls__enabled=True, tls__existingSecret="identity-tls", **overrides)
    with pytest.raises(helm_python.HelmRenderError) as err:
        template.render_raw(values)
    assert "wellKnown.publicUrl" in str(err.value)


def test_tls_renders_with_an_https_jwks_uri_or_the_port_off(minimal_values):
    tls = {"tls__enabled": True, "tls__existingSecret": "identity-tls"}
    for overrides in (
        {"wellKnown__publicUrl": "https://identity.example.com"},
        {"config__issuer": "https://identity.example.com"},
        {"wellKnown__enabled": False},
    ):
        Rendered(with_overrides(minimal_values, **tls, **overrides))


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"wellKnown__publicUrl": "https://user:pw@identity.example.com"}, "/wellKnown/publicUrl"),
        ({"wellKnown__publicUrl": "https://identity.example.com/?x=1"}, "/wellKnown/publicUrl"),
        ({"wellKnown__publicUrl": "identity.example.com"}, "/wellKnown/publicUrl"),
        ({"wellKnown__maxConnections": 0}, "/wellKnown/maxConnections"),
        ({"wellKnown__maxConnectionsPerAddress": 0}, "/wellKnown/maxConnectionsPerAddress"),
        ({"networkPolicy__wellKnown__from": [{}]}, "/networkPolicy/wellKnown/from/0"),
        ({"ports__http": 0}, "/ports/http"),
    ],
    ids=[
        "credentials",
        "query",
        "no-scheme",
        "no-connections",
        "no-connections-per-address",
        "open-to-all",
        "port-zero",
    ],
)
def test_schema_refuses(overrides, path, minimal_values):
    assert path in schema_error(with_overrides(minimal_values, **overrides))
