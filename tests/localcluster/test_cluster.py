"""The local control plane itself: versions, pods as processes in their own namespaces, DNS,
grace periods, restart policy, node loss. (Teardown is checked by the session fixture.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import Kube, wait_for

PY = "python"


BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


@pytest.fixture
def forward_drop() -> Iterator[None]:
    """What dockerd does to the host when it starts, done after the cluster started: the FORWARD
    policy DROP and the global switch that sends every bridge's frames through iptables. iptables
    is installed here if missing, as Docker's install would (so the cluster came up without it)."""
    if shutil.which("iptables") is None:
        subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "iptables"], check=True, capture_output=True)
    policy = subprocess.run(["iptables", "-S", "FORWARD"], check=True, capture_output=True, text=True).stdout
    was = "DROP" if "-P FORWARD DROP" in policy else "ACCEPT"
    switch_was = BRIDGE_NF.read_text().strip()
    subprocess.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
    BRIDGE_NF.write_text("1")
    yield
    BRIDGE_NF.write_text(switch_was)
    subprocess.run(["iptables", "-P", "FORWARD", was], check=True)


def pod(name: str, script: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "none", "command": [PY, "-c", script], **spec.pop("container", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": spec.pop("labels", {"app": name})},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 5, "containers": [container], **spec},
    }


def pod_json(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = kube.json("get", "pod", name, "-n", ns)
    return pod


def finished(kube: Kube, ns: str, name: str) -> dict[str, Any] | None:
    p = pod_json(kube, ns, name)
    return p if p["status"].get("phase") in ("Succeeded", "Failed") else None


def test_versions(kube: Kube, local_cluster: Any) -> None:
    version = json.loads(kube.run("version", "-o", "json").stdout)["serverVersion"]
    assert version["major"] == "1" and int(re.sub(r"\D", "", version["minor"])) >= 35
    assert "v3." in kube.helm("version", "--short").stdout


def test_pod_has_its_own_network_identity_and_credentials(kube: Kube, ns: str) -> None:
    script = (
        "import json, os, socket; sa='/var/run/secrets/kubernetes.io/serviceaccount';"
        "open('/dev/termination-log','w').write(json.dumps({'ip': os.environ['MY_IP'], 'name': os.environ['MY_NAME'],"
        "'host': socket.gethostname(), 'token': os.path.getsize(sa + '/token') > 0,"
        "'ns': open(sa + '/namespace').read(), 'api': os.environ['KUBERNETES_SERVICE_HOST'],"
        "'ifaces': sorted(n for _, n in socket.if_nameindex())}))"
    )
    env = [{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]  # fmt: skip
    kube.apply([pod("ident", script, container={"env": env})], ns)
    done = wait_for(lambda: finished(kube, ns, "ident"), 60, "ident to finish", lambda: kube.story(ns))
    assert done["status"]["phase"] == "Succeeded", kube.story(ns)
    got = json.loads(done["status"]["containerStatuses"][0]["state"]["terminated"]["message"])
    assert got["ip"] == done["status"]["podIP"] and got["ip"].startswith("10.244.")
    assert got["name"] == "ident" and got["host"] == "ident" and got["token"] is True and got["ns"] == ns
    assert got["ifaces"] == ["eth0", "lo"]


def test_service_name_resolves_to_the_ready_pod(kube: Kube, ns: str, forward_drop: None) -> None:
    # pod to pod, and host to pod (the readiness probe), past a firewall that appeared after start-up
    server = pod("web", "import http.server as h; h.HTTPServer(('', 8080), h.SimpleHTTPRequestHandler).serve_forever()",
                 container={"readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}})  # fmt: skip
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]}}  # fmt: skip
    client = pod("client", "import urllib.request as u; u.urlopen('http://web:8080/', timeout=5).read(); "
                 f"u.urlopen('http://web.{ns}.svc.cluster.local:8080/', timeout=5).read()")  # fmt: skip
    kube.apply([server, service], ns)
    wait_for(lambda: pod_json(kube, ns, "web")["status"].get("podIP") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod_json(kube, ns, "web")["status"].get("conditions", [])),
        60, "web ready", lambda: kube.story(ns))  # fmt: skip
    kube.apply([client], ns)
    done = wait_for(lambda: finished(kube, ns, "client"), 60, "client to finish", lambda: kube.story(ns))
    assert done["status"]["phase"] == "Succeeded", kube.story(ns)


def test_deletion_sends_sigterm_within_the_grace_period(kube: Kube, ns: str, tmp_path: Path) -> None:
    marker = tmp_path / "sigterm"
    script = (
        f"import signal, time, sys\ndef bye(*a):\n    open({str(marker)!r}, 'w').write('term'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\nwhile True: time.sleep(0.1)"
    )
    kube.apply([pod("graceful", script)], ns)
    wait_for(
        lambda: pod_json(kube, ns, "graceful")["status"].get("phase") == "Running",
        60,
        "running",
        lambda: kube.story(ns),
    )
    kube.run("delete", "pod", "graceful", "-n", ns, "--wait=true", "--timeout=60s")
    assert marker.read_text() == "term"


def test_restart_policy_on_failure_restarts_and_reports(kube: Kube, ns: str, tmp_path: Path) -> None:
    marker = tmp_path / "attempted"
    script = (
        f"import os, sys\nif not os.path.exists({str(marker)!r}):\n    open({str(marker)!r}, 'w').close(); sys.exit(3)"
    )
    kube.apply([pod("flaky", script, restartPolicy="OnFailure")], ns)
    done = wait_for(lambda: finished(kube, ns, "flaky"), 60, "flaky to finish", lambda: kube.story(ns))
    status = done["status"]["containerStatuses"][0]
    assert done["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 1 and status["lastState"]["terminated"]["exitCode"] == 3


def test_exit_code_is_reported(kube: Kube, ns: str) -> None:
    kube.apply([pod("fails", "raise SystemExit(42)")], ns)
    done = wait_for(lambda: finished(kube, ns, "fails"), 60, "fails to finish", lambda: kube.story(ns))
    assert done["status"]["phase"] == "Failed"
    assert done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 42


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_lose_and_restore_a_node(kube: Kube, ns: str, local_cluster: Any, tmp_path: Path) -> None:
    def ready(node: str) -> str:
        conds = kube.json("get", "node", node)["status"]["conditions"]
        return str(next(c["status"] for c in conds if c["type"] == "Ready"))

    # a pod on node-2 whose child runs in a session of its own, as torch's workers do
    pidfile = tmp_path / "child"
    script = (
        "import subprocess, time; p = subprocess.Popen(['sleep', '600'], start_new_session=True); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(600)"
    )
    kube.apply([pod("doomed", script, nodeName="node-2")], ns)
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), 60, "the child to start", lambda: kube.story(ns))
    child = int(pidfile.read_text())
    assert alive(child)
    local_cluster.lose_node("node-2")
    try:
        # the node's processes die at once, all of them, as on a power loss
        wait_for(lambda: not alive(child), 10, "the child to die with its node", lambda: kube.story(ns))
        wait_for(lambda: ready("node-2") != "True", 90, "node-2 NotReady", lambda: "")
    finally:
        local_cluster.restore_node("node-2")
    wait_for(lambda: ready("node-2") == "True", 60, "node-2 Ready again", lambda: "")
    # back up, the node reports what happened to its pod, as a kubelet does after a reboot
    done = wait_for(lambda: finished(kube, ns, "doomed"), 30, "doomed to be reported", lambda: kube.story(ns))
    assert done["status"]["phase"] == "Failed" and done["status"].get("reason") == "NodeLost"


