"""Every trainer command a torchrun or PyTorchJob user brings trains to completion, with one agent per pod.

The forms run as concurrent jobs, in two tests: the ones the image's PATH decides (also on kind),
and the rest. Each job's script
fails its first attempt on rank 0, so the status must show one restart counted by the launcher:
that is what a second agent, or stock torchrun in place of the launcher, would get wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml

from .helpers import REPO, Kube, job_manifests, phase, wait_for

pytestmark = pytest.mark.e2e

#: rank 0 fails its first attempt; then a few all-reduces; rank 0 writes the result as its termination message
FORM_SCRIPT = """\
import json, os, sys
import torch, torch.distributed as dist
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
restart = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
if rank == 0 and restart == 0:
    sys.exit(7)
t = torch.ones(1)
for _ in range(20):
    dist.all_reduce(t)
    t.fill_(1)
if rank == 0:
    result = {"worldSize": world, "restart": restart}
    open("/dev/termination-log", "w").write(json.dumps(result))
dist.destroy_process_group()
"""
ENTRYPOINT = """\
#!/bin/sh
# an image's entrypoint script: some setup, then torchrun
set -e
echo "entrypoint: starting"
torchrun --nproc-per-node 2 /opt/train/form.py
echo "entrypoint: done"
"""
SCRIPT = "/opt/train/form.py"
FORMS: dict[str, list[str]] = {
    "torchrun": ["torchrun", "--nproc-per-node", "2", SCRIPT],
    "module": ["python", "-m", "torch.distributed.run", "--nproc_per_node=2", SCRIPT],
    "module-u": ["python3", "-u", "-m", "torch.distributed.run", "--nproc-per-node", "2", SCRIPT],
    "shell": ["bash", "-c", f"echo wrapper && exec torchrun --nproc-per-node 2 {SCRIPT}"],
    "entrypoint": ["/opt/train/entrypoint.sh"],
    "python": ["python", SCRIPT],
    "launcher": ["elasticjob-launch", "--nproc-per-node", "2", SCRIPT],
}


def _form_job(name: str, command: list[str]) -> list[dict[str, Any]]:
    cm, job = job_manifests(name, replicas=1, max_replicas=1, command=command, spec={"cleanPodPolicy": "None"})
    cm["data"] = {"form.py": FORM_SCRIPT, "entrypoint.sh": ENTRYPOINT}
    volume = job["spec"]["template"]["spec"]["volumes"][0]
    volume["configMap"]["defaultMode"] = 0o755
    return [cm, job]


def _result(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    pod = kube.get("pod", f"{name}-worker-0", namespace) or {}
    for cs in pod.get("status", {}).get("containerStatuses", []):
        message = cs.get("state", {}).get("terminated", {}).get("message")
        if message:
            return dict(json.loads(message))
    raise AssertionError(f"{name}: no result\n{kube.story(namespace)}")


def _run_forms(kube: Kube, namespace: str, forms: list[str]) -> None:
    names = {form: f"form-{form}" for form in forms}
    for form in forms:
        kube.apply(_form_job(names[form], FORMS[form]), namespace)
    done = ("Succeeded", "Failed")
    wait_for(lambda: all(phase(kube, n, namespace) in done for n in names.values()), 240,
             f"the jobs of {', '.join(forms)} to finish", lambda: kube.story(namespace))  # fmt: skip
    for form, name in names.items():
        job = kube.get("ej", name, namespace) or {}
        status = job.get("status", {})
        assert status.get("phase") == "Succeeded", f"{form}\n{kube.story(namespace)}"
        assert status["rendezvous"]["worldSize"] == 2, form
        assert status["restarts"]["total"] == 1, (form, status["restarts"])
        assert status["restarts"]["workers"][f"{name}-worker-0"]["restarts"] == 1, form
        result = _result(kube, namespace, name)
        assert (result["worldSize"], result["restart"]) == (2, 1), (form, result)


@pytest.mark.kind("the image's PATH, shell and entry points decide what `torchrun` and an entrypoint script resolve to")
def test_torchrun_forms_in_the_training_image(operator: Kube, namespace: str) -> None:
    _run_forms(operator, namespace, ["torchrun", "shell", "entrypoint"])
    log = operator.pod_log(namespace, "form-entrypoint-worker-0")
    assert "entrypoint: done" in log and "[elasticjob-launch]" in log


def test_the_other_torchrun_forms(operator: Kube, namespace: str) -> None:
    _run_forms(operator, namespace, ["module", "module-u", "python", "launcher"])


def test_a_converted_pytorchjob_runs(operator: Kube, namespace: str) -> None:
    """`elasticjob convert` on a PyTorchJob (container `pytorch`, stock torchrun command) runs as it is."""
    cm, _ = job_manifests("converted", replicas=1)
    pytorchjob = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "converted"},
        "spec": {
            "elasticPolicy": {"rdzvBackend": "c10d", "minReplicas": 1, "maxReplicas": 2, "maxRestarts": 3},
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 2},
            "pytorchReplicaSpecs": {"Worker": {"replicas": 2, "restartPolicy": "OnFailure", "template": {"spec": {
                "containers": [{
                    "name": "pytorch", "image": "elasticjob-training:dev",
                    "command": ["torchrun", "--nproc-per-node", "1", "/opt/train/train.py", "--steps", "60"],
                    "env": [{"name": "CHECKPOINT_DIR", "value": "/tmp/ckpt"}],
                    "volumeMounts": [{"name": "script", "mountPath": "/opt/train"}],
                }],
                "volumes": [{"name": "script", "configMap": {"name": "converted-script"}}],
            }}}},
        },
    }  # fmt: skip
    converted = subprocess.run(
        [sys.executable, "-m", "elasticjob_api.cli", "convert", "-"], input=yaml.safe_dump(pytorchjob),
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    assert "restartPolicy OnFailure: dropped" in converted.stderr
    operator.apply([cm, yaml.safe_load(converted.stdout)], namespace)
    wait_for(lambda: phase(operator, "converted", namespace) in ("Succeeded", "Failed"), 180,
             "the converted job to finish", lambda: operator.story(namespace))  # fmt: skip
    job = operator.get("ej", "converted", namespace) or {}
    assert job["status"]["phase"] == "Succeeded", operator.story(namespace)
    assert job["status"]["rendezvous"]["worldSize"] == 2
    assert sorted(job["status"]["restarts"]["workers"]) == ["converted-worker-0", "converted-worker-1"]
