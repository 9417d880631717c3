"""Kubernetes manifests: schema-valid, and consistent with each other and with the settings."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubespan.config import load_config
from tests.deploy.deploy_support import (
    DEPLOY,
    check_kubespan_argv,
    check_settings_env,
    default_ports,
    require_module,
    service_flags,
)

K8S = DEPLOY / "kubernetes"
# The oldest minor we claim (documented in docs/operations.md) and the newest the validator knows.
OLDEST_K8S = "1.30"

Obj = dict[str, Any]


def _docs(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _by_kind(directory: str) -> dict[str, list[Obj]]:
    kinds: dict[str, list[Obj]] = {}
    for path in sorted((K8S / directory).glob("*.yaml")):
        for doc in _docs(path):
            kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def _one(directory: str, kind: str, *, example: bool = False) -> Obj:
    docs = []
    for path in sorted((K8S / directory).glob("*.yaml")):
        if path.name.endswith(".example.yaml") != example:
            continue
        docs += [d for d in _docs(path) if d.get("kind") == kind]
    assert len(docs) == 1, f"{directory}: expected one {kind}, found {len(docs)}"
    return docs[0]


def _container(workload: Obj) -> Obj:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Obj = containers[0]
    return container


def _literal_env(container: Obj) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def test_every_directory_has_a_kustomization_listing_existing_files() -> None:
    for directory in ("single", "ha", "agent"):
        kustomization = yaml.safe_load((K8S / directory / "kustomization.yaml").read_text())
        assert kustomization["kind"] == "Kustomization"
        for resource in kustomization["resources"]:
            assert (K8S / directory / resource).is_file(), f"{directory}: {resource} missing"
        listed = set(kustomization["resources"])
        # Secrets hold credentials, so the operator creates them; only examples are shipped.
        for path in (K8S / directory).glob("*.yaml"):
            if path.name == "kustomization.yaml":
                continue
            if path.name.endswith(".example.yaml"):
                assert path.name not in listed, f"{directory}: {path.name} must not be applied"
            else:
                assert path.name in listed, f"{directory}: {path.name} is not in kustomization"


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifests_validate_against_the_kubernetes_schemas(path: Path) -> None:
    kv = require_module("kubernetes_validate", "kubernetes-validate")
    for version in (OLDEST_K8S, kv.latest_version()):
        for doc in _docs(path):
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{path.name} {doc['kind']} (k8s {version}) at {where}: {exc.message}")


def test_service_containers_run_unprivileged_with_a_read_only_root() -> None:
    for directory in ("single", "ha"):
        deployment = _one(directory, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["enableServiceLinks"] is False, "Service links inject DISCOVERY_* variables"
        sc = _container(deployment)["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "add" not in sc["capabilities"]


def test_probes_ports_and_metrics_annotations_match_the_service() -> None:
    defaults = default_ports()
    for directory in ("single", "ha"):
        deployment = _one(directory, "Deployment")
        container = _container(deployment)
        settings = check_settings_env(_literal_env(container), f"{directory}/deployment.yaml")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {
            "grpc": defaults["grpc_addr"],
            "http": defaults["http_addr"],
            "metrics": defaults["metrics_addr"],
        }
        assert f":{ports['http']}" == settings.http_addr
        assert f":{ports['grpc']}" == settings.grpc_addr
        assert f":{ports['metrics']}" == settings.metrics_addr

        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"

        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == ports["metrics"]
        assert annotations["prometheus.io/path"] == "/metrics"

        for arg in container.get("args", []):
            if arg.startswith("--"):
                assert arg.split("=")[0] in service_flags(), f"{directory}: unknown flag {arg}"


def test_services_select_the_pods_and_expose_grpc_and_http() -> None:
    for directory in ("single", "ha"):
        deployment = _one(directory, "Deployment")
        service = _one(directory, "Service")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        exposed = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
        assert exposed == {3000: "grpc", 3001: "http"}, "metrics stay off the Service"
        grpc = next(p for p in service["spec"]["ports"] if p["port"] == 3000)
        assert grpc["appProtocol"] == "kubernetes.io/h2c"


def test_single_runs_one_pod_on_sqlite_in_its_claim() -> None:
    deployment = _one("single", "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    container = _container(deployment)
    settings = check_settings_env(_literal_env(container), "single/deployment.yaml")
    assert settings.storage.startswith("sqlite:////")
    db_dir = str(Path(settings.storage.removeprefix("sqlite:///")).parent)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[next(n for n, p in mounts.items() if p == db_dir)]
    assert (
        claim["persistentVolumeClaim"]["claimName"]
        == _one("single", "PersistentVolumeClaim")["metadata"]["name"]
    )
    assert "/tmp" in mounts.values(), "a read-only root needs a writable /tmp"


def test_ha_reads_the_database_url_from_a_secret_and_keeps_two_pods() -> None:
    deployment = _one("ha", "Deployment")
    assert deployment["spec"]["replicas"] == 3
    container = _container(deployment)
    storage = next(e for e in container["env"] if e["name"] == "DISCOVERY_STORAGE")
    ref = storage["valueFrom"]["secretKeyRef"]
    example = _one("ha", "Secret", example=True)
    assert ref["name"] == example["metadata"]["name"]
    url = example["stringData"][ref["key"]]
    check_settings_env({"DISCOVERY_STORAGE": url}, "ha/secret.example.yaml")
    assert url.startswith("postgresql://")

    pdb = _one("ha", "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 1


def test_agent_daemonset_has_the_host_network_and_net_admin_only() -> None:
    daemonset = _one("agent", "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    container = _container(daemonset)
    sc = container["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert mounts["/dev/net/tun"]["hostPath"] == {"path": "/dev/net/tun", "type": "CharDevice"}
    assert mounts["/var/lib/kubespan"]["hostPath"]["path"] == "/var/lib/kubespan"

    args = container["args"]
    # The image's entrypoint is `kubespan run`.
    check_kubespan_argv(["run", *args], "agent/daemonset.yaml")
    config_path = Path(args[args.index("--config") + 1])
    assert args[args.index("--state-dir") + 1] == "/var/lib/kubespan"
    secret_volume = mounts[str(config_path.parent)]["secret"]
    example = _one("agent", "Secret", example=True)
    assert secret_volume["secretName"] == example["metadata"]["name"]
    assert config_path.name in example["stringData"]


def test_agent_example_config_is_a_valid_config_once_secrets_are_filled_in() -> None:
    example = _one("agent", "Secret", example=True)
    text = example["stringData"]["config.yaml"]
    assert "REPLACE-WITH-GENERATED-SECRET" in text, "the example must not ship a usable secret"
    filled = text.replace("REPLACE-WITH-GENERATED-CLUSTER-ID", secrets.token_urlsafe(32)).replace(
        "REPLACE-WITH-GENERATED-SECRET", base64.b64encode(secrets.token_bytes(32)).decode()
    )
    config = load_config(filled)
    ports = _container(_one("agent", "DaemonSet"))["ports"]
    assert [(p["containerPort"], p["protocol"]) for p in ports] == [(config.mesh.port, "UDP")]
