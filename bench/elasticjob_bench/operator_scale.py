"""B4: operator scale. N ElasticJobs (2 workers each) on simulated nodes.

Each run starts a fresh local control plane: one real node for the operator (installed from its
chart) and simulate-mode nodes, on which pods report Running without running anything.
It measures, for N jobs created as fast as the benchmark can:
- seconds from the first create until every pod exists and until every job reports Running;
- the operator's peak RSS (`VmHWM` of its process), its RSS after the quiet window below (what
  stays; peak minus this is transient), and the CPU seconds it used;
- the operator's API requests per job, from the apiserver's own metrics: the requests dispatched
  for the `service-accounts` flow schema, which here only the operator's ServiceAccount uses;
  and the same counter over a quiet window after, per job and minute;
- reconcile latency per job, p50 and p99: from its create to the operator's first status write
  (the first reconcile), and to Running;
- where the requests go: every client's requests (`apiserver_request_total`) by verb and resource,
  per job, for the resources the operator writes (the scheduler's and the node agent's requests
  to pods are on the `binding` and `status` subresources, events.k8s.io events are the scheduler's);
- the operator's CPU while idle: its share of a core over the quiet window, with every job Running.

Baseline, same run and cluster, before the operator is installed: the same 3N pods (two workers
and a store per job) created directly by the benchmark, and the time until all of them run.
Limits: the cluster's scheduler runs with a raised client QPS (its default of 50 would bind 3,000
pods in no less than a minute whoever creates them); the node agent, the control plane, the
operator and this benchmark share the machine's cores, so the figures include their contention.
"""

from __future__ import annotations

import json
import math
import os
import re
import ssl
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from elasticjob_localcluster.nodeagent import raw_items
from kubernetes import client, config, watch

from elasticjob_bench.machine import REPO

NAMESPACE = "bench-scale"
PODS_PER_JOB = 3  # two workers and the store
PODS_PER_NODE = 500
SCHEDULER_QPS = ["--kube-api-qps=500", "--kube-api-burst=1000"]
FLOW_SCHEMA = "service-accounts"
QUIET_WINDOW_S = 20.0
TOLERATION = {"key": "elasticjob.io/simulated", "operator": "Exists", "effect": "NoSchedule"}
CONTAINER = {
    "name": "trainer",
    "image": "elasticjob-training:dev",
    "command": ["python", "train.py"],
    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
}


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest rank: an observed value, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def samples(metrics: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """The labels and value of each sample of one metric in the apiserver's Prometheus text."""
    pattern = re.compile(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)$")
    for line in metrics.splitlines():
        found = pattern.match(line)
        if found:
            yield dict(re.findall(r'(\w+)="([^"]*)"', found.group(1))), float(found.group(2))


def dispatched(metrics: str, flow_schema: str) -> int:
    """Requests APF dispatched for one flow schema, summed over priority levels."""
    total = sum(
        value
        for labels, value in samples(metrics, "apiserver_flowcontrol_dispatched_requests_total")
        if labels.get("flow_schema") == flow_schema
    )
    return int(total)


#: (verb, API group, resource, subresource) the operator writes; "" for the core group / none
OPERATOR_WRITES = {
    ("POST", "", "pods", ""),
    ("DELETE", "", "pods", ""),
    ("POST", "", "services", ""),
    ("POST", "", "serviceaccounts", ""),
    ("POST", "rbac.authorization.k8s.io", "roles", ""),
    ("POST", "rbac.authorization.k8s.io", "rolebindings", ""),
    ("POST", "networking.k8s.io", "networkpolicies", ""),
    ("POST", "", "events", ""),
    ("PATCH", "elasticjob.io", "elasticjobs", ""),
    ("PATCH", "elasticjob.io", "elasticjobs", "status"),
}


def requests_by_kind(metrics: str) -> dict[tuple[str, ...], float]:
    """`apiserver_request_total` summed by (verb, group, resource, subresource) over codes etc."""
    totals: dict[tuple[str, ...], float] = {}
    for labels, value in samples(metrics, "apiserver_request_total"):
        key = tuple(labels.get(k, "") for k in ("verb", "group", "resource", "subresource"))
        totals[key] = totals.get(key, 0.0) + value
    return totals


def operator_writes_per_job(before: str, after: str, jobs: int) -> dict[str, float]:
    """Per job, the requests between two scrapes to what the operator writes, as "VERB resource"."""
    start, end = requests_by_kind(before), requests_by_kind(after)
    out = {}
    for key in sorted(OPERATOR_WRITES):
        count = end.get(key, 0.0) - start.get(key, 0.0)
        if count > 0:
            verb, _, resource, sub = key
            out[f"{verb} {resource}{'/' + sub if sub else ''}"] = round(count / jobs, 2)
    return out


def job_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "elasticjob.io/v1alpha1",
        "kind": "ElasticJob",
        "metadata": {"name": name},
        "spec": {
            "minReplicas": 2, "maxReplicas": 2, "replicas": 2, "nprocPerNode": 1,
            "template": {"spec": {"containers": [CONTAINER], "tolerations": [TOLERATION]}},
        },
    }  # fmt: skip


