"""Builders against golden YAML files in tests/data/golden (ELASTICJOB_UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

from typing import Any

import pytest
from elasticjob_api.models import ElasticJob
from elasticjob_operator import builders

from .conftest import make_job
from .golden import check_golden


def test_worker_pod_golden(job_body: dict[str, Any]) -> None:
    check_golden("worker-pod.yaml", builders.build_worker_pod(ElasticJob.model_validate(job_body), 1))


def test_store_pod_golden(job_body: dict[str, Any]) -> None:
    check_golden("store-pod.yaml", builders.build_store_pod(ElasticJob.model_validate(job_body), 3))


def test_owned_objects_golden() -> None:
    job = ElasticJob.model_validate(make_job({"scheduling": {"gang": True, "schedulerName": "volcano"}}))
    check_golden("owned-objects.yaml", builders.build_owned_objects(job))


def test_gang_by_kube_scheduler_is_a_workload_the_workers_reference() -> None:
    job = ElasticJob.model_validate(make_job({"minReplicas": 2, "scheduling": {"gang": True}}))
    group = builders.build_pod_group(job)
    assert group is not None and (group["apiVersion"], group["kind"]) == ("scheduling.k8s.io/v1alpha1", "Workload")
    assert group["spec"]["podGroups"] == [{"name": "workers", "policy": {"gang": {"minCount": 2}}}]
    assert group["metadata"]["ownerReferences"][0]["kind"] == "ElasticJob"
    worker = builders.build_worker_pod(job, 1)
    assert worker["spec"]["workloadRef"] == {"name": group["metadata"]["name"], "podGroup": "workers"}
    assert "schedulerName" not in worker["spec"] and "workloadRef" not in builders.build_store_pod(job, 1)["spec"]


def test_pinned_guaranteed_worker_golden() -> None:
    job = ElasticJob.model_validate(make_job({"pinning": "exclusive", "guaranteedQos": True, "nprocPerNode": "auto"}))
    check_golden("worker-pod-pinned.yaml", builders.build_worker_pod(job, 0))


def test_user_env_cannot_override_launcher_env(job_body: dict[str, Any]) -> None:
    pod = builders.build_worker_pod(ElasticJob.model_validate(job_body), 0)
    env = pod["spec"]["containers"][0]["env"]
    nnodes = [e["value"] for e in env if e["name"] == "PET_NNODES"]
    assert nnodes == ["1:3"]
    assert {"name": "A", "value": "1"} in env


OPAQUE = ["elasticjob-launch", "--no-python", "--command-starts-agent", "auto"]


@pytest.mark.parametrize(
    ("command", "args", "expected", "expected_args"),
    [
        # torchrun, in every spelling, becomes the launcher with the same flags: one agent per pod
        (
            ["torchrun", "--nproc-per-node", "2", "t.py"],
            None,
            ["elasticjob-launch", "--nproc-per-node", "2", "t.py"],
            None,
        ),
        (["/opt/venv/bin/torchrun"], ["--standalone", "t.py"], ["elasticjob-launch"], ["--standalone", "t.py"]),
        (["python", "-m", "torch.distributed.run", "t.py"], None, ["elasticjob-launch", "t.py"], None),
        (
            ["python3", "-u", "-m", "torch.distributed.run"],
            ["--nnodes", "2", "t.py"],
            ["elasticjob-launch"],
            ["--nnodes", "2", "t.py"],
        ),
        (["python3"], ["-m", "torch.distributed.run", "-r", "3", "t.py"], ["elasticjob-launch"], ["-r", "3", "t.py"]),
        (["/usr/bin/elasticjob-launch", "t.py"], None, ["/usr/bin/elasticjob-launch", "t.py"], None),
        # python scripts and modules become the launcher's own target (preloaded worker starts)
        (["python", "train.py"], ["--lr", "1"], ["elasticjob-launch", "train.py"], ["--lr", "1"]),
        (["python3", "-u", "-m", "pkg.train", "--x"], None, ["elasticjob-launch", "-m", "pkg.train", "--x"], None),
        (["python"], ["train.py", "--lr", "1"], ["elasticjob-launch", "train.py"], ["--lr", "1"]),
        # anything else runs under --no-python; the launcher finds out whether it starts torchrun itself
        (
            ["/opt/venv/bin/python", "t.py"],
            None,
            [*OPAQUE, "/opt/venv/bin/python", "t.py"],
            None,
        ),
        (["python", "-O", "t.py"], None, [*OPAQUE, "python", "-O", "t.py"], None),
        (["python", "-c", "print(1)"], None, [*OPAQUE, "python", "-c", "print(1)"], None),
        (["bash", "-c", "python t.py"], None, [*OPAQUE, "bash", "-c", "python t.py"], None),
        (["bash", "-c", "exec torchrun t.py"], None, [*OPAQUE, "bash", "-c", "exec torchrun t.py"], None),
        (["/entrypoint.sh"], ["t.py"], [*OPAQUE, "/entrypoint.sh"], ["t.py"]),
    ],
)
def test_launcher_command(
    command: list[str], args: list[str] | None, expected: list[str], expected_args: list[str] | None
) -> None:
    job = make_job()
    job["spec"]["template"]["spec"]["containers"][0]["command"] = command
    job["spec"]["template"]["spec"]["containers"][0]["args"] = args
    pod = builders.build_worker_pod(ElasticJob.model_validate(job), 0)
    container = pod["spec"]["containers"][0]
    assert (container["command"], container.get("args")) == (expected, expected_args)


def test_trainer_without_command_is_a_build_error() -> None:
    job = make_job()
    del job["spec"]["template"]["spec"]["containers"][0]["command"]
    del job["spec"]["template"]["spec"]["containers"][0]["args"]
    with pytest.raises(builders.BuildError, match="needs a command"):
        builders.build_worker_pod(ElasticJob.model_validate(job), 0)


def test_nproc_auto_counts_gpus() -> None:
    job = make_job({"nprocPerNode": "auto"})
    job["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 4}}
    assert builders.resolve_nproc(ElasticJob.model_validate(job)) == 4
    assert builders.resolve_nproc(ElasticJob.model_validate(make_job({"nprocPerNode": "auto"}))) == 1


def test_guaranteed_qos_needs_cpu_and_memory() -> None:
    job = make_job({"pinning": "node", "guaranteedQos": True})
    job["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
    with pytest.raises(builders.BuildError, match="cpu and memory"):
        builders.build_worker_pod(ElasticJob.model_validate(job), 0)


def test_store_pod_keeps_node_affinity_but_not_the_workers_pod_anti_affinity(job_body: dict[str, Any]) -> None:
    node_affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["train"]}]}]
        }
    }
    spread = {
        "labelSelector": {"matchLabels": {"elasticjob.io/job-name": "mnist"}},
        "topologyKey": "kubernetes.io/hostname",
    }
    job_body["spec"]["template"]["spec"]["affinity"] = {
        "nodeAffinity": node_affinity,
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [spread]},
    }
    job = ElasticJob.model_validate(job_body)
    assert builders.build_store_pod(job, 1)["spec"]["affinity"] == {"nodeAffinity": node_affinity}
    assert "podAntiAffinity" in builders.build_worker_pod(job, 0)["spec"]["affinity"]


def test_pytorchjob_container_name_is_the_trainer() -> None:
    """A PyTorchJob's template (container `pytorch`) works unchanged; `trainer` wins if both exist."""
    job = make_job()
    job["spec"]["template"]["spec"]["containers"][0]["name"] = "pytorch"
    pod = builders.build_worker_pod(ElasticJob.model_validate(job), 0)
    assert pod["spec"]["containers"][0]["command"][0] == "elasticjob-launch"
    job["spec"]["template"]["spec"]["containers"].append(
        {"name": "trainer", "image": "x", "command": ["python", "t.py"]}
    )
    pod = builders.build_worker_pod(ElasticJob.model_validate(job), 0)
    assert [c["command"][0] for c in pod["spec"]["containers"]] == ["python", "sleep", "elasticjob-launch"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes' label selector semantics for `matchLabels` (every pair present); the only form the
    builders write, so anything else fails the test rather than being misread."""
    assert set(selector) == {"matchLabels"}, selector
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def _labels(manifest: dict[str, Any]) -> dict[str, str]:
    return dict(manifest["metadata"]["labels"])


def test_store_network_policy_golden(job_body: dict[str, Any]) -> None:
    check_golden("store-network-policy.yaml", builders.build_store_network_policy(ElasticJob.model_validate(job_body)))


def test_store_network_policy_selects_every_store_generation_and_no_worker(job_body: dict[str, Any]) -> None:
    job = ElasticJob.model_validate(job_body)
    policy = builders.build_store_network_policy(job)
    assert policy["metadata"]["name"] == builders.build_store_service(job)["metadata"]["name"] == "mnist-rdzv"
    assert policy["metadata"]["namespace"] == "team-a"
    assert policy["metadata"]["ownerReferences"] == builders.build_store_service(job)["metadata"]["ownerReferences"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    for generation in (0, 1, 7):
        assert _selects(policy["spec"]["podSelector"], _labels(builders.build_store_pod(job, generation)))
    for index in (0, 2):
        assert not _selects(policy["spec"]["podSelector"], _labels(builders.build_worker_pod(job, index)))
    other = ElasticJob.model_validate({**job_body, "metadata": {**job_body["metadata"], "name": "other"}})
    assert not _selects(policy["spec"]["podSelector"], _labels(builders.build_store_pod(other, 1)))


def test_store_network_policy_admits_this_jobs_workers_only_on_the_store_port() -> None:
    body = make_job({"rendezvous": {"port": 29555}})
    job = ElasticJob.model_validate(body)
    other = make_job({"rendezvous": {"port": 29555}})
    other["metadata"].update(name="other", uid="9")
    # another job whose template claims this job's name: the builder's own labels win
    other["spec"]["template"]["metadata"]["labels"]["elasticjob.io/job-name"] = "mnist"
    other_job = ElasticJob.model_validate(other)
    [rule] = builders.build_store_network_policy(job)["spec"]["ingress"]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}  # no namespaceSelector, no ipBlock: this namespace's pods only
    for index in (0, 2):
        assert _selects(peer["podSelector"], _labels(builders.build_worker_pod(job, index)))
    assert not _selects(peer["podSelector"], _labels(builders.build_worker_pod(other_job, 0)))
    assert not _selects(peer["podSelector"], _labels(builders.build_store_pod(job, 1)))
    store_ports = builders.build_store_pod(job, 1)["spec"]["containers"][0]["ports"]
    c10d = next(p for p in store_ports if p["name"] == "c10d")
    assert rule["ports"] == [{"protocol": "TCP", "port": c10d["containerPort"]}]
    assert c10d["containerPort"] == 29555  # the health port gets no rule: only the kubelet probes it


def test_owned_objects_have_the_network_policy_only_when_asked() -> None:
    job = ElasticJob.model_validate(make_job())
    kinds = [o["kind"] for o in builders.build_owned_objects(job)]
    assert "NetworkPolicy" not in kinds
    assert "NetworkPolicy" not in [o["kind"] for o in builders.build_owned_objects(job, store_network_policy=False)]
    owned = builders.build_owned_objects(job, store_network_policy=True)
    assert [o for o in owned if o["kind"] == "NetworkPolicy"] == [builders.build_store_network_policy(job)]
    assert len(owned) == len(kinds) + 1
