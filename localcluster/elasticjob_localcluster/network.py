"""The pod network: a bridge in a network namespace of its own, and one network namespace per pod.

Layout (all made here, all removed by `teardown()`):

    root namespace                  NET_NS ("ejnet0")                  pod namespace ("ej-<hash>")
    HOST_IF 10.244.0.1/16  <-veth->  HOST_PEER --+
                                                 BRIDGE "ejbr0" --- v<hash>  <-veth->  eth0 10.244.x.y/16

Pods get addresses from POD_CIDR; the host side of the link is GATEWAY, which is also where the
API server and the cluster DNS answer. Pod-to-pod frames are bridged inside NET_NS, so they never
meet the root namespace's netfilter: a host firewall that appears at any time (dockerd sets the
root FORWARD policy to DROP and the root `net.bridge.bridge-nf-call-iptables=1`) cannot drop
them, with or without iptables installed. Host-to-pod traffic is the host's own (OUTPUT/INPUT),
which such a firewall leaves alone. br_netfilter's switches are per network namespace (Linux ≥
5.3); NET_NS turns its own off and nobody adds rules there.
Limits: no ClusterIP routing (no kube-proxy): Service names resolve to the ready pods' IPs. Pods
reach nothing beyond this host's addresses (traffic routed on from GATEWAY is the host's to drop).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

NET_NS = "ejnet0"
BRIDGE = "ejbr0"
HOST_IF = "ejhost0"
HOST_PEER = "ejup0"
GATEWAY = "10.244.0.1"
PREFIX = 16
NETNS_PREFIX = "ej-"
_BRIDGE_NF = ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _netns_exists(name: str) -> bool:
    return name in _ip("netns", "list").stdout.split()


def setup_bridge() -> None:
    """NET_NS with BRIDGE, and the host's link to it with GATEWAY (idempotent)."""
    if not _netns_exists(NET_NS):
        _ip("netns", "add", NET_NS)
    if _ip("-n", NET_NS, "link", "show", BRIDGE, check=False).returncode != 0:
        _ip("-n", NET_NS, "link", "add", BRIDGE, "type", "bridge")
    # No netfilter on bridged frames in NET_NS: not the namespace's switches, not the bridge's.
    for knob in _BRIDGE_NF:
        sysctl = Path(f"/proc/sys/net/bridge/{knob}")
        if sysctl.exists():
            subprocess.run(["ip", "netns", "exec", NET_NS, "sh", "-c", f"echo 0 > {sysctl}"], check=True)
    _ip("-n", NET_NS, "link", "set", BRIDGE, "type", "bridge", "nf_call_iptables", "0", "nf_call_ip6tables", "0",
        "nf_call_arptables", "0")  # fmt: skip
    _ip("-n", NET_NS, "link", "set", "lo", "up")
    _ip("-n", NET_NS, "link", "set", BRIDGE, "up")
    if _ip("link", "show", HOST_IF, check=False).returncode != 0:
        _ip("link", "add", HOST_IF, "type", "veth", "peer", "name", HOST_PEER, "netns", NET_NS)
        _ip("addr", "add", f"{GATEWAY}/{PREFIX}", "dev", HOST_IF)
    _ip("-n", NET_NS, "link", "set", HOST_PEER, "master", BRIDGE, "up")
    _ip("link", "set", HOST_IF, "up")


def ensure_nft() -> None:
    """The `nft` command the NetworkPolicy enforcer loads its table with (Debian's nftables, installed once)."""
    if shutil.which("nft") is not None:
        return
    print("installing Debian's nftables (the local cluster's NetworkPolicy enforcer uses nft), once", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "nftables"], check=True, capture_output=True, env=env)


def netns_name(uid: str) -> str:
    return NETNS_PREFIX + hashlib.sha256(uid.encode()).hexdigest()[:10]


def create_pod_netns(name: str, ip: str, etc_files: dict[str, str]) -> None:
    """Namespace `name` with `ip` on the bridge; files under /etc/netns/<name>/ (resolv.conf, hosts)."""
    etc = Path("/etc/netns") / name
    etc.mkdir(parents=True, exist_ok=True)
    for fname, text in etc_files.items():
        (etc / fname).write_text(text)
    if _netns_exists(name):
        return
    bridge_port = f"v{name[3:]}"
    _ip("netns", "add", name)
    _ip("-n", NET_NS, "link", "add", bridge_port, "type", "veth", "peer", "name", "eth0", "netns", name)
    _ip("-n", NET_NS, "link", "set", bridge_port, "master", BRIDGE, "up")
    for args in (
        ["link", "set", "lo", "up"],
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


def leftovers() -> list[str]:
    """What of the pod network exists now (empty after `teardown()`)."""
    found = [f"netns {n}" for n in list_netns()]
    if _netns_exists(NET_NS):
        found.append(f"netns {NET_NS}")
    if _ip("link", "show", HOST_IF, check=False).returncode == 0:
        found.append(f"link {HOST_IF}")
    return found


def teardown() -> None:
    for name in list_netns():
        delete_pod_netns(name)
    if _netns_exists(NET_NS):
        _ip("netns", "delete", NET_NS, check=False)  # the bridge and HOST_PEER go with it, so HOST_IF too
    _ip("link", "delete", HOST_IF, check=False)
