"""The Helm chart: lint, render, values documented and schema-checked, install.yaml current."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "elasticjob-operator"


@pytest.fixture(scope="module")
def helm() -> str:
    bin_dir = (
        os.environ.get("ELASTICJOB_K8S_BIN")
        or subprocess.run(
            ["bash", str(ROOT / "hack" / "k8s" / "ensure.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    return str(Path(bin_dir) / "helm")


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [helm, "template", "elasticjob", str(CHART), "-n", "elasticjob-system", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_helm_lint_is_clean(helm: str) -> None:
    result = subprocess.run([helm, "lint", "--strict", str(CHART)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_operator_pod_is_restricted(helm: str) -> None:
    docs = render(helm)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert "--all-namespaces" in container["command"]


def test_watch_namespaces_value(helm: str) -> None:
    docs = render(helm, "--set", "watchNamespaces={team-a,team-b}")
    command = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--namespace=team-a" in command and "--namespace=team-b" in command
    assert "--all-namespaces" not in command


def test_schema_rejects_bad_values(helm: str) -> None:
    result = subprocess.run(
        [helm, "template", "x", str(CHART), "--set", "logLevel=LOUD"], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "logLevel" in result.stderr


def test_every_value_has_a_doc_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    checked = 0
    value_block: str | None = None  # indent of a documented value whose default is a mapping
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z]\w*):(.*)$", line)
        if not match:
            continue
        indent, value = match.group(1), match.group(3).strip()
        if value_block is not None and len(indent) > len(value_block):
            continue  # part of a documented default value (e.g. resources.requests.cpu)
        value_block = None
        is_parent = value == "" and i + 1 < len(lines) and re.match(rf"^{indent}  \S", lines[i + 1]) is not None
        comment: list[str] = []  # the comment block right above, which may continue over several lines
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#"):
            comment.insert(0, lines[j].strip())
            j -= 1
        documented = bool(comment) and comment[0].startswith("# --")
        if is_parent and not documented:
            continue  # a parent whose children carry the comments (e.g. image:)
        assert documented, f"values.yaml line {i + 1} ({line.strip()}) has no '# --' comment"
        checked += 1
        if is_parent:
            value_block = indent
    assert checked >= 15


def test_schema_lists_every_top_level_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(values) == set(schema["properties"])


def test_install_yaml_is_current(helm: str, tmp_path: Path) -> None:
    out = tmp_path / "install.yaml"
    env = {**os.environ, "ELASTICJOB_K8S_BIN": str(Path(helm).parent)}
    subprocess.run(["bash", str(ROOT / "hack" / "render-install.sh"), str(out)], check=True, env=env)
    assert out.read_text() == (ROOT / "manifests" / "install.yaml").read_text(), "run: make generate"


def test_names_labels_and_pull_secrets_are_configurable(helm: str) -> None:
    """The conventions of a good chart: nameOverride, fullnameOverride, commonLabels, imagePullSecrets."""
    default = render(helm)
    assert {d["metadata"]["name"] for d in default if d["kind"] == "Deployment"} == {"elasticjob-elasticjob-operator"}
    docs = render(helm, "--set", "fullnameOverride=ej", "--set", "commonLabels.team=ml",
                  "--set", "imagePullSecrets[0].name=regcred", "--set", "nameOverride=ejop")  # fmt: skip
    named = [d for d in docs if d["kind"] in ("Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    assert {d["metadata"]["name"] for d in named} == {"ej"}
    assert all(d["metadata"]["labels"]["team"] == "ml" for d in docs if d["kind"] != "CustomResourceDefinition")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] == "ejop"
    assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "ejop"


def test_leader_election_on_and_off(helm: str) -> None:
    """On (the default): the flags, the Lease Role limited to its name, rolling updates; off: none of it."""
    docs = render(helm)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--leader-elect" in container["command"]
    assert "--leader-elect-resource-name=elasticjob-elasticjob-operator" in container["command"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    role = next(d for d in docs if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == "elasticjob-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["elasticjob-elasticjob-operator"], "verbs": ["get", "update"]},
    ]  # fmt: skip
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]  # one replica: nothing to keep
    off = render(helm, "--set", "leaderElection.enabled=false")
    command = next(d for d in off if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert not [a for a in command if a.startswith("--leader-elect")]
    assert not [d for d in off if d["kind"] in ("Role", "RoleBinding")]
    assert next(d for d in off if d["kind"] == "Deployment")["spec"]["strategy"]["type"] == "Recreate"


def test_two_replicas_get_a_disruption_budget_and_need_the_election(helm: str) -> None:
    docs = render(helm, "--set", "replicaCount=2")
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "elasticjob-operator"
    assert not [d for d in render(helm, "--set", "replicaCount=2", "--set", "podDisruptionBudget.enabled=false")
                if d["kind"] == "PodDisruptionBudget"]  # fmt: skip
    result = subprocess.run(
        [helm, "template", "x", str(CHART), "--set", "replicaCount=2", "--set", "leaderElection.enabled=false"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "replicaCount" in result.stderr


def test_metrics_service_monitor_and_dashboard(helm: str) -> None:
    """On by default: the flag, the port, a Service and the dashboard; the ServiceMonitor when asked."""
    docs = render(helm)
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-bind-address=:8080" in container["command"]
    assert {"name": "metrics", "containerPort": 8080} in container["ports"]
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics"}]
    dashboard = next(d for d in docs if d["kind"] == "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["elasticjob.json"])["uid"] == "elasticjob-operator"
    assert not [d for d in docs if d["kind"] == "ServiceMonitor"]  # no CRD here, not asked
    asked = render(
        helm, "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=kps"
    )
    monitor = next(d for d in asked if d["kind"] == "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "30s"}]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    detected = render(helm, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    assert [d for d in detected if d["kind"] == "ServiceMonitor"]
    off = render(helm, "--set", "metrics.enabled=false")
    command = next(d for d in off if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--metrics-bind-address=0" in command
    assert not [d for d in off if d["kind"] in ("Service", "ConfigMap", "ServiceMonitor")]


def test_dashboard_queries_name_only_metrics_the_operator_serves() -> None:
    from elasticjob_operator.metrics import Metrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    served = {f.name + end for f in Metrics().registry.collect() for end in suffixes[f.type]}
    dashboard = json.loads((CHART / "dashboards" / "elasticjob.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = {name for e in exprs for name in re.findall(r"\b(elasticjob_\w+)", e)}
    assert named, exprs
    assert named <= served, named - served
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Jobs by phase", "Worker-group restarts", "Recoveries", "World size"} <= titles


def test_image_tag_defaults_to_the_app_version(helm: str) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]

    def image(*args: str) -> str:
        deployment = next(d for d in render(helm, *args) if d["kind"] == "Deployment")
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    assert image() == f"elasticjob-operator:{app_version}"
    assert image("--set", "image.tag=dev") == "elasticjob-operator:dev"


def test_store_network_policy_on_and_off(helm: str) -> None:
    """On (the default): the operator's flag and a create-only RBAC rule; off: the negated flag, no rule."""
    rule = {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create"]}

    def command_and_rules(*args: str) -> tuple[list[str], list[dict[str, Any]]]:
        docs = render(helm, *args)
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        role = next(d for d in docs if d["kind"] == "ClusterRole")
        return deployment["spec"]["template"]["spec"]["containers"][0]["command"], role["rules"]

    command, rules = command_and_rules()
    assert "--store-network-policy" in command and "--no-store-network-policy" not in command
    assert rule in rules
    assert [r for r in rules if "networkpolicies" in r["resources"]] == [rule]
    command, rules = command_and_rules("--set", "storeNetworkPolicy.enabled=false")
    assert "--no-store-network-policy" in command and "--store-network-policy" not in command
    assert not [r for r in rules if "networkpolicies" in r["resources"]]
    from elasticjob_operator.cli import build_parser

    assert build_parser().parse_args([]).store_network_policy is True  # the flag's default matches the chart's
