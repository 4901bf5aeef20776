"""Mount namespaces as the local cluster's container boundary: find, pin and list their processes.

`ip netns exec` gives each container its own mount namespace, which every descendant keeps, so
the processes of a container are exactly those in its namespace, however they were started
(torch's workers in sessions of their own, orphans whose parent died). The pod runner pins each
running container's namespace with an open descriptor and records it in the container's
directory (`MNT_NS_FILE`), so `pod_pids` can find a pod's processes from outside the agent.
Limits: Linux only; reading other processes' namespaces needs root.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

#: a running container's mount namespace, in its directory (pod_pids reads it)
MNT_NS_FILE = "mnt_ns"


def mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def pin_mount_ns(pid: int) -> tuple[str, int] | None:
    """The mount namespace of `pid` and an open descriptor of it that keeps its id allocated.

    The kernel reuses a namespace's id (its inode number) as soon as the namespace is freed, often
    for the very next one created: without the descriptor, a scan for a finished container's
    namespace could find, and kill, a container started after it.
    """
    try:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    except OSError:
        return None
    return os.readlink(f"/proc/self/fd/{fd}"), fd


def pids_in_mount_ns(ns: str) -> list[int]:
    """Every process in mount namespace `ns`: a container's processes, however they were started.

    `ip netns exec` gives each container its own mount namespace, which every descendant keeps,
    also ones in a session of their own (torch's workers) and orphans whose parent died.
    """
    return [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and mount_ns(int(pid)) == ns]


#: the agent's own namespace: a child still in it has not been unshared yet
AGENT_MOUNT_NS = mount_ns(os.getpid())


def pod_pids(state: Path, namespace: str, pod: str) -> list[int]:
    """Every process of a pod's running containers on the local cluster in `state` (for faults a
    test or benchmark makes for real: SIGSTOP for a hung pod, SIGKILL for a crashed one)."""
    found: list[int] = []
    for ns_file in (state / "pods" / namespace / pod / "containers").glob(f"*/{MNT_NS_FILE}"):
        try:
            found += pids_in_mount_ns(ns_file.read_text())
        except FileNotFoundError:  # the container just ended
            continue
    return sorted(found)


def kill_all(ns: str) -> None:
    """SIGKILL every process in mount namespace `ns`, until none is left (a process may fork meanwhile)."""
    for _ in range(20):
        pids = pids_in_mount_ns(ns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        time.sleep(0.05)
