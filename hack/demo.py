"""`make demo`: the local control plane, the operator from its Helm chart, and the CPU example.

Builds (or reuses) the Go binaries, starts the local cluster unless it already runs, installs the
chart with `helm upgrade --install`, applies manifests/examples/synthetic-cpu.yaml and prints the
job's phase, world size, restarts and training step until it is done. The cluster stays up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from elasticjob_localcluster import procs
from elasticjob_localcluster.cluster import Cluster, k8s_bin_dir

REPO = Path(__file__).resolve().parents[1]
NS = "elasticjob-demo"


def main() -> int:
    cluster = Cluster()
    if "kube-apiserver" in procs.running(cluster.state):
        print(f"reusing the local cluster in {cluster.state}")
    else:
        print("starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, 3 nodes)...")
        print(f"(a new machine first builds them from Go source, once, about 12 minutes on 2 cores; cached in "
              f"{os.environ.get('ELASTICJOB_CACHE', '~/.cache/elasticjob')}/bin)", flush=True)  # fmt: skip
        cluster.start()
    bin_dir = cluster.bin or k8s_bin_dir()
    kubeconfig = str(cluster.kubeconfig)

    def kubectl(*args: str, check: bool = True) -> str:
        return subprocess.run([str(bin_dir / "kubectl"), f"--kubeconfig={kubeconfig}", *args],
                              check=check, capture_output=True, text=True).stdout  # fmt: skip

    for ns in ("elasticjob-system", NS):
        kubectl("create", "namespace", ns, check=False)
    kubectl("label", "--overwrite", "namespace", "elasticjob-system", "pod-security.kubernetes.io/enforce=restricted")
    print("helm install elasticjob charts/elasticjob-operator -n elasticjob-system")
    subprocess.run([str(bin_dir / "helm"), f"--kubeconfig={kubeconfig}", "upgrade", "--install", "elasticjob",
                    str(REPO / "charts/elasticjob-operator"), "-n", "elasticjob-system", "--wait", "--timeout", "180s"],
                   check=True, capture_output=True)  # fmt: skip
    kubectl("delete", "ej", "synthetic", "-n", NS, "--ignore-not-found", "--wait=true")
    print(kubectl("apply", "-n", NS, "-f", str(REPO / "manifests/examples/synthetic-cpu.yaml")).strip())
    deadline, last = time.monotonic() + 600, ""
    phase = ""
    while time.monotonic() < deadline:
        job = json.loads(kubectl("get", "ej", "synthetic", "-n", NS, "-o", "json"))
        status = job.get("status", {})
        phase = status.get("phase", "")
        # rank 0 prints the step, and it runs in whichever worker pod the rendezvous made node 0
        pods = kubectl("get", "pods", "-n", NS, "-l", "elasticjob.io/job-name=synthetic", "-o", "name").split()
        logs = [kubectl("logs", "-n", NS, pod, "-c", "trainer", check=False) for pod in pods if "-worker-" in pod]
        steps = [int(n) for log in logs for n in re.findall(r"step (\d+) loss", log)]
        world = status.get("rendezvous", {}).get("worldSize") or "-"
        restarts = status.get("restarts", {}).get("total", 0)
        line = f"phase={phase or '-'} world={world} restarts={restarts} step={max(steps) if steps else '-'}"
        if line != last:
            print(line, flush=True)
            last = line
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    print(kubectl("get", "ej", "-n", NS))
    print(f"export KUBECONFIG={kubeconfig}\nexport PATH={bin_dir}:$PATH\n# when done: make cluster-down")
    return 0 if phase == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
