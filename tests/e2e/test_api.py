"""The API as users meet it: validation at apply, printer columns, scale, garbage collection, RBAC."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import OPERATOR_NS
from .helpers import Kube, job_manifests, phase, wait_for

pytestmark = pytest.mark.e2e


def invalid(spec: dict[str, Any], name: str = "bad") -> list[dict[str, Any]]:
    job = job_manifests(name)[1]
    job["spec"].update(spec)
    return [job]


INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "min > max": (
        {"minReplicas": 3, "maxReplicas": 2, "replicas": 2},
        "minReplicas must be less than or equal to maxReplicas",
    ),
    "replicas out of range": ({"replicas": 5}, "replicas must be between minReplicas and maxReplicas"),
    "nproc < 1": ({"nprocPerNode": 0}, "nprocPerNode must be an integer >= 1 or the string 'auto'"),
    "unknown pinning": ({"pinning": "magic"}, 'Unsupported value: "magic"'),
    "bad port": ({"rendezvous": {"port": 70000}}, "should be less than or equal to 65535"),
    "no trainer": (
        {"template": {"spec": {"containers": [{"name": "main", "image": "x", "command": ["true"]}]}}},
        "must include a container named 'trainer'",
    ),
    "rule with two matches": (
        {
            "failurePolicy": {
                "rules": [
                    {"failureClass": "UserError", "action": "Fail", "onExitCodes": {"operator": "In", "values": [42]}}
                ]
            }
        },
        "a failure rule needs exactly one of failureClass and onExitCodes",
    ),
    "exit code 0 with In": (
        {"failurePolicy": {"rules": [{"onExitCodes": {"operator": "In", "values": [0]}, "action": "Fail"}]}},
        "onExitCodes with operator In cannot list 0",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_specs_are_rejected_with_the_rule_message(operator: Kube, namespace: str, case: str) -> None:
    spec, message = INVALID[case]
    result = operator.apply(invalid(spec), namespace, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert operator.get("ej", "bad", namespace) is None


def test_gang_without_a_gang_scheduler_says_so_on_the_job(operator: Kube, namespace: str) -> None:
    """No PodGroup API here (no Volcano): the job carries a condition instead of a log line."""
    job = job_manifests("gang")
    job[1]["spec"]["scheduling"] = {"gang": True, "schedulerName": "volcano"}
    operator.apply(job, namespace)

    def condition() -> dict[str, Any] | None:
        conds = ((operator.get("ej", "gang", namespace) or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "GangScheduling"), None)

    cond = wait_for(condition, 60, "the GangScheduling condition", lambda: operator.story(namespace))
    assert cond["status"] == "False" and cond["reason"] == "GangSchedulerMissing", cond
    assert "scheduling.volcano.sh/v1beta1 PodGroup is not installed" in cond["message"], cond
    assert "'volcano'" in cond["message"]


def test_a_queue_label_without_kueue_waits_and_says_so(operator: Kube, namespace: str) -> None:
    """Before the suite installs Kueue (test_kueue.py runs after this file, in a fresh cluster):
    the job neither runs unqueued nor fails; it waits and says what is missing."""
    crd = operator.run("get", "crd", "workloads.kueue.x-k8s.io", check=False)
    assert crd.returncode != 0, "Kueue's CRDs are in this cluster: this test needs a cluster without Kueue"
    job = job_manifests("nokueue")
    job[1]["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "queue"}
    operator.apply(job, namespace)

    def condition() -> dict[str, Any] | None:
        conds = ((operator.get("ej", "nokueue", namespace) or {}).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Admitted" and c.get("reason") == "KueueNotInstalled"), None)

    cond = wait_for(condition, 60, "the Admitted condition", lambda: operator.story(namespace))
    assert cond["status"] == "False" and "kueue.x-k8s.io/v1beta2 Workload is not installed" in cond["message"], cond
    assert "ElasticJob.v1alpha1.elasticjob.io" in cond["message"], cond
    st = operator.get("ej", "nokueue", namespace) or {}
    assert st["status"]["phase"] == "Queued", st["status"]
    assert not operator.json("get", "pods", "-n", namespace, "-l", "elasticjob.io/job-name=nokueue")["items"]


def test_long_name_is_rejected(operator: Kube, namespace: str) -> None:
    result = operator.apply(invalid({}, name="x" * 41), namespace, check=False)
    assert result.returncode != 0 and "at most 40 characters" in result.stderr


def test_printer_columns_and_scale_subresource(operator: Kube, namespace: str) -> None:
    operator.apply(job_manifests("cols", replicas=2, max_replicas=3, steps=100000, step_sleep=0.05), namespace)
    wait_for(
        lambda: (operator.get("ej", "cols", namespace) or {}).get("status", {}).get("rendezvous", {}).get("worldSize") == 4,
        180, "world size 4", lambda: operator.story(namespace),
    )  # fmt: skip
    table = json.loads(
        operator.run(
            "get",
            "--raw",
            f"/apis/elasticjob.io/v1alpha1/namespaces/{namespace}/elasticjobs?includeObject=None",
        ).stdout
    )
    assert table["kind"] == "ElasticJobList"  # the raw list; columns come from the CRD's table conversion:
    columns = operator.json("get", "crd", "elasticjobs.elasticjob.io")["spec"]["versions"][0][
        "additionalPrinterColumns"
    ]
    assert [c["name"] for c in columns] == ["Phase", "Replicas", "World", "Restarts", "Age"]
    row = operator.run("get", "ej", "cols", "-n", namespace, "-o", "custom-columns=" + ",".join(
        f"{c['name']}:{c['jsonPath']}" for c in columns[:4])).stdout.splitlines()[1].split()  # fmt: skip
    assert row == ["Running", "2", "4", "0"]

    operator.run("scale", "ej", "cols", "-n", namespace, "--replicas=1")
    assert operator.get("ej", "cols", namespace)["spec"]["replicas"] == 1  # type: ignore[index]
    scale = operator.json("get", "--subresource=scale", "ej", "cols", "-n", namespace)
    assert scale["spec"]["replicas"] == 1
    assert scale["status"]["selector"] == "elasticjob.io/job-name=cols,elasticjob.io/role=worker"
    too_many = operator.run("scale", "ej", "cols", "-n", namespace, "--replicas=9", check=False)
    assert too_many.returncode != 0 and "replicas must be between" in too_many.stderr
    wait_for(
        lambda: (operator.get("ej", "cols", namespace) or {}).get("status", {}).get("replicas") == 1,
        120, "scale-down to 1 worker", lambda: operator.story(namespace),
    )  # fmt: skip


def test_deleting_a_job_removes_what_it_owns(operator: Kube, namespace: str) -> None:
    operator.apply(job_manifests("gc", steps=100000, step_sleep=0.05), namespace)
    wait_for(
        lambda: len(operator.json("get", "pods", "-n", namespace, "-l", "elasticjob.io/job-name=gc")["items"]) == 3,
        120, "store and worker pods", lambda: operator.story(namespace),
    )  # fmt: skip
    owned = ("service/gc-rdzv", "networkpolicy/gc-rdzv", "serviceaccount/gc-elasticjob", "role/gc-elasticjob",
             "rolebinding/gc-elasticjob")  # fmt: skip
    for kind in owned:
        operator.run("get", kind, "-n", namespace)
    operator.run("delete", "ej", "gc", "-n", namespace, "--wait=false")

    def gone() -> bool:
        left = operator.json("get", "pods,services,networkpolicies,serviceaccounts,roles,rolebindings", "-n", namespace,
                             "-l", "elasticjob.io/job-name=gc")["items"]  # fmt: skip
        return not left

    wait_for(gone, 120, "the garbage collector to remove the job's objects", lambda: operator.story(namespace))


@pytest.mark.kind("the service-account token is projected into the container by a real kubelet")
def test_job_credentials_may_patch_only_their_own_job(operator: Kube, namespace: str, tmp_path: Path) -> None:
    for name in ("mine", "other"):
        operator.apply(job_manifests(name, replicas=1, steps=100000, step_sleep=0.05), namespace)
    wait_for(
        lambda: operator.get("rolebinding", "mine-elasticjob", namespace),
        120,
        "RBAC",
        lambda: operator.story(namespace),
    )
    token = operator.run("create", "token", "mine-elasticjob", "-n", namespace).stdout.strip()
    as_job = operator.with_token(token, tmp_path / "kubeconfig")
    patch = json.dumps({"status": {"restarts": {"workers": {"probe": {"restarts": 0}}}}})

    def patch_as_job(job: str) -> Any:
        return as_job.run(
            "patch", "ej", job, "-n", namespace, "--subresource=status",
            "--type=merge", "-p", patch, check=False,
        )  # fmt: skip

    assert patch_as_job("mine").returncode == 0
    denied = patch_as_job("other")
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    spec_patch = as_job.run(
        "patch", "ej", "mine", "-n", namespace, "--type=merge",
        "-p", '{"spec": {"replicas": 1}}', check=False,
    )  # fmt: skip
    assert spec_patch.returncode != 0 and "forbidden" in spec_patch.stderr.lower()


STORE_PROBE = """
import socket
for target in ("mine-rdzv", "other-rdzv"):
    try:
        socket.create_connection((target, 29400), timeout=3).close()
        result = "connected"
    except socket.timeout:
        result = "timeout"
    except OSError as exc:
        result = type(exc).__name__
    print("probe", target, result, flush=True)
