"""Fixtures of the e2e suite: the operator installed with helm, a namespace per test.

The cluster itself (`kube`) comes from tests/conftest.py. Only kubectl and helm talk to it.
On a kind cluster (`make e2e-kind`, docs/kind.md) ELASTICJOB_E2E_KUBECONFIG names its kubeconfig
and ELASTICJOB_E2E_KIND its name: nodes are then lost by killing their docker containers.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator

import pytest

from .helpers import REPO, Kube, wait_for

OPERATOR_NS = "elasticjob-system"


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("ELASTICJOB_E2E_KIND") and not os.environ.get("ELASTICJOB_E2E_KUBECONFIG"):
        raise pytest.UsageError("ELASTICJOB_E2E_KIND needs ELASTICJOB_E2E_KUBECONFIG (the kind cluster's kubeconfig)")


@pytest.fixture(scope="session")
def kube(kube: Kube) -> Kube:
    """tests/conftest.py's cluster; on kind (ELASTICJOB_E2E_KIND) it knows the kind cluster's name."""
    kind = os.environ.get("ELASTICJOB_E2E_KIND")
    return dataclasses.replace(kube, kind_cluster=kind) if kind else kube


@pytest.fixture(scope="session")
def operator(kube: Kube) -> Kube:
    """The chart installed with `helm install` into a namespace that enforces `restricted`."""
    if kube.get("namespace", OPERATOR_NS, "default") is None:
        kube.run("create", "namespace", OPERATOR_NS)
    kube.run("label", "--overwrite", "namespace", OPERATOR_NS, "pod-security.kubernetes.io/enforce=restricted")
    # pods of a lost node are replaced 10 s after it turns NotReady (chart default 30 s)
    # the images the suite builds are tagged `dev` (the chart's default tag is its appVersion)
    values = [
        "--set",
        "nodeLostGraceSeconds=10",
        "--set",
        "image.tag=dev",
        *os.environ.get("ELASTICJOB_E2E_HELM_ARGS", "").split(),
    ]
    kube.helm(
        "upgrade", "--install", "elasticjob", str(REPO / "charts" / "elasticjob-operator"), "-n", OPERATOR_NS,
        "--wait", "--timeout", "180s", *values,
    )  # fmt: skip
    wait_for(
        lambda: any(
            p["status"].get("phase") == "Running" for p in kube.json("get", "pods", "-n", OPERATOR_NS)["items"]
        ),
        120,
        "the operator pod to run",
        lambda: kube.story(OPERATOR_NS),
    )
    return kube


@pytest.fixture
def namespace(operator: Kube) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    operator.run("create", "namespace", name)
    yield name
    operator.run("delete", "namespace", name, "--wait=false", check=False)