def direct_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench-direct"}},
        "spec": {"containers": [CONTAINER], "tolerations": [TOLERATION], "restartPolicy": "Never"},
    }


def nodes_for(jobs: int) -> list[Any]:
    from elasticjob_localcluster.nodeagent import NodeSpec

    sims = max(1, math.ceil(jobs * PODS_PER_JOB * 1.2 / PODS_PER_NODE))
    return [NodeSpec("node-1", cpu="8", memory="16Gi")] + [
        NodeSpec(f"sim-{i}", cpu="1000", memory="4Ti", simulate=True, max_pods=PODS_PER_NODE)
        for i in range(1, sims + 1)
    ]


class Tracker:
    """Watches one namespace's pods and ElasticJobs and records when each got where."""

    def __init__(self, api: client.ApiClient, *, jobs: bool = True) -> None:
        self.api = api
        self.lock = threading.Lock()
        self.pod_added: dict[str, float] = {}
        self.pod_running: dict[str, float] = {}
        self.job_status: dict[str, float] = {}
        self.job_running: dict[str, float] = {}
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(self._pods, self._on_pod), daemon=True)]
        if jobs:  # the baseline runs before the operator's chart installs the CRD
            self.threads.append(threading.Thread(target=self._loop, args=(self._jobs, self._on_job), daemon=True))

    def __enter__(self) -> Tracker:
        for t in self.threads:
            t.start()
        time.sleep(1.0)  # both watches open before anything is created
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()

    def _pods(self, w: watch.Watch, since: str | None) -> Any:
        core = client.CoreV1Api(self.api)
        return w.stream(core.list_namespaced_pod, NAMESPACE, **self._watch_args(since))  # type: ignore[no-untyped-call]

    def _jobs(self, w: watch.Watch, since: str | None) -> Any:
        custom = client.CustomObjectsApi(self.api)
        return w.stream(  # type: ignore[no-untyped-call]
            custom.list_namespaced_custom_object, "elasticjob.io", "v1alpha1", NAMESPACE, "elasticjobs",
            **self._watch_args(since),
        )  # fmt: skip

    @staticmethod
    def _watch_args(since: str | None) -> dict[str, Any]:
        # plain dicts (no model round trip); short server timeouts so `stop` takes effect
        args: dict[str, Any] = {"deserialize": False, "timeout_seconds": 10}
        if since:
            args["resource_version"] = since
        return args

    def _loop(self, open_stream: Any, on_event: Any) -> None:
        since = None
        while not self.stop.is_set():
            try:
                for event in open_stream(watch.Watch(), since):  # type: ignore[no-untyped-call]
                    obj = event["object"]
                    since = obj["metadata"]["resourceVersion"]
                    on_event(obj, time.time())
            except Exception:
                if self.stop.is_set():
                    return  # the cluster went away under a watch no longer needed
                raise

    def _on_pod(self, pod: dict[str, Any], now: float) -> None:
        name = pod["metadata"]["name"]
        with self.lock:
            self.pod_added.setdefault(name, now)
            if (pod.get("status") or {}).get("phase") == "Running":
                self.pod_running.setdefault(name, now)

    def _on_job(self, job: dict[str, Any], now: float) -> None:
        name = job["metadata"]["name"]
        phase = (job.get("status") or {}).get("phase")
        with self.lock:
            if phase:
                self.job_status.setdefault(name, now)
            if phase == "Running":
                self.job_running.setdefault(name, now)


