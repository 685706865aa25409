"""Assertions on the rendered objects: hardening, probes, hooks, secrets."""

from __future__ import annotations

import base64
import copy
import json

import pytest
import template
from chart_helpers import HEALTH_PORT, Rendered
from test_lint_and_values import with_overrides

NONROOT = 65532


# --- nothing runs as root, everything hardened and limited ---------------------


def test_every_pod_is_hardened(rendered):
    assert rendered.pod_specs(), "no workload rendered"
    for owner, spec in rendered.pod_specs():
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, owner
        assert psc["runAsUser"] == NONROOT, owner
        assert psc["runAsGroup"] == NONROOT, owner
        assert psc["fsGroup"] == NONROOT, owner
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, owner
        assert spec["automountServiceAccountToken"] is False, owner
        assert spec["enableServiceLinks"] is False, owner
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), owner


def test_every_container_is_hardened(rendered):
    for owner, _, c in rendered.containers():
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True, owner
        assert sc["allowPrivilegeEscalation"] is False, owner
        assert sc["readOnlyRootFilesystem"] is True, owner
        assert sc["privileged"] is False, owner
        assert sc["capabilities"]["drop"] == ["ALL"], owner
        assert not sc["capabilities"].get("add"), owner
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, owner


def test_no_container_runs_as_root(rendered):
    for owner, spec, c in rendered.containers():
        uid = c.get("securityContext", {}).get("runAsUser", spec["securityContext"].get("runAsUser"))
        gid = c.get("securityContext", {}).get("runAsGroup", spec["securityContext"].get("runAsGroup"))
        assert uid not in (None, 0), f"{owner} runs as uid {uid}"
        assert gid not in (None, 0), f"{owner} runs as gid {gid}"


def test_every_container_has_requests_and_limits(rendered):
    for owner, _, c in rendered.containers():
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"].get(kind, {})), f"{owner} {kind}"


def test_every_emptydir_is_size_limited(rendered):
    for owner, spec in rendered.pod_specs():
        for vol in spec.get("volumes", []):
            if "emptyDir" in vol:
                assert vol["emptyDir"].get("sizeLimit"), f"{owner} {vol['name']}"


def test_tmp_is_the_only_writable_mount(rendered):
    for owner, spec, c in rendered.containers():
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for m in c.get("volumeMounts", []):
            if m["name"] == "tmp":
                assert m["mountPath"] == "/tmp" and "emptyDir" in vols["tmp"], owner
            else:
                assert m.get("readOnly") is True, f"{owner} mounts {m['name']} writable"


