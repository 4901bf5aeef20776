"""Lay out the recorded sysfs/procfs trees pinning discovery reads, from compact machine descriptions.

`python tests/data/sysfs/make_fixtures.py` rewrites the trees beside it. Each description follows
its real machine's numbering conventions (Linux numbers the first hardware thread of every core
first, then the SMT siblings), NUMA layout and GPU PCI placement; only the files discovery reads
are written.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from elasticjob_launcher.pinning.topology import format_cpulist as cpulist

HERE = Path(__file__).resolve().parent


@dataclass
class Machine:
    sockets: int
    cores_per_socket: int
    numa_per_socket: int
    l3_cores: int  # physical cores sharing one L3
    gpus: list[tuple[str, int]] = field(default_factory=list)  # (bus id, NUMA node)
    cpuset: str | None = None  # the container's cgroup cpuset, if narrowed


def write(root: Path, path: str, text: str) -> None:
    p = root / path
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text + "\n")


def lay_out(root: Path, m: Machine) -> None:
    cores = m.sockets * m.cores_per_socket
    total = cores * 2
    cores_per_node = m.cores_per_socket // m.numa_per_socket
    write(root, "sys/devices/system/cpu/online", f"0-{total - 1}")
    nodes: dict[int, list[int]] = {}
    for core in range(cores):
        socket, node = core // m.cores_per_socket, core // cores_per_node
        threads = [core, core + cores]
        nodes.setdefault(node, []).extend(threads)
        l3_first = core - core % m.l3_cores
        l3 = [c for k in range(l3_first, l3_first + m.l3_cores) for c in (k, k + cores)]
        for cpu in threads:
            base = f"sys/devices/system/cpu/cpu{cpu}"
            write(root, f"{base}/topology/physical_package_id", str(socket))
            write(root, f"{base}/topology/thread_siblings_list", cpulist(threads))
            write(root, f"{base}/cache/index3/shared_cpu_list", cpulist(l3))
    for node, cpus in nodes.items():
        write(root, f"sys/devices/system/node/node{node}/cpulist", cpulist(cpus))
    for minor, (bus, node) in enumerate(m.gpus):
        write(root, f"sys/bus/pci/devices/{bus}/numa_node", str(node))
        info = f"Model: \t\t NVIDIA H100 80GB HBM3\nGPU UUID: \t GPU-{minor:08d}-0000-0000-0000-000000000000\n"
        info += f"Bus Location: \t {'0000' + bus}\nDevice Minor: \t {minor}"
        write(root, f"proc/driver/nvidia/gpus/{bus}/information", info)
    if m.cpuset is not None:
        write(root, "sys/fs/cgroup/cpuset/cpuset.cpus", m.cpuset)


H100_GPUS = [
    (f"0000:{b}:00.0", 0 if i < 4 else 1) for i, b in enumerate(["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"])
]
MACHINES = {
    # DGX H100: 2 x 56-core Xeon 8480C, SMT on, one NUMA node per socket, 4 GPUs per socket
    "h100-8gpu-2socket": Machine(2, 56, 1, 56, H100_GPUS),
    # EPYC with NPS4: one socket, 64 cores in 4 NUMA nodes, 8-core CCDs sharing an L3, one GPU per node
    "epyc-nps4-4gpu": Machine(1, 64, 4, 8, [(f"0000:{b}:00.0", i) for i, b in enumerate(["01", "41", "81", "c1"])]),
    # a 2-socket server whose 4 GPUs all hang off socket 0's root complex
    "gpus-on-one-node": Machine(2, 16, 1, 16, [(f"0000:{b}:00.0", 0) for b in ["17", "31", "4b", "65"]]),
    # the DGX seen from a container whose cpuset allows 16 cores (+ siblings) of socket 0 only
    "h100-cpuset-socket0-part": Machine(2, 56, 1, 56, H100_GPUS, cpuset="0-15,112-127"),
    # a CPU-only 2-socket machine
    "cpu-only-2socket": Machine(2, 8, 1, 8),
}

if __name__ == "__main__":
    for name, machine in MACHINES.items():
        shutil.rmtree(HERE / name, ignore_errors=True)
        lay_out(HERE / name, machine)
