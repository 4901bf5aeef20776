"""Run one pod's containers as local processes and report its status (the kubelet's part).

Each pod gets its own network namespace and IP, its volumes (resolved by `podspec`) bound at
their paths, and its containers started through `podinit`, each in a mount namespace of its own
(`mountns`: how all of a container's processes are found and killed). Init containers run first,
in order. Restart policy, httpGet readiness probes and deletion with grace periods (SIGTERM,
then SIGKILL) are honoured; the container's termination message file (terminationMessagePath) is
reported like a kubelet does; stdout and stderr go to one CRI-format log per container instance
(`containerlogs`).
Limits: no images (commands run with the project's Python environment), no resource limits or
securityContext enforcement, exec probes are not run (they count as passing).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from elasticjob_localcluster import containerlogs, mountns, network
from elasticjob_localcluster.podspec import PodSpec, Settings

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TERMINATION_LOG = "/dev/termination-log"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Container:
    spec: dict[str, Any]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: str | None = None
    terminated: dict[str, Any] | None = None
    last_terminated: dict[str, Any] | None = None
    ready: bool = False
    next_probe: float = 0.0
    next_live: float = 0.0
    live_failures: int = 0
    #: the container's mount namespace: the boundary used to kill all of its processes
    mnt_ns: str | None = None
    #: an open descriptor of `mnt_ns`, so its id cannot be reused while the container is tracked
    mnt_fd: int | None = None
    #: the current instance's log (containerlogs' layout), written from its stdout and stderr pipes
    log: containerlogs.LogWriter | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])


@dataclass
class PodRunner:
    """One pod's life on a fake node, in its own thread."""

    core: client.CoreV1Api
    pod: dict[str, Any]
    ip: str
    settings: Settings
    delete_requested: threading.Event = field(default_factory=threading.Event)
    #: the node is lost (set and cleared by the agent): processes die, no status is reported
    lost: threading.Event = field(default_factory=threading.Event)
    #: the pod object is gone from the API (force-deleted): stop at once, nothing to confirm
    gone: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        meta = self.pod["metadata"]
        self.name, self.namespace, self.uid = meta["name"], meta["namespace"], meta["uid"]
        self.netns = network.netns_name(self.uid)
        self.dir = self.settings.state / "pods" / self.namespace / self.name
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"pod-{self.name}")
        self._last_status: dict[str, Any] = {}
        self.resolved = PodSpec(self.core, self.pod, self.ip, self.dir, self.settings)
        #: the pod's containers by name (init containers too), once its life has begun
        self.containers: dict[str, Container] = {}

    # --- API ------------------------------------------------------------------------------

    def _patch_status(self, status: dict[str, Any]) -> None:
        if status == self._last_status or self.lost.is_set():
            return
        try:
            self.core.patch_namespaced_pod_status(self.name, self.namespace, {"status": status})
            self._last_status = status
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status of %s/%s: %s", self.namespace, self.name, exc.reason)

    def _delete_object(self) -> None:
        body = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid))
        try:
            self.core.delete_namespaced_pod(self.name, self.namespace, body=body)
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("delete %s/%s: %s", self.namespace, self.name, exc.reason)

    # --- containers -----------------------------------------------------------------------

    def _start(self, c: Container, volumes: dict[str, Path]) -> None:
        spec = c.spec
        command = [*(spec.get("command") or []), *(spec.get("args") or [])]
        env = self.resolved.env(spec)
        command = [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), a) for a in command]
        cdir = self.dir / "containers" / c.name
        cdir.mkdir(parents=True, exist_ok=True)
        term = cdir / "termination-log"
        term.write_text("")
        mounts = [[str(volumes[m["name"]]), m["mountPath"], bool(m.get("readOnly"))]
                  for m in spec.get("volumeMounts") or [] if m["name"] in volumes]  # fmt: skip
        mounts.append([str(term), spec.get("terminationMessagePath", TERMINATION_LOG), False])
        init = cdir / "init.json"
        keep = sorted({str(REPO), sys.prefix, sys.base_prefix})
        spec_json = {"mounts": mounts, "command": command, "env": env, "hostname": self.name, "keep": keep}
        init.write_text(json.dumps({**spec_json, "workingDir": spec.get("workingDir")}))
        if not command:
            c.terminated = {
                "exitCode": 128,
                "reason": "ContainerCannotRun",
                "message": "no command (images are not run)",
            }
            return
        c.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--uts",
             sys.executable, "-m", "elasticjob_localcluster.podinit", str(init)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        if c.proc.stdout is None or c.proc.stderr is None:
            raise RuntimeError("Popen gave no pipes")
        pod_logs = containerlogs.log_dir(self.settings.state, self.namespace, self.name, self.uid)
        path = containerlogs.instance_path(pod_logs, c.name, c.restarts)
        c.log = containerlogs.LogWriter(path, c.proc.stdout, c.proc.stderr)
        self._release_ns(c)
        deadline = time.monotonic() + 5
        while c.mnt_ns is None and time.monotonic() < deadline and c.proc.poll() is None:
            pinned = mountns.pin_mount_ns(c.proc.pid)
            if pinned is not None and pinned[0] != mountns.AGENT_MOUNT_NS:  # `ip netns exec` has unshared it
                c.mnt_ns, c.mnt_fd = pinned
            else:
                if pinned is not None:
                    os.close(pinned[1])
                time.sleep(0.01)
        if c.mnt_ns is not None:
            (cdir / mountns.MNT_NS_FILE).write_text(c.mnt_ns)  # for pod_pids; removed with the descriptor
        c.started_at, c.terminated, c.ready = now(), None, False
        c.next_probe = time.monotonic() + float((spec.get("readinessProbe") or {}).get("initialDelaySeconds", 0))
        c.next_live = time.monotonic() + float((spec.get("livenessProbe") or {}).get("initialDelaySeconds", 0))
        c.live_failures = 0

    def _reap(self, c: Container) -> None:
        if c.proc is None or c.terminated is not None:
            return
        code = c.proc.poll()
        if code is None:
            return
        self._kill_leftovers(c)  # as a runtime does when a container's main process exits
        self._release_ns(c)
        term = self.dir / "containers" / c.name / "termination-log"
        message = term.read_text(errors="replace")[-4096:] if term.exists() else ""
        exit_code = code if code >= 0 else 128 - code
        c.terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": c.started_at,
            "finishedAt": now(),
            **({"message": message} if message else {}),
        }
        c.ready = False

    def _kill(self, containers: list[Container], grace: float) -> None:
        live = [c for c in containers if c.proc is not None and c.proc.poll() is None]
        for c in live:
            if c.proc is not None:
                with _suppress():
                    os.kill(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.proc is not None and c.proc.poll() is None for c in live):
            time.sleep(0.1)
        for c in live:
            if c.proc is not None:
                with _suppress():
                    os.killpg(c.proc.pid, signal.SIGKILL)
                self._kill_leftovers(c)
                c.proc.wait()
                self._reap(c)

    def _release_ns(self, c: Container) -> None:
        if c.mnt_fd is not None:
            os.close(c.mnt_fd)
        c.mnt_ns, c.mnt_fd = None, None
        (self.dir / "containers" / c.name / mountns.MNT_NS_FILE).unlink(missing_ok=True)

    @staticmethod
    def _kill_leftovers(c: Container) -> None:
        """SIGKILL every process left in the container (workers in their own session, orphans)."""
        if c.mnt_ns is not None:
            mountns.kill_all(c.mnt_ns)

    def _http_ok(self, c: Container, probe: dict[str, Any]) -> bool:
        port = probe["httpGet"]["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in c.spec.get("ports") or [] if p.get("name") == port)
        url = f"http://{self.ip}:{port}{probe['httpGet'].get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=float(probe.get("timeoutSeconds", 1))) as r:
                return bool(200 <= r.status < 400)
        except OSError:
            return False

    def _probe(self, c: Container) -> None:
        """Readiness and liveness (httpGet; other probe kinds count as passing)."""
        if c.proc is None or c.terminated is not None:
            return
        now = time.monotonic()
        ready = c.spec.get("readinessProbe")
        if not ready or "httpGet" not in ready:
            c.ready = True
        elif now >= c.next_probe:
            c.next_probe = now + float(ready.get("periodSeconds", 10))
            c.ready = self._http_ok(c, ready)
        live = c.spec.get("livenessProbe")
        if live and "httpGet" in live and now >= c.next_live:
            c.next_live = now + float(live.get("periodSeconds", 10))
            c.live_failures = 0 if self._http_ok(c, live) else c.live_failures + 1
            if c.live_failures >= int(live.get("failureThreshold", 3)):
                log.info("%s/%s: container %s failed its liveness probe; killing it", self.namespace, self.name, c.name)
                self._kill([c], 0)

    # --- status ---------------------------------------------------------------------------

    @staticmethod
    def _cstatus(c: Container) -> dict[str, Any]:
        if c.terminated is not None:
            state: dict[str, Any] = {"terminated": c.terminated}
        elif c.proc is not None:
            state = {"running": {"startedAt": c.started_at}}
        else:
            state = {"waiting": {"reason": "PodInitializing"}}
        out = {"name": c.name, "state": state, "ready": c.ready, "restartCount": c.restarts,
               "image": c.spec.get("image", ""), "imageID": "", "started": c.proc is not None}  # fmt: skip
        if c.last_terminated:
            out["lastState"] = {"terminated": c.last_terminated}
        return out

    def _status(self, phase: str, containers: list[Container], init_done: bool, started: str) -> dict[str, Any]:
        ready = phase == "Running" and all(c.ready for c in containers)

        def cond(kind: str, ok: bool) -> dict[str, Any]:
            return {"type": kind, "status": "True" if ok else "False"}

        return {
            "phase": phase,
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": network.GATEWAY,
            "startTime": started,
            "conditions": [
                cond("PodScheduled", True),
                cond("Initialized", init_done),
                cond("ContainersReady", ready),
                cond("Ready", ready),
            ],
            "containerStatuses": [self._cstatus(c) for c in containers],
        }

    # --- the pod's life -------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def writing(self, container: str, restart: int) -> bool:
        """Whether that instance of the container may still add to its log (its pipes are open)."""
        c = self.containers.get(container)
        if c is None or c.log is None or c.restarts != restart:
            return False
        return any(t.is_alive() for t in c.log.threads)

    def _run(self) -> None:
        try:
            self._life()
        except Exception:
            log.exception("pod %s/%s failed in the node agent", self.namespace, self.name)
        finally:
            self.finished.set()

    def _life(self) -> None:
        started = now()
        spec = self.pod["spec"]
        grace = float(
            self.pod["metadata"].get("deletionGracePeriodSeconds") or spec.get("terminationGracePeriodSeconds", 30)
        )
        if self.settings.simulate:
            self._patch_status({"phase": "Running", "podIP": self.ip, "startTime": started, "conditions": [
                {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"},
                {"type": "Initialized", "status": "True"}, {"type": "PodScheduled", "status": "True"}]})  # fmt: skip
            self.delete_requested.wait()
            self._delete_object()
            return
        search = f"{self.namespace}.svc.cluster.local svc.cluster.local cluster.local"
        resolv = f"nameserver {network.GATEWAY}\nsearch {search}\noptions ndots:5\n"
        hosts = f"127.0.0.1 localhost\n{self.ip} {self.name}\n"
        network.create_pod_netns(self.netns, self.ip, {"resolv.conf": resolv, "hosts": hosts})
        volumes = self.resolved.volume_dirs()
        policy = spec.get("restartPolicy", "Always")
        inits = [Container(c) for c in spec.get("initContainers") or []]
        containers = [Container(c) for c in spec["containers"]]
        self.containers = {c.name: c for c in [*inits, *containers]}
        self._patch_status(self._status("Pending", containers, False, started))
        try:
            for init in inits:
                while not self.delete_requested.is_set() and not self.lost.is_set():
                    self._start(init, volumes)
                    while init.terminated is None and not self.delete_requested.is_set() and not self.lost.is_set():
                        time.sleep(0.2)
                        self._reap(init)
                    if init.terminated and init.terminated["exitCode"] == 0:
                        break
                    if policy == "Never":
                        self._patch_status(self._status("Failed", containers, False, started))
                        self.delete_requested.wait()
                        return
                    init.restarts += 1
                    time.sleep(1)
            for c in containers:
                self._start(c, volumes)
            phase = "Running"
            while not self.delete_requested.is_set():
                if self.lost.is_set():
                    self._node_lost(containers, started)
                    return
                for c in containers:
                    self._probe(c)  # a failed liveness probe kills the container: restarted just below
                    self._reap(c)
                    code = c.terminated["exitCode"] if c.terminated else None
                    if code is not None and (policy == "Always" or (policy == "OnFailure" and code != 0)):
                        c.last_terminated, c.restarts = c.terminated, c.restarts + 1
                        time.sleep(min(10, c.restarts))
                        self._start(c, volumes)
                if all(c.terminated is not None for c in containers):
                    ok = all(c.terminated and c.terminated["exitCode"] == 0 for c in containers)
                    phase = "Succeeded" if ok else "Failed"
                self._patch_status(self._status(phase, containers, True, started))
                if phase != "Running":
                    self.delete_requested.wait()
                    break
                self.delete_requested.wait(0.3)
        finally:
            self._kill([*inits, *containers], 0 if self.lost.is_set() or self.gone.is_set() else grace)
            network.delete_pod_netns(self.netns)
        if not self.lost.is_set() and not self.gone.is_set():
            self._delete_object()

    def _node_lost(self, containers: list[Container], started: str) -> None:
        """The node died: every process at once; when it comes back, report what a rebooted
        kubelet would (the containers exited, the pod Failed) and confirm deletions again."""
        self._kill(containers, 0)
        while self.lost.is_set() and not self.gone.is_set():
            time.sleep(0.2)
        if self.gone.is_set() or self.delete_requested.is_set():
            return
        for c in containers:
            c.terminated = {**(c.terminated or {}), "exitCode": 137, "reason": "Error", "message": "node lost"}
        self._patch_status({**self._status("Failed", containers, True, started), "reason": "NodeLost"})
        while not self.delete_requested.is_set() and not self.gone.is_set():
            time.sleep(0.2)


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], ProcessLookupError)


def cleanup_pod_dirs(state: Path) -> None:
    for name in ("pods", "pod-logs"):
        if (state / name).exists():
            shutil.rmtree(state / name, ignore_errors=True)