class ScaleCluster:
    """A fresh local control plane sized for N jobs; the operator is installed on demand."""

    def __init__(self, jobs: int) -> None:
        from elasticjob_localcluster.cluster import Cluster

        self.cluster = Cluster(
            REPO / ".cluster-bench-scale", nodes_for(jobs), extra_args={"kube-scheduler": SCHEDULER_QPS}
        )

    def __enter__(self) -> ScaleCluster:
        self.cluster.start()
        self.api = config.new_client_from_config(str(self.cluster.kubeconfig))  # type: ignore[no-untyped-call]
        self.cluster.kubectl("create", "namespace", NAMESPACE)
        self.cluster.kubectl("create", "namespace", "elasticjob-system")
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.stop()

    def install_operator(self) -> None:
        from elasticjob_bench.launch import install_chart

        install_chart(self.cluster)

    def metrics(self) -> str:
        pki = self.cluster.state / "pki"
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        from elasticjob_localcluster.cluster import API_PORT

        with urllib.request.urlopen(f"https://127.0.0.1:{API_PORT}/metrics", context=ctx, timeout=30) as r:
            return str(r.read().decode())

    def remove_direct_pods(self, timeout: float = 300) -> None:
        core = client.CoreV1Api(self.api)
        core.delete_collection_namespaced_pod(NAMESPACE, label_selector="app=bench-direct", grace_period_seconds=0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = raw_items(core.list_namespaced_pod(NAMESPACE, _preload_content=False))
            if not left:
                return
            time.sleep(1)
        raise RuntimeError(f"{len(left)} baseline pods still exist after {timeout} s")


def operator_process() -> int:
    """The pid of the operator (a local process on the cluster's real node)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"elasticjob-operator") for a in argv[:2]):
            return int(entry.name)
    raise RuntimeError("no elasticjob-operator process found")


def process_figures(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = {
        k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in status.splitlines()) if k in ("VmHWM", "VmRSS")
    }
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "peak_rss_mib": round(kib["VmHWM"] / 1024, 1),
        "rss_mib": round(kib["VmRSS"] / 1024, 1),
        "cpu_s": round((int(fields[11]) + int(fields[12])) / ticks, 1),
    }


def _create_all(bodies: list[dict[str, Any]], create: Any) -> dict[str, float]:
    """Create every body from 8 threads; the time each create was sent."""
    sent: dict[str, float] = {}

    def one(body: dict[str, Any]) -> None:
        sent[body["metadata"]["name"]] = time.time()
        create(body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, bodies))
    return sent


def _wait(done: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.2)
    return False


def direct_once(sc: ScaleCluster, jobs: int, timeout: float) -> dict[str, Any]:
    core = client.CoreV1Api(sc.api)
    bodies = [direct_pod(f"direct-{i}") for i in range(jobs * PODS_PER_JOB)]
    with Tracker(sc.api, jobs=False) as tr:
        t0 = time.time()
        _create_all(bodies, lambda b: core.create_namespaced_pod(NAMESPACE, b, _preload_content=False))
        finished = _wait(lambda: len(tr.pod_running) >= len(bodies), timeout)
        with tr.lock:
            running = dict(tr.pod_running)
    result: dict[str, Any] = {"pods": len(bodies), "running": len(running), "finished": finished}
    result["all_running_s"] = round(max(running.values()) - t0, 2) if finished else None
    return result


def operator_once(sc: ScaleCluster, jobs: int, timeout: float) -> dict[str, Any]:
    custom = client.CustomObjectsApi(sc.api)
    pid = operator_process()
    cpu0 = process_figures(pid)["cpu_s"]
    bodies = [job_manifest(f"job-{i}") for i in range(jobs)]
    with Tracker(sc.api) as tr:
        scrape0 = sc.metrics()
        before = dispatched(scrape0, FLOW_SCHEMA)
        t0 = time.time()
        sent = _create_all(
            bodies,
            lambda b: custom.create_namespaced_custom_object(
                "elasticjob.io", "v1alpha1", NAMESPACE, "elasticjobs", b, _preload_content=False
            ),
        )
        created_s = time.time() - t0
        pods_exist = _wait(lambda: len(tr.pod_added) >= jobs * PODS_PER_JOB, timeout)
        pods_s = time.time() - t0
        finished = _wait(lambda: len(tr.job_running) >= jobs, max(1.0, timeout - pods_s))
        done_at = time.time()
        scrape1 = sc.metrics()
        during = dispatched(scrape1, FLOW_SCHEMA) - before
        cpu1 = process_figures(pid)["cpu_s"]
        time.sleep(QUIET_WINDOW_S)
        idle_cpu = process_figures(pid)["cpu_s"] - cpu1
        quiet = dispatched(sc.metrics(), FLOW_SCHEMA) - before - during
        with tr.lock:
            first = [tr.job_status[n] - sent[n] for n in sent if n in tr.job_status]
            running = [tr.job_running[n] - sent[n] for n in sent if n in tr.job_running]
            pods = len(tr.pod_added)
    figures = process_figures(pid)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000)

    return {
        "jobs": jobs,
        "finished": finished,
        "jobs_running": len(running),
        "pods": pods,
        "create_s": round(created_s, 2),
        "all_pods_s": round(pods_s, 2) if pods_exist else None,
        "all_running_s": round(done_at - t0, 2) if finished else None,
        "peak_rss_mib": figures["peak_rss_mib"],
        "rss_after_mib": figures["rss_mib"],  # after the quiet window: what stays
        "operator_cpu_s": round(figures["cpu_s"] - cpu0, 1),
        "requests_per_job": round(during / jobs, 1),
        "quiet_requests_per_job_per_min": round(quiet / jobs * 60 / QUIET_WINDOW_S, 2),
        "idle_cpu_pct": round(idle_cpu / QUIET_WINDOW_S * 100),
        "writes_per_job": operator_writes_per_job(scrape0, scrape1, jobs),
        "first_reconcile_p50_ms": ms(percentile(first, 50)),
        "first_reconcile_p99_ms": ms(percentile(first, 99)),
        "running_p50_ms": ms(percentile(running, 50)),
        "running_p99_ms": ms(percentile(running, 99)),
    }


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def run(sizes: list[int], repeats: int, timeout: float = 600) -> dict[str, Any]:
    """For each size, `repeats` fresh clusters: the direct-pods baseline, then the operator."""
    rows = []
    for jobs in sizes:
        runs = []
        for _ in range(repeats):
            with ScaleCluster(jobs) as sc:
                base = direct_once(sc, jobs, timeout)
                sc.remove_direct_pods()
                sc.install_operator()
                ours = operator_once(sc, jobs, timeout)
            runs.append({**ours, "direct_all_running_s": base["all_running_s"]})
            print(f"B4 {jobs} jobs: {json.dumps(runs[-1])}", flush=True)
        row: dict[str, Any] = {"jobs": jobs, "runs": runs, "finished": sum(r["finished"] for r in runs)}
        for key in runs[0]:
            if key not in ("jobs", "finished") and isinstance(runs[0][key], int | float):
                row[key] = _median(runs, key)
        direct, ours_s = row.get("direct_all_running_s"), row.get("all_running_s")
        row["peak_rss_max_mib"] = max(r["peak_rss_mib"] for r in runs)
        kinds = sorted({k for r in runs for k in r["writes_per_job"]})
        row["writes_per_job"] = {
            k: round(statistics.median(r["writes_per_job"].get(k, 0.0) for r in runs), 2) for k in kinds
        }
        row["ratio_vs_direct"] = round(ours_s / direct, 2) if direct and ours_s else None
        rows.append(row)
    return {"rows": rows, "repeats": repeats, "timeout_s": timeout, "scheduler_flags": SCHEDULER_QPS}
