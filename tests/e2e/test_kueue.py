"""ElasticJobs behind a real Kueue (built from its Go module by hack/kueue/ensure.sh, installed once
per session with its webhooks): queueing on quota, preemption that suspends instead of failing,
and a LocalQueue that does not exist.

Each test makes its own ResourceFlavor, ClusterQueue (only its namespace) and LocalQueue. The
quotas count what the pods request: a worker 500m CPU and 1Gi, the store 100m and 128Mi.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .helpers import Kube, job_manifests, wait_for
from .test_faults import LAST_CALL, finish, start_steps, status, trained_some_steps

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.kind("Kueue's manager as a restricted container, its webhooks reached through kube-proxy"),
]
KUEUE = "kueue.x-k8s.io/v1beta2"
QUEUE = "queue"


@pytest.fixture(scope="module")
def kueue(operator: Kube) -> Iterator[Kube]:
    """A real Kueue in the cluster for this module, with its webhooks and ElasticJob as an external
    framework: built from its Go module (hack/kueue/ensure.sh, cached by version). On the local
    cluster the manager's pod runs that binary; on kind (ELASTICJOB_E2E_KIND) it runs the FROM
    scratch image of it (hack/kueue/image.sh) that hack/kind/e2e.sh loads into the workers. It is
    removed after the module: its pod webhook is mandatory in every namespace while it is
    installed, and the fault tests that follow lose nodes."""
    from elasticjob_localcluster import kueue as local_kueue

    if operator.cluster_state is None and operator.kind_cluster is None:
        raise pytest.UsageError("the suite installs Kueue on the local cluster and on kind only")
    kubectl = operator.bin_dir / "kubectl"
    directory = local_kueue.ensure()
    image = local_kueue.image_name(directory) if operator.kind_cluster is not None else None
    local_kueue.install(operator.kubeconfig, directory, kubectl=kubectl, image=image)
    yield operator
    local_kueue.uninstall(operator.kubeconfig, kubectl=kubectl)


def admitted(kube: Kube, name: str, namespace: str) -> dict[str, Any] | None:
    conds = status(kube, name, namespace).get("conditions") or []
    return next((c for c in conds if c["type"] == "Admitted"), None)


@pytest.fixture
def cluster_queue(kueue: Kube, namespace: str) -> Iterator[str]:
    """A flavor and a ClusterQueue of this test's own (cluster-scoped, deleted after), and the
    namespace's LocalQueue `queue`; the test sets the quota and preemption with `set_queue`."""
    name = f"cq-{uuid.uuid4().hex[:6]}"
    flavor = {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": name}, "spec": {}}
    kueue.apply([flavor], namespace)
    yield name
    # the jobs first (their Workloads hold the queues), while Kueue runs to take its finalizers off
    kueue.run("delete", "ej", "--all", "-n", namespace, "--timeout=60s")
    kueue.run("delete", "localqueue", QUEUE, "-n", namespace, "--ignore-not-found", "--timeout=60s")
    kueue.run("delete", "clusterqueue", name, "--timeout=60s")
    kueue.run("delete", "resourceflavor", name, "--timeout=60s")


def set_queue(kube: Kube, namespace: str, name: str, cpu: str, preemption: dict[str, Any] | None = None) -> None:
    quota = [{"name": "cpu", "nominalQuota": cpu}, {"name": "memory", "nominalQuota": "32Gi"}]
    spec: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [{"name": name, "resources": quota}]}],
    }
    if preemption:
        spec["preemption"] = preemption
    cq = {"apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": name}, "spec": spec}
    lq = {"apiVersion": KUEUE, "kind": "LocalQueue", "metadata": {"name": QUEUE}, "spec": {"clusterQueue": name}}
    kube.apply([cq, lq], namespace)


def queued_job(name: str, steps: int, labels: dict[str, str] | None = None, **kw: Any) -> list[dict[str, Any]]:
    objects = job_manifests(name, steps=steps, step_sleep=0.05, spec={**LAST_CALL, "nprocPerNode": 1}, **kw)
    objects[1]["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": QUEUE, **(labels or {})}
    return objects


