"""The Helm chart, checked offline: `helm lint` and `helm template` through Helm's own Go SDK (helm-python-sdk
bundles it), every rendered manifest against Kubernetes' schemas (kubernetes-validate, strict, for a pinned
Kubernetes version), values.schema.json against values.yaml and bad values, and the container's PATCHBAY_*
variables loaded through patchbay.settings."""

from __future__ import annotations

import base64
import platform
import secrets
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from patchbay import settings as settings_mod

# helm-python-sdk ships an x86-64 Linux wheel only (pyproject.toml's dev extra says so); there it must be present.
if sys.platform == "linux" and platform.machine() == "x86_64":
    import helm_python as helm
else:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk has no wheel for this platform")

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "patchbay"
KUBERNETES = "1.33.0"
REQUIRED = {"publicUrl": "https://mcp.example.com", "existingSecret": "patchbay-secrets"}
EVERYTHING_ON: dict[str, Any] = {
    **REQUIRED,
    "autoscaling": {"enabled": True},
    "ingress": {"enabled": True, "host": "mcp.example.com", "tlsSecretName": "mcp-tls", "className": "nginx"},
    "httpRoute": {
        "enabled": True,
        "parentRefs": [{"name": "public", "namespace": "gateway"}],
        "hostnames": ["mcp.example.com"],
    },
    "networkPolicy": {"enabled": True, "from": [{"namespaceSelector": {"matchLabels": {"name": "gateway"}}}]},
    "serviceMonitor": {"enabled": True, "bearerTokenSecret": {"name": "patchbay-secrets", "key": "metrics-token"}},
}
CUSTOM_RESOURCES = {("gateway.networking.k8s.io/v1", "HTTPRoute"), ("monitoring.coreos.com/v1", "ServiceMonitor")}


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="pb", namespace="mcp", is_install=True)
    docs = []
    for name, text in rendered.items():
        if name.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, [d["kind"] for d in docs]
    return found[0]


def test_helm_lint_is_clean_in_strict_mode() -> None:
    for values in (REQUIRED, EVERYTHING_ON):
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBERNETES}")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", [REQUIRED, EVERYTHING_ON], ids=["defaults", "everything-on"])
def test_every_rendered_manifest_is_valid_for_kubernetes(values: dict[str, Any]) -> None:
    docs = _render(values)
    assert len(docs) >= 6
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_RESOURCES:
            continue  # no schema ships for custom resources; their shape is asserted below
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_defaults_render_a_deployment_service_pdb_migration_job_and_test_pod_but_no_optional_parts() -> None:
    kinds = sorted(d["kind"] for d in _render(REQUIRED))
    assert kinds == ["ConfigMap", "Deployment", "Job", "Pod", "PodDisruptionBudget", "Service"]
    everything = sorted(d["kind"] for d in _render(EVERYTHING_ON))
    assert {"HorizontalPodAutoscaler", "Ingress", "HTTPRoute", "NetworkPolicy", "ServiceMonitor"} <= set(everything)


def test_deployment_runs_non_root_read_only_with_health_and_readiness_probes_spread_over_nodes() -> None:
    deployment = _kind(_render(REQUIRED), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz?degraded=ok"
    # The Host check allows loopback names on every route; a pod IP would need server.probe_hosts.
    assert container["readinessProbe"]["httpGet"]["httpHeaders"] == [{"name": "Host", "value": "localhost"}]
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/etc/patchbay", "/data", "/tmp"}
    assert deployment["spec"]["replicas"] == 3
    assert "replicas" not in _kind(_render(EVERYTHING_ON), "Deployment")["spec"]  # the HPA decides


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook_outside_the_service() -> None:
    docs = _render(REQUIRED)
    job = _kind(docs, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    pod = job["spec"]["template"]
    assert pod["spec"]["containers"][0]["command"][:3] == ["patchbay", "store", "upgrade"]
    selector = _kind(docs, "Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    assert "sessionAffinity" not in _kind(docs, "Service")["spec"]


def test_secrets_come_only_from_the_existing_secret() -> None:
    docs = _render(REQUIRED)
    assert not [d for d in docs if d["kind"] == "Secret"]
    env = _kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert set(from_secret) == {
        "PATCHBAY_STORE__URL",
        "PATCHBAY_REDIS__URL",
        "PATCHBAY_SERVER__SECRET",
        "PATCHBAY_VAULT__KEYS",
    }
    assert {ref["name"] for ref in from_secret.values()} == {"patchbay-secrets"}


def test_container_environment_names_real_settings_keys(tmp_path: Path) -> None:
    docs = _render(REQUIRED)
    container = _kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    secret_values = {
        "PATCHBAY_STORE__URL": "postgresql+psycopg://patchbay:pw@db/patchbay",
        "PATCHBAY_REDIS__URL": "redis://redis:6379/0",
        "PATCHBAY_SERVER__SECRET": secrets.token_urlsafe(32),
        "PATCHBAY_VAULT__KEYS": f'["{base64.b64encode(secrets.token_bytes(32)).decode()}"]',
    }
    env = {e["name"]: e.get("value", secret_values.get(e["name"])) for e in container["env"]}
    config = tmp_path / "patchbay.toml"
    config.write_text(_kind(docs, "ConfigMap")["data"]["patchbay.toml"])
    loaded = settings_mod.load(config, env=env)
    assert loaded.public_url == "https://mcp.example.com" and loaded.redis.url is not None
    assert loaded.store_url.startswith("postgresql+psycopg://") and len(loaded.vault.keys) == 1


def test_default_config_makes_every_read_wait_for_its_audit_commit_so_a_killed_pod_loses_no_record(
    tmp_path: Path,
) -> None:
    config = tmp_path / "patchbay.toml"
    config.write_text(_kind(_render(REQUIRED), "ConfigMap")["data"]["patchbay.toml"])
    assert settings_mod.load(config, env={}).audit.read_window_ms == 0


def test_values_yaml_matches_its_schema_and_bad_values_are_refused() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema)
    bad = [
        {"replicaCount": 0},
        {"publicUrl": "https://mcp.example.com/mcp/"},
        {"publicUrl": "mcp.example.com"},
        {"service": {"port": 70000}},
        {"replicas": 3},
        {"image": {"repository": "patchbay", "pullPolicy": "Sometimes"}},
    ]
    for change in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**values, **change}, schema)
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(REQUIRED)
        with pytest.raises(helm.HelmError, match="replicaCount"):
            chart.validate_schema({**REQUIRED, "replicaCount": 0})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"existingSecret": "s"}, "publicUrl is required"),
        ({"publicUrl": "https://mcp.example.com"}, "existingSecret is required"),
        ({**REQUIRED, "secretKeys": {"storeUrl": "u", "serverSecret": "s", "redisUrl": ""}}, "needs Redis"),
    ],
)
def test_rendering_refuses_missing_essentials_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        _render(values)


def test_a_single_replica_may_run_without_redis() -> None:
    values = {**REQUIRED, "replicaCount": 1, "secretKeys": {"storeUrl": "u", "serverSecret": "s", "redisUrl": ""}}
    env = _kind(_render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "PATCHBAY_REDIS__URL" not in {e["name"] for e in env}