"""


def probed(log: str) -> dict[str, str]:
    return dict(re.findall(r"probe (\S+) (\S+)", log))


@pytest.mark.kind("enforced by kind-netpol on real node networking: bridged, routed and Service-DNATed traffic")
def test_a_jobs_store_admits_only_its_own_workers(operator: Kube, namespace: str) -> None:
    """Each job's NetworkPolicy (docs/security.md): another job's worker and an unlabelled pod cannot
    open a job's store port; its own workers rendezvous through it. Enforced by the local cluster
    and, on kind, by kind-netpol (hack/kind/cni/kind-netpol), both with localcluster/netpol.py."""
    mine = job_manifests("mine", replicas=1, steps=100000, step_sleep=0.05)
    operator.apply(mine, namespace)
    # kind-netpol follows the API by a poll (2 s, more on a loaded machine): the probe of mine's store
    # must come after its store pod (a new IP) is in the rules, so mine runs before the other starts
    wait_for(lambda: phase(operator, "mine", namespace) == "Running", 180, "mine running",
             lambda: operator.story(namespace))  # fmt: skip
    # the other job's worker probes both stores, then trains: its own store must admit it
    wrapper = ["sh", "-c", 'python -c "$STORE_PROBE" && exec python /opt/train/train.py --steps 100000']
    other = job_manifests("other", replicas=1, command=wrapper, step_sleep=0.05)
    other[1]["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "STORE_PROBE", "value": STORE_PROBE})
    operator.apply(other, namespace)
    wait_for(
        lambda: phase(operator, "mine", namespace) == phase(operator, "other", namespace) == "Running",
        180, "both running: each worker reached its own store past the policies", lambda: operator.story(namespace),
    )  # fmt: skip
    policy = operator.json("get", "networkpolicy", "mine-rdzv", "-n", namespace)
    assert policy["metadata"]["ownerReferences"][0]["name"] == "mine"
    seen = wait_for(
        lambda: len(got := probed(operator.pod_log(namespace, "other-worker-0"))) == 2 and got,
        60, "the other job's probes", lambda: operator.story(namespace),
    )  # fmt: skip
    assert seen == {"mine-rdzv": "timeout", "other-rdzv": "connected"}
    image = mine[1]["spec"]["template"]["spec"]["containers"][0]["image"]  # the one kind's nodes hold
    stranger = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stranger"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "probe", "image": image, "command": ["python", "-c", STORE_PROBE]}]},
    }  # fmt: skip
    operator.apply([stranger], namespace)
    wait_for(
        lambda: ((operator.get("pod", "stranger", namespace) or {}).get("status") or {}).get("phase") == "Succeeded",
        90, "the stranger's probe", lambda: operator.story(namespace),
    )  # fmt: skip
    log = operator.pod_log(namespace, "stranger", container="probe")
    assert probed(log) == {"mine-rdzv": "timeout", "other-rdzv": "timeout"}


@pytest.mark.kind("runAsNonRoot and the read-only root filesystem are enforced by a real kubelet and runc")
def test_operator_runs_in_a_restricted_namespace(operator: Kube) -> None:
    ns = operator.json("get", "namespace", OPERATOR_NS)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = operator.json("get", "pods", "-n", OPERATOR_NS)["items"]
    assert [p["status"]["phase"] for p in pods] == ["Running"]


def _with_old_trainer_rule(node: Any) -> bool:
    """Turn the CRD's trainer rule back into its older form (only `trainer`); True if found."""
    if isinstance(node, dict):
        if "pytorch" in str(node.get("rule", "")):
            node["rule"] = "self.containers.exists(c, c.name == 'trainer')"
            return True
        return any(_with_old_trainer_rule(v) for v in node.values())
    return isinstance(node, list) and any(_with_old_trainer_rule(v) for v in node)


