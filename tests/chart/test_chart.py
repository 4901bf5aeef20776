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
