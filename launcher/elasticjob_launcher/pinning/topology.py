"""Discover GPUs, NUMA nodes, sockets, L3 groups and SMT siblings from sysfs/procfs alone.

Everything is read under a configurable `root` (default "/"), so tests use recorded trees of real
machines. No CUDA initialisation: GPU indices come from the runtime's environment, PCI bus ids
from NVML when `nvidia-ml-py` is installed, else from /proc/driver/nvidia/gpus/*/information.
Limits: Linux only; cgroup v1 and v2 cpusets.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def parse_cpulist(text: str) -> set[int]:
    """`0-3,8,10-11` -> {0, 1, 2, 3, 8, 10, 11}."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.strip().split(","))):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def format_cpulist(cpus: set[int] | list[int]) -> str:
    out, items = [], sorted(cpus)
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(out)


@dataclass(frozen=True)
class Gpu:
    index: int  # the worker-visible index (position in the visible list)
    ident: str  # what the runtime named it: an index or a UUID
    bus_id: str | None
    numa_node: int  # -1 when unknown


@dataclass
class Topology:
    node_cpus: dict[int, set[int]] = field(default_factory=dict)
    cpu_socket: dict[int, int] = field(default_factory=dict)
    l3_groups: list[set[int]] = field(default_factory=list)
    siblings: dict[int, set[int]] = field(default_factory=dict)
    gpus: list[Gpu] = field(default_factory=list)
    allowed: set[int] = field(default_factory=set)

    def node_of(self, cpu: int) -> int:
        return next((n for n, cpus in self.node_cpus.items() if cpu in cpus), -1)


def _read(root: Path, path: str) -> str | None:
    try:
        return (root / path.lstrip("/")).read_text()
    except OSError:
        return None


def visible_gpus(env: Mapping[str, str]) -> list[str]:
    """GPU identifiers the container runtime exposed (CUDA_VISIBLE_DEVICES wins over NVIDIA_...)."""
    value = env.get("CUDA_VISIBLE_DEVICES", env.get("NVIDIA_VISIBLE_DEVICES", ""))
    if value.strip().lower() in ("", "none", "void", "no-dev-files"):
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def _proc_gpus(root: Path) -> list[tuple[int, str, str | None]]:
    """(minor number, bus id, uuid) of every GPU in /proc/driver/nvidia/gpus."""
    base = root / "proc/driver/nvidia/gpus"
    found: list[tuple[int, str, str | None]] = []
    for entry in sorted(base.iterdir()) if base.is_dir() else []:
        info = _read(root, str(entry.relative_to(root) / "information")) or ""
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in info.splitlines())}
        minor = int(fields.get("Device Minor", len(found)))
        found.append((minor, fields.get("Bus Location", entry.name).lower(), fields.get("GPU UUID")))
    return sorted(found)


def _nvml_gpus() -> list[tuple[int, str, str | None]] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:
        return None
    out: list[tuple[int, str, str | None]] = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        bus = pynvml.nvmlDeviceGetPciInfo(handle).busId
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        out.append((i, str(bus.decode() if isinstance(bus, bytes) else bus).lower(), str(uuid)))
    return out


def _normalise_bus(bus: str) -> str:
    """NVML and procfs say 00000000:1B:00.0; sysfs names it 0000:1b:00.0."""
    parts = bus.lower().split(":")
    if len(parts) == 3 and len(parts[0]) > 4:
        parts[0] = parts[0][-4:]
    return ":".join(parts)


def allowed_cpus(root: Path, use_process_affinity: bool) -> set[int]:
    """CPUs this process may use: sched_getaffinity and the cgroup cpuset, intersected."""
    allowed: set[int] | None = set(os.sched_getaffinity(0)) if use_process_affinity else None
    for path in ("sys/fs/cgroup/cpuset.cpus.effective", "sys/fs/cgroup/cpuset/cpuset.effective_cpus",
                 "sys/fs/cgroup/cpuset/cpuset.cpus"):  # fmt: skip
        text = _read(root, path)
        if text and text.strip():
            cpuset = parse_cpulist(text)
            allowed = cpuset if allowed is None else allowed & cpuset
            break
    if allowed is None:
        online = _read(root, "sys/devices/system/cpu/online")
        allowed = parse_cpulist(online) if online else set()
    return allowed


def discover(root: Path | str = "/", env: Mapping[str, str] | None = None, use_nvml: bool = True) -> Topology:
    root = Path(root)
    env = os.environ if env is None else env
    topo = Topology()
    node_dir = root / "sys/devices/system/node"
    for entry in sorted(node_dir.glob("node[0-9]*")) if node_dir.is_dir() else []:
        text = _read(root, str(entry.relative_to(root) / "cpulist"))
        if text is not None:
            topo.node_cpus[int(entry.name[4:])] = parse_cpulist(text)
    online = _read(root, "sys/devices/system/cpu/online")
    all_cpus = parse_cpulist(online) if online else set().union(*topo.node_cpus.values()) if topo.node_cpus else set()
    if not topo.node_cpus:
        topo.node_cpus = {0: set(all_cpus)}
    seen_l3: set[frozenset[int]] = set()
    for cpu in sorted(all_cpus):
        base = f"sys/devices/system/cpu/cpu{cpu}"
        pkg = _read(root, f"{base}/topology/physical_package_id")
        topo.cpu_socket[cpu] = int(pkg) if pkg else 0
        sib = _read(root, f"{base}/topology/thread_siblings_list")
        topo.siblings[cpu] = parse_cpulist(sib) if sib else {cpu}
        l3 = _read(root, f"{base}/cache/index3/shared_cpu_list")
        if l3:
            group = frozenset(parse_cpulist(l3))
            if group not in seen_l3:
                seen_l3.add(group)
                topo.l3_groups.append(set(group))
    topo.allowed = allowed_cpus(root, use_process_affinity=str(root) == "/")
    wanted = visible_gpus(env)
    if wanted:
        known = (_nvml_gpus() if use_nvml and str(root) == "/" else None) or _proc_gpus(root)
        for position, ident in enumerate(wanted):
            match = next((g for g in known if ident in (str(g[0]), g[2])), None)
            bus = _normalise_bus(match[1]) if match else None
            numa = -1
            if bus:
                text = _read(root, f"sys/bus/pci/devices/{bus}/numa_node")
                numa = int(text) if text and text.strip() else -1
            topo.gpus.append(Gpu(position, ident, bus, numa))
    return topo
