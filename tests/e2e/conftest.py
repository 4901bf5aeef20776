"""Fixtures of the e2e suite: a cluster, the operator installed with helm, a namespace per test.

With ELASTICJOB_E2E_KUBECONFIG set the suite runs against that cluster (kind); otherwise it
starts the project's local control plane for the session and checks at the end that stopping it
left nothing behind. Only kubectl and helm talk to the cluster.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import REPO, Kube, wait_for

OPERATOR_NS = "elasticjob-system"


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    external = os.environ.get("ELASTICJOB_E2E_KUBECONFIG")
    if external:
        from elasticjob_localcluster.cluster import k8s_bin_dir

        yield Kube(Path(external), k8s_bin_dir())
        return
    from elasticjob_localcluster.cluster import Cluster

    cluster = Cluster(Path(os.environ.get("ELASTICJOB_E2E_CLUSTER_DIR", REPO / ".cluster-e2e")))
    cluster.start()
    assert cluster.bin is not None
    try:
        yield Kube(cluster.kubeconfig, cluster.bin, pod_logs=cluster.state / "pods")
    finally:
        cluster.stop()
    left = cluster.leftovers()
    assert not left, f"the local cluster left behind: {left}"


@pytest.fixture(scope="session")
def operator(kube: Kube) -> Kube:
    """The chart installed with `helm install` into a namespace that enforces `restricted`."""
    if kube.get("namespace", OPERATOR_NS, "default") is None:
        kube.run("create", "namespace", OPERATOR_NS)
    kube.run("label", "--overwrite", "namespace", OPERATOR_NS, "pod-security.kubernetes.io/enforce=restricted")
    values = os.environ.get("ELASTICJOB_E2E_HELM_ARGS", "").split()
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
