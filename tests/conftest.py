"""Session fixtures shared by the e2e and local-cluster tests.

`kube` is the cluster the e2e suite runs on: the one in ELASTICJOB_E2E_KUBECONFIG (kind), or else
the project's local control plane, started once per session (`local_cluster`) and checked at the
end to have left nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import REPO, Kube


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every `kind` mark says in one line why a real kubelet changes that test's outcome."""
    for item in items:
        for mark in item.iter_markers("kind"):
            reason = mark.args[0] if mark.args else mark.kwargs.get("reason")
            if not isinstance(reason, str) or not reason.strip() or "\n" in reason:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.kind needs a one-line reason")
            if item.get_closest_marker("e2e") is None:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.kind is for e2e tests")


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[object]:
    from elasticjob_localcluster.cluster import Cluster

    cluster = Cluster(Path(os.environ.get("ELASTICJOB_E2E_CLUSTER_DIR", REPO / ".cluster-e2e")))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
    left = cluster.leftovers()
    assert not left, f"the local cluster left behind: {left}"


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest) -> Kube:
    external = os.environ.get("ELASTICJOB_E2E_KUBECONFIG")
    if external:
        from elasticjob_localcluster.cluster import k8s_bin_dir

        return Kube(Path(external), k8s_bin_dir())
    cluster = request.getfixturevalue("local_cluster")
    assert cluster.bin is not None
    return Kube(cluster.kubeconfig, cluster.bin, cluster_state=cluster.state)