def test_liveness_probe_failure_restarts_the_container(kube: Kube, ns: str) -> None:
    # serves /healthz only while a file exists: the first attempt removes it, the second keeps it
    script = (
        "import http.server as h, os, pathlib, threading, time\n"
        "flag = pathlib.Path(os.environ['FLAG'])\n"
        "class H(h.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if not flag.exists() else 500); self.end_headers()\n"
        "if not flag.exists():\n    flag.touch()\nelse:\n    flag.unlink()\n"
        "h.HTTPServer(('', 8081), H).serve_forever()"
    )
    flag = f"/tmp/lc-live-{ns}"
    probe = {"httpGet": {"path": "/", "port": 8081}, "periodSeconds": 1, "failureThreshold": 2}
    kube.apply([pod("live", script, restartPolicy="Always",
                    container={"livenessProbe": probe, "env": [{"name": "FLAG", "value": flag}]})], ns)  # fmt: skip
    wait_for(
        lambda: (pod_json(kube, ns, "live")["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1,
        60, "a liveness restart", lambda: kube.story(ns),
    )  # fmt: skip
    Path(flag).unlink(missing_ok=True)


def test_simulated_node_runs_nothing_but_reports_running(kube: Kube, ns: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    sim = pod("sim", f"open({str(marker)!r}, 'w').write('ran')", nodeSelector={"kubernetes.io/hostname": "sim-1"},
              tolerations=[{"key": "elasticjob.io/simulated", "operator": "Exists", "effect": "NoSchedule"}])  # fmt: skip
    kube.apply([sim], ns)
    wait_for(lambda: pod_json(kube, ns, "sim")["status"].get("phase") == "Running", 60, "sim Running",
             lambda: kube.story(ns))  # fmt: skip
    assert pod_json(kube, ns, "sim")["spec"]["nodeName"] == "sim-1"
    assert not marker.exists()
    kube.run("delete", "pod", "sim", "-n", ns, "--wait=true", "--timeout=60s")
