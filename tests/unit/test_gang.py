"""A gang job's group follows its spec: minMember/minResources of a PodGroup, minCount of a Workload (no cluster).

kube-scheduler's Workload is replaced for real in tests/e2e/test_gang.py. A PodGroup's merge
patch needs Volcano's or scheduler-plugins' CRD, neither of which this project can build (their
modules are not served here), so `sync` is driven here through a recording client: the one
fault that cannot be produced for real is their absence.
"""

from __future__ import annotations

from typing import Any

from elasticjob_api.models import ElasticJob
from elasticjob_operator import builders, gang

from .conftest import make_job


def job(min_replicas: int = 2, scheduler: str | None = "volcano", status: dict[str, Any] | None = None) -> ElasticJob:
    scheduling: dict[str, Any] = {"gang": True, **({"schedulerName": scheduler} if scheduler else {})}
    body = make_job({"minReplicas": min_replicas, "replicas": 3, "scheduling": scheduling}, status)
    body["metadata"]["generation"] = 3
    return ElasticJob.model_validate(body)


def test_min_resources_are_what_min_replicas_workers_request_together() -> None:
    # the trainer asks 1500m and 1Gi (the sidecar nothing); the launcher adds no requests
    group = builders.build_pod_group(job(min_replicas=3))
    assert group is not None and group["spec"] == {"minMember": 3, "minResources": {"cpu": "4500m", "memory": "3Gi"}}


def test_pod_requests_default_to_limits_and_an_init_container_may_be_the_most() -> None:
    pod = {"spec": {
        "containers": [{"resources": {"limits": {"cpu": "2", "nvidia.com/gpu": "1"}}},
                       {"resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "4"}}}],
    }}  # fmt: skip
    requests = builders.pod_requests(pod)
    assert {k: builders.format_quantity(v) for k, v in requests.items()} == {"cpu": "4", "nvidia.com/gpu": "1"}


def test_a_podgroup_is_patched_and_a_workload_replaced_when_min_replicas_changes() -> None:
    old, new = builders.build_pod_group(job(2)), builders.build_pod_group(job(3))
    assert old is not None and new is not None
    assert gang.update(old, old) is None
    change = gang.update(old, new)
    assert change == gang.Update(patch={"spec": {"minMember": 3, "minResources": new["spec"]["minResources"]}})
    old_wl, new_wl = builders.build_pod_group(job(2, None)), builders.build_pod_group(job(3, None))
    assert old_wl is not None and new_wl is not None
    assert gang.update(old_wl, new_wl) == gang.Update(replace=True)
    # what the API server adds (status, uid, defaults elsewhere) is not a difference
    served = {**old_wl, "metadata": {**old_wl["metadata"], "uid": "u1"}, "status": {}}
    assert gang.update(served, old_wl) is None


def test_the_group_is_looked_at_on_creates_spec_changes_and_until_it_is_there() -> None:
    settled = {"observedGeneration": 3, "conditions": [{"type": "GangScheduling", "status": "True"}]}
    assert not gang.needs_sync(job(status=settled), creating=False, phase="Running")
    assert gang.needs_sync(job(status=settled), creating=True, phase="Running")
    assert gang.needs_sync(job(status={**settled, "observedGeneration": 2}), creating=False, phase="Running")
    missing = {**settled, "conditions": [{"type": "GangScheduling", "status": "False"}]}
    assert gang.needs_sync(job(status=missing), creating=False, phase="Running")
    assert not gang.needs_sync(job(status=missing), creating=True, phase="Queued")
    assert not gang.needs_sync(job(status=missing), creating=False, phase=None)  # finished: no phase planned


class Recorder:
    """The calls gang.sync makes, against a dict of objects (see the module docstring)."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.calls: list[tuple[str, Any]] = []

    def get_optional(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        return self.objects.get(name)

    def create(self, manifest: dict[str, Any]) -> bool:
        self.calls.append(("create", manifest["spec"]))
        return manifest["metadata"]["name"] not in self.objects

    def create_optional(self, manifest: dict[str, Any]) -> str | None:
        self.create(manifest)
        return None

    def delete_object(self, manifest: dict[str, Any]) -> None:
        self.calls.append(("delete", manifest["metadata"]["name"]))
        self.objects.pop(manifest["metadata"]["name"])

    def merge_patch(self, manifest: dict[str, Any], body: dict[str, Any]) -> bool:
        self.calls.append(("patch", body))
        return True


def test_sync_creates_patches_or_replaces() -> None:
    first = Recorder({})
    assert gang.sync(first, job(2)) == gang.Outcome("created")
    old = builders.build_pod_group(job(2))
    assert old is not None
    patched = Recorder({"mnist-workers": old})
    assert gang.sync(patched, job(3)) == gang.Outcome("updated")
    assert patched.calls == [("patch", {"spec": {"minMember": 3, "minResources": {"cpu": "4500m", "memory": "3Gi"}}})]
    workload = builders.build_pod_group(job(2, None))
    assert workload is not None
    replaced = Recorder({"mnist-workers": workload})
    assert gang.sync(replaced, job(1, None)) == gang.Outcome("replaced")
    assert [c[0] for c in replaced.calls] == ["delete", "create"]
    assert replaced.calls[1][1]["podGroups"][0]["policy"]["gang"]["minCount"] == 1
    unchanged = Recorder({"mnist-workers": workload})
    assert gang.sync(unchanged, job(2, None)) == gang.Outcome() and unchanged.calls == []
