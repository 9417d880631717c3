"""deploy/helm/kubespan-discovery: rendered offline with Helm's own engine (the Helm Go SDK,
through the helm-python-sdk wheel, so no helm binary is needed) for the single and HA values,
linted, validated against the Kubernetes schemas, and held to the kustomize manifests.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.deploy_support import DEPLOY, require_module
from tests.deploy.test_kubernetes import K8S, OLDEST_K8S

CHART = DEPLOY / "helm" / "kubespan-discovery"
MODES = {"single": None, "ha": CHART / "values-ha.yaml"}

Obj = dict[str, Any]


def _helm() -> Any:
    return require_module("helm_python", "helm-python-sdk")


def _render(mode: str) -> dict[str, list[Obj]]:
    """kind -> rendered documents, for a release named `discovery`."""
    helm = _helm()
    values_file = MODES[mode]
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    chart = helm.Chart.load(str(CHART))
    rendered: dict[str, str] = chart.render(values, name="discovery", namespace="default")
    kinds: dict[str, list[Obj]] = {}
    for path, text in rendered.items():
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def _kustomize(mode: str) -> dict[str, Obj]:
    docs: dict[str, Obj] = {}
    for path in sorted((K8S / mode).glob("*.yaml")):
        if path.name == "kustomization.yaml" or path.name.endswith(".example.yaml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["kind"]] = doc
    return docs


@pytest.mark.parametrize("mode", MODES)
def test_the_chart_lints_clean(mode: str) -> None:
    values_file = MODES[mode]
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    report = _helm().lint(str(CHART), values, strict=True, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("mode", MODES)
def test_rendered_manifests_validate_against_the_kubernetes_schemas(mode: str) -> None:
    kv = require_module("kubernetes_validate", "kubernetes-validate")
    docs = [d for kind in _render(mode).values() for d in kind]
    assert docs
    for version in (OLDEST_K8S, kv.latest_version()):
        for doc in docs:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{mode}: {doc['kind']} (k8s {version}) at {where}: {exc.message}")


@pytest.mark.parametrize("mode", MODES)
def test_the_chart_runs_what_the_kustomize_manifests_run(mode: str) -> None:
    rendered, manifest = _render(mode), _kustomize(mode)
    expected_kinds = set(manifest)
    assert set(rendered) == expected_kinds
    assert all(len(docs) == 1 for docs in rendered.values())

    ours = rendered["Deployment"][0]["spec"]
    theirs = manifest["Deployment"]["spec"]
    assert ours["replicas"] == theirs["replicas"]
    assert ours["strategy"] == theirs["strategy"]
    pod, their_pod = ours["template"]["spec"], theirs["template"]["spec"]
    assert pod["securityContext"] == their_pod["securityContext"]
    for key in ("enableServiceLinks", "automountServiceAccountToken"):
        assert pod[key] == their_pod[key]
    container, their_container = pod["containers"][0], their_pod["containers"][0]
    for key in ("env", "ports", "startupProbe", "livenessProbe", "readinessProbe",
                "securityContext", "resources"):  # fmt: skip
        assert container[key] == their_container[key], f"{mode}: container {key} differs"
    assert [m["mountPath"] for m in container["volumeMounts"]] == [
        m["mountPath"] for m in their_container["volumeMounts"]
    ]
    assert (
        ours["template"]["metadata"]["annotations"] == theirs["template"]["metadata"]["annotations"]
    )
    service = rendered["Service"][0]["spec"]
    assert service["ports"] == manifest["Service"]["spec"]["ports"]
    if mode == "ha":
        pdb = rendered["PodDisruptionBudget"][0]["spec"]
        assert pdb["minAvailable"] == manifest["PodDisruptionBudget"]["spec"]["minAvailable"]
    else:
        claim = rendered["PersistentVolumeClaim"][0]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_an_unknown_mode_fails_to_render() -> None:
    helm = _helm()
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmRenderError, match="mode must be single or ha"):
        chart.render({"mode": "cluster"}, name="discovery", namespace="default")