def test_crd_upgrade_with_server_side_apply(operator: Kube, namespace: str) -> None:
    """`helm upgrade` never updates crds/: `kubectl apply --server-side --force-conflicts` does (docs/upgrading.md).

    An older CRD (before a PyTorchJob's `pytorch` container was accepted) is put in place the way
    Helm's first install leaves it, then the repository's CRD is applied server-side over it.
    """
    crd_path = Path(__file__).resolve().parents[2] / "manifests" / "crds" / "elasticjob.io_elasticjobs.yaml"
    old = yaml.safe_load(crd_path.read_text())
    assert _with_old_trainer_rule(old)
    job = job_manifests("kubeflow-shaped", replicas=1)[1]
    job["spec"]["template"]["spec"]["containers"][0]["name"] = "pytorch"
    try:
        operator.run("replace", "-f", "-", input=yaml.safe_dump(old))
        wait_for(lambda: "named 'trainer'" in operator.apply([job], namespace, check=False).stderr, 30,
                 "the older CRD to reject the pytorch container", lambda: "")  # fmt: skip
    finally:
        upgrade = operator.run("apply", "--server-side", "--force-conflicts", "-f", str(crd_path))
    assert "serverside-applied" in upgrade.stdout
    wait_for(lambda: operator.apply([job], namespace, check=False).returncode == 0, 30,
             "the upgraded CRD to accept the pytorch container", lambda: operator.story(namespace))  # fmt: skip
    operator.run("delete", "ej", "kubeflow-shaped", "-n", namespace, "--wait=false")
