"""Kueue v0.17 on the local control plane (`elasticjob_localcluster.kueue`): the real manager, built
by hack/kueue/ensure.sh, runs as a pod, and the API server calls its webhooks through the webhook
Service's endpoints. A queued batch Job is suspended by the mutating webhook, admitted, run and
finished; a Job beyond the ClusterQueue's quota waits suspended."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticjob_localcluster import kueue
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.e2e.helpers import Kube, wait_for

GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"


@pytest.fixture(scope="module")
def kueue_installed(kube: Kube, local_cluster: Any) -> Iterator[None]:
    """Kueue installed (twice: the second call must find everything in place), removed after the module."""
    directory = kueue.ensure()

    def manager_pods() -> list[tuple[str, str]]:
        pods = kube.json("get", "pods", "-n", kueue.NAMESPACE)["items"]
        return sorted((p["metadata"]["uid"], p["spec"].get("nodeName", "")) for p in pods)

    # on a node that test_cluster's node loss leaves alone
    place = {"kubernetes.io/hostname": "node-1"}
    kueue.install(kube.kubeconfig, directory, kubectl=kube.bin_dir / "kubectl", node_selector=place)
    first = manager_pods()
    assert [node for _, node in first] == ["node-1"]
    kueue.install(kube.kubeconfig, directory, kubectl=kube.bin_dir / "kubectl", node_selector=place)
    assert manager_pods() == first, "a second install restarted the manager"
    yield
    kueue.uninstall(kube.kubeconfig, kubectl=kube.bin_dir / "kubectl")


class Objects:
    """Kueue's objects (v1beta2) and batch Jobs through the kubernetes client, as plain dicts."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api: Any = config.new_client_from_config(str(kubeconfig))  # type: ignore[no-untyped-call]
        self.custom, self.batch = client.CustomObjectsApi(self.api), client.BatchV1Api(self.api)

    def create(self, plural: str, body: dict[str, Any], ns: str | None = None) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", **body}
        if ns is None:
            self.custom.create_cluster_custom_object(GROUP, VERSION, plural, body)
        else:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_cluster_custom_object(GROUP, VERSION, plural, name)  # type: ignore[assignment]
        return found

    def list(self, plural: str, ns: str | None = None) -> list[dict[str, Any]]:
        if ns is None:
            found: Any = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
        else:
            found = self.custom.list_namespaced_custom_object(GROUP, VERSION, ns, plural)
        items: list[dict[str, Any]] = found["items"]
        return items

    def delete(self, plural: str, name: str, ns: str | None = None) -> None:
        try:
            if ns is None:
                self.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
            else:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def create_job(self, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.api.sanitize_for_serialization(self.batch.create_namespaced_job(ns, body))  # type: ignore[arg-type]
        return created

    def job(self, ns: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api.sanitize_for_serialization(self.batch.read_namespaced_job(name, ns))
        return found

    def delete_job(self, ns: str, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, ns, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The condition `kind` of `obj`, or {} when it has none."""
    found = [c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind]
    return dict(found[0]) if found else {}


def job(name: str, queue: str, cpu: str) -> dict[str, Any]:
    """A batch Job in `queue`, not suspended: Kueue's webhook is what must suspend it."""
    container = {
        "name": "main",
        "image": "none",
        "command": ["python", "-c", "print('admitted by kueue')"],
        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": queue}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [container]}
            },
        },
    }


def test_kueue_admits_a_queued_job_and_holds_one_beyond_quota(kueue_installed: None, kube: Kube, ns: str) -> None:
    k = Objects(kube.kubeconfig)
    suffix = uuid.uuid4().hex[:6]
    flavor, cq, lq = f"lc-flavor-{suffix}", f"lc-cq-{suffix}", "queue"

    def workload_of(job_name: str) -> dict[str, Any]:
        owned = [
            w
            for w in k.list("workloads", ns)
            if any(o["name"] == job_name for o in w["metadata"].get("ownerReferences", []))
        ]
        return owned[0] if owned else {}

    def story() -> str:
        logs = kube.run("logs", "-n", kueue.NAMESPACE, f"deployment/{kueue.DEPLOYMENT}", "--tail=40", check=False)
        workloads = [(w["metadata"]["name"], w.get("status")) for w in k.list("workloads", ns)]
        return f"workloads: {workloads}\nclusterqueue: {k.get('clusterqueues', cq).get('status')}\n{kube.story(ns)}\n--- kueue\n{logs.stdout}"

    k.create("resourceflavors", {"kind": "ResourceFlavor", "metadata": {"name": flavor}})
    quota = [{"name": "cpu", "nominalQuota": "1"}, {"name": "memory", "nominalQuota": "1Gi"}]
    groups = [{"coveredResources": ["cpu", "memory"], "flavors": [{"name": flavor, "resources": quota}]}]
    k.create(
        "clusterqueues",
        {"kind": "ClusterQueue", "metadata": {"name": cq}, "spec": {"namespaceSelector": {}, "resourceGroups": groups}},
    )
    k.create("localqueues", {"kind": "LocalQueue", "metadata": {"name": lq}, "spec": {"clusterQueue": cq}}, ns)
    try:
        wait_for(
            lambda: condition(k.get("clusterqueues", cq), "Active").get("status") == "True",
            30,
            "the ClusterQueue to be active",
            story,
        )
        small = k.create_job(ns, job("small", lq, "500m"))
        big = k.create_job(ns, job("big", lq, "2"))
        # created without `suspend`: Kueue's mutating webhook set it (the API server reached it)
        assert small["spec"]["suspend"] is True
        assert big["spec"]["suspend"] is True

        def admitted() -> dict[str, Any]:
            w = workload_of("small")
            return w if condition(w, "Admitted").get("status") == "True" else {}

        workload = wait_for(admitted, 30, "the small job's Workload to be admitted", story)
        assert workload["spec"]["queueName"] == lq
        assert workload["status"]["admission"]["clusterQueue"] == cq
        assert condition(workload, "QuotaReserved")["status"] == "True"

        wait_for(
            lambda: condition(k.job(ns, "small"), "Complete").get("status") == "True",
            45,
            "the small job to complete",
            story,
        )
        assert k.job(ns, "small")["spec"]["suspend"] is False
        wait_for(
            lambda: condition(workload_of("small"), "Finished").get("status") == "True",
            20,
            "the small Workload to finish",
            story,
        )

        def pending() -> dict[str, Any]:
            w = workload_of("big")
            return w if condition(w, "QuotaReserved").get("status") == "False" else {}

        workload = wait_for(pending, 20, "the big job's Workload to be pending", story)
        assert "admission" not in workload["status"]
        assert condition(workload, "QuotaReserved")["reason"] == "Pending"
        assert k.job(ns, "big")["spec"]["suspend"] is True
    finally:
        # while Kueue runs: it removes its finalizers (Workloads, the LocalQueue, ClusterQueue, flavor)
        for name in ("small", "big"):
            k.delete_job(ns, name)
        wait_for(lambda: not k.list("workloads", ns), 30, "the Workloads to be gone", story)
        k.delete("localqueues", lq, ns)
        k.delete("clusterqueues", cq)
        k.delete("resourceflavors", flavor)

        def gone() -> bool:
            left = k.list("clusterqueues") + k.list("resourceflavors") + k.list("localqueues", ns)
            return not [o for o in left if o["metadata"]["name"] in (cq, flavor, lq)]

        wait_for(gone, 30, "the queues and the flavor to be gone", story)


def test_an_image_runs_the_manager_under_the_restricted_profile(tmp_path: Path) -> None:
    """With `image=` (kind) the manager runs the image's /kueue, fit for PodSecurity's restricted
    profile, which its namespace enforces; without it, the host's binary (the local cluster)."""
    directory = tmp_path / "kueue-v0.17.0-0123abcd"
    (directory / "rbac").mkdir(parents=True)
    (directory / "webhook").mkdir()
    (directory / "webhook" / "manifests.yaml").write_text("")
    certs = {"ca.crt": b"ca", "tls.crt": b"crt", "tls.key": b"key"}

    def deployment_and_namespace(image: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        manager, _ = kueue.manifests(directory, certs, image=image)
        kinds = {d["kind"]: d for d in manager}
        return kinds["Deployment"]["spec"]["template"]["spec"], kinds["Namespace"]

    assert kueue.image_name(directory) == "elasticjob.local/kueue:v0.17.0"
    pod, namespace = deployment_and_namespace(kueue.image_name(directory))
    (container,) = pod["containers"]
    assert container["image"] == "elasticjob.local/kueue:v0.17.0" and container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"][0] == "/kueue"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert all(m["readOnly"] for m in container["volumeMounts"])
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"

    pod, namespace = deployment_and_namespace(None)
    (container,) = pod["containers"]
    assert container["command"][0] == str(directory / "kueue")
    assert "securityContext" not in pod and "securityContext" not in container
    assert "pod-security.kubernetes.io/enforce" not in namespace["metadata"]["labels"]