def test_two_jobs_compete_for_a_queue_with_room_for_one(kueue: Kube, namespace: str, cluster_queue: str) -> None:
    set_queue(kueue, namespace, cluster_queue, cpu="1500m")  # one job: 2 x 500m + 100m
    kueue.apply(queued_job("first", 100), namespace)
    wait_for(lambda: (admitted(kueue, "first", namespace) or {}).get("status") == "True", 120,
             "first to be admitted", lambda: kueue.story(namespace))  # fmt: skip
    assert f"ClusterQueue {cluster_queue}" in admitted(kueue, "first", namespace)["message"]  # type: ignore[index]
    kueue.apply(queued_job("second", 100), namespace)

    def waits_for_quota() -> dict[str, Any] | None:
        cond = admitted(kueue, "second", namespace)
        return cond if cond and cond["status"] == "False" and "quota" in cond["message"] else None

    cond = wait_for(waits_for_quota, 60, "second to wait for quota", lambda: kueue.story(namespace))
    assert f"LocalQueue {QUEUE}" in cond["message"], cond
    st = status(kueue, "second", namespace)
    assert st["phase"] == "Queued" and not kueue.json("get", "pods", "-n", namespace, "-l",
                                                          "elasticjob.io/job-name=second")["items"]  # fmt: skip
    finish(kueue, namespace, "first", 2, 100)
    finish(kueue, namespace, "second", 2, 100)  # admitted once the first one's quota is released


def test_partial_admission_starts_with_what_fits_and_grows_when_quota_is_added(
    kueue: Kube, namespace: str, cluster_queue: str
) -> None:
    set_queue(kueue, namespace, cluster_queue, cpu="1100m")  # 2 workers + the store
    kueue.apply(queued_job("partial", 600, replicas=3, max_replicas=3), namespace)  # minReplicas 1
    wait_for(lambda: status(kueue, "partial", namespace).get("rendezvous", {}).get("worldSize") == 2, 180,
             "partial to train at world size 2", lambda: kueue.story(namespace))  # fmt: skip
    assert "2 of 3 workers" in (admitted(kueue, "partial", namespace) or {}).get("message", "")
    set_queue(kueue, namespace, cluster_queue, cpu="1600m")  # room for the third worker
    wait_for(lambda: status(kueue, "partial", namespace).get("rendezvous", {}).get("worldSize") == 3, 180,
             "partial to grow to world size 3", lambda: kueue.story(namespace))  # fmt: skip
    assert "3 of 3 workers" in (admitted(kueue, "partial", namespace) or {}).get("message", "")
    st = finish(kueue, namespace, "partial", 3, 600)
    assert st["replacements"] == 0, st


def test_kueue_preemption_suspends_the_job_and_it_resumes_from_its_checkpoint(
    kueue: Kube, namespace: str, cluster_queue: str, tmp_path: Path
) -> None:
    low, high = f"low-{uuid.uuid4().hex[:6]}", f"high-{uuid.uuid4().hex[:6]}"
    classes = [
        {"apiVersion": KUEUE, "kind": "WorkloadPriorityClass", "metadata": {"name": n}, "value": v}
        for n, v in ((low, 10), (high, 1000))
    ]
    kueue.apply(classes, namespace)
    try:
        set_queue(kueue, namespace, cluster_queue, cpu="1500m", preemption={"withinClusterQueue": "LowerPriority"})
        kueue.apply(queued_job("victim", 400, {"kueue.x-k8s.io/priority-class": low},
                               shared_checkpoints=tmp_path / "ckpt"), namespace)  # fmt: skip
        trained_some_steps(kueue, namespace, "victim")
        started = status(kueue, "victim", namespace)["startTime"]
        kueue.apply(queued_job("urgent", 60, {"kueue.x-k8s.io/priority-class": high}), namespace)

        def preempted() -> dict[str, Any] | None:
            st = status(kueue, "victim", namespace)
            cond = admitted(kueue, "victim", namespace) or {}
            return st if st.get("phase") == "Queued" and cond.get("reason") == "Preempted" else None

        st = wait_for(preempted, 90, "victim to be preempted and queue again", lambda: kueue.story(namespace))
        assert st["replacements"] == 0 and st.get("startTime") is None, st
        finish(kueue, namespace, "urgent", 2, 60)
        st = finish(kueue, namespace, "victim", 2, 400)
        assert st["replacements"] == 0, st
        assert st["startTime"] != started, (st["startTime"], started)  # reset on resume
        assert max(start_steps(kueue, namespace, "victim")) > 0  # resumed from its checkpoint, not from 0
    finally:
        kueue.run("delete", "workloadpriorityclass", low, high, "--wait=false", check=False)


def test_a_missing_local_queue_says_so_and_the_job_waits(kueue: Kube, namespace: str) -> None:
    objects = queued_job("lost", 10)
    objects[1]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "no-such-queue"
    kueue.apply(objects, namespace)

    def says_so() -> dict[str, Any] | None:
        cond = admitted(kueue, "lost", namespace)
        return cond if cond and "no-such-queue" in cond["message"] and "exist" in cond["message"] else None

    cond = wait_for(says_so, 60, "the job to say its LocalQueue is missing", lambda: kueue.story(namespace))
    assert cond["status"] == "False", cond
    assert status(kueue, "lost", namespace)["phase"] == "Queued"