def test_service_accounts_do_not_mount_tokens(rendered):
    for sa in rendered.of_kind("ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


# --- images ------------------------------------------------------------------


def test_no_latest_tag_and_every_image_pinned(rendered):
    for owner, _, c in rendered.containers():
        image = c["image"]
        name, _, digest = image.partition("@")
        repo_tail = name.rsplit("/", 1)[-1]
        assert ":" in repo_tail or digest, f"{owner}: {image} has no tag"
        tag = repo_tail.split(":", 1)[1] if ":" in repo_tail else ""
        assert tag.lower() != "latest", f"{owner}: {image}"
        assert c.get("imagePullPolicy") in ("IfNotPresent", "Always"), owner


def test_default_tag_is_the_app_version(minimal):
    import helm_python

    with helm_python.Chart.load(template.CHART) as chart:
        app_version = chart.metadata["appVersion"]
    image = minimal.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(f":{app_version}")


def test_digest_pins_the_image(full):
    image = full.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith("@" + full.values["image"]["digest"])


# --- probes, ports, service --------------------------------------------------


def test_probes_are_native_grpc_on_the_health_port(rendered):
    deploy = rendered.one("Deployment")
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["health"] == HEALTH_PORT
    assert ports["grpc"] != HEALTH_PORT
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert set(c[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, probe
        assert c[probe]["grpc"]["port"] == HEALTH_PORT, probe
    # The server listens there.
    assert rendered.configmap_data()["IDENTITY_HEALTH_LISTEN_ADDR"].endswith(f":{HEALTH_PORT}")


def test_service_exposes_grpc_with_app_protocol(rendered):
    svc = rendered.one("Service")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["appProtocol"] == "grpc"
    assert ports["grpc"]["targetPort"] == "grpc"
    assert ("metrics" in ports) == rendered.values.get("metrics", {}).get("enabled", False)
    sel = svc["spec"]["selector"]
    assert sel["app.kubernetes.io/component"] == "server"


def test_metrics_port_and_servicemonitor(full, minimal):
    c = full.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in c["ports"]
    assert full.configmap_data()["IDENTITY_METRICS_ADDR"].endswith(":9464")
    sm = full.one("ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert not minimal.of_kind("ServiceMonitor")
    assert "IDENTITY_METRICS_ADDR" not in minimal.configmap_data()


# --- graceful shutdown -------------------------------------------------------


def test_termination_grace_exceeds_the_drain(rendered):
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    drain = rendered.configmap_data()["IDENTITY_SHUTDOWN_GRACE"]
    assert drain.endswith("s")
    pre_stop = spec["containers"][0].get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert spec["terminationGracePeriodSeconds"] > int(drain[:-1]) + pre_stop


# --- migrations --------------------------------------------------------------


def test_migration_job_is_a_pre_install_pre_upgrade_hook(rendered):
    job = rendered.one("Job", component="migrate")
    ann = job["metadata"]["annotations"]
    assert set(ann["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    int(ann["helm.sh/hook-weight"])
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["args"] == ["migrate"]
    assert job["spec"]["activeDeadlineSeconds"] > 0
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert "secretKeyRef" in env["IDENTITY_DATABASE_URL"]["valueFrom"]
    # The chart's own ServiceAccount does not exist yet on first install.
    if rendered.values.get("serviceAccount", {}).get("create", True):
        assert "serviceAccountName" not in spec


def test_every_object_the_hook_needs_exists_before_it(rendered):
    """At pre-install only hooks exist: the Job may reference only an existing
    Secret (existingSecret) or a hook Secret with a lower weight."""
    job = rendered.one("Job", component="migrate")
    spec = job["spec"]["template"]["spec"]
    ref = spec["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"]
    existing = rendered.values.get("migrations", {}).get("existingSecret")
    if existing:
        assert ref == existing
    else:
        hook_secret = [s for s in rendered.of_kind("Secret") if s["metadata"]["name"] == ref]
        assert hook_secret, ref
        ann = hook_secret[0]["metadata"]["annotations"]
        assert set(ann["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert int(ann["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert not spec.get("envFrom"), "the ConfigMap does not exist yet at pre-install"


def test_server_does_not_migrate_on_start(rendered):
    assert rendered.configmap_data()["IDENTITY_MIGRATE_ON_START"] == "false"
    c = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["serve"]


def test_migrations_can_be_turned_off(minimal_values):
    r = Rendered({**minimal_values, "migrations": {"enabled": False}})
    assert not r.of_kind("Job")


# --- secrets -----------------------------------------------------------------


def secret_strings(values) -> list[str]:
    create = values["secrets"].get("create", {})
    found = [create.get("databaseUrl"), create.get("migrationDatabaseUrl"), create.get("redisUrl"), create.get("secretKey")]
    found += create.get("signingKeys", [])
    # Also the password part alone of each URL.
    for url in (create.get("databaseUrl"), create.get("migrationDatabaseUrl"), create.get("redisUrl")):
        if url and "@" in url:
            found.append(url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[-1])
    return [s for s in found if s]


@pytest.mark.parametrize("which", ["full", "hs256"])
def test_no_secret_value_in_a_configmap_or_pod_spec(which, request):
    r = request.getfixturevalue(which)
    secrets = secret_strings(r.values)
    assert secrets
    needles = secrets + [base64.b64encode(s.encode()).decode() for s in secrets]
    for s in secrets:
        needles += [line for line in s.splitlines() if len(line) > 8 and "-----" not in line]
    for cm in r.of_kind("ConfigMap"):
        blob = json.dumps(cm)
        for n in needles:
            assert n not in blob, f"secret material in ConfigMap {cm['metadata']['name']}"
    for owner, spec in r.pod_specs():
        blob = json.dumps(spec)
        for n in needles:
            assert n not in blob, f"secret material in {owner}"
    for n in needles:
        assert n not in r.notes


def test_secrets_reach_the_pod_only_through_secret_refs(rendered):
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    for name in ("IDENTITY_DATABASE_URL", "IDENTITY_RATE_LIMIT_REDIS_URL", "IDENTITY_SECRET_KEY"):
        if name in env:
            assert set(env[name]) == {"name", "valueFrom"}, name
            assert "secretKeyRef" in env[name]["valueFrom"], name
    assert [e["configMapRef"]["name"] for e in c["envFrom"]] == [rendered.settings_configmap()["metadata"]["name"]]
    for key in rendered.configmap_data():
        assert key not in ("IDENTITY_DATABASE_URL", "IDENTITY_SECRET_KEY", "IDENTITY_RATE_LIMIT_REDIS_URL")


def test_existing_secret_is_used_and_no_secret_is_made(minimal):
    assert not minimal.of_kind("Secret")
    spec = minimal.one("Deployment")["spec"]["template"]["spec"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    ref = env["IDENTITY_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "identity-secrets", "key": "database-url"}
    vol = {v["name"]: v for v in spec["volumes"]}["signing-keys"]["secret"]
    assert vol["secretName"] == "identity-secrets"
    assert vol["items"] == [{"key": "signing-key.pem", "path": "signing-key.pem"}]
    assert minimal.configmap_data()["IDENTITY_SIGNING_KEY_FILE"] == "/etc/identity/signing/signing-key.pem"


def test_signing_keys_rotate_first_signs(full):
    files = full.configmap_data()["IDENTITY_SIGNING_KEY_FILE"].split(",")
    assert files == ["/etc/identity/signing/signing-key-0.pem", "/etc/identity/signing/signing-key-1.pem"]
    secret = [s for s in full.of_kind("Secret") if "helm.sh/hook" not in s["metadata"].get("annotations", {})][0]
    first = base64.b64decode(secret["data"]["signing-key-0.pem"]).decode()
    assert first == full.values["secrets"]["create"]["signingKeys"][0]
    vol = {v["name"]: v for v in full.one("Deployment")["spec"]["template"]["spec"]["volumes"]}["signing-keys"]
    assert vol["secret"]["defaultMode"] == 0o440


def test_hs256_uses_the_secret_key_env_and_no_key_files(hs256):
    c = hs256.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["IDENTITY_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "secret-key"
    assert "IDENTITY_SIGNING_KEY_FILE" not in hs256.configmap_data()
    assert all(m["name"] != "signing-keys" for m in c["volumeMounts"])


def test_checksums_roll_the_pods_on_change(minimal_values, hs256_values):
    def annotations(values):
        return Rendered(values).one("Deployment")["spec"]["template"]["metadata"]["annotations"]

    base = annotations(minimal_values)
    assert base["checksum/config"] and base["checksum/secret"]
    changed_cfg = annotations({**minimal_values, "config": {"audience": "other"}})
    assert changed_cfg["checksum/config"] != base["checksum/config"]
    assert changed_cfg["checksum/secret"] == base["checksum/secret"]

    made = annotations(hs256_values)
    rotated = copy.deepcopy(hs256_values)
    rotated["secrets"]["create"]["secretKey"] = "another-hs256-test-secret-0123456789-xyz"
    assert annotations(rotated)["checksum/secret"] != made["checksum/secret"]


# --- TLS, telemetry, provider ------------------------------------------------


def test_tls_secret_is_mounted_and_wired(full):
    data = full.configmap_data()
    assert data["IDENTITY_ALLOW_PLAINTEXT"] == "false"
    spec = full.one("Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    assert data["IDENTITY_TLS_CERT_FILE"] == mounts["tls"] + "/tls.crt"
    assert data["IDENTITY_TLS_KEY_FILE"] == mounts["tls"] + "/tls.key"
    assert data["IDENTITY_TLS_CLIENT_CA_FILE"] == mounts["client-ca"] + "/ca.crt"
    assert vols["tls"]["secret"]["secretName"] == "identity-tls"
    assert vols["client-ca"]["secret"]["secretName"] == "identity-client-ca"


def test_the_database_ca_is_mounted_where_the_url_can_name_it(minimal_values, minimal):
    values = with_overrides(minimal_values, databaseTLS__caSecret="pg-ca", databaseTLS__caKey="root.pem")
    rendered = Rendered(values)
    owners = set()
    for owner, spec in rendered.pod_specs():
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        if "database-ca" not in vols:
            continue
        owners.add(owner)
        assert vols["database-ca"]["secret"]["secretName"] == "pg-ca"
        assert vols["database-ca"]["secret"]["items"] == [{"key": "root.pem", "path": "ca.crt"}]
        mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["database-ca"]["mountPath"] == "/etc/identity/database-ca"
        assert mounts["database-ca"]["readOnly"] is True
    assert {o.split("/")[0] for o in owners} == {"Deployment", "Job"}, owners
    # Nothing is mounted unless asked.
    assert not any(
        v["name"] == "database-ca" for _, spec in minimal.pod_specs() for v in spec.get("volumes", [])
    )


def test_the_redis_ca_is_mounted_and_named_only_with_shared_limits(minimal_values):
    values = with_overrides(
        minimal_values,
        rateLimit__redis__enabled=True,
        rateLimit__redis__caSecret="redis-ca",
    )
    rendered = Rendered(values)
    assert rendered.configmap_data()["IDENTITY_RATE_LIMIT_REDIS_CA_FILE"] == "/etc/identity/redis-ca/ca.crt"
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    assert mounts["redis-ca"] == "/etc/identity/redis-ca"
    assert vols["redis-ca"]["secret"]["secretName"] == "redis-ca"
    # Without shared limits there is nothing to verify.
    off = Rendered(with_overrides(minimal_values, rateLimit__redis__caSecret="redis-ca"))
    assert "IDENTITY_RATE_LIMIT_REDIS_CA_FILE" not in off.configmap_data()
    assert "redis-ca" not in {v["name"] for v in off.one("Deployment")["spec"]["template"]["spec"]["volumes"]}


def test_plaintext_default_is_explicit_and_warned(minimal):
    assert minimal.configmap_data()["IDENTITY_ALLOW_PLAINTEXT"] == "true"
    assert "TLS is off" in minimal.notes


def test_otel_env_wiring(full, minimal):
    data = full.configmap_data()
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == full.values["otel"]["endpoint"]
    assert data["OTEL_SERVICE_NAME"] == "identity"
    assert data["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert data["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    env = {e["name"]: e for e in full.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    attrs = env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
    assert "k8s.pod.name=$(K8S_POD_NAME)" in attrs and "deployment.environment.name=production" in attrs
    assert not any(k.startswith("OTEL_") for k in minimal.configmap_data())


def test_every_setting_of_the_contract_is_wired(full):
    data = full.configmap_data()
    for key in (
        "IDENTITY_ISSUER",
        "IDENTITY_AUDIENCE",
        "IDENTITY_ACCESS_TOKEN_TTL",
        "IDENTITY_REFRESH_TOKEN_TTL",
        "IDENTITY_BCRYPT_COST",
        "IDENTITY_MIGRATE_ON_START",
        "IDENTITY_ALLOW_PLAINTEXT",
        "IDENTITY_TLS_CERT_FILE",
        "IDENTITY_TLS_KEY_FILE",
        "IDENTITY_TLS_CLIENT_CA_FILE",
        "IDENTITY_RATE_LIMIT_ENABLED",
        "IDENTITY_PROVIDER_JWKS_URL",
        "IDENTITY_PROVIDER_ISSUER",
        "IDENTITY_PROVIDER_AUDIENCE",
        "IDENTITY_PROVIDER_NAME",
        "IDENTITY_LOG_FORMAT",
        "IDENTITY_SHUTDOWN_GRACE",
        "IDENTITY_LISTEN_ADDR",
        "IDENTITY_HEALTH_LISTEN_ADDR",
        "IDENTITY_METRICS_ADDR",
        "IDENTITY_SIGNING_KEY_FILE",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    ):
        assert data.get(key), key
    assert int(data["IDENTITY_BCRYPT_COST"]) >= 12
    assert all(isinstance(v, str) for v in data.values())


# --- scaling and placement ---------------------------------------------------


def test_hpa_owns_the_replica_count(full, minimal):
    assert "replicas" not in full.one("Deployment")["spec"]
    hpa = full.one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == full.one("Deployment")["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert minimal.one("Deployment")["spec"]["replicas"] == 2
    assert not minimal.of_kind("HorizontalPodAutoscaler")


def test_pdb_selects_exactly_the_server_pods(rendered):
    pdb = rendered.one("PodDisruptionBudget")
    deploy = rendered.one("Deployment")
    assert pdb["spec"]["selector"] == deploy["spec"]["selector"]
    assert "maxUnavailable" in pdb["spec"]


def test_replicas_spread_across_nodes(rendered):
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    keys = {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in keys
    for t in spec["topologySpreadConstraints"]:
        assert t["labelSelector"] == rendered.one("Deployment")["spec"]["selector"]


# --- network policy ----------------------------------------------------------


def egress_ports(np) -> set[int]:
    return {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}


def test_network_policy_limits_ingress_and_egress(minimal, full):
    np = minimal.one("NetworkPolicy")
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]}
    assert ingress_ports == {"grpc", "health", "http"}
    # Only DNS: the database has no `to` in the defaults, so no rule.
    assert egress_ports(np) == {53}
    np_full = full.one("NetworkPolicy")
    # DNS, database, Redis, OTLP collector, provider JWKS, and the extra rule.
    assert egress_ports(np_full) == {53, 5432, 6379, 4317, 443, 8443}
    grpc_rule = [r for r in np_full["spec"]["ingress"] if r["ports"][0]["port"] == "grpc"][0]
    assert grpc_rule["from"] == full.values["networkPolicy"]["ingress"]["from"]
    # It covers the server and the migration Job, not the test pod.
    exprs = np["spec"]["podSelector"]["matchExpressions"][0]
    assert set(exprs["values"]) == {"server", "migrate"}


# --- helm test ---------------------------------------------------------------


def test_helm_test_pod_checks_health_through_the_service(rendered):
    pods = rendered.of_kind("Pod")
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["args"] == ["healthcheck"]
    env = {e["name"]: e["value"] for e in c["env"]}
    svc = rendered.one("Service")
    assert env["IDENTITY_HEALTHCHECK_ADDR"] == (
        f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:{HEALTH_PORT}"
    )
    assert HEALTH_PORT in [p["port"] for p in svc["spec"]["ports"]]
    assert pod["spec"]["restartPolicy"] == "Never"


# --- labels ------------------------------------------------------------------


def test_every_object_has_the_standard_labels(rendered):
    for obj in rendered.objects:
        labels = obj["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert key in labels, f"{obj['kind']}/{obj['metadata']['name']} lacks {key}"
        assert obj["metadata"]["namespace"] == template.NAMESPACE
