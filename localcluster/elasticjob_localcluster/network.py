"""The pod network: a bridge in the root namespace and one network namespace per pod.

Pods get addresses from POD_CIDR on the bridge `ejbr0`; the host side is GATEWAY, which is also
where the API server and the cluster DNS answer. Only namespaces and addresses this module creates
are used; `teardown()` removes them all (namespaces are named `ej-*`).
Limits: no ClusterIP routing (no kube-proxy): Service names resolve to the ready pods' IPs.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

BRIDGE = "ejbr0"
GATEWAY = "10.244.0.1"
PREFIX = 16
NETNS_PREFIX = "ej-"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def setup_bridge() -> None:
    if _ip("link", "show", BRIDGE, check=False).returncode != 0:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{GATEWAY}/{PREFIX}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    # Bridged pod-to-pod traffic must not meet a host firewall (docker's FORWARD policy is DROP),
    # even one that appears after the cluster started (dockerd started by a later test): this
    # bridge's frames skip iptables altogether.
    _ip("link", "set", BRIDGE, "type", "bridge", "nf_call_iptables", "0", "nf_call_ip6tables", "0",
        "nf_call_arptables", "0")  # fmt: skip
    allow_forwarding()


def allow_forwarding() -> None:
    """Accept forwarded traffic from and to the bridge (for routed traffic; idempotent)."""
    if shutil.which("iptables") is None:
        return
    for rule in (["-i", BRIDGE, "-j", "ACCEPT"], ["-o", BRIDGE, "-j", "ACCEPT"]):
        if subprocess.run(["iptables", "-C", "FORWARD", *rule], capture_output=True, check=False).returncode:
            subprocess.run(["iptables", "-I", "FORWARD", *rule], capture_output=True, check=False)


def netns_name(uid: str) -> str:
    return NETNS_PREFIX + hashlib.sha256(uid.encode()).hexdigest()[:10]


def create_pod_netns(name: str, ip: str, etc_files: dict[str, str]) -> None:
    """Namespace `name` with `ip` on the bridge; files under /etc/netns/<name>/ (resolv.conf, hosts)."""
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True, exist_ok=True)
    for fname, text in etc_files.items():
        (etc / fname).write_text(text)
    if _ip("netns", "list").stdout.split().count(name):
        return
    host_if, pod_if = f"v{name[3:]}", f"p{name[3:]}"
    _ip("netns", "add", name)
    _ip("link", "add", host_if, "type", "veth", "peer", "name", pod_if)
    _ip("link", "set", host_if, "master", BRIDGE, "up")
    _ip("link", "set", pod_if, "netns", name)
    for args in (
        ["link", "set", "lo", "up"],
        ["link", "set", pod_if, "name", "eth0"],
        ["addr", "add", f"{ip}/{PREFIX}", "dev", "eth0"],
        ["link", "set", "eth0", "up"],
        ["route", "add", "default", "via", GATEWAY],
    ):
        _ip("-n", name, *args)


def delete_pod_netns(name: str) -> None:
    _ip("netns", "delete", name, check=False)  # the veth pair goes with it
    etc = Path("/etc/netns") / name
    if etc.exists():
        for f in etc.iterdir():
            f.unlink()
        etc.rmdir()


def list_netns() -> list[str]:
    return [n for n in _ip("netns", "list").stdout.split() if n.startswith(NETNS_PREFIX)]


def teardown() -> None:
    for name in list_netns():
        delete_pod_netns(name)
    if _ip("link", "show", BRIDGE, check=False).returncode == 0:
        _ip("link", "delete", BRIDGE, check=False)
    for rule in (["-i", BRIDGE, "-j", "ACCEPT"], ["-o", BRIDGE, "-j", "ACCEPT"]):
        if shutil.which("iptables") is None:
            break
        subprocess.run(["iptables", "-D", "FORWARD", *rule], capture_output=True, check=False)
