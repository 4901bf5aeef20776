"""kind's NetworkPolicy enforcer (hack/kind/cni/kind-netpol): what it reads from the API's listing
before netpol compiles it (the table itself is tested in test_netpol.py, on kind by the e2e suite)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "kind" / "cni" / "kind-netpol"


def load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("kind_netpol", str(SCRIPT))
    spec = importlib.util.spec_from_loader("kind_netpol", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def pod(name: str, ip: str | None, node: str, labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"namespace": "a", "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c"}], **extra.pop("spec", {})},
        "status": {"phase": extra.pop("phase", "Running"), **({"podIP": ip} if ip else {})},
    }


def node(name: str, ip: str, cidr: str | None) -> dict[str, Any]:
    return {
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]} if cidr else {},
        "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]},
    }


POLICY = {
    "kind": "NetworkPolicy",
    "metadata": {"namespace": "a", "name": "store"},
    "spec": {
        "podSelector": {"matchLabels": {"role": "store"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "worker"}}}], "ports": [{"port": 29400}]}],
    },
}


def test_this_nodes_isolated_pods_are_compiled_over_every_live_pod_and_nodes_are_trusted() -> None:
    kind_netpol = load()
    listing = {
        "kind": "List",
        "items": [
            POLICY,
            {"kind": "Namespace", "metadata": {"name": "a", "labels": {"team": "x"}}},
            node("node-1", "172.18.0.3", "10.250.1.0/24"),
            node("node-2", "172.18.0.4", "10.250.2.0/24"),
            node("new", "172.18.0.5", None),  # no podCIDR yet
            pod("store", "10.250.1.5", "node-1", {"role": "store"}),
            pod("store-elsewhere", "10.250.2.5", "node-2", {"role": "store"}),  # another node's to enforce
            pod("worker", "10.250.2.7", "node-2", {"role": "worker"}),
            pod("starting", "10.250.2.8", "node-2", {"role": "worker"}, phase="Pending"),
            pod("done", "10.250.2.9", "node-2", {"role": "worker"}, phase="Succeeded"),
            pod("no-ip", None, "node-2", {"role": "worker"}, phase="Pending"),
            pod("host", "172.18.0.4", "node-2", {"role": "worker"}, spec={"hostNetwork": True}),
        ],
    }
    isolated, trusted = kind_netpol.compile_listing(listing, "node-1")
    assert list(isolated) == ["10.250.1.5"]
    [allow] = isolated["10.250.1.5"]
    assert allow.sources == ("10.250.2.7", "10.250.2.8") and allow.ports == (("TCP", 29400, 29400),)
    assert sorted(trusted) == ["10.250.1.1", "10.250.2.1", "172.18.0.3", "172.18.0.4", "172.18.0.5"]
    assert kind_netpol.compile_listing(listing, "node-3")[0] == {}


def test_it_runs_on_the_standard_library_with_the_files_the_image_copies(tmp_path: Path) -> None:
    """The kind-cni image has Debian's python3 and no packages: kind-netpol, netpol.py and network.py
    (hack/kind/build-node-image.sh's NETPOL_FILES) must import with nothing else on the path."""
    package = tmp_path / "elasticjob_localcluster"
    package.mkdir()
    for name in ("__init__.py", "netpol.py", "network.py"):
        shutil.copy(SCRIPT.parents[3] / "localcluster" / "elasticjob_localcluster" / name, package / name)
    code = (
        "import runpy, sys; sys.path.insert(0, sys.argv[1]); g = runpy.run_path(sys.argv[2]);"
        "print(g['compile_listing']({'items': []}, 'node-1'), sorted(n for n in sys.modules if 'elasticjob' in n))"
    )
    command = [sys.executable, "-I", "-S", "-c", code, str(tmp_path), str(SCRIPT)]
    got = subprocess.run(command, check=False, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    assert (
        got.stdout.strip() == "({}, []) ['elasticjob_localcluster', 'elasticjob_localcluster.netpol', "
        "'elasticjob_localcluster.network']"
    )
